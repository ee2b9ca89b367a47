"""The INVITE dialog usage (RFC 3261 §12–§15, §9; RFC 3311; RFC 6086) on a fake wire with time as data.

Two real `Endpoint`s, each with an `InviteLayer` as its usage, are joined by `Wire`: every datagram one
side queues is parsed, shown to the wire's filters (which may drop or rewrite it, as a lossy network or
a proxy would), and fed to the other side. Times are literals; timers are fired by `Wire.run_until`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from softswitch.sip.auth import DigestAuthenticator
from softswitch.sip.endpoint import Endpoint, EndpointConfig, EndpointEvent
from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.flow import Flow
from softswitch.sip.guard import Guard
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
from softswitch.sip.message import Request, Response, new_branch
from softswitch.sip.parser import parse_message
from softswitch.sip.timers import TimerValues

ADDRESSES = {"a": ("192.0.2.10", 5060), "b": ("198.51.100.1", 5060)}
OFFER = (
    b"v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)
ANSWER = (
    b"v=0\r\no=b 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 0\r\n"
)
HOLD = OFFER.replace(b"o=a 1 1", b"o=a 1 2") + b"a=sendonly\r\n"
HELD = ANSWER.replace(b"o=b 1 1", b"o=b 1 2") + b"a=recvonly\r\n"
RESUME = OFFER.replace(b"o=a 1 1", b"o=a 1 3") + b"a=sendrecv\r\n"

E = TypeVar("E")
Message = Request | Response


# ---------------------------------------------------------------------------------------------------------
# the fake wire
# ---------------------------------------------------------------------------------------------------------


def make_endpoint(name: str, timers: TimerValues) -> Endpoint:
    host = ADDRESSES[name][0]
    config = EndpointConfig(
        domain=f"{name}.example", aliases=frozenset({host}), timers=timers, qualify_interval=0.0
    )
    return Endpoint(
        config,
        authenticator=DigestAuthenticator(config.domain, b"k" * 32, algorithms=("MD5",)),
        guard=Guard(),
        credentials=lambda user, algorithm: None,
    )


@dataclass
class Side:
    name: str
    endpoint: Endpoint
    layer: InviteLayer
    flow: Flow  # to the other side
    events: list[LegEvent] = field(default_factory=list)
    endpoint_events: list[EndpointEvent] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return f"{self.name}.example"

    def take(self) -> list[LegEvent]:
        out, self.events = self.events, []
        return out

    def one(self, kind: type[E]) -> E:
        """The one event of the queue, which must be a `kind`."""
        events = self.take()
        assert len(events) == 1 and isinstance(events[0], kind), events
        return events[0]


Filter = Callable[[str, Message], Message | None]


class Wire:
    """Two endpoints with a fake network link between them (h11's ConnectionPair, aioquic's
    client_and_server). `filters` see every message as (direction "a>b" or "b>a", parsed message)."""

    def __init__(self, transport: str = "udp", *, timers: TimerValues | None = None, seed: int = 7) -> None:
        self.timers = timers or TimerValues()
        self.now = 0.0
        conn = 0 if transport == "udp" else 1
        sides = {}
        for name, other in (("a", "b"), ("b", "a")):
            endpoint = make_endpoint(name, self.timers)
            layer = InviteLayer(endpoint, timers=self.timers, rng=random.Random(seed + len(name + other)))
            endpoint.usage = layer
            flow = Flow(transport, ADDRESSES[other], ADDRESSES[name], conn)
            sides[name] = Side(name, endpoint, layer, flow)
        self.a = sides["a"]
        self.b = sides["b"]
        self.filters: list[Filter] = []
        self.sent_to: list[tuple[str, Flow]] = []
        self.log: list[tuple[str, Message]] = []
        self.lost: list[tuple[str, Message]] = []

    def pump(self) -> None:
        """Deliver everything both sides queued, until nothing moves; collect the events."""
        moved = True
        while moved:
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                for data, flow in src.endpoint.outgoing():
                    moved = True
                    # Every message of every leg goes out on the flow its INVITE used.
                    # Requests in a dialog a proxy record-routed go to that proxy (§12.2.1.1); on this wire
                    # the "proxy" is a filter, so the message still reaches the other side.
                    assert flow == src.flow or flow.remote[0] in PROXY_HOSTS, flow
                    self.sent_to.append((f"{src.name}>{dst.name}", flow))
                    direction = f"{src.name}>{dst.name}"
                    message: Message | None = parse_message(data)
                    for keep in self.filters:
                        assert message is not None
                        kept = keep(direction, message)
                        if kept is None:
                            self.lost.append((direction, message))
                            message = None
                            break
                        message = kept
                    if message is not None:
                        self.log.append((direction, message))
                        dst.endpoint.receive(bytes(message), dst.flow, now=self.now)
            for side in (self.a, self.b):
                while (event := side.layer.next_event()) is not None:
                    side.events.append(event)
                while (endpoint_event := side.endpoint.next_event()) is not None:
                    side.endpoint_events.append(endpoint_event)

    def deadline(self) -> float | None:
        """The earliest deadline of either endpoint (each includes its usage's, the InviteLayer's)."""
        candidates = [d for side in (self.a, self.b) if (d := side.endpoint.next_deadline()) is not None]
        return min(candidates) if candidates else None

    def run_until(self, until: float) -> None:
        self.pump()
        while (due := self.deadline()) is not None and due <= until:
            self.now = max(self.now, due)
            for side in (self.a, self.b):
                side.endpoint.handle_timer(now=self.now)
            self.pump()
        self.now = max(self.now, until)

    def run_out(self, limit: float = 3600.0) -> None:
        """Fire every timer there is (they must all end before `limit`)."""
        while (due := self.deadline()) is not None:
            assert due < limit, "timers that never end"
            self.run_until(due)

    def requests(self, direction: str, method: str) -> list[Request]:
        """Requests delivered one way, by method."""
        return [m for d, m in self.log if d == direction and isinstance(m, Request) and m.method == method]

    def responses(self, direction: str, status: int) -> list[Response]:
        """Responses delivered one way, by status."""
        return [m for d, m in self.log if d == direction and isinstance(m, Response) and m.status == status]

    def inject(self, side: Side, message: Message) -> None:
        """Feed a hand-made message to `side` as if the other side had sent it."""
        side.endpoint.receive(bytes(message), side.flow, now=self.now)
        self.pump()

    def quiet(self) -> None:
        """Both layers hold no leg and no timer, both transaction layers are empty."""
        self.run_out()
        for side in (self.a, self.b):
            assert side.layer.legs() == ()
            assert side.layer.next_deadline() is None
            assert len(side.endpoint.transactions) == 0


def drop(
    direction: str,
    *,
    method: str | None = None,
    status: int | None = None,
    cseq_method: str | None = None,
    times: int | None = None,
) -> Filter:
    """A filter that loses matching messages going `direction` (the first `times` of them, or all)."""
    left = [times]

    def keep(d: str, message: Message) -> Message | None:
        if d != direction:
            return message
        if isinstance(message, Request):
            hit = method is not None and message.method == method
        else:
            hit = status is not None and message.status == status
        if hit and cseq_method is not None:
            hit = message.cseq.method == cseq_method
        if not hit:
            return message
        if left[0] is not None:
            if left[0] == 0:
                return message
            left[0] -= 1
        return None

    return keep


def invite(wire: Wire, src: Side, dst: Side, *, sdp: bytes | None = OFFER) -> tuple[Leg, Leg]:
    """`src` calls `dst`; returns (the UAC leg, the UAS leg)."""
    uac = src.layer.invite(
        request_uri=f"sip:bob@{dst.domain}",
        flow=src.flow,
        from_uri=f"sip:alice@{src.domain}",
        from_display="Alice",
        to_uri=f"sip:bob@{dst.domain}",
        sdp=sdp,
        now=wire.now,
    )
    wire.pump()
    received = dst.one(InviteReceived)
    assert received.request.call_id == uac.call_id
    return uac, received.leg


def established(wire: Wire, src: Side | None = None, dst: Side | None = None) -> tuple[Leg, Leg]:
    src = src or wire.a
    dst = dst or wire.b
    uac, uas = invite(wire, src, dst)
    dst.layer.accept(uas, ANSWER, now=wire.now)
    wire.pump()
    assert src.one(Answered).sdp == ANSWER
    assert dst.one(Acked).sdp is None
    return uac, uas


def state(leg: Leg) -> LegState:
    """The leg's state, read through a call so that the type checker does not narrow it for good."""
    return leg.state


