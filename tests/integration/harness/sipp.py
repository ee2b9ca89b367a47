"""sipp 3.6 runner: scenarios from tests/sipp/, statistics parsed from sipp's own CSV files.

`run_sipp(scenario, target, ...)` runs one sipp client or server to completion and returns a `SippResult`
with the exit code, output, the last row of the `-trace_stat` CSV (successful/failed call counts, rates),
the response times from `-trace_rtt` per `rtd` marker (sipp's clock: whole milliseconds), and the error
log. `start_sipp` does the same without waiting (for a UAS, or for a benchmark that samples the server
while sipp runs). Every run is `-nostdin -i 127.0.0.1 -mi 127.0.0.1` with its own SIP, media and control
ports (sipp's defaults are the fixed 5060, 6000/6002 and 8888), writes its files into its own directory,
and is bounded by sipp's `-timeout` plus a hard kill.

Exit codes (sipp 3.6): 0 every call succeeded, 1 at least one failed, 97 exit on internal command,
99 normal exit without calls, 255 fatal error.

Injection files: `write_injection_file(path, rows)` and `write_users_file(path, users, domain)` for
`reg_auth.xml` (`user;domain;[authentication username=... password=...]`).

sipp here cannot do TLS (built without OpenSSL) and cannot open SCTP sockets; UDP and TCP work.
"""

from __future__ import annotations

import csv
import itertools
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .ports import free_port, free_udp_range
from .process import ManagedProcess, ProcessError

__all__ = [
    "SCENARIOS",
    "SippResult",
    "SippRun",
    "percentile",
    "run_sipp",
    "scenario_path",
    "sipp_available",
    "start_sipp",
    "write_injection_file",
    "write_users_file",
]

SCENARIOS = Path(__file__).resolve().parents[2] / "sipp"
"""tests/sipp/: the scenario files."""

TRANSPORT_FLAGS = {"udp": "u1", "tcp": "t1", "udp-multi": "un", "tcp-multi": "tn"}
_AUTH_SAFE = re.compile(r"^[^\s\];]+$")
_run_ids = itertools.count(1)


def sipp_available() -> str | None:
    """The sipp binary, or None when it is not installed (Debian package sip-tester)."""
    return shutil.which("sipp")


