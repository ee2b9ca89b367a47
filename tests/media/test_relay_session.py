from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.media.dtmf import event_payloads
from softswitch.media.g711 import PCMA, PCMU
from softswitch.media.player import LoopingPlayer, Sound
from softswitch.media.port import BufferPort
from softswitch.media.relay import (
    DtmfEvent,
    Latched,
    Leg,
    MediaTimeout,
    RelaySession,
    RemoteMedia,
    RtcpBye,
    TapFrame,
)
from softswitch.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    parse_compound,
    serialize_compound,
)
from softswitch.media.rtp import RtpPacket, seq_add, ts_diff
from softswitch.media.sdp import Direction, RtpCodec, SessionDescription, negotiate
from softswitch.media.stream import Send

A_PORT, B_PORT = 20000, 20002
A_SDP = ("198.51.100.10", 4000)  # the caller's SDP (a trunk, not behind NAT)
B_SDP = ("10.0.0.5", 5000)  # the agent's SDP: a private address behind home NAT
B_NAT = ("203.0.113.20", 62000)  # where the agent's packets really come from
B_SIP_HOST = "203.0.113.20"
OUTSIDER = ("192.0.2.66", 7777)

G711_TE = (
    RtpCodec(0, "PCMU", 8000),
    RtpCodec(8, "PCMA", 8000),
    RtpCodec(101, "telephone-event", 8000, None, "0-16"),
)


class Phone:
    """Sends a well-formed stream: sequence +1, timestamp +160, one SSRC."""

    def __init__(self, ssrc: int, *, seq: int = 1000, ts: int = 50_000, pt: int = 0) -> None:
        self.ssrc, self.seq, self.ts, self.pt = ssrc, seq, ts, pt

    def packet(self, payload: bytes | None = None, *, pt: int | None = None) -> bytes:
        body = payload or bytes([self.seq & 0xFF]) * 160
        data = RtpPacket(self.pt if pt is None else pt, self.seq, self.ts, self.ssrc, body).serialize()
        self.seq = seq_add(self.seq, 1)
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        return data


def session(
    *, rtp_timeout: float = 30.0, hold_timeout: float | None = 3600.0, learn_window: float = 3.0
) -> RelaySession:
    s = RelaySession(a_port=A_PORT, b_port=B_PORT, rtp_timeout=rtp_timeout, hold_timeout=hold_timeout,
                     learn_window=learn_window)
    s.update(Leg.A, RemoteMedia(A_SDP, (A_SDP[0], A_SDP[1] + 1), G711_TE), now=0.0)
    b_rtcp = (B_SDP[0], B_SDP[1] + 1)
    s.update(Leg.B, RemoteMedia(B_SDP, b_rtcp, G711_TE, signalling_host=B_SIP_HOST), now=0.0)
    return s


def parsed(sends: list[Send]) -> list[RtpPacket]:
    return [RtpPacket.parse(x.data) for x in sends]


def test_plain_relay_forwards_untouched_and_latches_both_sides() -> None:
    s = session()
    a, b = Phone(0xA), Phone(0xB)
    pkt = a.packet()
    (out,) = s.on_packet(Leg.A, pkt, A_SDP, now=0.0)
    assert (out.local_port, out.dest, out.data) == (B_PORT, B_SDP, pkt)  # B unlatched yet: its SDP address
    (back,) = s.on_packet(Leg.B, b.packet(), B_NAT, now=0.01)
    assert (back.local_port, back.dest) == (A_PORT, A_SDP)
    (again,) = s.on_packet(Leg.A, a.packet(), A_SDP, now=0.02)
    assert again.dest == B_NAT  # symmetric RTP: reply to where the agent's packets come from
    assert s.events() == [
        Latched(Leg.A, A_SDP, False, None, "preferred"),
        Latched(Leg.B, B_NAT, False, None, "preferred"),  # same host as the agent's SIP
    ]
    assert s.latched(Leg.B) == B_NAT and s.stats(Leg.A).forwarded == 2 and s.stats(Leg.B).forwarded == 1


