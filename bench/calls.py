"""Call rate and relayed media: `python bench/calls.py [--duration 20] [--target softswitch|kamailio|both]`.

Part 1, call rate (`--part rate`). A sipp caller (tests/sipp/uac_basic.xml: INVITE -> 100/180 -> 200 ->
ACK -> `--hold-ms` of talk -> BYE -> 200, no RTP) calls a sipp callee (uas_answer.xml) registered as an
agent, over UDP:
* softswitch: the caller is a trunk (source 127.0.0.1/32) dialling a DID mapped to the agent's extension,
  so no digest; every call is two dialogs with media anchored at the relay (two RTP port pairs bound),
  a CDR written to SQLite, the call logged at `--log-level`;
* kamailio: Kamailio 5.6 as a stateful proxy (tm + record-route + usrloc lookup, INVITE auth off,
  `--kamailio-children` workers): signalling only, the reference for the ratio.
The search is register.py's: ramp (doubling from `--start-rate`, `--probe` seconds a step), bisect to 10 %,
confirm over `--duration`; a step is good when under 0.1 % of the calls failed on the caller's or the
callee's side, every planned call started and the achieved rate is at least 95 % of the target. After a
bad step the server is restarted. Reported: the best rate, the server's CPU (all its processes, % of one
core) and CPU per call (ms), sipp's CPU, INVITE -> 200 latency (sipp, 1 ms resolution).

Part 2, concurrent calls with RTP both ways (`--part media`, softswitch only: Kamailio does not touch
media). For each of `--levels` (default 100, 300, 500, 1000): a fresh switch; sipp callers set up that many
calls at `--setup-rate` (uac_rtp_stream.xml: G.711 u-law at 50 packets/s for the whole call, looped from a
file) to a sipp callee started with -rtp_echo (every packet goes back to its sender), so every call
carries 50 packets/s in each direction through the relay (100 relayed packets/s a call). Once all calls
are up and 2 s have passed, for `--duration` seconds:
* the switch's CPU (% of one core) is sampled;
* probe calls (`--probes`, default 4) placed by this script with its own RTP: 160-byte packets every
  20 ms stamped with the send time, through the switch to the echo and back; on return the transit time
  (same clock) and loss are computed. A direct probe stream to the echo port, without the switch, measures
  the machine's own noise under the same load. "Added jitter" is the switch path's p99 transit variation
  (p99 - p50 of transit) minus the direct path's: the delay variation the relay adds over the round trip
  (two relay passes, caller -> agent and back);
* loss: the probes' exact count (sent - received), and over every call the relay's own counters from the
  call records (sequence gaps in what it received from the callers, and from the echo, which includes
  anything lost on the way caller -> relay -> agent).
If the calls do not all come up (or the machine cannot keep up), the table says how many did and why.

This machine has 2 cores: sipp (signalling, RTP streams, echo), the probes and the server share them, so
sipp's CPU (printed) limits the top levels as much as the server does. Figures only: nothing here passes
or fails on speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import resource
import secrets
import select
import signal
import socket
import sqlite3
import statistics
import struct
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from common import ResourceSampler, format_table, highest_rate, kamailio_available, settle

# (importing common put the repository root on sys.path)
from softswitch.media.udp import DEFAULT_QUARANTINE
from tests.integration.harness.kamailio import Kamailio
from tests.integration.harness.ports import free_port, free_udp_range
from tests.integration.harness.rawsip import SipClient
from tests.integration.harness.server import SoftswitchServer
from tests.integration.harness.sipp import SippResult, SippRun, percentile, sipp_available, start_sipp

MAX_FAILURE_RATIO = 0.001
MIN_ACHIEVED = 0.95
AGENT = ("agent", "pw-agent-x", "1001")
DID = "+37167000100"
SWITCH_RTP = (10000, 25999)  # the switch's relay ports; sipp's media ports are picked above them
QUARANTINE_S = float(DEFAULT_QUARANTINE)  # how long a released RTP port pair rests before reuse
SIPP_MEDIA = (26000, 30000)
SIPP_TUNING = ["-max_recv_loops", "10000", "-max_sched_loops", "10000", "-buff_size", "4194304"]


# -- the servers under test ----------------------------------------------------------------------------------


class CallTarget(Protocol):
    name: str
    address: str
    number: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def restart(self) -> None: ...
    def processes(self) -> list[psutil.Process]: ...
    def register(self, port: int) -> None: ...
    def describe(self) -> str: ...
    def log_tail(self) -> str: ...
    def port_exhaustions(self) -> int: ...


class SoftswitchCalls:
    """`softswitch serve` with one agent (the sipp callee) and a trunk at 127.0.0.1/32 with one DID."""

    def __init__(self, workdir: Path, *, log_level: str) -> None:
        self.name = "softswitch"
        self.number = DID
        user, password, extension = AGENT
        self.server = SoftswitchServer(
            workdir,
            [{"id": user, "password": password, "extension": extension}],
            transports=("udp",),
            log_level=log_level,
            name="softswitch-bench",
            extra_config={
                "server": {
                    "rtp_ports": f"{SWITCH_RTP[0]}-{SWITCH_RTP[1]}",
                    "security": {"auth_failures": 1_000_000, "ban_time": 0},
                    "registrar": {"qualify_interval": 0},  # sipp would take OPTIONS for failed calls
                },
                "trunks": [{"name": "bench", "match": {"source": "127.0.0.1/32"}, "dids": {DID: extension}}],
            },
        )
        self.log_level = log_level

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.udp_port}"

    def start(self) -> None:
        self.server.start(timeout=60)

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server.restart(timeout=60)

    def processes(self) -> list[psutil.Process]:
        return self.server.processes()

    def register(self, port: int) -> None:
        register_at(self.server.udp_port, self.server.domain, port)

    def port_exhaustions(self) -> int:
        """Calls that found no free RTP port pair so far (error lines of this run of the switch)."""
        with self.server._log_cond:
            return sum("PortsExhausted" in str(e.get("exc", "")) for e in self.server.log_events)

    def relay_capacity(self, hold_s: float) -> float:
        """Calls a second the RTP range sustains: a call holds two port pairs for its length plus the
        allocator's quarantine (softswitch/media/udp.py DEFAULT_QUARANTINE)."""
        pairs = (SWITCH_RTP[1] - SWITCH_RTP[0] + 1) // 2
        return pairs / (2 * (hold_s + QUARANTINE_S))

    def describe(self) -> str:
        return (
            f"softswitch serve (pid {self.server.pid}, one event loop + store writer thread, SQLite CDRs, "
            f"media anchored, log level {self.log_level})"
        )

    def log_tail(self) -> str:
        return self.server.log_tail()


