"""RFC 3261 §17 / RFC 6026 transactions on a fake wire with time as data (style 9.17).

Two `TransactionLayer`s — a UAC and a UAS — are joined by `Pair`, which parses every datagram the sender
queued and feeds it to the other side, or drops it. Times are literals; no sockets, no sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.flow import Flow
from softswitch.sip.message import Request, Response, new_branch
from softswitch.sip.parser import parse_message
from softswitch.sip.timers import TimerValues
from softswitch.sip.transaction import (
    ICT_TRANSITIONS,
    IST_TRANSITIONS,
    NICT_TRANSITIONS,
    NIST_TRANSITIONS,
    AckReceived,
    ClientTransaction,
    Ict,
    Ist,
    Nict,
    Nist,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    TransactionEvent,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    TxInput,
)

UAC_ADDR = ("192.0.2.10", 5060)
UAS_ADDR = ("198.51.100.1", 5060)


# ---------------------------------------------------------------------------------------------------------
# builders and the fake wire
# ---------------------------------------------------------------------------------------------------------


def make_request(
    method: str,
    *,
    branch: str | None = None,
    seq: int = 1,
    transport: str = "UDP",
    to_tag: str | None = None,
    call_id: str = "a84b4c76e66710@pc33.example.com",
    uri: str = "sip:bob@biloxi.example.com",
    routes: tuple[str, ...] = (),
    sent_by: str = "192.0.2.10:5060",
) -> Request:
    """A request as a phone would send it; `branch=""` leaves the branch out (RFC 2543 style)."""
    if branch is None:
        branch = new_branch()
    via = f"Via: SIP/2.0/{transport} {sent_by}" + (f";branch={branch}" if branch else "")
    to = "To: Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        via,
        *(f"Route: {route}" for route in routes),
        "Max-Forwards: 70",
        to,
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        f"Call-ID: {call_id}",
        f"CSeq: {seq} {method}",
        "Contact: <sip:alice@192.0.2.10>",
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def flows(transport: str) -> tuple[Flow, Flow]:
    """(the UAC's flow to the UAS, the UAS's flow from the UAC)."""
    conn = 7 if transport != "udp" else 0
    return Flow(transport, UAS_ADDR, UAC_ADDR, conn), Flow(transport, UAC_ADDR, UAS_ADDR, conn)


def drain(layer: TransactionLayer) -> list[TransactionEvent]:
    events: list[TransactionEvent] = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


def feed(layer: TransactionLayer, data: bytes, flow: Flow, now: float) -> Request | Response:
    message = parse_message(data)
    if isinstance(message, Request):
        layer.receive_request(message, flow, now=now)
    else:
        layer.receive_response(message, flow, now=now)
    return message


@dataclass
class Pair:
    """A UAC and a UAS transaction layer with a fake network link between them (h11's ConnectionPair)."""

    transport: str = "udp"
    timers: TimerValues = field(default_factory=TimerValues)

    def __post_init__(self) -> None:
        self.uac = TransactionLayer(self.timers)
        self.uas = TransactionLayer(self.timers)
        self.uac_flow, self.uas_flow = flows(self.transport)

    def to_uas(self, *, now: float) -> list[Request | Response]:
        """Deliver everything the UAC queued; return what was delivered, parsed."""
        return [feed(self.uas, data, self.uas_flow, now) for data, _ in self.uac.outgoing()]

    def to_uac(self, *, now: float) -> list[Request | Response]:
        return [feed(self.uac, data, self.uac_flow, now) for data, _ in self.uas.outgoing()]

    def invite(self, *, now: float = 0.0, **kwargs: object) -> tuple[ClientTransaction, ServerTransaction]:
        """Send an INVITE across and return both transactions."""
        tx = self.uac.send_request(make_request("INVITE", **kwargs), self.uac_flow, now=now)  # type: ignore[arg-type]
        self.to_uas(now=now)
        (received,) = drain(self.uas)
        assert isinstance(received, RequestReceived)
        return tx, received.tx


def endpoint_pair(transport: str = "udp") -> Pair:
    return Pair(transport)


def run_timers(layer: TransactionLayer, until: float) -> list[float]:
    """Fire every deadline up to `until` in order; return the times fired."""
    fired: list[float] = []
    while (at := layer.next_deadline()) is not None and at <= until:
        layer.handle_timer(now=at)
        fired.append(at)
    return fired


def sent_times(layer: TransactionLayer, until: float) -> list[float]:
    """Fire deadlines up to `until`, returning the times at which anything was sent (and dropping it)."""
    times: list[float] = []
    while (at := layer.next_deadline()) is not None and at <= until:
        layer.handle_timer(now=at)
        if layer.outgoing():
            times.append(at)
    return times


# ---------------------------------------------------------------------------------------------------------
# timer values
# ---------------------------------------------------------------------------------------------------------


def test_timer_values_follow_table_4_and_rfc_6026() -> None:
    t = TimerValues()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)
    assert t.timer_b == t.timer_f == t.timer_h == t.timer_l == t.timer_m == 32.0
    assert t.timer_a == t.timer_e == t.timer_g == 0.5
    assert (t.timer_d(False), t.timer_d(True)) == (32.0, 0.0)
    assert (t.timer_i(False), t.timer_i(True)) == (5.0, 0.0)
    assert (t.timer_j(False), t.timer_j(True)) == (32.0, 0.0)
    assert (t.timer_k(False), t.timer_k(True)) == (5.0, 0.0)


def test_timer_backoffs() -> None:
    t = TimerValues()
    assert [t.backoff_a(i) for i in (0.5, 1.0, 16.0)] == [1.0, 2.0, 32.0]
    assert [t.backoff_e(i, proceeding=False) for i in (0.5, 2.0, 4.0)] == [1.0, 4.0, 4.0]
    assert t.backoff_e(0.5, proceeding=True) == 4.0
    assert [t.backoff_g(i) for i in (0.5, 2.0, 4.0)] == [1.0, 4.0, 4.0]


def test_timer_d_outlives_timer_g_when_t1_is_raised() -> None:
    assert TimerValues(t1=1.0).timer_d(False) == 64.0