def statuses(messages: list[Response]) -> list[int]:
    return [m.status for m in messages]


# ---------------------------------------------------------------------------------------------------------
# basic calls
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["a", "b"])
@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_basic_call_invite_100_180_200_ack_bye(caller: str, hangs_up: str) -> None:
    wire = Wire()
    src, dst = (wire.a, wire.b) if caller == "a" else (wire.b, wire.a)
    there, back = f"{src.name}>{dst.name}", f"{dst.name}>{src.name}"
    uac, uas = invite(wire, src, dst)
    assert state(uac) is LegState.PROCEEDING and state(uas) is LegState.INCOMING
    assert statuses(wire.responses(back, 100)) == [100]
    assert uas.remote_sdp == OFFER and uas.invite.content_type == "application/sdp"

    dst.layer.provisional(uas, 180, now=wire.now)
    wire.pump()
    ringing = src.one(ProvisionalReceived)
    assert (ringing.status, ringing.sdp) == (180, None)
    assert state(uac) is LegState.EARLY and state(uas) is LegState.EARLY
    (response,) = wire.responses(back, 180)
    assert response.to.tag == uas.local_tag and response.contacts

    dst.layer.accept(uas, ANSWER, now=wire.now)
    wire.pump()
    assert src.one(Answered).sdp == ANSWER
    assert dst.one(Acked).sdp is None
    assert state(uac) is LegState.CONFIRMED and state(uas) is LegState.CONFIRMED
    (ack,) = wire.requests(there, "ACK")
    assert ack.cseq.seq == uac.invite.cseq.seq and ack.to.tag == uas.local_tag
    assert ack.via.branch != uac.invite.via.branch  # the ACK for a 2xx is its own transaction
    assert (uac.local_sdp, uac.remote_sdp, uas.local_sdp, uas.remote_sdp) == (OFFER, ANSWER, ANSWER, OFFER)
    assert uac.dialog is not None and uas.dialog is not None
    assert uac.dialog.id == (uas.call_id, uas.dialog.remote_tag, uas.dialog.local_tag)

    hanger, other = (src, dst) if hangs_up == "caller" else (dst, src)
    leg = uac if hangs_up == "caller" else uas
    hanger.layer.bye(leg, now=wire.now, reason='Q.850;cause=16;text="Normal call clearing"')
    assert state(leg) is LegState.TERMINATING
    wire.pump()
    ended = other.one(Ended)
    assert (ended.by, ended.reason, ended.status) == ("remote", "bye", None)
    ended = hanger.one(Ended)
    assert (ended.by, ended.reason, ended.status) == ("local", "bye", 200)
    (bye,) = wire.requests(f"{hanger.name}>{other.name}", "BYE")
    assert bye.headers.get("reason") == 'Q.850;cause=16;text="Normal call clearing"'
    assert state(uac) is LegState.TERMINATED and state(uas) is LegState.TERMINATED
    wire.quiet()


def test_invite_carries_contact_allow_and_the_display_name() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    request = uas.invite
    assert request.from_.display == "Alice" and request.from_.tag == uac.local_tag
    assert request.to.tag is None
    assert str(request.contacts[0].uri) == "sip:softswitch@192.0.2.10:5060"
    assert "UPDATE" in (request.headers.get("allow") or "")
    assert request.cseq.method == "INVITE"


def test_early_media_183_with_sdp_creates_the_early_dialog() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 183, sdp=ANSWER, now=wire.now)
    wire.pump()
    progress = wire.a.one(ProvisionalReceived)
    assert (progress.status, progress.sdp) == (183, ANSWER)
    assert uac.remote_sdp == ANSWER and state(uac) is LegState.EARLY
    assert uac.dialog is not None and uac.dialog.remote_tag == uas.local_tag
    # accept(None) answers with the early SDP again: the 2xx must carry the answer.
    wire.b.layer.accept(uas, None, now=wire.now)
    wire.pump()
    assert wire.a.one(Answered).sdp == ANSWER
    (ok,) = wire.responses("b>a", 200)
    assert ok.body == ANSWER


def test_provisional_is_reported_once_per_status() -> None:
    wire = Wire()
    _uac, uas = invite(wire, wire.a, wire.b)
    for _ in range(2):
        wire.b.layer.provisional(uas, 180, now=wire.now)
    wire.b.layer.provisional(uas, 183, sdp=ANSWER, now=wire.now)
    wire.pump()
    assert [e.status for e in wire.a.take() if isinstance(e, ProvisionalReceived)] == [180, 183]


# ---------------------------------------------------------------------------------------------------------
# CANCEL (§9)
# ---------------------------------------------------------------------------------------------------------


def test_cancel_before_answer_gets_487() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 180, now=wire.now)
    wire.pump()
    wire.a.take()
    wire.a.layer.cancel(uac, now=wire.now, reason='SIP;cause=200;text="Call completed elsewhere"')
    assert state(uac) is LegState.TERMINATING
    wire.pump()
    assert wire.b.one(Cancelled).leg is uas
    failed = wire.a.one(Failed)
    assert (failed.status, failed.leg) == (487, uac)
    (cancel,) = wire.requests("a>b", "CANCEL")
    assert cancel.headers.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    assert cancel.via.branch == uac.invite.via.branch
    assert [m.cseq.method for m in wire.responses("b>a", 200)] == ["CANCEL"]
    (terminated,) = wire.responses("b>a", 487)
    assert terminated.to.tag == uas.local_tag  # the same tag as the 180
    assert len(wire.requests("a>b", "ACK")) == 1  # the transaction's ACK for the 487
    wire.quiet()


def test_cancel_before_any_provisional_waits_for_the_100() -> None:
    wire = Wire()
    wire.filters.append(drop("b>a", status=100))
    uac, uas = invite(wire, wire.a, wire.b)
    wire.a.layer.cancel(uac, now=wire.now)
    wire.pump()
    assert wire.requests("a>b", "CANCEL") == []  # §9.1: held until a provisional arrives
    wire.b.layer.provisional(uas, 180, now=wire.now)
    wire.pump()
    assert len(wire.requests("a>b", "CANCEL")) == 1
    assert wire.b.one(Cancelled).leg is uas
    assert wire.a.one(Failed).status == 487
    wire.quiet()


