"""The location service: address-of-record -> bindings (RFC 3261 §10.3, RFC 5626 §6).

In memory, sans-IO. Each binding remembers the flow its REGISTER arrived on, so the switch reaches the
phone over the same NAT pinhole or connection (RFC 5626 §5), and its qualify state (reachable, round-trip
time) from the periodic OPTIONS. Expiry times are monotonic (`now` is passed in); `next_deadline()` feeds the
endpoint's single timer. Persistence is not here: the registrar's outcome carries the AOR's new set and the
edge writes it through `store/` before the 200 goes out.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from softswitch.sip.flow import Flow
from softswitch.sip.uri import SipUri, Uri

__all__ = ["Binding", "LocationTable", "contact_key"]

_COMPACT_SLACK = 64  # heap entries allowed beyond 2 x bindings before a rebuild


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of an AOR."""

    aor: str
    contact: str  # the Contact URI as the phone sent it (Request-URI when we call it)
    expires_at: float  # monotonic
    flow: Flow  # where the REGISTER came from: how we reach the phone
    call_id: str
    cseq: int
    q: float = 1.0
    instance_id: str | None = None  # +sip.instance (RFC 5626 §4.1)
    reg_id: int | None = None
    user_agent: str | None = None
    registered_at: float = 0.0  # monotonic time of the first REGISTER that created it
    key: str = ""  # identity within the AOR (instance or normalised contact URI)

    def remaining(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(slots=True)
class Reachability:
    """Qualify state of a binding: the last OPTIONS round trip."""

    reachable: bool | None = None  # None until the first qualify finished
    rtt: float | None = None  # seconds
    last_checked: float | None = None
    failures: int = 0


def contact_key(uri: Uri, instance_id: str | None = None, reg_id: int | None = None) -> str:
    """Identity of a binding: the instance (and reg-id) when the phone gives one, else the URI compared as
    §19.1.4 compares (scheme, unescaped user, lower-case host, port, and the params that always count)."""
    if instance_id:
        return f"instance:{instance_id}:{reg_id if reg_id is not None else ''}"
    if isinstance(uri, SipUri):
        significant = sorted(
            (name, (value or "").lower())
            for name, value in uri.params.items()
            if name in ("user", "ttl", "method", "maddr", "transport")
        )
        return f"{uri.scheme}:{uri.user or ''}@{uri.host.lower()}:{uri.port or ''}:{significant}"
    return str(uri).lower()


@dataclass(slots=True)
class LocationTable:
    """AOR -> {key: Binding}, with an expiry heap (lazy deletion) and qualify state per binding.

    A refresh leaves the binding's old heap entry behind (it is skipped when it surfaces). Phones behind NAT
    often refresh every 30-60 s against an expiry of an hour, so the heap is rebuilt from the live bindings
    whenever it holds more than twice as many entries as there are bindings: memory stays proportional to
    the bindings, at an amortised O(1) per refresh.
    """

    _aors: dict[str, dict[str, Binding]] = field(default_factory=dict)
    _reach: dict[tuple[str, str], Reachability] = field(default_factory=dict)
    _heap: list[tuple[float, str, str]] = field(default_factory=list)
    _count: int = 0  # bindings in `_aors`

    def bindings(self, aor: str, *, now: float) -> list[Binding]:
        """Live bindings of `aor`, best q first, then most recently registered."""
        current = self._aors.get(aor)
        if not current:
            return []
        live = [b for b in current.values() if b.expires_at > now]
        live.sort(key=lambda b: (-b.q, -b.registered_at))
        return live

    def all_bindings(self, *, now: float) -> list[Binding]:
        out: list[Binding] = []
        for aor in sorted(self._aors):
            out.extend(self.bindings(aor, now=now))
        return out

    def aors(self) -> list[str]:
        return list(self._aors)

    def get(self, aor: str, key: str) -> Binding | None:
        return self._aors.get(aor, {}).get(key)

    def replace_aor(self, aor: str, bindings: list[Binding]) -> None:
        """Make `bindings` the AOR's whole set."""
        old = self._aors.get(aor, {})
        new = {b.key: b for b in bindings}
        for key in old.keys() - new.keys():
            self._reach.pop((aor, key), None)
        self._count += len(new) - len(old)
        if new:
            self._aors[aor] = new
            for binding in new.values():
                previous = old.get(binding.key)
                if previous is None or previous.expires_at != binding.expires_at:
                    heapq.heappush(self._heap, (binding.expires_at, aor, binding.key))
                # else: its entry is still in the heap and still valid
            if len(self._heap) > 2 * self._count + _COMPACT_SLACK:
                self._compact()
        else:
            self._aors.pop(aor, None)

    def _compact(self) -> None:
        """Rebuild the heap from the live bindings (drops every stale entry)."""
        self._heap = [
            (b.expires_at, aor, key) for aor, current in self._aors.items() for key, b in current.items()
        ]
        heapq.heapify(self._heap)

    def restore(self, bindings: list[Binding]) -> None:
        """Load bindings at start-up (from the store, expiries already converted to monotonic)."""
        grouped: dict[str, list[Binding]] = {}
        for binding in bindings:
            grouped.setdefault(binding.aor, []).append(binding)
        for aor, items in grouped.items():
            self.replace_aor(aor, items)

    def reachability(self, aor: str, key: str) -> Reachability:
        return self._reach.setdefault((aor, key), Reachability())

    def peek_reachability(self, aor: str, key: str) -> Reachability | None:
        return self._reach.get((aor, key))

    def update_flow(self, aor: str, key: str, flow: Flow) -> None:
        binding = self.get(aor, key)
        if binding is not None:
            self._aors[aor][key] = replace(binding, flow=flow)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            expires_at, aor, key = heap[0]
            binding = self._aors.get(aor, {}).get(key)
            if binding is None or binding.expires_at != expires_at:
                heapq.heappop(heap)  # stale entry: refreshed or removed since
                continue
            return expires_at
        return None

    def expire(self, *, now: float) -> list[str]:
        """Remove bindings that have expired by `now`; return the AORs that changed."""
        changed: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, aor, key = heapq.heappop(heap)
            current = self._aors.get(aor)
            if not current:
                continue
            binding = current.get(key)
            if binding is None or binding.expires_at != expires_at:
                continue
            del current[key]
            self._count -= 1
            self._reach.pop((aor, key), None)
            if not current:
                del self._aors[aor]
            if aor not in changed:
                changed.append(aor)
        return changed

    def __len__(self) -> int:
        return self._count