def scenario_path(name: str) -> Path:
    """`reg_auth` or `reg_auth.xml` -> the file in tests/sipp/ (must exist)."""
    path = SCENARIOS / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.exists():
        raise FileNotFoundError(f"no sipp scenario {path}")
    return path


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) by linear interpolation, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def _duration_ms(text: str) -> float | None:
    """sipp's `HH:MM:SS:uuuuuu` (or `HH:MM:SS`) as milliseconds."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4) or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, seconds = (int(p) for p in parts[:3])
    micros = int(parts[3]) if len(parts) == 4 else 0
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


@dataclass(frozen=True, slots=True)
class SippResult:
    """The outcome of one sipp run."""

    returncode: int
    stdout: str
    stderr: str
    stats: Mapping[str, str]
    """The last row of the -trace_stat CSV, column name -> raw value (empty if sipp wrote none)."""
    rtt: Mapping[int, list[float]]
    """Response times in ms per rtd number, from -trace_rtt (sipp's clock has 1 ms resolution)."""
    errors: str
    """Tail of sipp's -trace_err file: the unexpected messages that failed calls."""
    argv: list[str] = field(default_factory=list)
    directory: Path | None = None

    def _int(self, column: str) -> int:
        value = self.stats.get(column, "")
        try:
            return int(float(value))
        except ValueError:
            return 0

    @property
    def successful(self) -> int:
        return self._int("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self._int("FailedCall(C)")

    @property
    def created(self) -> int:
        return self._int("TotalCallCreated")

    @property
    def retransmissions(self) -> int:
        return self._int("Retransmissions(C)")

    @property
    def elapsed_s(self) -> float:
        """Seconds from sipp's start to its last statistics dump."""
        try:
            start = float(self.stats["StartTime"].split()[-1])
            now = float(self.stats["CurrentTime"].split()[-1])
        except (KeyError, ValueError, IndexError):
            return 0.0
        return max(0.0, now - start)

    def response_time_ms(self, rtd: int = 1) -> float | None:
        """Mean response time for `rtd` over the run (sipp's cumulative ResponseTimeN(C))."""
        return _duration_ms(self.stats.get(f"ResponseTime{rtd}(C)", ""))

    def latency(self, rtd: int = 1) -> dict[str, float | None]:
        """p50/p95/p99/max in ms for `rtd` from the -trace_rtt samples."""
        values = self.rtt.get(rtd, [])
        return {
            "count": float(len(values)),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
            "max": max(values) if values else None,
        }

    def summary(self) -> str:
        return (
            f"sipp rc={self.returncode}: {self.successful} successful, {self.failed} failed, "
            f"{self.created} created, {self.retransmissions} retransmissions in {self.elapsed_s:.1f} s"
        )

    def describe(self, lines: int = 30) -> str:
        """A failure report: the summary, the command, sipp's errors and the end of its output."""
        out = [self.summary(), "command: " + " ".join(self.argv)]
        if self.errors:
            out += ["--- sipp error log (tail) ---", self.errors]
        tail = (self.stderr.strip().splitlines() or [])[-lines:]
        if tail:
            out += ["--- sipp stderr (tail) ---", *tail]
        screen = (self.stdout.strip().splitlines() or [])[-lines:]
        if screen:
            out += ["--- sipp screen (tail) ---", *screen]
        return "\n".join(out)

    def assert_ok(self, *, successful: int | None = None) -> None:
        """Assert sipp exited 0 with no failed call (and, if given, exactly `successful` calls)."""
        if self.returncode != 0 or self.failed:
            raise AssertionError(f"sipp reported failures:\n{self.describe()}")
        if successful is not None and self.successful != successful:
            raise AssertionError(f"expected {successful} successful calls:\n{self.describe()}")


class SippRun:
    """A sipp process started by `start_sipp`; `wait()` returns its `SippResult`."""

    def __init__(
        self,
        proc: ManagedProcess,
        directory: Path,
        argv: list[str],
        timeout: float,
        port: int,
        transport: str,
    ) -> None:
        self.proc = proc
        self.directory = directory
        self.argv = argv
        self.timeout = timeout
        self.port = port
        self.transport = transport

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`: where this sipp receives SIP (the target for a UAS)."""
        return f"127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Block until sipp has bound its SIP port (a UAS is ready to take calls); raise ProcessError."""
        kind = "tcp" if self.transport.startswith("tcp") else "udp"
        deadline = time.monotonic() + timeout
        while True:
            if not self.proc.alive():
                raise ProcessError(f"sipp exited before listening on {self.address}\n{self.proc.log_tail()}")
            try:
                bound = any(
                    conn.laddr and conn.laddr.port == self.port
                    for conn in psutil.Process(self.pid).net_connections(kind=kind)
                )
            except psutil.Error:
                bound = False
            if bound:
                return
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"sipp did not bind {self.address} within {timeout} s\n{self.proc.log_tail()}"
                )
            # sipp gives no readiness signal; re-check its sockets every 20 ms until the deadline.
            self.proc.wait(0.02)

    def current_stats(self) -> dict[str, str]:
        """The newest row of sipp's statistics CSV while it runs (written every `stats_every_s`):
        column name -> raw value, e.g. "CurrentCall", "SuccessfulCall(C)"; empty before the first row."""
        return _read_stats(self.directory / "stat.csv")

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to finish (killing it after `timeout`, default: the run's own bound)."""
        limit = self.timeout if timeout is None else timeout
        code = self.proc.wait(limit)
        killed = False
        if code is None:
            self.proc.stop(2.0)
            killed = True
        else:
            self.proc.stop(1.0)  # reap, join the readers
        return self._result(killed)

    def stop(self) -> SippResult:
        """End sipp now (SIGTERM then SIGKILL) and return what it recorded so far."""
        self.proc.stop(3.0)
        return self._result(False)

    def _result(self, killed: bool) -> SippResult:
        log = self.proc.log_path.read_text(errors="replace") if self.proc.log_path.exists() else ""
        stdout = "\n".join(line[2:] for line in log.splitlines() if line.startswith("o "))
        stderr = "\n".join(line[2:] for line in log.splitlines() if line.startswith("e "))
        if killed:
            stderr += f"\nharness: sipp killed after {self.timeout} s"
        code = self.proc.returncode
        return SippResult(
            returncode=code if code is not None else -9,
            stdout=stdout,
            stderr=stderr,
            stats=_read_stats(self.directory / "stat.csv"),
            rtt=_read_rtt(self.directory),
            errors=_read_errors(self.directory),
            argv=self.argv,
            directory=self.directory,
        )


def _read_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="", errors="replace") as handle:
        rows = [row for row in csv.reader(handle, delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


def _read_rtt(directory: Path) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for path in sorted(directory.glob("*_rtt.csv")):
        with path.open(errors="replace") as handle:
            for line in handle:
                parts = line.strip().split(";")
                if len(parts) < 3 or not parts[2].strip().isdigit():
                    continue
                try:
                    out.setdefault(int(parts[2]), []).append(float(parts[1]))
                except ValueError:
                    continue
    return out


def _read_errors(directory: Path, lines: int = 60) -> str:
    texts = []
    for path in sorted(directory.glob("*_errors.log")):
        texts += path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(texts[-lines:])


def start_sipp(
    scenario: str | Path,
    target: str | None,
    *,
    directory: Path | None = None,
    inf: str | Path | None = None,
    extra_args: Iterable[str] = (),
    timeout: float = 60.0,
    transport: str = "udp",
    calls: int | None = None,
    rate: float | None = None,
    rate_period_ms: int | None = None,
    limit: int | None = None,
    local_port: int | None = None,
    service: str | None = None,
    variables: Mapping[str, str | int | float] | None = None,
    media_port: int | None = None,
    stats_every_s: int = 1,
    trace_rtt: bool = True,
    files: Mapping[str, Path] | None = None,
) -> SippRun:
    """Start sipp without waiting. `scenario` is a path or a name in tests/sipp/; `target` is
    `host:port` (None for a UAS that only waits). Files go to a fresh subdirectory of `directory` (by
    default of a new temporary directory, left in place for post-mortems). `files` are linked into that
    directory, sipp's working directory, under the given names (audio a scenario names by a relative path,
    since sipp reads `rtp_stream` and `play_pcap_audio` files when it loads the scenario)."""
    binary = sipp_available()
    if binary is None:
        raise ProcessError("sipp is not installed (apt-get install sip-tester)")
    path = Path(scenario) if isinstance(scenario, Path) or "/" in str(scenario) else scenario_path(scenario)
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="sipp-"))
    run_dir = Path(directory) / f"sipp-{path.stem}-{next(_run_ids)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, source in (files or {}).items():
        (run_dir / name).symlink_to(Path(source).resolve())
    # sipp's defaults are fixed ports (SIP 5060, media 6000 and 6002, control 8888): give each run its own.
    port = local_port if local_port is not None else free_port("udp+tcp")
    argv = [binary]
    if target:
        argv.append(target)
    argv += ["-sf", str(path), "-nostdin", "-i", "127.0.0.1", "-p", str(port)]
    argv += ["-t", TRANSPORT_FLAGS[transport], "-cp", str(free_port("udp"))]
    argv += ["-trace_stat", "-stf", str(run_dir / "stat.csv"), "-fd", str(stats_every_s)]
    argv += ["-trace_err", "-error_file", str(run_dir / f"{path.stem}_errors.log")]
    if trace_rtt:
        argv += ["-trace_rtt", "-rtt_freq", "1"]
    argv += ["-timeout", f"{max(1, round(timeout))}s", "-timeout_error"]
    if inf is not None:
        argv += ["-inf", str(inf)]
    if calls is not None:
        argv += ["-m", str(calls)]
    if rate is not None:
        argv += ["-r", f"{rate:g}"]
    if rate_period_ms is not None:
        argv += ["-rp", f"{rate_period_ms}ms"]
    if limit is not None:
        argv += ["-l", str(limit)]
    if service is not None:
        argv += ["-s", service]
    argv += ["-mi", "127.0.0.1", "-mp", str(media_port if media_port is not None else free_udp_range(4)[0])]
    for name, value in (variables or {}).items():
        argv += ["-set", name, str(value)]
    argv += list(extra_args)
    proc = ManagedProcess(f"sipp-{path.stem}", argv, log_dir=run_dir, cwd=run_dir, tail_lines=200)
    proc.start()
    return SippRun(proc, run_dir, argv, timeout + 10.0, port, transport)


def run_sipp(
    scenario: str | Path,
    target: str | None,
    *,
    inf: str | Path | None = None,
    extra_args: Iterable[str] = (),
    timeout: float = 60.0,
    directory: Path | None = None,
    **kwargs: object,
) -> SippResult:
    """Run sipp to completion (see `start_sipp` for the options) and return its `SippResult`."""
    run = start_sipp(
        scenario,
        target,
        directory=directory,
        inf=inf,
        extra_args=extra_args,
        timeout=timeout,
        **kwargs,  # type: ignore[arg-type]
    )
    return run.wait()


def write_injection_file(path: Path, rows: Iterable[Sequence[str]], *, mode: str = "SEQUENTIAL") -> Path:
    """Write a sipp -inf file: the read mode line (SEQUENTIAL, RANDOM, USER) then `;`-joined rows."""
    if mode not in ("SEQUENTIAL", "RANDOM", "USER", "SEQUENTIAL,SHARED", "RANDOM,SHARED", "USER,SHARED"):
        raise ValueError(f"unknown sipp injection mode {mode!r}")
    lines = [mode]
    for row in rows:
        for value in row:
            if ";" in value or "\n" in value:
                raise ValueError(f"injection field {value!r} contains ';' or a newline")
        lines.append(";".join(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def auth_field(username: str, password: str) -> str:
    """sipp's `[authentication username=U password=P]` keyword, used as an injected field."""
    for value in (username, password):
        if not _AUTH_SAFE.match(value):
            raise ValueError(f"{value!r} cannot go into a sipp [authentication] keyword (space, ']' or ';')")
    return f"[authentication username={username} password={password}]"


def write_users_file(
    path: Path,
    users: Mapping[str, str],
    domain: str,
    *,
    password_override: str | None = None,
    mode: str = "SEQUENTIAL",
) -> Path:
    """The injection file for reg_auth.xml: `user;domain;[authentication ...]` per user.

    `password_override` puts the same (wrong) password on every line, for reg_auth_expect_fail.xml.
    """
    rows = [
        (user, domain, auth_field(user, password_override if password_override is not None else password))
        for user, password in users.items()
    ]
    return write_injection_file(path, rows, mode=mode)
