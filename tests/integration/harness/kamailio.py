"""Kamailio 5.6 as a stand-in SIP server: in-memory registrar with digest auth, plus a stateful proxy.

The harness is proved against Kamailio while our own switch is being written, and the benchmarks compare
the two. The config comes from `kamailio.cfg.tmpl` beside this file: users and passwords go into an htable
at start-up (no database), bindings live in usrloc with `db_mode 0`, and phones registered there can call
each other through `tm` with record-routing. Kamailio runs in the foreground (`-DD -E`), logs to stderr, and
is stopped by its PID (its worker children are in its process group).

Readiness: Kamailio prints no "ready" line, so `start()` probes it with OPTIONS over UDP and TCP until it
answers (see `rawsip.wait_until_answering`).
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psutil

from .ports import free_port
from .process import ManagedProcess, ProcessError
from .rawsip import wait_until_answering

__all__ = ["KAMAILIO_TEMPLATE", "TEST_USERS", "Kamailio", "kamailio_available", "render_config"]

KAMAILIO_TEMPLATE = Path(__file__).with_name("kamailio.cfg.tmpl")
MODULE_PATHS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules")
_SAFE_USER = re.compile(r"^[A-Za-z0-9_.+-]+$")

TEST_USERS: dict[str, str] = {
    "alice": "pw-alice",
    "bob": "pw-bob",
    "carol": "pw-carol",
    "dave": "pw-dave",
    "svc": "pw-svc",
}
"""Users and passwords shared by the Kamailio stand-in and the switch's test configs."""


def kamailio_available() -> str | None:
    """Return the path of the kamailio binary, or None when it is not installed."""
    return shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)


def _module_path() -> str:
    for candidate in MODULE_PATHS:
        if Path(candidate, "registrar.so").exists():
            return candidate
    raise ProcessError(f"kamailio modules not found in any of {MODULE_PATHS}")


def _quote(value: str) -> str:
    if any(c in value for c in '"\\\n\r'):
        raise ValueError(
            f"password {value!r} has a quote, backslash or newline; the harness does not escape them"
        )
    return value


def render_config(
    users: Mapping[str, str],
    port: int,
    *,
    realm: str = "127.0.0.1",
    children: int = 2,
    invite_auth: bool = True,
    debug: int = 2,
) -> str:
    """The Kamailio config text for these users (username -> plaintext password) on this port."""
    lines = []
    for username, password in users.items():
        if not _SAFE_USER.match(username):
            raise ValueError(f"username {username!r} is not [A-Za-z0-9_.+-]+")
        lines.append(f'\t$sht(users=>{username}) = "{_quote(password)}";')
    defines = "#!define WITH_INVITE_AUTH" if invite_auth else ""
    replacements = {
        "@@DEFINES@@": defines,
        "@@DEBUG@@": str(debug),
        "@@CHILDREN@@": str(children),
        "@@PORT@@": str(port),
        "@@MODULE_PATH@@": _module_path(),
        "@@SECRET@@": secrets.token_hex(16),
        "@@REALM@@": _quote(realm),
        "@@USERS@@": "\n".join(lines),
    }
    text = KAMAILIO_TEMPLATE.read_text()
    for key, value in replacements.items():
        text = text.replace(key, value)
    leftover = re.findall(r"@@[A-Z_]+@@", text)
    if leftover:
        raise ValueError(f"unreplaced placeholders in the Kamailio template: {sorted(set(leftover))}")
    return text


class Kamailio:
    """A Kamailio registrar + proxy on a free loopback port, UDP and TCP, for one test or benchmark.

    Example::

        with Kamailio(tmp_path, {"alice": "pw-alice", "bob": "pw-bob"}) as kam:
            phone = phones("alice", registrar=kam.uri, password="pw-alice")

    `port=None` picks a free port (and retries with another one if Kamailio cannot bind it).
    `children` sets both `children` (UDP workers per socket) and `tcp_children`.
    """

    def __init__(
        self,
        tmp_path: Path,
        users: Mapping[str, str],
        port: int | None = None,
        *,
        realm: str = "127.0.0.1",
        children: int = 2,
        invite_auth: bool = True,
        debug: int = 2,
        shm_mb: int = 64,
        pkg_mb: int = 8,
        name: str = "kamailio",
    ) -> None:
        self.dir = Path(tmp_path) / name
        self.users = dict(users)
        self.fixed_port = port
        self.port = port or 0
        self.realm = realm
        self.children = children
        self.invite_auth = invite_auth
        self.debug = debug
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.name = name
        self.proc: ManagedProcess | None = None
        self.cfg_path = self.dir / "kamailio.cfg"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def domain(self) -> str:
        """The SIP domain (and digest realm) phones use in their AOR."""
        return self.realm

    def user_uri(self, user: str, transport: str = "udp") -> str:
        """A URI that reaches `user` through this server, e.g. `sip:bob@127.0.0.1:5090`."""
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@127.0.0.1:{self.port}{suffix}"

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the form sipp takes as its target."""
        return f"127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        """The registrar URI for UDP, e.g. `sip:127.0.0.1:5090`."""
        return f"sip:127.0.0.1:{self.port}"

    def uri_for(self, transport: str = "udp") -> str:
        """The server URI for a transport: `sip:127.0.0.1:P` or `sip:127.0.0.1:P;transport=tcp`."""
        return self.uri if transport == "udp" else f"{self.uri};transport={transport}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError("kamailio is not started")
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> Kamailio:
        binary = kamailio_available()
        if binary is None:
            raise ProcessError("kamailio is not installed (apt-get install kamailio)")
        self.dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.fixed_port else 3
        last: Exception | None = None
        for attempt in range(attempts):
            self.port = self.fixed_port or free_port("udp+tcp")
            self.cfg_path.write_text(
                render_config(
                    self.users,
                    self.port,
                    realm=self.realm,
                    children=self.children,
                    invite_auth=self.invite_auth,
                    debug=self.debug,
                )
            )
            proc = ManagedProcess(
                f"{self.name}-{attempt}" if attempt else self.name,
                [
                    binary,
                    "-f",
                    str(self.cfg_path),
                    "-DD",
                    "-E",
                    "-m",
                    str(self.shm_mb),
                    "-M",
                    str(self.pkg_mb),
                ],
                log_dir=self.dir,
                cwd=self.dir,
            )
            proc.start()
            self.proc = proc
            try:
                wait_until_answering("127.0.0.1", self.port, timeout=timeout, alive=proc.alive)
                return self
            except (RuntimeError, TimeoutError) as exc:
                tail = proc.log_tail(60)
                proc.kill()
                last = ProcessError(f"kamailio did not come up on port {self.port}: {exc}\n{tail}")
                if "Address already in use" not in tail:
                    break
        assert last is not None
        raise last

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None:
            self.proc.stop(timeout)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def log_tail(self, lines: int = 40) -> str:
        return self.proc.log_tail(lines) if self.proc is not None else "(kamailio not started)"

    def processes(self) -> list[psutil.Process]:
        """The main process and all its workers (for CPU and memory accounting)."""
        main = psutil.Process(self.pid)
        return [main, *main.children(recursive=True)]

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
