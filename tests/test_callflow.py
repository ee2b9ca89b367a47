"""callflow.py on the B2BUA's fake wire with time as data: routing, SDP anchoring, hold, CDRs, relay events.

The switch is the real stack — Endpoint, B2bua, and `CallFlow` as its MediaHooks and the consumer of its
call events — with a fake `MediaFactory` that hands out real `RelaySession`s on made-up port numbers
(no sockets), and a fake location table. Phones are Endpoint + InviteLayer pairs the tests script (see
tests/sip/wire.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from softswitch.acd import AcdEngine, AgentConfig, AgentStatus, Announce, QueueConfig
from softswitch.callflow import CallFlow, CallLogged, CallRecordReady, Directory, Route, UserInfo
from softswitch.media.dtmf import event_payloads
from softswitch.media.player import Chain, LoopingPlayer, Sound
from softswitch.media.relay import DtmfEvent, Latched, Leg, RelayEvent, RelaySession
from softswitch.media.relay import Leg as RelayLeg
from softswitch.media.rtp import RtpPacket
from softswitch.media.sdp import Direction, SessionDescription, direction
from softswitch.sip.b2bua import Call, CallAnswered, CallEnded, CallState
from softswitch.sip.invite import (
    Answered,
    Cancelled,
    Ended,
    Failed,
    ReinviteCompleted,
    ReinviteReceived,
)
from softswitch.sip.invite import Leg as SipLeg
from softswitch.sip.location import Binding

sys.path.insert(0, str(Path(__file__).with_name("sip")))  # the shared fake wire lives beside the SIP tests
from wire import DOMAIN, SWITCH, TRUNK_HOST, Net, Phone

WALL = 1_700_000_000.0
ALICE_HOST = "192.0.2.10"
BOB_HOST = "198.51.100.2"


def phone_sdp(name: str, host: str, port: int, formats: str = "0 8 101", *extra: str) -> bytes:
    """What a phone offers or answers: G.711 and telephone-event, unless `formats` says otherwise."""
    rtpmaps = {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000", "101": "telephone-event/8000"}
    lines = [
        "v=0",
        f"o={name} 10 1 IN IP4 {host}",
        "s=call",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        *(f"a=rtpmap:{pt} {rtpmaps[pt]}" for pt in formats.split()),
        *(["a=fmtp:101 0-16"] if "101" in formats.split() else []),
        "a=ptime:20",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


ALICE_OFFER = phone_sdp("alice", ALICE_HOST, 4000)
BOB_ANSWER = phone_sdp("bob", BOB_HOST, 5000, "8 101")


class FakeMedia:
    """callflow's MediaFactory: real RelaySessions on made-up ports (A at 30000 + 4n, B two above)."""

    def __init__(self) -> None:
        self.sessions: dict[str, RelaySession] = {}
        self.pokes: list[str] = []
        self.closed: list[str] = []
        self.ticks: dict[str, bool] = {}
        self._next = 30000

    def open(self, call_id: str) -> RelaySession:
        assert call_id not in self.sessions, "one session per call"
        session = RelaySession(a_port=self._next, b_port=self._next + 2, rtp_timeout=30.0)
        self._next += 4
        self.sessions[call_id] = session
        return session

    def poke(self, call_id: str) -> None:
        self.pokes.append(call_id)

    def ticking(self, call_id: str, on: bool) -> None:
        self.ticks[call_id] = on

    def close(self, call_id: str) -> None:
        self.closed.append(call_id)


@dataclass
class FakeLocations:
    table: dict[str, list[Binding]] = field(default_factory=dict)

    def bindings(self, aor: str, *, now: float) -> list[Binding]:
        return [b for b in self.table.get(aor, []) if b.expires_at > now]

    def peek_reachability(self, aor: str, key: str) -> None:
        return None  # qualify has not spoken: every binding is worth ringing


