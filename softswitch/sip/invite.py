"""The INVITE dialog usage, one leg at a time (RFC 3261 §12–§15, §9; RFC 3311 UPDATE; RFC 6086 INFO).

A `Leg` is one INVITE dialog usage: a UAS leg for an INVITE we received, a UAC leg for one we sent. The
`InviteLayer` owns every leg of the switch. It is the `endpoint.Usage` for INVITE, ACK, BYE, CANCEL, UPDATE,
INFO and PRACK, and it is sans-IO like everything under it: commands and the endpoint's callbacks take
`now=`; `next_event()` says what happened, `next_deadline()`/`handle_timer()` drive its timers. Bytes go
out through the `Sender` (the Endpoint), never from here. The layer does not look into SDP: bodies are
opaque bytes, and the offer/answer decisions belong to the layer above (the B2BUA and callflow.py).

Theory of operation:

* UAS. A new INVITE gets `100 Trying` at once (§17.2.1 wants it within 200 ms unless the TU answers
  sooner) and is reported as `InviteReceived`; the layer above answers with `provisional` (the first 18x
  with a To tag creates the early dialog, §12.1.1), `accept` (2xx) or `reject`. The 2xx is retransmitted
  from T1 doubling to T2 until the ACK arrives, on every transport (§13.3.1.4); with no ACK after 64*T1 the
  layer sends BYE and reports `Ended(reason="ack_timeout")`. A CANCEL before the final gets 200, the INVITE
  487, and `Cancelled`; after the final, 200 only (§9.2). Responses that create the dialog carry the
  INVITE's Record-Route (§12.1.1).
* UAC. `invite` sends; provisionals are reported once each (`ProvisionalReceived`), a 2xx is ACKed by the
  layer and reported as `Answered` (§13.2.2.4), and every retransmission of that 2xx gets the same ACK
  again. A non-2xx, Timer B (408) or a dead flow (503) is `Failed`. A 2xx with a second To tag (a forking
  proxy below us) is ACKed and then BYEd; the first 2xx wins. `cancel` sends CANCEL (the transaction layer
  holds it until a provisional arrives, §9.1); the 487 that follows is `Failed(487)`. A 2xx that races the
  CANCEL is ACKed and BYEd and reported as `Failed(status=487, reason="Answered after CANCEL")`: the leg
  never reaches the layer above as answered, so a B2BUA that cancelled needs no second thought.
* Delayed offer. A UAS whose INVITE had no SDP offers in its 2xx: `Acked(leg, sdp)` carries the answer
  from the ACK. A UAC `invite`/`reinvite` without SDP gets the peer's offer in `Answered`/
  `ReinviteCompleted` and must answer with `ack(leg, sdp)`: the ACK waits for it.
* Within the dialog (either role): requests are matched by (Call-ID, local tag, remote tag) — no match is
  481, an unmatched ACK is dropped — and ordered by CSeq (lower is 500, §12.2.2). Every request we send
  carries the route set as Route (§12.2.1.1) and goes to its first hop when a proxy record-routed from
  another address, else out on `leg.flow`, the flow the INVITE came in on or
  was sent on, whatever the peer's Contact says (phones behind NAT; RFC 5626 §5), while the Request-URI
  is still the remote target. A BYE received is answered 200 and reported `Ended(by="remote")`; pending
  requests from the peer get 487 (§15.1.2). Our `bye` is reported `Ended(by="local")` when its answer (or
  timeout) comes; a UAS waits for the ACK before it sends BYE (§15).
* re-INVITE (§14) and UPDATE (RFC 3311) are one offer at a time per leg. The peer's is reported
  (`ReinviteReceived`, `UpdateReceived`) and answered with `answer_reinvite` / `answer_update`. If our own
  re-INVITE or UPDATE is outstanding, the peer's gets 491 without a report (glare); if the peer already
  has one pending, its second gets 500 with Retry-After (§14.2, RFC 3311 §5.2). Our `reinvite`/`update`
  that gets 491 is retried once after §14.1's random delay — 2.1–4 s when we own the Call-ID (UAC legs),
  0–2 s otherwise, in 10 ms steps — and the outcome is reported as `ReinviteCompleted`. If the peer's own
  re-INVITE or UPDATE is still in progress when the delay ends, we give up and report 491.
* A 481 or 408 (or a timeout) to any request within the dialog ends it (§12.2.1.2): `Ended` with
  reason "dialog_gone" (481, by="remote") or "request_timeout" (408, by="local", after a BYE — except
  from a callee on an early dialog, which §15 forbids). On an unanswered UAC leg it CANCELs the INVITE
  instead, and the INVITE's final reports the end as `Failed`.
* Nothing is left hanging when a leg ends: an INVITE of the peer's still without a final gets 487, a
  pending re-INVITE or UPDATE of the peer's gets 487 (§15.1.2), a 2xx still waiting for our answer is
  ACKed, and an INVITE or re-INVITE of ours still without a final is CANCELled (so the transaction layer's
  §9.1 guard bounds it even if the peer never answers).
* INFO (RFC 6086): legacy INFO (no Info-Package) is answered 200 and reported as `InfoReceived` (DTMF as
  application/dtmf-relay or application/dtmf); an INFO for a package we never announced in Recv-Info
  gets 469 (§4.2.2). PRACK gets 481: we never send reliable provisionals (RFC 3262 §3), and the endpoint
  answers `Require: 100rel` with 420.
* Commands on a leg that has ended (or is ending) are quiet no-ops: the layer above may act on a leg
  whose end is already queued as an event. Commands that make no sense in a live leg's state (accept on
  a UAC leg, reinvite before the dialog is confirmed or while `leg.negotiating`) raise
  `LocalProtocolError`. `hangup` does the right thing in any state (reject, CANCEL or BYE).
* Each leg ends with exactly one event — `Failed` or `Ended` for a UAC leg, `Cancelled` or `Ended` for a
  UAS leg — except a UAS leg you `reject`, which ends without one; nothing is reported for a leg after
  its end. `Ended` of a UAS leg whose INVITE we never answered means the caller went away (a BYE on the
  early dialog, a dead flow, a 481 or timeout to our request in the early dialog); its INVITE got 487.

Timers live in one heap of `(deadline, seq, timer)` with lazy deletion (style 9.2): the 2xx retransmission
and the 64*T1 wait for the ACK (§13.3.1.4), the 491 retry delay (§14.1), and the 64*T1 for which an ended
UAC leg still ACKs and BYEs late 2xx responses (RFC 6026 Timer M).

Not here: 100rel/PRACK (RFC 3262), preconditions (RFC 3312), session timers (RFC 4028), the once-a-minute
provisional refresh of §13.3.1.1, following 3xx redirects, UAC authentication (401/407 to our requests
end them like any failure), Info Packages, and SDP itself. Offer/answer state is tracked only as far as
glare needs it; which body is an offer and which an answer is the caller's business.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Final, Literal, Protocol

from softswitch.sip.dialog import Dialog, DialogId
from softswitch.sip.errors import LocalProtocolError, SipParseError
from softswitch.sip.flow import Flow
from softswitch.sip.headers import parse_name_addr, quote
from softswitch.sip.message import Headers, Message, Request, Response, new_call_id, new_tag
from softswitch.sip.timers import TimerValues
from softswitch.sip.transaction import ClientTransaction, Ict, Ist, ServerTransaction
from softswitch.sip.uri import SipUri, parse_uri

__all__ = [
    "Acked",
    "Answered",
    "Cancelled",
    "Ended",
    "Failed",
    "InfoReceived",
    "InviteLayer",
    "InviteReceived",
    "Leg",
    "LegEvent",
    "LegState",
    "ProvisionalReceived",
    "ReinviteCancelled",
    "ReinviteCompleted",
    "ReinviteReceived",
    "Sender",
    "UpdateReceived",
]

_log = logging.getLogger(__name__)

SDP: Final = "application/sdp"
#: What we put in Allow (INVITE and 2xx, §13.2.1, §13.3.1.4; RFC 3311 §5.1 for UPDATE).
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS"
#: Rebuild the timer heap when dead entries are more than this and more than half of it.
_COMPACT_MIN: Final = 256


class LegState(Enum):
    """Where a leg is. UAS: INCOMING → EARLY → CONNECTING → CONFIRMED; UAC: CALLING → PROCEEDING → EARLY
    → CONFIRMED; both end TERMINATING → TERMINATED (or straight to TERMINATED)."""

    CALLING = auto()  #: UAC: INVITE sent, no response yet
    INCOMING = auto()  #: UAS: INVITE received, 100 Trying sent, no other response yet
    PROCEEDING = auto()  #: UAC: a provisional response without a To tag
    EARLY = auto()  #: an early dialog: a 101-199 with a To tag, sent (UAS) or received (UAC)
    CONNECTING = auto()  #: UAS: our 2xx is out, the ACK has not come
    CONFIRMED = auto()  #: 2xx and ACK done
    TERMINATING = auto()  #: our BYE (or CANCEL) is out, or a BYE waits for the ACK
    TERMINATED = auto()  #: over; the leg is gone from the layer


_UNANSWERED_UAS: Final = frozenset({LegState.INCOMING, LegState.EARLY})
_UNANSWERED_UAC: Final = frozenset({LegState.CALLING, LegState.PROCEEDING, LegState.EARLY})
_OVER: Final = frozenset({LegState.TERMINATING, LegState.TERMINATED})


class Sender(Protocol):
    """What the layer needs from the endpoint below it (`softswitch.sip.endpoint.Endpoint` is one)."""

    def send_request(self, request: Request, flow: Flow, *, now: float) -> ClientTransaction: ...
    def respond(self, tx: ServerTransaction, response: Response, *, now: float) -> None: ...
    def send_stateless(self, message: Request | Response, flow: Flow) -> None: ...
    def cancel(
        self, tx: ClientTransaction, *, now: float, headers: Iterable[tuple[str, str]] = ()
    ) -> ClientTransaction | None: ...
    def via_for(self, flow: Flow) -> str: ...
    def contact_for(self, flow: Flow) -> str: ...


# ---------------------------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InviteReceived:
    """A new INVITE (no To tag). `100 Trying` is out; answer with provisional/accept/reject."""

    leg: Leg
    request: Request


@dataclass(frozen=True, slots=True)
class ProvisionalReceived:
    """UAC: a 101-199 (each distinct one once). `sdp` is early media's answer (183) or None."""

    leg: Leg
    status: int
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class Answered:
    """UAC: the 2xx. The layer has sent the ACK — unless our INVITE had no offer: then `sdp` is the
    peer's offer and the ACK waits for `InviteLayer.ack(leg, answer)`."""

    leg: Leg
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class Acked:
    """UAS: the ACK for our 2xx came. `sdp` is the answer it carried when our 2xx held the offer (the
    INVITE or re-INVITE had none), else None. For a re-INVITE only reported when it carries an answer."""

    leg: Leg
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class Failed:
    """UAC: the INVITE ended without a dialog: a non-2xx final (`response` is it), 408 for Timer B,
    503 for a dead flow, 487 after our CANCEL (also when a 2xx raced it; that 2xx was ACKed and BYEd)."""

    leg: Leg
    status: int
    reason: str
    response: Response | None = None