@pytest.mark.parametrize(("t1", "t2", "t4"), [(0.0, 4.0, 5.0), (1.0, 0.5, 5.0), (0.5, 4.0, -1.0)])
def test_timer_values_refuse_nonsense(t1: float, t2: float, t4: float) -> None:
    with pytest.raises(ValueError):
        TimerValues(t1, t2, t4)


# ---------------------------------------------------------------------------------------------------------
# the tables
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "states"),
    [(ICT_TRANSITIONS, Ict), (NICT_TRANSITIONS, Nict), (IST_TRANSITIONS, Ist), (NIST_TRANSITIONS, Nist)],
)
def test_tables_stay_within_their_machine(
    table: dict[tuple[Enum, TxInput], tuple[Enum, object]], states: type[Enum]
) -> None:
    for (state, _), (target, _) in table.items():
        assert isinstance(state, states) and isinstance(target, states)
        assert state.name != "TERMINATED"  # nothing leaves Terminated
    # every live state can lose its transport
    for state in states:
        if state.name != "TERMINATED":
            assert (state, TxInput.TRANSPORT_ERROR) in table


# ---------------------------------------------------------------------------------------------------------
# INVITE client transaction
# ---------------------------------------------------------------------------------------------------------


def test_invite_client_transaction_gives_up_at_timer_b() -> None:
    pair = endpoint_pair()
    tx = pair.uac.send_request(make_request("INVITE"), pair.uac_flow, now=0.0)
    ((first, flow),) = pair.uac.outgoing()  # the first INVITE is lost
    assert flow == pair.uac_flow
    retransmissions: list[tuple[float, bytes]] = []
    while (t := pair.uac.next_deadline()) is not None and t < 32.0:
        pair.uac.handle_timer(now=t)  # Timer A
        retransmissions.extend((t, data) for data, _ in pair.uac.outgoing())  # every retransmission lost
    assert [t for t, _ in retransmissions] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(data is first for _, data in retransmissions)  # serialised once
    assert drain(pair.uac) == []
    assert pair.uac.next_deadline() == 32.0
    pair.uac.handle_timer(now=32.0)  # Timer B = 64 * T1
    assert drain(pair.uac) == [TransactionTimedOut(tx), TransactionTerminated(tx)]
    assert pair.uac.outgoing() == []
    assert tx.state is Ict.TERMINATED and len(pair.uac) == 0
    assert pair.uac.next_deadline() is None


def test_invite_client_on_a_reliable_flow_does_not_retransmit() -> None:
    pair = endpoint_pair("tcp")
    tx = pair.uac.send_request(make_request("INVITE", transport="TCP"), pair.uac_flow, now=0.0)
    assert len(pair.uac.outgoing()) == 1
    assert tx.pending_timers() == {"B": 32.0}
    assert sent_times(pair.uac, 31.9) == []
    pair.uac.handle_timer(now=32.0)
    assert isinstance(pair.uac.next_event(), TransactionTimedOut)


def test_provisional_stops_timer_a_and_timer_b() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(100), now=0.1)
    pair.to_uac(now=0.1)
    assert tx.state is Ict.PROCEEDING
    assert [type(e) for e in drain(pair.uac)] == [ResponseReceived]
    assert tx.pending_timers() == {}
    assert pair.uac.next_deadline() is None  # §17.1.1.2: Proceeding waits for the TU (or a CANCEL)


def test_each_distinct_provisional_is_passed_up_once() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    ringing = stx.request.reply(180, to_tag="b1")
    for status, response in ((100, stx.request.reply(100)), (180, ringing), (180, ringing)):
        assert response.status == status
        pair.uas.respond(stx, response, now=0.1)
    early = stx.request.reply(183, to_tag="b1")
    pair.uas.respond(stx, early, now=0.2)
    forked = stx.request.reply(180, to_tag="b2")  # another early dialog: a different To tag
    pair.uas.respond(stx, forked, now=0.3)
    pair.to_uac(now=0.3)
    events = drain(pair.uac)
    passed = [(e.response.status, e.response.to.tag) for e in events if isinstance(e, ResponseReceived)]
    assert passed == [(100, None), (180, "b1"), (183, "b1"), (180, "b2")]
    assert tx.last_response is not None and tx.last_response.to.tag == "b2"


def test_non_2xx_final_is_acked_by_the_transaction() -> None:
    pair = endpoint_pair()
    routes = ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
    tx, stx = pair.invite(routes=routes, seq=314)
    busy = stx.request.reply(486, to_tag="xyz")
    pair.uas.respond(stx, busy, now=0.2)
    pair.to_uac(now=0.2)
    assert [type(e) for e in drain(pair.uac)] == [ResponseReceived]
    assert tx.state is Ict.COMPLETED and tx.last_response is not None and tx.last_response.status == 486
    ((ack_bytes, flow),) = pair.uac.outgoing()
    assert flow == pair.uac_flow
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request) and ack.method == "ACK"
    invite = tx.request
    assert str(ack.uri) == str(invite.uri)
    assert len(ack.vias) == 1 and ack.via.branch == invite.via.branch and str(ack.via) == str(invite.via)
    assert ack.to.tag == "xyz"
    assert ack.from_ == invite.from_ and ack.call_id == invite.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (314, "ACK")
    assert ack.headers.get_all("route") == list(routes)
    assert ack.body == b"" and ack.content_length == 0


def test_retransmitted_non_2xx_is_absorbed_and_the_ack_re_sent() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(486, to_tag="xyz"), now=0.2)
    ((busy, _),) = pair.uas.outgoing()
    feed(pair.uac, busy, pair.uac_flow, 0.2)
    ((ack, _),) = pair.uac.outgoing()
    drain(pair.uac)
    for now in (0.7, 1.7):  # the UAS retransmits (our ACK was lost)
        feed(pair.uac, busy, pair.uac_flow, now)
        ((again, _),) = pair.uac.outgoing()
        assert again is ack
    assert drain(pair.uac) == []  # not passed up again
    assert tx.pending_timers() == {"D": 32.2}
    pair.uac.handle_timer(now=32.2)  # Timer D
    assert drain(pair.uac) == [TransactionTerminated(tx)]
    assert len(pair.uac) == 0