class KamailioCalls:
    """Kamailio 5.6 as a stateful proxy: the agent registers with digest, INVITEs are not challenged."""

    def __init__(self, workdir: Path, *, children: int) -> None:
        self.name = "kamailio"
        self.number = AGENT[0]
        self.children = children
        self.server = Kamailio(
            workdir,
            {AGENT[0]: AGENT[1]},
            children=children,
            invite_auth=False,
            debug=1,
            shm_mb=256,
            name="kamailio-bench",
        )

    @property
    def address(self) -> str:
        return self.server.address

    def start(self) -> None:
        self.server.start(timeout=20)

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server.stop()
        self.server.start(timeout=20)

    def processes(self) -> list[psutil.Process]:
        return self.server.processes()

    def register(self, port: int) -> None:
        register_at(self.server.port, self.server.domain, port)

    def port_exhaustions(self) -> int:
        return 0

    def describe(self) -> str:
        return (
            f"kamailio 5.6 stateful proxy (tm, record-route, usrloc db_mode 0; children={self.children}, "
            f"{len(self.processes())} processes)"
        )

    def log_tail(self) -> str:
        return self.server.log_tail()


def register_at(server_port: int, domain: str, port: int) -> None:
    """REGISTER the agent with digest from UDP 127.0.0.1:`port` (where its sipp callee then listens)."""
    user, password, _ = AGENT
    with SipClient("127.0.0.1", server_port, local_port=port) as client:
        _, answer = client.register(user, password, domain=domain, expires=3600)
    if answer is None or answer.status != 200:
        raise RuntimeError(f"REGISTER {user} from port {port}: {answer and answer.status_line}")


def make_target(name: str, workdir: Path, args: argparse.Namespace) -> CallTarget:
    if name == "kamailio":
        return KamailioCalls(workdir / name, children=args.kamailio_children)
    return SoftswitchCalls(workdir / name, log_level=args.log_level)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- part 1: call rate ---------------------------------------------------------------------------------------


@dataclass
class RateStep:
    target: str
    phase: str
    rate: float
    seconds: float
    planned: int
    created: int
    successful: int
    failed: int
    callee_failed: int
    no_rtp_port: int
    retransmissions: int
    achieved: float
    server_cpu: float
    cpu_ms_per_call: float
    sipp_cpu: float
    p50: float | None
    p99: float | None
    ok: bool
    why: str