def test_cancel_racing_a_200_is_acked_and_byed() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 180, now=wire.now)
    wire.pump()
    wire.a.take()
    # Both act before either hears from the other: the 200 and the CANCEL cross on the wire.
    wire.b.layer.accept(uas, ANSWER, now=wire.now)
    wire.a.layer.cancel(uac, now=wire.now)
    wire.pump()
    failed = wire.a.one(Failed)
    assert (failed.status, failed.reason) == (487, "Answered after CANCEL")
    assert state(uac) is LegState.TERMINATED
    # B: the CANCEL came after the final, so 200 to the CANCEL only; then the ACK, then the BYE.
    events = wire.b.take()
    assert [type(e) for e in events] == [Acked, Ended]
    assert isinstance(events[1], Ended) and events[1].by == "remote"
    assert wire.responses("b>a", 487) == []
    acks = wire.requests("a>b", "ACK")
    byes = wire.requests("a>b", "BYE")
    assert len(acks) == 1 and len(byes) == 1
    assert byes[0].to.tag == uas.local_tag
    assert wire.log.index(("a>b", acks[0])) < wire.log.index(("a>b", byes[0]))
    wire.quiet()


def test_cancel_after_the_final_only_gets_200() -> None:
    wire = Wire()
    uac, uas = established(wire)
    # A late CANCEL for the INVITE we already answered: its server transaction is still there (Accepted).
    cancel = Request("CANCEL", str(uac.invite.uri))
    for name in ("Via", "From", "To", "Call-ID"):
        cancel.headers.add(name, uac.invite.headers.get(name) or "")
    cancel.headers.add("CSeq", f"{uac.invite.cseq.seq} CANCEL")
    cancel.headers.add("Max-Forwards", "70")
    wire.inject(wire.b, cancel)
    assert wire.b.take() == []
    assert state(uas) is LegState.CONFIRMED
    assert [m.cseq.method for m in wire.responses("b>a", 200)] == ["INVITE", "CANCEL"]
    assert wire.responses("b>a", 487) == []


# ---------------------------------------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [486, 603])
def test_reject(status: int) -> None:
    wire = Wire()
    _uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.reject(uas, status, now=wire.now)
    assert state(uas) is LegState.TERMINATED
    wire.pump()
    failed = wire.a.one(Failed)
    assert failed.status == status and failed.response is not None
    assert wire.b.take() == []
    assert len(wire.requests("a>b", "ACK")) == 1
    wire.quiet()


def test_timer_b_fails_with_408() -> None:
    wire = Wire()
    wire.filters.append(lambda d, m: None)  # nothing arrives anywhere
    uac = wire.a.layer.invite(
        request_uri="sip:bob@b.example",
        flow=wire.a.flow,
        from_uri="sip:alice@a.example",
        from_display=None,
        to_uri="sip:bob@b.example",
        sdp=OFFER,
        now=0.0,
    )
    wire.run_until(31.9)
    assert wire.a.take() == []
    assert len(wire.lost) == 7  # the INVITE at 0, then Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5
    wire.run_until(32.0)
    failed = wire.a.one(Failed)
    assert (failed.leg, failed.status) == (uac, 408)
    wire.quiet()


def test_transport_failure_fails_with_503() -> None:
    wire = Wire("tcp")
    uac, _uas = invite(wire, wire.a, wire.b)
    wire.a.endpoint.connection_lost(wire.a.flow, now=wire.now)
    wire.pump()
    assert wire.a.one(Failed).status == 503
    assert state(uac) is LegState.TERMINATED


def test_transport_failure_of_an_unanswered_incoming_call_ends_it() -> None:
    wire = Wire("tcp")
    _uac, uas = invite(wire, wire.a, wire.b)
    wire.b.endpoint.connection_lost(wire.b.flow, now=wire.now)
    wire.pump()
    ended = wire.b.one(Ended)
    assert (ended.leg, ended.by, ended.reason) == (uas, "remote", "transport_failure")


# ---------------------------------------------------------------------------------------------------------
# the 2xx and its ACK (§13.3.1.4)
# ---------------------------------------------------------------------------------------------------------


def test_2xx_is_retransmitted_until_the_ack_and_each_copy_is_acked_again() -> None:
    wire = Wire()
    wire.filters.append(drop("a>b", method="ACK", times=3))
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.accept(uas, ANSWER, now=0.0)
    wire.run_until(0.0)
    assert wire.a.one(Answered).leg is uac
    wire.run_until(10.0)
    # 200 at 0, then T1 doubling: 0.5, 1.5, 3.5; the ACK answering the one at 3.5 gets through.
    oks = [m for d, m in wire.log if d == "b>a" and isinstance(m, Response) and m.status == 200]
    assert len(oks) == 4
    assert len({bytes(m) for m in oks}) == 1
    acks = [m for d, m in wire.lost if isinstance(m, Request) and m.method == "ACK"]
    acks += wire.requests("a>b", "ACK")
    assert len(acks) == 4 and len({bytes(m) for m in acks}) == 1  # the same ACK every time
    assert wire.b.one(Acked).leg is uas
    assert state(uas) is LegState.CONFIRMED
    assert wire.b.layer.next_deadline() is None


def test_no_ack_by_64_t1_sends_bye_and_reports_ack_timeout() -> None:
    wire = Wire()
    wire.filters.append(drop("b>a", status=200, cseq_method="INVITE"))
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 180, now=0.0)
    wire.b.layer.accept(uas, ANSWER, now=0.0)
    wire.run_until(31.9)
    assert wire.b.take() == []
    assert [type(e) for e in wire.a.take()] == [ProvisionalReceived]
    # Retransmissions: 0.5, 1.5, 3.5, 7.5, then every T2 (4 s): 11.5 ... 31.5.
    sent_200 = [m for d, m in wire.lost if isinstance(m, Response) and m.status == 200]
    times = len(sent_200)
    assert times == 1 + 4 + 6
    wire.run_until(32.0)
    ended = wire.b.one(Ended)
    assert (ended.leg, ended.by, ended.reason) == (uas, "local", "ack_timeout")
    assert len(wire.requests("b>a", "BYE")) == 1
    # A only knew the early dialog: a BYE in it gives up the INVITE (CANCEL, then the §9.1 guard).
    wire.run_out()
    failed = wire.a.one(Failed)
    assert failed.leg is uac and failed.status == 487
    wire.quiet()


def test_bye_while_waiting_for_the_ack_goes_out_after_the_ack() -> None:
    wire = Wire()
    wire.filters.append(drop("a>b", method="ACK", times=1))
    _uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.accept(uas, ANSWER, now=0.0)
    wire.b.layer.bye(uas, now=0.0)
    wire.pump()
    assert wire.requests("b>a", "BYE") == []
    wire.run_until(0.5)  # the 2xx again; its ACK gets through; then the BYE
    assert len(wire.requests("b>a", "BYE")) == 1
    assert [type(e) for e in wire.b.take()] == [Ended]
    assert [type(e) for e in wire.a.take()] == [Answered, Ended]
    wire.quiet()


def test_delayed_offer_offer_in_200_answer_in_ack() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b, sdp=None)
    assert uas.remote_sdp is None and uas.invite.body == b""
    with pytest.raises(LocalProtocolError):
        wire.b.layer.accept(uas, None, now=wire.now)  # the 2xx must carry our offer
    wire.b.layer.accept(uas, ANSWER, now=wire.now)  # here: our offer
    wire.pump()
    answered = wire.a.one(Answered)
    assert answered.sdp == ANSWER
    assert wire.requests("a>b", "ACK") == []  # the ACK waits for our answer
    wire.a.layer.ack(uac, OFFER, now=wire.now)
    wire.pump()
    (ack,) = wire.requests("a>b", "ACK")
    assert ack.body == OFFER and ack.content_type == "application/sdp"
    acked = wire.b.one(Acked)
    assert acked.sdp == OFFER and uas.remote_sdp == OFFER
    assert uac.local_sdp == OFFER and uac.remote_sdp == ANSWER


