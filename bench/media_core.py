"""Media core benchmarks without sockets: the relay hot path, taps, the mixer, music on hold.

Run: .venv/bin/python bench/media_core.py [--quick]
Prints figures; asserts nothing. Each figure is the best of several repeats (least disturbed by the rest of
the machine), on one core of whatever machine runs it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from softswitch.media.g711 import PCMU
from softswitch.media.mixer import Mixer
from softswitch.media.player import LoopingPlayer, PromptPlayer, Sound
from softswitch.media.port import BufferPort
from softswitch.media.relay import Leg, RelaySession, RemoteMedia
from softswitch.media.rtp import RtpPacket
from softswitch.media.sdp import RtpCodec
from softswitch.media.stream import OutboundStream

A, B = ("198.51.100.1", 4000), ("198.51.100.2", 5000)
CODECS = (RtpCodec(0, "PCMU", 8000), RtpCodec(101, "telephone-event", 8000))
PACKET_INTERVAL = 0.02


def best_of(repeats: int, fn: Callable[[], float]) -> tuple[float, float]:
    """(best, median) of `repeats` runs of `fn`, which returns seconds."""
    runs = [fn() for _ in range(repeats)]
    return min(runs), statistics.median(runs)


def make_session() -> RelaySession:
    s = RelaySession(a_port=20000, b_port=20002)
    s.update(Leg.A, RemoteMedia(A, None, CODECS), now=0.0)
    s.update(Leg.B, RemoteMedia(B, None, CODECS), now=0.0)
    return s


def make_stream(count: int, ssrc: int, seq0: int = 1000) -> list[bytes]:
    payload = PCMU.encode((np.sin(np.arange(160) * 0.3) * 8000).astype(np.int16))
    return [RtpPacket(0, (seq0 + i) & 0xFFFF, 160 * i, ssrc, payload).serialize() for i in range(count)]


def relay_pps(packets: list[bytes], *, tap: bool, rewrite: bool) -> float:
    s = make_session()
    s.on_packet(Leg.B, make_stream(1, 0xB)[0], B, now=0.0)  # latch B so A's packets have a destination
    if rewrite:  # a source switch makes every later packet go through the header rewrite
        s.on_packet(Leg.A, make_stream(1, 0xA0, seq0=50_000)[0], A, now=0.0)
    taps = [s.tap(Leg.A)] if tap else []
    on_packet = s.on_packet
    leg = Leg.A
    start = time.perf_counter()
    now = 0.0
    for i, pkt in enumerate(packets):
        now += PACKET_INTERVAL
        on_packet(leg, pkt, A, now=now)
        if taps and i % 50 == 49:  # a recorder drains once a second
            taps[0].drain()
    elapsed = time.perf_counter() - start
    assert s.stats(Leg.A).forwarded == len(packets) + (1 if rewrite else 0)
    return elapsed


def mixer_tick_cost(n_ports: int, ticks: int) -> float:
    """A conference of n ports, everyone hears everyone else; every source has a frame each tick."""
    ports = [BufferPort(max_samples=10 * 160) for _ in range(n_ports)]
    mixer = Mixer()
    for src in ports:
        for dst in ports:
            if src is not dst:
                mixer.connect(src, dst)
    frame = (np.sin(np.arange(160) * 0.2) * 3000).astype(np.int16)
    start = time.perf_counter()
    for t in range(ticks):
        for p in ports:
            p.put_frame(frame)
        mixer.tick(now=t * 0.02)
        for p in ports:
            p.get_frame()  # the sink side drains what the mixer gave it
    return (time.perf_counter() - start) / ticks


def moh_tick_cost(n_streams: int, ticks: int, *, pre_encoded: bool, via_relay: bool) -> float:
    """Per-tick cost of n callers hearing music on hold (each at its own position)."""
    rng = np.random.default_rng(1)
    music = Sound((rng.standard_normal(8000 * 30) * 3000).astype(np.int16), name="moh")
    tickables: list[Callable[..., list]] = []
    for i in range(n_streams):
        player = LoopingPlayer(music, position=i * 977)
        source = player if pre_encoded else PromptPlayer([music] * 100)  # PromptPlayer: encodes per frame
        if via_relay:
            s = RelaySession(a_port=20000 + 2 * i)
            s.update(Leg.A, RemoteMedia(("198.51.100.9", 4000 + i), None, CODECS), now=0.0)
            s.feed(Leg.A, source)
            tickables.append(s.tick)
        else:
            dest = ("198.51.100.9", 4000 + i)
            stream = OutboundStream(source, codec=PCMU, local_port=20000 + 2 * i, dest=dest)
            tickables.append(stream.tick)
    start = time.perf_counter()
    sent = 0
    for t in range(ticks):
        now = t * 0.02
        for tick in tickables:
            sent += len(tick(now=now))
    elapsed = time.perf_counter() - start
    assert sent == n_streams * ticks
    return elapsed / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer packets and repeats (a smoke run)")
    args = parser.parse_args()
    n_packets = 20_000 if args.quick else 200_000
    repeats = 2 if args.quick else 5
    ticks = 50 if args.quick else 500

    print(f"media core benchmark (python {sys.version.split()[0]}, numpy {np.__version__})")
    print()
    packets = make_stream(n_packets, 0xA)
    print(f"RelaySession.on_packet, PCMU 20 ms, {n_packets} packets, latched:")
    rows = [
        ("forward untouched (no tap)", dict(tap=False, rewrite=False)),
        ("forward with header rewrite", dict(tap=False, rewrite=True)),
        ("forward + 1 tap (G.711 decode)", dict(tap=True, rewrite=False)),
    ]
    base_us = 0.0
    for label, kw in rows:
        best, median = best_of(repeats, partial(relay_pps, packets, **kw))
        us = best / n_packets * 1e6
        base_us = base_us or us
        pps = n_packets / best
        calls = pps / (2 * 50)  # a call is two directions of 50 packets/s
        print(
            f"  {label:34s} {us:6.2f} us/packet  {pps:10,.0f} packets/s  = {calls:6,.0f} calls/core"
            f"  (median {median / n_packets * 1e6:.2f} us)"
        )
    target = 500 * 2 * 50
    print(
        f"  target 500 calls = {target:,} packets/s -> {target * base_us / 1e6 * 100:.1f} % of one core"
        " on the untouched path (relay logic only, no socket syscalls)"
    )
    print()

    print("Mixer.tick, conference of N (everyone hears everyone else), per 20 ms tick:")
    for n in (3, 10, 30, 100):
        best, _ = best_of(repeats, partial(mixer_tick_cost, n, ticks))
        best *= ticks
        per_tick = best / ticks
        print(
            f"  N={n:3d}  {per_tick * 1e6:8.1f} us/tick  = {per_tick / 0.02 * 100:5.2f} % of one core"
            " (includes feeding and draining the N buffer ports)"
        )
    print()

    print("Music on hold, 300 callers, each at its own position in one shared 30 s sound, per 20 ms tick:")
    cases = [
        ("LoopingPlayer + OutboundStream, pre-encoded", dict(pre_encoded=True, via_relay=False)),
        ("PromptPlayer + OutboundStream, encode per frame", dict(pre_encoded=False, via_relay=False)),
        ("RelaySession.feed + tick (the call path), pre-encoded", dict(pre_encoded=True, via_relay=True)),
    ]
    for label, kw in cases:
        best, _ = best_of(repeats, partial(moh_tick_cost, 300, ticks, **kw))
        best *= ticks
        per_tick = best / ticks
        print(f"  {label:55s} {per_tick * 1e6:8.0f} us/tick = {per_tick / 0.02 * 100:5.1f} % of one core")
    print("  (budget: 300 waiting callers under half a core = 50 %; socket sendto not included)")


if __name__ == "__main__":
    main()
