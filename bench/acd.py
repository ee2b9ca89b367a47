"""Waiting callers end to end: `python bench/acd.py [--levels 100 200 300] [--modes silent echo]`.

The question: what does the switch's CPU pay per caller waiting in a queue with music on hold? (Target: 300
waiting callers with music under half a core.) For each level N and each caller mode, on a fresh switch:

* one queue (number 7000) with the default synthesised music on hold (`softswitch.prompts`, generated into
  a temporary sounds dir) and no agent logged in, so every caller waits; `max_wait` an hour;
* N callers: N - `--probes` from sipp (tests/sipp/uac_basic.xml: INVITE with a PCMU offer -> 200 -> ACK
  -> hold for the whole run -> BYE, at `--rate` calls/s) and `--probes` from this script (raw SIP over
  UDP, each with its own RTP socket);
* caller modes: `silent` (callers send no RTP; `rtp_timeout` raised so the switch keeps them) and `echo`
  (sipp's `-rtp_echo` sends every packet of music straight back, the probes send 20 ms silence frames,
  so the switch also receives 50 packets/s per caller, as from real phones);
* once all N are waiting (`GET /api/queues`) and 2 s have passed, for `--window` seconds: the switch's CPU
  (user + system, every process, psutil) as % of one core and per waiting caller; its RSS; the probes'
  reception of the music (packets against the 50/s expected, sequence gaps, the longest gap between two
  packets, RFC 3550 interarrival jitter, whether the audio is sound rather than silence); and the media
  clock's health: `/api/status` does not expose the ticker's counters (ticks, late, skipped), so the
  switch's log is searched for its "media clock skipped N ticks" warnings.

The switch's RTP ports come from 30000-32767 (see `rtp_range`), away from the ranges the tests use.
Then `bench/acd_engine.py --quick` (the engine alone, no I/O) is run for its figures, unless `--no-engine`.
This machine has 2 cores: sipp and the probes share them with the switch (sipp's CPU is printed too).
Figures only: nothing here passes or fails on speed; a non-zero exit means the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import math
import re
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from bench.common import ResourceSampler, format_table
from softswitch.media.g711 import decode_ulaw
from softswitch.prompts import generate
from tests.integration.harness.calls import sdp_offer
from tests.integration.harness.ports import free_udp_range
from tests.integration.harness.rawsip import SipClient
from tests.integration.harness.server import SoftswitchServer
from tests.integration.harness.sipp import SippRun, sipp_available, start_sipp

QUEUE_NUMBER = "7000"
PACKET_S = 0.020
SILENCE_PCMU = b"\xff" * 160
_RTP = struct.Struct("!BBHII")


# ----------------------------------------------------------------------------------------------------------
# a probe caller: raw SIP, its own RTP socket, statistics of what it receives


@dataclass
class ProbeStats:
    packets: int = 0
    lost: int = 0
    max_gap_ms: float = 0.0
    jitter_ms: float = 0.0
    rms: float = 0.0
    window_s: float = 0.0

    @property
    def expected(self) -> float:
        return self.window_s / PACKET_S


@dataclass
class _Counters:
    packets: int = 0
    highest_seq: int | None = None
    lost: int = 0
    last_arrival: float | None = None
    max_gap: float = 0.0
    transit: float | None = None
    jitter: float = 0.0  # RFC 3550 A.8, in timestamp units
    square_sum: float = 0.0
    samples: int = 0


class ProbeCaller:
    """One waiting caller placed by this script: INVITE -> 200 -> ACK; receives the music on its own RTP
    socket (counted, checked for sound), and with `send_rtp` sends 20 ms silence frames back."""

    def __init__(self, host: str, port: int, *, send_rtp: bool, index: int) -> None:
        self.sip = SipClient(host, port, timeout=5.0)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(0.2)
        self.rtp_port = self.rtp.getsockname()[1]
        self.send_rtp = send_rtp
        self.index = index
        self.remote_rtp: tuple[str, int] | None = None
        self.counters = _Counters()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.error: str | None = None

    def call(self) -> None:
        uri = f"sip:{QUEUE_NUMBER}@{self.sip.host}:{self.sip.port}"
        contact = f"<sip:probe{self.index}@127.0.0.1:{self.sip.local[1]}>"
        data, call_id, cseq = self.sip.request(
            "INVITE",
            uri,
            from_uri=f"sip:probe{self.index}@127.0.0.1",
            headers=[("Contact", contact), ("Content-Type", "application/sdp")],
            body=sdp_offer(self.rtp_port),
        )
        answer = self.sip.ask(data, call_id, cseq, timeout=5.0)
        if answer is None or answer.status != 200:
            raise RuntimeError(f"probe {self.index}: INVITE answered {answer and answer.status_line}")
        self.sip.ack(answer, uri)
        body = answer.body.decode(errors="replace")
        media = re.search(r"^m=audio (\d+)", body, re.M)
        address = re.search(r"^c=IN IP4 (\S+)", body, re.M)
        if media and address:
            self.remote_rtp = (address.group(1), int(media.group(1)))
        self.threads.append(threading.Thread(target=self._receive, daemon=True, name=f"probe{self.index}-rx"))
        if self.send_rtp and self.remote_rtp is not None:
            self.threads.append(
                threading.Thread(target=self._send, daemon=True, name=f"probe{self.index}-tx")
            )
        for thread in self.threads:
            thread.start()

    def reset(self) -> None:
        with self.lock:
            self.counters = _Counters()
            self.started = time.perf_counter()

    def stats(self) -> ProbeStats:
        with self.lock:
            c = self.counters
            window = time.perf_counter() - self.started
            rms = math.sqrt(c.square_sum / c.samples) / 32768.0 if c.samples else 0.0
            return ProbeStats(c.packets, c.lost, c.max_gap * 1000.0, c.jitter / 8.0, rms, window)

    def _receive(self) -> None:
        while not self.stop_event.is_set():
            try:
                data = self.rtp.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.perf_counter()
            if len(data) < 12 or not 0 <= (data[1] & 0x7F) < 64:
                continue
            _, _, seq, ts, _ = _RTP.unpack_from(data)
            pcm = decode_ulaw(data[12:]).astype(np.float64)
            with self.lock:
                c = self.counters
                c.packets += 1
                if c.highest_seq is not None:
                    step = (seq - c.highest_seq) & 0xFFFF
                    if 0 < step < 3000:
                        c.lost += step - 1
                        c.highest_seq = seq
                else:
                    c.highest_seq = seq
                if c.last_arrival is not None:
                    c.max_gap = max(c.max_gap, now - c.last_arrival)
                c.last_arrival = now
                transit = now * 8000.0 - ts
                if c.transit is not None:
                    d = abs(transit - c.transit)
                    if d < 8000 * 10:  # ignore a timestamp seam
                        c.jitter += (d - c.jitter) / 16.0
                c.transit = transit
                c.square_sum += float(np.dot(pcm, pcm))
                c.samples += pcm.size

    def _send(self) -> None:
        assert self.remote_rtp is not None
        ssrc = secrets.randbits(32)
        seq = secrets.randbits(16)
        ts = secrets.randbits(32)
        next_at = time.perf_counter()
        while not self.stop_event.is_set():
            packet = _RTP.pack(0x80, 0, seq, ts, ssrc) + SILENCE_PCMU
            try:
                self.rtp.sendto(packet, self.remote_rtp)
            except OSError:
                return
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 160) & 0xFFFFFFFF
            next_at += PACKET_S
            self.stop_event.wait(max(0.0, next_at - time.perf_counter()))

    def close(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(1.0)
        self.rtp.close()
        self.sip.close()


# ----------------------------------------------------------------------------------------------------------
# one level


@dataclass
class LevelResult:
    mode: str
    level: int
    waiting: int = 0
    ramp_s: float = 0.0
    cpu_percent: float = 0.0
    rss_mib: float = 0.0
    sipp_cpu_percent: float = 0.0
    probes: list[ProbeStats] = field(default_factory=list)
    skipped_tick_warnings: int = 0
    sipp_failed: int = 0
    error: str | None = None

    @property
    def per_caller(self) -> float:
        return self.cpu_percent / self.waiting if self.waiting else 0.0


def rtp_range(level: int) -> str | None:
    """RTP ports for a switch with `level` waiting callers (each binds two RTP/RTCP pairs: its own leg and
    the agent leg to come), from 30000-32767 when they fit: the harness's tests pick 200-port ranges in
    10000-30000 and the kernel's ephemeral ports start at 32768, so a benchmark there disturbs neither."""
    size = 4 * level + 200
    if size > 32768 - 30000:
        return None
    first, last = free_udp_range(size, low=30000, high=32768)
    return f"{first}-{last}"


