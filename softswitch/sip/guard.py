"""Brute-force and enumeration defence: a per-source failure and ban table (sans-IO, ``now`` passed in).

Digest authentication (`sip/auth.py`) already answers an unknown user and a wrong password identically;
this module limits how many guesses one source gets. No RFC defines it; the policy is fail2ban's and
Kamailio's ``pike``/``htable`` habit, written down here so it can be reviewed:

* A *failure* is a request whose credentials were refused (the caller decides which outcomes count; see
  below). A 401 challenge to a request without credentials is not a failure: every phone gets one.
* Failures are counted per source in a sliding window of ``window`` seconds.
* ``throttle_after`` failures in the window → ``THROTTLE``. **Our choice for THROTTLE:** requests without
  credentials are still challenged (401) as usual, but a request *with* credentials is answered 403 at once,
  without looking the user up or computing a digest, and that refusal is recorded as a failure too. A
  throttled source learns nothing from its guesses (the answer does not depend on the password), costs us
  no hashing, and an honest phone recovers by itself once its failures age out of the window. We do not
  delay answers: a sans-IO core cannot sleep, and holding requests would cost memory per attacker.
* ``failures`` failures in the window → ``BANNED`` for ``ban_time`` seconds: the caller drops every
  datagram or closes every connection from that source silently. `record_failure` returns ``BANNED``
  on the failure that starts the ban, so the caller can log it once with the address. A source that is
  already banned stays banned (the ban is not extended) and gets ``BANNED`` again; callers that drop on
  `check` never record failures for it.
* A success (`record_success`) forgets the source's failures, not an active ban. Trade-off: phones
  behind one NAT address share a counter, so one misconfigured phone can throttle its neighbours until
  one of them authenticates; the success of one phone also clears the count of the others.

Suggested mapping from `AuthOutcome`: count ``BAD_RESPONSE``, ``UNKNOWN_USER``, ``WRONG_REALM``,
``BAD_NONCE``, ``MALFORMED`` and ``UNSUPPORTED_ALGORITHM``. Do not count ``OK``, ``STALE`` (an honest phone
with the right password and an old nonce) or ``REPLAY`` (its digest is right too: either a captured request
replayed, which gains nothing from a fresh 401, or an honest phone whose requests sharing one nonce arrived
out of order; answer both STALE and REPLAY with a new challenge, ``stale=true``).

Sources: IPv4 addresses are tracked one by one; IPv6 addresses by their ``/64`` (``ipv6_prefix``), since a
single host commonly owns a whole /64; IPv4-mapped IPv6 addresses count as their IPv4 address. A string
that is not an IP address is tracked as given. Networks in ``exempt`` are never throttled or banned;
loopback is *not* exempt unless listed (tests brute-force from 127.0.0.1).

Memory is bounded: at most ``max_tracked`` sources with failure histories (each at most ``failures``
timestamps; the least recently failing source is forgotten first) and at most ``max_bans`` bans (the ban
ending soonest is lifted first when a new one needs room). An attacker spread over more sources than
``max_tracked`` can push histories out; each of those sources then has few failures anyway.

Time: `check`, `record_failure` and `record_success` are O(1) amortised (O(``max_bans``) only when the
ban table is full). Deadlines sit in one heap with lazy deletion (one live entry per source), so
`next_deadline` is a peek and `expire` pops only what is due.
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable

__all__ = ["Guard", "Verdict"]

_KEY_CACHE_SIZE = 4096


class Verdict(enum.Enum):
    """What the edge does with a request from a source."""

    #: Process normally.
    ALLOW = "allow"
    #: Challenge requests without credentials; refuse requests with credentials with 403, unverified.
    THROTTLE = "throttle"
    #: Drop silently (UDP) or close the connection (TCP/TLS).
    BANNED = "banned"


class Guard:
    """Per-source failure counting, throttling and bans. See the module docstring for the policy."""

    def __init__(
        self,
        *,
        failures: int = 10,
        window: float = 60.0,
        ban_time: float = 600.0,
        throttle_after: int = 5,
        exempt: Iterable[str] = (),
        max_tracked: int = 10_000,
        max_bans: int = 10_000,
        ipv6_prefix: int = 64,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if throttle_after < 1:
            raise ValueError("throttle_after must be at least 1")
        if window <= 0 or ban_time < 0:
            raise ValueError("window must be positive and ban_time not negative")
        if max_tracked < 1 or max_bans < 1:
            raise ValueError("max_tracked and max_bans must be at least 1")
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be within 0..128")
        self.failures = failures
        self.window = window
        self.ban_time = ban_time
        self.throttle_after = throttle_after
        self.max_tracked = max_tracked
        self.max_bans = max_bans
        self.ipv6_prefix = ipv6_prefix
        self.exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in exempt
        )
        # source key -> (time, username) of the failures within the window, oldest first; ordered by last
        # failure (LRU).
        self._history: OrderedDict[str, deque[tuple[float, str | None]]] = OrderedDict()
        # source key -> end of ban
        self._bans: dict[str, float] = {}
        # (deadline, key) with lazy deletion; _scheduled holds the one live deadline per key.
        self._heap: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        # address string -> (source key, exempt); parsing an IPv6 network costs ~10 µs per request.
        self._keys: dict[str, tuple[str, bool]] = {}

    # -- public API --

    def key(self, ip: str) -> str:
        """The source key `ip` is counted under: the address, its IPv6 /64 network, or `ip` itself."""
        return self._classify(ip)[0]

    def check(self, ip: str, *, now: float) -> Verdict:
        """The verdict for a request from `ip` arriving at `now`."""
        key, exempt = self._classify(ip)
        if exempt:
            return Verdict.ALLOW
        self._refresh(key, now)
        if key in self._bans:
            return Verdict.BANNED
        history = self._history.get(key)
        if history is not None and len(history) >= self.throttle_after:
            return Verdict.THROTTLE
        return Verdict.ALLOW

    def record_failure(self, ip: str, *, now: float, user: str | None = None) -> Verdict:
        """Count a refused authentication; returns the source's verdict after it (BANNED when it
        starts a ban)."""
        key, exempt = self._classify(ip)
        if exempt:
            return Verdict.ALLOW
        self._refresh(key, now)
        if key in self._bans:
            return Verdict.BANNED
        history = self._history.get(key)
        if history is None:
            while len(self._history) >= self.max_tracked:
                evicted, _ = self._history.popitem(last=False)
                self._reschedule(evicted)
            history = self._history[key] = deque(maxlen=self.failures)
        else:
            self._history.move_to_end(key)
        history.append((now, user))
        if len(history) >= self.failures and self.ban_time == 0:
            # banning turned off (security.ban_time: 0): keep throttling, never ban
            self._reschedule(key)
            return Verdict.THROTTLE
        if len(history) >= self.failures:
            del self._history[key]
            self._ban(key, now + self.ban_time)
            self._reschedule(key)
            return Verdict.BANNED
        self._reschedule(key)
        return Verdict.THROTTLE if len(history) >= self.throttle_after else Verdict.ALLOW

    def record_success(self, ip: str, *, now: float, user: str | None = None) -> None:
        """Forget the failures of `ip`'s source (an active ban stays); with `user`, only the failures
        recorded for that username: one valid account must not wipe the guesses at everybody else's."""
        key, _ = self._classify(ip)
        history = self._history.get(key)
        if history is not None:
            if user is not None:
                kept = deque((entry for entry in history if entry[1] != user), maxlen=history.maxlen)
                if kept:
                    self._history[key] = kept
                else:
                    del self._history[key]
            else:
                del self._history[key]
            self._reschedule(key)
        self._refresh(key, now)

    def bans(self, *, now: float) -> list[tuple[str, float]]:
        """Active bans as ``(source key, until)``, soonest ending first."""
        return sorted(((key, until) for key, until in self._bans.items() if until > now), key=lambda b: b[1])

    def unban(self, ip: str) -> bool:
        """Lift a ban and forget the failures (an admin's command); True if there was a ban."""
        key, _ = self._classify(ip)
        banned = self._bans.pop(key, None) is not None
        self._history.pop(key, None)
        self._reschedule(key)
        return banned

    def next_deadline(self) -> float | None:
        """When a failure next ages out of its window or a ban ends, or None when nothing is tracked."""
        heap = self._heap
        while heap and self._scheduled.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, *, now: float) -> None:
        """Drop failures older than the window and bans that ended; safe to call at any time."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            if self._scheduled.get(key) == deadline:
                del self._scheduled[key]
                self._refresh(key, now)
                self._reschedule(key)

    @property
    def tracked(self) -> int:
        """Sources with a failure history or a ban."""
        return len(self._history.keys() | self._bans.keys())

    # -- internals --

    def _classify(self, ip: str) -> tuple[str, bool]:
        cached = self._keys.get(ip)
        if cached is None:
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()  # crude but bounded; parsing again is only a few µs
            cached = self._keys[ip] = self._classify_uncached(ip)
        return cached

    def _classify_uncached(self, ip: str) -> tuple[str, bool]:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return ip, False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        exempt = any(address in network for network in self.exempt)
        if isinstance(address, ipaddress.IPv6Address):
            network = ipaddress.IPv6Network((address.packed, self.ipv6_prefix), strict=False)
            return str(network), exempt
        return str(address), exempt

    def _refresh(self, key: str, now: float) -> None:
        """Bring one source's state up to `now`: end its ban, age out old failures, re-arm its deadline."""
        changed = False
        until = self._bans.get(key)
        if until is not None and until <= now:
            del self._bans[key]
            changed = True
        history = self._history.get(key)
        if history is not None:
            # Same expression as the deadline in _deadline, so float rounding cannot make them disagree.
            while history and history[0][0] + self.window <= now:
                history.popleft()
                changed = True
            if not history:
                del self._history[key]
        if changed:
            self._reschedule(key)

    def _ban(self, key: str, until: float) -> None:
        if len(self._bans) >= self.max_bans:
            soonest = min(self._bans, key=self._bans.__getitem__)
            del self._bans[soonest]
            self._reschedule(soonest)
        self._bans[key] = until

    def _deadline(self, key: str) -> float | None:
        candidates = []
        until = self._bans.get(key)
        if until is not None:
            candidates.append(until)
        history = self._history.get(key)
        if history:
            candidates.append(history[0][0] + self.window)
        return min(candidates) if candidates else None

    def _reschedule(self, key: str) -> None:
        deadline = self._deadline(key)
        if deadline is None:
            self._scheduled.pop(key, None)
            return
        if self._scheduled.get(key) == deadline:
            return
        self._scheduled[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(self._scheduled) + 64:
            self._heap = [(d, k) for k, d in self._scheduled.items()]
            heapq.heapify(self._heap)