def test_timer_d_is_zero_on_a_reliable_flow() -> None:
    pair = endpoint_pair("tcp")
    tx, stx = pair.invite(transport="TCP")
    pair.uas.respond(stx, stx.request.reply(603, to_tag="d"), now=0.2)
    pair.to_uac(now=0.2)
    assert [type(e) for e in drain(pair.uac)] == [ResponseReceived, TransactionTerminated]
    assert tx.state is Ict.TERMINATED and len(pair.uac.outgoing()) == 1  # the ACK still went out


def test_every_2xx_is_passed_up_in_accepted() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    ok = stx.request.reply(200, to_tag="ok")
    pair.uas.respond(stx, ok, now=1.0)
    ((ok_bytes, _),) = pair.uas.outgoing()
    for now in (1.0, 1.5, 2.5):  # the UAS core retransmits its 2xx (§13.3.1.4)
        feed(pair.uac, ok_bytes, pair.uac_flow, now)
    events = drain(pair.uac)
    assert [type(e) for e in events] == [ResponseReceived] * 3
    assert tx.state is Ict.ACCEPTED
    assert pair.uac.outgoing() == []  # the ACK for a 2xx is the TU's
    assert tx.pending_timers() == {"M": 33.0}
    pair.uac.handle_timer(now=33.0)  # Timer M
    assert drain(pair.uac) == [TransactionTerminated(tx)]
    feed(pair.uac, ok_bytes, pair.uac_flow, 34.0)  # after Timer M the dialog layer must still ACK it
    (stray,) = drain(pair.uac)
    assert isinstance(stray, StrayResponse) and stray.response.status == 200 and stray.flow == pair.uac_flow


def test_a_2xx_after_a_non_2xx_goes_to_the_dialog_layer() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    feed(pair.uac, bytes(stx.request.reply(487, to_tag="a")), pair.uac_flow, 0.1)
    drain(pair.uac)
    pair.uac.outgoing()
    feed(pair.uac, bytes(stx.request.reply(200, to_tag="b")), pair.uac_flow, 0.2)
    (event,) = drain(pair.uac)
    assert isinstance(event, StrayResponse) and tx.state is Ict.COMPLETED
    assert pair.uac.outgoing() == []


def test_out_of_place_responses_are_ignored() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    feed(pair.uac, bytes(stx.request.reply(200, to_tag="a")), pair.uac_flow, 0.1)
    drain(pair.uac)
    feed(pair.uac, bytes(stx.request.reply(180, to_tag="a")), pair.uac_flow, 0.2)
    feed(pair.uac, bytes(stx.request.reply(486, to_tag="a")), pair.uac_flow, 0.3)
    assert drain(pair.uac) == [] and pair.uac.outgoing() == []
    assert tx.state is Ict.ACCEPTED and pair.uac.dropped["out_of_state"] == 2


def test_responses_match_on_branch_and_cseq_method() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    wrong_branch = stx.request.reply(486, to_tag="a")
    wrong_branch.headers.set("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={new_branch()}")
    wrong_method = stx.request.reply(486, to_tag="a")
    wrong_method.headers.set("CSeq", "1 BYE")
    for response in (wrong_branch, wrong_method):
        feed(pair.uac, bytes(response), pair.uac_flow, 0.1)
    assert [type(e) for e in drain(pair.uac)] == [StrayResponse, StrayResponse]
    assert tx.state is Ict.CALLING


# ---------------------------------------------------------------------------------------------------------
# non-INVITE client transaction
# ---------------------------------------------------------------------------------------------------------


def test_timer_e_doubles_up_to_t2_until_timer_f() -> None:
    pair = endpoint_pair()
    tx = pair.uac.send_request(make_request("OPTIONS"), pair.uac_flow, now=0.0)
    pair.uac.outgoing()
    assert sent_times(pair.uac, 31.9) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    pair.uac.handle_timer(now=32.0)  # Timer F
    assert drain(pair.uac) == [TransactionTimedOut(tx), TransactionTerminated(tx)]


def test_timer_e_fires_every_t2_after_a_provisional() -> None:
    pair = endpoint_pair()
    tx = pair.uac.send_request(make_request("REGISTER"), pair.uac_flow, now=0.0)
    pair.to_uas(now=0.0)
    (received,) = drain(pair.uas)
    assert isinstance(received, RequestReceived)
    assert sent_times(pair.uac, 0.5) == [0.5]  # Timer E in Trying: next interval 1 s
    pair.uas.respond(received.tx, received.tx.request.reply(100), now=0.6)
    pair.to_uac(now=0.6)
    assert tx.state is Nict.PROCEEDING
    assert sent_times(pair.uac, 20.0) == [1.5, 5.5, 9.5, 13.5, 17.5]  # then every T2 (§17.1.2.2)


def test_non_invite_final_then_timer_k() -> None:
    pair = endpoint_pair()
    tx = pair.uac.send_request(make_request("OPTIONS"), pair.uac_flow, now=0.0)
    pair.to_uas(now=0.0)
    (received,) = drain(pair.uas)
    assert isinstance(received, RequestReceived)
    pair.uas.respond(received.tx, received.tx.request.reply(200), now=0.1)
    ((ok, _),) = pair.uas.outgoing()
    feed(pair.uac, ok, pair.uac_flow, 0.1)
    feed(pair.uac, ok, pair.uac_flow, 0.6)  # retransmission: absorbed
    events = drain(pair.uac)
    assert [type(e) for e in events] == [ResponseReceived] and tx.state is Nict.COMPLETED
    assert tx.pending_timers() == {"K": 5.1}  # Timer E and F are gone
    assert sent_times(pair.uac, 5.0) == []
    pair.uac.handle_timer(now=5.1)
    assert drain(pair.uac) == [TransactionTerminated(tx)]


def test_timer_k_is_zero_on_a_reliable_flow() -> None:
    pair = endpoint_pair("tls")
    tx = pair.uac.send_request(make_request("OPTIONS", transport="TLS"), pair.uac_flow, now=0.0)
    pair.to_uas(now=0.0)
    (received,) = drain(pair.uas)
    assert isinstance(received, RequestReceived)
    pair.uas.respond(received.tx, received.tx.request.reply(404), now=0.1)
    pair.to_uac(now=0.1)
    assert [type(e) for e in drain(pair.uac)] == [ResponseReceived, TransactionTerminated]
    assert tx.state is Nict.TERMINATED and pair.uac.next_deadline() is None


