"""Helper processes started, watched and stopped by PID.

`ManagedProcess` runs one external program (kamailio, sipp, a pjsua2 driver, `softswitch serve`) in its own
session, so that its whole process group can be ended by the leader's PID without touching anything else.
Two reader threads copy stdout and stderr line by line into a log file and a bounded in-memory tail and hand
each line to optional callbacks; `wait_for_line()` blocks on a condition variable with a timeout, never on
a sleep. `stop()` sends SIGTERM, waits, then SIGKILLs the group, and always reaps the leader.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

__all__ = ["LineCallback", "ManagedProcess", "ProcessError"]

LineCallback = Callable[[str, str], None]
"""Called as `callback(stream, line)` with stream "stdout" or "stderr" and the line without its newline."""


class ProcessError(RuntimeError):
    """A helper process failed to start, died early, or did not say it was ready in time."""


class ManagedProcess:
    """One external program with captured output, stopped by PID.

    Example::

        proc = ManagedProcess("kamailio", ["kamailio", "-f", cfg, "-DD", "-E"], log_dir=tmp_path)
        proc.start()
        proc.wait_for_line(lambda stream, line: "ready" in line, timeout=5)
        ...
        proc.stop()
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        on_line: LineCallback | None = None,
        tail_lines: int = 400,
        tail_streams: tuple[str, ...] = ("stdout", "stderr"),
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_dir = Path(log_dir)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.want_stdin = stdin
        self._callbacks: list[LineCallback] = [on_line] if on_line is not None else []
        self.tail_streams = tail_streams
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._cond = threading.Condition()
        self._lines_seen = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._stdin_lock = threading.Lock()
        self.log_path = self.log_dir / f"{name}.log"

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the program; raise `ProcessError` if it cannot be executed."""
        if self._popen is not None:
            raise ProcessError(f"{self.name} already started (pid {self._popen.pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE if self.want_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessError(f"cannot start {self.name}: {' '.join(self.argv)}: {exc}") from exc
        log = self.log_path.open("a", encoding="utf-8", errors="replace")
        log.write(f"- started pid {self._popen.pid}: {' '.join(self.argv)}\n")
        log.flush()
        self._log = log
        self._log_lock = threading.Lock()
        assert self._popen.stdout is not None and self._popen.stderr is not None
        for stream_name, pipe in (("stdout", self._popen.stdout), ("stderr", self._popen.stderr)):
            thread = threading.Thread(
                target=self._read, args=(stream_name, pipe), name=f"{self.name}-{stream_name}", daemon=True
            )
            thread.start()
            self._readers.append(thread)

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name} is not started")
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Wait for the leader to exit; return its exit code, or None if it is still running."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the leader, wait up to `timeout`, then SIGKILL the group; reap and return the code."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            children = self._children()
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self._kill_group()
                self.wait(5.0)
            else:
                # The leader is gone; give its children (kamailio's workers) the same grace, then kill.
                _, alive = psutil.wait_procs(children, timeout=timeout)
                if alive:
                    self._kill_group()
        self._finish()
        return self._popen.returncode

    def kill(self) -> int | None:
        """SIGKILL the whole group at once (a crash), reap and return the exit code."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._kill_group()
            self.wait(5.0)
        self._finish()
        return self._popen.returncode

    def _children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def _kill_group(self) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()

    def _finish(self) -> None:
        for thread in self._readers:
            thread.join(timeout=2.0)
        if self._popen is not None and self._popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()
        with self._log_lock:
            if not self._log.closed:
                self._log.write(f"- exited with {self._popen.returncode if self._popen else None}\n")
                self._log.close()

    # -- input / output ----------------------------------------------------------------------------------

    def write_line(self, line: str) -> None:
        """Write one line to the program's stdin; raise `ProcessError` if it has gone."""
        if self._popen is None or self._popen.stdin is None:
            raise ProcessError(f"{self.name} has no stdin")
        with self._stdin_lock:
            try:
                self._popen.stdin.write(line.encode() + b"\n")
                self._popen.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise ProcessError(
                    f"{self.name} (pid {self.pid}) is not reading its stdin (exit code {self.returncode})"
                    f"\n{self.log_tail()}"
                ) from exc

    def close_stdin(self) -> None:
        if self._popen is not None and self._popen.stdin is not None:
            with self._stdin_lock, contextlib.suppress(OSError):
                self._popen.stdin.close()

    def add_callback(self, callback: LineCallback) -> None:
        self._callbacks.append(callback)

    def _read(self, stream_name: str, pipe: IO[bytes]) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._log_lock:
                if not self._log.closed:
                    self._log.write(f"{stream_name[3]} {line}\n")
                    self._log.flush()
            if stream_name in self.tail_streams:
                with self._cond:
                    self._tail.append(f"{stream_name}: {line}")
                    self._lines_seen += 1
            for callback in self._callbacks:
                try:
                    callback(stream_name, line)
                except Exception as exc:  # a broken callback must not stop the reader
                    with self._cond:
                        self._tail.append(f"harness: callback failed on this line: {exc!r}")
            with self._cond:
                self._cond.notify_all()
        pipe.close()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, predicate: Callable[[str, str], bool], timeout: float) -> str:
        """Block until a line (seen from now on, or already in the tail) satisfies `predicate(stream, line)`.

        Raise `ProcessError` with the log tail if the program exits first or `timeout` passes.
        """
        deadline = time.monotonic() + timeout
        checked = 0
        with self._cond:
            while True:
                lines = list(self._tail)
                # Only look at lines not yet checked (the deque may have dropped old ones).
                new = self._lines_seen - checked
                for entry in lines[-new:] if new > 0 else []:
                    stream, _, line = entry.partition(": ")
                    if predicate(stream, line):
                        return line
                checked = self._lines_seen
                if not self.alive() and all(not t.is_alive() for t in self._readers):
                    raise ProcessError(
                        f"{self.name} exited with code {self.returncode} before the expected line\n"
                        f"{self.log_tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProcessError(
                        f"{self.name} (pid {self.pid}) did not print the expected line within {timeout} s\n"
                        f"{self.log_tail()}"
                    )
                self._cond.wait(min(remaining, 0.25))

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of stdout and stderr, marked by stream, as one string."""
        with self._cond:
            tail = list(self._tail)[-lines:]
        head = (
            f"--- last {len(tail)} lines of {self.name} (pid {self._popen.pid if self._popen else '-'}) ---"
        )
        return "\n".join([head, *tail])