def rate_step(
    target: CallTarget, workdir: Path, uas_port: int, rate: float, seconds: float, phase: str, hold_ms: int
) -> RateStep:
    planned = max(1, round(rate * seconds))
    settle(target.processes())
    exhausted_before = target.port_exhaustions()
    limit = max(200, int(rate * (hold_ms / 1000.0 + 1.0)))
    bound = seconds * 3 + 30
    uas = start_sipp(
        "uas_answer",
        None,
        directory=workdir,
        calls=planned,
        local_port=uas_port,
        timeout=bound,
        trace_rtt=False,
        media_port=free_udp_range(4, low=SIPP_MEDIA[0], high=SIPP_MEDIA[1])[0],
        extra_args=SIPP_TUNING,
    )
    uas.wait_listening()
    sampler = ResourceSampler(target.processes())
    cpu_before = children_cpu()
    started = time.perf_counter()
    sampler.start()
    uac = start_sipp(
        "uac_basic",
        target.address,
        directory=workdir,
        service=target.number,
        calls=planned,
        rate=rate,
        limit=limit,
        timeout=bound,
        media_port=free_udp_range(4, low=SIPP_MEDIA[0], high=SIPP_MEDIA[1])[0],
        extra_args=["-d", str(hold_ms), *SIPP_TUNING],
    )
    try:
        result = uac.wait()
        usage = sampler.stop()
        callee = uas.wait(10.0)  # every INVITE that reached it has ended by now, or it is killed
    except BaseException:
        uac.stop()
        uas.stop()
        raise
    sipp_cpu = 100.0 * (children_cpu() - cpu_before) / max(1e-9, time.perf_counter() - started)
    achieved = creation_rate(result, planned, rate)
    callee_failed = callee.failed + max(0, callee.created - callee.successful - callee.failed)
    no_rtp_port = target.port_exhaustions() - exhausted_before
    problems = []
    if no_rtp_port:
        problems.append(f"{no_rtp_port} calls found no free RTP port")
    if result.failed >= MAX_FAILURE_RATIO * max(1, result.created):
        problems.append(f"{result.failed} caller-side failures")
    if callee_failed >= MAX_FAILURE_RATIO * max(1, callee.created):
        problems.append(f"{callee_failed} callee-side failures")
    if result.created < planned:
        problems.append(f"only {result.created}/{planned} started")
    if achieved < MIN_ACHIEVED * rate:
        problems.append(f"achieved {achieved:.0f}/s")
    if result.returncode not in (0, 1):
        problems.append(f"sipp exit {result.returncode}")
    latency = result.latency(1)
    return RateStep(
        target=target.name,
        phase=phase,
        rate=rate,
        seconds=seconds,
        planned=planned,
        created=result.created,
        successful=result.successful,
        failed=result.failed,
        callee_failed=callee_failed,
        no_rtp_port=no_rtp_port,
        retransmissions=result.retransmissions,
        achieved=achieved,
        server_cpu=usage.cpu_percent,
        cpu_ms_per_call=1000.0 * usage.cpu_seconds / max(1, result.successful),
        sipp_cpu=sipp_cpu,
        p50=latency["p50"],
        p99=latency["p99"],
        ok=not problems,
        why=", ".join(problems) or "ok",
    )


def creation_rate(result: SippResult, planned: int, rate: float) -> float:
    """Calls started per second until the last planned one was (from sipp's per-second statistics rows).

    A server that answers slowly holds sipp at its -l limit of calls in progress, so the calls start late:
    that shows here. (successful / elapsed would also count the wait for a single slow failure.)
    """
    assert result.directory is not None
    path = result.directory / "stat.csv"
    if not path.exists():
        return 0.0
    with path.open(newline="", errors="replace") as handle:
        rows = [row for row in csv.reader(handle, delimiter=";") if row]
    if len(rows) < 2:
        return 0.0
    header = rows[0]
    try:
        created_at, now_at = header.index("TotalCallCreated"), header.index("CurrentTime")
        start = float(rows[1][header.index("StartTime")].split()[-1])
    except (ValueError, IndexError):
        return 0.0
    for row in rows[1:]:
        try:
            if int(row[created_at]) >= planned:
                seconds = float(row[now_at].split()[-1]) - start
                # The rows come once a second: the last call started up to a second before this one.
                return planned / max(seconds - 1.0, planned / rate)
        except (ValueError, IndexError):
            continue
    return result.created / max(1e-9, result.elapsed_s)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def print_rate_step(step: RateStep) -> None:
    print(
        f"  [{step.target} {step.phase:8}] {step.rate:6.0f} calls/s for {step.seconds:4.0f} s: "
        f"{step.successful}/{step.planned} ok, {step.failed}+{step.callee_failed} failed, "
        f"{step.retransmissions} retrans, achieved {step.achieved:6.1f}/s, cpu {step.server_cpu:5.1f}% "
        f"({step.cpu_ms_per_call:.2f} ms/call; sipp {step.sipp_cpu:5.1f}%), INVITE->200 p50/p99 "
        f"{fmt(step.p50, 0)}/{fmt(step.p99, 0)} ms -> {'GOOD' if step.ok else 'BAD: ' + step.why}",
        flush=True,
    )