# ---------------------------------------------------------------------------------------------------------
# re-INVITE (§14), glare, UPDATE (RFC 3311), INFO (RFC 6086)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["uac", "uas"])
def test_reinvite_hold_and_resume(who: str) -> None:
    wire = Wire()
    uac, uas = established(wire)
    sender, receiver = (wire.a, wire.b) if who == "uac" else (wire.b, wire.a)
    mine, theirs = (uac, uas) if who == "uac" else (uas, uac)
    for offer, answer in ((HOLD, HELD), (RESUME, ANSWER)):
        sender.layer.reinvite(mine, offer, now=wire.now)
        assert mine.negotiating
        wire.pump()
        received = receiver.one(ReinviteReceived)
        assert received.sdp == offer and received.leg is theirs
        assert received.request.to.tag == theirs.local_tag
        receiver.layer.answer_reinvite(theirs, sdp=answer, now=wire.now)
        wire.pump()
        completed = sender.one(ReinviteCompleted)
        assert (completed.status, completed.sdp, completed.method) == (200, answer, "INVITE")
        assert receiver.take() == []  # the ACK carried no SDP: no event
        assert (mine.local_sdp, mine.remote_sdp) == (offer, answer)
        assert (theirs.local_sdp, theirs.remote_sdp) == (answer, offer)
        assert not mine.negotiating and not theirs.negotiating
    reinvites = wire.requests(f"{sender.name}>{receiver.name}", "INVITE")
    assert len(reinvites) == 2 + (1 if who == "uac" else 0)
    assert all(m.contacts for m in reinvites)


def test_reinvite_rejected_leaves_the_session() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.pump()
    wire.b.take()
    wire.b.layer.answer_reinvite(uas, status=488, now=wire.now)
    wire.pump()
    completed = wire.a.one(ReinviteCompleted)
    assert (completed.status, completed.sdp) == (488, None)
    assert (uac.local_sdp, uac.remote_sdp) == (OFFER, ANSWER)


def test_reinvite_without_offer_is_answered_in_the_ack() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, None, now=wire.now)
    wire.pump()
    assert wire.b.one(ReinviteReceived).sdp is None
    wire.b.layer.answer_reinvite(uas, sdp=HELD, now=wire.now)  # our offer
    wire.pump()
    completed = wire.a.one(ReinviteCompleted)
    assert completed.sdp == HELD
    wire.a.layer.ack(uac, HOLD, now=wire.now)
    wire.pump()
    assert wire.b.one(Acked).sdp == HOLD
    assert uas.remote_sdp == HOLD and uac.local_sdp == HOLD


def test_glare_both_reinvite_491_and_the_non_owner_retries_first() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.b.layer.reinvite(uas, HELD, now=wire.now)
    wire.pump()
    assert [m.cseq.method for m in wire.responses("a>b", 491)] == ["INVITE"]
    assert [m.cseq.method for m in wire.responses("b>a", 491)] == ["INVITE"]
    assert wire.a.take() == [] and wire.b.take() == []  # glare is reported by nobody
    # B (not the Call-ID's owner) retries within 0-2 s; A (the owner) not before 2.1 s.
    wire.run_until(2.0)
    received = wire.a.one(ReinviteReceived)
    assert received.sdp == HELD
    wire.a.layer.answer_reinvite(uac, sdp=HOLD, now=wire.now)
    wire.pump()
    assert wire.b.one(ReinviteCompleted).status == 200
    wire.run_until(4.0)
    assert wire.b.one(ReinviteReceived).sdp == HOLD
    wire.b.layer.answer_reinvite(uas, sdp=HELD, now=wire.now)
    wire.pump()
    assert wire.a.one(ReinviteCompleted).status == 200
    retry = wire.requests("a>b", "INVITE")[-1]
    assert 2.1 <= wire.now <= 4.0 and retry.cseq.seq > uac.invite.cseq.seq + 1


def test_glare_retry_gives_up_while_the_peers_reinvite_is_pending() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.b.layer.reinvite(uas, HELD, now=wire.now)
    wire.run_until(2.0)
    assert isinstance(wire.a.one(ReinviteReceived), ReinviteReceived)  # not answered yet
    wire.run_until(4.0)
    completed = wire.a.one(ReinviteCompleted)
    assert (completed.status, completed.sdp) == (491, None)
    wire.a.layer.answer_reinvite(uac, sdp=HOLD, now=wire.now)
    wire.pump()
    assert wire.b.one(ReinviteCompleted).status == 200


def test_second_reinvite_while_one_is_pending_gets_500_with_retry_after() -> None:
    wire = Wire()
    uac, _uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.pump()
    wire.b.take()
    # A misbehaving peer sends another re-INVITE before ours is answered.
    dialog = replace(uac.dialog) if uac.dialog else None
    assert dialog is not None
    request = dialog.create_request(
        "INVITE",
        via=wire.a.endpoint.via_for(wire.a.flow),
        contact="sip:x@192.0.2.10",
        body=RESUME,
        content_type="application/sdp",
    )
    wire.a.endpoint.send_request(request, wire.a.flow, now=wire.now)
    wire.pump()
    (refused,) = wire.responses("b>a", 500)
    assert refused.cseq.seq == request.cseq.seq
    assert 0 <= int(refused.headers.get("retry-after") or "-1") <= 10
    assert wire.b.take() == []


def test_local_reinvite_while_negotiating_is_our_mistake() -> None:
    wire = Wire()
    uac, _uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    with pytest.raises(LocalProtocolError):
        wire.a.layer.reinvite(uac, RESUME, now=wire.now)
    with pytest.raises(LocalProtocolError):
        wire.a.layer.update(uac, RESUME, now=wire.now)


def test_update_in_a_confirmed_dialog() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.b.layer.update(uas, HELD, now=wire.now)
    wire.pump()
    received = wire.a.one(UpdateReceived)
    assert received.sdp == HELD and received.request.method == "UPDATE"
    wire.a.layer.answer_update(uac, sdp=HOLD, now=wire.now)
    wire.pump()
    completed = wire.b.one(ReinviteCompleted)
    assert (completed.status, completed.sdp, completed.method) == (200, HOLD, "UPDATE")
    assert (uas.local_sdp, uas.remote_sdp, uac.local_sdp, uac.remote_sdp) == (HELD, HOLD, HOLD, HELD)


def test_update_glare_with_a_reinvite() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.b.layer.update(uas, HELD, now=wire.now)
    wire.pump()
    assert [m.cseq.method for m in wire.responses("a>b", 491)] == ["UPDATE"]
    assert [m.cseq.method for m in wire.responses("b>a", 491)] == ["INVITE"]


def test_update_in_an_early_dialog_meets_the_unanswered_invite_offer() -> None:
    # Without 100rel the INVITE's offer has no reliable answer before the 2xx (RFC 3311 §5.1-5.2):
    # the callee's UPDATE meets 491 (the caller's offer is outstanding), the caller's 500.
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 183, sdp=ANSWER, now=wire.now)
    wire.pump()
    wire.a.take()
    wire.b.layer.update(uas, HELD, now=wire.now)
    wire.run_until(10.0)
    completed = wire.b.one(ReinviteCompleted)
    assert (completed.status, completed.method) == (491, "UPDATE")
    assert len(wire.requests("b>a", "UPDATE")) == 2  # one retry after the §14.1 delay
    wire.a.layer.update(uac, HOLD, now=wire.now)
    wire.pump()
    assert wire.a.one(ReinviteCompleted).status == 500