@dataclass
class Switch:
    net: Net
    flow: CallFlow
    media: FakeMedia
    locations: FakeLocations
    phones: dict[str, Phone]
    out: list[CallRecordReady | CallLogged] = field(default_factory=list)

    def drain(self) -> None:
        while (item := self.flow.next_event()) is not None:
            self.out.append(item)

    def records(self) -> list[CallRecordReady]:
        self.drain()
        return [x for x in self.out if isinstance(x, CallRecordReady)]

    def record(self) -> CallRecordReady:
        (one,) = self.records()
        return one

    def logged(self, what: str) -> list[dict[str, object]]:
        self.drain()
        return [x.fields for x in self.out if isinstance(x, CallLogged) and x.what == what]

    def register(self, user: str, phone: Phone) -> None:
        aor = self.flow.directory.aor(user)
        self.locations.table.setdefault(aor, []).append(phone.binding(aor))

    def session(self) -> RelaySession:
        (session,) = self.media.sessions.values()
        return session

    def call(self) -> Call:
        (call,) = [e.call for e in self.net.all_events if type(e).__name__ == "CallIncoming"]
        return call


def directory() -> Directory:
    return Directory(
        domain=DOMAIN,
        users={
            "alice": UserInfo("alice", "Alice Agent", "1001", "agent"),
            "bob": UserInfo("bob", "Bob Agent", "1002", "agent"),
            "sue": UserInfo("sue", "Sue Supervisor", "1009", "supervisor"),
        },
        numbers={
            "1001": Route("user", "alice"),
            "1002": Route("user", "bob"),
            "1009": Route("user", "sue"),
            "1099": Route("user", "ghost"),  # a number whose user is gone from the configuration
            "5000": Route("queue", "sales"),
        },
        trunk_dids={"carrier": {"+15550100": "1002"}, "other": {"+15550199": "1001"}},
    )


def switch(
    *,
    ring_timeout: float = 30.0,
    bob_phones: int = 1,
    queues: tuple[QueueConfig, ...] = (),
    sounds: Any = None,
) -> Switch:
    """The switch with Alice's and Bob's phones registered (Sue's is not), a customer and a trunk; with
    `queues`, an ACD serving them on numbers 6001, 6002, ... in order (Alice and Bob logged out)."""
    media = FakeMedia()
    locations = FakeLocations()
    book = directory()
    acd = None
    if queues:
        numbers = dict(book.numbers)
        numbers.update({f"600{i + 1}": Route("queue", q.name) for i, q in enumerate(queues)})
        book = replace(book, numbers=numbers, queue_names={q.name for q in queues})
        acd = AcdEngine(queues, [AgentConfig("alice"), AgentConfig("bob")])
        for agent in ("alice", "bob"):
            acd.agent_logout(agent, now=0.0)
    flow = CallFlow(
        directory=book,
        locations=locations,
        media=media,
        sdp_address=lambda call: SWITCH[0],
        ring_timeout=ring_timeout,
        wall_offset=WALL,
        acd=acd,
        sounds=sounds,
    )
    net = Net(
        hooks=flow,
        public_number=flow.directory.is_public,
        on_event=lambda event, now: flow.handle(event, now=now),
    )
    flow.attach(net.b2bua)
    phones = {
        "alice": net.phone("alice", ALICE_HOST),
        "customer": net.phone("customer", "192.0.2.50"),
        "carrier": net.phone("carrier", TRUNK_HOST),
    }
    for i in range(bob_phones):
        phones[f"bob{i or ''}"] = net.phone(f"bob{i or ''}", f"198.51.100.{2 + i}")
    sw = Switch(net, flow, media, locations, phones)
    sw.register("alice", phones["alice"])
    for i in range(bob_phones):
        sw.register("bob", phones[f"bob{i or ''}"])
    return sw


def dial(sw: Switch, who: str, number: str, *, offer: bytes | None = ALICE_OFFER) -> SipLeg:
    """`who` dials `number`: the agents with their credentials, the customer without, the trunk at our IP."""
    phone = sw.phones[who]
    user = who if who in ("alice", "bob") else None
    host = SWITCH[0] if who == "carrier" else DOMAIN
    leg = phone.call(number, sdp=offer, user=user, host=host)
    sw.net.pump()
    return leg