def test_unknown_source_latches_after_probation() -> None:
    s = RelaySession(a_port=A_PORT, b_port=B_PORT)
    s.update(Leg.A, RemoteMedia(A_SDP, None, G711_TE), now=0.0)
    s.update(Leg.B, RemoteMedia(B_SDP, None, G711_TE), now=0.0)  # no signalling host known
    b = Phone(0xB)
    results = [s.on_packet(Leg.B, b.packet(), B_NAT, now=0.02 * i) for i in range(5)]
    assert [len(r) for r in results] == [0, 0, 0, 1, 1]
    assert s.stats(Leg.B).dropped_learning == 3
    assert s.events() == [Latched(Leg.B, B_NAT, False, None, "probation")]


def test_interleaved_outsider_cannot_stop_the_phone_latching() -> None:
    s = RelaySession(a_port=A_PORT, b_port=B_PORT)
    s.update(Leg.B, RemoteMedia(B_SDP, None, G711_TE), now=0.0)
    b, evil = Phone(0xB), Phone(0xE)
    for i in range(4):
        s.on_packet(Leg.B, evil.packet(), OUTSIDER, now=0.02 * i)
        s.on_packet(Leg.B, b.packet(), B_NAT, now=0.02 * i + 0.01)
        # the outsider also skips sequence numbers, so it never passes probation
        evil.seq = seq_add(evil.seq, 1)
    assert s.latched(Leg.B) == B_NAT


def test_learning_requires_a_negotiated_payload_type() -> None:
    s = session()
    b = Phone(0xB, pt=111)
    assert s.on_packet(Leg.B, b.packet(), B_NAT, now=0.0) == []
    assert s.latched(Leg.B) is None and s.stats(Leg.B).dropped_learning == 1
    # once latched, an unexpected payload type from the phone is forwarded (and counted)
    s.on_packet(Leg.B, b.packet(pt=0), B_NAT, now=0.02)
    assert len(s.on_packet(Leg.B, b.packet(), B_NAT, now=0.04)) == 1
    assert s.stats(Leg.B).unexpected_payload_type == 1


def test_outsider_is_dropped_while_the_phone_talks() -> None:
    s = session()
    b, evil = Phone(0xB), Phone(0xE)
    s.on_packet(Leg.B, b.packet(), B_NAT, now=0.0)
    for i in range(1, 50):
        assert s.on_packet(Leg.B, evil.packet(), OUTSIDER, now=0.02 * i) == []
        s.on_packet(Leg.B, b.packet(), B_NAT, now=0.02 * i + 0.001)
    assert s.latched(Leg.B) == B_NAT
    assert s.stats(Leg.B).dropped_foreign == 49


def test_takeover_after_silence_needs_probation() -> None:
    s = session()
    b = Phone(0xB)
    s.on_packet(Leg.B, b.packet(), B_NAT, now=0.0)
    moved = ("198.51.100.99", 40000)  # the phone moved from Wi-Fi to LTE: new address, same SSRC
    assert s.on_packet(Leg.B, b.packet(), moved, now=0.3) == []  # latched source silent only 0.3 s
    results = [s.on_packet(Leg.B, b.packet(), moved, now=0.6 + 0.02 * i) for i in range(4)]
    assert [len(r) for r in results] == [0, 0, 0, 1]
    assert s.latched(Leg.B) == moved
    assert s.events()[-1] == Latched(Leg.B, moved, False, B_NAT, "takeover")


def test_renegotiated_address_latches_at_once_inside_the_window_only() -> None:
    s = session(learn_window=3.0)
    b = Phone(0xB)
    s.on_packet(Leg.B, b.packet(), B_NAT, now=0.0)
    new_sdp = ("198.51.100.50", 6000)
    s.update(Leg.B, RemoteMedia(new_sdp, None, G711_TE), now=10.0)
    assert len(s.on_packet(Leg.B, b.packet(), new_sdp, now=10.5)) == 1
    assert s.events()[-1] == Latched(Leg.B, new_sdp, False, B_NAT, "renegotiated")
    # a later SDP change whose address only shows up after the window is a plain foreign source
    other = ("198.51.100.51", 6002)
    s.update(Leg.B, RemoteMedia(other, None, G711_TE), now=20.0)
    s.on_packet(Leg.B, b.packet(), new_sdp, now=22.0)  # the phone keeps talking from the old address
    assert s.on_packet(Leg.B, b.packet(), other, now=23.5) == []
    assert s.latched(Leg.B) == new_sdp


