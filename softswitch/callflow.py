"""The glue between layers (style §10): SIP call events + ACD decisions + media commands, sans-IO.

For each call the B2BUA reports, callflow decides where it goes (by the dialled number: an agent's or
supervisor's extension, a trunk DID mapped to one, a queue), anchors its media at our relay (it implements
the B2BUA's `MediaHooks` with media/sdp.py and a `RelaySession` per call), turns relay events into call
events (DTMF, an RTP timeout that ends a call whose phone vanished) and produces the call detail records.
It reaches sockets and the store only through what app.py passes in (`MediaFactory`) and through the
events it emits (`CallRecordReady`), so everything here runs on literal times in tests.

A queue call: the switch answers the caller itself (its own SDP answer from the relay's A side), the ACD
engine gets `call_arrived`, and its actions drive everything after: music on hold and announcements are
local audio fed to the caller's leg (ticked by the one media clock); each `OfferCall` rings the agent's
registered phones over their own flows with an offer in the codec the caller already uses; the first
agent to answer is bridged (the music stops, the relay joins A and B); a ring-no-answer, a busy or an
unreachable phone goes back to the engine as `offer_failed`; the end of the call, an abandon or the exit
key likewise. Feature codes (login, logout, pause, resume, end wrap-up) are calls the switch answers,
confirms with a prompt and hangs up.

Who may call what (the route table):
| caller                                   | may dial                                          | auth   |
|------------------------------------------|---------------------------------------------------|--------|
| a registered agent or supervisor         | any extension, queue number or DID                | digest |
| a trunk (matched by source network)      | that trunk's DIDs only                            | none   |
| anyone else (a customer's SIP phone)     | public numbers: queue numbers and trunk DIDs      | none   |
| a registered agent                       | feature codes (`features:` in the config)         | digest |
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from softswitch.acd import (
    AcdEngine,
    Ack,
    AnnouncePosition,
    CancelOffer,
    ConnectCall,
    ExitTo,
    OfferCall,
    Overflow,
    PauseAgent,
    PlayPrompt,
    Record,
    StartMusicOnHold,
    TimeOut,
)
from softswitch.media.player import Chain, LoopingPlayer, PromptPlayer, Sound
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
    negotiate,
    offer_for,
)
from softswitch.media.tones import render
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
    ForkFailed,
    MediaRefused,
    Side,
    Target,
    best_failure,
)
from softswitch.sip.invite import Leg as SipLeg
from softswitch.sip.location import Binding, Reachability
from softswitch.store.records import CallRecord, LegRecord

__all__ = [
    "AcdRecord",
    "CallFlow",
    "CallLogged",
    "CallRecordReady",
    "Directory",
    "MediaFactory",
    "Route",
    "Sounds",
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
    kind: Literal["user", "queue", "feature"]
    target: str  # user id, queue name, or feature name (login, logout, pause, resume, end_wrap_up)
    arg: str = ""  # for a feature: what was dialled after the code (a pause reason)


@dataclass
class Directory:
    """Numbers and people, built from the configuration by app.py (rebuilt on reload)."""

    domain: str
    users: dict[str, UserInfo] = field(default_factory=dict)
    numbers: dict[str, Route] = field(default_factory=dict)
    trunk_dids: dict[str, dict[str, str]] = field(default_factory=dict)
    queue_names: set[str] = field(default_factory=set)
    # feature code matcher: "*132" -> ("pause", "2"), or None (config FeatureCodes.match)
    feature: Callable[[str], tuple[str, str] | None] = field(default=lambda number: None)

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
        found = self.numbers.get(number)
        if found is not None:
            return found
        feature = self.feature(number)
        if feature is not None:
            return Route("feature", feature[0], feature[1])
        return None

    def target(self, target: str) -> Route | None:
        """Where a queue's `exit_to` sends a caller: an extension, a queue number or a queue name."""
        if target in self.queue_names:
            return Route("queue", target)
        return self.route(target, trunk=None, internal=True)