# ---------------------------------------------------------------------------------------------------------
# non-INVITE server transaction
# ---------------------------------------------------------------------------------------------------------


def test_retransmission_in_trying_is_absorbed_silently() -> None:
    pair = endpoint_pair()
    pair.uac.send_request(make_request("REGISTER"), pair.uac_flow, now=0.0)
    ((register, _),) = pair.uac.outgoing()
    feed(pair.uas, register, pair.uas_flow, 0.0)
    (received,) = drain(pair.uas)
    feed(pair.uas, register, pair.uas_flow, 0.5)
    feed(pair.uas, register, pair.uas_flow, 1.5)
    assert drain(pair.uas) == [] and pair.uas.outgoing() == []
    assert isinstance(received, RequestReceived) and received.tx.state is Nist.TRYING
    assert len(pair.uas) == 1


def test_retransmitted_register_gets_the_identical_final_bytes() -> None:
    pair = endpoint_pair()
    pair.uac.send_request(make_request("REGISTER"), pair.uac_flow, now=0.0)
    ((register, _),) = pair.uac.outgoing()
    feed(pair.uas, register, pair.uas_flow, 0.0)
    (received,) = drain(pair.uas)
    assert isinstance(received, RequestReceived)
    stx = received.tx
    stx.user_data = "binding committed"
    ok = stx.request.reply(200, to_tag="reg", headers=[("Contact", "<sip:alice@192.0.2.10>;expires=3600")])
    pair.uas.respond(stx, ok, now=0.3)
    ((final, flow),) = pair.uas.outgoing()
    assert flow == pair.uas_flow and stx.state is Nist.COMPLETED and final == bytes(ok)
    assert stx.last_response is None  # released for Timer J: only the bytes are kept
    for now in (0.5, 1.5, 3.5):  # the phone did not hear our 200
        feed(pair.uas, register, pair.uas_flow, now)
        ((again, again_flow),) = pair.uas.outgoing()
        assert again is final and again_flow == pair.uas_flow
    assert drain(pair.uas) == []  # no second RequestReceived: no second authentication or database write
    assert stx.pending_timers() == {"J": 32.3}
    pair.uas.handle_timer(now=32.3)  # Timer J
    assert drain(pair.uas) == [TransactionTerminated(stx)]
    assert len(pair.uas) == 0


def test_retransmission_in_proceeding_re_sends_the_provisional() -> None:
    pair = endpoint_pair()
    pair.uac.send_request(make_request("SUBSCRIBE"), pair.uac_flow, now=0.0)
    ((request, _),) = pair.uac.outgoing()
    feed(pair.uas, request, pair.uas_flow, 0.0)
    (received,) = drain(pair.uas)
    assert isinstance(received, RequestReceived)
    pair.uas.respond(received.tx, received.tx.request.reply(100), now=0.1)
    ((trying, _),) = pair.uas.outgoing()
    feed(pair.uas, request, pair.uas_flow, 0.5)
    ((again, _),) = pair.uas.outgoing()
    assert again is trying and received.tx.state is Nist.PROCEEDING


def test_timer_j_is_zero_on_a_reliable_flow() -> None:
    pair = endpoint_pair("tcp")
    pair.uac.send_request(make_request("REGISTER", transport="TCP"), pair.uac_flow, now=0.0)
    pair.to_uas(now=0.0)
    (received,) = drain(pair.uas)
    assert isinstance(received, RequestReceived)
    pair.uas.respond(received.tx, received.tx.request.reply(200), now=0.1)
    assert drain(pair.uas) == [TransactionTerminated(received.tx)] and len(pair.uas) == 0


def test_responses_go_back_on_the_request_flow_whatever_the_via_says() -> None:
    layer = TransactionLayer()
    nat = Flow("udp", ("203.0.113.7", 40312), UAS_ADDR)  # the phone's public address after NAT
    layer.receive_request(make_request("OPTIONS", sent_by="10.0.0.5:5060"), nat, now=0.0)
    (received,) = drain(layer)
    assert isinstance(received, RequestReceived) and received.tx.flow == nat
    layer.respond(received.tx, received.tx.request.reply(200), now=0.0)
    ((_, flow),) = layer.outgoing()
    assert flow == nat


def test_our_misuse_of_a_server_transaction_raises() -> None:
    layer = TransactionLayer()
    layer.receive_request(make_request("OPTIONS"), flows("udp")[1], now=0.0)
    (received,) = drain(layer)
    assert isinstance(received, RequestReceived)
    stx = received.tx
    layer.respond(stx, stx.request.reply(200), now=0.0)
    with pytest.raises(LocalProtocolError, match="SEND_FAILURE in COMPLETED"):
        layer.respond(stx, stx.request.reply(500), now=0.1)
    with pytest.raises(LocalProtocolError, match="SEND_PROVISIONAL in COMPLETED"):
        layer.respond(stx, stx.request.reply(180), now=0.1)
    with pytest.raises(LocalProtocolError, match="not a response code"):
        layer.respond(stx, Response(99), now=0.1)
    assert stx.state is Nist.COMPLETED and len(layer.outgoing()) == 1


# ---------------------------------------------------------------------------------------------------------
# INVITE server transaction
# ---------------------------------------------------------------------------------------------------------


def test_invite_retransmissions_re_send_the_last_provisional() -> None:
    pair = endpoint_pair()
    _, stx = pair.invite()
    invite = bytes(stx.request)
    feed(pair.uas, invite, pair.uas_flow, 0.5)  # nothing sent yet: nothing to re-send
    assert pair.uas.outgoing() == [] and drain(pair.uas) == []
    pair.uas.respond(stx, stx.request.reply(100), now=0.6)
    pair.uas.respond(stx, stx.request.reply(180, to_tag="t"), now=0.7)
    (_, (ringing, _)) = pair.uas.outgoing()
    feed(pair.uas, invite, pair.uas_flow, 1.5)
    ((again, _),) = pair.uas.outgoing()
    assert again is ringing and drain(pair.uas) == [] and stx.state is Ist.PROCEEDING


