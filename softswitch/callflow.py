"""The glue between layers (style §10): SIP call events + media commands (+ the ACD, later), sans-IO.

For each call the B2BUA reports, callflow decides where it goes (by the dialled number: an agent's or
supervisor's extension, a trunk DID mapped to one, a queue), anchors its media at our relay (it implements
the B2BUA's `MediaHooks` with media/sdp.py and a `RelaySession` per call), turns relay events into call
events (DTMF, an RTP timeout that ends a call whose phone vanished) and produces the call detail records.
It reaches sockets and the store only through what app.py passes in (`MediaFactory`) and through the
events it emits (`CallRecordReady`), so everything here runs on literal times in tests.

Who may call what (the route table):
| caller                                   | may dial                                          | auth   |
|------------------------------------------|---------------------------------------------------|--------|
| a registered agent or supervisor         | any extension, queue number or DID                | digest |
| a trunk (matched by source network)      | that trunk's DIDs only                            | none   |
| anyone else (a customer's SIP phone)     | public numbers: queue numbers and trunk DIDs      | none   |
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from softswitch.media.relay import (
    DtmfEvent,
    Latched,
    Leg,
    MediaTimeout,
    RelayEvent,
    RelaySession,
    RemoteMedia,
)
from softswitch.media.sdp import (
    LocalOrigin,
    NegotiationError,
    SdpParseError,
    SessionDescription,
    anchor,
    answer_for,
    offer_for,
)
from softswitch.sip.b2bua import (
    B2bua,
    Call,
    CallAnswered,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallIncoming,
    CallRinging,
    CallState,
    ConnectFailed,
    MediaRefused,
    Side,
    Target,
    best_failure,
)
from softswitch.sip.invite import Leg as SipLeg
from softswitch.sip.location import Binding
from softswitch.store.records import CallRecord, LegRecord

__all__ = [
    "CallFlow",
    "CallLogged",
    "CallRecordReady",
    "Directory",
    "MediaFactory",
    "Route",
    "UserInfo",
]

log = logging.getLogger("softswitch.callflow")


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: str
    name: str
    extension: str | None
    role: Literal["agent", "supervisor"]


@dataclass(frozen=True, slots=True)
class Route:
    kind: Literal["user", "queue"]
    target: str  # user id or queue name


@dataclass
class Directory:
    """Numbers and people, built from the configuration by app.py (rebuilt on reload)."""

    domain: str
    users: dict[str, UserInfo] = field(default_factory=dict)
    numbers: dict[str, Route] = field(default_factory=dict)
    trunk_dids: dict[str, dict[str, str]] = field(default_factory=dict)

    def aor(self, user_id: str) -> str:
        return f"sip:{user_id}@{self.domain}"

    def public_numbers(self) -> set[str]:
        public = {n for n, r in self.numbers.items() if r.kind == "queue"}
        for dids in self.trunk_dids.values():
            public.update(dids)
        return public

    def is_public(self, number: str) -> bool:
        return number in self.public_numbers()

    def route(self, number: str, *, trunk: str | None, internal: bool) -> Route | None:
        if trunk is not None or not internal:
            for name, dids in self.trunk_dids.items():
                if (trunk is None or name == trunk) and number in dids:
                    return self.numbers.get(dids[number])
            if trunk is not None:
                return None
            route = self.numbers.get(number)
            return route if route is not None and route.kind == "queue" else None
        for dids in self.trunk_dids.values():
            if number in dids:
                return self.numbers.get(dids[number])
        return self.numbers.get(number)


class MediaFactory(Protocol):
    """Relay sessions with their ports bound (app.py implements it over real sockets)."""

    def open(self, call_id: str) -> RelaySession:
        """A session with both legs' ports bound; its events go to `CallFlow.on_relay_event`."""
        ...

    def poke(self, call_id: str) -> None: ...
    def close(self, call_id: str) -> None: ...


class Locations(Protocol):
    def bindings(self, aor: str, *, now: float) -> list[Binding]: ...


@dataclass(frozen=True, slots=True)
class CallRecordReady:
    """A finished call's records, for the store."""

    call: CallRecord
    legs: tuple[LegRecord, ...]


@dataclass(frozen=True, slots=True)
class CallLogged:
    """Something worth a log line: `what` is the event name, `fields` its details."""

    what: str
    fields: dict[str, object]


FlowEvent = CallRecordReady | CallLogged


@dataclass(eq=False)
class _Attempt:
    target: Target
    leg: SipLeg
    started_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    status: int | None = None