@dataclass(frozen=True, slots=True)
class Cancelled:
    """UAS: the caller CANCELled before our final; 200 to the CANCEL and 487 to the INVITE are out."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class ReinviteReceived:
    """A re-INVITE (`sdp` the offer, or None: then our answer_reinvite must carry an offer)."""

    leg: Leg
    sdp: bytes | None
    request: Request


@dataclass(frozen=True, slots=True)
class UpdateReceived:
    """An UPDATE with an offer (RFC 3311); answer with answer_update. UPDATEs without a body are
    target refreshes only: the layer answers them 200 itself."""

    leg: Leg
    sdp: bytes
    request: Request


@dataclass(frozen=True, slots=True)
class ReinviteCancelled:
    """The peer CANCELled its re-INVITE before we answered it (487 sent); a later answer is ignored."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class ReinviteCompleted:
    """Our re-INVITE (`method` "INVITE") or UPDATE finished: `status` is the final status (491 when the
    one retry also met glare); `sdp` the peer's answer on 2xx (its offer if we sent none: call `ack`)."""

    leg: Leg
    status: int
    sdp: bytes | None
    method: str = "INVITE"


@dataclass(frozen=True, slots=True)
class InfoReceived:
    """An INFO within the dialog, answered 200 (RFC 6086 legacy usage: DTMF relay). `content_type` is
    the media type in lower case without parameters (application/dtmf-relay), None without a body."""

    leg: Leg
    content_type: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Ended:
    """The dialog is over. `by`: who ended it. `reason`: "bye" (a BYE, either way), "ack_timeout" (no
    ACK for our 2xx in 64*T1; we sent BYE), "dialog_gone" (a 481 to our request, §12.2.1.2),
    "request_timeout" (408 or no answer to our request; we sent BYE), "transport_failure" (the flow
    died). `status`: the final status of our BYE or of the request that ended the dialog, else None."""

    leg: Leg
    by: Literal["remote", "local"]
    reason: str
    status: int | None = None


LegEvent = (
    InviteReceived
    | ProvisionalReceived
    | Answered
    | Acked
    | Failed
    | Cancelled
    | ReinviteReceived
    | UpdateReceived
    | ReinviteCancelled
    | ReinviteCompleted
    | InfoReceived
    | Ended
)


# ---------------------------------------------------------------------------------------------------------
# legs and what they keep
# ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Timer:
    at: float
    fire: Callable[[float], None]
    live: bool = True


@dataclass(slots=True, eq=False)
class _Answer:
    """Our 2xx to an INVITE (initial or re-INVITE), retransmitted until its ACK (§13.3.1.4)."""

    tx: ServerTransaction
    response: Response
    cseq: int
    initial: bool
    expects_answer: bool  #: our 2xx carried the offer: the ACK carries the answer
    interval: float
    retransmit: _Timer | None = None
    give_up: _Timer | None = None


@dataclass(slots=True, eq=False)
class _Incoming:
    """The peer's re-INVITE or UPDATE, waiting for the layer above to answer it."""

    tx: ServerTransaction
    method: str
    offer: bytes | None


@dataclass(slots=True, eq=False)
class _Offer:
    """Our re-INVITE or UPDATE: in flight (`tx`), or waiting out the 491 delay (`retry`)."""

    method: str
    sdp: bytes | None
    tx: ClientTransaction | None = None
    retried: bool = False
    retry: _Timer | None = None


_Purpose = Literal["invite", "reinvite", "update", "bye", "info", "orphan"]


@dataclass(slots=True, eq=False)
class _Sent:
    """`ClientTransaction.user_data` for every request the layer sends."""

    leg: Leg
    purpose: _Purpose