def test_reinvite_with_new_ssrc_keeps_the_callers_stream_continuous() -> None:
    s = session()
    b = Phone(0xB)
    out = parsed([x for i in range(5) for x in s.on_packet(Leg.B, b.packet(), B_NAT, now=0.02 * i)])
    b2 = Phone(0xB2, seq=7, ts=999)  # the agent's phone after a re-INVITE
    out += parsed([x for i in range(5) for x in s.on_packet(Leg.B, b2.packet(), B_NAT, now=0.1 + 0.02 * i)])
    assert {p.ssrc for p in out} == {0xB}
    assert [p.sequence_number for p in out] == list(range(1000, 1010))
    assert all(ts_diff(y.timestamp, x.timestamp) == 160 for x, y in itertools.pairwise(out))
    assert [p.marker for p in out] == [False] * 5 + [True] + [False] * 4


def test_music_on_hold_then_agent_audio_is_one_stream_for_the_caller() -> None:
    s = session()
    a = Phone(0xA)
    s.on_packet(Leg.A, a.packet(), A_SDP, now=0.0)  # the caller talks: latched
    assert not s.ticking
    s.feed(Leg.A, LoopingPlayer(Sound(np.zeros(1600, np.int16))))
    assert s.ticking
    moh = [x for i in range(1, 6) for x in s.tick(now=0.02 * i)]
    assert {(x.local_port, x.dest) for x in moh} == {(A_PORT, A_SDP)}
    # the agent answers while music plays: its audio is not forwarded until music stops
    b = Phone(0xB, seq=1, ts=1)
    assert s.on_packet(Leg.B, b.packet(), B_NAT, now=0.11) == []
    assert s.stats(Leg.B).not_forwarded_local == 1
    s.feed(Leg.A, None)
    agent = [x for i in range(3) for x in s.on_packet(Leg.B, b.packet(), B_NAT, now=0.12 + 0.02 * i)]
    stream = parsed(moh + agent)
    assert len({p.ssrc for p in stream}) == 1
    assert [p.sequence_number for p in stream] == [seq_add(stream[0].sequence_number, i) for i in range(8)]
    assert [p.marker for p in stream] == [True] + [False] * 4 + [True, False, False]
    assert stream[5].payload_type == 0 and stream[0].payload == PCMU.silence
    assert all(ts_diff(y.timestamp, x.timestamp) >= 160 for x, y in itertools.pairwise(stream))


def test_feed_uses_the_legs_g711_codec_and_payload_type() -> None:
    s = RelaySession(a_port=A_PORT, b_port=B_PORT)
    s.update(Leg.A, RemoteMedia(A_SDP, None, (RtpCodec(8, "PCMA", 8000),)), now=0.0)
    s.feed(Leg.A, LoopingPlayer(np.zeros(160, np.int16)))
    (pkt,) = parsed(s.tick(now=0.0))
    assert pkt.payload_type == 8 and pkt.payload == PCMA.silence
    s.update(Leg.B, RemoteMedia(B_SDP, None, (RtpCodec(111, "opus", 48000, 2),)), now=0.0)
    with pytest.raises(ValueError, match=r"no G\.711 codec"):
        s.feed(Leg.B, LoopingPlayer(np.zeros(160, np.int16)))


def test_hold_direction_stops_forwarding_toward_the_holding_leg() -> None:
    s = session()
    a, b = Phone(0xA), Phone(0xB)
    s.on_packet(Leg.B, b.packet(), B_NAT, now=0.0)
    s.update(Leg.B, RemoteMedia(B_SDP, None, G711_TE, Direction.SENDONLY, B_SIP_HOST), now=1.0)  # agent holds
    assert s.on_packet(Leg.A, a.packet(), A_SDP, now=1.1) == []
    assert s.stats(Leg.A).dropped_direction == 1
    assert len(s.on_packet(Leg.B, b.packet(), B_NAT, now=1.2)) == 1  # the agent's (music) still flows