def rate_search(
    target: CallTarget, workdir: Path, uas_port: int, args: argparse.Namespace
) -> tuple[RateStep | None, list[RateStep]]:
    steps: list[RateStep] = []

    def attempt(rate: float, seconds: float, phase: str) -> RateStep:
        step = rate_step(target, workdir, uas_port, rate, seconds, phase, args.hold_ms)
        steps.append(step)
        print_rate_step(step)
        if not step.ok:
            # An overload leaves calls, transactions and retransmissions behind: start the next step
            # from a fresh process (and a fresh registration: Kamailio's location table is in memory).
            target.restart()
            target.register(uas_port)
            print(f"  [{target.name} restart ] after the overload: {target.describe()}", flush=True)
        return step

    best = highest_rate(
        attempt,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        probe=args.probe,
        duration=args.duration,
        min_rate=5,
        confirmations=6,
    )
    return best, steps


def bench_rate(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    target = make_target(name, workdir, args)
    print(f"\n== call rate: {name}", flush=True)
    try:
        target.start()
    except Exception as exc:
        print(f"  {name} did not start: {exc}", flush=True)
        return {"target": name, "error": str(exc).splitlines()[0]}
    described = target.describe()
    if isinstance(target, SoftswitchCalls):
        capacity = target.relay_capacity(args.hold_ms / 1000.0)
        described += (
            f"; RTP ports {SWITCH_RTP[0]}-{SWITCH_RTP[1]} with a {QUARANTINE_S:.0f} s quarantine bound "
            f"the sustained rate to ~{capacity:.0f} calls/s"
        )
    print(f"  up: {described}", flush=True)
    try:
        uas_port = free_port("udp+tcp")
        target.register(uas_port)
        best, steps = rate_search(target, workdir / name, uas_port, args)
    except Exception as exc:
        print(f"  {name}: benchmark failed: {exc}\n{target.log_tail()}", flush=True)
        return {"target": name, "error": str(exc).splitlines()[0]}
    finally:
        target.stop()
    return {
        "target": name,
        "described": described,
        "best": asdict(best) if best else None,
        "steps": [asdict(s) for s in steps],
    }


# -- part 2: concurrent calls with RTP -----------------------------------------------------------------------

PACKET = 160  # G.711, 20 ms
RTP_HEADER = struct.Struct("!BBHII")
STAMP = struct.Struct("!d")


@dataclass
class StreamStats:
    sent: int = 0
    received: int = 0
    transits_ms: list[float] = field(default_factory=list)
    jitter_ms: float = 0.0  # RFC 3550 §6.4.1 interarrival jitter of the returning stream

    def summary(self) -> dict[str, float | int | None]:
        values = self.transits_ms
        return {
            "sent": self.sent,
            "received": self.received,
            "lost": max(0, self.sent - self.received),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values) if values else None,
            "rfc3550_jitter_ms": round(self.jitter_ms, 3),
        }


class RtpProbe:
    """RTP streams timed by this process: each sends a 160-byte PCMU packet every 20 ms carrying its send
    time; whatever echoes back is matched by sequence number and timed on the same clock."""

    def __init__(self) -> None:
        self.streams: list[tuple[socket.socket, tuple[str, int], StreamStats, int]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # (stream, seq) -> sent during the measurement window? Packets are counted by when they were sent,
        # so the ones still in flight when the window closes are not taken for lost.
        self._sent_at: dict[tuple[int, int], bool] = {}
        self._last_transit: dict[int, float] = {}
        self.measuring = False

    def add(self, sock: socket.socket, remote: tuple[str, int]) -> StreamStats:
        stats = StreamStats()
        self.streams.append((sock, remote, stats, secrets.randbits(32)))
        return stats

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._send, name="rtp-probe-send", daemon=True),
            threading.Thread(target=self._receive, name="rtp-probe-recv", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)

    def _send(self) -> None:
        seq = 0
        next_at = time.perf_counter()
        payload = b"\xff" * (PACKET - STAMP.size)
        while not self._stop.is_set():
            now = time.perf_counter()
            for index, (sock, remote, stats, ssrc) in enumerate(self.streams):
                header = RTP_HEADER.pack(0x80, 0, seq & 0xFFFF, (seq * PACKET) & 0xFFFFFFFF, ssrc)
                try:
                    sock.sendto(header + STAMP.pack(now) + payload, remote)
                except OSError:
                    continue
                measured = self.measuring
                self._sent_at[(index, seq & 0xFFFF)] = measured
                if measured:
                    stats.sent += 1
            seq += 1
            next_at += 0.020
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def _receive(self) -> None:
        by_fd = {sock.fileno(): index for index, (sock, _, _, _) in enumerate(self.streams)}
        socks = [sock for sock, _, _, _ in self.streams]
        while not self._stop.is_set():
            ready, _, _ = select.select(socks, [], [], 0.1)
            arrived = time.perf_counter()
            for sock in ready:
                try:
                    data = sock.recv(2048)
                except OSError:
                    continue
                if len(data) < RTP_HEADER.size + STAMP.size or not 0 <= (data[1] & 0x7F) < 35:
                    continue  # RTCP or garbage
                index = by_fd[sock.fileno()]
                _, _, seq, _, _ = RTP_HEADER.unpack_from(data)
                (sent,) = STAMP.unpack_from(data, RTP_HEADER.size)
                measured = self._sent_at.pop((index, seq), None)
                if measured is None:
                    continue  # a duplicate
                stats = self.streams[index][2]
                transit = (arrived - sent) * 1000.0
                previous = self._last_transit.get(index)
                self._last_transit[index] = transit
                if not measured:
                    continue
                stats.received += 1
                stats.transits_ms.append(transit)
                if previous is not None:
                    stats.jitter_ms += (abs(transit - previous) - stats.jitter_ms) / 16.0


