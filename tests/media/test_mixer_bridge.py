from __future__ import annotations

import numpy as np
import pytest

from softswitch.media.g711 import PCMU
from softswitch.media.mixer import Mixer, Supervision, SupervisionMode
from softswitch.media.port import BufferPort
from softswitch.media.relay import Leg, RelaySession, RemoteMedia
from softswitch.media.rtp import RtpPacket
from softswitch.media.sdp import RtpCodec


class Source:
    """A port that says one constant value and remembers what it heard."""

    def __init__(self, value: int | None) -> None:
        self.value = value
        self.heard: list[np.ndarray] = []
        self.pulls = 0

    def get_frame(self) -> np.ndarray | None:
        self.pulls += 1
        return None if self.value is None else np.full(160, self.value, np.int16)

    def put_frame(self, frame: np.ndarray) -> None:
        self.heard.append(frame)


def test_sum_with_levels() -> None:
    a, b, sink = Source(1000), Source(-400), Source(None)
    mixer = Mixer()
    mixer.connect(a, sink)
    mixer.connect(b, sink, level=0.5)
    mixer.tick(now=0.0)
    (frame,) = sink.heard
    assert frame.dtype == np.int16 and set(frame.tolist()) == {800}


def test_saturates_instead_of_wrapping_and_counts_it() -> None:
    a, b, sink = Source(30000), Source(30000), Source(None)
    mixer = Mixer()
    mixer.connect(a, sink)
    mixer.connect(b, sink)
    mixer.tick(now=0.0)
    assert set(sink.heard[0].tolist()) == {32767}
    assert mixer.clipped_samples == 160
    low = Mixer()
    c, d, sink2 = Source(-30000), Source(-30000), Source(None)
    low.connect(c, sink2)
    low.connect(d, sink2)
    low.tick(now=0.0)
    assert set(sink2.heard[0].tolist()) == {-32768}


def test_conference_nobody_hears_themselves() -> None:
    people = [Source(v) for v in (1, 10, 100)]
    mixer = Mixer()
    for src in people:
        for dst in people:
            if src is not dst:
                mixer.connect(src, dst)
    mixer.tick(now=0.0)
    assert [int(p.heard[0][0]) for p in people] == [110, 101, 11]
    assert [p.pulls for p in people] == [1, 1, 1]  # one frame per source per tick
    with pytest.raises(ValueError, match="never hears itself"):
        mixer.connect(people[0], people[0])
    with pytest.raises(ValueError, match="level"):
        mixer.connect(people[0], people[1], level=-1)


def test_silent_sources_give_no_frame_and_unheard_sources_are_not_pulled() -> None:
    quiet, sink, lonely = Source(None), Source(None), Source(5)
    mixer = Mixer()
    mixer.connect(quiet, sink)
    mixer.slot(lonely)
    assert mixer.tick(now=0.0) == []
    assert sink.heard == [] and lonely.pulls == 0
    muted, sink2 = Source(7), Source(None)
    mixer.connect(muted, sink2, level=0.0)
    mixer.tick(now=0.02)
    assert sink2.heard == []  # only a muted source spoke: nothing heard


def test_remove_and_disconnect_keep_the_other_links() -> None:
    a, b, c, sink = Source(1), Source(2), Source(4), Source(None)
    mixer = Mixer()
    for src in (a, b, c):
        mixer.connect(src, sink)
    mixer.remove(b)
    mixer.tick(now=0.0)
    assert int(sink.heard[-1][0]) == 5 and len(mixer) == 3
    mixer.disconnect(c, sink)
    mixer.tick(now=0.02)
    assert int(sink.heard[-1][0]) == 1
    mixer.remove(b)  # twice: harmless
    assert {(id(s), id(d)) for s, d, _ in mixer.links()} == {(id(a), id(sink))}


def test_buffer_ports_as_slots() -> None:
    src, dst = BufferPort(), BufferPort()
    mixer = Mixer()
    mixer.connect(src, dst)
    src.put_frame(np.arange(160, dtype=np.int16))
    mixer.tick(now=0.0)
    out = dst.get_frame()
    assert out is not None and out.tolist() == list(range(160))


# --- supervision over real relay sessions -----------------------------------------------------