def test_dtmf_is_forwarded_and_reported_once() -> None:
    s = session()
    a = Phone(0xA)
    s.on_packet(Leg.A, a.packet(), A_SDP, now=0.0)
    forwarded = 0
    ts = a.ts
    for i, (payload, marker) in enumerate(event_payloads("7", duration=800)):
        pkt = RtpPacket(101, a.seq, ts, 0xA, payload, marker).serialize()
        a.seq = seq_add(a.seq, 1)
        forwarded += len(s.on_packet(Leg.A, pkt, A_SDP, now=0.02 * (i + 1)))
    assert forwarded == 7
    assert [e for e in s.events() if isinstance(e, DtmfEvent)] == [DtmfEvent(Leg.A, "7", 100)]
    assert s.stats(Leg.A).dtmf_events == 1


def test_payload_type_numbers_are_translated_between_legs() -> None:
    s = RelaySession(a_port=A_PORT, b_port=B_PORT)
    a_codecs = (RtpCodec(0, "PCMU", 8000), RtpCodec(96, "telephone-event", 8000))
    s.update(Leg.A, RemoteMedia(A_SDP, None, a_codecs), now=0.0)
    s.update(Leg.B, RemoteMedia(B_SDP, None, G711_TE, signalling_host=B_SIP_HOST), now=0.0)
    a = Phone(0xA, pt=96)
    (out,) = s.on_packet(Leg.A, a.packet(event_payloads("1")[0][0]), A_SDP, now=0.0)
    assert RtpPacket.parse(out.data).payload_type == 101
    (audio,) = s.on_packet(Leg.A, a.packet(pt=0), A_SDP, now=0.02)
    assert RtpPacket.parse(audio.data).payload_type == 0


def test_rtp_timeout_fires_once_per_silence_for_sendrecv_legs() -> None:
    s = session(rtp_timeout=30.0, hold_timeout=None)
    assert s.next_deadline() is None  # not started: no timeouts during setup
    s.start(now=100.0)
    a = Phone(0xA)
    s.on_packet(Leg.A, a.packet(), A_SDP, now=105.0)
    assert s.next_deadline() == 130.0  # B has said nothing since the call started
    s.events()
    s.handle_timer(now=130.0)
    assert s.events() == [MediaTimeout(Leg.B, 30.0, False)]
    assert s.next_deadline() == 135.0  # B reported; A's deadline remains
    s.handle_timer(now=131.0)
    assert s.events() == []
    s.handle_timer(now=135.0)
    (timeout,) = s.events()
    assert timeout == MediaTimeout(Leg.A, 30.0, False) and timeout.reason == "no RTP from leg A for 30.0 s"
    s.on_packet(Leg.A, a.packet(), A_SDP, now=140.0)  # A comes back: armed again
    assert s.next_deadline() == 170.0


def test_legs_on_hold_use_the_hold_timeout_and_rtcp_counts() -> None:
    s = session(rtp_timeout=30.0, hold_timeout=600.0)
    s.start(now=0.0)
    a = Phone(0xA)
    s.on_packet(Leg.A, a.packet(), A_SDP, now=1.0)
    s.update(Leg.A, RemoteMedia(A_SDP, None, G711_TE, Direction.RECVONLY), now=2.0)  # the caller is held
    s.update(Leg.B, RemoteMedia(B_SDP, None, G711_TE, Direction.SENDONLY, B_SIP_HOST), now=2.0)
    assert s.next_deadline() == 602.0
    rr = ReceiverReport(0xA).serialize()
    s.on_packet(Leg.A, rr, (A_SDP[0], A_SDP[1] + 1), now=500.0, rtcp=True)
    s.handle_timer(now=602.0)
    assert [e for e in s.events() if isinstance(e, MediaTimeout)] == [MediaTimeout(Leg.B, 600.0, True)]
    assert s.next_deadline() == 1100.0


def test_reception_statistics() -> None:
    s = session()
    a = Phone(0xA)
    sends = [a.packet() for _ in range(10)]
    order = [0, 1, 2, 4, 4, 3, 3, 6, 7, 9]  # 5 and 8 lost, 4 repeated, 3 late (twice)
    for i, k in enumerate(order):
        s.on_packet(Leg.A, sends[k], A_SDP, now=0.02 * i)
    st = s.stats(Leg.A)
    assert st.packets == 10
    assert st.lost == 0  # expected 10, received 10: duplicates hide losses, as RFC 3550 A.3 says
    assert st.out_of_order == 2 and st.duplicates == 1
    assert st.bytes == 10 * 172
    a2 = Phone(0xA2, seq=0xFFFE)  # a new source (re-INVITE): counted on its own, across the wrap
    for i in range(5):
        pkt = a2.packet()
        if i != 3:
            s.on_packet(Leg.A, pkt, A_SDP, now=1.0 + 0.02 * i)
    assert st.lost == 1 and st.packets == 14