def sdp_for(port: int) -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    ).encode()


class ProbeCall:
    """A call placed by this script (a trunk call to the DID) whose media is an `RtpProbe` stream."""

    def __init__(self, target: SoftswitchCalls) -> None:
        self.target = target
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.sip = SipClient("127.0.0.1", target.server.udp_port, timeout=5.0)
        self.uri = f"sip:{DID}@127.0.0.1:{target.server.udp_port}"
        self.answer = None

    def place(self) -> tuple[str, int]:
        """INVITE, wait for the 200, ACK; return the relay's RTP address from the answer."""
        port = self.rtp.getsockname()[1]
        headers = [("Contact", f"<{self.sip.contact('probe')}>"), ("Content-Type", "application/sdp")]
        data, call_id, cseq = self.sip.request(
            "INVITE",
            self.uri,
            from_uri="sip:probe@127.0.0.1",
            to_uri=self.uri,
            headers=headers,
            body=sdp_for(port),
        )
        self.answer = self.sip.ask(data, call_id, cseq, timeout=10.0)
        if self.answer is None or self.answer.status != 200:
            raise RuntimeError(f"probe call: {self.answer and self.answer.status_line}")
        contact = re.sub(r"^.*<([^>]+)>.*$", r"\1", self.answer.get("contact") or "")
        self.sip.ack(self.answer, contact)
        self.contact = contact
        body = self.answer.body.decode()
        host = re.search(r"^c=IN IP4 (\S+)", body, re.MULTILINE)
        media = re.search(r"^m=audio (\d+) ", body, re.MULTILINE)
        assert host and media, body
        return host.group(1), int(media.group(1))

    def hang_up(self) -> None:
        if self.answer is None or self.answer.status != 200:
            self.sip.close()
            self.rtp.close()
            return
        answer = self.answer
        data, call_id, cseq = self.sip.request(
            "BYE",
            self.contact,
            from_uri="sip:probe@127.0.0.1",
            to_uri=self.uri,
            call_id=answer.call_id,
            from_tag=(answer.get("from") or "").split("tag=")[-1],
        )
        text = data.decode().replace(f"To: <{self.uri}>", f"To: {answer.get('to')}")
        self.sip.ask(text.encode(), call_id, cseq, timeout=3.0)
        self.sip.close()
        self.rtp.close()


@dataclass
class MediaLevel:
    wanted: int
    reached: int
    setup_failed: int
    why: str
    server_cpu: float
    sipp_cpu: float
    relay_pps: float
    loss_callers_pct: float | None
    loss_echo_pct: float | None
    probe_loss_pct: float | None
    switch_p50_ms: float | None
    switch_p99_ms: float | None
    direct_p50_ms: float | None
    direct_p99_ms: float | None
    added_p99_jitter_ms: float | None
    probe_rfc3550_jitter_ms: float | None
    rss_mib: float


def relay_counters(db_path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "select leg, coalesce(sum(rx_packets), 0), coalesce(sum(rx_lost), 0) from cdr_legs "
            "where status = 200 group by leg"
        ).fetchall()
    finally:
        db.close()
    out = {"a_rx": 0, "a_lost": 0, "b_rx": 0, "b_lost": 0}
    for leg, rx, lost in rows:
        out[f"{leg}_rx"], out[f"{leg}_lost"] = int(rx), int(lost)
    return out


def live_count(target: SoftswitchCalls) -> int | None:
    """Calls up at the switch (its control API), or None when it does not answer within 5 s."""
    try:
        return int(target.server.api("/api/status")["calls"])
    except (OSError, ValueError, KeyError):
        return None


