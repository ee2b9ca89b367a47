"""SIP transactions (RFC 3261 §17, §9.1–9.2 for CANCEL; RFC 6026 §7 for the Accepted states).

The four state machines — INVITE client (ICT, Figure 5 with RFC 6026's Accepted), non-INVITE client (NICT,
Figure 6), INVITE server (IST, Figure 7 with Accepted), non-INVITE server (NIST, Figure 8) — are tables of
`(state, input) -> (next state, action)` below, one row per arrow of the figure. Everything that changes a
transaction's state lives in this file; it does not know whether it serves a registrar or a B2BUA.

Theory of operation (sans-IO, like aioquic's `QuicConnection`): the caller feeds parsed messages and the
time — `receive_request`, `receive_response`, `send_request`, `respond`, `cancel`, `handle_timer`,
`transport_error`, each with `now=` — and then drains `outgoing()` (bytes to write, with the `Flow` to write
them on), `next_event()` (what the transaction user must hear about) and `next_deadline()` (when to call
`handle_timer` next). No sockets, no clock, no asyncio.

Rules of this layer:

* Matching: responses by top-Via branch and CSeq method (§17.1.3); requests by branch, sent-by and method,
  ACK matching its INVITE and CANCEL being its own transaction (§17.2.3), with the pre-RFC 3261 fallback
  for a branch without the `z9hG4bK` cookie (Request-URI, To tag, From tag, Call-ID, CSeq, top Via; an
  ACK's To tag is compared with our response's). Request-URIs in that fallback are compared by scheme, user,
  lower-cased host, port and parameters — stricter than §19.1.4, which is harmless for retransmissions.
* Timers are deadlines in one heap of `(deadline, seq, tx)` with lazy deletion: each transaction has two
  slots, a retransmit timer (A, E or G — unreliable transports only) and an expiry timer (B, D, F, H, I, J,
  K, L, M, or the CANCEL guard below); re-arming a slot makes its old heap entry stale. Zero-length timers
  (D, I, J, K on reliable transports) end the transaction at once.
* Every message is serialised once; a retransmission re-sends the same bytes.
* Responses go out on the request's flow: we always answer to the source address and port the request came
  from (rport behaviour forced on, as Kamailio's `force_rport` does for phones behind NAT). The Via is not
  consulted for routing responses.
* The IST does **not** send 100 Trying by itself (§17.2.1 says it must unless the TU answers within 200 ms):
  the TU sends it (or a final) when it receives `RequestReceived` for an INVITE.
* A peer's out-of-place message (a 1xx after a final, an ACK in Proceeding, ...) is ignored and counted in
  `dropped`; our own misuse (a second final response, CANCEL of a non-INVITE, a request without a
  `z9hG4bK` branch) raises `LocalProtocolError`. `respond()` on a transaction that has already terminated
  (for instance by `transport_error`) is dropped and counted, because the TU may learn of it late.
* Provisional responses are passed up once per distinct (status, To tag, RSeq): duplicates (network
  duplication, the once-a-minute refresh of §13.3.1.1) are absorbed. Every 2xx to an INVITE is passed up,
  retransmissions included, because the TU must ACK each one (RFC 6026 Accepted state).
* CANCEL (§9.1): `cancel()` builds it from the INVITE; it is held until a provisional response arrives and
  dropped if a final arrives first. Once it is sent, the INVITE client transaction gets a guard of 64*T1:
  if no final response arrives by then, it ends with `TransactionTimedOut` (§9.1: "the client SHOULD then
  consider the original transaction cancelled and SHOULD destroy the client transaction").
* `transport_error(flow)` ends every transaction on that flow; those still waiting for an outcome report
  `TransportFailed` (a subclass of `TransactionTimedOut`, so a TU that only knows timeouts still fails the
  request; RFC 3261 §8.1.3.1 maps it to 503 rather than 408).

Not here: building Via headers and branches (the TU does, so its Via carries its sent-by), checking that a
response's top Via sent-by is ours (§18.1.2, the transport's job), the 2xx retransmission and the ACK for a
2xx (§13.3.1.4, §13.2.2.4 — sip/invite.py; the TU passes its 2xx retransmissions through `respond()` and its
ACKs through `send_stateless()`), 100rel (RFC 3262), and proxy behaviour (Timer C, §16).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, auto
from itertools import chain
from typing import Any, Final
from urllib.parse import unquote

from softswitch.sip.errors import LocalProtocolError, SipParseError
from softswitch.sip.flow import Flow
from softswitch.sip.headers import split_list
from softswitch.sip.message import Headers, Request, Response
from softswitch.sip.timers import TimerValues
from softswitch.sip.uri import SipUri, Uri

__all__ = [
    "ICT_TRANSITIONS",
    "IST_TRANSITIONS",
    "NICT_TRANSITIONS",
    "NIST_TRANSITIONS",
    "AckReceived",
    "Action",
    "ClientTransaction",
    "Ict",
    "Ist",
    "Nict",
    "Nist",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "StrayResponse",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "TxInput",
]

_log = logging.getLogger(__name__)

MAGIC_COOKIE: Final = "z9hG4bK"  # §8.1.1.7: branches that start with it are globally unique
DEFAULT_TIMERS: Final = TimerValues()
#: Rebuild the deadline heap when stale entries are more than this and more than half of it.
_COMPACT_MIN: Final = 256


# ---------------------------------------------------------------------------------------------------------
# states, inputs, actions
# ---------------------------------------------------------------------------------------------------------


class Ict(Enum):
    """INVITE client transaction states (RFC 3261 §17.1.1, Figure 5; RFC 6026 §7.2)."""

    CALLING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    ACCEPTED = auto()
    TERMINATED = auto()


class Nict(Enum):
    """Non-INVITE client transaction states (RFC 3261 §17.1.2, Figure 6)."""

    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    TERMINATED = auto()


class Ist(Enum):
    """INVITE server transaction states (RFC 3261 §17.2.1, Figure 7; RFC 6026 §7.1)."""

    PROCEEDING = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    ACCEPTED = auto()
    TERMINATED = auto()


class Nist(Enum):
    """Non-INVITE server transaction states (RFC 3261 §17.2.2, Figure 8)."""

    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    TERMINATED = auto()


State = Ict | Nict | Ist | Nist


class TxInput(Enum):
    """What can happen to a transaction."""

    # from the peer: an out-of-place one is ignored
    PROVISIONAL = auto()  #: a 1xx arrived (client)
    SUCCESS = auto()  #: a 2xx arrived (client)
    FAILURE = auto()  #: a 300-699 arrived (client)
    RETRANSMISSION = auto()  #: the request arrived again (server)
    ACK = auto()  #: an ACK matched this INVITE server transaction
    # from the TU: an out-of-place one raises LocalProtocolError
    SEND_PROVISIONAL = auto()  #: respond() with a 1xx
    SEND_SUCCESS = auto()  #: respond() with a 2xx
    SEND_FAILURE = auto()  #: respond() with a 300-699
    # from the clock (Table 4)
    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_D = auto()
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_J = auto()
    TIMER_K = auto()
    TIMER_L = auto()
    TIMER_M = auto()
    CANCEL_GUARD = auto()  #: §9.1: 64*T1 after our CANCEL went out, still no final response
    # from the transport
    TRANSPORT_ERROR = auto()


_PEER_INPUTS: Final = frozenset(
    {TxInput.PROVISIONAL, TxInput.SUCCESS, TxInput.FAILURE, TxInput.RETRANSMISSION, TxInput.ACK}
)


class Action(Enum):
    """What a transition does besides changing state (entering a state arms or clears its timers)."""

    PASS_UP = auto()  #: ResponseReceived (a 1xx only once per status, To tag and RSeq)
    ACK_AND_PASS_UP = auto()  #: build and send the ACK for a non-2xx (§17.1.1.3), ResponseReceived
    RESEND_ACK = auto()  #: a retransmitted non-2xx final: send the same ACK again
    STRAY = auto()  #: StrayResponse (a 2xx after we ACKed a non-2xx: the dialog layer decides)
    SEND = auto()  #: the TU's response to the wire
    RESEND = auto()  #: the last response again, if there is one
    RETRANSMIT = auto()  #: the request (client) or the last response (server) again; back the timer off
    ABSORB = auto()  #: nothing
    PASS_ACK = auto()  #: AckReceived (the ACK for a 2xx)
    TIME_OUT = auto()  #: TransactionTimedOut
    FAIL = auto()  #: TransportFailed
    END = auto()  #: nothing: a wait timer ran out or a settled transaction lost its transport


_I = TxInput
_A = Action

#: RFC 3261 Figure 5 with RFC 6026 Figure 3 (Accepted).
ICT_TRANSITIONS: Final[dict[tuple[State, TxInput], tuple[State, Action]]] = {
    (Ict.CALLING, _I.TIMER_A): (Ict.CALLING, _A.RETRANSMIT),
    (Ict.CALLING, _I.TIMER_B): (Ict.TERMINATED, _A.TIME_OUT),
    (Ict.CALLING, _I.PROVISIONAL): (Ict.PROCEEDING, _A.PASS_UP),
    (Ict.CALLING, _I.SUCCESS): (Ict.ACCEPTED, _A.PASS_UP),
    (Ict.CALLING, _I.FAILURE): (Ict.COMPLETED, _A.ACK_AND_PASS_UP),
    (Ict.CALLING, _I.TRANSPORT_ERROR): (Ict.TERMINATED, _A.FAIL),
    (Ict.PROCEEDING, _I.PROVISIONAL): (Ict.PROCEEDING, _A.PASS_UP),
    (Ict.PROCEEDING, _I.SUCCESS): (Ict.ACCEPTED, _A.PASS_UP),
    (Ict.PROCEEDING, _I.FAILURE): (Ict.COMPLETED, _A.ACK_AND_PASS_UP),
    (Ict.PROCEEDING, _I.CANCEL_GUARD): (Ict.TERMINATED, _A.TIME_OUT),
    (Ict.PROCEEDING, _I.TRANSPORT_ERROR): (Ict.TERMINATED, _A.FAIL),
    (Ict.COMPLETED, _I.FAILURE): (Ict.COMPLETED, _A.RESEND_ACK),
    (Ict.COMPLETED, _I.SUCCESS): (Ict.COMPLETED, _A.STRAY),
    (Ict.COMPLETED, _I.TIMER_D): (Ict.TERMINATED, _A.END),
    (Ict.COMPLETED, _I.TRANSPORT_ERROR): (Ict.TERMINATED, _A.END),
    (Ict.ACCEPTED, _I.SUCCESS): (Ict.ACCEPTED, _A.PASS_UP),
    (Ict.ACCEPTED, _I.TIMER_M): (Ict.TERMINATED, _A.END),
    (Ict.ACCEPTED, _I.TRANSPORT_ERROR): (Ict.TERMINATED, _A.END),
}

#: RFC 3261 Figure 6.
NICT_TRANSITIONS: Final[dict[tuple[State, TxInput], tuple[State, Action]]] = {
    (Nict.TRYING, _I.TIMER_E): (Nict.TRYING, _A.RETRANSMIT),
    (Nict.TRYING, _I.TIMER_F): (Nict.TERMINATED, _A.TIME_OUT),
    (Nict.TRYING, _I.PROVISIONAL): (Nict.PROCEEDING, _A.PASS_UP),
    (Nict.TRYING, _I.SUCCESS): (Nict.COMPLETED, _A.PASS_UP),
    (Nict.TRYING, _I.FAILURE): (Nict.COMPLETED, _A.PASS_UP),
    (Nict.TRYING, _I.TRANSPORT_ERROR): (Nict.TERMINATED, _A.FAIL),
    (Nict.PROCEEDING, _I.TIMER_E): (Nict.PROCEEDING, _A.RETRANSMIT),
    (Nict.PROCEEDING, _I.TIMER_F): (Nict.TERMINATED, _A.TIME_OUT),
    (Nict.PROCEEDING, _I.PROVISIONAL): (Nict.PROCEEDING, _A.PASS_UP),
    (Nict.PROCEEDING, _I.SUCCESS): (Nict.COMPLETED, _A.PASS_UP),
    (Nict.PROCEEDING, _I.FAILURE): (Nict.COMPLETED, _A.PASS_UP),
    (Nict.PROCEEDING, _I.TRANSPORT_ERROR): (Nict.TERMINATED, _A.FAIL),
    (Nict.COMPLETED, _I.SUCCESS): (Nict.COMPLETED, _A.ABSORB),
    (Nict.COMPLETED, _I.FAILURE): (Nict.COMPLETED, _A.ABSORB),
    (Nict.COMPLETED, _I.TIMER_K): (Nict.TERMINATED, _A.END),
    (Nict.COMPLETED, _I.TRANSPORT_ERROR): (Nict.TERMINATED, _A.END),
}

#: RFC 3261 Figure 7 with RFC 6026 Figure 5 (Accepted).
IST_TRANSITIONS: Final[dict[tuple[State, TxInput], tuple[State, Action]]] = {
    (Ist.PROCEEDING, _I.RETRANSMISSION): (Ist.PROCEEDING, _A.RESEND),
    (Ist.PROCEEDING, _I.SEND_PROVISIONAL): (Ist.PROCEEDING, _A.SEND),
    (Ist.PROCEEDING, _I.SEND_SUCCESS): (Ist.ACCEPTED, _A.SEND),
    (Ist.PROCEEDING, _I.SEND_FAILURE): (Ist.COMPLETED, _A.SEND),
    (Ist.PROCEEDING, _I.TRANSPORT_ERROR): (Ist.TERMINATED, _A.FAIL),
    (Ist.COMPLETED, _I.RETRANSMISSION): (Ist.COMPLETED, _A.RESEND),
    (Ist.COMPLETED, _I.TIMER_G): (Ist.COMPLETED, _A.RETRANSMIT),
    (Ist.COMPLETED, _I.ACK): (Ist.CONFIRMED, _A.ABSORB),
    (Ist.COMPLETED, _I.TIMER_H): (Ist.TERMINATED, _A.TIME_OUT),
    (Ist.COMPLETED, _I.TRANSPORT_ERROR): (Ist.TERMINATED, _A.FAIL),
    (Ist.CONFIRMED, _I.ACK): (Ist.CONFIRMED, _A.ABSORB),
    (Ist.CONFIRMED, _I.RETRANSMISSION): (Ist.CONFIRMED, _A.ABSORB),
    (Ist.CONFIRMED, _I.TIMER_I): (Ist.TERMINATED, _A.END),
    (Ist.CONFIRMED, _I.TRANSPORT_ERROR): (Ist.TERMINATED, _A.END),
    (Ist.ACCEPTED, _I.RETRANSMISSION): (Ist.ACCEPTED, _A.ABSORB),
    (Ist.ACCEPTED, _I.ACK): (Ist.ACCEPTED, _A.PASS_ACK),
    (Ist.ACCEPTED, _I.SEND_SUCCESS): (Ist.ACCEPTED, _A.SEND),
    (Ist.ACCEPTED, _I.TIMER_L): (Ist.TERMINATED, _A.END),
    (Ist.ACCEPTED, _I.TRANSPORT_ERROR): (Ist.TERMINATED, _A.END),
}

#: RFC 3261 Figure 8.
NIST_TRANSITIONS: Final[dict[tuple[State, TxInput], tuple[State, Action]]] = {
    (Nist.TRYING, _I.RETRANSMISSION): (Nist.TRYING, _A.ABSORB),
    (Nist.TRYING, _I.SEND_PROVISIONAL): (Nist.PROCEEDING, _A.SEND),
    (Nist.TRYING, _I.SEND_SUCCESS): (Nist.COMPLETED, _A.SEND),
    (Nist.TRYING, _I.SEND_FAILURE): (Nist.COMPLETED, _A.SEND),
    (Nist.TRYING, _I.TRANSPORT_ERROR): (Nist.TERMINATED, _A.FAIL),
    (Nist.PROCEEDING, _I.RETRANSMISSION): (Nist.PROCEEDING, _A.RESEND),
    (Nist.PROCEEDING, _I.SEND_PROVISIONAL): (Nist.PROCEEDING, _A.SEND),
    (Nist.PROCEEDING, _I.SEND_SUCCESS): (Nist.COMPLETED, _A.SEND),
    (Nist.PROCEEDING, _I.SEND_FAILURE): (Nist.COMPLETED, _A.SEND),
    (Nist.PROCEEDING, _I.TRANSPORT_ERROR): (Nist.TERMINATED, _A.FAIL),
    (Nist.COMPLETED, _I.RETRANSMISSION): (Nist.COMPLETED, _A.RESEND),
    (Nist.COMPLETED, _I.TIMER_J): (Nist.TERMINATED, _A.END),
    (Nist.COMPLETED, _I.TRANSPORT_ERROR): (Nist.TERMINATED, _A.END),
}

del _I, _A

#: Which timer the expiry slot is, by state.
_EXPIRY: Final[dict[State, TxInput]] = {
    Ict.CALLING: TxInput.TIMER_B,
    Ict.PROCEEDING: TxInput.CANCEL_GUARD,
    Ict.COMPLETED: TxInput.TIMER_D,
    Ict.ACCEPTED: TxInput.TIMER_M,
    Nict.TRYING: TxInput.TIMER_F,
    Nict.PROCEEDING: TxInput.TIMER_F,
    Nict.COMPLETED: TxInput.TIMER_K,
    Ist.COMPLETED: TxInput.TIMER_H,
    Ist.CONFIRMED: TxInput.TIMER_I,
    Ist.ACCEPTED: TxInput.TIMER_L,
    Nist.COMPLETED: TxInput.TIMER_J,
}

_TERMINATED: Final = frozenset({Ict.TERMINATED, Nict.TERMINATED, Ist.TERMINATED, Nist.TERMINATED})


# ---------------------------------------------------------------------------------------------------------
# transactions
# ---------------------------------------------------------------------------------------------------------


class _Transaction:
    """What client and server transactions share: the request, its flow, state and two timer slots."""

    __slots__ = (
        "_ex_at",
        "_ex_seq",
        "_interval",
        "_key",
        "_reliable",
        "_rt_at",
        "_rt_input",
        "_rt_seq",
        "_table",
        "_wire",
        "flow",
        "last_response",
        "method",
        "request",
        "state",
        "user_data",
    )

    request: Request
    flow: Flow
    method: str
    state: State
    last_response: Response | None
    _rt_input: TxInput
    _table: dict[tuple[State, TxInput], tuple[State, Action]]
    #: A free slot for the transaction user (the dialog, the call, the registration in progress ...).
    user_data: Any

    def __init__(self, request: Request, flow: Flow, key: tuple[Any, ...]) -> None:
        self.request = request
        self.flow = flow
        self.method = request.method
        self.last_response = None
        self.user_data = None
        self._key = key
        self._reliable = flow.reliable
        self._wire: bytes | None = None  # what a retransmission re-sends
        self._interval = 0.0
        self._rt_seq = -1
        self._rt_at = 0.0
        self._ex_seq = -1
        self._ex_at = 0.0

    @property
    def terminated(self) -> bool:
        return self.state in _TERMINATED

    def pending_timers(self) -> dict[str, float]:
        """The armed timers by RFC name and absolute deadline, e.g. `{"A": 1.5, "B": 32.0}`."""
        out: dict[str, float] = {}
        if self._rt_seq >= 0:
            out[self._rt_input.name.removeprefix("TIMER_")] = self._rt_at
        if self._ex_seq >= 0:
            out[_EXPIRY[self.state].name.removeprefix("TIMER_")] = self._ex_at
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self._key[0]} {self.state.name}>"


class ClientTransaction(_Transaction):
    """An ICT (INVITE) or NICT (anything else but ACK). Made by `TransactionLayer.send_request`/`cancel`."""

    __slots__ = ("_ack", "_cancel", "_held", "_seen")

    state: Ict | Nict

    def __init__(self, request: Request, flow: Flow, key: tuple[Any, ...]) -> None:
        super().__init__(request, flow, key)
        invite = self.method == "INVITE"
        self.state = Ict.CALLING if invite else Nict.TRYING
        self._table = ICT_TRANSITIONS if invite else NICT_TRANSITIONS
        self._rt_input = TxInput.TIMER_A if invite else TxInput.TIMER_E
        self._ack: bytes | None = None  # ICT: the ACK for a non-2xx, serialised once
        self._cancel: ClientTransaction | None = None  # ICT: the CANCEL, held or sent
        self._held = False  # a CANCEL waiting for a provisional response (§9.1)
        self._seen: set[tuple[int, str | None, str | None]] | None = None  # provisionals passed up

    @property
    def is_invite(self) -> bool:
        return self._table is ICT_TRANSITIONS

    @property
    def branch(self) -> str:
        return str(self._key[0])

    @property
    def cancel_transaction(self) -> ClientTransaction | None:
        """The CANCEL made by `TransactionLayer.cancel` for this INVITE, if any."""
        return self._cancel

    @property
    def held(self) -> bool:
        """True for a CANCEL built before any provisional response: not sent yet (§9.1)."""
        return self._held


class ServerTransaction(_Transaction):
    """An IST (INVITE) or NIST (anything else but ACK). Made by `TransactionLayer.receive_request`."""

    __slots__ = ("branch",)

    state: Ist | Nist
    #: The top Via branch of the request (None for a pre-RFC 3261 request without one).
    branch: str | None

    def __init__(self, request: Request, flow: Flow, key: tuple[Any, ...], branch: str | None) -> None:
        super().__init__(request, flow, key)
        invite = self.method == "INVITE"
        self.state = Ist.PROCEEDING if invite else Nist.TRYING
        self._table = IST_TRANSITIONS if invite else NIST_TRANSITIONS
        self._rt_input = TxInput.TIMER_G
        self.branch = branch

    @property
    def is_invite(self) -> bool:
        return self._table is IST_TRANSITIONS


Transaction = ClientTransaction | ServerTransaction


# ---------------------------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request the TU must answer with `respond(tx, ...)` (a CANCEL too: see `find_invite`)."""

    tx: ServerTransaction


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that is not for a non-2xx final of ours: the ACK for a 2xx, which the dialog layer owns."""

    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for a client transaction: each distinct 1xx, the final, and every 2xx to an INVITE."""

    tx: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction (e.g. a 2xx retransmission after Timer M)."""

    response: Response
    flow: Flow


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B or F (client: answer the TU with 408), Timer H (server: the ACK never came), or the CANCEL
    guard (client: the INVITE was cancelled but no final response came within 64*T1)."""

    tx: ClientTransaction | ServerTransaction


