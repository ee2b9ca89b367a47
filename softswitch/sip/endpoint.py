"""The SIP endpoint: one sans-IO object, bytes and `now` in; bytes, events and one deadline out (style 9.1).

    receive(data, flow, now)  ->  parser -> transaction layer -> the usages (registrar, OPTIONS, calls)
    outgoing()                ->  (bytes, flow) pairs to write, in order
    next_event()              ->  what the application must act on (persist bindings, log a ban ...)
    next_deadline()           ->  the earliest of every transaction timer, binding expiry, qualify, nonce
    handle_timer(now)         ->  fire what is due

Malformed input never reaches a transaction: a request that can be answered gets its 400 (or the status
the parser chose) with a reason phrase that says what was wrong; anything else is dropped and reported as
`MessageDropped` with a reason from a small fixed vocabulary (style 9.16).

The rules for requests that reach us (RFC 3261 §8.2, §10.3, §11):
- every request is stamped with `received`/`rport` (RFC 3581), and answered to its source address and
  port — as if every phone asked for rport, since home NATs require it;
- requests for a domain we do not serve are refused with 403; unknown `Require` options get 420;
- REGISTER is authenticated (digest, RFC 8760) and handed to the registrar; its 200 waits until the
  application says the new bindings are durable (`persisted()`);
- OPTIONS gets 200 with Allow, Accept and Supported; methods nobody handles get 405 with Allow;
- a wrong password and an unknown user get the same 401 challenge and the same 403 (no enumeration);
  repeated failures from one address are throttled and then banned (guard.py).
Every live binding is qualified with OPTIONS over its own flow every `qualify_interval` seconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from softswitch.sip.auth import AuthOutcome, AuthParseError, DigestAuthenticator, parse_credentials
from softswitch.sip.errors import SipParseError
from softswitch.sip.flow import Flow
from softswitch.sip.guard import Guard, Verdict
from softswitch.sip.location import Binding, LocationTable
from softswitch.sip.message import Headers, Request, Response, new_branch, new_tag
from softswitch.sip.parser import DEFAULT_LIMITS, ParserLimits, error_response, parse_message
from softswitch.sip.registrar import Registrar, RegistrarPolicy
from softswitch.sip.timers import TimerValues
from softswitch.sip.transaction import (
    AckReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
)
from softswitch.sip.uri import SipUri

__all__ = [
    "AuthCheck",
    "AuthFailed",
    "BindingsExpired",
    "BindingsRestored",
    "Endpoint",
    "EndpointConfig",
    "EndpointEvent",
    "MessageDropped",
    "PersistBindings",
    "ReachabilityChanged",
    "SourceBanned",
    "Usage",
]

ALLOW_BASE = ("REGISTER", "OPTIONS")
SUPPORTED: tuple[str, ...] = ("path",)


# --------------------------------------------------------------------------------------------------
# events for the application
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistBindings:
    """Write `bindings` as the AOR's whole set, then call `Endpoint.persisted(token, ...)`."""

    token: int
    aor: str
    bindings: tuple[Binding, ...]
    flow: Flow


@dataclass(frozen=True, slots=True)
class BindingsExpired:
    """Bindings ran out without a refresh; `bindings` is what is left (write it, no answer needed)."""

    aor: str
    bindings: tuple[Binding, ...]


@dataclass(frozen=True, slots=True)
class BindingsRestored:
    """A `PersistBindings` failed: the AOR is back to `bindings`, its set before that REGISTER (RFC 3261
    §10.3: a failed update leaves no tentative change behind). The store still holds that set."""

    aor: str
    bindings: tuple[Binding, ...]