def sipp_current(run: SippRun) -> int:
    """Calls sipp has up right now (from its statistics file, written every second)."""
    try:
        return int(run.current_stats().get("CurrentCall", "0") or 0)
    except ValueError:
        return 0


def media_level(
    target: SoftswitchCalls, workdir: Path, wanted: int, args: argparse.Namespace, tone: Path
) -> MediaLevel:
    uas_port = free_port("udp+tcp")
    target.register(uas_port)
    echo_port = free_udp_range(4, low=SIPP_MEDIA[0], high=SIPP_MEDIA[1])[0]
    ramp_s = wanted / args.setup_rate
    # Calls stay up until this level is over (sipp is stopped, then the switch hangs up what is left when
    # it stops, which writes every call's record with its relay counters).
    hold_ms = int((ramp_s * 3 + args.duration + 120) * 1000)
    bound = hold_ms / 1000.0 + 60
    uas = start_sipp(
        "uas_answer",
        None,
        directory=workdir,
        calls=wanted + args.probes,
        local_port=uas_port,
        media_port=echo_port,
        timeout=bound,
        trace_rtt=False,
        extra_args=["-rtp_echo", *SIPP_TUNING],
    )
    uas.wait_listening()
    cpu_before = children_cpu()
    sipp_started = time.perf_counter()
    uac = start_sipp(
        "uac_rtp_stream",
        target.address,
        directory=workdir,
        service=target.number,
        calls=wanted,
        rate=args.setup_rate,
        limit=wanted,
        timeout=bound,
        trace_rtt=False,
        media_port=free_udp_range(4, low=SIPP_MEDIA[0], high=SIPP_MEDIA[1])[0],
        files={"rtp_stream.ulaw": tone},
        extra_args=["-d", str(hold_ms), "-rtp_threadtasks", str(args.rtp_threadtasks), *SIPP_TUNING],
    )
    probe = RtpProbe()
    calls: list[ProbeCall] = []
    notes: list[str] = []
    try:
        # Wait for the calls to come up (or stop coming), by sipp's count: an overloaded switch may not
        # answer its control API in time.
        deadline = time.monotonic() + ramp_s * 2 + 20
        reached, steady_since = 0, time.monotonic()
        while time.monotonic() < deadline and uac.proc.alive():
            now_up = sipp_current(uac)
            if now_up != reached:
                reached, steady_since = now_up, time.monotonic()
            if reached >= wanted or (time.monotonic() - steady_since > 5 and time.monotonic() > ramp_s + 5):
                break
            time.sleep(0.5)  # polling sipp's statistics file while the calls ramp up
        for _ in range(args.probes):
            call = ProbeCall(target)
            calls.append(call)
            try:
                probe.add(call.rtp, call.place())
            except (RuntimeError, OSError, AssertionError) as exc:
                notes.append(f"probe call failed: {exc}")
        direct_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        direct_sock.bind(("127.0.0.1", 0))
        direct = probe.add(direct_sock, ("127.0.0.1", echo_port))
        probe.start()
        time.sleep(2.0)  # settle: latching, the first packets, the echo's buffers
        sampler = ResourceSampler(target.processes())
        sampler.start()
        probe.measuring = True
        time.sleep(args.duration)  # the measurement window
        probe.measuring = False
        usage = sampler.stop()
        up_at_end = sipp_current(uac)
        time.sleep(0.5)  # let the last probe packets come back before the counts are read
        probe.stop()
        for call in calls:
            call.hang_up()
        direct_sock.close()
    finally:
        probe.stop()
        result: SippResult = uac.stop()
        callee = uas.stop()
        target.stop()  # hangs up the calls still up and writes their records
    sipp_cpu = 100.0 * (children_cpu() - cpu_before) / max(1e-9, time.perf_counter() - sipp_started)
    counters = relay_counters(target.server.db_path)
    switch_streams = [stats for _, _, stats, _ in probe.streams[:-1]]
    transits = [t for stats in switch_streams for t in stats.transits_ms]
    sent = sum(s.sent for s in switch_streams)
    received = sum(s.received for s in switch_streams)
    sw_p50, sw_p99 = percentile(transits, 50), percentile(transits, 99)
    d_p50, d_p99 = percentile(direct.transits_ms, 50), percentile(direct.transits_ms, 99)
    added = None
    if None not in (sw_p50, sw_p99, d_p50, d_p99):
        added = (sw_p99 - sw_p50) - (d_p99 - d_p50)  # type: ignore[operator]

    def pct(lost: int, total: int) -> float | None:
        return 100.0 * lost / total if total else None

    why = list(notes)
    if reached < wanted:
        why.append(f"only {reached} calls came up")
    if up_at_end < reached:
        why.append(f"{reached - up_at_end} dropped during the window")
    if result.failed or callee.failed:
        why.append(f"sipp: {result.failed} caller / {callee.failed} callee failures")
    return MediaLevel(
        wanted=wanted,
        reached=reached,
        setup_failed=result.failed,
        why=", ".join(why) or "ok",
        server_cpu=usage.cpu_percent,
        sipp_cpu=sipp_cpu,
        relay_pps=reached * 100.0,
        loss_callers_pct=pct(counters["a_lost"], counters["a_rx"] + counters["a_lost"]),
        loss_echo_pct=pct(counters["b_lost"], counters["b_rx"] + counters["b_lost"]),
        probe_loss_pct=pct(max(0, sent - received), sent),
        switch_p50_ms=sw_p50,
        switch_p99_ms=sw_p99,
        direct_p50_ms=d_p50,
        direct_p99_ms=d_p99,
        added_p99_jitter_ms=added,
        probe_rfc3550_jitter_ms=statistics.fmean(s.jitter_ms for s in switch_streams)
        if switch_streams
        else None,
        rss_mib=usage.rss_main_mib,
    )