def test_update_without_sdp_is_a_target_refresh_answered_by_the_layer() -> None:
    wire = Wire()
    uac, uas = established(wire)
    assert uas.dialog is not None and uac.dialog is not None
    request = uac.dialog.create_request(
        "UPDATE", via=wire.a.endpoint.via_for(wire.a.flow), contact="sip:alice@192.0.2.10:5099"
    )
    wire.a.endpoint.send_request(request, wire.a.flow, now=wire.now)
    wire.pump()
    assert wire.b.take() == []
    assert statuses(wire.responses("b>a", 200))[-1] == 200
    assert uas.dialog.remote_target == "sip:alice@192.0.2.10:5099"


def test_info_dtmf_is_answered_and_reported() -> None:
    wire = Wire()
    uac, _uas = established(wire)
    wire.a.layer.info(uac, "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", now=wire.now)
    wire.pump()
    info = wire.b.one(InfoReceived)
    assert info.content_type == "application/dtmf-relay"
    assert info.body == b"Signal=5\r\nDuration=160\r\n"
    assert [m.cseq.method for m in wire.responses("b>a", 200)][-1] == "INFO"


def test_info_for_an_info_package_we_never_announced_gets_469() -> None:
    wire = Wire()
    uac, _uas = established(wire)
    assert uac.dialog is not None
    request = uac.dialog.create_request(
        "INFO",
        via=wire.a.endpoint.via_for(wire.a.flow),
        contact=None,
        headers=[("Info-Package", "foo")],
        body=b"x",
        content_type="text/plain",
    )
    wire.a.endpoint.send_request(request, wire.a.flow, now=wire.now)
    wire.pump()
    assert statuses(wire.responses("b>a", 469)) == [469]
    assert wire.b.take() == []


def test_peer_cancels_its_reinvite() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.pump()
    wire.b.take()
    (tx,) = [
        tx
        for tx in wire.a.endpoint.transactions._clients.values()
        if tx.method == "INVITE" and tx.request.cseq.seq > uac.invite.cseq.seq
    ]
    assert wire.a.endpoint.cancel(tx, now=wire.now) is not None
    wire.pump()
    assert wire.b.one(ReinviteCancelled).leg is uas
    assert wire.a.one(ReinviteCompleted).status == 487
    wire.b.layer.answer_reinvite(uas, sdp=HELD, now=wire.now)  # too late: ignored
    assert wire.b.layer.dropped.get("late_answer") == 1
    assert (uac.local_sdp, uac.remote_sdp) == (OFFER, ANSWER)


# ---------------------------------------------------------------------------------------------------------
# requests within a dialog: matching, ordering, ending (§12.2)
# ---------------------------------------------------------------------------------------------------------


def foreign(method: str, *, to_tag: str | None = "nosuchtag", seq: int = 5) -> Request:
    lines = [
        f"{method} sip:softswitch@198.51.100.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={new_branch()};rport",
        "Max-Forwards: 70",
        "From: <sip:alice@a.example>;tag=whoever",
        "To: <sip:bob@b.example>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: unknown-call@192.0.2.10",
        f"CSeq: {seq} {method}",
        "Contact: <sip:alice@192.0.2.10>",
        "Content-Length: 0",
        "",
        "",
    ]
    request = parse_message("\r\n".join(lines).encode())
    assert isinstance(request, Request)
    return request


@pytest.mark.parametrize("method", ["BYE", "INVITE", "UPDATE", "INFO", "PRACK"])
def test_request_for_an_unknown_dialog_gets_481(method: str) -> None:
    wire = Wire()
    wire.inject(wire.b, foreign(method))
    assert statuses(wire.responses("b>a", 481)) == [481]
    assert wire.b.take() == []


def test_bye_without_to_tag_gets_481_and_an_unmatched_ack_is_dropped() -> None:
    wire = Wire()
    wire.inject(wire.b, foreign("BYE", to_tag=None))
    assert statuses(wire.responses("b>a", 481)) == [481]
    wire.inject(wire.b, foreign("ACK"))
    assert wire.b.endpoint.outgoing() == [] and wire.b.layer.dropped.get("unmatched_ack") == 1


def test_prack_in_a_dialog_gets_481() -> None:
    wire = Wire()
    uac, _uas = established(wire)
    assert uac.dialog is not None
    request = uac.dialog.create_request(
        "PRACK", via=wire.a.endpoint.via_for(wire.a.flow), contact=None, headers=[("RAck", "1 1 INVITE")]
    )
    wire.a.endpoint.send_request(request, wire.a.flow, now=wire.now)
    wire.pump()
    assert statuses(wire.responses("b>a", 481)) == [481]


def test_out_of_order_cseq_gets_500() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.info(uac, "application/dtmf", b"5", now=wire.now)
    wire.pump()
    wire.b.take()
    assert uac.dialog is not None
    stale = replace(uac.dialog)
    request = stale.create_request(
        "INFO", via=wire.a.endpoint.via_for(wire.a.flow), contact=None, cseq=uac.dialog.local_seq - 1
    )
    wire.a.endpoint.send_request(request, wire.a.flow, now=wire.now)
    wire.pump()
    (refused,) = wire.responses("b>a", 500)
    assert refused.cseq.seq == uac.dialog.local_seq - 1
    assert wire.b.take() == [] and state(uas) is LegState.CONFIRMED


def test_481_to_a_reinvite_ends_the_dialog() -> None:
    wire = Wire()
    wire.filters.append(drop("b>a", method="BYE"))
    uac, uas = established(wire)
    wire.b.layer.bye(uas, now=wire.now)  # lost: A never hears of it
    wire.run_until(32.0)
    ended = wire.b.one(Ended)
    assert (ended.reason, ended.status) == ("bye", 408)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.pump()
    ended = wire.a.one(Ended)
    assert (ended.by, ended.reason, ended.status) == ("remote", "dialog_gone", 481)
    wire.quiet()


def test_timeout_of_a_reinvite_ends_the_dialog_with_a_bye() -> None:
    wire = Wire()
    uac, _uas = established(wire)
    wire.filters.append(drop("a>b", method="INVITE"))
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.run_until(wire.now + 32.0)
    ended = wire.a.one(Ended)
    assert (ended.by, ended.reason, ended.status) == ("local", "request_timeout", 408)
    assert len(wire.requests("a>b", "BYE")) == 1
    assert wire.b.one(Ended).by == "remote"
    wire.quiet()


def test_byes_that_cross_end_each_side_once() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.bye(uac, now=wire.now)
    wire.b.layer.bye(uas, now=wire.now)
    wire.pump()
    for side in (wire.a, wire.b):
        ended = side.one(Ended)
        assert (ended.by, ended.reason, ended.status) == ("local", "bye", 200)
    wire.quiet()


def test_bye_answers_the_pending_reinvite_487() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.pump()
    wire.b.take()
    wire.b.layer.bye(uas, now=wire.now)
    wire.pump()
    assert [m.cseq.method for m in wire.responses("b>a", 487)] == ["INVITE"]
    events = wire.a.take()
    assert [type(e) for e in events] == [ReinviteCompleted, Ended]
    wire.quiet()


def test_merged_request_gets_482() -> None:
    wire = Wire()
    uac, _uas = invite(wire, wire.a, wire.b)
    copy = Request("INVITE", str(uac.invite.uri), uac.invite.headers.copy(), uac.invite.body)
    copy.headers.set("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={new_branch()};rport")
    wire.inject(wire.b, copy)
    assert statuses(wire.responses("b>a", 482)) == [482]
    assert wire.b.take() == []


