"""Shared pieces of the end-to-end benchmarks: the servers under test, CPU/memory sampling, a latency probe.

Not a benchmark itself (`bench/run_all.py` skips it). The servers are the integration harness's own
(`tests/integration/harness`): `softswitch serve` through `SoftswitchServer`, and Kamailio 5.6 with the
same users and passwords through `Kamailio`. Every process is started and stopped by PID; every port is
a free loopback port.

* `Target`: one server under test (`SoftswitchTarget`, `KamailioTarget`): start, stop, address, the
  processes whose CPU and memory count, and a one-line description (including Kamailio's worker count).
* `ResourceSampler`: user+system CPU seconds of a set of processes over an interval (as % of one core),
  and their memory (sum of PSS, which counts Kamailio's shared memory once, and the main process's RSS).
* `RegisterProbe`: a thread that REGISTERs one user with digest at a low fixed rate while sipp loads the
  server, timing each authenticated REGISTER -> 200 with `perf_counter` (sipp's own response times have
  a resolution of 1 ms, too coarse for a fast server).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.integration.harness.kamailio import Kamailio, kamailio_available  # noqa: E402
from tests.integration.harness.server import SoftswitchServer  # noqa: E402
from tests.integration.harness.sipp import percentile  # noqa: E402

__all__ = [
    "ROOT",
    "KamailioTarget",
    "RegisterProbe",
    "ResourceSampler",
    "SoftswitchTarget",
    "Target",
    "bench_users",
    "format_table",
    "kamailio_available",
    "settle",
]


def bench_users(count: int, *, prefix: str = "u") -> dict[str, str]:
    """`count` users named u00000, u00001, ... with distinct passwords."""
    width = max(5, len(str(count - 1)))
    return {f"{prefix}{i:0{width}d}": f"pw{i:0{width}d}x" for i in range(count)}


class Target(Protocol):
    name: str

    @property
    def address(self) -> str: ...

    @property
    def domain(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def restart(self) -> None: ...

    def processes(self) -> list[psutil.Process]: ...

    def describe(self) -> str: ...

    def log_tail(self) -> str: ...


class KamailioTarget:
    """Kamailio 5.6 as the reference: in-memory registrar + digest auth from an htable, `children` workers."""

    def __init__(self, workdir: Path, users: dict[str, str], *, children: int = 1) -> None:
        self.name = "kamailio"
        self.children = children
        self.server = Kamailio(workdir, users, children=children, debug=1, shm_mb=128, name="kamailio-bench")

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def domain(self) -> str:
        return self.server.domain

    def start(self) -> None:
        self.server.start(timeout=20)

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        """Stop and start again (new free port; the in-memory location table starts empty)."""
        self.server.stop()
        self.server.start(timeout=20)

    def processes(self) -> list[psutil.Process]:
        return self.server.processes()

    def describe(self) -> str:
        procs = len(self.processes())
        return (
            f"kamailio 5.6 (children={self.children} UDP worker(s) + {self.children} TCP, "
            f"{procs} processes in all, usrloc db_mode 0)"
        )

    def log_tail(self) -> str:
        return self.server.log_tail()


class SoftswitchTarget:
    """Our switch: `softswitch serve` with the users as agents, and a ban threshold sipp cannot reach."""

    def __init__(self, workdir: Path, users: dict[str, str], *, log_level: str = "info") -> None:
        self.name = "softswitch"
        agents = [{"id": user, "password": password} for user, password in users.items()]
        self.server = SoftswitchServer(
            workdir,
            agents,
            transports=("udp", "tcp"),
            log_level=log_level,
            name="softswitch-bench",
            # Every registration comes from 127.0.0.1: make sure no failure counting can ban sipp.
            # Qualify pings are off because the Kamailio stand-in does not ping either (no nathelper):
            # the comparison is registrar against registrar.
            extra_config={
                "server": {
                    "security": {"auth_failures": 1_000_000, "ban_time": 0},
                    "registrar": {"qualify_interval": 0},
                }
            },
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.udp_port}"

    @property
    def domain(self) -> str:
        return self.server.domain

    def start(self) -> None:
        self.server.start(timeout=60)

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same ports with the same database."""
        self.server.restart(timeout=60)

    def processes(self) -> list[psutil.Process]:
        return self.server.processes()

    def describe(self) -> str:
        return f"softswitch serve (pid {self.server.pid}, one event loop + writer thread, SQLite)"

    def log_tail(self) -> str:
        return self.server.log_tail()