def test_interarrival_jitter_follows_rfc3550_a8() -> None:
    s = session()
    a = Phone(0xA)
    # packets every 20 ms, arriving alternately 0 and 10 ms late: |D| = 80 timestamp units each time
    for i in range(400):
        s.on_packet(Leg.A, a.packet(), A_SDP, now=0.02 * i + (0.01 if i % 2 else 0.0))
    st = s.stats(Leg.A)
    assert st.jitter == pytest.approx(80.0, rel=0.01)
    assert st.jitter_ms == pytest.approx(10.0, rel=0.01)
    steady = session()
    p = Phone(0xA)
    for i in range(100):
        steady.on_packet(Leg.A, p.packet(), A_SDP, now=0.02 * i + 0.005)
    assert steady.stats(Leg.A).jitter == pytest.approx(0.0, abs=1e-6)


def test_rtcp_is_relayed_to_the_other_legs_rtcp_address() -> None:
    s = session()
    a, b = Phone(0xA), Phone(0xB)
    s.on_packet(Leg.A, a.packet(), A_SDP, now=0.0)
    s.on_packet(Leg.B, b.packet(), B_NAT, now=0.0)
    sr = SenderReport(0xA, 1 << 32, a.ts, 1, 160).serialize()
    (out,) = s.on_packet(Leg.A, sr, (A_SDP[0], A_SDP[1] + 1), now=1.0, rtcp=True)
    assert out.local_port == B_PORT + 1
    assert out.dest == (B_NAT[0], B_NAT[1] + 1)  # B is behind NAT and has not sent RTCP yet: a guess
    assert out.data == sr  # identity mapping: untouched
    b_rtcp = (B_NAT[0], 62001)
    (back,) = s.on_packet(Leg.B, ReceiverReport(0xB).serialize(), b_rtcp, now=1.1, rtcp=True)
    assert back.dest == (A_SDP[0], A_SDP[1] + 1) and back.local_port == A_PORT + 1
    assert s.latched_rtcp(Leg.B) == b_rtcp
    (again,) = s.on_packet(Leg.A, sr, (A_SDP[0], A_SDP[1] + 1), now=2.0, rtcp=True)
    assert again.dest == b_rtcp
    # RTCP from elsewhere is refused, as is RTCP multiplexed on the RTP port from a stranger
    assert s.on_packet(Leg.B, ReceiverReport(0xB).serialize(), OUTSIDER, now=2.1, rtcp=True) == []
    assert s.on_packet(Leg.B, ReceiverReport(0xB).serialize(), OUTSIDER, now=2.2) == []
    assert s.stats(Leg.B).dropped_foreign == 2


def test_rtcp_bye_is_reported() -> None:
    s = session()
    a = Phone(0xA)
    s.on_packet(Leg.A, a.packet(), A_SDP, now=0.0)
    s.events()
    data = serialize_compound([ReceiverReport(0xA), Bye([0xA], "bye")])
    s.on_packet(Leg.A, data, (A_SDP[0], 4001), now=1.0, rtcp=True)
    assert [e for e in s.events() if isinstance(e, RtcpBye)] == [RtcpBye(Leg.A, (0xA,), "bye")]