def _ulaw(sample: int) -> int:
    """One 16-bit linear sample as G.711 u-law (ITU-T G.711 §2, with the usual bias of 132)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def write_tone(path: Path) -> Path:
    """One second of a 1 kHz tone as raw G.711 u-law (what rtp_stream plays, looped)."""
    path.write_bytes(bytes(_ulaw(int(12000 * math.sin(2 * math.pi * 1000 * i / 8000))) for i in range(8000)))
    return path


def bench_media(args: argparse.Namespace, workdir: Path) -> list[dict[str, object]]:
    tone = write_tone(workdir / "tone.ulaw")
    out: list[dict[str, object]] = []
    for wanted in args.levels:
        print(f"\n== concurrent calls with RTP: {wanted}", flush=True)
        target = SoftswitchCalls(workdir / f"media-{wanted}", log_level=args.log_level)
        try:
            target.start()
            level = media_level(target, workdir / f"media-{wanted}", wanted, args, tone)
        except Exception as exc:
            print(f"  {wanted} calls: failed: {exc}", flush=True)
            out.append({"wanted": wanted, "error": str(exc).splitlines()[0]})
            continue
        finally:
            target.stop()
        print(
            f"  {level.reached}/{wanted} up ({level.why}); cpu {level.server_cpu:.1f}% "
            f"(sipp {level.sipp_cpu:.1f}%); loss callers {fmt(level.loss_callers_pct, 3)}% echo "
            f"{fmt(level.loss_echo_pct, 3)}% probes {fmt(level.probe_loss_pct, 3)}%; transit via switch "
            f"p50/p99 {fmt(level.switch_p50_ms, 2)}/{fmt(level.switch_p99_ms, 2)} ms, direct "
            f"{fmt(level.direct_p50_ms, 2)}/{fmt(level.direct_p99_ms, 2)} ms; added p99 jitter "
            f"{fmt(level.added_p99_jitter_ms, 2)} ms",
            flush=True,
        )
        out.append(asdict(level))
    return out


# -- the report ----------------------------------------------------------------------------------------------


def report(
    rate_results: list[dict[str, object]], media_results: list[dict[str, object]], args: argparse.Namespace
) -> None:
    if rate_results:
        print(
            f"\nCall rate over UDP: INVITE/200/ACK, {args.hold_ms} ms of talk, BYE; "
            f"{args.duration:.0f} s confirmation"
        )
        headers = [
            "target",
            "calls/s",
            "achieved/s",
            "failed",
            "retrans",
            "cpu %",
            "cpu ms/call",
            "sipp cpu %",
            "p50 ms",
            "p99 ms",
        ]
        rows = []
        best: dict[str, dict[str, float]] = {}
        for result in rate_results:
            step = result.get("best")
            if not isinstance(step, dict):
                rows.append(
                    [
                        str(result["target"]),
                        "-",
                        str(result.get("error") or "no rate passed")[:40],
                        *["-"] * 7,
                    ]
                )
                continue
            best[str(result["target"])] = step
            rows.append(
                [
                    str(result["target"]),
                    f"{step['rate']:.0f}",
                    f"{step['achieved']:.1f}",
                    f"{step['failed']}+{step['callee_failed']}",
                    str(step["retransmissions"]),
                    fmt(step["server_cpu"]),
                    fmt(step["cpu_ms_per_call"], 2),
                    fmt(step["sipp_cpu"]),
                    fmt(step["p50"], 0),
                    fmt(step["p99"], 0),
                ]
            )
        print(format_table(headers, rows))
        for result in rate_results:
            if result.get("described"):
                print(f"  {result['target']}: {result['described']}")
        ours, theirs = best.get("softswitch"), best.get("kamailio")
        if ours and theirs and theirs["achieved"] and theirs["cpu_ms_per_call"]:
            print(
                f"softswitch/kamailio: sustained call rate x{ours['achieved'] / theirs['achieved']:.2f}, "
                f"CPU per call x{ours['cpu_ms_per_call'] / theirs['cpu_ms_per_call']:.2f} "
                "(kamailio relays signalling only; the switch runs two dialogs, anchors media, writes a CDR)"
            )
    if media_results:
        print(
            "\nConcurrent G.711 calls relayed by one switch process, RTP both ways (sipp rtp_stream -> relay"
            f" -> sipp -rtp_echo -> relay -> sipp), {args.duration:.0f} s window, {args.probes} probe calls"
        )
        headers = [
            "calls",
            "up",
            "relayed pkt/s",
            "cpu %",
            "sipp cpu %",
            "loss in %",
            "loss echo %",
            "probe loss %",
            "via switch p50/p99 ms",
            "direct p50/p99 ms",
            "added p99 jitter ms",
            "RSS MiB",
            "notes",
        ]
        rows = []
        for level in media_results:
            if "error" in level:
                rows.append([str(level["wanted"]), "-", *["-"] * 10, str(level["error"])[:50]])
                continue
            rows.append(
                [
                    str(level["wanted"]),
                    str(level["reached"]),
                    f"{level['relay_pps']:.0f}",
                    fmt(level["server_cpu"]),
                    fmt(level["sipp_cpu"]),
                    fmt(level["loss_callers_pct"], 3),
                    fmt(level["loss_echo_pct"], 3),
                    fmt(level["probe_loss_pct"], 3),
                    f"{fmt(level['switch_p50_ms'], 2)}/{fmt(level['switch_p99_ms'], 2)}",
                    f"{fmt(level['direct_p50_ms'], 2)}/{fmt(level['direct_p99_ms'], 2)}",
                    fmt(level["added_p99_jitter_ms"], 2),
                    fmt(level["rss_mib"]),
                    str(level["why"]),
                ]
            )
        print(format_table(headers, rows))
        print(
            "loss in: sequence gaps in what the relay received from the callers; loss echo: gaps in what\n"
            "came back from the echo (includes relay -> callee); probe: own streams, sent vs back.\n"
            "added p99 jitter: (p99 - p50) of the probes' round-trip transit via the switch minus the same\n"
            "for a direct stream to the echo under the same load (two relay passes per round trip)."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of the confirmation run / window"
    )
    parser.add_argument("--probe", type=float, default=5.0, help="seconds of each ramp/bisect step")
    parser.add_argument("--target", choices=("softswitch", "kamailio", "both"), default="both")
    parser.add_argument("--part", choices=("rate", "media", "both"), default="both")
    parser.add_argument("--start-rate", type=float, default=50.0)
    parser.add_argument("--max-rate", type=float, default=5000.0)
    parser.add_argument("--hold-ms", type=int, default=100, help="talk time of each call in the rate search")
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300, 500, 1000]
    )
    parser.add_argument("--setup-rate", type=float, default=100.0, help="calls/s while building up a level")
    parser.add_argument("--probes", type=int, default=4, help="probe calls with timed RTP per level")
    parser.add_argument(
        "--rtp-threadtasks", type=int, default=20, help="sipp -rtp_threadtasks: RTP streams per sipp thread"
    )
    parser.add_argument("--kamailio-children", type=int, default=1, help="UDP (and TCP) worker processes")
    parser.add_argument(
        "--log-level", default="warning", help="the switch's log level (info logs every call)"
    )
    parser.add_argument("--json", type=Path, help="also write every step and the result as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep logs and sipp files here (default: a temp dir)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if sipp_available() is None:
        print("sipp is not installed (apt-get install sip-tester); nothing to measure", file=sys.stderr)
        return 2
    names = ["softswitch", "kamailio"] if args.target == "both" else [args.target]
    if "kamailio" in names and kamailio_available() is None:
        print("kamailio is not installed (apt-get install kamailio); skipping it", file=sys.stderr)
        names.remove("kamailio")
    rate_results: list[dict[str, object]] = []
    media_results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.part in ("rate", "both"):
            for name in names:
                rate_results.append(bench_rate(name, args, workdir))
        if args.part in ("media", "both") and "softswitch" in names:
            media_results = bench_media(args, workdir)
    report(rate_results, media_results, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rate": rate_results,
                    "media": media_results,
                }
            )
        )
    ok = all(r.get("best") for r in rate_results) and all("error" not in m for m in media_results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