def start_switch(workdir: Path, sounds: Path, level: int, mode: str) -> SoftswitchServer:
    ports = rtp_range(level)
    server = SoftswitchServer(
        workdir,
        [{"id": "agent1", "password": "pw-agent1", "extension": "1001", "skills": {"other": 5}}],
        transports=("udp",),
        name=f"softswitch-{mode}-{level}",
        log_level="info",
        rtp_range_size=4 * level + 200,  # used when `ports` is None
        extra_config={
            "server": {
                **({"rtp_ports": ports} if ports else {}),
                "sounds_dir": str(sounds),
                "security": {"auth_failures": 1_000_000, "ban_time": 0},
                # silent callers send nothing: keep them for the whole run
                "rtp_timeout": 3600 if mode == "silent" else 30,
            },
            "queues": [
                {
                    "name": "waiting",
                    "numbers": [QUEUE_NUMBER],
                    "skills": {"sales": 5},  # nobody has it: every caller waits
                    "max_wait": 3600,
                    "join_empty": True,
                }
            ],
        },
    )
    server.start(timeout=60)
    return server


def waiting(server: SoftswitchServer) -> int:
    for entry in server.api("/api/queues", timeout=10)["queues"]:
        if entry["name"] == "waiting":
            return int(entry["waiting"])
    return 0