CALLER, AGENT, SUP = ("198.51.100.1", 4000), ("198.51.100.2", 4000), ("198.51.100.3", 4000)
PCMU_ONLY = (RtpCodec(0, "PCMU", 8000),)


def _rtp(seq: int, value: int, ssrc: int) -> bytes:
    return RtpPacket(0, seq, seq * 160, ssrc, PCMU.encode(np.full(160, value, np.int16))).serialize()


def _setup() -> tuple[Mixer, RelaySession, RelaySession]:
    call = RelaySession(a_port=20000, b_port=20002)
    call.update(Leg.A, RemoteMedia(CALLER, None, PCMU_ONLY), now=0.0)
    call.update(Leg.B, RemoteMedia(AGENT, None, PCMU_ONLY), now=0.0)
    sup = RelaySession(a_port=20004)
    sup.update(Leg.A, RemoteMedia(SUP, None, PCMU_ONLY), now=0.0)
    return Mixer(), call, sup


Heard = list[tuple[int, tuple[str, int], int]]  # (our port, destination, first decoded sample)


def _talk(call: RelaySession, sup: RelaySession, seq: int, now: float) -> Heard:
    """Everybody says one packet (caller 1000, agent 2000, supervisor 4000); returns who heard what."""
    sends = call.on_packet(Leg.A, _rtp(seq, 1000, 0xA), CALLER, now=now)
    sends += call.on_packet(Leg.B, _rtp(seq, 2000, 0xB), AGENT, now=now)
    sends += sup.on_packet(Leg.A, _rtp(seq, 4000, 0xC), SUP, now=now)
    return [(s.local_port, s.dest, int(PCMU.decode(RtpPacket.parse(s.data).payload)[0])) for s in sends]


def _tick(mixer: Mixer, call: RelaySession, sup: RelaySession, now: float) -> Heard:
    mixer.tick(now=now)  # the mixer runs first in each tick (ticker phase MIX)
    sends = call.tick(now=now) + sup.tick(now=now)
    return [(s.local_port, s.dest, int(PCMU.decode(RtpPacket.parse(s.data).payload)[0])) for s in sends]


def _near(value: int, target: int) -> bool:
    return abs(value - target) <= target // 16 + 16  # G.711 quantisation


def test_listen_whisper_barge() -> None:
    mixer, call, sup = _setup()
    watch = Supervision(mixer, call, sup, mode=SupervisionMode.LISTEN)
    heard: Heard = []
    for i in range(3):
        heard += _talk(call, sup, i, now=0.02 * i)
    relayed = {(port, dest) for port, dest, _ in heard}
    assert relayed == {(20002, AGENT), (20000, CALLER)}  # listen: the call is still a plain relay
    ticks = _tick(mixer, call, sup, now=0.06)
    assert [(p, d) for p, d, _ in ticks] == [(20004, SUP)]
    assert _near(ticks[0][2], 3000)  # caller + agent

    watch.set_mode(SupervisionMode.WHISPER)
    heard = []
    for i in range(3, 6):
        heard += _talk(call, sup, i, now=0.02 * i)
    assert {(p, d) for p, d, _ in heard} == {(20000, CALLER)}  # only agent -> caller is still relayed
    ticks = _tick(mixer, call, sup, now=0.12)
    by_dest = {d: v for _, d, v in ticks}
    assert set(by_dest) == {AGENT, SUP}
    assert _near(by_dest[AGENT], 5000)  # caller + supervisor
    assert _near(by_dest[SUP], 3000)

    watch.set_mode(SupervisionMode.BARGE)
    for i in range(6, 9):
        assert _talk(call, sup, i, now=0.02 * i) == []  # everything goes through the mixer now
    by_dest = {d: v for _, d, v in _tick(mixer, call, sup, now=0.18)}
    assert _near(by_dest[CALLER], 6000) and _near(by_dest[AGENT], 5000) and _near(by_dest[SUP], 3000)

    watch.stop()
    assert not call.ticking and not sup.ticking and len(mixer) == 0
    back = _talk(call, sup, 9, now=0.2)
    assert {(p, d) for p, d, _ in back} == {(20002, AGENT), (20000, CALLER)}