class MediaFactory(Protocol):
    """Relay sessions with their ports bound (app.py implements it over real sockets)."""

    def open(self, call_id: str) -> RelaySession:
        """A session with both legs' ports bound; its events go to `CallFlow.on_relay_event`."""
        ...

    def poke(self, call_id: str) -> None: ...
    def ticking(self, call_id: str, on: bool) -> None:
        """Tick the session on the media clock (it plays local audio) or stop ticking it."""
        ...

    def close(self, call_id: str) -> None: ...


class Sounds(Protocol):
    """Decoded prompts and music (app.py builds it from prompts.PromptLibrary and the queues' `moh`)."""

    def music(self, queue: str | None) -> Sound | None: ...
    def prompt(self, name: str) -> Sound | None: ...
    def position(self, position: int) -> list[Sound]: ...
    def wait(self, seconds: float | None) -> list[Sound]: ...
    def feature(self, action: str, ack: str) -> Sound | None:
        """The confirmation of a feature code (`ack` is the engine's answer)."""
        ...

    def goodbye(self, reason: str, to: str | None) -> Sound | None:
        """What a caller hears when the queue lets go of the call."""
        ...


class Locations(Protocol):
    def bindings(self, aor: str, *, now: float) -> list[Binding]: ...
    def peek_reachability(self, aor: str, key: str) -> Reachability | None: ...


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


@dataclass(frozen=True, slots=True)
class AcdRecord:
    """A queue event or agent state change from the ACD engine (times are the engine's monotonic `now`)."""

    record: Record


FlowEvent = CallRecordReady | CallLogged | AcdRecord


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
    queue: str | None = None  # the queue the call is in (or was connected from)
    in_acd: bool = False  # the engine knows this call
    answered_locally: bool = False  # the switch answered the caller (queue, feature code, prompt)
    direct_agents: set[str] = field(default_factory=set)  # agents on this call outside any queue
    ends_at: float | None = None  # hang up then (after a goodbye or confirmation prompt)
    visited_queues: set[str] = field(default_factory=set)  # queues entered, so exits cannot loop
    prompt_at: float | None = None  # when the prompt now playing was started ...
    prompt_sounds: list[Sound] = field(default_factory=list)  # ... and what it says
    end_status: int | None = None  # the final status the caller got, when the call was refused