@dataclass(frozen=True, slots=True)
class TransportFailed(TransactionTimedOut):
    """The flow died while the transaction still waited for an outcome (§17.1.4, §17.2.4).

    The TU answers a client request with 503 (§8.1.3.1)."""


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction is gone from the layer: the TU can drop what it keeps for it."""

    tx: ClientTransaction | ServerTransaction


TransactionEvent = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimedOut
    | TransportFailed
    | TransactionTerminated
)


# ---------------------------------------------------------------------------------------------------------
# matching keys
# ---------------------------------------------------------------------------------------------------------


def _uri_key(uri: Uri) -> object:
    if isinstance(uri, SipUri):
        params = tuple(sorted((k, (v or "").lower()) for k, v in uri.params.items()))
        return (uri.scheme, unquote(uri.user) if uri.user else None, uri.host.lower(), uri.port, params)
    return str(uri).lower()


def _legacy_key(request: Request, method: str, to_tag: str | None) -> tuple[Any, ...]:
    """§17.2.3 for a request whose branch lacks the magic cookie: everything but the To tag's owner."""
    via = request.via
    return (
        request.call_id,
        request.from_.tag,
        request.cseq.seq,
        method,
        _uri_key(request.uri),
        via.transport,
        via.host.lower(),
        via.port,
        via.branch,
        to_tag,
    )


