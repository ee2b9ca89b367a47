"""`Phone`: the pytest side of one pjsua2 user agent running in its own process (`pjua_driver.py`).

The driver prints JSON events; a reader thread collects them. `expect(event, timeout, **match)` waits on a
condition variable for the first *unconsumed* event of that name whose fields match, removes it from the
pending list and returns it. Matching is not ordered: an event that arrived earlier but was not asked for
stays pending until something matches it or `drain()` drops it (so `media_active` before `call_state
CONFIRMED`, whichever pjsua2 reports first, both still match). Helpers that start an action (`register`,
`call`, `hold` ...) first drop stale pending events of the kinds they then wait for.

A match value may be a plain value (compared with ==) or a callable predicate, e.g.
``phone.expect("reg_state", code=lambda c: c in (401, 403))``.

On a timeout, or when the driver exits, `expect` raises AssertionError saying what was expected, what
arrived instead, the pending events, and the tail of the pjsip log (the last SIP messages) and stderr.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from .ports import free_port_pair
from .process import ManagedProcess, ProcessError

__all__ = ["DRIVER", "Phone", "PhoneFactory", "SipServer"]

DRIVER = Path(__file__).with_name("pjua_driver.py")
_BULKY = ("msg", "invite", "traceback")


class SipServer(Protocol):
    """What a phone needs to know about the server it registers with (Kamailio or our switch)."""

    @property
    def domain(self) -> str: ...

    def uri_for(self, transport: str = "udp") -> str: ...


def _brief(event: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in event.items() if k not in _BULKY and k != "t"}
    return json.dumps(shown, default=str)


def _matches(event: Mapping[str, Any], name: str, match: Mapping[str, Any]) -> bool:
    if event.get("event") != name:
        return False
    for key, wanted in match.items():
        if key not in event:
            return False
        value = event[key]
        if callable(wanted):
            if not wanted(value):
                return False
        elif value != wanted:
            return False
    return True


def _describe(match: Mapping[str, Any]) -> str:
    parts = []
    for key, wanted in match.items():
        shown = getattr(wanted, "__name__", "predicate") if callable(wanted) else repr(wanted)
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


class Phone:
    """A SIP phone (pjsua2) in its own process, for one test.

    Example::

        alice = Phone("alice", log_dir=tmp_path, server=kamailio, password="pw-alice", play=tone700)
        alice.start()
        alice.register()
        index = alice.call(kamailio.user_uri("bob"))
        alice.expect("call_state", state="CONFIRMED", call=index)
        alice.close()
    """

    def __init__(
        self,
        name: str,
        *,
        log_dir: Path,
        server: SipServer | None = None,
        id_uri: str | None = None,
        registrar: str | None = None,
        username: str | None = None,
        password: str | None = None,
        realm: str = "*",
        transport: str = "udp",
        proxy: str | Iterable[str] | None = None,
        register: bool = True,
        reg_expiry: int = 300,
        auto_answer: bool = False,
        answer_delay: float = 0.0,
        answer_code: int = 200,
        ring: bool = True,
        play: str | Path | None = None,
        record: str | Path | None = None,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        verify_server: bool = False,
        srtp: str = "off",
        dtmf_method: str = "rfc2833",
        lock_codec: bool = True,
        rtp_port: int | None = None,
        bind_address: str = "127.0.0.1",
        extra_args: Iterable[str] = (),
        python: str = sys.executable,
    ) -> None:
        self.name = name
        self.log_dir = Path(log_dir)
        self.transport = transport
        domain = server.domain if server is not None else "127.0.0.1"
        self.id_uri = id_uri or f"sip:{name}@{domain}"
        if registrar is None and server is not None and register:
            registrar = server.uri_for(transport)
        self.registrar = registrar
        self.pj_log = self.log_dir / f"{name}.pj.log"
        argv: list[str] = [python, str(DRIVER), "--name", name, "--id-uri", self.id_uri]
        argv += ["--transport", transport, "--reg-expiry", str(reg_expiry), "--realm", realm]
        argv += ["--log-file", str(self.pj_log), "--dtmf-method", dtmf_method, "--srtp", srtp]
        argv += ["--rtp-port", str(rtp_port if rtp_port is not None else free_port_pair())]
        argv += ["--bind-address", bind_address]
        if registrar:
            argv += ["--registrar", registrar]
        if not register:
            argv.append("--no-register")
        if username:
            argv += ["--username", username]
        if password is not None:
            argv += ["--password", password]
        proxies = [proxy] if isinstance(proxy, str) else list(proxy or [])
        for item in proxies:
            argv += ["--proxy", item]
        if auto_answer:
            argv += ["--auto-answer", "--answer-delay", str(answer_delay), "--answer-code", str(answer_code)]
        if not ring:
            argv.append("--no-ring")
        if play is not None:
            argv += ["--play", str(play)]
        if record is not None:
            argv += ["--record", str(record)]
        for flag, value in (("--ca-file", ca_file), ("--cert-file", cert_file), ("--key-file", key_file)):
            if value is not None:
                argv += [flag, str(value)]
        if verify_server:
            argv.append("--verify-server")
        if not lock_codec:
            argv.append("--no-lock-codec")
        argv += list(extra_args)
        self.argv = argv
        self.expects_registration = bool(registrar) and register
        self.proc = ManagedProcess(
            f"phone-{name}",
            argv,
            log_dir=self.log_dir,
            stdin=True,
            on_line=self._on_line,
            tail_streams=("stderr",),
        )
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._eof = False
        self._ids = itertools.count(1)
        self.port = 0
        self.contact = ""
        self.pid = 0

    # -- process -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0, *, wait: bool = True) -> Phone:
        """Start the driver; with `wait`, block until its `ready` event (see `wait_ready`)."""
        self.proc.start()
        self.pid = self.proc.pid
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> dict[str, Any]:
        ready = self.expect("ready", timeout=timeout)
        self.port = int(ready["port"])
        self.contact = str(ready["contact"])
        return ready

    def _on_line(self, stream: str, line: str) -> None:
        if stream != "stdout":
            return
        if not line.startswith("{"):
            return  # not an event (should not happen: the driver moves pjlib's prints to stderr)
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        with self._cond:
            self.events.append(event)
            self._pending.append(event)
            if event.get("event") == "exit":
                self._eof = True
            self._cond.notify_all()

    def _watch_exit(self) -> bool:
        """True once the driver has gone (exit event seen, or the process is dead)."""
        return self._eof or not self.proc.alive()

    # -- events --------------------------------------------------------------------------------------------

    def expect(self, event: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for the first pending `event` whose fields match; consume and return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, candidate in enumerate(self._pending):
                    if _matches(candidate, event, match):
                        del self._pending[index]
                        return candidate
                if self._watch_exit() and event != "exit":
                    # Give the reader a moment to deliver the last lines, then fail.
                    self._cond.wait(0.2)
                    if any(_matches(c, event, match) for c in self._pending):
                        continue
                    raise AssertionError(self._failure(event, match, timeout, "the driver exited"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._failure(event, match, timeout, "timed out"))
                self._cond.wait(min(remaining, 0.5))

    def expect_no(self, event: str, within: float, **match: Any) -> None:
        """Assert that no matching `event` arrives (or is pending) during the next `within` seconds."""
        deadline = time.monotonic() + within
        with self._cond:
            while True:
                for candidate in self._pending:
                    if _matches(candidate, event, match):
                        raise AssertionError(
                            f"phone {self.name!r}: did not expect {event} ({_describe(match)}) but got "
                            f"{_brief(candidate)}\n{self.log_tail()}"
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def drain(self, *names: str) -> list[dict[str, Any]]:
        """Drop pending events (only those named, if names are given) and return them."""
        with self._cond:
            if not names:
                dropped, self._pending = self._pending, []
            else:
                dropped = [e for e in self._pending if e.get("event") in names]
                self._pending = [e for e in self._pending if e.get("event") not in names]
        return dropped

    def pending(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._pending)

    def _failure(self, event: str, match: Mapping[str, Any], timeout: float, why: str) -> str:
        wanted = f"{event}" + (f" with {_describe(match)}" if match else "")
        same_kind = [e for e in self.events if e.get("event") == event][-5:]
        lines = [
            f"phone {self.name!r} (pid {self.pid}): expected {wanted} within {timeout} s; {why}.",
        ]
        if same_kind:
            lines.append(f"{event} events seen (last {len(same_kind)}):")
            lines += [f"  {_brief(e)}" for e in same_kind]
        else:
            lines.append(f"no {event} event was seen at all.")
        lines.append(f"last events ({min(15, len(self.events))} of {len(self.events)}):")
        lines += [f"  {_brief(e)}" for e in self.events[-15:]]
        if self.proc.returncode is not None:
            lines.append(f"the driver exited with code {self.proc.returncode}")
        lines.append(self.log_tail())
        return "\n".join(lines)

    def log_tail(self, lines: int = 40) -> str:
        """The tail of this phone's pjsip log (SIP messages) and of the driver's stderr."""
        parts = []
        if self.pj_log.exists():
            text = self.pj_log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- last {len(text)} lines of {self.pj_log} ---")
            parts += text
        parts.append(self.proc.log_tail(15))
        return "\n".join(parts)

    # -- commands ------------------------------------------------------------------------------------------

    def send(self, cmd: str, **args: Any) -> None:
        """Send a command without waiting for its `ok`."""
        self.proc.write_line(json.dumps({"cmd": cmd, **args}))

    def command(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        """Send a command and wait for its `ok` event; raise AssertionError on its `error` event."""
        ident = next(self._ids)
        try:
            self.proc.write_line(json.dumps({"cmd": cmd, "id": ident, **args}))
        except ProcessError as exc:
            raise AssertionError(f"phone {self.name!r}: cannot send {cmd}: {exc}") from exc
        reply = self.expect_any(("ok", "error"), timeout=timeout, id=ident)
        if reply["event"] == "error":
            raise AssertionError(
                f"phone {self.name!r}: command {cmd} {args} failed: {reply.get('message')}\n{self.log_tail()}"
            )
        return reply

    def expect_any(self, events: Iterable[str], timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Like `expect`, for the first pending event whose name is any of `events`."""
        names = tuple(events)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, candidate in enumerate(self._pending):
                    if any(_matches(candidate, name, match) for name in names):
                        del self._pending[index]
                        return candidate
                remaining = deadline - time.monotonic()
                if self._watch_exit() or remaining <= 0:
                    why = "the driver exited" if self._watch_exit() else "timed out"
                    raise AssertionError(self._failure("|".join(names), match, timeout, why))
                self._cond.wait(min(remaining, 0.5))

    def register(
        self, expiry: int | None = None, *, code: int | None = 200, timeout: float = 5.0
    ) -> dict[str, Any]:
        """(Re-)REGISTER, optionally with a new expiry; wait for `reg_state` (with `code`, unless None)."""
        self.drain("reg_state")
        args = {} if expiry is None else {"expiry": expiry}
        self.command("register", **args)
        match = {} if code is None else {"code": code}
        return self.expect("reg_state", timeout=timeout, **match)

    def wait_registered(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the REGISTER sent at start-up to succeed (code 200)."""
        return self.expect("reg_state", timeout=timeout, code=200)

    def unregister(self, *, timeout: float = 5.0) -> dict[str, Any]:
        self.drain("reg_state")
        self.command("unregister")
        return self.expect("reg_state", timeout=timeout, expiration=0)

    def call(self, uri: str, *, timeout: float = 5.0) -> int:
        """Start a call to `uri`; return the driver's call index (events carry it as `call`)."""
        reply = self.command("call", timeout=timeout, uri=uri)
        return int(reply["call"])

    def answer(self, code: int = 200, *, call: int | None = None) -> None:
        self.command("answer", code=code, call=call)

    def reject(self, code: int = 486, *, call: int | None = None) -> None:
        self.command("reject", code=code, call=call)

    def hangup(self, *, call: int | None = None, code: int | None = None) -> None:
        self.command("hangup", call=call, code=code)

    def dtmf(self, digits: str, *, method: str = "rfc2833", call: int | None = None) -> None:
        self.command("dtmf", digits=digits, method=method, call=call)

    def hold(self, *, call: int | None = None) -> None:
        self.drain("media_state", "media_active")
        self.command("hold", call=call)

    def unhold(self, *, call: int | None = None) -> None:
        self.drain("media_state", "media_active")
        self.command("unhold", call=call)

    def play(self, path: str | Path, *, call: int | None = None) -> None:
        self.command("play", path=str(path), call=call)

    def record(self, path: str | Path, *, call: int | None = None) -> None:
        self.command("record", path=str(path), call=call)

    def stop_record(self, *, call: int | None = None) -> dict[str, Any]:
        """Close the call's recorder; return the `record_done` event (its WAV is complete on disk)."""
        self.command("stop_record", call=call)
        return self.expect("record_done")

    def set_auto_answer(
        self,
        enabled: bool = True,
        *,
        delay: float | None = None,
        code: int | None = None,
        ring: bool | None = None,
    ) -> None:
        args: dict[str, Any] = {"auto_answer": enabled}
        if delay is not None:
            args["answer_delay"] = delay
        if code is not None:
            args["answer_code"] = code
        if ring is not None:
            args["ring"] = ring
        self.command("set", **args)

    def close(self, timeout: float = 5.0) -> int | None:
        """Quit gracefully (hang up, close recordings, destroy the endpoint), else kill; return the code."""
        if self.proc.returncode is None and self.pid:
            try:
                self.proc.write_line(json.dumps({"cmd": "quit"}))
                self.proc.close_stdin()
            except ProcessError:
                pass
            if self.proc.wait(timeout) is None:
                self.proc.kill()
        return self.proc.stop(1.0)

    def kill(self) -> int | None:
        return self.proc.kill()

    def __enter__(self) -> Phone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class PhoneFactory:
    """Makes started phones for one test and closes them all at the end (the `phones` fixture).

    ``phones("alice", server=kam, password="pw")`` starts a phone and waits until it is ready (and, when it
    registers at start-up, until that REGISTER got 200 unless ``wait_registered=False``).
    ``phones.many([...])`` starts several in parallel.
    """

    def __init__(self, log_dir: Path, *, defaults: Mapping[str, Any] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.defaults = dict(defaults or {})
        self.phones: list[Phone] = []

    def __call__(
        self, name: str, *, wait_registered: bool = True, timeout: float = 10.0, **kwargs: Any
    ) -> Phone:
        return self.many([(name, kwargs)], wait_registered=wait_registered, timeout=timeout)[0]

    def many(
        self,
        specs: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        wait_registered: bool = True,
        timeout: float = 15.0,
    ) -> list[Phone]:
        started = []
        for name, kwargs in specs:
            phone = Phone(name, log_dir=self.log_dir, **{**self.defaults, **kwargs})
            self.phones.append(phone)
            phone.start(wait=False)
            started.append(phone)
        for phone in started:
            phone.wait_ready(timeout)
        if wait_registered:
            for phone in started:
                if phone.expects_registration:
                    phone.wait_registered(timeout)
        return started

    def __iter__(self) -> Iterator[Phone]:
        return iter(self.phones)

    def close_all(self) -> None:
        for phone in self.phones:
            if phone.proc.alive():
                try:
                    phone.proc.write_line(json.dumps({"cmd": "quit"}))
                    phone.proc.close_stdin()
                except ProcessError:
                    pass
        for phone in self.phones:
            phone.close()
        self.phones.clear()