class CallFlow:
    """Routes calls, runs queues through the ACD engine, anchors media and writes records."""

    def __init__(
        self,
        *,
        directory: Directory,
        locations: Locations,
        media: MediaFactory,
        sdp_address: Callable[[Call], str],
        ring_timeout: float,
        wall_offset: float = 0.0,
        acd: AcdEngine | None = None,
        sounds: Sounds | None = None,
    ) -> None:
        self.directory = directory
        self.locations = locations
        self.media = media
        self.sdp_address = sdp_address
        self.ring_timeout = ring_timeout
        self.wall_offset = wall_offset
        self.acd = acd
        self.sounds = sounds
        self.b2bua: B2bua | None = None
        self._calls: dict[str, _CallState] = {}
        self._direct_calls: dict[str, int] = {}  # agent -> live calls it is on outside any queue
        self._events: deque[FlowEvent] = deque()
        self._session_ids = 1000
        self._timers: list[tuple[float, int, str]] = []  # (when, seq, call id): hang up after a prompt
        self.draining = False  # shutting down: new calls are refused with 503
        self._seq = itertools.count()

    # -- wiring --------------------------------------------------------------------------------------------

    def attach(self, b2bua: B2bua) -> None:
        self.b2bua = b2bua

    def next_event(self) -> FlowEvent | None:
        return self._events.popleft() if self._events else None

    def needs_auth(self, number: str, trunk: str | None) -> bool:
        return trunk is None and not self.directory.is_public(number)

    def next_deadline(self) -> float | None:
        """The earliest of the ACD's deadlines and our own (hang-ups after a prompt)."""
        heap = self._timers
        while heap:
            at, _, call_id = heap[0]
            state = self._calls.get(call_id)
            if state is None or state.ends_at != at:
                heapq.heappop(heap)
                continue
            break
        candidates = [heap[0][0] if heap else None, self.acd.next_deadline() if self.acd else None]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def handle_timer(self, *, now: float) -> None:
        if self.acd is not None:
            self.acd.handle_timer(now=now)
            self._run_acd(now)
        heap = self._timers
        while heap and heap[0][0] <= now:
            at, _, call_id = heapq.heappop(heap)
            state = self._calls.get(call_id)
            if state is not None and state.ends_at == at:
                state.ends_at = None
                self._b2bua().hangup(state.call, now=now, cause=state.detail or "completed", status=480)

    # -- call events from the B2BUA ------------------------------------------------------------------------

    def handle(self, event: CallEvent, *, now: float) -> None:
        match event:
            case CallIncoming(call=call):
                self._incoming(call, now)
            case CallRinging(call=call):
                self._log("ringing", call)
            case CallAnswered(call=call, target=target, sdp=sdp):
                self._answered(call, target, sdp, now)
            case ForkFailed(call=call, target=target, status=status):
                self._fork_failed(call, target, status, now)
            case ConnectFailed(call=call, status=status, reason=reason, statuses=statuses):
                self._connect_failed(call, status, reason, statuses, now)
            case CallDtmf(call=call, side=side, digit=digit):
                self._dtmf(call, side, digit, "info", now)
            case CallEnded(call=call, status=status):
                self._ended(call, status, now)
        self._run_acd(now)

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
        if self.draining:
            b2bua.reject(call, 503, "Service Unavailable (shutting down)", now=now, cause="shutdown")
            return
        if route is None:
            b2bua.reject(call, 404, "Not Found (no such number)", now=now, cause="not_found")
            return
        if route.kind != "feature" and call.caller_user is not None and self._is_agent(call.caller_user):
            # An agent placing a call is busy for the ACD (a feature code is not a call).
            self._direct_call_started(state, call.caller_user, now)
        if route.kind == "queue":
            self._enter_queue(state, route.target, now)
            return
        if route.kind == "feature":
            self._feature(state, route, now)
            return
        user = self.directory.users.get(route.target)
        if user is None:
            b2bua.reject(call, 404, now=now, cause="not_found")
            return
        if call.caller_user == user.id:
            b2bua.reject(call, 486, "Busy Here (calling yourself)", now=now, cause="busy")
            return
        self._ring_user(state, user, now)

    def _targets(self, user_id: str, now: float) -> list[Target]:
        """The contacts to ring for a user: every live binding except those whose qualify failed (a
        phone known to be gone is not rung; the next qualify brings it back)."""
        locations = self.locations
        out = []
        for binding in locations.bindings(self.directory.aor(user_id), now=now):
            reach = locations.peek_reachability(binding.aor, binding.key)
            if reach is not None and reach.reachable is False:
                continue
            out.append(Target(binding.contact, binding.flow, user_id))
        return out

    def _ring_user(self, state: _CallState, user: UserInfo, now: float) -> None:
        call = state.call
        targets = self._targets(user.id, now)
        if not targets:
            if call.a_answered:
                self._goodbye(state, "unreachable", now)
            else:
                self._b2bua().reject(
                    call, 480, "Temporarily Unavailable (not registered)", now=now, cause="unreachable"
                )
            return
        caller = self.directory.users.get(call.caller_user or "")
        from_display = caller.name if caller is not None else call.caller_name
        from_number = caller.extension or caller.id if caller is not None else call.caller_number
        sdp = self._offer_for_agent(state) if call.a_answered else None
        self._b2bua().connect(
            call,
            targets,
            now=now,
            ring_timeout=self.ring_timeout,
            sdp=sdp,
            from_uri=f"sip:{from_number}@{self.directory.domain}",
            from_display=from_display,
        )
        for leg, target in call.forks.items():
            state.attempts.append(_Attempt(target, leg, now))

    def _answered(self, call: Call, target: Target, sdp: bytes | None, now: float) -> None:
        state = self._calls.get(call.id)
        if state is None:
            return
        cancelled_colleagues: set[str] = set()
        for attempt in state.attempts:
            if attempt.leg is call.leg_b:
                attempt.answered_at = now
                attempt.status = 200
            elif attempt.ended_at is None and attempt.answered_at is None:
                attempt.ended_at = now  # cancelled: answered elsewhere
                if attempt.target.label != target.label:
                    cancelled_colleagues.add(attempt.target.label)
        if state.answered_locally and sdp is not None and call.leg_b is not None:
            # The switch answered the caller earlier: the agent's answer is the B side of the relay.
            try:
                self._update(state, Leg.B, _parse(sdp), call.leg_b.flow.remote[0], now)
            except MediaRefused as exc:
                state.detail = exc.reason
                self._b2bua().drop_b(call, now=now, reason="media refused")
                if state.in_acd and self.acd is not None:
                    # The B2BUA cancelled the colleagues' rings when this answer came in (ring_all): they
                    # are free again, through no fault of theirs, before the call looks for an agent anew.
                    for colleague in sorted(cancelled_colleagues):
                        self.acd.offer_withdrawn(
                            call.id, colleague, reason="answered_elsewhere_failed", now=now
                        )
                    self.acd.offer_failed(call.id, target.label, reason="rejected", now=now)
                else:
                    self._goodbye(state, "media_refused", now)
                return
        if state.in_acd and self.acd is not None:
            # The engine decides: ConnectCall bridges, CancelOffer(withdrawn) hangs the agent up.
            self.acd.offer_answered(call.id, target.label, now=now)
        else:
            self._bridge(state, now)
            if self._is_agent(target.label):
                self._direct_call_started(state, target.label, now)
        self._log("answered", call, by=target.label or target.uri)

    def _bridge(self, state: _CallState, now: float) -> None:
        """Both legs are up: stop local audio, and from now on a silent leg means a vanished phone."""
        session = state.session
        if session is None:
            return
        if state.answered_locally:
            session.feed(Leg.A, None)
            self.media.ticking(state.call.id, session.ticking)
        session.start(now=now)
        self.media.poke(state.call.id)

    def _fork_failed(self, call: Call, target: Target, status: int, now: float) -> None:
        state = self._calls.get(call.id)
        if state is None or not state.in_acd or self.acd is None:
            return
        if any(t.label == target.label for t in call.forks.values()):
            return  # the agent's other phone is still ringing
        reason = (
            "rejected"
            if status in (486, 600, 603)
            else "unreachable"
            if status in (408, 503)
            else "no_answer"
        )
        self.acd.offer_failed(call.id, target.label, reason=reason, now=now)

    def _connect_failed(
        self, call: Call, status: int, reason: str, statuses: tuple[int, ...], now: float
    ) -> None:
        # Every fork unreachable (408 no response, 503 flow gone) is not the same as nobody answering.
        cause = "unreachable" if statuses and all(s in (408, 503) for s in statuses) else _cause_for(status)
        state = self._calls.get(call.id)
        if state is not None:
            self._close_attempts(state, now)
            state.detail = reason
            if state.in_acd:
                return  # the engine heard about each fork (ForkFailed) and decides what next
            if call.a_answered:
                self._goodbye(state, cause, now)
                return
        self._b2bua().reject(call, status, None, now=now, cause=cause)

    def _close_attempts(self, state: _CallState, now: float, *, agent: str | None = None) -> None:
        """Close the open ring attempts (only `agent`'s, when given) and take their final statuses."""
        results = state.call.fork_results
        for attempt in state.attempts:
            if agent is not None and attempt.target.label != agent:
                continue
            if attempt.ended_at is None and attempt.answered_at is None:
                attempt.ended_at = now
            if attempt.status is None and attempt.leg in results:
                attempt.status = results[attempt.leg]

    # -- queues: the ACD engine's side ---------------------------------------------------------------------

    def _enter_queue(self, state: _CallState, queue: str, now: float) -> None:
        call = state.call
        if self.acd is None or queue not in self.acd.queue_names():
            self._b2bua().reject(
                call, 480, "Temporarily Unavailable (queue not served)", now=now, cause="no_queue"
            )
            return
        if not call.a_answered and not self._answer_caller(state, now):
            return
        state.queue = queue
        state.in_acd = True
        state.visited_queues.add(queue)
        self.acd.call_arrived(call.id, queue, caller=call.caller_number, now=now)
        self._log("queued", call, queue=queue)

    def _answer_caller(self, state: _CallState, now: float) -> bool:
        """Answer the caller ourselves with the relay's A side (queue, feature code, goodbye prompt)."""
        call = state.call
        try:
            a_port, _ = self._ports(state)
        except MediaRefused as exc:
            self._b2bua().reject(call, exc.status, exc.reason, now=now, cause="media_refused")
            return False
        session = state.session
        assert session is not None and state.origin_a is not None
        offer = call.leg_a.remote_sdp
        if offer is None:  # a delayed offer: ours goes in the 200, the answer comes in the ACK
            # PCMU alone: music and prompts start before the ACK tells which codec the caller chose, and a
            # stream's codec is fixed when it starts.
            answer = offer_for(address=state.address, port=a_port, origin=state.origin_a, codecs=("PCMU",))
            state.codec = "PCMU"
        else:
            try:
                parsed = _parse(offer)
                agreed = negotiate(parsed)
                answer = answer_for(parsed, address=state.address, port=a_port, origin=state.origin_a)
            except (MediaRefused, NegotiationError) as exc:
                self._b2bua().reject(
                    call, 488, f"Not Acceptable Here ({exc})", now=now, cause="media_refused"
                )
                return False
            session.update(
                Leg.A,
                RemoteMedia.from_negotiation(agreed, signalling_host=call.leg_a.flow.remote[0]),
                now=now,
            )
            state.codec = agreed.codec.name
        self._b2bua().answer(call, str(answer).encode(), now=now)
        state.answered_locally = True
        session.start(now=now)
        self.media.poke(call.id)
        return True

    def _offer_for_agent(self, state: _CallState) -> bytes:
        """What we offer an agent for a caller we answered: the caller's codec, from the relay's B side."""
        _, b_port = self._ports(state)
        assert state.origin_b is not None
        codecs = (state.codec,) if state.codec in ("PCMU", "PCMA") else ("PCMU", "PCMA")
        return str(
            offer_for(address=state.address, port=b_port, origin=state.origin_b, codecs=codecs)
        ).encode()

    def _run_acd(self, now: float) -> None:
        acd = self.acd
        if acd is None:
            return
        for _ in range(1000):  # actions can cause inputs (an unreachable agent) that cause actions
            actions = acd.actions()
            for record in acd.records():
                self._events.append(AcdRecord(record))
            if not actions:
                return
            for action in actions:
                try:
                    self._act(action, now)
                except Exception:  # a bug must not lose the rest of the batch (offers, connects, cancels)
                    log.exception("x acting on %r failed", action)

    def _act(self, action: object, now: float) -> None:
        acd = self.acd
        assert acd is not None
        match action:
            case OfferCall(call=call_id, agent=agent, ring_until=ring_until):
                state = self._calls.get(call_id)
                if state is not None:
                    self._offer(state, agent, ring_until, now)
                else:  # the call is gone: say so, and leave the agent's reachability alone
                    acd.caller_abandoned(call_id, now=now)
            case CancelOffer(call=call_id, agent=agent, reason=reason):
                state = self._calls.get(call_id)
                if state is None:
                    return
                call = state.call
                if call.target is not None and call.target.label == agent and call.leg_b is not None:
                    self._b2bua().drop_b(call, now=now, reason=reason)
                else:
                    self._b2bua().cancel_target(call, agent, now=now, reason=_cancel_reason(reason))
                    self._close_attempts(state, now, agent=agent)
            case ConnectCall(call=call_id, agent=agent):
                state = self._calls.get(call_id)
                if state is not None:
                    self._bridge(state, now)
                    self._log("connected", state.call, agent=agent, queue=state.queue)
            case StartMusicOnHold(call=call_id):
                state = self._calls.get(call_id)
                if state is not None:
                    self._play(state, [], now)
            case PlayPrompt(call=call_id, prompt=prompt):
                state = self._calls.get(call_id)
                sound = self.sounds.prompt(prompt) if self.sounds is not None else None
                if state is not None and sound is not None:
                    self._play(state, [sound], now)
            case AnnouncePosition(call=call_id, position=position, estimated_wait=wait):
                state = self._calls.get(call_id)
                if state is not None and self.sounds is not None:
                    self._play(state, [*self.sounds.position(position), *self.sounds.wait(wait)], now)
            case Overflow(call=call_id, to_queue=to_queue, from_queue=from_queue):
                state = self._calls.get(call_id)
                if state is not None:
                    state.queue = to_queue
                    self._log("overflow", state.call, queue=to_queue, from_queue=from_queue)
            case TimeOut(call=call_id, reason=reason, to=to):
                state = self._calls.get(call_id)
                if state is not None:
                    state.in_acd = False
                    self._log("queue_timeout", state.call, reason=reason, to=to)
                    self._send_elsewhere(state, to, reason, now)
            case ExitTo(call=call_id, target=target, digit=digit):
                state = self._calls.get(call_id)
                if state is not None:
                    state.in_acd = False
                    self._log("queue_exit", state.call, digit=digit, to=target)
                    self._send_elsewhere(state, target, "exit_key", now)
            case PauseAgent(agent=agent, reason=reason):
                self._events.append(CallLogged("agent_auto_paused", {"agent": agent, "reason": reason}))

    def _offer(self, state: _CallState, agent: str, ring_until: float, now: float) -> None:
        acd = self.acd
        assert acd is not None
        call = state.call
        if call.state is CallState.ENDED:
            return  # its CallEnded is on its way and withdraws the offer; the agent's phone is fine
        targets = self._targets(agent, now)
        if not targets:
            acd.offer_failed(call.id, agent, reason="unreachable", now=now)
            return
        before = set(call.forks)
        self._b2bua().connect(
            call,
            targets,
            now=now,
            ring_timeout=max(1.0, ring_until - now) + 2.0,  # a backstop: the engine times offers out
            sdp=self._offer_for_agent(state),
            from_uri=f"sip:{call.caller_number}@{self.directory.domain}",
            from_display=call.caller_name,
            add=True,
        )
        for leg, target in call.forks.items():
            if leg not in before:
                state.attempts.append(_Attempt(target, leg, now))
        self._log("offered", call, agent=agent, queue=state.queue)

    def _play(self, state: _CallState, sounds: list[Sound], now: float, *, then_music: bool = True) -> None:
        """Play `sounds` to the caller, then the queue's music (or silence)."""
        session = state.session
        if session is None or self.sounds is None:
            return
        music = self.sounds.music(state.queue) if then_music else None
        tail = LoopingPlayer(music) if music is not None else None
        if then_music and state.prompt_at == now:
            # Another prompt was started at this very instant ("transferring", an announcement before the
            # position): the caller hears it first, rather than this one replacing it unheard.
            sounds = [*state.prompt_sounds, *sounds]
        state.prompt_at, state.prompt_sounds = (now, sounds) if sounds else (None, [])
        if sounds:
            session.feed(Leg.A, Chain(PromptPlayer(sounds), tail))
        elif tail is not None:
            session.feed(Leg.A, tail)
        else:
            return
        self.media.ticking(state.call.id, True)

    def _send_elsewhere(self, state: _CallState, target: str | None, reason: str, now: float) -> None:
        route = self.directory.target(target) if target else None
        if route is None:
            self._goodbye(state, reason, now)
            return
        sound = self.sounds.goodbye(reason, target) if self.sounds is not None else None
        if sound is not None:
            self._play(state, [sound], now, then_music=False)  # "transferring"
        if route.kind == "queue":
            if route.target in state.visited_queues:  # exit_to/timeout targets that lead back: stop here
                self._log("queue_loop", state.call, queue=route.target)
                self._goodbye(state, reason, now)
                return
            self._enter_queue(state, route.target, now)
            return
        user = self.directory.users.get(route.target) if route.kind == "user" else None
        if user is None:
            self._goodbye(state, reason, now)
            return
        state.route = route
        self._ring_user(state, user, now)

    def _goodbye(self, state: _CallState, cause: str, now: float) -> None:
        """Tell an answered caller we are sorry and hang up when the prompt has played."""
        call = state.call
        if not call.a_answered:
            self._b2bua().reject(call, 480, now=now, cause=cause)
            return
        sound = self.sounds.goodbye(cause, None) if self.sounds is not None else None
        state.detail = cause
        if sound is not None and state.session is not None:
            self._play(state, [sound], now, then_music=False)
            self._hang_up_at(state, now + sound.duration + 0.5)
        else:
            self._b2bua().hangup(call, now=now, cause=cause)

    def _hang_up_at(self, state: _CallState, when: float) -> None:
        state.ends_at = when
        heapq.heappush(self._timers, (when, next(self._seq), state.call.id))

    # -- feature codes -------------------------------------------------------------------------------------

    def _feature(self, state: _CallState, route: Route, now: float) -> None:
        call = state.call
        agent = call.caller_user
        if agent is None or self.acd is None or not self._is_agent(agent):
            self._b2bua().reject(
                call, 403, "Forbidden (feature codes are for agents)", now=now, cause="forbidden"
            )
            return
        ack = self.agent_command(agent, route.target, reason=route.arg or "break", now=now)
        self._log("feature", call, agent=agent, feature=route.target, ack=ack.value)
        if not self._answer_caller(state, now):
            return
        sound = self.sounds.feature(route.target, ack.value) if self.sounds is not None else None
        if sound is None:
            sound = render((880.0,), ((100, 60),) * 3, name="confirmation")  # three short blips
        state.detail = f"feature {route.target}: {ack.value}"
        self._play(state, [sound], now, then_music=False)
        self._hang_up_at(state, now + sound.duration + 0.4)

    # -- agents --------------------------------------------------------------------------------------------

    def _is_agent(self, user_id: str) -> bool:
        user = self.directory.users.get(user_id)
        return user is not None and user.role == "agent"

    def agent_command(self, agent: str, command: str, *, reason: str = "", now: float) -> Ack:
        """login, logout, pause (with a reason), resume, end_wrap_up — from a feature code or the CLI."""
        acd = self.acd
        if acd is None:
            return Ack.UNKNOWN_AGENT
        if command == "login":
            ack = acd.agent_login(agent, now=now)
        elif command == "logout":
            ack = acd.agent_logout(agent, now=now)
        elif command == "pause":
            ack = acd.agent_pause(agent, reason, now=now)
        elif command == "resume":
            ack = acd.agent_resume(agent, now=now)
        elif command in ("end_wrap_up", "end-wrap-up"):
            ack = acd.end_wrap_up(agent, now=now)
        else:
            raise ValueError(f"unknown agent command {command!r}")
        self._run_acd(now)
        return ack

    def agent_reachable(self, agent: str, reachable: bool, *, now: float) -> None:
        if self.acd is not None and self._is_agent(agent):
            self.acd.agent_reachable(agent, reachable, now=now)
            self._run_acd(now)

    def _direct_call_started(self, state: _CallState, agent: str, now: float) -> None:
        if agent not in state.direct_agents:
            state.direct_agents.add(agent)
            self._direct_calls[agent] = self._direct_calls.get(agent, 0) + 1
        self._direct_call(agent, True, now)

    def _direct_call(self, agent: str, active: bool, now: float) -> None:
        if self.acd is not None:
            self.acd.agent_direct_call(agent, active, now=now)

    def reconcile(self, reachable_agents: set[str], *, now: float) -> list[object]:
        """Compare the engine with the calls that are really up and the phones that are really there."""
        acd = self.acd
        if acd is None:
            return []
        live: dict[str, list[str]] = {}
        for state in self._calls.values():
            call = state.call
            agents = sorted(state.direct_agents)
            if state.in_acd and call.leg_b is not None and call.target is not None:
                agents.append(call.target.label)
            live[call.id] = agents
        repairs = acd.reconcile(live, reachable_agents, now=now)
        self._run_acd(now)
        return list(repairs)

    # -- media hooks (sip.b2bua.MediaHooks) ----------------------------------------------------------------

    def _state(self, call: Call) -> _CallState:
        state = self._calls.get(call.id)
        if state is None:
            raise MediaRefused("unknown call", 500)
        return state

    def _session(self, state: _CallState) -> RelaySession:
        if state.session is None:
            call_id = state.call.id
            try:
                state.session = self.media.open(call_id)
            except Exception as exc:  # no RTP port pair left, a socket error: refuse the call, 503
                raise MediaRefused(f"no media resources ({exc})", 503) from None
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

    def acked_by_a(self, call: Call, sdp: bytes, *, now: float) -> bytes | None:
        state = self._state(call)
        parsed = _parse(sdp)
        self._update(state, Leg.A, parsed, call.leg_a.flow.remote[0], now)
        state.codec = _first_codec(parsed) or state.codec
        return None  # the callee got our own offer (offer_for_b never passes a delayed offer through)

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
        try:
            answer = answer_for(parsed, address=state.address, port=port, origin=origin)
        except NegotiationError as exc:
            raise MediaRefused(str(exc)) from None  # refused: the relay keeps what was agreed before
        self._update(state, leg, parsed, host, now)
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
                self._run_acd(now)
            case MediaTimeout(leg=leg):
                if state.media_timeout_leg is not None or state.call.state is CallState.ENDED:
                    return  # the other leg fell silent in the same tick: the first culprit stands
                who = "caller" if leg is Leg.A else "callee"
                state.media_timeout_leg = leg
                state.detail = f"{event.reason}: the {who}'s phone stopped sending media"
                self._log("media_timeout", state.call, leg=who, silent_for=round(event.silent_for, 1))
                self._b2bua().hangup(state.call, now=now, cause="media_timeout", by=who, status=408)
                self._run_acd(now)
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
        if state is not None and state.in_acd and side == "a" and self.acd is not None:
            if call.leg_b is None:  # still waiting: the exit key, perhaps
                self.acd.dtmf(call.id, digit, now=now)
                self._run_acd(now)

    # -- the end -------------------------------------------------------------------------------------------

    def _ended(self, call: Call, status: int | None, now: float) -> None:
        state = self._calls.pop(call.id, None)
        if state is None:
            return
        state.end_status = status
        if state.in_acd and self.acd is not None:
            if call.ended_by == "callee":
                self.acd.call_ended(call.id, by="agent", now=now)
            elif call.ended_by == "caller":
                self.acd.caller_abandoned(call.id, now=now)
            else:
                self.acd.call_ended(call.id, by="caller", now=now)
        for agent in state.direct_agents:
            left = self._direct_calls.pop(agent, 1) - 1
            if left:
                self._direct_calls[agent] = left
            else:
                self._direct_call(agent, False, now)  # only when this was the agent's last direct call
        if state.session is not None:
            self.media.ticking(call.id, False)
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
        status = None if answered else _end_status(call, state.end_status)
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
            queue=state.queue
            or (state.route.target if state.route is not None and state.route.kind == "queue" else None),
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
                status=200 if call.a_answered else _end_status(call, state.end_status),
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
                    "queue": state.queue,
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


def _end_status(call: Call, given: int | None) -> int | None:
    """The final status the caller got: 487 when it cancelled, else what the switch answered, else the
    best of the forks' failures."""
    if call.end_cause == "cancelled":
        return 487
    if given is not None:
        return given
    statuses = call.fork_statuses
    if statuses:
        return best_failure(list(statuses))
    return None


def _cancel_reason(reason: str) -> str | None:
    """A Reason header (RFC 3326) for an offer the ACD withdrew."""
    if reason == "answered_elsewhere":
        return 'SIP;cause=200;text="Call completed elsewhere"'
    return f'SIP;cause=487;text="{reason}"'


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
        CallState.ANSWERED: "waiting",
        CallState.BRIDGED: "talking",
        CallState.ENDED: "ended",
    }[call.state]