def skipped_ticks(server: SoftswitchServer) -> int:
    """How many ticks the media clock skipped, from its warnings in the log ("skipped N ticks")."""
    total = 0
    with server._log_cond:
        records = list(server.log_events)
    for record in records:
        match = re.search(r"media clock skipped (\d+) ticks", str(record.get("msg", "")))
        if match:
            total += int(match.group(1))
    return total


def run_level(args: argparse.Namespace, workdir: Path, sounds: Path, level: int, mode: str) -> LevelResult:
    result = LevelResult(mode, level)
    probes_n = min(args.probes, level)
    sipp_calls = level - probes_n
    ramp_estimate = sipp_calls / args.rate
    hold_s = ramp_estimate + args.window + 30.0
    server = start_switch(workdir, sounds, level, mode)
    probes: list[ProbeCaller] = []
    run: SippRun | None = None
    try:
        started = time.perf_counter()
        for index in range(probes_n):
            probe = ProbeCaller("127.0.0.1", server.udp_port, send_rtp=mode == "echo", index=index)
            probes.append(probe)
            probe.call()
        if sipp_calls:
            extra = ["-d", str(int(hold_s * 1000)), "-rp", "1000ms"]
            if mode == "echo":
                extra.append("-rtp_echo")
            run = start_sipp(
                "uac_basic",
                f"127.0.0.1:{server.udp_port}",
                directory=workdir,
                service=QUEUE_NUMBER,
                calls=sipp_calls,
                rate=args.rate,
                limit=sipp_calls,
                timeout=hold_s + 60,
                extra_args=extra,
                trace_rtt=False,
            )
        deadline = time.perf_counter() + ramp_estimate + 30.0
        while (count := waiting(server)) < level:
            if time.perf_counter() > deadline or (run is not None and not run.proc.alive()):
                result.error = f"only {count} of {level} callers waiting"
                break
            time.sleep(0.25)  # polling the control API while sipp ramps up
        result.ramp_s = time.perf_counter() - started
        time.sleep(2.0)  # let the ramp's signalling work finish before measuring
        processes = server.processes()
        sampler = ResourceSampler(processes)
        sipp_proc = psutil.Process(run.pid) if run is not None else None
        sipp_cpu0 = sum(sipp_proc.cpu_times()[:2]) if sipp_proc else 0.0
        skipped0 = skipped_ticks(server)
        for probe in probes:
            probe.reset()
        sampler.start()
        time.sleep(args.window)  # the measurement window
        usage = sampler.stop()
        if sipp_proc is not None:
            sipp_cpu = sum(sipp_proc.cpu_times()[:2]) - sipp_cpu0
            result.sipp_cpu_percent = 100.0 * sipp_cpu / usage.wall_seconds
        result.probes = [probe.stats() for probe in probes]
        result.cpu_percent = usage.cpu_percent
        result.rss_mib = usage.rss_main_mib
        result.skipped_tick_warnings = skipped_ticks(server) - skipped0
        result.waiting = waiting(server)
    except Exception as exc:  # report and go on with the next level
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        for probe in probes:
            probe.close()
        if run is not None:
            sipp_result = run.stop()
            result.sipp_failed = sipp_result.failed
        server.stop(timeout=30)
    return result


# ----------------------------------------------------------------------------------------------------------
# report