class Leg:
    """One INVITE dialog usage. Read its attributes; change it only through `InviteLayer`."""

    __slots__ = (
        "_ack_pending",
        "_acks",
        "_answer",
        "_bye_after_ack",
        "_bye_tx",
        "_cancelled",
        "_early",
        "_incoming",
        "_keys",
        "_merge_key",
        "_offer",
        "_tx",
        "call_id",
        "dialog",
        "flow",
        "invite",
        "local_sdp",
        "local_tag",
        "remote_sdp",
        "role",
        "state",
        "user_data",
    )

    role: Literal["uas", "uac"]
    state: LegState
    #: The dialog: early or confirmed; None before one exists (UAC: the latest early dialog).
    dialog: Dialog | None
    call_id: str
    #: Where every request of this leg goes: the INVITE's flow (the phone's NAT pinhole or connection).
    flow: Flow
    #: The initial INVITE (received for a UAS leg, sent for a UAC leg).
    invite: Request
    #: Our tag: the To tag of our responses (UAS), the From tag of our INVITE (UAC).
    local_tag: str
    #: The last session description we sent / the peer sent that took effect (opaque bytes).
    local_sdp: bytes | None
    remote_sdp: bytes | None
    #: A free slot for the layer above (the B2BUA's call).
    user_data: Any

    def __init__(
        self,
        role: Literal["uas", "uac"],
        state: LegState,
        invite: Request,
        flow: Flow,
        tx: ServerTransaction | ClientTransaction,
        local_tag: str,
    ) -> None:
        self.role = role
        self.state = state
        self.dialog = None
        self.call_id = invite.call_id
        self.flow = flow
        self.invite = invite
        self.local_tag = local_tag
        self.local_sdp = None
        self.remote_sdp = None
        self.user_data = None
        self._tx = tx
        self._answer: _Answer | None = None
        self._incoming: _Incoming | None = None
        self._offer: _Offer | None = None
        self._early: dict[str, Dialog] = {}  # UAC: early dialogs by To tag (a forking proxy below)
        self._acks: dict[tuple[str, int], Request] = {}  # UAC: the ACK sent per (To tag, CSeq) of a 2xx
        self._ack_pending: tuple[str, int] | None = None  # UAC: a 2xx with an offer waits for ack()
        self._cancelled = False
        self._bye_after_ack: str | None = None  # UAS: bye() while CONNECTING (the Reason, "" for none)
        self._bye_tx: ClientTransaction | None = None
        self._keys: set[DialogId] = set()
        self._merge_key: tuple[str, str, int] | None = None

    @property
    def transaction(self) -> ServerTransaction | ClientTransaction:
        """The initial INVITE's transaction: a ServerTransaction for a UAS leg (for instance to
        authenticate its request), a ClientTransaction for a UAC leg."""
        return self._tx

    @property
    def live(self) -> bool:
        return self.state is not LegState.TERMINATED

    @property
    def awaiting_ack_answer(self) -> bool:
        """UAC: the peer's 2xx carried an offer and waits for `InviteLayer.ack` to carry our answer."""
        return self._ack_pending is not None

    @property
    def negotiating(self) -> bool:
        """An offer/answer exchange is in progress: ours, the peer's, or a 2xx still waiting for ACK.
        While it is, `reinvite` and `update` raise; wait for the event that closes it."""
        return (
            self._offer is not None
            or self._incoming is not None
            or self._answer is not None
            or self._ack_pending is not None
        )

    def __repr__(self) -> str:
        return f"<Leg {self.role} {self.call_id} {self.state.name}>"


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def _sdp_of(message: Message) -> bytes | None:
    """The session description a message carries, or None (no body, or a body that is not SDP)."""
    if not message.body or message.content_type != SDP:
        return None
    return message.body


def _foreign_body(message: Message) -> bool:
    """A body we cannot take as a session description (415, §8.2.3; RFC 3261 §13.3.1 for INVITE)."""
    return bool(message.body) and message.content_type != SDP


def _route_flow(leg: Leg) -> Flow:
    """Where an in-dialog request of `leg` goes (§12.2.1.1, §8.1.2): the first hop of the route set when
    it names an address other than the one the leg's INVITE came from or went to (a proxy that
    record-routed), else the leg's own flow — the phone's NAT pinhole or connection (RFC 5626 §5).
    Host names in routes are not resolved (no RFC 3263 here): such a route falls back to the flow."""
    dialog = leg.dialog
    flow = leg.flow
    if dialog is None or not dialog.route_set:
        return flow
    try:
        uri = parse_name_addr(dialog.route_set[0]).uri
    except SipParseError:
        return flow
    if not isinstance(uri, SipUri):
        return flow
    try:
        host = str(ipaddress.ip_address(uri.host))
    except ValueError:
        return flow
    transport = uri.transport or ("tls" if uri.scheme == "sips" else flow.transport)
    port = uri.port or (5061 if transport == "tls" else 5060)
    if (host, port) == flow.remote and transport == flow.transport:
        return flow
    return Flow(transport, (host, port), flow.local)


def _bracket(contact: str) -> str:
    return contact if contact.startswith("<") else f"<{contact}>"


# ---------------------------------------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------------------------------------