def answered_call(sw: Switch, *, at: float = 100.0) -> tuple[SipLeg, SipLeg]:
    """Alice calls Bob at `at`; Bob rings and answers one second later. Returns (Alice's, Bob's) legs."""
    net = sw.net
    alice, bob = sw.phones["alice"], sw.phones["bob"]
    net.now = at
    a_leg = dial(sw, "alice", "1002")
    b_leg = bob.incoming()
    bob.layer.provisional(b_leg, 180, now=net.now)
    net.run_until(at + 1.0)
    bob.layer.accept(b_leg, BOB_ANSWER, now=net.now)
    net.pump()
    assert [type(e) for e in alice.take()][-1] is Answered
    bob.take()
    return a_leg, b_leg


def parsed(body: bytes | None) -> SessionDescription:
    assert body is not None
    return SessionDescription.parse(body)


def audio(body: bytes | None) -> tuple[str, int, list[str], Direction]:
    """(connection host, port, formats, direction) of the first audio stream."""
    sdp = parsed(body)
    index = sdp.first_audio()
    assert index is not None and sdp.connection is not None
    m = sdp.media[index]
    return sdp.connection.host, m.port, list(m.formats), direction(m, sdp)


# ---------------------------------------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "number", "route"),
    [
        ("alice", "1002", "user:bob"),  # an agent dials an extension
        ("alice", "+15550100", "user:bob"),  # an agent dials a DID
        ("carrier", "+15550100", "user:bob"),  # a trunk dials its own DID
        ("customer", "+15550100", "user:bob"),  # anyone may dial a DID
    ],
)
def test_routes_that_ring_bob(caller: str, number: str, route: str) -> None:
    sw = switch()
    dial(sw, caller, number)
    invite = sw.phones["bob"].incoming().invite
    assert str(invite.uri) == sw.phones["bob"].contact
    (incoming,) = sw.logged("incoming")
    assert incoming["route"] == route and incoming["called"] == number
    if caller == "alice":  # an agent shows up by name and extension
        assert (invite.from_.display, str(invite.from_.uri)) == ("Alice Agent", f"sip:1001@{DOMAIN}")
    else:  # anyone else by the number they sent
        assert str(invite.from_.uri) == f"sip:{caller}@{DOMAIN}"


@pytest.mark.parametrize(
    ("caller", "number", "status", "cause", "route"),
    [
        ("alice", "1003", 404, "not_found", None),  # nobody has that number
        ("alice", "1099", 404, "not_found", "user:ghost"),  # a route to a user who is not configured
        ("alice", "1009", 480, "unreachable", "user:sue"),  # Sue is not registered
        ("alice", "1001", 486, "busy", "user:alice"),  # calling yourself
        ("carrier", "1002", 404, "not_found", None),  # trunks reach their DIDs only ...
        ("carrier", "+15550199", 404, "not_found", None),  # ... not another trunk's
        ("customer", "5000", 480, "no_queue", "queue:sales"),  # queues are public (no ACD yet)
        ("customer", "1002", 401, None, None),  # extensions are not public: the B2BUA challenges
    ],
)
def test_routes_that_are_refused(
    caller: str, number: str, status: int, cause: str | None, route: str | None
) -> None:
    sw = switch()
    dial(sw, caller, number)
    failed = sw.phones[caller].one(Failed)
    assert failed.status == status
    assert sw.phones["bob"].take() == []
    assert sw.media.sessions == {}  # no relay ports for a call that never rings
    if cause is None:
        assert sw.records() == []
        return
    (ended,) = sw.net.of(CallEnded)
    assert (ended.cause, ended.by, ended.status) == (cause, "switch", status)
    record = sw.record().call
    assert (record.route, record.hangup_cause, record.called) == (route, cause, number)
    assert record.hangup_by == "switch" and record.agent is None and record.answered_at is None


@pytest.mark.parametrize(("number", "status"), [("1003", 404), ("1009", 480), ("1001", 486)])
def test_the_record_of_a_refused_call_keeps_the_status_the_caller_got(number: str, status: int) -> None:
    sw = switch()
    dial(sw, "alice", number)
    assert sw.phones["alice"].one(Failed).status == status
    ready = sw.record()
    assert ready.call.status == status
    assert [leg.status for leg in ready.legs] == [status]


# ---------------------------------------------------------------------------------------------------------
# media anchoring
# ---------------------------------------------------------------------------------------------------------


