"""`Baresip`: a baresip 1.0 softphone in its own process, driven over its ctrl_tcp JSON interface.

baresip is the second real client (besides pjsua2) the switch must interoperate with; it is also the one
that speaks TLS 1.3. Each instance gets its own config directory (`-f DIR`), SIP port, control port and
RTP range, all on 127.0.0.1 (`net_interface 127.0.0.1`, or baresip advertises another address in SDP).
Audio: the source is a WAV file (`aufile`) or a sine (`ausine`, 48 kHz stereo as that module requires);
the player is a null sink (`aubridge,nil`); `sndfile` writes what was sent (`-enc.wav`) and received
(`-dec.wav`) for every call into the instance's `recordings/` directory.

Control: ctrl_tcp frames JSON in netstrings (``LEN:{...},``). Commands are
``{"command": "dial", "params": "sip:...", "token": "N"}`` and answered by ``{"response": true, "ok":
..., "token": "N"}``; events arrive on the same socket as ``{"event": true, "type": "CALL_ESTABLISHED",
...}`` (REGISTER_OK, REGISTER_FAIL, CALL_INCOMING, CALL_RINGING, CALL_PROGRESS, CALL_ESTABLISHED,
CALL_CLOSED, ...). `expect()` waits for an event like `Phone.expect` does, unordered and consuming.

Pitfalls (harness.md §5): no `stdio.so` (with stdin not a tty it fails with epoll_ctl EPERM); aufile in 1.0
is a source only; ausine refuses anything but 48 kHz stereo.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .phone import SipServer, _describe, _matches
from .ports import free_port, free_udp_range
from .process import ManagedProcess, ProcessError

__all__ = ["Baresip", "baresip_available"]

MODULE_PATH = "/usr/lib/baresip/modules"


def baresip_available() -> str | None:
    """The baresip binary, or None if it is not installed (Debian package baresip)."""
    return shutil.which("baresip")


def _netstrings(buffer: bytearray) -> list[bytes]:
    """Pop every complete netstring (``LEN:DATA,``) off the front of `buffer`."""
    out = []
    while True:
        colon = buffer.find(b":")
        if colon < 0 or not buffer[:colon].isdigit():
            if colon > 10 or (colon < 0 and len(buffer) > 10):
                raise ValueError(f"not a netstring: {bytes(buffer[:40])!r}")
            return out
        length = int(buffer[:colon])
        end = colon + 1 + length
        if len(buffer) < end + 1:
            return out
        if buffer[end : end + 1] != b",":
            raise ValueError("netstring without its trailing comma")
        out.append(bytes(buffer[colon + 1 : end]))
        del buffer[: end + 1]


class Baresip:
    """A baresip phone for one test.

    Example::

        agent = Baresip("bob", log_dir=tmp_path, server=kamailio, password="pw-bob", auto_answer=True,
                        source=700.0)
        agent.start()
        agent.expect("REGISTER_OK")
        ...
        agent.close()
    """

    def __init__(
        self,
        name: str,
        *,
        log_dir: Path,
        server: SipServer | None = None,
        registrar: str | None = None,
        user: str | None = None,
        password: str | None = None,
        transport: str = "udp",
        register: bool = True,
        auto_answer: bool = False,
        source: str | Path | float | None = None,
        record: bool = True,
        ca_file: str | Path | None = None,
        regint: int = 300,
        codecs: str = "pcmu,pcma",
    ) -> None:
        self.name = name
        self.dir = Path(log_dir) / f"baresip-{name}"
        self.user = user or name
        self.transport = transport
        if registrar is None and server is not None:
            registrar = server.uri_for(transport)
        # The AOR's host:port is where baresip registers: the server's address for this transport.
        host_port = "127.0.0.1"
        if registrar:
            host_port = registrar.split(":", 1)[1].split(";", 1)[0]
        self.aor = f"sip:{self.user}@{host_port}" + ("" if transport == "udp" else f";transport={transport}")
        self.password = password
        self.register = register and bool(registrar)
        self.auto_answer = auto_answer
        self.source = source
        self.record = record
        self.ca_file = ca_file
        self.regint = regint
        self.codecs = codecs
        self.sip_port = 0
        self.ctrl_port = 0
        self.proc: ManagedProcess | None = None
        self.recordings_dir = self.dir / "recordings"
        self._sock: socket.socket | None = None
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._tokens = itertools.count(1)
        self._reader: threading.Thread | None = None
        self._closed = False

    # -- config -------------------------------------------------------------------------------------------

    def _config(self) -> str:
        low, high = free_udp_range(40)
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            f"rtp_ports {low}-{high}",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aubridge.so",
            "module_tmp uuid.so",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
        ]
        if self.ca_file is not None:
            lines.append(f"sip_cafile {self.ca_file}")
        if isinstance(self.source, int | float):
            lines += [f"audio_source ausine,{self.source:g}", "ausrc_srate 48000", "ausrc_channels 2"]
            lines.append("module ausine.so")
        elif self.source is not None:
            lines += [f"audio_source aufile,{self.source}", "module aufile.so"]
        else:
            lines += ["audio_source ausine,0", "ausrc_srate 48000", "ausrc_channels 2", "module ausine.so"]
        if self.record:
            lines += ["module sndfile.so", f"snd_path {self.recordings_dir}"]
        return "\n".join(lines) + "\n"

    def _account(self) -> str:
        params = [
            f"answermode={'auto' if self.auto_answer else 'manual'}",
            f"audio_codecs={self.codecs}",
            f"regint={self.regint if self.register else 0}",
        ]
        if self.password is not None:
            params += [f"auth_user={self.user}", f"auth_pass={self.password}"]
        return f"<{self.aor}>;" + ";".join(params) + "\n"

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Baresip:
        """Write the config, start baresip, connect to its control socket (and wait for REGISTER_OK)."""
        binary = baresip_available()
        if binary is None:
            raise ProcessError("baresip is not installed (apt-get install baresip)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.recordings_dir.mkdir(exist_ok=True)
        self.sip_port = free_port("udp+tcp")
        self.ctrl_port = free_port("tcp")
        (self.dir / "config").write_text(self._config())
        (self.dir / "accounts").write_text(self._account())
        (self.dir / "contacts").write_text("")
        self.proc = ManagedProcess(f"baresip-{self.name}", [binary, "-f", str(self.dir)], log_dir=self.dir)
        self.proc.start()
        deadline = time.monotonic() + timeout
        while self._sock is None:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
            except OSError:
                if not self.proc.alive():
                    raise ProcessError(
                        f"baresip exited with {self.proc.returncode} before its control socket opened\n"
                        f"{self.proc.log_tail()}"
                    ) from None
                if time.monotonic() >= deadline:
                    raise ProcessError(
                        f"baresip's control port {self.ctrl_port} did not open within {timeout} s\n"
                        f"{self.proc.log_tail()}"
                    ) from None
                self.proc.wait(0.05)  # a connect probe interval; returns early if baresip exits
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name=f"baresip-{self.name}", daemon=True)
        self._reader.start()
        if self.register:
            self.wait_registered(max(1.0, deadline - time.monotonic()))
        return self

    def wait_registered(self, timeout: float = 5.0) -> int:
        """Wait for the REGISTER at start-up to be answered; return 200 or raise with the answer.

        baresip registers before our control connection exists, so its REGISTER_OK event is gone by then;
        its console line (``bob@127.0.0.1: {0/UDP/v4} 200 OK (...)``, or ``... reg failed ...``) is used.
        """
        assert self.proc is not None
        prefix = f"{self.user}@"
        pattern = re.compile(r"(?:\}\s+|reg failed[^0-9]*)(\d{3})\b")

        def answered(stream: str, line: str) -> bool:
            return stream == "stdout" and line.startswith(prefix) and pattern.search(line) is not None

        try:
            line = self.proc.wait_for_line(answered, timeout)
        except ProcessError as exc:
            raise AssertionError(f"baresip {self.name!r}: no answer to its REGISTER: {exc}") from None
        match = pattern.search(line)
        assert match is not None
        code = int(match.group(1))
        if code != 200:
            raise AssertionError(
                f"baresip {self.name!r}: REGISTER answered {code}: {line}\n{self.log_tail()}"
            )
        return code

    def _read(self) -> None:
        assert self._sock is not None
        buffer = bytearray()
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            try:
                frames = _netstrings(buffer)
            except ValueError:
                break
            for frame in frames:
                try:
                    message = json.loads(frame)
                except json.JSONDecodeError:
                    continue
                with self._cond:
                    if message.get("response"):
                        self._responses[str(message.get("token"))] = message
                    else:
                        self.events.append(message)
                        self._pending.append(message)
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> int | None:
        """Ask baresip to quit, then stop it by PID (SIGTERM, SIGKILL)."""
        if self.proc is None:
            return None
        if self.proc.alive() and self._sock is not None:
            try:
                self._send({"command": "quit", "params": "", "token": "quit"})
            except OSError:
                pass
            self.proc.wait(timeout)
        if self._sock is not None:
            self._sock.close()
        return self.proc.stop(2.0)

    # -- commands and events ------------------------------------------------------------------------------

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self._sock is not None
        data = json.dumps(message).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data + b",")

    def command(self, name: str, params: str = "", *, timeout: float = 5.0) -> dict[str, Any]:
        """Run a baresip command (e.g. "dial", "hangup", "accept") and return its response."""
        token = str(next(self._tokens))
        self._send({"command": name, "params": params, "token": token})
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise AssertionError(
                        f"baresip {self.name!r}: no response to {name} {params!r} within {timeout} s\n"
                        f"{self.log_tail()}"
                    )
                self._cond.wait(remaining)
            return self._responses.pop(token)

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def accept(self) -> dict[str, Any]:
        return self.command("accept")

    def expect(self, event_type: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for the first pending event of `event_type` whose fields match; consume and return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, event in enumerate(self._pending):
                    candidate = {**event, "event": event.get("type")}
                    if _matches(candidate, event_type, match):
                        del self._pending[index]
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    wanted = event_type + (f" with {_describe(match)}" if match else "")
                    seen = "\n".join(f"  {json.dumps(e)}" for e in self.events[-15:]) or "  (none)"
                    why = "baresip closed its control socket" if self._closed else "timed out"
                    raise AssertionError(
                        f"baresip {self.name!r}: expected {wanted} within {timeout} s; {why}.\n"
                        f"events seen:\n{seen}\n{self.log_tail()}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def recording(self, kind: str = "dec", timeout: float = 5.0) -> Path:
        """The newest complete sndfile dump of `kind` ("dec": what was received, "enc": what was sent)."""
        deadline = time.monotonic() + timeout
        while True:
            # baresip 1.0's sndfile names its dumps `dump-<time>-dec.wav` or, in some builds, without the
            # extension: take either.
            found = [*self.recordings_dir.glob(f"*-{kind}.wav"), *self.recordings_dir.glob(f"*-{kind}")]
            files = sorted(found, key=lambda p: p.stat().st_mtime)
            if files and _wav_complete(files[-1]):
                return files[-1]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"baresip {self.name!r}: no complete *-{kind}.wav in {self.recordings_dir} "
                    f"within {timeout} s (files: {[p.name for p in files]})"
                )
            threading.Event().wait(0.05)  # sndfile closes the dump when the stream ends; re-check the header

    def log_tail(self, lines: int = 30) -> str:
        return self.proc.log_tail(lines) if self.proc is not None else f"(baresip {self.name} not started)"

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wav_complete(path: Path) -> bool:
    """libsndfile rewrites the RIFF size when it closes the file; until then it does not match the file."""
    try:
        with path.open("rb") as handle:
            header = handle.read(12)
            size = path.stat().st_size
    except OSError:
        return False
    return len(header) == 12 and header[:4] == b"RIFF" and int.from_bytes(header[4:8], "little") == size - 8
