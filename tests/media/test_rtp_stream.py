from __future__ import annotations

import itertools
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.media.g711 import PCMA, PCMU
from softswitch.media.player import LoopingPlayer, PromptPlayer, Sound
from softswitch.media.rtp import RtpPacket, seq_add, ts_diff
from softswitch.media.stream import OutboundStream, Send, StreamSender


def rtp(seq: int, ts: int, ssrc: int, *, pt: int = 0, marker: bool = False) -> bytes:
    return RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, b"\xff" * 160, marker).serialize()


def relay(sender: StreamSender, seq: int, ts: int, ssrc: int, now: float) -> RtpPacket | None:
    out = sender.relay(rtp(seq, ts, ssrc), ssrc=ssrc, seq=seq & 0xFFFF, ts=ts & 0xFFFFFFFF, now=now)
    return None if out is None else RtpPacket.parse(out)


def test_first_source_is_adopted_and_forwarded_untouched() -> None:
    sender = StreamSender()
    data = rtp(100, 8000, 0xAAAA)
    assert sender.relay(data, ssrc=0xAAAA, seq=100, ts=8000, now=0.0) is data
    nxt = rtp(101, 8160, 0xAAAA)
    assert sender.relay(nxt, ssrc=0xAAAA, seq=101, ts=8160, now=0.02) is nxt
    assert sender.identity and sender.ssrc == 0xAAAA


def test_new_ssrc_continues_our_numbering_with_a_marker() -> None:
    sender = StreamSender()
    for i in range(5):
        relay(sender, 100 + i, 8000 + 160 * i, 0xAAAA, now=0.02 * i)
    # a re-INVITE: the phone comes back with a new SSRC and random numbering, 1 s later
    first = relay(sender, 40000, 123456, 0xBBBB, now=1.08)
    assert first is not None
    assert first.ssrc == 0xAAAA
    assert first.sequence_number == 105
    assert first.timestamp == 8000 + 160 * 4 + 8000  # 1 s of wall time, in whole packets
    assert first.marker
    second = relay(sender, 40001, 123456 + 160, 0xBBBB, now=1.10)
    assert second is not None
    assert (second.sequence_number, second.timestamp, second.marker) == (106, first.timestamp + 160, False)
    assert not sender.identity and sender.seams == 1


def test_immediate_switch_advances_at_least_one_packet() -> None:
    sender = StreamSender()
    relay(sender, 1, 1000, 1, now=0.0)
    out = relay(sender, 9, 5, 2, now=0.001)
    assert out is not None and out.timestamp == 1000 + 160 and out.sequence_number == 2


def test_late_packet_from_previous_source_is_dropped() -> None:
    sender = StreamSender()
    relay(sender, 1, 1000, 1, now=0.0)
    relay(sender, 500, 9000, 2, now=0.02)
    assert relay(sender, 2, 1160, 1, now=0.03) is None
    assert sender.stale_dropped == 1
    out = relay(sender, 501, 9160, 2, now=0.04)
    assert out is not None and out.sequence_number == 3
    assert relay(sender, 1, 1000, 1, now=1.0) is None  # old, even after the window
    back = relay(sender, 60, 9000, 1, now=1.02)  # source 1 really is back
    assert back is not None and back.sequence_number == 4 and back.marker


def test_sequence_restart_inside_one_ssrc_is_a_seam() -> None:
    sender = StreamSender()
    relay(sender, 10, 1000, 7, now=0.0)
    relay(sender, 11, 1160, 7, now=0.02)
    out = relay(sender, 30000, 50, 7, now=0.04)
    assert out is not None
    assert (out.sequence_number, out.timestamp, out.marker) == (12, 1320, True)


def test_reordered_packets_keep_their_relative_numbering() -> None:
    sender = StreamSender(ssrc=0x55, sequence=1000, timestamp=0)
    a = relay(sender, 10, 160, 9, now=0.0)
    c = relay(sender, 12, 480, 9, now=0.04)
    b = relay(sender, 11, 320, 9, now=0.045)
    assert a and b and c
    assert [p.sequence_number for p in (a, b, c)] == [1000, 1001, 1002]
    assert [p.timestamp for p in (a, b, c)] == [0, 160, 320]
    assert sender.last_seq == 1002


def test_relay_local_relay_is_seamless() -> None:
    sender = StreamSender(rng=random.Random(3))
    relay(sender, 7, 700, 0x1, now=0.0)
    relay(sender, 8, 860, 0x1, now=0.02)
    moh = [RtpPacket.parse(sender.local(b"\xff" * 160, payload_type=0, samples=160, now=0.04 + 0.02 * i))
           for i in range(3)]
    assert [p.sequence_number for p in moh] == [9, 10, 11]
    assert [p.timestamp for p in moh] == [1020, 1180, 1340]
    assert [p.marker for p in moh] == [True, False, False]
    assert {p.ssrc for p in moh} == {0x1}
    back = relay(sender, 9, 1020, 0x1, now=0.10)  # the same source resumes: still a seam
    assert back is not None
    assert (back.sequence_number, back.timestamp, back.marker) == (12, 1500, True)