def test_the_offer_to_bob_and_the_answer_to_alice_point_at_our_relay_and_keep_the_codecs() -> None:
    sw = switch()
    a_leg, b_leg = answered_call(sw)
    session = sw.session()
    a_port, b_port = session.local_port(Leg.A), session.local_port(Leg.B)
    assert (a_port, b_port) == (30000, 30002)

    offer = b_leg.remote_sdp
    assert audio(offer) == (SWITCH[0], b_port, ["0", "8", "101"], Direction.SENDRECV)
    assert [c.name for c in parsed(offer).media[0].codecs()] == ["PCMU", "PCMA", "telephone-event"]
    assert parsed(offer).media[0].get("fmtp") == "101 0-16" and parsed(offer).media[0].ptime == 20
    assert parsed(offer).origin.address == SWITCH[0] and ALICE_HOST.encode() not in (offer or b"")

    answer = a_leg.remote_sdp
    assert audio(answer) == (SWITCH[0], a_port, ["8", "101"], Direction.SENDRECV)
    assert BOB_HOST.encode() not in (answer or b"")
    assert parsed(answer).origin.session_id != parsed(offer).origin.session_id

    # The relay learnt both phones: alice's RTP to our A port goes to bob's SDP address from our B port.
    rtp = RtpPacket(payload_type=8, sequence_number=1, timestamp=160, ssrc=7, payload=b"\xd5" * 160)
    (sent,) = session.on_packet(Leg.A, rtp.serialize(), (ALICE_HOST, 4000), now=sw.net.now)
    assert (sent.local_port, sent.dest) == (b_port, (BOB_HOST, 5000))
    (back,) = session.on_packet(Leg.B, rtp.serialize(), (BOB_HOST, 5000), now=sw.net.now)
    assert (back.local_port, back.dest) == (a_port, (ALICE_HOST, 4000))
    assert sw.net.one(CallAnswered) and sw.media.pokes


def test_a_delayed_offer_gets_our_offer_and_the_answer_in_the_ack_reaches_the_relay() -> None:
    sw = switch()
    net, alice, bob = sw.net, sw.phones["alice"], sw.phones["bob"]
    a_leg = dial(sw, "alice", "1002", offer=None)
    b_leg = bob.incoming()
    b_port = sw.session().local_port(Leg.B)
    host, port, formats, _ = audio(b_leg.remote_sdp)
    assert (host, port) == (SWITCH[0], b_port) and formats[:2] == ["0", "8"]
    bob.layer.accept(b_leg, BOB_ANSWER, now=net.now)
    net.pump()
    offer_to_a = alice.one(Answered).sdp
    assert audio(offer_to_a)[:2] == (SWITCH[0], sw.session().local_port(Leg.A))
    alice.layer.ack(a_leg, phone_sdp("alice", ALICE_HOST, 4000, "8 101"), now=net.now)
    net.pump()
    rtp = RtpPacket(payload_type=8, sequence_number=1, timestamp=160, ssrc=7, payload=b"\xd5" * 160)
    (sent,) = sw.session().on_packet(Leg.B, rtp.serialize(), (BOB_HOST, 5000), now=net.now)
    assert sent.dest == (ALICE_HOST, 4000)


def test_an_offer_without_audio_is_refused_488() -> None:
    sw = switch()
    video_only = ALICE_OFFER.replace(b"m=audio 4000 RTP/AVP 0 8 101", b"m=video 4000 RTP/AVP 96")
    dial(sw, "alice", "1002", offer=video_only)
    assert sw.phones["alice"].one(Failed).status == 488
    assert sw.phones["bob"].take() == []
    record = sw.record().call
    assert (record.hangup_cause, record.disposition) == ("media_refused", "failed")
    assert sw.media.closed == list(sw.media.sessions)