def report(results: list[LevelResult]) -> None:
    headers = [
        "callers", "waiting", "ramp s", "CPU %core", "per caller", "RSS MiB", "sipp %", "RTP rx/exp",
        "lost", "max gap ms", "jitter ms", "music rms", "skipped ticks",
    ]  # fmt: skip
    for mode in dict.fromkeys(r.mode for r in results):
        rows = []
        for r in (x for x in results if x.mode == mode):
            if r.probes:
                received = sum(p.packets for p in r.probes)
                expected = sum(p.expected for p in r.probes)
                rx = f"{100.0 * received / expected:.1f}%" if expected else "-"
                lost = str(sum(p.lost for p in r.probes))
                gap = f"{max(p.max_gap_ms for p in r.probes):.0f}"
                jitter = f"{statistics.mean(p.jitter_ms for p in r.probes):.2f}"
                level = f"{min(p.rms for p in r.probes):.3f}"
            else:
                rx = lost = gap = jitter = level = "-"
            rows.append(
                [
                    str(r.level),
                    str(r.waiting),
                    f"{r.ramp_s:.1f}",
                    f"{r.cpu_percent:.1f}",
                    f"{r.per_caller:.3f}",
                    f"{r.rss_mib:.0f}",
                    f"{r.sipp_cpu_percent:.1f}",
                    rx,
                    lost,
                    gap,
                    jitter,
                    level,
                    str(r.skipped_tick_warnings),
                ]
            )
        what = {
            "silent": "callers send no RTP (only the switch's music flows)",
            "echo": "callers send 50 packets/s back (sipp -rtp_echo; probes send silence)",
        }[mode]
        print(f"\nwaiting callers with music on hold, {what}:")
        print(format_table(headers, rows))
        for r in (x for x in results if x.mode == mode and x.error):
            print(f"  {r.level}: {r.error}")
        slope = [(r.waiting, r.cpu_percent) for r in results if r.mode == mode and r.waiting]
        if len(slope) >= 2:
            xs, ys = zip(*slope, strict=True)
            k, c = np.polyfit(np.array(xs, float), np.array(ys, float), 1)
            print(f"  fit: CPU % of a core = {c:.1f} + {k:.3f} x waiting callers")
            at300 = c + k * 300
            print(f"  at 300 waiting callers: {at300:.0f}% of a core ({at300 / 100:.2f} core; target < 0.5)")
    print(
        "\nCPU: user + system of the switch's processes over the window, % of one core. RTP rx/exp: packets"
        " the probe callers received against 50/s each; max gap: longest silence between two packets at a"
        " probe; jitter: RFC 3550 interarrival jitter at the probes; music rms: the quietest probe's level"
        " (0 = silence). Skipped ticks: the media clock's own warnings (late ticks it caught up are not"
        " exposed by the switch)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 200, 300])
    parser.add_argument("--modes", nargs="+", choices=("silent", "echo"), default=["silent", "echo"])
    parser.add_argument("--window", type=float, default=10.0, help="seconds of measurement per level")
    parser.add_argument("--rate", type=float, default=50.0, help="sipp's call rate while ramping up")
    parser.add_argument(
        "--probes", type=int, default=10, help="callers placed by this script, with RTP stats"
    )
    parser.add_argument("--no-engine", dest="engine", action="store_false", help="skip acd_engine.py --quick")
    parser.add_argument("--workdir", type=Path, help="keep logs and sipp files here (default: a temp dir)")
    args = parser.parse_args(argv)
    # SIGTERM (from run_all.py's timeout) becomes SystemExit, so that `finally` stops the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if sipp_available() is None:
        print("sipp is not installed (apt-get install sip-tester); nothing to measure", file=sys.stderr)
        return 2
    results: list[LevelResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-acd-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        sounds = workdir / "sounds"
        generate(sounds, if_missing=True)
        for mode in args.modes:
            for level in args.levels:
                result = run_level(args, workdir / mode, sounds, level, mode)
                results.append(result)
                state = result.error or "ok"
                print(
                    f"{mode:6} {level:4} callers: {result.waiting} waiting, CPU {result.cpu_percent:.1f}% "
                    f"({result.per_caller:.3f}% per caller), {state}",
                    flush=True,
                )
    report(results)
    if args.engine:
        print("\nthe ACD engine alone (bench/acd_engine.py --quick):", flush=True)
        engine = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("acd_engine.py")), "--quick"], check=False
        )
        if engine.returncode != 0:
            print(f"acd_engine.py exited {engine.returncode}")
            return 1
    return 0 if all(r.error is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
