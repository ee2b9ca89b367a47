"""The back-to-back user agent: a call is two legs joined by call-control events (style 9.9).

`leg_a` is the caller's INVITE (a UAS leg), `leg_b` the callee's (a UAC leg we send, forked in parallel to
every contact the callee has: the first answer wins and the others are cancelled). Each leg is its own
dialog with our own Call-ID, tags and Contact (sip/invite.py does the dialog work). This module joins
them; it never looks inside a session description. Media is anchored by the layer above through the
`MediaHooks` it passes in (callflow.py implements them with media/sdp.py and the relay), so sip/ stays
free of media.

What the layer above sees (`next_event()`): `CallIncoming` (route it: `connect`, `answer`, `reject`),
`CallRinging`, `CallAnswered`, `ConnectFailed` (every fork failed or the ring timeout passed; the caller
is still there: try someone else, or `reject`), `CallDtmf` (SIP INFO), `CallEnded` (exactly once per call).

Failure mapping when every fork fails (RFC 3261 §16.7 in spirit: the most telling answer wins):
| what the forks said                            | ConnectFailed.status              |
|-----------------------------------------------|-----------------------------------|
| any 6xx (603 Decline ...)                      | that 6xx                          |
| any 486 / 600 Busy                             | 486 Busy Here                     |
| ring timeout passed (nobody answered)          | 480 Temporarily Unavailable       |
| 408 (Timer B), 503 (flow dead), no contacts    | 480 Temporarily Unavailable       |
| anything else                                  | the lowest such status            |
In-dialog re-INVITEs and UPDATEs are passed to the other leg with their SDP re-anchored by the hooks; one
arriving while the other leg is still negotiating gets 491 (§14.2). A leg alone (the caller in a queue,
answered by the switch) gets its re-INVITEs answered by `MediaHooks.answer_locally`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any, Literal, Protocol

from softswitch.sip.endpoint import AuthCheck
from softswitch.sip.flow import Flow
from softswitch.sip.invite import (
    Acked,
    Answered,
    Cancelled,
    Ended,
    Failed,
    InfoReceived,
    InviteLayer,
    InviteReceived,
    Leg,
    LegEvent,
    LegState,
    ProvisionalReceived,
    ReinviteCancelled,
    ReinviteCompleted,
    ReinviteReceived,
    UpdateReceived,
)
from softswitch.sip.message import Request, Response
from softswitch.sip.randomness import random_hex
from softswitch.sip.timers import TimerValues
from softswitch.sip.transaction import ClientTransaction, ServerTransaction
from softswitch.sip.uri import SipUri

__all__ = [
    "B2bua",
    "Call",
    "CallAnswered",
    "CallDtmf",
    "CallEnded",
    "CallEvent",
    "CallIncoming",
    "CallRinging",
    "CallState",
    "ConnectFailed",
    "ForkFailed",
    "MediaHooks",
    "MediaRefused",
    "Side",
    "Target",
]

Side = Literal["a", "b"]

#: Seconds a new call may wait for a routing decision before the switch refuses it (500).
ROUTING_TIMEOUT = 32.0
#: Seconds a fork may go without any response (not even 100 Trying) before the switch gives up on it as
#: unreachable (408). A phone that is there answers in milliseconds; one that vanished from home Wi-Fi
#: would otherwise keep the caller ringing for the whole ring timeout (Timer B is 32 s).
NO_RESPONSE_TIMEOUT = 5.0


class MediaRefused(Exception):
    """Raised by a hook when a session description cannot be anchored (answered 488)."""

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class MediaHooks(Protocol):
    """What the layer above does with session descriptions (callflow.py implements it)."""

    def offer_for_b(self, call: Call, sdp: bytes | None, *, now: float) -> bytes | None:
        """The caller's offer (None for a delayed offer) -> what we offer the callee."""
        ...

    def answer_for_a(self, call: Call, fork: Leg, sdp: bytes | None, *, now: float) -> bytes | None:
        """A fork's answer (183 or 2xx) -> what we send the caller (an answer, or an offer when the
        caller's INVITE had none)."""
        ...

    def acked_by_a(self, call: Call, sdp: bytes, *, now: float) -> bytes | None:
        """The caller's answer, carried in its ACK (it sent a delayed offer) -> the answer for the callee's
        ACK when the delayed offer was passed through (the callee's 2xx carried the offer), else None."""
        ...

    def offer_for_other(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        """A re-INVITE/UPDATE offer from `side` -> the offer we send the other side."""
        ...

    def answer_for_other(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        """The answer `side` gave to our re-offer -> the answer we give the side that asked."""
        ...

    def answer_locally(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        """A re-INVITE/UPDATE on a leg with nobody on the other side: the switch answers it itself."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """One contact to ring: its Request-URI and the flow the phone registered from."""

    uri: str
    flow: Flow
    label: str = ""  # who this is, for records (agent id)


class CallState(Enum):
    INCOMING = auto()  # A's INVITE is waiting for a routing decision
    CONNECTING = auto()  # forks are out
    ANSWERED = auto()  # A is answered by the switch itself (queue, prompt); no B leg yet
    BRIDGED = auto()  # A and B are both answered and joined
    ENDED = auto()


@dataclass(eq=False)
class Call:
    """One call through the switch."""

    id: str
    leg_a: Leg
    request: Request
    dialed: str  # the Request-URI's user part (the number dialled)
    caller_number: str  # From's user part (or the authenticated user)
    caller_name: str | None
    caller_user: str | None  # the authenticated user (agent/supervisor id), None for trunks
    trunk: str | None  # the trunk it came from, or None
    created_at: float
    state: CallState = CallState.INCOMING
    leg_b: Leg | None = None
    forks: dict[Leg, Target] = field(default_factory=dict)
    fork_statuses: list[int] = field(default_factory=list)
    fork_results: dict[Leg, int] = field(default_factory=dict)  # final status of every fork that ended
    target: Target | None = None  # who answered
    a_answered: bool = False
    ring_deadline: float | None = None
    ringing: bool = False
    answered_at: float | None = None  # when A and B were joined
    ended_at: float | None = None
    end_cause: str | None = None
    ended_by: str | None = None
    # a re-INVITE/UPDATE we are passing through: (asking leg, method) while the other leg answers it
    passing: tuple[Leg, str] | None = None
    user_data: Any = None

    def side_of(self, leg: Leg) -> Side | None:
        if leg is self.leg_a:
            return "a"
        if leg is self.leg_b:
            return "b"
        return None

    def other(self, leg: Leg) -> Leg | None:
        if leg is self.leg_a:
            return self.leg_b
        if leg is self.leg_b:
            return self.leg_a
        return None


@dataclass(frozen=True, slots=True)
class CallIncoming:
    call: Call


@dataclass(frozen=True, slots=True)
class CallRinging:
    call: Call
    status: int
    early_media: bool


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call: Call
    target: Target
    sdp: bytes | None  # the callee's answer as received


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    call: Call
    status: int
    reason: str
    statuses: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ForkFailed:
    """One fork (one contact of one callee) ended without answering: `status` is its final status (480 when
    the switch gave up on it: ring timeout, or the callee's offer was withdrawn)."""

    call: Call
    target: Target
    status: int


@dataclass(frozen=True, slots=True)
class CallDtmf:
    call: Call
    side: Side
    digit: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    call: Call
    cause: str  # "bye", "cancelled", "rejected", "no_answer", "busy", "ack_timeout", "media_timeout", ...
    by: str  # "caller", "callee", "switch"
    status: int | None


CallEvent = CallIncoming | CallRinging | CallAnswered | ConnectFailed | ForkFailed | CallDtmf | CallEnded


class _NoCall:
    forks: dict[Leg, Target] = {}  # noqa: RUF012 - an empty stand-in, never written


_NO_CALL = _NoCall()


class Authorizer(Protocol):
    def check_auth(self, tx: ServerTransaction, *, now: float) -> AuthCheck: ...


class B2bua:
    """Joins UAS and UAC legs into calls. Plugs into the endpoint as its `Usage`."""

    def __init__(
        self,
        sender: Any,
        *,
        timers: TimerValues,
        hooks: MediaHooks,
        authorizer: Authorizer,
        trunk_for: Callable[[str], str | None],
        domain: str,
        public_number: Callable[[str], bool] = lambda number: False,
    ) -> None:
        self.invites = InviteLayer(sender, timers=timers)
        self.methods = self.invites.methods
        self.hooks = hooks
        self.authorizer = authorizer
        self.trunk_for = trunk_for
        self.domain = domain
        self.public_number = public_number
        self.calls: dict[str, Call] = {}
        self._events: deque[CallEvent] = deque()
        self._ring_heap: list[tuple[float, int, str]] = []
        self._silent_forks: list[tuple[float, int, str, Leg]] = []  # (deadline, seq, call id, fork)
        self._seq = itertools.count()

    # -- the sans-IO surface ---------------------------------------------------------------------------

    def next_event(self) -> CallEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        candidates = [self.invites.next_deadline()]
        heap = self._ring_heap
        while heap:
            at, _, call_id = heap[0]
            call = self.calls.get(call_id)
            if call is None or call.ring_deadline != at:
                heapq.heappop(heap)
                continue
            candidates.append(at)
            break
        silent = self._silent_forks
        while silent and silent[0][3] not in self.calls.get(silent[0][2], _NO_CALL).forks:
            heapq.heappop(silent)
        if silent:
            candidates.append(silent[0][0])
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def handle_timer(self, *, now: float) -> None:
        self.invites.handle_timer(now=now)
        self._drain(now)
        silent = self._silent_forks
        while silent and silent[0][0] <= now:
            _, _, call_id, leg = heapq.heappop(silent)
            call = self.calls.get(call_id)
            if call is None or leg not in call.forks or leg.state is not LegState.CALLING:
                continue  # gone, answered, or it responded: it is there
            self.invites.cancel(leg, now=now)
            self._fork_failed(call, leg, 408, "no response", now)
        heap = self._ring_heap
        while heap and heap[0][0] <= now:
            at, _, call_id = heapq.heappop(heap)
            call = self.calls.get(call_id)
            if call is None or call.ring_deadline != at:
                continue
            call.ring_deadline = None
            if call.state is CallState.INCOMING:
                self.hangup(
                    call, now=now, status=500, reason="Server Internal Error (not routed)", cause="not_routed"
                )
            elif call.state is CallState.CONNECTING:
                self._give_up_forks(call, now, status=480, reason="no answer")
        self._drain(now)

    def is_trunk(self, flow: Flow) -> bool:
        return self.trunk_for(flow.remote[0]) is not None

    # -- endpoint.Usage ----------------------------------------------------------------------------------

    def on_request(self, tx: ServerTransaction, *, now: float) -> None:
        self.invites.on_request(tx, now=now)
        self._drain(now)

    def on_cancel(self, tx: ServerTransaction, invite_tx: ServerTransaction, *, now: float) -> None:
        self.invites.on_cancel(tx, invite_tx, now=now)
        self._drain(now)

    def on_ack(self, request: Request, flow: Flow, *, now: float) -> None:
        self.invites.on_ack(request, flow, now=now)
        self._drain(now)

    def on_response(self, tx: ClientTransaction, response: Response, *, now: float) -> None:
        self.invites.on_response(tx, response, now=now)
        self._drain(now)

    def on_stray_response(self, response: Response, flow: Flow, *, now: float) -> None:
        self.invites.on_stray_response(response, flow, now=now)
        self._drain(now)

    def on_timeout(self, tx: ClientTransaction | ServerTransaction, *, now: float) -> None:
        self.invites.on_timeout(tx, now=now)
        self._drain(now)

    def on_transport_failed(self, tx: ClientTransaction | ServerTransaction, *, now: float) -> None:
        self.invites.on_transport_failed(tx, now=now)
        self._drain(now)

    # -- commands from the layer above -----------------------------------------------------------------

    def connect(
        self,
        call: Call,
        targets: list[Target],
        *,
        now: float,
        ring_timeout: float,
        sdp: bytes | None = None,
        from_uri: str | None = None,
        from_display: str | None = None,
        add: bool = False,
    ) -> None:
        """Ring `targets` in parallel. Without `sdp`, the caller's offer is anchored by the hooks.

        `add=True` rings them alongside forks already out (an ACD offering one more agent: ring_all) and
        leaves the call's ring deadline alone unless this one is later."""
        if call.state is CallState.ENDED:
            return
        if not targets:
            self._events.append(ConnectFailed(call, 480, "no reachable contact", ()))
            return
        if sdp is None:
            try:
                sdp = self.hooks.offer_for_b(call, call.leg_a.remote_sdp, now=now)
            except MediaRefused as exc:
                self.hangup(call, now=now, status=exc.status, cause="media_refused", reason=exc.reason)
                return
        if call.state is CallState.INCOMING:
            call.state = CallState.CONNECTING
        elif call.state is CallState.ANSWERED:
            call.state = CallState.CONNECTING
        ringing = bool(call.forks)  # forks already out: `add` joins them and their deadline
        if not add or not ringing:
            call.fork_statuses = []
        from_uri = from_uri or f"sip:{call.caller_number}@{self.domain}"
        from_display = from_display if from_display is not None else call.caller_name
        for target in targets:
            leg = self.invites.invite(
                request_uri=target.uri,
                flow=target.flow,
                from_uri=from_uri,
                from_display=from_display,
                to_uri=target.uri,
                sdp=sdp,
                now=now,
                headers=[("User-Agent", "softswitch")],
            )
            leg.user_data = call
            call.forks[leg] = target
            heapq.heappush(self._silent_forks, (now + NO_RESPONSE_TIMEOUT, next(self._seq), call.id, leg))
        deadline = now + ring_timeout
        if not add or not ringing or call.ring_deadline is None or deadline > call.ring_deadline:
            call.ring_deadline = deadline
            heapq.heappush(self._ring_heap, (deadline, next(self._seq), call.id))
        self._drain(now)

    def cancel_target(self, call: Call, label: str, *, now: float, reason: str | None = None) -> bool:
        """Stop ringing the forks to one callee (`Target.label`); the others ring on. A callee that already
        answered is not touched (see `drop_b`). True when something was cancelled."""
        legs = [leg for leg, target in call.forks.items() if target.label == label]
        for leg in legs:
            del call.forks[leg]
            self.invites.cancel(leg, now=now, reason=reason)
        if legs and not call.forks and call.state is CallState.CONNECTING:
            call.ring_deadline = None
            call.state = CallState.ANSWERED if call.a_answered else CallState.INCOMING
        self._drain(now)
        return bool(legs)

    def drop_b(self, call: Call, *, now: float, reason: str | None = None) -> None:
        """Hang up the callee's answered leg but keep the caller (answered by the switch) on the line: an
        agent who answered an offer the ACD had already withdrawn."""
        leg = call.leg_b
        if leg is None or not call.a_answered or call.state is CallState.ENDED:
            return
        call.leg_b = None
        call.target = None
        call.answered_at = None
        call.state = CallState.CONNECTING if call.forks else CallState.ANSWERED
        leg.user_data = None
        self.invites.bye(leg, now=now, reason=_reason_header(reason or "withdrawn"))
        self._drain(now)

    def stop_connecting(self, call: Call, *, now: float, reason: str | None = None) -> None:
        """Cancel every fork (the ACD moves on) without touching the caller."""
        for leg in list(call.forks):
            self.invites.cancel(leg, now=now, reason=reason)
        call.forks.clear()
        call.ring_deadline = None
        if call.state is CallState.CONNECTING:
            call.state = CallState.ANSWERED if call.a_answered else CallState.INCOMING
        self._drain(now)

    def ring_caller(self, call: Call, *, now: float, status: int = 180, sdp: bytes | None = None) -> None:
        if call.state is not CallState.ENDED and not call.a_answered:
            self.invites.provisional(call.leg_a, status, sdp=sdp, now=now)

    def answer(self, call: Call, sdp: bytes, *, now: float) -> None:
        """Answer the caller ourselves (a queue's music on hold, a prompt, a feature code)."""
        if call.state is CallState.ENDED or call.a_answered:
            return
        self.invites.accept(call.leg_a, sdp, now=now)
        call.a_answered = True
        if call.state is CallState.INCOMING:
            call.state = CallState.ANSWERED
        self._drain(now)

    def reject(
        self, call: Call, status: int, reason: str | None = None, *, now: float, cause: str = "rejected"
    ) -> None:
        self.hangup(call, now=now, status=status, reason=reason, cause=cause)

    def hangup(
        self,
        call: Call,
        *,
        now: float,
        status: int = 480,
        reason: str | None = None,
        cause: str = "hangup",
        by: str = "switch",
    ) -> None:
        """End the call from the switch's side: cancel forks, BYE answered legs, reject an unanswered A."""
        if call.state is CallState.ENDED:
            return
        for leg in list(call.forks):
            self.invites.cancel(leg, now=now)
        call.forks.clear()
        if call.leg_b is not None:
            self.invites.hangup(call.leg_b, now=now, reason=_reason_header(cause))
        if call.a_answered:
            self.invites.bye(call.leg_a, now=now, reason=_reason_header(cause))
        else:
            self.invites.reject(call.leg_a, status, reason, now=now)
        self._end(call, cause=cause, by=by, status=status if not call.a_answered else None, now=now)
        self._drain(now)

    def reoffer(self, call: Call, side: Side, sdp: bytes, *, now: float) -> bool:
        """Send a re-INVITE with `sdp` to one side (e.g. to resume after music on hold)."""
        leg = call.leg_a if side == "a" else call.leg_b
        if leg is None or leg.state is not LegState.CONFIRMED or leg.negotiating:
            return False
        self.invites.reinvite(leg, sdp, now=now)
        return True

    # -- leg events ----------------------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        invites = self.invites
        while (event := invites.next_event()) is not None:
            self._on_leg_event(event, now)

    def _on_leg_event(self, event: LegEvent, now: float) -> None:
        match event:
            case InviteReceived(leg=leg, request=request):
                self._incoming(leg, request, now)
                return
        leg = event.leg
        call = leg.user_data
        if not isinstance(call, Call):
            return
        match event:
            case ProvisionalReceived(status=status, sdp=sdp):
                self._provisional(call, leg, status, sdp, now)
            case Answered(sdp=sdp):
                self._answered(call, leg, sdp, now)
            case Failed(status=status, reason=reason):
                self._fork_failed(call, leg, status, reason, now)
            case Cancelled():
                if leg is call.leg_a:
                    for fork in list(call.forks):
                        self.invites.cancel(fork, now=now)
                    call.forks.clear()
                    self._end(call, cause="cancelled", by="caller", status=487, now=now)
            case Acked(sdp=sdp):
                if leg is call.leg_a:
                    self._acked_by_a(call, sdp, now)
            case ReinviteReceived(sdp=sdp):
                self._pass_offer(call, leg, "INVITE", sdp, now)
            case UpdateReceived(sdp=sdp):
                self._pass_offer(call, leg, "UPDATE", sdp, now)
            case ReinviteCompleted(status=status, sdp=sdp, method=method):
                self._offer_completed(call, leg, status, sdp, method, now)
            case ReinviteCancelled():
                if call.passing is not None and call.passing[0] is leg:
                    call.passing = None
            case InfoReceived(content_type=content_type, body=body):
                digit = _dtmf_digit(content_type, body)
                side = call.side_of(leg)
                if digit is not None and side is not None:
                    self._events.append(CallDtmf(call, side, digit))
            case Ended(by=by, reason=reason):
                self._leg_ended(call, leg, by, reason, now)

    def _incoming(self, leg: Leg, request: Request, now: float) -> None:
        if request.max_forwards == 0:
            self.invites.reject(leg, 483, now=now)
            return
        trunk = self.trunk_for(leg.flow.remote[0])
        user: str | None = None
        uri = request.uri
        dialed = uri.user if isinstance(uri, SipUri) and uri.user else str(uri)
        # Public numbers (queues, DIDs) take calls from anyone; a registered phone that sends credentials
        # anyway is still identified. Everything else needs a registered user's digest credentials.
        anonymous_ok = self.public_number(dialed) and "authorization" not in request.headers
        if trunk is None and not anonymous_ok:
            tx = leg.transaction
            assert isinstance(tx, ServerTransaction)
            check = self.authorizer.check_auth(tx, now=now)
            if check.user is None:
                self.invites.reject(leg, check.status, check.reason, now=now, headers=check.headers)
                return
            user = check.user
        from_ = request.from_
        from_user = getattr(from_.uri, "user", None)
        call = Call(
            id=random_hex(6),
            leg_a=leg,
            request=request,
            dialed=dialed,
            caller_number=str(from_user or user or "anonymous"),
            caller_name=from_.display,
            caller_user=user,
            trunk=trunk,
            created_at=now,
        )
        leg.user_data = call
        self.calls[call.id] = call
        # A safety net: a call nobody routes (a bug above us) is refused after ROUTING_TIMEOUT, so the
        # caller's phone is not left ringing forever.
        call.ring_deadline = now + ROUTING_TIMEOUT
        heapq.heappush(self._ring_heap, (call.ring_deadline, next(self._seq), call.id))
        self._events.append(CallIncoming(call))

    def _provisional(self, call: Call, fork: Leg, status: int, sdp: bytes | None, now: float) -> None:
        if fork not in call.forks or status == 100:
            return
        first = not call.ringing
        call.ringing = True
        if not call.a_answered and call.state is CallState.CONNECTING:
            if sdp is not None:
                try:
                    answer = self.hooks.answer_for_a(call, fork, sdp, now=now)
                except MediaRefused:
                    answer = None
                if answer is not None:
                    self.invites.provisional(call.leg_a, 183, sdp=answer, now=now)
            elif first:
                self.invites.provisional(call.leg_a, 180, now=now)
        if first:
            self._events.append(CallRinging(call, status, sdp is not None))

    def _answered(self, call: Call, fork: Leg, sdp: bytes | None, now: float) -> None:
        target = call.forks.pop(fork, None)
        if target is None or call.state is CallState.ENDED or call.leg_b is not None:
            self.invites.bye(fork, now=now, reason=_reason_header("already answered"))
            return
        if not call.a_answered:
            try:
                answer = self.hooks.answer_for_a(call, fork, sdp, now=now)
            except MediaRefused as exc:
                self.invites.bye(fork, now=now, reason=_reason_header("media refused"))
                call.fork_statuses.append(exc.status)
                call.fork_results[fork] = exc.status
                if not call.forks:
                    self._all_forks_failed(call, now)
                return
            assert answer is not None
            self.invites.accept(call.leg_a, answer, now=now)
            call.a_answered = True
        call.leg_b = fork
        call.target = target
        call.state = CallState.BRIDGED
        call.answered_at = now
        call.ring_deadline = None
        for other in list(call.forks):
            self.invites.cancel(other, now=now, reason='SIP;cause=200;text="Call completed elsewhere"')
        call.forks.clear()
        self._events.append(CallAnswered(call, target, sdp))

    def _fork_failed(self, call: Call, fork: Leg, status: int, reason: str, now: float) -> None:
        target = call.forks.pop(fork, None)
        if target is None:
            return
        call.fork_statuses.append(status)
        call.fork_results[fork] = status
        self._events.append(ForkFailed(call, target, status))
        if not call.forks and call.state is CallState.CONNECTING:
            self._all_forks_failed(call, now)

    def _give_up_forks(self, call: Call, now: float, *, status: int, reason: str) -> None:
        for leg, target in list(call.forks.items()):
            call.fork_results[leg] = status
            self.invites.cancel(leg, now=now)
            self._events.append(ForkFailed(call, target, status))
        call.forks.clear()
        call.fork_statuses.append(status)
        self._all_forks_failed(call, now, reason=reason)

    def _all_forks_failed(self, call: Call, now: float, *, reason: str | None = None) -> None:
        call.ring_deadline = None
        call.state = CallState.ANSWERED if call.a_answered else CallState.INCOMING
        status = best_failure(call.fork_statuses)
        self._events.append(
            ConnectFailed(call, status, reason or _failure_reason(status), tuple(call.fork_statuses))
        )

    def _pass_offer(self, call: Call, leg: Leg, method: str, sdp: bytes | None, now: float) -> None:
        side = call.side_of(leg)
        answer_fn = self.invites.answer_reinvite if method == "INVITE" else self.invites.answer_update
        if side is None or call.state is CallState.ENDED:
            answer_fn(leg, status=481, now=now)
            return
        other = call.other(leg)
        if other is None:
            try:
                local = self.hooks.answer_locally(call, side, sdp, now=now)
            except MediaRefused as exc:
                answer_fn(leg, status=exc.status, now=now)
                return
            answer_fn(leg, sdp=local, now=now)
            return
        # A partner that is not confirmed yet (the caller has not ACKed our 2xx) is negotiating too: the
        # switch must not answer in its place.
        if other.state is not LegState.CONFIRMED or other.negotiating or call.passing is not None:
            answer_fn(leg, status=491, now=now)
            return
        try:
            offer = self.hooks.offer_for_other(call, side, sdp, now=now)
        except MediaRefused as exc:
            answer_fn(leg, status=exc.status, now=now)
            return
        call.passing = (leg, method)
        if method == "INVITE":
            self.invites.reinvite(other, offer, now=now)
        else:
            assert offer is not None
            self.invites.update(other, offer, now=now)

    def _offer_completed(
        self, call: Call, leg: Leg, status: int, sdp: bytes | None, method: str, now: float
    ) -> None:
        passing = call.passing
        if passing is None:
            return
        asking, asked_method = passing
        call.passing = None
        side = call.side_of(leg)
        answer_fn = self.invites.answer_reinvite if asked_method == "INVITE" else self.invites.answer_update
        if not asking.live or side is None:
            return
        if 200 <= status < 300:
            try:
                answer = self.hooks.answer_for_other(call, side, sdp, now=now)
            except MediaRefused as exc:
                answer_fn(asking, status=exc.status, now=now)
                return
            answer_fn(asking, sdp=answer, now=now)
        else:
            answer_fn(asking, status=status if 400 <= status < 700 else 500, now=now)

    def _leg_ended(self, call: Call, leg: Leg, by: str, reason: str, now: float) -> None:
        if leg is call.leg_a:
            if call.leg_b is not None:
                self.invites.bye(call.leg_b, now=now)
            for fork in list(call.forks):
                self.invites.cancel(fork, now=now)
            call.forks.clear()
            self._end(call, cause=reason, by="caller" if by == "remote" else "switch", status=None, now=now)
        elif leg is call.leg_b:
            self.invites.bye(call.leg_a, now=now)
            self._end(call, cause=reason, by="callee" if by == "remote" else "switch", status=None, now=now)

    def _acked_by_a(self, call: Call, sdp: bytes | None, now: float) -> None:
        answer: bytes | None = None
        if sdp is not None:
            try:
                answer = self.hooks.acked_by_a(call, sdp, now=now)
            except MediaRefused as exc:
                self.hangup(call, now=now, cause="media_refused", reason=exc.reason)
        callee = call.leg_b
        if callee is not None and callee.awaiting_ack_answer and call.state is not CallState.ENDED:
            # A passed-through delayed offer: the callee's 2xx offered, the caller answered in its ACK.
            self.invites.ack(callee, answer, now=now)
            if answer is None:
                self.hangup(call, now=now, cause="media_refused", reason="no answer to the callee's offer")

    def _end(self, call: Call, *, cause: str, by: str, status: int | None, now: float) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ended_at = now
        call.end_cause = cause
        call.ended_by = by
        call.ring_deadline = None
        self.calls.pop(call.id, None)
        self._events.append(CallEnded(call, cause, by, status))


def best_failure(statuses: list[int]) -> int:
    """The status to give the caller when every fork failed (the table in the module docstring)."""
    if not statuses:
        return 480
    six = [s for s in statuses if 600 <= s < 700]
    if six:
        return 603 if 603 in six else min(six)
    if 486 in statuses:
        return 486
    rest = [s for s in statuses if s not in (408, 480, 487, 503)]
    return min(rest) if rest else 480


_REASONS = {480: "no answer", 486: "busy", 603: "declined", 404: "not found", 488: "media refused"}


def _failure_reason(status: int) -> str:
    return _REASONS.get(status, f"failed ({status})")


def _reason_header(cause: str) -> str:
    return f'SIP;cause=200;text="{cause}"' if cause else ""


_DTMF_KEYS = set("0123456789*#ABCDabcd")


def _dtmf_digit(content_type: str | None, body: bytes) -> str | None:
    """A digit from an INFO body: application/dtmf-relay ("Signal=5") or application/dtmf ("5")."""
    text = body.decode("utf-8", "replace").strip()
    ctype = (content_type or "").lower()
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                value = value.strip()
                return value.upper() if value in _DTMF_KEYS else None
        return None
    if ctype == "application/dtmf":
        return text.upper() if text in _DTMF_KEYS else None
    return None