def test_hold_keeps_its_direction_through_the_switch() -> None:
    sw = switch()
    a_leg, b_leg = answered_call(sw)
    net, alice, bob = sw.net, sw.phones["alice"], sw.phones["bob"]
    session = sw.session()
    alice.layer.reinvite(a_leg, phone_sdp("alice", ALICE_HOST, 4000, "0 8 101", "a=sendonly"), now=net.now)
    net.pump()
    offer = bob.one(ReinviteReceived).sdp
    assert audio(offer) == (SWITCH[0], session.local_port(Leg.B), ["0", "8", "101"], Direction.SENDONLY)
    bob.layer.answer_reinvite(b_leg, sdp=phone_sdp("bob", BOB_HOST, 5000, "8 101", "a=recvonly"), now=net.now)
    net.pump()
    done = alice.one(ReinviteCompleted)
    assert done.status == 200
    assert audio(done.sdp) == (SWITCH[0], session.local_port(Leg.A), ["8", "101"], Direction.RECVONLY)
    # The o= version of what we send each side goes up by one with the change (RFC 3264 §8).
    assert parsed(offer).origin.session_version == parsed(b_leg.invite.body).origin.session_version + 1

    # Resume: sendrecv again both ways.
    alice.layer.reinvite(a_leg, ALICE_OFFER, now=net.now)
    net.pump()
    assert audio(bob.one(ReinviteReceived).sdp)[3] is Direction.SENDRECV
    bob.layer.answer_reinvite(b_leg, sdp=BOB_ANSWER, now=net.now)
    net.pump()
    assert audio(alice.one(ReinviteCompleted).sdp)[3] is Direction.SENDRECV


# ---------------------------------------------------------------------------------------------------------
# call records
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_an_answered_call_is_recorded(hangs_up: str) -> None:
    sw = switch()
    a_leg, b_leg = answered_call(sw, at=100.0)
    net = sw.net
    net.now = 160.0
    phone, leg = (sw.phones["alice"], a_leg) if hangs_up == "caller" else (sw.phones["bob"], b_leg)
    phone.layer.bye(leg, now=net.now)
    net.pump()
    ready = sw.record()
    record = ready.call
    call = sw.call()
    assert record.call_id == call.id and record.sip_call_id == a_leg.call_id
    assert (record.caller, record.caller_user, record.called, record.route) == (
        "alice",
        "alice",
        "1002",
        "user:bob",
    )
    assert (record.disposition, record.hangup_cause, record.hangup_by) == ("answered", "bye", hangs_up)
    assert (record.agent, record.status, record.codec, record.queue) == ("bob", None, "PCMA", None)
    assert (record.started_at, record.answered_at, record.ended_at) == (WALL + 100, WALL + 101, WALL + 160)
    a, b = ready.legs
    assert (a.leg, a.status, a.peer, a.remote, a.transport) == (
        "a",
        200,
        "alice",
        f"{ALICE_HOST}:5060",
        "udp",
    )
    assert (b.leg, b.status, b.peer, b.remote, b.codec) == ("b", 200, "bob", f"{BOB_HOST}:5060", "PCMA")
    assert b.sip_call_id == b_leg.call_id != a.sip_call_id
    assert (b.started_at, b.answered_at, b.ended_at) == (WALL + 100, WALL + 101, WALL + 160)
    assert sw.media.closed == [call.id]
    net.quiet()


@pytest.mark.parametrize(
    ("callee_does", "disposition", "status"),
    [("cancel", "cancelled", 487), (486, "busy", 486), (603, "declined", 603), ("ring", "no_answer", 480)],
)
def test_unanswered_calls_are_recorded_with_their_disposition(
    callee_does: str | int, disposition: str, status: int
) -> None:
    sw = switch(ring_timeout=30.0)
    net, alice, bob = sw.net, sw.phones["alice"], sw.phones["bob"]
    net.now = 10.0
    a_leg = dial(sw, "alice", "1002")
    b_leg = bob.incoming()
    bob.layer.provisional(b_leg, 180, now=net.now)
    net.run_until(15.0)
    if callee_does == "cancel":
        alice.layer.cancel(a_leg, now=net.now)
    elif isinstance(callee_does, int):
        bob.layer.reject(b_leg, callee_does, now=net.now)
    net.run_until(40.0)  # the ring timeout is at 40
    assert [e.status for e in alice.take() if isinstance(e, Failed)] == [status]
    ready = sw.record()
    record = ready.call
    assert (record.disposition, record.status, record.agent, record.answered_at) == (
        disposition,
        status,
        None,
        None,
    )
    assert record.hangup_by == ("caller" if callee_does == "cancel" else "switch")
    assert record.ended_at == WALL + (40.0 if callee_does == "ring" else 15.0)
    a, b = ready.legs
    assert (a.status, b.status, b.peer, b.answered_at) == (status, status, "bob", None)
    assert record.detail == (
        None if callee_does == "cancel" else {480: "no answer", 486: "busy", 603: "declined"}[status]
    )
    net.quiet()