def test_invite_without_contact_gets_400() -> None:
    wire = Wire()
    request = foreign("INVITE", to_tag=None)
    request.headers.remove("Contact")
    request.uri = parse_message(bytes(request)).uri  # type: ignore[union-attr]
    request = Request("INVITE", "sip:bob@b.example", request.headers)
    wire.inject(wire.b, request)
    assert statuses(wire.responses("b>a", 400)) == [400]
    assert wire.b.take() == []


def test_commands_on_an_ended_leg_do_nothing_and_misuse_raises() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    with pytest.raises(LocalProtocolError):
        wire.a.layer.accept(uac, ANSWER, now=wire.now)
    with pytest.raises(LocalProtocolError):
        wire.b.layer.bye(uas, now=wire.now)  # unanswered incoming: reject it
    with pytest.raises(LocalProtocolError):
        wire.b.layer.reinvite(uas, OFFER, now=wire.now)
    wire.b.layer.reject(uas, 480, now=wire.now)
    wire.pump()
    commands: list[Callable[[], None]] = [
        lambda: wire.b.layer.accept(uas, ANSWER, now=wire.now),
        lambda: wire.b.layer.provisional(uas, now=wire.now),
        lambda: wire.b.layer.bye(uas, now=wire.now),
        lambda: wire.a.layer.cancel(uac, now=wire.now),
        lambda: wire.a.layer.reinvite(uac, HOLD, now=wire.now),
        lambda: wire.b.layer.hangup(uas, now=wire.now),
    ]
    for command in commands:
        command()
    wire.pump()
    assert wire.b.endpoint.outgoing() == []
    wire.quiet()


# ---------------------------------------------------------------------------------------------------------
# Record-Route and Route (§12.1, §12.2.1.1, §16.12 as a proxy would do it)
# ---------------------------------------------------------------------------------------------------------


def loose_proxies(*names: str) -> Filter:
    """Proxies between A and B (A's side first) that record-route; they pop their Route entries."""

    def keep(direction: str, message: Message) -> Message | None:
        if not isinstance(message, Request):
            return message
        if message.method == "INVITE" and message.to.tag is None and direction == "a>b":
            for name in names:  # each proxy in turn puts itself on top
                message.headers.prepend("Record-Route", f"<sip:{name};lr>")
        else:
            message.headers.remove("Route")
        return message

    return keep


def test_loose_routes_in_both_directions() -> None:
    wire = Wire()
    wire.filters.append(loose_proxies("p1.example", "p2.example"))
    uac, uas = established(wire)
    assert uas.dialog is not None and uac.dialog is not None
    assert uas.dialog.route_set == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert uac.dialog.route_set == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    (ok,) = wire.responses("b>a", 200)
    assert ok.headers.values("record-route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    # Check Route as each side sent it (the proxies pop theirs on the way).
    seen: list[tuple[str, str, list[str], str]] = []

    def spy(direction: str, message: Message) -> Message | None:
        if isinstance(message, Request):
            seen.append((direction, message.method, message.headers.values("route"), str(message.uri)))
        return message

    wire.filters.insert(0, spy)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.pump()
    wire.b.layer.answer_reinvite(uas, sdp=HELD, now=wire.now)
    wire.pump()
    wire.b.layer.bye(uas, now=wire.now)
    wire.pump()
    assert seen == [
        ("a>b", "INVITE", ["<sip:p1.example;lr>", "<sip:p2.example;lr>"], "sip:softswitch@198.51.100.1:5060"),
        ("a>b", "ACK", ["<sip:p1.example;lr>", "<sip:p2.example;lr>"], "sip:softswitch@198.51.100.1:5060"),
        ("b>a", "BYE", ["<sip:p2.example;lr>", "<sip:p1.example;lr>"], "sip:softswitch@192.0.2.10:5060"),
    ]
    assert isinstance(wire.a.take()[-1], Ended)


def test_record_route_is_copied_into_the_180_and_the_200() -> None:
    wire = Wire()
    wire.filters.append(loose_proxies("p1.example"))
    _uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 180, now=wire.now)
    wire.b.layer.accept(uas, ANSWER, now=wire.now)
    wire.pump()
    assert [m.headers.values("record-route") for m in wire.responses("b>a", 100)] == [[]]
    for status in (180, 200):
        (response,) = wire.responses("b>a", status)
        assert response.headers.values("record-route") == ["<sip:p1.example;lr>"]


PROXY_HOSTS = frozenset({"10.0.0.9"})


def strict_proxy(direction: str, message: Message) -> Message | None:
    """A RFC 2543 strict router at 10.0.0.9: it record-routes without lr, and on the way through puts the
    last Route into the Request-URI (RFC 3261 §16.4 describes what it did)."""
    if not isinstance(message, Request):
        return message
    if message.method == "INVITE" and message.to.tag is None:
        message.headers.prepend("Record-Route", "<sip:10.0.0.9>")
        return message
    routes = message.headers.values("route")
    assert str(message.uri) == "sip:10.0.0.9"
    assert routes, "a strict route keeps the remote target as the last Route"
    rebuilt = Request(message.method, routes[-1].strip("<>"), message.headers.copy(), message.body)
    rebuilt.headers.replace_values("route", routes[:-1])
    return rebuilt


def test_strict_route_puts_the_router_in_the_request_uri() -> None:
    wire = Wire()
    wire.filters.append(strict_proxy)
    uac, uas = established(wire)
    assert uac.dialog is not None and uac.dialog.route_set == ["<sip:10.0.0.9>"]
    wire.sent_to.clear()
    wire.b.layer.bye(uas, now=wire.now)
    wire.pump()
    assert wire.a.one(Ended).by == "remote"
    assert wire.b.one(Ended).status == 200
    # The BYE went to the router, the first hop of the route set, not straight to the phone.
    assert ("b>a", Flow(wire.b.flow.transport, ("10.0.0.9", 5060), wire.b.flow.local)) in wire.sent_to
    wire.quiet()


# ---------------------------------------------------------------------------------------------------------
# forking below us (§13.2.2.4)
# ---------------------------------------------------------------------------------------------------------


def test_second_2xx_from_another_fork_is_acked_then_byed() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.accept(uas, ANSWER, now=wire.now)
    wire.pump()
    assert wire.a.one(Answered).leg is uac
    (ok,) = wire.responses("b>a", 200)
    assert isinstance(ok, Response)
    # The same 2xx once more: a retransmission, ACKed again with the same ACK.
    wire.inject(wire.a, ok)
    acks = wire.requests("a>b", "ACK")
    assert len(acks) == 2 and bytes(acks[0]) == bytes(acks[1])
    # Another fork answers too: a different To tag.
    other = Response(200, None, ok.headers.copy(), ok.body)
    other.headers.set("To", "<sip:bob@b.example>;tag=otherfork")
    other.headers.set("Contact", "<sip:fork2@198.51.100.1:5060>")
    wire.inject(wire.a, other)
    assert wire.a.take() == []
    assert state(uac) is LegState.CONFIRMED and uac.dialog is not None
    assert uac.dialog.remote_tag == uas.local_tag
    fork_ack = wire.requests("a>b", "ACK")[-1]
    (fork_bye,) = wire.requests("a>b", "BYE")
    assert fork_ack.to.tag == "otherfork" and fork_bye.to.tag == "otherfork"
    assert str(fork_bye.uri) == "sip:fork2@198.51.100.1:5060"
    assert wire.log.index(("a>b", fork_ack)) < wire.log.index(("a>b", fork_bye))
    # B knows no such dialog: 481, which ends nothing on A.
    assert [m.cseq.method for m in wire.responses("b>a", 481)] == ["BYE"]
    assert state(uac) is LegState.CONFIRMED