def test_timer_g_retransmits_the_non_2xx_until_timer_h() -> None:
    pair = endpoint_pair()
    _, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(486, to_tag="t"), now=0.0)
    ((busy, _),) = pair.uas.outgoing()
    assert stx.state is Ist.COMPLETED and stx.pending_timers() == {"G": 0.5, "H": 32.0}
    resent: list[float] = []
    while (t := pair.uas.next_deadline()) is not None and t < 32.0:
        pair.uas.handle_timer(now=t)
        for data, _ in pair.uas.outgoing():
            assert data is busy
            resent.append(t)
    assert resent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    pair.uas.handle_timer(now=32.0)  # Timer H: the ACK never came
    assert drain(pair.uas) == [TransactionTimedOut(stx), TransactionTerminated(stx)]
    assert len(pair.uas) == 0


def test_ack_for_a_non_2xx_is_absorbed_and_timer_i_ends_confirmed() -> None:
    pair = endpoint_pair()
    _, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(486, to_tag="t"), now=0.0)
    (busy,) = pair.to_uac(now=0.0)  # the UAC's ICT answers with an ACK, which is late
    assert sent_times(pair.uas, 1.0) == [0.5]  # so Timer G retransmits once
    pair.to_uas(now=1.0)
    assert stx.state is Ist.CONFIRMED and drain(pair.uas) == []
    assert stx.pending_timers() == {"I": 6.0}  # Timer G and H stopped
    feed(pair.uac, bytes(busy), pair.uac_flow, 1.1)
    pair.to_uas(now=1.1)  # a second ACK: absorbed too
    assert drain(pair.uas) == [] and sent_times(pair.uas, 5.9) == []
    pair.uas.handle_timer(now=6.0)
    assert drain(pair.uas) == [TransactionTerminated(stx)]


def test_timer_i_is_zero_and_g_absent_on_a_reliable_flow() -> None:
    pair = endpoint_pair("tcp")
    _, stx = pair.invite(transport="TCP")
    pair.uas.respond(stx, stx.request.reply(480, to_tag="t"), now=0.0)
    assert stx.pending_timers() == {"H": 32.0}
    pair.to_uac(now=0.0)
    pair.to_uas(now=0.0)  # ACK
    assert drain(pair.uas) == [TransactionTerminated(stx)]


def test_2xx_moves_to_accepted_and_the_ack_goes_up() -> None:
    pair = endpoint_pair()
    _, stx = pair.invite()
    ok = stx.request.reply(200, to_tag="t")
    pair.uas.respond(stx, ok, now=0.0)
    ((first, _),) = pair.uas.outgoing()
    assert stx.state is Ist.ACCEPTED and stx.pending_timers() == {"L": 32.0}
    feed(pair.uas, bytes(stx.request), pair.uas_flow, 0.5)  # INVITE retransmission: absorbed, not answered
    assert pair.uas.outgoing() == [] and drain(pair.uas) == []
    pair.uas.respond(stx, ok, now=0.5)  # the TU retransmits its 2xx through the transaction
    ((again, _),) = pair.uas.outgoing()
    assert again is first
    ack = make_request("ACK", to_tag="t")  # the 2xx ACK is its own transaction: a new branch
    pair.uas.receive_request(ack, pair.uas_flow, now=0.6)
    assert drain(pair.uas) == [AckReceived(ack, pair.uas_flow)]
    same_branch_ack = make_request("ACK", branch=stx.branch, to_tag="t")  # some phones reuse the branch
    pair.uas.receive_request(same_branch_ack, pair.uas_flow, now=0.7)
    assert drain(pair.uas) == [AckReceived(same_branch_ack, pair.uas_flow)]
    with pytest.raises(LocalProtocolError):
        pair.uas.respond(stx, stx.request.reply(500), now=0.8)
    pair.uas.handle_timer(now=32.0)  # Timer L
    assert drain(pair.uas) == [TransactionTerminated(stx)]


def test_stray_ack_and_ack_in_proceeding() -> None:
    pair = endpoint_pair()
    _, stx = pair.invite()
    early_ack = make_request("ACK", branch=stx.branch)
    pair.uas.receive_request(early_ack, pair.uas_flow, now=0.1)  # ACK before any final: ignored
    assert drain(pair.uas) == [] and stx.state is Ist.PROCEEDING
    assert pair.uas.dropped["out_of_state"] == 1
    orphan = make_request("ACK", to_tag="x")
    pair.uas.receive_request(orphan, pair.uas_flow, now=0.2)
    assert drain(pair.uas) == [AckReceived(orphan, pair.uas_flow)]


# ---------------------------------------------------------------------------------------------------------
# server matching (§17.2.3)
# ---------------------------------------------------------------------------------------------------------


def test_same_branch_from_another_sent_by_or_method_is_another_transaction() -> None:
    layer = TransactionLayer()
    inbound = flows("udp")[1]
    branch = new_branch()
    layer.receive_request(make_request("OPTIONS", branch=branch), inbound, now=0.0)
    layer.receive_request(make_request("OPTIONS", branch=branch, sent_by="192.0.2.11:5060"), inbound, now=0.0)
    layer.receive_request(make_request("INFO", branch=branch), inbound, now=0.0)
    layer.receive_request(make_request("OPTIONS", branch=branch), inbound, now=0.1)  # a retransmission
    assert [type(e) for e in drain(layer)] == [RequestReceived] * 3 and len(layer) == 3


def test_pre_3261_requests_match_on_the_classic_fields() -> None:
    layer = TransactionLayer()
    inbound = flows("udp")[1]
    layer.receive_request(make_request("INVITE", branch=""), inbound, now=0.0)
    (received,) = drain(layer)
    assert isinstance(received, RequestReceived)
    stx = received.tx
    assert stx.branch is None
    layer.respond(stx, stx.request.reply(180, to_tag="old"), now=0.1)
    layer.outgoing()
    layer.receive_request(make_request("INVITE", branch=""), inbound, now=0.5)  # retransmission
    assert drain(layer) == [] and len(layer.outgoing()) == 1
    # a different CSeq, Call-ID or Request-URI is another request
    layer.receive_request(make_request("INVITE", branch="", seq=2), inbound, now=0.6)
    layer.receive_request(make_request("INVITE", branch="", call_id="other@x"), inbound, now=0.6)
    carol = make_request("INVITE", branch="", uri="sip:carol@biloxi.example.com")
    layer.receive_request(carol, inbound, now=0.6)
    assert [type(e) for e in drain(layer)] == [RequestReceived] * 3
    # CANCEL finds its INVITE, ACK matches by the To tag of our response
    assert layer.find_invite(make_request("CANCEL", branch="")) is stx
    layer.respond(stx, stx.request.reply(486, to_tag="old"), now=0.7)
    layer.outgoing()
    layer.receive_request(make_request("ACK", branch="", to_tag="other"), inbound, now=0.8)
    assert [type(e) for e in drain(layer)] == [AckReceived] and stx.state is Ist.COMPLETED
    layer.receive_request(make_request("ACK", branch="", to_tag="old"), inbound, now=0.8)
    assert drain(layer) == [] and stx.state is Ist.CONFIRMED