def test_a_forked_call_records_every_attempt() -> None:
    sw = switch(bob_phones=2)
    net, bob, bob1 = sw.net, sw.phones["bob"], sw.phones["bob1"]
    net.now = 50.0
    a_leg = dial(sw, "alice", "1002")
    leg0, leg1 = bob.incoming(), bob1.incoming()
    net.now = 52.0
    bob1.layer.accept(leg1, BOB_ANSWER, now=net.now)
    net.pump()
    assert bob.one(Cancelled).leg is leg0
    net.now = 70.0
    sw.phones["alice"].layer.bye(a_leg, now=net.now)
    net.pump()
    ready = sw.record()
    _a, first, second = ready.legs
    assert (first.remote, first.status, first.answered_at) == (f"{BOB_HOST}:5060", 487, None)
    assert (second.remote, second.status, second.answered_at) == ("198.51.100.3:5060", 200, WALL + 52)
    assert first.sip_call_id != second.sip_call_id
    assert ready.call.agent == "bob" and ready.call.disposition == "answered"


def test_a_cancelled_forks_record_ends_when_it_was_cancelled() -> None:
    sw = switch(bob_phones=2)
    net, bob, bob1 = sw.net, sw.phones["bob"], sw.phones["bob1"]
    net.now = 50.0
    a_leg = dial(sw, "alice", "1002")
    bob.incoming()
    leg1 = bob1.incoming()
    net.now = 52.0
    bob1.layer.accept(leg1, BOB_ANSWER, now=net.now)
    net.pump()
    net.now = 70.0
    sw.phones["alice"].layer.bye(a_leg, now=net.now)
    net.pump()
    _a, loser, _winner = sw.record().legs
    assert loser.ended_at == WALL + 52


# ---------------------------------------------------------------------------------------------------------
# relay events
# ---------------------------------------------------------------------------------------------------------


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload, marker=marker
    ).serialize()


def relay(sw: Switch, events: list[RelayEvent]) -> None:
    call = sw.call()
    for event in events:
        sw.flow.on_relay_event(call.id, event, now=sw.net.now)
    sw.net.pump()


def test_a_media_timeout_hangs_up_with_a_sentence_that_says_why() -> None:
    sw = switch()
    answered_call(sw, at=100.0)  # the relay's clock starts at the answer, 101
    session = sw.session()
    net = sw.net
    for i in range(10):  # alice keeps talking; bob's phone has gone
        net.now = 101.0 + 3 * i
        session.on_packet(Leg.A, rtp(8, i, 160 * i, 7, b"\xd5" * 160), (ALICE_HOST, 4000), now=net.now)
    assert session.next_deadline() == 131.0
    net.now = 131.0
    session.handle_timer(now=net.now)
    relay(sw, session.events())
    assert sw.phones["alice"].one(Ended).by == "remote"
    assert sw.phones["bob"].one(Ended).by == "remote"
    (ended,) = sw.net.of(CallEnded)
    assert (ended.cause, ended.by) == ("media_timeout", "callee")
    record = sw.record().call
    assert (record.hangup_cause, record.hangup_by, record.disposition) == (
        "media_timeout",
        "callee",
        "answered",
    )
    assert record.detail == "no RTP from leg B for 30.0 s: the callee's phone stopped sending media"
    (logged,) = sw.logged("media_timeout")
    assert (logged["leg"], logged["silent_for"]) == ("callee", 30.0)
    net.quiet()


def test_when_both_legs_time_out_the_record_names_one_culprit() -> None:
    sw = switch()
    answered_call(sw, at=100.0)
    session = sw.session()
    sw.net.now = 131.0
    session.handle_timer(now=sw.net.now)
    relay(sw, session.events())
    record = sw.record().call
    assert record.hangup_by == "caller"
    assert record.detail is not None and "caller" in record.detail