@dataclass
class Usage:
    cpu_seconds: float
    wall_seconds: float
    pss_mib: float
    rss_main_mib: float

    @property
    def cpu_percent(self) -> float:
        """CPU time over wall time, as % of one core (200% = both cores of this machine)."""
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class ResourceSampler:
    """CPU seconds (user + system) of fixed processes between `start()` and `stop()`, and their memory."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self._cpu0 = 0.0
        self._t0 = 0.0

    def _cpu(self) -> float:
        total = 0.0
        for proc in self.processes:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def start(self) -> None:
        self._cpu0 = self._cpu()
        self._t0 = time.perf_counter()

    def stop(self) -> Usage:
        cpu = self._cpu() - self._cpu0
        wall = time.perf_counter() - self._t0
        pss = 0.0
        for proc in self.processes:
            try:
                info = proc.memory_full_info()
                pss += getattr(info, "pss", info.rss)
            except psutil.Error:
                continue
        try:
            rss_main = self.processes[0].memory_info().rss
        except (psutil.Error, IndexError):
            rss_main = 0
        return Usage(cpu, wall, pss / 2**20, rss_main / 2**20)


def settle(
    processes: list[psutil.Process], *, quiet_percent: float = 5.0, window: float = 0.5, timeout: float = 20.0
) -> float:
    """Wait until `processes` use less than `quiet_percent` of a core over `window` seconds (a server still
    working off a backlog would skew the next step); give up after `timeout`. Return the seconds waited."""
    sampler = ResourceSampler(processes)
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        sampler.start()
        time.sleep(window)  # a measurement window, not a wait for an event
        if sampler.stop().cpu_percent < quiet_percent:
            break
    return time.perf_counter() - started


_CHALLENGE_RE = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')


def _digest_header(challenge: str, username: str, password: str, method: str, uri: str, nc: int) -> str:
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_RE.finditer(challenge)
    }
    realm = params.get("realm", "")
    nonce = params.get("nonce", "")
    algorithm = params.get("algorithm", "MD5").upper()
    digest = hashlib.sha256 if algorithm.startswith("SHA-256") else hashlib.md5

    def h(text: str) -> str:
        return digest(text.encode()).hexdigest()

    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        cnonce = secrets.token_hex(8)
        response = h(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    if algorithm != "MD5":
        fields.append(f"algorithm={params['algorithm']}")
    return "Digest " + ", ".join(fields)


@dataclass
class ProbeResult:
    samples_ms: list[float] = field(default_factory=list)
    failures: int = 0

    def percentiles(self) -> dict[str, float | None]:
        return {q: percentile(self.samples_ms, float(q[1:])) for q in ("p50", "p95", "p99")}


class RegisterProbe:
    """REGISTER one user with digest `rate` times a second from its own UDP socket; time the 200.

    Each round: REGISTER -> 401 (challenge) -> REGISTER with credentials -> 200. The time recorded is the
    authenticated REGISTER -> 200 round trip (the same span as sipp's rtd 2). A round without an answer
    within `timeout` counts as a failure (no retransmission: the probe measures, sipp loads).
    """

    def __init__(
        self,
        address: str,
        domain: str,
        username: str,
        password: str,
        *,
        rate: float = 20.0,
        timeout: float = 2.0,
    ) -> None:
        host, port = address.rsplit(":", 1)
        self.target = (host, int(port))
        self.domain = domain
        self.username = username
        self.password = password
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.result = ProbeResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="register-probe", daemon=True)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._port = self._sock.getsockname()[1]
        self._call_id = secrets.token_hex(8) + "@probe"
        self._cseq = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> ProbeResult:
        self._stop.set()
        self._thread.join(self.timeout + 2.0)
        self._sock.close()
        return self.result

    def _request(self, authorization: str | None) -> bytes:
        self._cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [
            f"REGISTER sip:{self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self._port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.username}@{self.domain}>;tag=probe{self._cseq}",
            f"To: <sip:{self.username}@{self.domain}>",
            f"Call-ID: {self._call_id}",
            f"CSeq: {self._cseq} REGISTER",
            f"Contact: <sip:{self.username}@127.0.0.1:{self._port}>",
            "Expires: 3600",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def _await(self, cseq: int, deadline: float) -> tuple[int, str] | None:
        """Wait for the final response to CSeq `cseq`; return (status, raw text) or None on timeout."""
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(65535)
            except (TimeoutError, OSError):
                return None
            text = data.decode(errors="replace")
            match = re.match(r"SIP/2\.0 (\d{3})", text)
            cseq_match = re.search(r"(?im)^CSeq:\s*(\d+)", text)
            if not match or not cseq_match or int(cseq_match.group(1)) != cseq:
                continue
            status = int(match.group(1))
            if status >= 200:
                return status, text

    def _round(self) -> None:
        self._sock.sendto(self._request(None), self.target)
        answer = self._await(self._cseq, time.perf_counter() + self.timeout)
        if answer is None or answer[0] != 401:
            self.result.failures += 1
            return
        challenge = re.search(r"(?im)^WWW-Authenticate:\s*(.+)$", answer[1])
        if challenge is None:
            self.result.failures += 1
            return
        auth = _digest_header(
            challenge.group(1).strip(), self.username, self.password, "REGISTER", f"sip:{self.domain}", 1
        )
        request = self._request(auth)
        started = time.perf_counter()
        self._sock.sendto(request, self.target)
        answer = self._await(self._cseq, started + self.timeout)
        if answer is None or answer[0] != 200:
            self.result.failures += 1
            return
        self.result.samples_ms.append((time.perf_counter() - started) * 1000.0)

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            try:
                self._round()
            except OSError:
                self.result.failures += 1
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


class RateStepLike(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def rate(self) -> float: ...


StepT = TypeVar("StepT", bound=RateStepLike)


def highest_rate(
    attempt: Callable[[float, float, str], StepT],
    *,
    start_rate: float,
    max_rate: float,
    probe: float,
    duration: float,
    min_rate: float,
    confirmations: int,
) -> StepT | None:
    """The highest rate `attempt(rate, seconds, phase)` sustains, found the same way for every target:
    double from `start_rate` until a step fails (or walk down by halves to `min_rate` if the first one
    does), bisect between the last good and the first bad rate to within 10 %, then confirm for `duration`
    seconds, lowering the rate by 10 % per failed confirmation, `confirmations` times at most. Returns the
    confirmed step, or None."""
    good: StepT | None = None
    bad_rate: float | None = None
    rate = float(start_rate)
    while rate <= max_rate:
        step = attempt(rate, probe, "ramp")
        if not step.ok:
            bad_rate = rate
            break
        good = step
        rate *= 2
    if good is None:
        rate = start_rate / 2
        while rate >= min_rate and good is None:
            step = attempt(rate, probe, "ramp-down")
            if step.ok:
                good = step
            else:
                bad_rate = rate
                rate /= 2
        if good is None:
            return None
    if bad_rate is not None:
        low, high = good.rate, bad_rate
        while (high - low) / low > 0.10:
            middle = math.floor((low + high) / 2)
            step = attempt(middle, probe, "bisect")
            if step.ok:
                low, good = middle, step
            else:
                high = middle
    rate = good.rate
    for _ in range(confirmations):
        step = attempt(rate, duration, "confirm")
        if step.ok:
            return step
        rate = math.floor(rate * 0.9)
    return None