def test_two_early_dialogs_then_the_2xx_picks_one() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 180, now=wire.now)
    wire.pump()
    (ringing,) = wire.responses("b>a", 180)
    fork = Response(183, None, ringing.headers.copy(), ANSWER)
    fork.headers.set("To", "<sip:bob@b.example>;tag=fork2")
    fork.headers.set("Content-Type", "application/sdp")
    fork.headers.set("Content-Length", str(len(ANSWER)))
    wire.inject(wire.a, fork)
    events = wire.a.take()
    assert [e.status for e in events if isinstance(e, ProvisionalReceived)] == [180, 183]
    assert uac.dialog is not None and uac.dialog.remote_tag == "fork2"
    wire.b.layer.accept(uas, ANSWER, now=wire.now)
    wire.pump()
    assert wire.a.one(Answered).leg is uac
    assert uac.dialog.remote_tag == uas.local_tag
    # The early dialog of the other fork is gone: a request in it gets 481.
    assert len(wire.a.layer._dialogs) == 1


# ---------------------------------------------------------------------------------------------------------
# property: any order of these events ends with no live leg once every timer has fired
# ---------------------------------------------------------------------------------------------------------


class Op(NamedTuple):
    """One random step: what to do, to which call (`call`) and which of its legs (`role`)."""

    kind: str
    call: int = 0
    role: str = "uac"
    flag: bool = False  # call: with an offer; reinvite: with an offer
    number: float = 0  # a status, a count of messages to lose, or seconds to advance
    direction: str = "a>b"


def op(kind: str, **fields: st.SearchStrategy[object]) -> st.SearchStrategy[Op]:
    return st.fixed_dictionaries(fields).map(lambda values: Op(kind, **values))  # type: ignore[arg-type]


LEG = st.sampled_from([0, 0, 0, 1, 2])
ROLE = st.sampled_from(["uac", "uas"])
CALL = op("call", role=st.sampled_from(["a", "b"]), flag=st.booleans())
CONNECT = op("connect", role=st.sampled_from(["a", "b"]), flag=st.booleans())
DELIVER = op("pump") | op("advance", number=st.sampled_from([0.2, 0.6, 2.5, 5.0, 40.0]))
OPS = st.one_of(
    CALL,
    CONNECT,
    op("ring", call=LEG, number=st.sampled_from([180, 183])),
    op("answer", call=LEG),
    op("answer", call=LEG),
    op("reject", call=LEG, number=st.sampled_from([486, 603])),
    op("cancel", call=LEG),
    op("bye", call=LEG, role=ROLE),
    op("reinvite", call=LEG, role=ROLE, flag=st.booleans()),
    op("reinvite", call=LEG, role=ROLE, flag=st.booleans()),
    op("update", call=LEG, role=ROLE),
    op("respond", call=LEG, role=ROLE, number=st.sampled_from([200, 200, 488])),
    op("respond", call=LEG, role=ROLE, number=st.just(200)),
    op("info", call=LEG, role=ROLE),
    op("ack", call=LEG, role=ROLE),
    op("lose", number=st.integers(1, 3), direction=st.sampled_from(["a>b", "b>a"])),
    op("sever", role=st.sampled_from(["a", "b"])),
    DELIVER,
    DELIVER,
    DELIVER,
)
SCRIPTS = st.tuples(CALL | CONNECT, st.lists(OPS, min_size=15, max_size=60)).map(
    lambda parts: [parts[0], *parts[1]]
)


def note_kind(name: str) -> None:
    """Tell hypothesis's statistics which events the examples reached (`--hypothesis-show-statistics`)."""
    if currently_in_test_context():
        event(name)


class Scenario:
    """Calls between the two sides of a wire, driven by random operations; it checks as it goes that
    each leg ends once, with one event, and hears nothing after that."""

    def __init__(self, transport: str = "udp") -> None:
        self.wire = Wire(transport)
        self.lossy = [0]  # messages still to lose, set by "lose"
        self.lose_direction = ["a>b"]
        self.wire.filters.append(self._lossy)
        self.calls: list[dict[str, Leg]] = []  # {"uac": leg, "uas": leg} (uas once its INVITE arrived)
        self.side_of: dict[int, Side] = {}  # id(leg) -> side
        self.pending: dict[int, str] = {}  # id(leg) -> "INVITE" / "UPDATE" waiting for our answer
        self.ended: dict[int, int] = {}  # id(leg) -> terminal events seen
        self.rejected: set[int] = set()
        self.legs: dict[int, Leg] = {}

    def _lossy(self, direction: str, message: Message) -> Message | None:
        if self.lossy[0] > 0 and direction == self.lose_direction[0]:
            self.lossy[0] -= 1
            return None
        return message

    def leg(self, index: int, role: str) -> tuple[Leg, Side] | None:
        if index >= len(self.calls) or role not in self.calls[index]:
            return None
        leg = self.calls[index][role]
        return leg, self.side_of[id(leg)]

    def collect(self) -> None:
        for side in (self.wire.a, self.wire.b):
            for happened in side.take():
                leg = happened.leg
                if isinstance(happened, InviteReceived):
                    self.side_of[id(leg)] = side
                    self.legs[id(leg)] = leg
                    for call in self.calls:
                        if call["uac"].call_id == leg.call_id:
                            call["uas"] = leg
                    continue
                assert id(leg) in self.legs, happened
                note_kind(type(happened).__name__)
                assert self.side_of[id(leg)] is side, happened
                assert self.ended.get(id(leg), 0) == 0, f"{happened} after the end"
                if isinstance(happened, ReinviteReceived):
                    self.pending[id(leg)] = "INVITE"
                elif isinstance(happened, UpdateReceived):
                    self.pending[id(leg)] = "UPDATE"
                elif isinstance(happened, ReinviteCancelled):
                    self.pending.pop(id(leg), None)
                elif isinstance(happened, Ended | Failed | Cancelled):
                    self.ended[id(leg)] = self.ended.get(id(leg), 0) + 1
                    self.pending.pop(id(leg), None)
                    assert leg.state is LegState.TERMINATED

    def apply(self, op: Op) -> None:
        wire = self.wire
        now = wire.now
        kind = op.kind
        status = int(op.number)
        if kind == "connect" and len(self.calls) < 3:
            # A call that is answered at once (if nothing is lost): most interesting things need one.
            self.apply(op._replace(kind="call"))
            wire.pump()
            self.collect()
            self.apply(op._replace(kind="answer", call=len(self.calls) - 1))
            wire.pump()
        elif kind == "call" and len(self.calls) < 3:
            src, dst = (wire.a, wire.b) if op.role == "a" else (wire.b, wire.a)
            leg = src.layer.invite(
                request_uri=f"sip:bob@{dst.domain}",
                flow=src.flow,
                from_uri=f"sip:alice@{src.domain}",
                from_display=None,
                to_uri=f"sip:bob@{dst.domain}",
                sdp=OFFER if op.flag else None,
                now=now,
            )
            self.calls.append({"uac": leg})
            self.side_of[id(leg)] = src
            self.legs[id(leg)] = leg
        elif kind in ("ring", "answer", "reject"):
            found = self.leg(op.call, "uas")
            if found is None:
                return
            leg, side = found
            if leg.state in (LegState.CONNECTING, LegState.CONFIRMED):
                return
            if kind == "ring":
                side.layer.provisional(leg, status, sdp=ANSWER if status == 183 else None, now=now)
            elif kind == "answer":
                side.layer.accept(leg, ANSWER, now=now)
            else:
                if leg.state in (LegState.INCOMING, LegState.EARLY):
                    self.rejected.add(id(leg))
                side.layer.reject(leg, status, now=now)
        elif kind == "cancel":
            found = self.leg(op.call, "uac")
            if found is not None:
                found[1].layer.cancel(found[0], now=now)
        elif kind in ("bye", "reinvite", "update", "respond", "info", "ack"):
            found = self.leg(op.call, op.role)
            if found is None:
                return
            leg, side = found
            over = leg.state in (LegState.TERMINATING, LegState.TERMINATED)
            layer = side.layer
            if kind == "bye":
                if over or not (leg.role == "uas" and leg.state in (LegState.INCOMING, LegState.EARLY)):
                    layer.bye(leg, now=now)
            elif kind == "reinvite":
                if over or (leg.state is LegState.CONFIRMED and not leg.negotiating):
                    layer.reinvite(leg, HOLD if op.flag else None, now=now)
            elif kind == "update":
                if over or (leg.state in (LegState.EARLY, LegState.CONFIRMED) and not leg.negotiating):
                    layer.update(leg, RESUME, now=now)
            elif kind == "respond":
                method = self.pending.pop(id(leg), None)
                if method == "INVITE":
                    layer.answer_reinvite(leg, sdp=HELD, status=status, now=now)
                elif method == "UPDATE":
                    layer.answer_update(leg, sdp=HELD, status=status, now=now)
            elif kind == "info":
                if over or (leg.dialog is not None and leg.state is not LegState.INCOMING):
                    layer.info(leg, "application/dtmf", b"5", now=now)
            elif leg._ack_pending is not None:
                layer.ack(leg, HOLD, now=now)
        elif kind == "lose":
            self.lose_direction[0] = op.direction
            self.lossy[0] = status
        elif kind == "sever":
            # The connection breaks under one side (its transactions on that flow fail with 503).
            side = wire.a if op.role == "a" else wire.b
            side.endpoint.connection_lost(side.flow, now=now)
        elif kind == "pump":
            wire.pump()
        elif kind == "advance":
            wire.run_until(now + op.number)
        self.collect()

    def finish(self) -> None:
        """Stop losing messages, hang up whatever is live until nothing is, then let every timer fire."""
        wire = self.wire
        self.lossy[0] = 0
        for _ in range(10):
            wire.run_until(wire.now + 40.0)  # longer than any transaction timer (64*T1)
            self.collect()
            live = [(leg, side) for side in (wire.a, wire.b) for leg in side.layer.legs()]
            if not live:
                break
            for leg, side in live:
                if leg.role == "uas" and leg.state in (LegState.INCOMING, LegState.EARLY):
                    self.rejected.add(id(leg))
                side.layer.hangup(leg, now=wire.now)
        else:
            raise AssertionError(f"legs that never end: {live}")
        wire.run_out()
        self.collect()
        wire.quiet()
        for key, leg in self.legs.items():
            assert leg.state is LegState.TERMINATED
            expected = 0 if key in self.rejected else 1
            assert self.ended.get(key, 0) == expected, (leg, self.ended.get(key, 0))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=SCRIPTS)