def _server_key(request: Request, method: str) -> tuple[Any, ...] | None:
    """§17.2.3 for an RFC 3261 branch: (branch, sent-by, method); None when the branch has no cookie."""
    via = request.via
    branch = via.branch
    if branch is None or not branch.startswith(MAGIC_COOKIE):
        return None
    return (branch, via.host.lower(), via.port, method)


# ---------------------------------------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------------------------------------


class TransactionLayer:
    """Every client and server transaction of one endpoint, their matching and their timers.

    Inputs: `receive_request`, `receive_response` (parsed messages and the flow they came on),
    `send_request`, `respond`, `cancel`, `send_stateless` (from the TU), `handle_timer`, `transport_error`.
    Outputs: `outgoing()`, `next_event()`, `next_deadline()`. After any input, drain all three.
    """

    def __init__(self, timers: TimerValues = DEFAULT_TIMERS) -> None:
        self.timers = timers
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[Any, ...], ServerTransaction] = {}
        self._out: list[tuple[bytes, Flow]] = []
        self._events: deque[TransactionEvent] = deque()
        self._heap: list[tuple[float, int, Transaction]] = []
        self._seq = 0
        self._stale = 0
        self._compact_min = _COMPACT_MIN
        #: Messages and calls we dropped, by reason ("out_of_state", "late_response", "held_cancel").
        self.dropped: Counter[str] = Counter()

    # -- the sans-IO surface --------------------------------------------------------------------------

    def outgoing(self) -> list[tuple[bytes, Flow]]:
        """Bytes to write, each with the flow to write it on, in order. Clears the queue."""
        out = self._out
        self._out = []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None."""
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next be called (absolute, on the caller's clock), or None."""
        heap = self._heap
        while heap:
            _, seq, tx = heap[0]
            if seq == tx._rt_seq or seq == tx._ex_seq:
                return heap[0][0]
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def handle_timer(self, *, now: float) -> None:
        """Fire every timer due at or before `now`, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, tx = heapq.heappop(heap)
            if seq == tx._rt_seq:
                tx._rt_seq = -1
                self._step(tx, tx._rt_input, now)
            elif seq == tx._ex_seq:
                tx._ex_seq = -1
                self._step(tx, _EXPIRY[tx.state], now)
            else:
                self._stale -= 1

    def __len__(self) -> int:
        """Live transactions (a held CANCEL counts)."""
        return len(self._clients) + len(self._servers)

    # -- inbound --------------------------------------------------------------------------------------

    def receive_request(self, request: Request, flow: Flow, *, now: float) -> None:
        """A parsed request from `flow`: a new transaction, a retransmission, or an ACK."""
        method = request.method
        is_ack = method == "ACK"
        key_method = "INVITE" if is_ack else method
        key = _server_key(request, key_method)
        tx: ServerTransaction | None
        if key is not None:
            tx = self._servers.get(key)
        elif is_ack:
            tx = self._legacy_ack_match(request)
        else:
            key = _legacy_key(request, method, request.to.tag)
            tx = self._servers.get(key)
        if is_ack:
            if tx is None or not tx.is_invite:
                self._events.append(AckReceived(request, flow))
            else:
                self._step(tx, TxInput.ACK, now, request, flow)
            return
        if tx is not None:
            self._step(tx, TxInput.RETRANSMISSION, now, request, flow)
            return
        assert key is not None
        tx = ServerTransaction(request, flow, key, request.via.branch)
        self._servers[key] = tx
        self._events.append(RequestReceived(tx))

    def _legacy_ack_match(self, ack: Request) -> ServerTransaction | None:
        to_tag = ack.to.tag
        # A re-INVITE carried the To tag already; an initial INVITE had none.
        for tag in (to_tag, None) if to_tag is not None else (None,):
            tx = self._servers.get(_legacy_key(ack, "INVITE", tag))
            if tx is not None:
                response = tx.last_response
                if response is not None and response.to.tag == to_tag:
                    return tx
        return None

    def receive_response(self, response: Response, flow: Flow, *, now: float) -> None:
        """A parsed response from `flow`: matched to a client transaction by branch and CSeq method."""
        tx = self._clients.get((response.via.branch or "", response.cseq.method))
        if tx is None:
            self._events.append(StrayResponse(response, flow))
            return
        if tx._held:
            self.dropped["held_cancel"] += 1  # a response to a CANCEL we have not sent: forged or confused
            return
        status = response.status
        if status < 200:
            inp = TxInput.PROVISIONAL
        elif status < 300:
            inp = TxInput.SUCCESS
        else:
            inp = TxInput.FAILURE
        self._step(tx, inp, now, response, flow)

    def find_invite(self, cancel: Request) -> ServerTransaction | None:
        """§9.2: the live INVITE server transaction a CANCEL targets, or None (answer the CANCEL 481)."""
        key = _server_key(cancel, "INVITE")
        if key is None:
            key = _legacy_key(cancel, "INVITE", cancel.to.tag)
        tx = self._servers.get(key)
        return tx if tx is not None and tx.is_invite else None

    # -- outbound -------------------------------------------------------------------------------------

    def send_request(self, request: Request, flow: Flow, *, now: float) -> ClientTransaction:
        """Start a client transaction for `request` on `flow` and send it.

        The TU has built the top Via with a fresh `z9hG4bK` branch (`new_branch()`). ACK is not a
        transaction: send the ACK for a 2xx with `send_stateless`.
        """
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("ACK is not a transaction: use send_stateless for the ACK of a 2xx")
        try:
            branch = request.via.branch
            cseq = request.cseq
        except SipParseError as exc:
            raise LocalProtocolError(f"cannot send {method}: {exc.reason}") from None
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError(f"{method} needs a top Via branch starting with {MAGIC_COOKIE}")
        if cseq.method != method:
            raise LocalProtocolError(f"CSeq method {cseq.method} does not match {method}")
        key = (branch, method)
        if key in self._clients:
            raise LocalProtocolError(f"a {method} client transaction with branch {branch} already exists")
        tx = ClientTransaction(request, flow, key)
        self._clients[key] = tx
        self._start_client(tx, now)
        return tx

    def respond(self, tx: ServerTransaction, response: Response, *, now: float) -> None:
        """Send the TU's response to `tx`'s request, on the flow the request came from.

        Passing the same `Response` object again (a 2xx retransmission in Accepted) re-sends the bytes
        serialised the first time. On a terminated transaction this is a counted no-op.
        """
        if tx.state in _TERMINATED:
            self.dropped["late_response"] += 1
            _log.debug("x %s: response %d to terminated %r", tx.flow, response.status, tx)
            return
        status = response.status
        if status < 100 or status > 699:
            raise LocalProtocolError(f"status {status} is not a response code")
        if status < 200:
            inp = TxInput.SEND_PROVISIONAL
        elif status < 300:
            inp = TxInput.SEND_SUCCESS
        else:
            inp = TxInput.SEND_FAILURE
        self._step(tx, inp, now, response)

    def cancel(
        self, tx: ClientTransaction, *, now: float, headers: Iterable[tuple[str, str]] = ()
    ) -> ClientTransaction | None:
        """Cancel an INVITE (§9.1): the CANCEL's client transaction, or None if the INVITE already has a
        final response. Before any provisional response the CANCEL is held (`.held`) and sent when one
        arrives; if a final arrives first it is dropped (TransactionTerminated). Calling again returns the
        same CANCEL. `headers` are added to the CANCEL (a Reason header, RFC 3326)."""
        if not tx.is_invite:
            raise LocalProtocolError(f"only an INVITE can be cancelled, not {tx.method}")
        if tx._cancel is not None:
            return tx._cancel
        if tx.state is not Ict.CALLING and tx.state is not Ict.PROCEEDING:
            return None
        key = (tx.branch, "CANCEL")
        if key in self._clients:
            raise LocalProtocolError(f"a CANCEL with branch {tx.branch} already exists")
        request = _build_cancel(tx.request)
        for name, value in headers:
            request.headers.add(name, value)
        cancel = ClientTransaction(request, tx.flow, key)
        cancel._held = True
        self._clients[key] = cancel
        tx._cancel = cancel
        if tx.state is Ict.PROCEEDING:
            self._release_cancel(tx, now)
        return cancel

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        """Queue a message that belongs to no transaction: the ACK for a 2xx (§13.2.2.4), a stateless
        answer to a request the edge could not parse."""
        self._out.append((bytes(message), flow))

    def transport_error(self, flow: Flow, *, now: float) -> None:
        """`flow` failed (a connection closed or reset, an ICMP error): every transaction on it ends.

        Those still waiting for an outcome report `TransportFailed`. This scans all transactions; flows
        die far less often than messages arrive.
        """
        every: chain[Transaction] = chain(self._clients.values(), self._servers.values())
        victims = [tx for tx in every if tx.flow == flow]
        for tx in victims:
            if tx.state not in _TERMINATED:
                self._step(tx, TxInput.TRANSPORT_ERROR, now)

    # -- the machine ----------------------------------------------------------------------------------

    def _step(
        self,
        tx: Transaction,
        inp: TxInput,
        now: float,
        message: Request | Response | None = None,
        flow: Flow | None = None,
    ) -> None:
        try:
            state, action = tx._table[(tx.state, inp)]
        except KeyError:
            if inp in _PEER_INPUTS:
                self.dropped["out_of_state"] += 1
                _log.debug("x %s: %s ignored by %r", flow, inp.name, tx)
                return
            raise LocalProtocolError(f"{tx!r} cannot take {inp.name} in {tx.state.name}") from None

        if action is Action.PASS_UP:
            assert isinstance(tx, ClientTransaction) and isinstance(message, Response)
            if message.status < 200:
                mark = (message.status, message.to.tag, message.headers.get("rseq"))
                seen = tx._seen
                if seen is None:
                    tx._seen = {mark}
                elif mark in seen:
                    return  # a duplicate provisional: the TU has seen it
                else:
                    seen.add(mark)
            tx.last_response = message
            self._events.append(ResponseReceived(tx, message))
        elif action is Action.SEND:
            assert isinstance(message, Response)
            data = tx._wire if message is tx.last_response and tx._wire is not None else bytes(message)
            tx.last_response = message
            tx._wire = data
            self._out.append((data, tx.flow))
        elif action is Action.RETRANSMIT:
            assert tx._wire is not None
            self._out.append((tx._wire, tx.flow))
            timers = self.timers
            rt = tx._rt_input
            if rt is TxInput.TIMER_A:
                interval = timers.backoff_a(tx._interval)
            elif rt is TxInput.TIMER_E:
                interval = timers.backoff_e(tx._interval, proceeding=tx.state is Nict.PROCEEDING)
            else:
                interval = timers.backoff_g(tx._interval)
            self._arm_retransmit(tx, interval, now)
        elif action is Action.RESEND:
            if tx._wire is not None:
                self._out.append((tx._wire, tx.flow))
        elif action is Action.ACK_AND_PASS_UP:
            assert isinstance(tx, ClientTransaction) and isinstance(message, Response)
            tx.last_response = message
            tx._ack = _build_ack(tx.request, message)
            self._out.append((tx._ack, tx.flow))
            self._events.append(ResponseReceived(tx, message))
        elif action is Action.RESEND_ACK:
            assert isinstance(tx, ClientTransaction) and tx._ack is not None
            self._out.append((tx._ack, tx.flow))
        elif action is Action.PASS_ACK:
            assert isinstance(message, Request) and flow is not None
            self._events.append(AckReceived(message, flow))
        elif action is Action.TIME_OUT:
            self._events.append(TransactionTimedOut(tx))
        elif action is Action.FAIL:
            self._events.append(TransportFailed(tx))
        elif action is Action.STRAY:
            assert isinstance(message, Response) and flow is not None
            self._events.append(StrayResponse(message, flow))
        # ABSORB, END: nothing to do

        if state is not tx.state:
            self._enter(tx, state, now)

    def _enter(self, tx: Transaction, state: State, now: float) -> None:
        """Move `tx` into `state` and arm or clear that state's timers."""
        tx.state = state
        timers = self.timers
        reliable = tx._reliable
        if state in _TERMINATED:
            self._clear_retransmit(tx)
            self._clear_expiry(tx)
            if isinstance(tx, ClientTransaction):
                del self._clients[tx._key]
                self._drop_held_cancel(tx, now)
            else:
                del self._servers[tx._key]
            self._events.append(TransactionTerminated(tx))
        elif state is Ict.PROCEEDING:
            self._clear_retransmit(tx)
            self._clear_expiry(tx)  # Timer B only runs in Calling
            assert isinstance(tx, ClientTransaction)
            if tx._cancel is not None and tx._cancel._held:
                self._release_cancel(tx, now)
        elif state is Ict.COMPLETED:
            assert isinstance(tx, ClientTransaction)
            self._clear_retransmit(tx)
            self._drop_held_cancel(tx, now)
            self._arm_expiry(tx, timers.timer_d(reliable), now)
        elif state is Ict.ACCEPTED:
            assert isinstance(tx, ClientTransaction)
            self._clear_retransmit(tx)
            self._drop_held_cancel(tx, now)
            self._arm_expiry(tx, timers.timer_m, now)
        elif state is Nict.COMPLETED:
            self._clear_retransmit(tx)
            self._arm_expiry(tx, timers.timer_k(reliable), now)
        elif state is Ist.COMPLETED:
            if not reliable:
                self._arm_retransmit(tx, timers.timer_g, now)
            self._arm_expiry(tx, timers.timer_h, now)
        elif state is Ist.CONFIRMED:
            self._clear_retransmit(tx)
            self._arm_expiry(tx, timers.timer_i(reliable), now)
        elif state is Ist.ACCEPTED:
            self._arm_expiry(tx, timers.timer_l, now)
        elif state is Nist.COMPLETED:
            self._arm_expiry(tx, timers.timer_j(reliable), now)
            # For Timer J (32 s on UDP) the transaction only re-sends its final answer's bytes (`_wire`).
            # A registrar doing 2,000 REGISTER/s holds ~130,000 of these: keep the request's method and
            # URI and drop its headers and the response object, so each costs a few objects instead of
            # dozens — which is memory, and the time of every full garbage collection.
            tx.request = _slim(tx.request)
            tx.last_response = None
        # Nict.PROCEEDING, Nist.PROCEEDING: Timer E and F keep running / nothing runs

    def _start_client(self, tx: ClientTransaction, now: float) -> None:
        tx._wire = bytes(tx.request)
        self._out.append((tx._wire, tx.flow))
        timers = self.timers
        if not tx._reliable:
            self._arm_retransmit(tx, timers.timer_a if tx.is_invite else timers.timer_e, now)
        self._arm_expiry(tx, timers.timer_b if tx.is_invite else timers.timer_f, now)

    def _release_cancel(self, invite: ClientTransaction, now: float) -> None:
        """Send the CANCEL now that the INVITE is in Proceeding, and start the §9.1 guard."""
        cancel = invite._cancel
        assert cancel is not None
        cancel._held = False
        self._start_client(cancel, now)
        self._arm_expiry(invite, 64 * self.timers.t1, now)

    def _drop_held_cancel(self, invite: ClientTransaction, now: float) -> None:
        cancel = invite._cancel
        if cancel is not None and cancel._held:
            cancel._held = False
            self._enter(cancel, Nict.TERMINATED, now)

    # -- timers ---------------------------------------------------------------------------------------

    def _push(self, at: float, seq: int, tx: Transaction) -> None:
        """Push a deadline whose `seq` the transaction already holds (compaction keeps only those)."""
        heapq.heappush(self._heap, (at, seq, tx))
        if self._stale > self._compact_min and 2 * self._stale > len(self._heap):
            self._compact()

    def _arm_retransmit(self, tx: Transaction, interval: float, now: float) -> None:
        if tx._rt_seq >= 0:
            self._stale += 1
        tx._interval = interval
        tx._rt_at = at = now + interval
        tx._rt_seq = seq = self._seq
        self._seq = seq + 1
        self._push(at, seq, tx)

    def _clear_retransmit(self, tx: Transaction) -> None:
        if tx._rt_seq >= 0:
            tx._rt_seq = -1
            self._stale += 1

    def _arm_expiry(self, tx: Transaction, duration: float, now: float) -> None:
        if tx._ex_seq >= 0:
            tx._ex_seq = -1
            self._stale += 1
        if duration <= 0:
            # Timers D, I, J, K are zero on reliable transports: the wait is over before it begins.
            self._step(tx, _EXPIRY[tx.state], now)
            return
        tx._ex_at = at = now + duration
        tx._ex_seq = seq = self._seq
        self._seq = seq + 1
        self._push(at, seq, tx)

    def _clear_expiry(self, tx: Transaction) -> None:
        if tx._ex_seq >= 0:
            tx._ex_seq = -1
            self._stale += 1

    def _compact(self) -> None:
        """Drop stale heap entries once they outnumber the live ones."""
        heap = self._heap  # in place: handle_timer may be iterating over it
        heap[:] = [e for e in heap if e[1] == e[2]._rt_seq or e[1] == e[2]._ex_seq]
        heapq.heapify(heap)
        self._stale = 0