class InviteLayer:
    """Every INVITE dialog usage of the switch. See the module docstring.

    Inputs: the `endpoint.Usage` callbacks (`on_request`, `on_cancel`, `on_ack`, `on_response`,
    `on_stray_response`, `on_timeout`, `on_transport_failed`), the commands below, and `handle_timer`.
    Outputs: `next_event()`, `next_deadline()`; bytes leave through the `Sender`.
    """

    methods: tuple[str, ...] = ("INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "INFO", "PRACK")

    def __init__(
        self, sender: Sender, *, timers: TimerValues | None = None, rng: random.Random | None = None
    ) -> None:
        self.sender = sender
        self.timers = timers if timers is not None else TimerValues()
        self.rng = rng if rng is not None else random.Random()
        self._legs: dict[Leg, None] = {}  # live legs, in creation order
        self._dialogs: dict[DialogId, tuple[Leg, Dialog]] = {}
        self._uac: dict[tuple[str, str], Leg] = {}  # (Call-ID, our From tag): UAC legs, live and lingering
        self._merge: dict[tuple[str, str, int], Leg] = {}  # unanswered UAS INVITEs (§8.2.2.2)
        self._events: deque[LegEvent] = deque()
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = 0
        self._dead = 0
        #: Messages we ignored, by reason (style 9.16): unmatched_ack, stray_2xx, late_answer ...
        self.dropped: dict[str, int] = {}

    # -- the sans-IO surface -----------------------------------------------------------------------------

    def next_event(self) -> LegEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            if heap[0][2].live:
                return heap[0][0]
            heapq.heappop(heap)
            self._dead -= 1
        return None

    def handle_timer(self, *, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if not timer.live:
                self._dead -= 1
                continue
            timer.live = False
            timer.fire(now)

    def legs(self) -> tuple[Leg, ...]:
        """The live legs (not yet TERMINATED)."""
        return tuple(self._legs)

    def __len__(self) -> int:
        return len(self._legs)

    # -- UAS commands ------------------------------------------------------------------------------------

    def provisional(self, leg: Leg, status: int = 180, *, sdp: bytes | None = None, now: float) -> None:
        """Send a 101-199 to the INVITE (183 with `sdp` for early media). The first one creates the early
        dialog: it carries our To tag, Contact and the INVITE's Record-Route (§12.1.1)."""
        if leg.state in _OVER:
            return
        self._require(leg, "uas", _UNANSWERED_UAS, "provisional")
        if not 101 <= status <= 199:
            raise LocalProtocolError(f"{status} is not a provisional status for provisional()")
        self._ensure_uas_dialog(leg)
        response = self._uas_response(leg, status, None, sdp, ())
        if sdp is not None:
            leg.local_sdp = sdp
        leg.state = LegState.EARLY
        assert isinstance(leg._tx, ServerTransaction)
        self.sender.respond(leg._tx, response, now=now)

    def accept(
        self, leg: Leg, sdp: bytes | None, *, now: float, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Answer the INVITE 200 with `sdp` (the answer, or our offer if the INVITE had none; None means
        the SDP of our last 183). Retransmitted until the ACK; see the module docstring."""
        if leg.state in _OVER:
            return
        self._require(leg, "uas", _UNANSWERED_UAS, "accept")
        body = sdp if sdp is not None else leg.local_sdp
        if body is None:
            raise LocalProtocolError("a 2xx to an INVITE carries an answer or an offer: give accept() an SDP")
        self._ensure_uas_dialog(leg)
        response = self._uas_response(leg, 200, None, body, (("Allow", ALLOW), *headers))
        leg.local_sdp = body
        leg.state = LegState.CONNECTING
        self._forget_merge(leg)
        assert isinstance(leg._tx, ServerTransaction)
        self._start_answer(
            leg, leg._tx, response, initial=True, expects_answer=leg.remote_sdp is None, now=now
        )

    def reject(
        self,
        leg: Leg,
        status: int,
        reason: str | None = None,
        *,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer the INVITE with a 300-699 final. The leg ends without an event (you ended it)."""
        if leg.state in _OVER:
            return
        self._require(leg, "uas", _UNANSWERED_UAS, "reject")
        if not 300 <= status <= 699:
            raise LocalProtocolError(f"{status} is not a failure status for reject()")
        response = self._uas_response(leg, status, reason, None, headers)
        assert isinstance(leg._tx, ServerTransaction)
        self.sender.respond(leg._tx, response, now=now)
        self._terminate(leg, now)

    # -- UAC commands ------------------------------------------------------------------------------------

    def invite(
        self,
        *,
        request_uri: str,
        flow: Flow,
        from_uri: str,
        from_display: str | None,
        to_uri: str,
        sdp: bytes | None,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
        call_id: str | None = None,
    ) -> Leg:
        """Send an INVITE on `flow` and return its UAC leg (CALLING). `sdp` None is a delayed offer."""
        contact = _bracket(self.sender.contact_for(flow))
        local_tag = new_tag()
        if call_id is None:
            uri = parse_uri(contact[1:-1])
            call_id = new_call_id(uri.host if isinstance(uri, SipUri) else "softswitch")
        display = "" if from_display is None else quote(from_display) + " "
        out = Headers()
        out.add("Via", self.sender.via_for(flow))
        out.add("Max-Forwards", "70")
        out.add("From", f"{display}<{from_uri}>;tag={local_tag}")
        out.add("To", f"<{to_uri}>")
        out.add("Call-ID", call_id)
        out.add("CSeq", "1 INVITE")
        out.add("Contact", contact)
        out.add("Allow", ALLOW)
        for name, value in headers:
            out.add(name, value)
        request = Request("INVITE", request_uri, out)
        request.set_body(sdp or b"", SDP if sdp else None)
        tx = self.sender.send_request(request, flow, now=now)
        leg = Leg("uac", LegState.CALLING, request, flow, tx, local_tag)
        leg.local_sdp = sdp
        tx.user_data = _Sent(leg, "invite")
        self._legs[leg] = None
        self._uac[(call_id, local_tag)] = leg
        return leg

    def cancel(self, leg: Leg, *, now: float, reason: str | None = None) -> None:
        """CANCEL our unanswered INVITE (§9.1); `reason` is a Reason header value (RFC 3326), e.g.
        `SIP;cause=200;text="Call completed elsewhere"`. The leg then ends with `Failed(487)`. On an
        answered leg this is `bye`."""
        if leg.state in _OVER:
            return
        if leg.role != "uac":
            raise LocalProtocolError("only a UAC leg can be cancelled: reject() an incoming INVITE")
        if leg.state is LegState.CONFIRMED:
            self.bye(leg, now=now, reason=reason)
            return
        leg._cancelled = True
        leg.state = LegState.TERMINATING
        assert isinstance(leg._tx, ClientTransaction)
        self.sender.cancel(leg._tx, now=now, headers=[("Reason", reason)] if reason else ())

    def ack(self, leg: Leg, sdp: bytes | None, *, now: float) -> None:
        """Send the ACK that carries our answer to the offer in a 2xx (our INVITE or re-INVITE had none)."""
        if leg._ack_pending is None:
            if leg.state in _OVER:
                return
            raise LocalProtocolError("no 2xx is waiting for an ACK with an answer")
        self._send_ack(leg, leg._ack_pending, sdp, now)
        if sdp is not None:
            leg.local_sdp = sdp

    # -- commands within the dialog, either role -------------------------------------------------------

    def bye(self, leg: Leg, *, now: float, reason: str | None = None) -> None:
        """End the call (§15). `reason` is a Reason header value (RFC 3326). Reported as
        `Ended(by="local")` once the BYE is answered. An unanswered UAC leg is cancelled instead."""
        if leg.state in _OVER:
            return
        if leg.role == "uac" and leg.state in _UNANSWERED_UAC:
            self.cancel(leg, now=now, reason=reason)
            return
        if leg.state in _UNANSWERED_UAS:
            raise LocalProtocolError("an unanswered incoming leg is rejected, not BYEd: use reject()")
        if leg.state is LegState.CONNECTING:
            # §15: "the callee's UA MUST NOT send a BYE on a confirmed dialog until it has received an
            # ACK for its 2xx response or until the server transaction times out."
            leg._bye_after_ack = reason or ""
            leg.state = LegState.TERMINATING
            return
        self._send_bye(leg, reason, now)

    def hangup(self, leg: Leg, *, now: float, reason: str | None = None, status: int = 480) -> None:
        """Whatever the state: reject an unanswered incoming leg with `status`, cancel an unanswered
        outgoing one, BYE an answered one, nothing for an ended one."""
        if leg.state in _OVER:
            return
        if leg.role == "uas" and leg.state in _UNANSWERED_UAS:
            self.reject(leg, status, now=now)
        else:
            self.bye(leg, now=now, reason=reason)

    def reinvite(self, leg: Leg, sdp: bytes | None, *, now: float) -> None:
        """Send a re-INVITE (§14.1) with `sdp` (None: ask the peer for an offer; answer it with `ack`).
        Reported as `ReinviteCompleted`; one retry after 491."""
        self._start_offer(leg, "INVITE", sdp, now)

    def update(self, leg: Leg, sdp: bytes, *, now: float) -> None:
        """Send an UPDATE with an offer (RFC 3311), in an early or confirmed dialog. Reported as
        `ReinviteCompleted(method="UPDATE")`; one retry after 491."""
        self._start_offer(leg, "UPDATE", sdp, now)

    def answer_reinvite(self, leg: Leg, *, sdp: bytes | None = None, status: int = 200, now: float) -> None:
        """Answer the re-INVITE reported by `ReinviteReceived`. A 2xx carries `sdp` (None: our current
        SDP) and is retransmitted until its ACK; a failure leaves the session as it was (§14.2)."""
        self._answer_incoming(leg, "INVITE", sdp, status, now)

    def answer_update(self, leg: Leg, *, sdp: bytes | None = None, status: int = 200, now: float) -> None:
        """Answer the UPDATE reported by `UpdateReceived` (RFC 3311 §5.2)."""
        self._answer_incoming(leg, "UPDATE", sdp, status, now)

    def info(self, leg: Leg, content_type: str, body: bytes, *, now: float) -> None:
        """Send an INFO (RFC 6086 legacy usage, e.g. application/dtmf-relay) in the dialog."""
        if leg.state in _OVER:
            return
        dialog = self._dialog_of(leg, "info")
        request = dialog.create_request(
            "INFO", via=self.sender.via_for(leg.flow), contact=None, body=body, content_type=content_type
        )
        self._send(leg, request, "info", now)

    # -- endpoint.Usage ----------------------------------------------------------------------------------

    def on_request(self, tx: ServerTransaction, *, now: float) -> None:
        request = tx.request
        method = request.method
        to_tag = request.to.tag
        if to_tag is None:
            if method == "INVITE":
                self._new_invite(tx, now)
            else:
                self._reply(tx, 481, now)  # BYE, UPDATE, INFO, PRACK outside any dialog
            return
        found = self._dialogs.get((request.call_id, to_tag, request.from_.tag or ""))
        if found is None:
            self._reply(tx, 481, now)
            return
        leg, dialog = found
        if method == "PRACK":
            self._reply(tx, 481, now)  # RFC 3262 §3: no unacknowledged reliable provisional matches
            return
        if not dialog.accepts_remote_cseq(request):
            self._reply(tx, 500, now, "Server Internal Error (CSeq out of order)")
            return
        tx.user_data = leg
        if method == "BYE":
            self._on_bye(leg, tx, now)
        elif leg.state is LegState.TERMINATING:
            self._reply(tx, 481, now, "Call/Transaction Does Not Exist (terminating)")
        elif method == "INVITE":
            self._on_reinvite(leg, dialog, tx, now)
        elif method == "UPDATE":
            self._on_update(leg, dialog, tx, now)
        elif method == "INFO":
            self._on_info(leg, tx, now)
        else:
            self._reply(tx, 405, now, headers=[("Allow", ALLOW)])

    def on_cancel(self, tx: ServerTransaction, invite_tx: ServerTransaction, *, now: float) -> None:
        """§9.2: 200 to the CANCEL; 487 to the INVITE if we have not answered it yet."""
        leg = invite_tx.user_data
        if not isinstance(leg, Leg):
            self._reply(tx, 200, now)
            return
        self.sender.respond(tx, tx.request.reply(200, to_tag=leg.local_tag), now=now)
        if invite_tx is leg._tx and leg.role == "uas" and leg.state in _UNANSWERED_UAS:
            self.sender.respond(invite_tx, invite_tx.request.reply(487, to_tag=leg.local_tag), now=now)
            self._terminate(leg, now)
            self._events.append(Cancelled(leg))
        elif leg._incoming is not None and leg._incoming.tx is invite_tx:
            self.sender.respond(invite_tx, invite_tx.request.reply(487), now=now)
            leg._incoming = None
            self._events.append(ReinviteCancelled(leg))

    def on_ack(self, request: Request, flow: Flow, *, now: float) -> None:
        """The ACK for a 2xx of ours (§13.3.1.4): stop retransmitting; report it."""
        found = self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))
        answer = found[0]._answer if found is not None else None
        if found is None or answer is None or request.cseq.seq != answer.cseq:
            self._count("unmatched_ack")  # a retransmitted or late ACK, or one for no dialog of ours
            return
        leg = found[0]
        self._stop_answer(leg)
        sdp = _sdp_of(request) if answer.expects_answer else None
        if sdp is not None:
            leg.remote_sdp = sdp
        if answer.initial:
            if leg._bye_after_ack is not None:
                self._send_bye(leg, leg._bye_after_ack or None, now)
                return
            leg.state = LegState.CONFIRMED
            self._events.append(Acked(leg, sdp))
        elif answer.expects_answer:
            self._events.append(Acked(leg, sdp))

    def on_response(self, tx: ClientTransaction, response: Response, *, now: float) -> None:
        sent = tx.user_data
        if not isinstance(sent, _Sent):
            return
        leg = sent.leg
        purpose = sent.purpose
        status = response.status
        if purpose == "invite":
            self._on_invite_response(leg, tx, response, now)
        elif purpose in ("reinvite", "update"):
            self._on_offer_response(leg, tx, response, now)
        elif status < 200:
            return
        elif purpose == "bye":
            self._end(leg, "local", "bye", status, now)
        elif purpose == "info" and status in (481, 408):
            self._dialog_failed(leg, status, now)

    def on_stray_response(self, response: Response, flow: Flow, *, now: float) -> None:
        """A 2xx to one of our INVITEs after its transaction ended (RFC 6026): ACK it again, or ACK and
        BYE it when it belongs to no dialog we keep (a late fork, a leg that already failed)."""
        if response.cseq.method != "INVITE" or not 200 <= response.status <= 299:
            self._count("stray_response")
            return
        leg = self._uac.get((response.call_id, response.from_.tag or ""))
        if leg is None:
            self._count("stray_2xx")
            return
        key = (response.to.tag or "", response.cseq.seq)
        ack = leg._acks.get(key)
        if ack is not None:
            self.sender.send_stateless(ack, _route_flow(leg))
        else:
            self._ack_and_bye(leg, response, now)

    def on_timeout(self, tx: ClientTransaction | ServerTransaction, *, now: float) -> None:
        """Timer B/F (no answer: 408), Timer H (no ACK for a failure: nothing to do), the CANCEL guard."""
        self._on_failure(tx, now, transport=False)

    def on_transport_failed(self, tx: ClientTransaction | ServerTransaction, *, now: float) -> None:
        """The flow died under a transaction still waiting for its outcome (503, §8.1.3.1)."""
        self._on_failure(tx, now, transport=True)

    # -- UAS internals -----------------------------------------------------------------------------------

    def _new_invite(self, tx: ServerTransaction, now: float) -> None:
        request = tx.request
        from_tag = request.from_.tag
        merge_key = (request.call_id, from_tag or "", request.cseq.seq)
        if merge_key in self._merge:
            # §8.2.2.2: the same request reached us twice by different paths (a forking proxy upstream).
            self._reply(tx, 482, now)
            return
        if not request.contacts:
            self._reply(tx, 400, now, "Bad Request (missing Contact)")
            return
        if not from_tag:
            self._reply(tx, 400, now, "Bad Request (From without a tag)")
            return
        if _foreign_body(request):
            self._reply(tx, 415, now, headers=[("Accept", SDP)])
            return
        leg = Leg("uas", LegState.INCOMING, request, tx.flow, tx, new_tag())
        leg.remote_sdp = _sdp_of(request)
        leg._merge_key = merge_key
        tx.user_data = leg
        self._merge[merge_key] = leg
        self._legs[leg] = None
        self.sender.respond(tx, request.reply(100), now=now)
        self._events.append(InviteReceived(leg, request))

    def _ensure_uas_dialog(self, leg: Leg) -> None:
        if leg.dialog is None:
            try:
                dialog = Dialog.for_uas(leg.invite, leg.local_tag)
            except SipParseError as exc:  # checked in _new_invite; kept for a clear failure
                raise LocalProtocolError(f"cannot create the dialog: {exc.reason}") from None
            leg.dialog = dialog
            self._register(leg, dialog)

    def _uas_response(
        self,
        leg: Leg,
        status: int,
        reason: str | None,
        sdp: bytes | None,
        headers: Iterable[tuple[str, str]],
    ) -> Response:
        """A response to the initial INVITE; those that create the dialog carry Contact and the
        INVITE's Record-Route, in order (§12.1.1)."""
        extra: list[tuple[str, str]] = []
        if 101 <= status <= 299:
            extra.extend(("Record-Route", value) for value in leg.invite.headers.get_all("record-route"))
            extra.append(("Contact", _bracket(self.sender.contact_for(leg.flow))))
        extra.extend(headers)
        return leg.invite.reply(
            status,
            reason,
            to_tag=leg.local_tag,
            headers=extra,
            body=sdp or b"",
            content_type=SDP if sdp else None,
        )

    def _start_answer(
        self,
        leg: Leg,
        tx: ServerTransaction,
        response: Response,
        *,
        initial: bool,
        expects_answer: bool,
        now: float,
    ) -> None:
        """Send a 2xx to an INVITE and arm its retransmission and the 64*T1 wait for the ACK."""
        timers = self.timers
        answer = _Answer(tx, response, tx.request.cseq.seq, initial, expects_answer, timers.t1)
        leg._answer = answer
        self.sender.respond(tx, response, now=now)
        answer.retransmit = self._arm(now + timers.t1, lambda t: self._retransmit_2xx(leg, answer, t))
        answer.give_up = self._arm(now + 64 * timers.t1, lambda t: self._ack_timeout(leg, answer, t))

    def _retransmit_2xx(self, leg: Leg, answer: _Answer, now: float) -> None:
        if leg._answer is not answer:
            return
        self.sender.respond(answer.tx, answer.response, now=now)
        answer.interval = min(2 * answer.interval, self.timers.t2)
        answer.retransmit = self._arm(now + answer.interval, lambda t: self._retransmit_2xx(leg, answer, t))

    def _ack_timeout(self, leg: Leg, answer: _Answer, now: float) -> None:
        """§13.3.1.4: 64*T1 without an ACK: "the session SHOULD be terminated ... with a BYE"."""
        if leg._answer is not answer:
            return
        self._stop_answer(leg)
        if leg._bye_after_ack is not None:
            self._send_bye(leg, leg._bye_after_ack or None, now)
            return
        self._send_orphan_bye(leg, now)
        self._end(leg, "local", "ack_timeout", None, now)

    def _stop_answer(self, leg: Leg) -> None:
        answer = leg._answer
        if answer is None:
            return
        leg._answer = None
        self._disarm(answer.retransmit)
        self._disarm(answer.give_up)

    def _on_bye(self, leg: Leg, tx: ServerTransaction, now: float) -> None:
        """§15.1.2: 200 to the BYE; pending requests get 487 (done by _terminate); the leg ends."""
        self.sender.respond(tx, tx.request.reply(200), now=now)
        if leg.role == "uac" and leg.state in _UNANSWERED_UAC:
            # A BYE on an early dialog of our INVITE: give up the INVITE (Failed(487) follows).
            self.cancel(leg, now=now)
            return
        if leg._bye_tx is not None:
            return  # BYEs crossed: ours reports the end when it is answered
        if leg.role == "uac" and leg._cancelled:
            return  # our CANCEL is out; its 487 reports the end
        if leg.role == "uas" and leg.state in _UNANSWERED_UAS:
            # The caller may BYE an early dialog (§15): the INVITE is over too.
            assert isinstance(leg._tx, ServerTransaction)
            self.sender.respond(leg._tx, leg.invite.reply(487, to_tag=leg.local_tag), now=now)
        self._end(leg, "remote", "bye", None, now)

    def _on_reinvite(self, leg: Leg, dialog: Dialog, tx: ServerTransaction, now: float) -> None:
        """§14.2: a re-INVITE, unless one is in progress either way (491 / 500 with Retry-After)."""
        if leg.role == "uac" and leg.state in _UNANSWERED_UAC:
            self._reply(tx, 491, now)  # our INVITE is still in progress on this dialog
            return
        if leg.role == "uas" and leg.state in _UNANSWERED_UAS:
            self._retry_later(tx, now)  # their INVITE has no final from us yet
            return
        if (leg._offer is not None and leg._offer.tx is not None) or leg._ack_pending is not None:
            self._reply(tx, 491, now)  # glare: our re-INVITE or UPDATE is outstanding
            return
        if leg._incoming is not None or leg._answer is not None:
            self._retry_later(tx, now)
            return
        if _foreign_body(tx.request):
            self._reply(tx, 415, now, headers=[("Accept", SDP)])
            return
        sdp = _sdp_of(tx.request)
        leg._incoming = _Incoming(tx, "INVITE", sdp)
        self.sender.respond(tx, tx.request.reply(100), now=now)
        self._events.append(ReinviteReceived(leg, sdp, tx.request))

    def _on_update(self, leg: Leg, dialog: Dialog, tx: ServerTransaction, now: float) -> None:
        """RFC 3311 §5.2."""
        request = tx.request
        if _foreign_body(request):
            self._reply(tx, 415, now, headers=[("Accept", SDP)])
            return
        sdp = _sdp_of(request)
        if sdp is None:
            # No offer: only a target refresh (or a session-timer refresh): nothing to decide above.
            dialog.refresh_target(request)
            self._reply(tx, 200, now, headers=[("Contact", _bracket(self.sender.contact_for(leg.flow)))])
            return
        our_offer_out = (
            (leg._offer is not None and leg._offer.tx is not None)
            or leg._ack_pending is not None
            or (leg._answer is not None and leg._answer.expects_answer)
            or (leg.role == "uac" and leg.state in _UNANSWERED_UAC)
        )
        if our_offer_out:
            self._reply(tx, 491, now)
            return
        if leg._incoming is not None or leg.state in _UNANSWERED_UAS or leg._answer is not None:
            self._retry_later(tx, now)  # an offer of theirs is not answered yet
            return
        leg._incoming = _Incoming(tx, "UPDATE", sdp)
        self._events.append(UpdateReceived(leg, sdp, request))

    def _on_info(self, leg: Leg, tx: ServerTransaction, now: float) -> None:
        request = tx.request
        if "info-package" in request.headers:
            # RFC 6086 §4.2.2: we announce no Recv-Info, so every Info Package is one we did not ask for.
            self._reply(tx, 469, now, headers=[("Recv-Info", "")])
            return
        self._reply(tx, 200, now)
        self._events.append(InfoReceived(leg, request.content_type, request.body))

    def _answer_incoming(self, leg: Leg, method: str, sdp: bytes | None, status: int, now: float) -> None:
        incoming = leg._incoming
        if incoming is None or incoming.method != method:
            if leg.state in _OVER or incoming is None:
                self._count("late_answer")  # cancelled, ended, or answered for us (491/500)
                return
            raise LocalProtocolError(f"the pending request is {incoming.method}, not {method}")
        if not 200 <= status <= 699:
            raise LocalProtocolError(f"{status} is not a final status")
        tx = incoming.tx
        request = tx.request
        if status >= 300:
            leg._incoming = None
            self.sender.respond(tx, request.reply(status), now=now)
            return
        body = sdp if sdp is not None else leg.local_sdp
        if body is None:
            raise LocalProtocolError(f"a 2xx to {method} with an offer carries an answer: give an SDP")
        leg._incoming = None
        headers = [("Contact", _bracket(self.sender.contact_for(leg.flow))), ("Allow", ALLOW)]
        response = request.reply(status, headers=headers, body=body, content_type=SDP)
        assert leg.dialog is not None
        leg.dialog.refresh_target(request)  # a target refresh takes effect with its 2xx (RFC 6141 §3)
        leg.local_sdp = body
        if incoming.offer is not None:
            leg.remote_sdp = incoming.offer
        if method == "INVITE":
            expects = incoming.offer is None
            self._start_answer(leg, tx, response, initial=False, expects_answer=expects, now=now)
        else:
            self.sender.respond(tx, response, now=now)

    # -- UAC internals -----------------------------------------------------------------------------------

    def _on_invite_response(self, leg: Leg, tx: ClientTransaction, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            self._on_invite_provisional(leg, response)
        elif status < 300:
            self._on_invite_2xx(leg, response, now)
        elif leg.state is not LegState.TERMINATED:
            # The transaction has ACKed the failure (§17.1.1.3).
            self._terminate(leg, now)
            self._events.append(Failed(leg, status, response.reason, response))

    def _on_invite_provisional(self, leg: Leg, response: Response) -> None:
        if leg.state not in _UNANSWERED_UAC:
            return  # late, or we are cancelling
        status = response.status
        if status == 100:
            if leg.state is LegState.CALLING:
                leg.state = LegState.PROCEEDING
            return
        tag = response.to.tag
        if tag:
            dialog = leg._early.get(tag)
            if dialog is None:
                dialog = Dialog.for_uac(leg.invite, response)
                leg._early[tag] = dialog
                self._register(leg, dialog)
            else:
                dialog.refresh_target(response)
            leg.dialog = dialog
            leg.state = LegState.EARLY
        elif leg.state is LegState.CALLING:
            leg.state = LegState.PROCEEDING
        sdp = _sdp_of(response)
        if sdp is not None:
            leg.remote_sdp = sdp
        self._events.append(ProvisionalReceived(leg, status, sdp))

    def _on_invite_2xx(self, leg: Leg, response: Response, now: float) -> None:
        tag = response.to.tag or ""
        ack = leg._acks.get((tag, response.cseq.seq))
        if ack is not None:
            # a retransmission: the same ACK again (§13.2.2.4)
            self.sender.send_stateless(ack, _route_flow(leg))
            return
        if leg.state not in _UNANSWERED_UAC:
            # Not the answer we wait for: cancelled, failed already, or a second fork (§13.2.2.4: ACK
            # it, then end it with BYE). A retransmission of the 2xx we ACK with an answer still to come
            # is ignored.
            if leg._ack_pending is not None and leg.dialog is not None and leg.dialog.remote_tag == tag:
                return
            self._ack_and_bye(leg, response, now)
            if leg._cancelled and leg.state is not LegState.TERMINATED:
                self._terminate(leg, now)
                self._events.append(Failed(leg, 487, "Answered after CANCEL", response))
            return
        dialog = leg._early.pop(tag, None)
        if dialog is None:
            dialog = Dialog.for_uac(leg.invite, response)
            self._register(leg, dialog)
        else:
            dialog.update_from_response(response)  # §13.2.2.4: recompute the route set from the 2xx
        for other in leg._early.values():
            self._unregister(leg, other.id)
        leg._early.clear()
        leg.dialog = dialog
        leg.state = LegState.CONFIRMED
        sdp = _sdp_of(response)
        if sdp is not None:
            leg.remote_sdp = sdp
        key = (tag, response.cseq.seq)
        if leg.local_sdp is None and sdp is not None:
            leg._ack_pending = key  # delayed offer: the ACK carries our answer (ack())
        else:
            self._send_ack(leg, key, None, now)
        self._events.append(Answered(leg, sdp))

    def _send_ack(self, leg: Leg, key: tuple[str, int], sdp: bytes | None, now: float) -> None:
        """§13.2.2.4: the ACK for a 2xx is built like any request in the dialog, with the INVITE's CSeq."""
        dialog = leg.dialog
        assert dialog is not None
        ack = dialog.create_request(
            "ACK",
            via=self.sender.via_for(leg.flow),
            contact=None,
            cseq=key[1],
            body=sdp or b"",
            content_type=SDP if sdp else None,
        )
        leg._acks[key] = ack
        if leg._ack_pending == key:
            leg._ack_pending = None
        self.sender.send_stateless(ack, _route_flow(leg))

    def _ack_and_bye(self, leg: Leg, response: Response, now: float) -> None:
        """A 2xx we do not want: ACK it (the UAS retransmits until we do) and BYE its dialog."""
        key = (response.to.tag or "", response.cseq.seq)
        if key in leg._acks:
            self.sender.send_stateless(leg._acks[key], _route_flow(leg))
            return
        tag = response.to.tag
        if not tag:
            self._count("2xx_without_to_tag")
            return
        dialog = Dialog.for_uac(leg.invite, response)
        known = leg.dialog if leg.dialog is not None and leg.dialog.remote_tag == tag else leg._early.get(tag)
        # A BYE's CSeq must be above every request we sent in that dialog (early UPDATE/INFO included).
        dialog.local_seq = max(dialog.local_seq, response.cseq.seq, known.local_seq if known else 0)
        via = self.sender.via_for(leg.flow)
        ack = dialog.create_request("ACK", via=via, contact=None, cseq=response.cseq.seq)
        leg._acks[key] = ack
        self.sender.send_stateless(ack, _route_flow(leg))
        bye = dialog.create_request("BYE", via=self.sender.via_for(leg.flow), contact=None)
        self._send(leg, bye, "orphan", now)

    def _on_offer_response(self, leg: Leg, tx: ClientTransaction, response: Response, now: float) -> None:
        """The answer to our re-INVITE (§14.1) or UPDATE (RFC 3311 §5.1)."""
        status = response.status
        if status < 200:
            return
        is_invite = tx.method == "INVITE"
        if is_invite and status < 300:
            key = (response.to.tag or "", response.cseq.seq)
            if key in leg._acks:
                self.sender.send_stateless(leg._acks[key], _route_flow(leg))
                return
        offer = leg._offer
        if offer is None or offer.tx is not tx:
            # The leg ended (or moved on) while this was in flight; a 2xx must still be ACKed.
            if is_invite and status < 300 and leg.dialog is not None:
                self._send_ack(leg, (response.to.tag or "", response.cseq.seq), None, now)
            return
        dialog = leg.dialog
        assert dialog is not None
        if status < 300:
            leg._offer = None
            dialog.refresh_target(response)
            sdp = _sdp_of(response)
            if offer.sdp is not None:
                leg.local_sdp = offer.sdp
            if sdp is not None:
                leg.remote_sdp = sdp
            if is_invite:
                key = (response.to.tag or "", response.cseq.seq)
                if offer.sdp is None and sdp is not None:
                    leg._ack_pending = key  # we asked for an offer: our answer goes in the ACK
                else:
                    self._send_ack(leg, key, None, now)
            self._events.append(ReinviteCompleted(leg, status, sdp, offer.method))
            return
        if status == 491 and not offer.retried:
            # §14.1: retry after a random time, longer for the owner of the Call-ID.
            cents = self.rng.randint(210, 400) if leg.role == "uac" else self.rng.randint(0, 200)
            offer.tx = None
            offer.retry = self._arm(now + cents / 100, lambda t: self._retry_offer(leg, offer, t))
            return
        leg._offer = None
        if status in (481, 408):
            self._dialog_failed(leg, status, now)
            return
        self._events.append(ReinviteCompleted(leg, status, None, offer.method))

    def _retry_offer(self, leg: Leg, offer: _Offer, now: float) -> None:
        if leg._offer is not offer or leg.state in _OVER:
            return
        offer.retry = None
        if leg._incoming is not None or leg._answer is not None:
            # The peer's own offer won the race and is still in progress: give up, and say so.
            leg._offer = None
            self._events.append(ReinviteCompleted(leg, 491, None, offer.method))
            return
        offer.retried = True
        self._send_offer(leg, offer, now)

    def _start_offer(self, leg: Leg, method: str, sdp: bytes | None, now: float) -> None:
        if leg.state in _OVER:
            return
        if method == "INVITE":
            if leg.state is not LegState.CONFIRMED:
                raise LocalProtocolError(f"re-INVITE needs a confirmed dialog, not {leg.state.name}")
        elif leg.state not in (LegState.EARLY, LegState.CONFIRMED):
            raise LocalProtocolError(f"UPDATE needs an early or confirmed dialog, not {leg.state.name}")
        if leg.negotiating:
            raise LocalProtocolError("an offer/answer exchange is in progress on this leg")
        offer = _Offer(method, sdp)
        leg._offer = offer
        self._send_offer(leg, offer, now)

    def _send_offer(self, leg: Leg, offer: _Offer, now: float) -> None:
        dialog = self._dialog_of(leg, offer.method)
        request = dialog.create_request(
            offer.method,
            via=self.sender.via_for(leg.flow),
            contact=self.sender.contact_for(leg.flow),  # a target refresh request carries Contact
            headers=[("Allow", ALLOW)],
            body=offer.sdp or b"",
            content_type=SDP if offer.sdp else None,
        )
        offer.tx = self._send(leg, request, "reinvite" if offer.method == "INVITE" else "update", now)

    # -- ending ------------------------------------------------------------------------------------------

    def _send_bye(self, leg: Leg, reason: str | None, now: float) -> None:
        dialog = self._dialog_of(leg, "BYE")
        if leg._ack_pending is not None:
            self._send_ack(leg, leg._ack_pending, None, now)  # a 2xx is ACKed before the BYE
        self._stop_answer(leg)
        self._cancel_retry(leg)
        self._refuse_pending(leg, now)
        headers = [("Reason", reason)] if reason else []
        bye = dialog.create_request("BYE", via=self.sender.via_for(leg.flow), contact=None, headers=headers)
        leg.state = LegState.TERMINATING
        leg._bye_tx = self._send(leg, bye, "bye", now)

    def _send_orphan_bye(self, leg: Leg, now: float) -> None:
        """A BYE whose outcome nobody waits for (the leg is ended at once)."""
        dialog = leg.dialog
        if dialog is None:
            return
        bye = dialog.create_request("BYE", via=self.sender.via_for(leg.flow), contact=None)
        self._send(leg, bye, "orphan", now)

    def _dialog_failed(self, leg: Leg, status: int, now: float, *, transport: bool = False) -> None:
        """§12.2.1.2: a 481 or 408 (or no answer at all) to a request within the dialog ends it."""
        if leg.state is LegState.TERMINATED:
            return
        if leg.role == "uac" and (leg.state in _UNANSWERED_UAC or leg._cancelled):
            # An early dialog died under our INVITE: call the INVITE off; its final reports the end.
            self.cancel(leg, now=now)
            return
        if transport:
            self._end(leg, "local", "transport_failure", 503, now)
        elif status == 481:
            self._end(leg, "remote", "dialog_gone", 481, now)
        else:
            # §15: the callee MUST NOT send BYE on an early dialog; _terminate answers its INVITE 487.
            if leg._bye_tx is None and not (leg.role == "uas" and leg.state in _UNANSWERED_UAS):
                self._send_orphan_bye(leg, now)
            self._end(leg, "local", "request_timeout", 408, now)

    def _end(
        self, leg: Leg, by: Literal["remote", "local"], reason: str, status: int | None, now: float
    ) -> None:
        if leg.state is LegState.TERMINATED:
            return
        self._terminate(leg, now)
        self._events.append(Ended(leg, by, reason, status))

    def _terminate(self, leg: Leg, now: float) -> None:
        """The leg is over: drop its dialogs and timers; answer what the peer still waits for."""
        if leg.state is LegState.TERMINATED:
            return
        self._refuse_pending(leg, now)
        if leg._ack_pending is not None:
            self._send_ack(leg, leg._ack_pending, None, now)  # every 2xx is ACKed (§13.2.2.4)
        tx = leg._tx
        if isinstance(tx, ServerTransaction) and tx.state is Ist.PROCEEDING:
            # The INVITE has no final response yet: every INVITE gets one (§13.3.1).
            self.sender.respond(tx, leg.invite.reply(487, to_tag=leg.local_tag), now=now)
        elif isinstance(tx, ClientTransaction) and tx.state in (Ict.CALLING, Ict.PROCEEDING):
            self.sender.cancel(tx, now=now)  # our INVITE still waits for a final: call it off (§9.1)
        leg.state = LegState.TERMINATED
        self._stop_answer(leg)
        self._cancel_retry(leg)
        offer = leg._offer
        if offer is not None and offer.tx is not None and offer.tx.is_invite and not offer.tx.terminated:
            # Our re-INVITE has no final yet and the peer may never send one now that the dialog is
            # gone (it stops retransmitting its 2xx): CANCEL it, so the §9.1 guard bounds the transaction.
            self.sender.cancel(offer.tx, now=now)
        leg._offer = None
        for dialog_id in list(leg._keys):
            self._unregister(leg, dialog_id)
        self._forget_merge(leg)
        self._legs.pop(leg, None)
        if leg.role == "uac":
            # Keep the leg findable for late 2xx (forks, races) as long as the UAS may retransmit them.
            key = (leg.call_id, leg.local_tag)
            self._arm(now + 64 * self.timers.t1, lambda t: self._linger_over(key, leg))

    def _linger_over(self, key: tuple[str, str], leg: Leg) -> None:
        if self._uac.get(key) is leg:
            del self._uac[key]

    def _refuse_pending(self, leg: Leg, now: float) -> None:
        """§15.1.2: requests of the peer we have not answered get 487."""
        incoming = leg._incoming
        if incoming is not None:
            leg._incoming = None
            self.sender.respond(incoming.tx, incoming.tx.request.reply(487), now=now)

    def _cancel_retry(self, leg: Leg) -> None:
        offer = leg._offer
        if offer is not None and offer.retry is not None:
            self._disarm(offer.retry)
            offer.retry = None
            leg._offer = None

    def _on_failure(self, tx: ClientTransaction | ServerTransaction, now: float, *, transport: bool) -> None:
        if isinstance(tx, ServerTransaction):
            leg = tx.user_data
            if not isinstance(leg, Leg):
                return
            if tx is leg._tx and leg.state in _UNANSWERED_UAS:
                # The caller's flow died before we answered (Timer H only runs after a failure).
                self._end(leg, "remote", "transport_failure", None, now)
            elif leg._incoming is not None and leg._incoming.tx is tx:
                leg._incoming = None
            return
        sent = tx.user_data
        if not isinstance(sent, _Sent):
            return
        leg = sent.leg
        purpose = sent.purpose
        if purpose == "invite":
            if leg.state is LegState.TERMINATED:
                return
            self._terminate(leg, now)
            if transport:
                self._events.append(Failed(leg, 503, "Service Unavailable (transport failure)"))
            elif leg._cancelled:
                self._events.append(Failed(leg, 487, "Request Terminated (no final response)"))
            else:
                self._events.append(Failed(leg, 408, "Request Timeout"))
        elif purpose == "bye":
            self._end(leg, "local", "bye", 503 if transport else 408, now)
        elif purpose in ("reinvite", "update", "info"):
            if purpose != "info" and (leg._offer is None or leg._offer.tx is not tx):
                return
            self._dialog_failed(leg, 408, now, transport=transport)

    # -- small things ------------------------------------------------------------------------------------

    def _require(self, leg: Leg, role: str, states: frozenset[LegState], what: str) -> None:
        if leg.role != role:
            raise LocalProtocolError(f"{what}() is for {role.upper()} legs, not {leg!r}")
        if leg.state not in states:
            raise LocalProtocolError(f"{what}() cannot be used in {leg.state.name}")

    def _dialog_of(self, leg: Leg, what: str) -> Dialog:
        if leg.dialog is None:
            raise LocalProtocolError(f"{what} needs a dialog; {leg!r} has none")
        return leg.dialog

    def _send(self, leg: Leg, request: Request, purpose: _Purpose, now: float) -> ClientTransaction:
        tx = self.sender.send_request(request, _route_flow(leg), now=now)
        tx.user_data = _Sent(leg, purpose)
        return tx

    def _reply(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.sender.respond(tx, tx.request.reply(status, reason, to_tag=new_tag(), headers=headers), now=now)

    def _retry_later(self, tx: ServerTransaction, now: float) -> None:
        """§14.2: 500 with a Retry-After between 0 and 10 seconds."""
        self._reply(
            tx,
            500,
            now,
            "Server Internal Error (request pending)",
            headers=[("Retry-After", str(self.rng.randint(0, 10)))],
        )

    def _register(self, leg: Leg, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = (leg, dialog)
        leg._keys.add(dialog.id)

    def _unregister(self, leg: Leg, key: DialogId) -> None:
        leg._keys.discard(key)
        found = self._dialogs.get(key)
        if found is not None and found[0] is leg:
            del self._dialogs[key]

    def _forget_merge(self, leg: Leg) -> None:
        key = leg._merge_key
        if key is not None and self._merge.get(key) is leg:
            del self._merge[key]
        leg._merge_key = None

    def _count(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        _log.debug("x invite layer: %s", reason)

    def _arm(self, at: float, fire: Callable[[float], None]) -> _Timer:
        timer = _Timer(at, fire)
        heapq.heappush(self._heap, (at, self._seq, timer))
        self._seq += 1
        return timer

    def _disarm(self, timer: _Timer | None) -> None:
        if timer is not None and timer.live:
            timer.live = False
            self._dead += 1
            if self._dead > _COMPACT_MIN and 2 * self._dead > len(self._heap):
                self._heap[:] = [entry for entry in self._heap if entry[2].live]
                heapq.heapify(self._heap)
                self._dead = 0