def test_pre_3261_branch_without_the_cookie_is_matched_the_old_way() -> None:
    layer = TransactionLayer()
    inbound = flows("udp")[1]
    layer.receive_request(make_request("REGISTER", branch="1234abcd"), inbound, now=0.0)
    layer.receive_request(make_request("REGISTER", branch="1234abcd"), inbound, now=0.5)
    layer.receive_request(make_request("REGISTER", branch="1234abcd", seq=2), inbound, now=0.6)
    assert [type(e) for e in drain(layer)] == [RequestReceived] * 2


def test_pre_3261_ack_for_a_re_invite_matches() -> None:
    layer = TransactionLayer()
    inbound = flows("udp")[1]
    layer.receive_request(make_request("INVITE", branch="", to_tag="dlg", seq=5), inbound, now=0.0)
    (received,) = drain(layer)
    assert isinstance(received, RequestReceived)
    layer.respond(received.tx, received.tx.request.reply(488), now=0.1)
    layer.receive_request(make_request("ACK", branch="", to_tag="dlg", seq=5), inbound, now=0.2)
    assert drain(layer) == [] and received.tx.state is Ist.CONFIRMED


# ---------------------------------------------------------------------------------------------------------
# CANCEL (§9)
# ---------------------------------------------------------------------------------------------------------


def test_cancel_is_held_until_a_provisional_then_sent() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite(routes=("<sip:p1.example.com;lr>",), seq=7)
    cancel = pair.uac.cancel(tx, now=0.1)
    assert cancel is not None and cancel.held and cancel.state is Nict.TRYING
    assert pair.uac.cancel(tx, now=0.2) is cancel and tx.cancel_transaction is cancel
    assert pair.uac.outgoing() == [] and cancel.pending_timers() == {}
    assert len(pair.uac) == 2
    pair.uas.respond(stx, stx.request.reply(180, to_tag="r"), now=0.3)
    pair.to_uac(now=0.3)
    ((data, flow),) = pair.uac.outgoing()
    assert not cancel.held and flow == pair.uac_flow
    sent = parse_message(data)
    assert isinstance(sent, Request) and sent.method == "CANCEL"
    invite = tx.request
    assert str(sent.uri) == str(invite.uri) and sent.call_id == invite.call_id
    assert sent.from_ == invite.from_ and sent.to == invite.to and sent.to.tag is None
    assert (sent.cseq.seq, sent.cseq.method) == (7, "CANCEL")
    assert len(sent.vias) == 1 and str(sent.via) == str(invite.via)
    assert sent.headers.get_all("route") == ["<sip:p1.example.com;lr>"]
    assert cancel.pending_timers() == {"E": 0.8, "F": 32.3}
    assert tx.pending_timers() == {"CANCEL_GUARD": 32.3}


def test_held_cancel_is_dropped_when_a_final_arrives_first() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    cancel = pair.uac.cancel(tx, now=0.1)
    assert cancel is not None
    pair.uas.respond(stx, stx.request.reply(200, to_tag="t"), now=0.2)
    pair.to_uac(now=0.2)
    events = drain(pair.uac)
    assert [type(e) for e in events] == [ResponseReceived, TransactionTerminated]
    assert events[1] == TransactionTerminated(cancel) and cancel.state is Nict.TERMINATED
    assert pair.uac.outgoing() == [] and len(pair.uac) == 1


def test_held_cancel_goes_with_timer_b() -> None:
    pair = endpoint_pair()
    tx = pair.uac.send_request(make_request("INVITE"), pair.uac_flow, now=0.0)
    cancel = pair.uac.cancel(tx, now=1.0)
    run_timers(pair.uac, 32.0)
    events = drain(pair.uac)
    assert TransactionTerminated(cancel) in events and TransactionTimedOut(tx) in events  # type: ignore[arg-type]
    assert len(pair.uac) == 0


def test_cancel_after_a_final_gives_none() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(486, to_tag="t"), now=0.1)
    pair.to_uac(now=0.1)
    assert pair.uac.cancel(tx, now=0.2) is None
    other, stx2 = pair.invite(now=1.0)
    pair.uas.respond(stx2, stx2.request.reply(200, to_tag="t"), now=1.1)
    pair.to_uac(now=1.1)
    assert pair.uac.cancel(other, now=1.2) is None


def test_cancel_of_a_non_invite_is_our_mistake() -> None:
    layer = TransactionLayer()
    tx = layer.send_request(make_request("OPTIONS"), flows("udp")[0], now=0.0)
    with pytest.raises(LocalProtocolError, match="only an INVITE"):
        layer.cancel(tx, now=0.1)


def test_cancel_round_trip_with_find_invite() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(180, to_tag="t"), now=0.1)
    pair.to_uac(now=0.1)
    drain(pair.uac)
    cancel = pair.uac.cancel(tx, now=0.2)
    assert cancel is not None
    (request,) = pair.to_uas(now=0.2)
    (received,) = drain(pair.uas)
    assert isinstance(received, RequestReceived) and received.tx.method == "CANCEL"
    ctx = received.tx
    assert pair.uas.find_invite(ctx.request) is stx
    feed(pair.uas, bytes(request), pair.uas_flow, 0.7)  # CANCEL retransmission: its own NIST absorbs it
    assert drain(pair.uas) == []
    pair.uas.respond(ctx, ctx.request.reply(200, to_tag="t"), now=0.3)
    pair.uas.respond(stx, stx.request.reply(487, to_tag="t"), now=0.3)
    pair.to_uac(now=0.3)
    events = drain(pair.uac)
    statuses = sorted((e.tx.method, e.response.status) for e in events if isinstance(e, ResponseReceived))
    assert statuses == [("CANCEL", 200), ("INVITE", 487)]
    assert tx.state is Ict.COMPLETED and cancel.state is Nict.COMPLETED
    assert tx.pending_timers() == {"D": 32.3}  # the §9.1 guard is gone with the final response
    assert pair.uas.find_invite(make_request("CANCEL")) is None  # another branch: 481 for the TU