@dataclass(frozen=True, slots=True)
class ReachabilityChanged:
    aor: str
    key: str
    contact: str
    reachable: bool
    rtt: float | None


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """What `Endpoint.check_auth` decided for a request: a user, or the answer to send."""

    user: str | None
    status: int = 0
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A message we did not process. `reason` is one of: parse_error, banned_source, stray_response,
    unanswerable, foreign_domain (for responses: never answered)."""

    flow: Flow
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AuthFailed:
    source: str
    username: str
    outcome: str


@dataclass(frozen=True, slots=True)
class SourceBanned:
    source: str
    until: float


EndpointEvent = (
    PersistBindings
    | BindingsExpired
    | BindingsRestored
    | ReachabilityChanged
    | MessageDropped
    | AuthFailed
    | SourceBanned
)


class Usage(Protocol):
    """A dialog usage above the endpoint (the B2BUA): it gets the requests the endpoint does not answer."""

    methods: tuple[str, ...]

    def on_request(self, tx: ServerTransaction, *, now: float) -> None: ...
    def on_cancel(self, tx: ServerTransaction, invite_tx: ServerTransaction, *, now: float) -> None: ...
    def on_ack(self, request: Request, flow: Flow, *, now: float) -> None: ...
    def on_response(self, tx: ClientTransaction, response: Response, *, now: float) -> None: ...
    def on_stray_response(self, response: Response, flow: Flow, *, now: float) -> None: ...
    def on_timeout(self, tx: ClientTransaction | ServerTransaction, *, now: float) -> None: ...
    def next_deadline(self) -> float | None: ...
    def handle_timer(self, *, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    domain: str
    aliases: frozenset[str] = frozenset()
    limits: ParserLimits = DEFAULT_LIMITS
    timers: TimerValues = field(default_factory=TimerValues)
    registrar: RegistrarPolicy = field(default_factory=RegistrarPolicy)
    qualify_interval: float = 30.0
    qualify_timeout: float = 5.0
    user_agent: str = "softswitch"
    # transport -> (host, port) we put in Via/Contact of requests we originate on that transport
    advertise: dict[str, tuple[str, int]] = field(default_factory=dict)

    def serves(self, host: str) -> bool:
        host = host.lower()
        return host == self.domain.lower() or host in self.aliases


@dataclass(slots=True)
class _Qualify:
    aor: str
    key: str
    sent_at: float
    call_id: str
    done: bool = False


class Endpoint:
    """The SIP core of the switch. See the module docstring."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        authenticator: DigestAuthenticator,
        guard: Guard,
        credentials: Callable[[str, str], str | None],
        location: LocationTable | None = None,
    ) -> None:
        self.config = config
        self.auth = authenticator
        self.guard = guard
        self.credentials = credentials
        self.location = location if location is not None else LocationTable()
        self.registrar = Registrar(self.location, config.registrar, domain=config.domain)
        self.transactions = TransactionLayer(config.timers)
        self.usage: Usage | None = None
        self._out: list[tuple[bytes, Flow]] = []
        self._events: deque[EndpointEvent] = deque()
        self._tokens = itertools.count(1)
        # token -> (transaction, held 200, AOR, its bindings before, its bindings written)
        self._pending: dict[
            int, tuple[ServerTransaction, Response, str, tuple[Binding, ...], tuple[Binding, ...]]
        ] = {}
        self._qualify_heap: list[tuple[float, int, str, str]] = []
        self._qualify_seq = itertools.count()
        self._qualify_scheduled: set[tuple[str, str]] = set()
        self._qualify_inflight: dict[tuple[str, str], _Qualify] = {}
        self._qualify_by_call_id: dict[str, _Qualify] = {}
        self._qualify_timeouts: list[tuple[float, int, str, str]] = []
        self.wall_offset = 0.0  # wall clock = now + wall_offset (set by the application)
        self.counters: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------------
    # the sans-IO surface
    # ------------------------------------------------------------------------------------------------

    def receive(self, data: bytes, flow: Flow, *, now: float) -> None:
        """One datagram, or one message framed out of a stream."""
        try:
            message = parse_message(data, limits=self.config.limits)
        except SipParseError as exc:
            self._count("parse_error")
            answer = error_response(exc, flow.remote)
            if answer is not None:
                self._out.append((bytes(answer), flow))
            self._events.append(MessageDropped(flow, "parse_error", exc.reason))
            return
        if isinstance(message, Request):
            verdict = self.guard.check(flow.remote[0], now=now)
            if verdict is Verdict.BANNED:
                self._count("banned_source")
                if flow.reliable:  # the edge closes a banned source's connection (guard.py)
                    self._events.append(MessageDropped(flow, "banned_source"))
                return
            message.set_received(flow.remote[0], flow.remote[1])
            self.transactions.receive_request(message, flow, now=now)
        else:
            self.transactions.receive_response(message, flow, now=now)
        self._process(now)

    def outgoing(self) -> list[tuple[bytes, Flow]]:
        self._collect()
        out, self._out = self._out, []
        return out

    def next_event(self) -> EndpointEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        candidates = [
            self.transactions.next_deadline(),
            self.location.next_deadline(),
            self.auth.next_deadline(),
            self.guard.next_deadline(),
            self._qualify_heap[0][0] if self._qualify_heap else None,
            self._qualify_timeouts[0][0] if self._qualify_timeouts else None,
            self.usage.next_deadline() if self.usage is not None else None,
        ]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def handle_timer(self, *, now: float) -> None:
        self.transactions.handle_timer(now=now)
        for aor in self.location.expire(now=now):
            self._events.append(BindingsExpired(aor, tuple(self.location.bindings(aor, now=now))))
        self.auth.expire(now=now)
        self.guard.expire(now=now)
        self._run_qualify(now)
        if self.usage is not None:
            self.usage.handle_timer(now=now)
        self._process(now)

    def persisted(self, token: int, *, ok: bool, now: float) -> None:
        """The application wrote a `PersistBindings`: send the held 200 (or 500 when the write failed)."""
        pending = self._pending.pop(token, None)
        if pending is None:
            return
        tx, response, aor, before, written = pending
        if not ok:
            # Undo the tentative change, unless a later REGISTER already moved the AOR on (its own write
            # carries the whole set, so the store catches up with memory when that one commits).
            if tuple(self.location.bindings(aor, now=now)) == written:
                self.location.replace_aor(aor, list(before))
                self._events.append(BindingsRestored(aor, tuple(self.location.bindings(aor, now=now))))
            response = tx.request.reply(
                500,
                "Server Internal Error (could not store the binding)",
                to_tag=response.to.tag,
                headers=[("Retry-After", "5")],
            )
        self.transactions.respond(tx, response, now=now)
        self._process(now)

    @property
    def pending_writes(self) -> int:
        """REGISTERs whose 200 waits for the store."""
        return len(self._pending)

    def qualify_all(self, *, now: float) -> None:
        """Start qualifying every binding (at start-up, for the bindings restored from the store)."""
        for binding in self.location.all_bindings(now=now):
            self._schedule_qualify(binding, now)

    def connection_lost(self, flow: Flow, *, now: float) -> None:
        """A TCP/TLS connection closed: its transactions fail; its bindings stay (the phone reconnects)."""
        self.transactions.transport_error(flow, now=now)
        self._process(now)

    # ------------------------------------------------------------------------------------------------
    # requests we originate (used by the usages)
    # ------------------------------------------------------------------------------------------------

    def via_for(self, flow: Flow) -> str:
        host, port = self.config.advertise.get(flow.transport, flow.local)
        host = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{flow.via_transport} {host}:{port};branch={new_branch()};rport"

    def contact_for(self, flow: Flow) -> str:
        """Our Contact URI for requests and responses leaving on `flow` (without angle brackets)."""
        host, port = self.config.advertise.get(flow.transport, flow.local)
        host = f"[{host}]" if ":" in host else host
        scheme = "sips" if flow.transport == "tls" else "sip"
        suffix = "" if flow.transport == "udp" else f";transport={flow.transport}"
        return f"{scheme}:softswitch@{host}:{port}{suffix}"

    def send_request(self, request: Request, flow: Flow, *, now: float) -> ClientTransaction:
        return self.transactions.send_request(request, flow, now=now)

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        self.transactions.send_stateless(message, flow)

    def cancel(
        self, tx: ClientTransaction, *, now: float, headers: Iterable[tuple[str, str]] = ()
    ) -> ClientTransaction | None:
        """CANCEL an INVITE we sent (§9.1); `headers` go into the CANCEL (a Reason, RFC 3326)."""
        return self.transactions.cancel(tx, now=now, headers=headers)

    def respond(self, tx: ServerTransaction, response: Response, *, now: float) -> None:
        self.transactions.respond(tx, response, now=now)

    # ------------------------------------------------------------------------------------------------
    # internals
    # ------------------------------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _collect(self) -> None:
        out = self.transactions.outgoing()
        if out:
            self._out.extend(out)

    def _process(self, now: float) -> None:
        layer = self.transactions
        while (event := layer.next_event()) is not None:
            match event:
                case RequestReceived(tx=tx):
                    self._on_request(tx, now)
                case ResponseReceived(tx=tx, response=response):
                    self._on_response(tx, response, now)
                case AckReceived(request=request, flow=flow):
                    if self.usage is not None:
                        self.usage.on_ack(request, flow, now=now)
                case StrayResponse(response=response, flow=flow):
                    if self._qualify_answer(response, now):
                        continue
                    if self.usage is not None:
                        self.usage.on_stray_response(response, flow, now=now)
                    else:
                        self._count("stray_response")
                case TransactionTimedOut(tx=tx):
                    self._on_timeout(tx, now, transport=isinstance(event, TransportFailed))
                case _:
                    pass
        self._collect()

    def _on_request(self, tx: ServerTransaction, now: float) -> None:
        request = tx.request
        method = request.method
        if method == "REGISTER":
            self._on_register(tx, now)
            return
        uri = request.uri
        # In-dialog requests (a To tag) are addressed to the Contact we gave, whatever host that names.
        in_dialog = request.to.tag is not None
        if (
            isinstance(uri, SipUri)
            and not in_dialog
            and not self.config.serves(uri.host)
            and not self._from_trunk(tx)
        ):
            self._reply(tx, 403, "Forbidden (domain not served)", now)
            return
        if method == "OPTIONS":
            self._reply(tx, 200, None, now, headers=self._capabilities())
            return
        unsupported = self._unsupported(request)
        if unsupported and method not in ("ACK", "CANCEL"):
            self._reply(tx, 420, None, now, headers=[("Unsupported", ", ".join(unsupported))])
            return
        usage = self.usage
        if method == "CANCEL":
            invite_tx = self.transactions.find_invite(request)
            if invite_tx is None or usage is None:
                self._reply(tx, 481, None, now)
            else:
                usage.on_cancel(tx, invite_tx, now=now)
            return
        if usage is not None and method in usage.methods:
            usage.on_request(tx, now=now)
            return
        self._reply(tx, 405, None, now, headers=[("Allow", ", ".join(self._allow()))])

    def _from_trunk(self, tx: ServerTransaction) -> bool:
        usage = self.usage
        checker = getattr(usage, "is_trunk", None)
        return bool(checker and checker(tx.flow))

    def _allow(self) -> tuple[str, ...]:
        extra = self.usage.methods if self.usage is not None else ()
        return tuple(dict.fromkeys((*ALLOW_BASE, *extra)))

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ", ".join(self._allow())),
            ("Accept", "application/sdp"),
            ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"),
            ("Supported", ", ".join(SUPPORTED)),
            ("Server", self.config.user_agent),
        ]

    def _unsupported(self, request: Request) -> list[str]:
        required = request.headers.values("require") if "require" in request.headers else []
        return [option for option in required if option.lower() not in SUPPORTED]

    def _reply(
        self,
        tx: ServerTransaction,
        status: int,
        reason: str | None,
        now: float,
        *,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        response = tx.request.reply(status, reason, to_tag=new_tag(), headers=headers or ())
        self.transactions.respond(tx, response, now=now)

    # -- REGISTER ---------------------------------------------------------------------------------------

    def _on_register(self, tx: ServerTransaction, now: float) -> None:
        request = tx.request
        uri = request.uri
        if not isinstance(uri, SipUri):
            self._reply(tx, 416, None, now)
            return
        if not self.config.serves(uri.host):
            self._reply(tx, 403, "Forbidden (domain not served)", now)
            return
        unsupported = self._unsupported(request)
        if unsupported:
            self._reply(tx, 420, None, now, headers=[("Unsupported", ", ".join(unsupported))])
            return
        user = self.authenticate(tx, now=now)
        if user is None:
            return
        before = tuple(self.location.bindings(self.registrar.aor_for(user), now=now))
        outcome = self.registrar.register(
            request, tx.flow, user=user, to_tag=new_tag(), now=now, wall=now + self.wall_offset
        )
        if outcome.changed:
            token = next(self._tokens)
            self._pending[token] = (tx, outcome.response, outcome.aor, before, outcome.bindings)
            self._events.append(PersistBindings(token, outcome.aor, outcome.bindings, tx.flow))
            for binding in outcome.bindings:
                self._schedule_qualify(binding, now)
            return
        self.transactions.respond(tx, outcome.response, now=now)

    def authenticate(self, tx: ServerTransaction, *, now: float) -> str | None:
        """Digest-authenticate a request and answer it when that fails; see `check_auth`."""
        check = self.check_auth(tx, now=now)
        if check.user is None:
            response = tx.request.reply(check.status, check.reason, to_tag=new_tag(), headers=check.headers)
            self.transactions.respond(tx, response, now=now)
        return check.user

    def check_auth(self, tx: ServerTransaction, *, now: float) -> AuthCheck:
        """Digest-authenticate a request (RFC 3261 §22, RFC 8760) without answering it.

        Returns the user, or the answer to give: 401 with a challenge when the request carries no
        credentials (or a stale/replayed nonce), 403 when they are wrong — the same 403 for an unknown
        user and a wrong password — and 400 when the Authorization header is malformed.
        """
        request = tx.request
        source = tx.flow.remote[0]
        authorization = request.headers.get("authorization")
        if authorization is None:
            return self._challenge_check(now, stale=False)
        try:
            credentials = parse_credentials(authorization)
        except AuthParseError as exc:
            return AuthCheck(None, 400, f"Bad Request (Authorization: {exc})")
        if self.guard.check(source, now=now) is Verdict.THROTTLE:
            # Too many recent failures from this address: refuse without looking at the password, so
            # guessing teaches nothing; the refusal counts as one more failure (guard.py).
            return self._auth_failed(source, credentials.username, "throttled", now)
        result = self.auth.verify(request.method, credentials, lookup=self.credentials, now=now)
        if result.outcome in (AuthOutcome.STALE, AuthOutcome.REPLAY):
            return self._challenge_check(now, stale=True)
        if not result.ok:
            return self._auth_failed(source, credentials.username, result.outcome.name.lower(), now)
        self.guard.record_success(source, now=now, user=credentials.username)
        return AuthCheck(result.username)

    def _challenge_check(self, now: float, *, stale: bool) -> AuthCheck:
        headers = tuple(("WWW-Authenticate", value) for value in self.auth.challenge(now=now, stale=stale))
        return AuthCheck(None, 401, None, headers)

    def _auth_failed(self, source: str, username: str, outcome: str, now: float) -> AuthCheck:
        self._events.append(AuthFailed(source, username, outcome))
        if self.guard.record_failure(source, now=now, user=username) is Verdict.BANNED:
            key = self.guard.key(source)
            until = next((u for banned, u in self.guard.bans(now=now) if banned == key), now)
            self._events.append(SourceBanned(source, until))
        return AuthCheck(None, 403, "Forbidden")

    # -- qualify (OPTIONS keep-alive and reachability) ----------------------------------------------

    def _schedule_qualify(self, binding: Binding, now: float) -> None:
        ident = (binding.aor, binding.key)
        if self.config.qualify_interval <= 0 or ident in self._qualify_scheduled:
            return
        self._qualify_scheduled.add(ident)
        # The first check comes soon after registering, so the table shows reachability early.
        due = now + min(2.0, self.config.qualify_interval)
        heapq.heappush(self._qualify_heap, (due, next(self._qualify_seq), binding.aor, binding.key))

    def _run_qualify(self, now: float) -> None:
        heap = self._qualify_heap
        while heap and heap[0][0] <= now:
            _, _, aor, key = heapq.heappop(heap)
            self._qualify_scheduled.discard((aor, key))
            binding = self.location.get(aor, key)
            if binding is None or binding.expires_at <= now:
                gone = self._qualify_inflight.pop((aor, key), None)  # no more probes for it: forget it
                if gone is not None:
                    self._qualify_by_call_id.pop(gone.call_id, None)
                continue
            self._send_qualify(binding, now)
            self._qualify_scheduled.add((aor, key))
            heapq.heappush(heap, (now + self.config.qualify_interval, next(self._qualify_seq), aor, key))
        timeouts = self._qualify_timeouts
        while timeouts and timeouts[0][0] <= now:
            _, _, aor, key = heapq.heappop(timeouts)
            probe = self._qualify_inflight.get((aor, key))
            if probe is not None and not probe.done and probe.sent_at + self.config.qualify_timeout <= now:
                probe.done = True
                self._qualify_by_call_id.pop(probe.call_id, None)
                del self._qualify_inflight[(aor, key)]
                self._qualified(aor, key, reachable=False, rtt=None, now=now)

    def _send_qualify(self, binding: Binding, now: float) -> None:
        """One OPTIONS over the binding's own flow, sent statelessly (as Kamailio's nathelper pings): a
        probe that gets no answer is not retransmitted — the next one comes `qualify_interval` later —
        so a dead phone costs one datagram per interval, not a transaction's eleven."""
        flow = binding.flow
        domain = self.config.domain
        call_id = f"qualify-{new_tag()}@{domain}"
        headers = Headers(
            [
                ("Via", self.via_for(flow)),
                ("Max-Forwards", "70"),
                ("From", f"<sip:qualify@{domain}>;tag={new_tag()}"),
                ("To", f"<{binding.contact}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 OPTIONS"),
                ("User-Agent", self.config.user_agent),
                ("Content-Length", "0"),
            ]
        )
        try:
            request = Request("OPTIONS", binding.contact, headers)
        except SipParseError:
            return
        previous = self._qualify_inflight.get((binding.aor, binding.key))
        if previous is not None:
            self._qualify_by_call_id.pop(previous.call_id, None)
        probe = _Qualify(binding.aor, binding.key, now, call_id)
        self._qualify_inflight[(binding.aor, binding.key)] = probe
        self._qualify_by_call_id[call_id] = probe
        self.transactions.send_stateless(request, flow)
        heapq.heappush(
            self._qualify_timeouts,
            (now + self.config.qualify_timeout, next(self._qualify_seq), binding.aor, binding.key),
        )

    def _qualify_answer(self, response: Response, now: float) -> bool:
        """A response to one of our qualify probes? Any final answer, even 404 or 405, proves the phone
        and its NAT pinhole are alive."""
        probe = self._qualify_by_call_id.get(response.call_id)
        if probe is None:
            return False
        if response.status >= 200 and not probe.done:
            probe.done = True
            del self._qualify_by_call_id[response.call_id]
            if self._qualify_inflight.get((probe.aor, probe.key)) is probe:
                del self._qualify_inflight[(probe.aor, probe.key)]
            self._qualified(probe.aor, probe.key, reachable=True, rtt=now - probe.sent_at, now=now)
        return True

    def _qualified(self, aor: str, key: str, *, reachable: bool, rtt: float | None, now: float) -> None:
        binding = self.location.get(aor, key)
        if binding is None:
            return
        state = self.location.reachability(aor, key)
        before = state.reachable
        state.reachable = reachable
        state.rtt = rtt
        state.last_checked = now
        state.failures = 0 if reachable else state.failures + 1
        if before != reachable:
            self._events.append(ReachabilityChanged(aor, key, binding.contact, reachable, rtt))

    def _on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        if self.usage is not None:
            self.usage.on_response(tx, response, now=now)

    def _on_timeout(
        self, tx: ClientTransaction | ServerTransaction, now: float, *, transport: bool = False
    ) -> None:
        usage = self.usage
        if usage is None:
            return
        # A usage that tells a dead flow (503, §8.1.3.1) from a timeout (408) has on_transport_failed.
        on_transport_failed = getattr(usage, "on_transport_failed", None) if transport else None
        if on_transport_failed is not None:
            on_transport_failed(tx, now=now)
        else:
            usage.on_timeout(tx, now=now)