def test_rtcp_ssrcs_follow_the_rtp_rewrite() -> None:
    s = session()
    a, b = Phone(0xA), Phone(0xB)
    s.on_packet(Leg.A, a.packet(), A_SDP, now=0.0)
    s.on_packet(Leg.B, b.packet(), B_NAT, now=0.0)
    b2 = Phone(0xB2, seq=40000, ts=7)  # the agent re-INVITEd: new SSRC, numbering rewritten toward A
    (first,) = s.on_packet(Leg.B, b2.packet(), B_NAT, now=0.5)
    out_to_a = RtpPacket.parse(first.data)
    assert out_to_a.ssrc == 0xB
    b_rtcp = (B_NAT[0], B_NAT[1] + 1)
    sdes = SourceDescription([SdesChunk(0xB2, [(1, b"b2")])])
    sr = serialize_compound([SenderReport(0xB2, 5 << 32, 7, 1, 160), sdes])
    (out,) = s.on_packet(Leg.B, sr, b_rtcp, now=0.6, rtcp=True)
    mapped_sr, mapped_sdes = parse_compound(out.data)
    assert isinstance(mapped_sr, SenderReport) and isinstance(mapped_sdes, SourceDescription)
    assert mapped_sr.ssrc == 0xB and mapped_sr.rtp_timestamp == out_to_a.timestamp
    assert mapped_sdes.chunks[0].ssrc == 0xB
    # A reports on the stream it receives (SSRC 0xB, our numbering); B must read it as its own (0xB2)
    rr = ReceiverReport(0xA, [ReportBlock(0xB, 0, 0, out_to_a.sequence_number, 3)]).serialize()
    (to_b,) = s.on_packet(Leg.A, rr, (A_SDP[0], A_SDP[1] + 1), now=0.7, rtcp=True)
    (mapped_rr,) = parse_compound(to_b.data)
    assert isinstance(mapped_rr, ReceiverReport)
    assert mapped_rr.reports[0].ssrc == 0xB2
    assert mapped_rr.reports[0].highest_sequence & 0xFFFF == 40000


def test_taps_decode_what_a_leg_sends_and_cost_nothing_when_closed() -> None:
    s = session()
    a = Phone(0xA)
    tap = s.tap(Leg.A)
    tone = (np.sin(np.arange(160) * 0.5) * 8000).astype(np.int16)
    s.on_packet(Leg.A, a.packet(PCMU.encode(tone)), A_SDP, now=0.0)
    s.on_packet(Leg.A, a.packet(PCMA.encode(tone), pt=8), A_SDP, now=0.02)
    frames = tap.drain()
    assert [type(f) for f in frames] == [TapFrame, TapFrame]
    assert frames[0].leg is Leg.A and frames[1].timestamp - frames[0].timestamp == 160
    for f in frames:
        assert np.max(np.abs(f.samples.astype(np.int32) - tone)) < 300
    a.seq, a.ts = a.seq + 1, a.ts + 160  # one packet lost
    s.on_packet(Leg.A, a.packet(), A_SDP, now=0.06)
    (gap,) = tap.drain()
    assert gap.timestamp - frames[1].timestamp == 320  # the recorder fills 160 samples of silence
    a2 = Phone(0xA2, ts=5)  # new SSRC: the timeline continues
    s.on_packet(Leg.A, a2.packet(), A_SDP, now=0.08)
    (cont,) = tap.drain()
    assert cont.timestamp - gap.timestamp == 160
    tap.close()
    tap.close()
    s.on_packet(Leg.A, a2.packet(), A_SDP, now=0.1)
    assert tap.drain() == []


def test_tap_bounds_and_undecodable_payloads() -> None:
    s = RelaySession(a_port=A_PORT, b_port=B_PORT)
    s.update(Leg.A, RemoteMedia(A_SDP, None, (RtpCodec(111, "opus", 48000, 2), RtpCodec(0, "PCMU", 8000))),
             now=0.0)
    tap = s.tap(Leg.A, maxlen=2)
    a = Phone(0xA)
    s.on_packet(Leg.A, a.packet(pt=111), A_SDP, now=0.0)
    assert s.stats(Leg.A).tap_undecodable == 1
    for i in range(3):
        s.on_packet(Leg.A, a.packet(), A_SDP, now=0.02 * (i + 1))
    assert len(tap.drain()) == 2 and tap.dropped == 1


def test_audio_port_feeds_frames_for_the_mixer() -> None:
    s = session()
    port = s.audio_port(Leg.B, prefill_frames=2)
    assert isinstance(port, BufferPort)
    b = Phone(0xB)
    s.on_packet(Leg.B, b.packet(PCMU.encode(np.full(160, 1000, np.int16))), B_NAT, now=0.0)
    assert port.get_frame() is None  # prefilling: one frame is not enough yet
    s.on_packet(Leg.B, b.packet(PCMU.encode(np.full(160, 2000, np.int16))), B_NAT, now=0.02)
    frame = port.get_frame()
    assert frame is not None and abs(int(frame[0]) - 1000) < 40
    assert port.get_frame() is not None and port.get_frame() is None