def test_cancel_guard_ends_an_invite_that_never_answers_the_cancel() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(180, to_tag="t"), now=1.0)
    pair.to_uac(now=1.0)
    cancel = pair.uac.cancel(tx, now=10.0)
    assert cancel is not None
    pair.uac.outgoing()
    run_timers(pair.uac, 41.9)
    assert tx.state is Ict.PROCEEDING
    pair.uac.handle_timer(now=42.0)  # 64*T1 after the CANCEL went out
    events = drain(pair.uac)
    assert TransactionTimedOut(tx) in events and TransactionTerminated(tx) in events
    assert len(pair.uac) == 0


# ---------------------------------------------------------------------------------------------------------
# transport errors
# ---------------------------------------------------------------------------------------------------------


def test_transport_error_fails_the_transactions_on_that_flow_only() -> None:
    pair = endpoint_pair("tcp")
    other = Flow("tcp", ("198.51.100.2", 5060), UAC_ADDR, 8)
    tx = pair.uac.send_request(make_request("INVITE", transport="TCP"), pair.uac_flow, now=0.0)
    options = pair.uac.send_request(make_request("OPTIONS", transport="TCP"), pair.uac_flow, now=0.0)
    survivor = pair.uac.send_request(make_request("OPTIONS", transport="TCP"), other, now=0.0)
    pair.uac.transport_error(pair.uac_flow, now=1.0)
    events = drain(pair.uac)
    assert events == [
        TransportFailed(tx),
        TransactionTerminated(tx),
        TransportFailed(options),
        TransactionTerminated(options),
    ]
    assert isinstance(events[0], TransactionTimedOut)  # a TU that only knows timeouts still fails the request
    assert survivor.state is Nict.TRYING and len(pair.uac) == 1


def test_transport_error_on_the_server_side_and_a_late_response() -> None:
    pair = endpoint_pair("tcp")
    _, stx = pair.invite(transport="TCP")
    pair.uac.send_request(make_request("REGISTER", transport="TCP"), pair.uac_flow, now=0.0)
    pair.to_uas(now=0.0)
    (registered,) = drain(pair.uas)
    assert isinstance(registered, RequestReceived)
    pair.uas.respond(registered.tx, registered.tx.request.reply(200), now=0.1)  # Completed; J = 0 on TCP
    drain(pair.uas)
    pair.uas.transport_error(pair.uas_flow, now=0.2)
    assert drain(pair.uas) == [TransportFailed(stx), TransactionTerminated(stx)]
    pair.uas.outgoing()
    pair.uas.respond(stx, stx.request.reply(200, to_tag="t"), now=0.3)  # the TU heard too late
    assert pair.uas.outgoing() == [] and pair.uas.dropped["late_response"] == 1


def test_settled_transactions_end_quietly_on_transport_error() -> None:
    pair = endpoint_pair()
    tx, stx = pair.invite()
    pair.uas.respond(stx, stx.request.reply(200, to_tag="t"), now=0.1)
    pair.to_uac(now=0.1)
    drain(pair.uac)
    pair.uac.transport_error(pair.uac_flow, now=0.2)
    pair.uas.transport_error(pair.uas_flow, now=0.2)
    assert drain(pair.uac) == [TransactionTerminated(tx)]
    assert drain(pair.uas) == [TransactionTerminated(stx)]


# ---------------------------------------------------------------------------------------------------------
# our misuse of the client side
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["", "1234abcd"])
def test_send_request_needs_an_rfc_3261_branch(branch: str) -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError, match="z9hG4bK"):
        layer.send_request(make_request("INVITE", branch=branch), flows("udp")[0], now=0.0)
    assert len(layer) == 0 and layer.outgoing() == []


def test_send_request_refuses_ack_and_a_duplicate_branch() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError, match="ACK"):
        layer.send_request(make_request("ACK"), flows("udp")[0], now=0.0)
    request = make_request("OPTIONS")
    layer.send_request(request, flows("udp")[0], now=0.0)
    with pytest.raises(LocalProtocolError, match="already exists"):
        layer.send_request(request, flows("udp")[0], now=0.0)


def test_send_stateless_queues_bytes_without_a_transaction() -> None:
    layer = TransactionLayer()
    ack = make_request("ACK", to_tag="t")
    layer.send_stateless(ack, flows("udp")[0])
    assert layer.outgoing() == [(bytes(ack), flows("udp")[0])] and len(layer) == 0


# ---------------------------------------------------------------------------------------------------------
# the deadline heap
# ---------------------------------------------------------------------------------------------------------


def test_stale_heap_entries_are_skipped_and_compacted() -> None:
    pair = endpoint_pair()
    for i in range(2000):  # each NICT leaves Timer E and F entries behind when its answer comes
        now = i * 0.001
        pair.uac.send_request(make_request("OPTIONS"), pair.uac_flow, now=now)
        pair.to_uas(now=now)
        (received,) = drain(pair.uas)
        assert isinstance(received, RequestReceived)
        pair.uas.respond(received.tx, received.tx.request.reply(200), now=now)
        pair.to_uac(now=now)
    assert len(pair.uac._heap) < 3 * len(pair.uac)  # compacted: K timers plus few stale entries
    assert pair.uac.next_deadline() == pytest.approx(5.0)  # the first Timer K, not a stale Timer E at 0.5
    run_timers(pair.uac, 100.0)
    run_timers(pair.uas, 100.0)
    assert len(pair.uac) == len(pair.uas) == 0
    assert pair.uac.next_deadline() is None and pair.uas.next_deadline() is None


# ---------------------------------------------------------------------------------------------------------
# property: random interleavings never raise and never leak
# ---------------------------------------------------------------------------------------------------------