def test_dtmf_from_the_relay_and_from_info_is_logged() -> None:
    sw = switch()
    a_leg, b_leg = answered_call(sw)
    session = sw.session()
    net = sw.net
    events: list[RelayEvent] = []
    for seq, (payload, marker) in enumerate(event_payloads("7")):
        events_now = session.on_packet(
            Leg.A, rtp(101, 100 + seq, 8000, 7, payload, marker), (ALICE_HOST, 4000), now=net.now
        )
        assert len(events_now) == 1  # forwarded to bob like any packet
        events += session.events()
    assert [e for e in events if not isinstance(e, Latched)] == [DtmfEvent(Leg.A, "7", 200)]
    relay(sw, events)
    sw.phones["bob"].layer.info(b_leg, "application/dtmf-relay", b"Signal=#\r\nDuration=100\r\n", now=net.now)
    net.pump()
    dtmf = sw.logged("dtmf")
    assert [(d["side"], d["digit"], d["method"]) for d in dtmf] == [("a", "7", "rfc4733"), ("b", "#", "info")]
    assert dtmf[0]["call"] == sw.call().id
    (live,) = sw.flow.live_calls(net.now)
    assert live["dtmf"] == "7#" and live["state"] == "talking" and live["agent"] == "bob"
    assert a_leg.live and b_leg.live and sw.net.of(CallEnded) == []


# ---------------------------------------------------------------------------------------------------------
# queues: callflow with the real ACD engine
# ---------------------------------------------------------------------------------------------------------


class FakeSounds:
    """Named, distinct sounds, so a test can read what a caller is played."""

    def __init__(self) -> None:
        self.made: dict[str, Sound] = {}

    def _sound(self, name: str, seconds: float = 1.0) -> Sound:
        if name not in self.made:
            self.made[name] = Sound(np.zeros(int(8000 * seconds), np.int16), name=name)
        return self.made[name]

    def music(self, queue: str | None) -> Sound | None:
        return self._sound(f"music-{queue}", 5.0)

    def prompt(self, name: str) -> Sound | None:
        return self._sound(f"prompt-{name}")

    def position(self, position: int) -> list[Sound]:
        return [self._sound("you-are-number"), self._sound(f"digit-{position}")]

    def wait(self, seconds: float | None) -> list[Sound]:
        return [] if seconds is None else [self._sound("wait")]

    def feature(self, action: str, ack: str) -> Sound | None:
        return self._sound(f"feature-{action}-{ack}")

    def goodbye(self, reason: str, to: str | None) -> Sound | None:
        return self._sound("transferring" if to else f"goodbye-{reason}")


def queue_switch(*queues: QueueConfig) -> tuple[Switch, FakeSounds]:
    sounds = FakeSounds()
    return switch(queues=queues, sounds=sounds), sounds


def fed_to_caller(sw: Switch) -> list[str]:
    """The names of what the caller's leg is being played now: prompts first, then the looping tail."""
    feed = sw.session()._leg(RelayLeg.A).feed
    assert feed is not None
    source = feed.source
    if isinstance(source, Chain):
        names = [s.name for s in source.first.sounds]
        tail = source.then
        return names + ([tail.sound.name] if isinstance(tail, LoopingPlayer) else [])
    return [source.sound.name] if isinstance(source, LoopingPlayer) else [type(source).__name__]


def test_exits_that_lead_back_to_a_queue_already_visited_end_with_a_goodbye_instead_of_a_loop() -> None:
    sw, _ = queue_switch(
        QueueConfig("q1", join_empty=False, exit_to="q2"),
        QueueConfig("q2", join_empty=False, exit_to="q1"),
    )
    sw.net.now = 10.0
    dial(sw, "customer", "6001")
    sw.net.pump()
    assert [entry["queue"] for entry in sw.logged("queued")] == ["q1", "q2"]
    assert [entry["queue"] for entry in sw.logged("queue_loop")] == ["q1"]
    assert sw.flow.acd is not None and sw.flow.acd.next_deadline() is None  # nothing left bouncing
    deadline = sw.flow.next_deadline()
    assert deadline is not None  # the goodbye plays, then the switch hangs up
    sw.flow.handle_timer(now=deadline)
    sw.net.pump()
    assert sw.call().state is CallState.ENDED