def test_remote_media_from_sdp() -> None:
    sdp = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
    )
    rm = RemoteMedia.from_sdp(sdp, signalling_host=B_SIP_HOST)
    assert rm.address == ("10.0.0.5", 5000) and rm.rtcp_address == ("10.0.0.5", 5001)
    assert [c.payload_type for c in rm.codecs] == [8, 101]
    assert rm.direction is Direction.SENDONLY and rm.signalling_host == B_SIP_HOST
    agreed = RemoteMedia.from_negotiation(negotiate(sdp, ("PCMA",)), signalling_host=B_SIP_HOST)
    assert [c.name for c in agreed.codecs] == ["PCMA", "telephone-event"]
    assert agreed.address == rm.address and agreed.direction is Direction.SENDONLY
    empty = SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\n")
    assert RemoteMedia.from_sdp(empty).address is None


def test_garbage_is_counted_not_raised() -> None:
    s = session()
    for junk in (b"", b"\x80", b"\x00" * 20, b"\x80\xc8\x00\x09", b"\x80\x00" + b"\x00" * 5):
        assert s.on_packet(Leg.A, junk, A_SDP, now=0.0) == []
    assert s.stats(Leg.A).dropped_invalid == 5


@settings(max_examples=100, deadline=None)
@given(
    attacks=st.lists(
        st.tuples(
            st.floats(0.1, 2.0),  # when: after the phone latched (the learning race is documented)
            st.sampled_from([OUTSIDER, ("192.0.2.67", 4000), (B_NAT[0], 1)]),
            st.integers(0, 0xFFFF),  # starting sequence number
            st.integers(1, 12),  # a burst of consecutive, well-formed packets
        ),
        max_size=10,
    )
)
def test_outsiders_never_get_audio_through_while_the_phone_talks(
    attacks: list[tuple[float, tuple[str, int], int, int]],
) -> None:
    s = RelaySession(a_port=A_PORT, b_port=B_PORT)
    s.update(Leg.A, RemoteMedia(A_SDP, None, G711_TE), now=0.0)
    s.update(Leg.B, RemoteMedia(B_SDP, None, G711_TE), now=0.0)  # no signalling hint: probation
    timeline: list[tuple[float, tuple[str, int], bytes]] = []
    b = Phone(0xB)
    for i in range(101):  # the agent's phone talks every 20 ms for 2 s
        timeline.append((0.02 * i, B_NAT, b.packet(b"\x01" * 160)))
    for when, source, seq0, burst in attacks:
        evil = Phone(0xE, seq=seq0)
        timeline += [(when + 0.001 * k, source, evil.packet(b"\x66" * 160)) for k in range(burst)]
    timeline.sort(key=lambda item: item[0])
    s.on_packet(Leg.A, Phone(0xA).packet(), A_SDP, now=0.0)
    for now, source, data in timeline:
        for out in s.on_packet(Leg.B, data, source, now=now):
            assert RtpPacket.parse(out.data).payload == b"\x01" * 160
    assert s.latched(Leg.B) in (None, B_NAT)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([Leg.A, Leg.B]),
            st.one_of(
                st.binary(max_size=60),
                st.builds(
                    lambda pt, seq, ssrc, body: RtpPacket(pt, seq, seq * 160, ssrc, body).serialize(),
                    st.sampled_from([0, 8, 101, 13, 111]),
                    st.integers(0, 0xFFFF),
                    st.integers(0, 3),
                    st.binary(max_size=40),
                ),
            ),
            st.sampled_from([A_SDP, B_NAT, OUTSIDER, (A_SDP[0], A_SDP[1] + 1)]),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_any_datagram_on_any_port_is_handled_without_raising(
    datagrams: list[tuple[Leg, bytes, tuple[str, int], bool]],
) -> None:
    s = session()
    s.tap(Leg.A)
    s.start(now=0.0)
    for i, (leg, data, source, rtcp) in enumerate(datagrams):
        for out in s.on_packet(leg, data, source, now=0.01 * i, rtcp=rtcp):
            assert out.local_port in (A_PORT, A_PORT + 1, B_PORT, B_PORT + 1)
        s.handle_timer(now=0.01 * i)
    s.events()