_METHODS = ("INVITE", "INVITE", "REGISTER", "OPTIONS")


@dataclass
class _Model:
    """A UAC and UAS on a lossy, duplicating, reordering wire, with TUs that behave."""

    pair: Pair
    now: float = 0.0
    in_flight: list[tuple[bool, bytes]] = field(default_factory=list)  # (towards the UAS?, data)
    server_txs: list[ServerTransaction] = field(default_factory=list)
    client_txs: list[ClientTransaction] = field(default_factory=list)
    terminated: list[object] = field(default_factory=list)

    def check_heap(self) -> None:
        """White box: every armed timer slot of a live transaction has its entry in the heap."""
        for layer in (self.pair.uac, self.pair.uas):
            live = [*layer._clients.values(), *layer._servers.values()]
            armed = {seq for tx in live for seq in (tx._rt_seq, tx._ex_seq) if seq >= 0}
            assert armed <= {seq for _, seq, _ in layer._heap}

    def collect(self) -> None:
        self.check_heap()
        pair = self.pair
        self.in_flight += [(True, data) for data, _ in pair.uac.outgoing()]
        self.in_flight += [(False, data) for data, _ in pair.uas.outgoing()]
        for layer in (pair.uac, pair.uas):
            for event in drain(layer):
                match event:
                    case RequestReceived(tx=tx):
                        self.server_txs.append(tx)
                    case ResponseReceived(tx=tx, response=response) if tx.method == "INVITE":
                        if 200 <= response.status < 300:  # the TU ACKs every 2xx
                            ack = make_request("ACK", to_tag=response.to.tag, call_id=tx.request.call_id)
                            pair.uac.send_stateless(ack, pair.uac_flow)
                    case TransactionTerminated(tx=tx):
                        assert tx not in self.terminated  # exactly once
                        self.terminated.append(tx)
                    case _:
                        pass

    def deliver(self, index: int, *, duplicate: bool = False, drop: bool = False) -> None:
        if not self.in_flight:
            return
        to_uas, data = self.in_flight[index % len(self.in_flight)]
        if not duplicate:
            self.in_flight.remove((to_uas, data))
        if drop:
            return
        pair = self.pair
        if to_uas:
            feed(pair.uas, data, pair.uas_flow, self.now)
        else:
            feed(pair.uac, data, pair.uac_flow, self.now)

    def respond(self, index: int, status: int) -> None:
        live = [tx for tx in self.server_txs if not tx.terminated]
        if not live:
            return
        stx = live[index % len(live)]
        state = stx.state
        if state in (Ist.PROCEEDING, Nist.TRYING, Nist.PROCEEDING):
            pass
        elif state is Ist.ACCEPTED:
            status = 200  # only a 2xx retransmission is allowed here
        else:
            return
        if stx.method == "CANCEL":
            status = 200
        self.pair.uas.respond(stx, stx.request.reply(status, to_tag="uas"), now=self.now)

    def cancel(self, index: int) -> None:
        invites = [tx for tx in self.client_txs if tx.is_invite and not tx.terminated]
        if invites:
            self.pair.uac.cancel(invites[index % len(invites)], now=self.now)

    def advance(self, step: float) -> None:
        self.now += step
        self.pair.uac.handle_timer(now=self.now)
        self.pair.uas.handle_timer(now=self.now)

    def settle(self) -> None:
        """Let the TUs finish their part and the clock run out; everything must then be gone."""
        pair = self.pair
        for _ in range(10_000):
            self.collect()
            while self.in_flight:
                self.deliver(0)
                self.collect()
            for stx in self.server_txs:
                if stx.state in (Ist.PROCEEDING, Nist.TRYING, Nist.PROCEEDING):
                    pair.uas.respond(stx, stx.request.reply(487 if stx.is_invite else 200), now=self.now)
            for tx in self.client_txs:
                if tx.state is Ict.PROCEEDING:
                    pair.uac.cancel(tx, now=self.now)
            self.collect()
            if self.in_flight:
                continue
            deadlines = [d for d in (pair.uac.next_deadline(), pair.uas.next_deadline()) if d is not None]
            if not deadlines:
                break
            self.now = max(self.now, min(deadlines))
            pair.uac.handle_timer(now=self.now)
            pair.uas.handle_timer(now=self.now)


_OPS = st.one_of(
    st.tuples(st.just("send"), st.integers(0, len(_METHODS) - 1), st.booleans()),
    st.tuples(st.just("deliver"), st.integers(0, 50), st.sampled_from(["once", "dup", "drop"])),
    st.tuples(st.just("respond"), st.integers(0, 50), st.sampled_from([100, 180, 200, 202, 404, 486, 503])),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 1.0, 4.0, 32.0]), st.just(0)),
    st.tuples(st.just("transport_error"), st.booleans(), st.just(0)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transport=st.sampled_from(["udp", "tcp"]), ops=st.lists(_OPS, max_size=60))
def test_random_interleavings_never_raise_and_never_leak(
    transport: str, ops: list[tuple[str, Any, Any]]
) -> None:
    model = _Model(Pair(transport))
    pair = model.pair
    pair.uac._compact_min = pair.uas._compact_min = 0  # rebuild the heap as often as possible
    t = transport.upper()
    for op, a, b in ops:
        if op == "send":
            request = make_request(_METHODS[a], transport=t, call_id=f"c{len(model.client_txs)}")
            model.client_txs.append(pair.uac.send_request(request, pair.uac_flow, now=model.now))
        elif op == "deliver":
            model.deliver(a, duplicate=b == "dup", drop=b == "drop" and transport == "udp")
        elif op == "respond":
            model.respond(a, b)
        elif op == "cancel":
            model.cancel(a)
        elif op == "advance":
            model.advance(a)
        elif op == "transport_error":
            if a:
                pair.uac.transport_error(pair.uac_flow, now=model.now)
            else:
                pair.uas.transport_error(pair.uas_flow, now=model.now)
        model.collect()
    model.settle()
    assert len(pair.uac) == 0 and len(pair.uas) == 0
    assert pair.uac.next_deadline() is None and pair.uas.next_deadline() is None
    every_tx = [*model.client_txs, *model.server_txs]
    assert all(tx.terminated for tx in every_tx)
    assert all(tx in model.terminated for tx in every_tx)