# ---------------------------------------------------------------------------------------------------------
# requests the transaction layer builds itself
# ---------------------------------------------------------------------------------------------------------


def _top_via_text(request: Request) -> str:
    return split_list(request.headers.get_all("via")[0])[0]


def _copy_core(request: Request, to_value: str, method: str) -> Headers:
    """One Via (the request's top one), its Routes, Max-Forwards, From, To, Call-ID and CSeq `method`."""
    headers = Headers()
    headers.add("Via", _top_via_text(request))
    for route in request.headers.get_all("route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("from") or "")
    headers.add("To", to_value)
    headers.add("Call-ID", request.headers.get("call-id") or "")
    headers.add("CSeq", f"{request.cseq.seq} {method}")
    headers.add("Content-Length", "0")
    return headers


def _slim(request: Request) -> Request:
    """The request line alone: no headers, no body."""
    return Request(request.method, request.uri, Headers())


def _build_ack(invite: Request, response: Response) -> bytes:
    """§17.1.1.3: the ACK for a non-2xx final — same Request-URI, Call-ID, From, CSeq number, the one top
    Via (so the same branch), the INVITE's Routes, and the To of the response (with its tag)."""
    headers = _copy_core(invite, response.headers.get("to") or "", "ACK")
    return bytes(Request("ACK", invite.uri, headers))


def _build_cancel(invite: Request) -> Request:
    """§9.1: same Request-URI, Call-ID, To, From and CSeq number; a single Via equal to the INVITE's top
    Via; the INVITE's Route header fields."""
    return Request("CANCEL", invite.uri, _copy_core(invite, invite.headers.get("to") or "", "CANCEL"))