def test_any_order_of_events_leaves_no_live_leg(transport: str, ops: list[Op]) -> None:
    note(repr(ops))
    scenario = Scenario(transport)
    for op in ops:
        scenario.apply(op)
    scenario.finish()


def test_2xx_after_a_failure_from_another_fork_is_acked_and_byed() -> None:
    wire = Wire()
    uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.reject(uas, 486, now=wire.now)
    wire.pump()
    assert wire.a.one(Failed).status == 486
    (busy,) = wire.responses("b>a", 486)
    late = Response(200, None, busy.headers.copy(), ANSWER)
    late.headers.set("To", "<sip:bob@b.example>;tag=latefork")
    late.headers.set("Contact", "<sip:late@198.51.100.1:5060>")
    late.headers.set("Content-Type", "application/sdp")
    late.headers.set("Content-Length", str(len(ANSWER)))
    wire.inject(wire.a, late)  # the transaction is Completed: a stray 2xx for the TU
    (ack,) = [m for m in wire.requests("a>b", "ACK") if m.to.tag == "latefork"]
    (bye,) = wire.requests("a>b", "BYE")
    assert bye.to.tag == "latefork" and ack.cseq.seq == uac.invite.cseq.seq
    assert wire.a.take() == []
    wire.inject(wire.a, late)  # and again: the same ACK, no second BYE
    assert len([m for m in wire.requests("a>b", "ACK") if m.to.tag == "latefork"]) == 2
    assert len(wire.requests("a>b", "BYE")) == 1


def test_2xx_after_timer_b_is_acked_and_byed() -> None:
    wire = Wire()
    wire.filters.append(drop("a>b", method="INVITE"))
    uac = wire.a.layer.invite(
        request_uri="sip:bob@b.example",
        flow=wire.a.flow,
        from_uri="sip:alice@a.example",
        from_display=None,
        to_uri="sip:bob@b.example",
        sdp=OFFER,
        now=0.0,
    )
    wire.run_until(32.0)
    assert wire.a.one(Failed).status == 408
    late = Response(200)
    for name, value in uac.invite.headers.items():
        if name in ("Via", "From", "Call-ID", "CSeq"):
            late.headers.add(name, value)
    late.headers.add("To", "<sip:bob@b.example>;tag=tooslow")
    late.headers.add("Contact", "<sip:bob@198.51.100.1:5060>")
    wire.inject(wire.a, late)
    assert [m.to.tag for m in wire.requests("a>b", "ACK")] == ["tooslow"]
    assert [m.to.tag for m in wire.requests("a>b", "BYE")] == ["tooslow"]
    assert wire.a.take() == []


def test_481_in_an_unanswered_incoming_call_ends_it_and_answers_the_invite_487() -> None:
    wire = Wire()
    wire.filters.append(drop("b>a", status=180))
    _uac, uas = invite(wire, wire.a, wire.b)
    wire.b.layer.provisional(uas, 180, now=wire.now)  # lost: A knows no early dialog
    wire.b.layer.info(uas, "application/dtmf", b"1", now=wire.now)
    wire.pump()
    assert [m.cseq.method for m in wire.responses("a>b", 481)] == ["INFO"]
    ended = wire.b.one(Ended)
    assert (ended.leg, ended.by, ended.reason, ended.status) == (uas, "remote", "dialog_gone", 481)
    assert wire.requests("b>a", "BYE") == []  # §15: never a BYE from the callee on an early dialog
    assert wire.a.one(Failed).status == 487
    wire.quiet()


def test_a_reinvite_still_in_flight_when_the_dialog_ends_is_cancelled() -> None:
    wire = Wire()
    uac, uas = established(wire)
    wire.a.layer.reinvite(uac, HOLD, now=wire.now)
    wire.pump()
    wire.b.take()
    wire.filters.append(drop("b>a", status=200, cseq_method="INVITE"))
    wire.b.layer.answer_reinvite(uas, sdp=HELD, now=wire.now)  # its 2xx never arrives
    wire.a.layer.bye(uac, now=wire.now)
    wire.pump()
    assert wire.a.one(Ended).status == 200
    assert wire.b.one(Ended).by == "remote"
    (cancel,) = wire.requests("a>b", "CANCEL")
    assert cancel.cseq.seq == uac.invite.cseq.seq + 1  # the re-INVITE's
    wire.quiet()  # the §9.1 guard ends the re-INVITE transaction B no longer answers