def test_an_announcement_and_the_position_decided_together_are_both_played_in_order() -> None:
    sw, _ = queue_switch(
        QueueConfig("q1", announce=Announce(every=30.0, position=True, prompt="please-hold"), max_wait=None)
    )
    sw.net.now = 10.0
    dial(sw, "customer", "6001")
    sw.net.pump()
    assert fed_to_caller(sw)[-1] == "music-q1"
    deadline = sw.flow.next_deadline()
    assert deadline is not None and deadline <= 10.0 + 30.0
    sw.net.now = deadline
    sw.flow.handle_timer(now=deadline)
    played = fed_to_caller(sw)
    assert played[0] == "prompt-please-hold"
    assert played[1:3] == ["you-are-number", "digit-1"]
    assert played[-1] == "music-q1"


def test_a_delayed_offer_to_a_queue_is_answered_with_pcmu_alone() -> None:
    sw, _ = queue_switch(QueueConfig("q1", max_wait=None))
    a_leg = dial(sw, "customer", "6001", offer=None)
    customer = sw.phones["customer"]
    formats = audio(customer.one(Answered).sdp)[2]
    assert formats == ["0", "101"]  # PCMU and telephone-event: music starts before the ACK names a codec
    customer.layer.ack(a_leg, phone_sdp("customer", "192.0.2.50", 4000, "0 101"), now=sw.net.now)
    sw.net.pump()
    assert sw.flow.live_calls(sw.net.now)[0]["codec"] == "PCMU"


def test_ring_all_a_colleagues_unusable_answer_does_not_strand_or_penalise_the_others() -> None:
    # Alice and Bob ring together; Alice answers first, so the switch cancels Bob's ring, but her answer has
    # no audio. Bob must be free (and rung again) at once, not left "offered" until the ring timeout and then
    # charged a missed offer he never had the chance to take.
    sw, _ = queue_switch(QueueConfig("q1", strategy="ring_all", max_wait=None, wrap_up=0.0))
    acd = sw.flow.acd
    assert acd is not None
    for agent in ("alice", "bob"):
        acd.agent_login(agent, now=0.0)
    sw.net.now = 10.0
    dial(sw, "customer", "6001")
    alice, bob = sw.phones["alice"], sw.phones["bob"]
    a_ring, first_ring = alice.incoming(), bob.incoming()
    no_audio = phone_sdp("alice", ALICE_HOST, 4000).replace(
        b"m=audio 4000 RTP/AVP 0 8 101", b"m=video 4000 RTP/AVP 96"
    )
    alice.layer.accept(a_ring, no_audio, now=sw.net.now)
    sw.net.pump()
    bob_events = bob.take()
    assert any(isinstance(e, Cancelled) and e.leg is first_ring for e in bob_events)
    second_rings = [e for e in bob_events if type(e).__name__ == "InviteReceived"]
    assert len(second_rings) == 1 and second_rings[0].leg is not first_ring  # rung again at once
    agents = acd.snapshot(now=sw.net.now).agents
    assert agents["bob"].misses == 0
    assert agents["alice"].misses == 1  # her answer was unusable: that one is hers


def test_an_agent_on_two_direct_calls_is_free_for_the_queues_only_after_the_last_one_ends() -> None:
    sw, _ = queue_switch(QueueConfig("q1", max_wait=None))
    acd = sw.flow.acd
    assert acd is not None
    acd.agent_login("bob", now=0.0)
    net, bob = sw.net, sw.phones["bob"]
    legs = []
    for caller, number in (("alice", "1002"), ("customer", "+15550100")):
        caller_leg = dial(sw, caller, number)
        callee_leg = bob.incoming()
        bob.layer.accept(callee_leg, BOB_ANSWER, now=net.now)
        net.pump()
        bob.take()  # the ACK
        legs.append((sw.phones[caller], caller_leg))
        assert acd.agent_status("bob") is AgentStatus.DIRECT_CALL
    first_phone, first_leg = legs[0]
    first_phone.layer.bye(first_leg, now=net.now)
    net.pump()
    assert acd.agent_status("bob") is AgentStatus.DIRECT_CALL  # still talking to the customer
    second_phone, second_leg = legs[1]
    second_phone.layer.bye(second_leg, now=net.now)
    net.pump()
    assert acd.agent_status("bob") is AgentStatus.AVAILABLE