def test_local_only_stream_starts_random_and_marks_gaps() -> None:
    sender = StreamSender(rng=random.Random(5))
    p1 = RtpPacket.parse(sender.local(b"\x00" * 160, payload_type=8, samples=160, now=0.0))
    p2 = RtpPacket.parse(sender.local(b"\x00" * 160, payload_type=8, samples=160, now=0.021))
    p3 = RtpPacket.parse(sender.local(b"\x00" * 160, payload_type=8, samples=160, now=0.1))  # ticks skipped
    assert p1.marker and not p2.marker and p3.marker
    assert p2.sequence_number == seq_add(p1.sequence_number, 1)
    assert ts_diff(p2.timestamp, p1.timestamp) == 160
    assert ts_diff(p3.timestamp, p2.timestamp) == 640  # 79 ms rounds to 4 whole packets
    assert p1.payload_type == 8 and p1.ssrc == sender.ssrc


_segment = st.tuples(
    st.booleans(),  # relayed (True) or local (False)
    st.integers(1, 6),  # packets
    st.floats(0.0, 2.0),  # silence before the segment, seconds
    st.integers(0, 3),  # which phone sends a relayed segment: sources come back
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_segment, min_size=1, max_size=8), st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4))
def test_output_is_one_continuous_stream_whatever_feeds_it(segments: list[tuple], seq0: list[int]) -> None:
    """Phones keep their own numbering (sequence +1 per packet, timestamp = their clock); whatever mix of
    phones and local audio feeds the sender, the receiver sees one SSRC, sequence +1 and time moving on."""
    sender = StreamSender(rng=random.Random(0))
    next_seq = list(seq0)
    clock_base = [0x10000000 * (k + 1) for k in range(4)]
    now = 0.0
    out: list[RtpPacket] = []
    for relayed, count, gap, phone in segments:
        now += gap
        for _ in range(count):
            now += 0.02
            if relayed:
                ts = clock_base[phone] + round(now * 8000)
                p = relay(sender, next_seq[phone], ts, 0x100 + phone, now)
                next_seq[phone] = seq_add(next_seq[phone], 1)
                if p is not None:  # None: a late packet of the source we just left, legal to drop
                    out.append(p)
            else:
                out.append(RtpPacket.parse(sender.local(b"\xff" * 160, payload_type=0, samples=160, now=now)))
    assert len({p.ssrc for p in out}) == 1
    for prev, cur in itertools.pairwise(out):
        assert cur.sequence_number == seq_add(prev.sequence_number, 1)
        assert ts_diff(cur.timestamp, prev.timestamp) >= 160


def test_outbound_stream_packetises_a_looping_player() -> None:
    sound = Sound((np.sin(np.arange(1600) * 2 * np.pi * 440 / 8000) * 6000).astype(np.int16))
    stream = OutboundStream(LoopingPlayer(sound), codec=PCMA, local_port=20000, dest=("192.0.2.9", 4000),
                            sender=StreamSender(rng=random.Random(1)))
    sends = [s for i in range(12) for s in stream.tick(now=0.02 * i)]
    assert all(isinstance(s, Send) and s.local_port == 20000 and s.dest == ("192.0.2.9", 4000) for s in sends)
    packets = [RtpPacket.parse(s.data) for s in sends]
    assert {p.payload_type for p in packets} == {8}
    payload = b"".join(p.payload for p in packets)
    reference = PCMA.encode(np.concatenate([sound.samples, sound.samples[:320]]))
    assert payload == reference  # the cached encoding is the plain encoding, looped
    assert [ts_diff(b.timestamp, a.timestamp) for a, b in itertools.pairwise(packets)] == [160] * 11


def test_outbound_stream_prompt_finishes_and_no_destination_sends_nothing() -> None:
    stream = OutboundStream(PromptPlayer([np.ones(200, np.int16)]), codec=PCMU, local_port=1, dest=None)
    assert stream.tick(now=0.0) == []
    stream.dest = ("192.0.2.1", 5)
    assert len(stream.tick(now=0.02)) == 1  # 160 samples
    assert len(stream.tick(now=0.04)) == 1  # the last 40, padded with silence
    assert len(stream.tick(now=0.06)) == 0 and stream.done
    stream.source = None
    assert stream.tick(now=0.06) == [] and not stream.done


def test_seam_after_dtmf_does_not_go_back_in_time() -> None:
    sender = StreamSender()
    for i in range(3):
        relay(sender, 10 + i, 1000 + 160 * i, 0x1, now=0.02 * i)  # audio up to ts 1320
    for i in range(5):  # a telephone-event started at ts 1480: every packet repeats it
        relay(sender, 13 + i, 1480, 0x1, now=0.06 + 0.02 * i)
    out = relay(sender, 7000, 99, 0x2, now=0.16)  # re-INVITE right after the digit
    assert out is not None
    assert ts_diff(out.timestamp, 1480) >= 160
    assert out.timestamp == 1480 + 160 * 5  # 100 ms after the event's last new timestamp, whole packets