@dataclass(eq=False)
class _CallState:
    call: Call
    route: Route | None = None
    session: RelaySession | None = None
    origin_a: LocalOrigin | None = None
    origin_b: LocalOrigin | None = None
    address: str = "127.0.0.1"
    a_offered: bool = False  # the caller's INVITE carried an offer
    codec: str | None = None
    attempts: list[_Attempt] = field(default_factory=list)
    dtmf: str = ""
    detail: str | None = None
    media_timeout_leg: Leg | None = None


class CallFlow:
    """Routes calls, anchors their media, and writes their records. See the module docstring."""

    def __init__(
        self,
        *,
        directory: Directory,
        locations: Locations,
        media: MediaFactory,
        sdp_address: Callable[[Call], str],
        ring_timeout: float,
        wall_offset: float = 0.0,
    ) -> None:
        self.directory = directory
        self.locations = locations
        self.media = media
        self.sdp_address = sdp_address
        self.ring_timeout = ring_timeout
        self.wall_offset = wall_offset
        self.b2bua: B2bua | None = None
        self._calls: dict[str, _CallState] = {}
        self._events: deque[FlowEvent] = deque()
        self._session_ids = 1000

    # -- wiring --------------------------------------------------------------------------------------------

    def attach(self, b2bua: B2bua) -> None:
        self.b2bua = b2bua

    def next_event(self) -> FlowEvent | None:
        return self._events.popleft() if self._events else None

    def needs_auth(self, number: str, trunk: str | None) -> bool:
        return trunk is None and not self.directory.is_public(number)

    # -- call events from the B2BUA ------------------------------------------------------------------------

    def handle(self, event: CallEvent, *, now: float) -> None:
        match event:
            case CallIncoming(call=call):
                self._incoming(call, now)
            case CallRinging(call=call):
                self._log("ringing", call)
            case CallAnswered(call=call, target=target):
                state = self._calls.get(call.id)
                if state is not None:
                    if state.session is not None:
                        # Both legs are up: from now on a silent leg means a vanished phone.
                        state.session.start(now=now)
                        self.media.poke(call.id)
                    for attempt in state.attempts:
                        if attempt.leg is call.leg_b:
                            attempt.answered_at = now
                            attempt.status = 200
                self._log("answered", call, by=target.label or target.uri)
            case ConnectFailed(call=call, status=status, reason=reason):
                self._connect_failed(call, status, reason, now)
            case CallDtmf(call=call, side=side, digit=digit):
                self._dtmf(call, side, digit, "info", now)
            case CallEnded(call=call):
                self._ended(call, now)

    def _b2bua(self) -> B2bua:
        assert self.b2bua is not None, "CallFlow.attach(b2bua) first"
        return self.b2bua

    def _incoming(self, call: Call, now: float) -> None:
        state = _CallState(call)
        state.address = self.sdp_address(call)
        state.a_offered = call.leg_a.remote_sdp is not None
        self._calls[call.id] = state
        internal = call.caller_user is not None
        route = self.directory.route(call.dialed, trunk=call.trunk, internal=internal)
        state.route = route
        self._log("incoming", call, route=None if route is None else f"{route.kind}:{route.target}")
        b2bua = self._b2bua()
        if route is None:
            b2bua.reject(call, 404, "Not Found (no such number)", now=now, cause="not_found")
            return
        if route.kind == "queue":
            # The ACD issue plugs queues in here.
            b2bua.reject(call, 480, "Temporarily Unavailable (queue not served)", now=now, cause="no_queue")
            return
        user = self.directory.users.get(route.target)
        if user is None:
            b2bua.reject(call, 404, now=now, cause="not_found")
            return
        if call.caller_user == user.id:
            b2bua.reject(call, 486, "Busy Here (calling yourself)", now=now, cause="busy")
            return
        self._ring_user(state, user, now)

    def _ring_user(self, state: _CallState, user: UserInfo, now: float) -> None:
        call = state.call
        bindings = self.locations.bindings(self.directory.aor(user.id), now=now)
        targets = [Target(b.contact, b.flow, user.id) for b in bindings]
        if not targets:
            self._b2bua().reject(
                call, 480, "Temporarily Unavailable (not registered)", now=now, cause="unreachable"
            )
            return
        caller = self.directory.users.get(call.caller_user or "")
        from_display = caller.name if caller is not None else call.caller_name
        from_number = caller.extension or caller.id if caller is not None else call.caller_number
        self._b2bua().connect(
            call,
            targets,
            now=now,
            ring_timeout=self.ring_timeout,
            from_uri=f"sip:{from_number}@{self.directory.domain}",
            from_display=from_display,
        )
        for leg, target in call.forks.items():
            state.attempts.append(_Attempt(target, leg, now))

    def _connect_failed(self, call: Call, status: int, reason: str, now: float) -> None:
        state = self._calls.get(call.id)
        if state is not None:
            self._close_attempts(state, now)
            state.detail = reason
        self._b2bua().reject(call, status, None, now=now, cause=_cause_for(status))

    def _close_attempts(self, state: _CallState, now: float) -> None:
        results = state.call.fork_results
        for attempt in state.attempts:
            if attempt.ended_at is None and attempt.answered_at is None:
                attempt.ended_at = now
            if attempt.status is None and attempt.leg in results:
                attempt.status = results[attempt.leg]

    # -- media hooks (sip.b2bua.MediaHooks) ----------------------------------------------------------------

    def _state(self, call: Call) -> _CallState:
        state = self._calls.get(call.id)
        if state is None:
            raise MediaRefused("unknown call", 500)
        return state

    def _session(self, state: _CallState) -> RelaySession:
        if state.session is None:
            call_id = state.call.id
            state.session = self.media.open(call_id)
            self._session_ids += 2
            state.origin_a = LocalOrigin(session_id=self._session_ids, address=state.address)
            state.origin_b = LocalOrigin(session_id=self._session_ids + 1, address=state.address)
        return state.session

    def _ports(self, state: _CallState) -> tuple[int, int]:
        session = self._session(state)
        a_port = session.local_port(Leg.A)
        b_port = session.local_port(Leg.B)
        assert a_port is not None and b_port is not None
        return a_port, b_port

    def _update(self, state: _CallState, leg: Leg, sdp: SessionDescription, host: str, now: float) -> None:
        session = self._session(state)
        session.update(leg, RemoteMedia.from_sdp(sdp, signalling_host=host), now=now)
        self.media.poke(state.call.id)

    def offer_for_b(self, call: Call, sdp: bytes | None, *, now: float) -> bytes | None:
        state = self._state(call)
        _, b_port = self._ports(state)
        assert state.origin_b is not None
        if sdp is None:
            offer = offer_for(address=state.address, port=b_port, origin=state.origin_b)
            return str(offer).encode()
        parsed = _parse(sdp)
        self._update(state, Leg.A, parsed, call.leg_a.flow.remote[0], now)
        return str(anchor(parsed, address=state.address, port=b_port, origin=state.origin_b)).encode()

    def answer_for_a(self, call: Call, fork: SipLeg, sdp: bytes | None, *, now: float) -> bytes | None:
        state = self._state(call)
        a_port, _ = self._ports(state)
        assert state.origin_a is not None and state.session is not None
        if sdp is None:
            raise MediaRefused("the callee answered without SDP")
        parsed = _parse(sdp)
        self._update(state, Leg.B, parsed, fork.flow.remote[0], now)
        state.codec = _first_codec(parsed)
        return str(anchor(parsed, address=state.address, port=a_port, origin=state.origin_a)).encode()

    def acked_by_a(self, call: Call, sdp: bytes, *, now: float) -> None:
        state = self._state(call)
        self._update(state, Leg.A, _parse(sdp), call.leg_a.flow.remote[0], now)

    def offer_for_other(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        state = self._state(call)
        a_port, b_port = self._ports(state)
        if sdp is None:
            # A re-INVITE without an offer: offer the other side what it already has.
            other = call.leg_b if side == "a" else call.leg_a
            return None if other is None else other.local_sdp
        parsed = _parse(sdp)
        leg, host = self._leg_and_host(call, side)
        self._update(state, leg, parsed, host, now)
        port, origin = (b_port, state.origin_b) if side == "a" else (a_port, state.origin_a)
        assert origin is not None
        return str(anchor(parsed, address=state.address, port=port, origin=origin)).encode()

    def answer_for_other(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        # `side` answered our re-offer; the answer goes back to the other side.
        state = self._state(call)
        a_port, b_port = self._ports(state)
        if sdp is None:
            raise MediaRefused("the re-INVITE was answered without SDP")
        parsed = _parse(sdp)
        leg, host = self._leg_and_host(call, side)
        self._update(state, leg, parsed, host, now)
        state.codec = _first_codec(parsed) or state.codec
        port, origin = (a_port, state.origin_a) if side == "b" else (b_port, state.origin_b)
        assert origin is not None
        return str(anchor(parsed, address=state.address, port=port, origin=origin)).encode()

    def answer_locally(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        state = self._state(call)
        a_port, b_port = self._ports(state)
        port, origin = (a_port, state.origin_a) if side == "a" else (b_port, state.origin_b)
        assert origin is not None
        if sdp is None:
            return str(offer_for(address=state.address, port=port, origin=origin)).encode()
        parsed = _parse(sdp)
        leg, host = self._leg_and_host(call, side)
        self._update(state, leg, parsed, host, now)
        try:
            answer = answer_for(parsed, address=state.address, port=port, origin=origin)
        except NegotiationError as exc:
            raise MediaRefused(str(exc)) from None
        return str(answer).encode()

    def _leg_and_host(self, call: Call, side: Side) -> tuple[Leg, str]:
        if side == "a":
            return Leg.A, call.leg_a.flow.remote[0]
        assert call.leg_b is not None
        return Leg.B, call.leg_b.flow.remote[0]

    # -- relay events --------------------------------------------------------------------------------------

    def on_relay_event(self, call_id: str, event: RelayEvent, *, now: float) -> None:
        """A relay event for a call (app.py delivers them with the loop's time)."""
        state = self._calls.get(call_id)
        if state is None:
            return
        match event:
            case DtmfEvent(leg=leg, digit=digit):
                self._dtmf(state.call, "a" if leg is Leg.A else "b", digit, "rfc4733", now)
            case MediaTimeout(leg=leg):
                who = "caller" if leg is Leg.A else "callee"
                state.media_timeout_leg = leg
                state.detail = f"{event.reason}: the {who}'s phone stopped sending media"
                self._log("media_timeout", state.call, leg=who, silent_for=round(event.silent_for, 1))
                self._b2bua().hangup(state.call, now=now, cause="media_timeout", by=who, status=408)
            case Latched(leg=leg, address=address, reason=reason, rtcp=rtcp):
                if not rtcp:
                    self._log(
                        "latched",
                        state.call,
                        leg=str(leg.value),
                        address=f"{address[0]}:{address[1]}",
                        reason=reason,
                    )
            case _:
                pass

    def _dtmf(self, call: Call, side: Side, digit: str, method: str, now: float) -> None:
        state = self._calls.get(call.id)
        if state is not None:
            state.dtmf = (state.dtmf + digit)[-32:]
        self._log("dtmf", call, side=side, digit=digit, method=method)

    # -- the end -------------------------------------------------------------------------------------------

    def _ended(self, call: Call, now: float) -> None:
        state = self._calls.pop(call.id, None)
        if state is None:
            return
        self._log("ended", call, cause=call.end_cause, by=call.ended_by)
        self._close_attempts(state, now)
        legs = self._leg_records(state, now)
        if state.session is not None:
            self.media.close(call.id)
        self._events.append(CallRecordReady(self._call_record(state, now), legs))

    def _call_record(self, state: _CallState, now: float) -> CallRecord:
        call = state.call
        wall = self.wall_offset
        answered = call.answered_at is not None and call.target is not None
        status = None if answered else _end_status(call)
        return CallRecord(
            call_id=call.id,
            sip_call_id=call.leg_a.call_id,
            caller=call.caller_number,
            caller_name=call.caller_name,
            caller_user=call.caller_user,
            trunk=call.trunk,
            called=call.dialed,
            route=None if state.route is None else f"{state.route.kind}:{state.route.target}",
            agent=call.target.label if answered and call.target is not None else None,
            queue=state.route.target if state.route is not None and state.route.kind == "queue" else None,
            started_at=call.created_at + wall,
            answered_at=None if call.answered_at is None else call.answered_at + wall,
            ended_at=(call.ended_at or now) + wall,
            disposition=_disposition(call, answered),
            hangup_cause=call.end_cause or "unknown",
            hangup_by=call.ended_by or "switch",
            status=status,
            codec=state.codec,
            detail=state.detail,
        )

    def _leg_records(self, state: _CallState, now: float) -> tuple[LegRecord, ...]:
        call = state.call
        wall = self.wall_offset
        session = state.session
        a_stats = session.stats(Leg.A) if session is not None else None
        b_stats = session.stats(Leg.B) if session is not None else None
        end = (call.ended_at or now) + wall
        rows = [
            LegRecord(
                call_id=call.id,
                leg="a",
                peer=call.caller_number,
                sip_call_id=call.leg_a.call_id,
                remote=f"{call.leg_a.flow.remote[0]}:{call.leg_a.flow.remote[1]}",
                transport=call.leg_a.flow.transport,
                started_at=call.created_at + wall,
                answered_at=None if call.answered_at is None else call.answered_at + wall,
                ended_at=end,
                status=200 if call.a_answered else _end_status(call),
                codec=state.codec,
                rx_packets=a_stats.packets if a_stats else 0,
                rx_lost=max(0, a_stats.lost) if a_stats else 0,
                rx_jitter_ms=round(a_stats.jitter_ms, 2) if a_stats else 0.0,
                tx_packets=b_stats.packets if b_stats else 0,
            )
        ]
        for attempt in state.attempts:
            winner = attempt.leg is call.leg_b
            rows.append(
                LegRecord(
                    call_id=call.id,
                    leg="b",
                    peer=attempt.target.label or attempt.target.uri,
                    sip_call_id=attempt.leg.call_id,
                    remote=f"{attempt.target.flow.remote[0]}:{attempt.target.flow.remote[1]}",
                    transport=attempt.target.flow.transport,
                    started_at=attempt.started_at + wall,
                    answered_at=None if attempt.answered_at is None else attempt.answered_at + wall,
                    ended_at=(attempt.ended_at or call.ended_at or now) + wall,
                    status=200 if winner else (attempt.status or 487),
                    codec=state.codec if winner else None,
                    rx_packets=b_stats.packets if (winner and b_stats) else 0,
                    rx_lost=max(0, b_stats.lost) if (winner and b_stats) else 0,
                    rx_jitter_ms=round(b_stats.jitter_ms, 2) if (winner and b_stats) else 0.0,
                    tx_packets=a_stats.packets if (winner and a_stats) else 0,
                )
            )
        return tuple(rows)

    # -- views ---------------------------------------------------------------------------------------------

    def live_calls(self, now: float) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for state in self._calls.values():
            call = state.call
            out.append(
                {
                    "id": call.id,
                    "caller": call.caller_number,
                    "caller_name": call.caller_name,
                    "called": call.dialed,
                    "agent": call.target.label if call.target is not None else None,
                    "state": _live_state(call),
                    "started_at": round(call.created_at + self.wall_offset, 3),
                    "duration": round(now - call.created_at, 1),
                    "talk_time": None if call.answered_at is None else round(now - call.answered_at, 1),
                    "codec": state.codec,
                    "trunk": call.trunk,
                    "dtmf": state.dtmf,
                }
            )
        return out

    def _log(self, what: str, call: Call, **fields: object) -> None:
        self._events.append(
            CallLogged(what, {"call": call.id, "caller": call.caller_number, "called": call.dialed, **fields})
        )


def _parse(sdp: bytes) -> SessionDescription:
    try:
        parsed = SessionDescription.parse(sdp)
    except SdpParseError as exc:
        raise MediaRefused(f"malformed SDP: {exc}", 400) from None
    if parsed.first_audio() is None:
        raise MediaRefused("no audio stream in the SDP")
    return parsed


def _first_codec(sdp: SessionDescription) -> str | None:
    index = sdp.first_audio()
    if index is None:
        return None
    for codec in sdp.media[index].codecs():
        if codec.name.lower() not in ("telephone-event", "cn", "comfort-noise"):
            return codec.name
    return None


def _end_status(call: Call) -> int | None:
    if call.end_cause == "cancelled":
        return 487
    statuses = call.fork_statuses
    if statuses:
        return best_failure(list(statuses))
    return None


def _cause_for(status: int) -> str:
    return {486: "busy", 600: "busy", 603: "declined", 480: "no_answer", 404: "not_found"}.get(
        status, "failed"
    )


def _disposition(call: Call, answered: bool) -> str:
    if answered:
        return "answered"
    cause = call.end_cause or ""
    if cause == "cancelled":
        return "cancelled"
    if cause in ("busy", "declined", "no_answer", "not_found", "unreachable"):
        return {"not_found": "failed", "unreachable": "no_answer"}.get(cause, cause)
    if cause == "rejected":
        return "rejected"
    return "failed"


def _live_state(call: Call) -> str:
    return {
        CallState.INCOMING: "routing",
        CallState.CONNECTING: "ringing" if call.ringing else "dialing",
        CallState.ANSWERED: "answered",
        CallState.BRIDGED: "talking",
        CallState.ENDED: "ended",
    }[call.state]
