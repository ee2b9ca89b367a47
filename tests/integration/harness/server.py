"""`SoftswitchServer`: our switch as a subprocess on free loopback ports, for one test.

Contract with `softswitch serve` (design.md, softswitch/app.py, softswitch/logs.py):
* started as ``<python> -m softswitch serve --config <file>`` in the test's temporary directory;
* it logs one JSON object per line on stderr; once every listener is open it logs a line whose JSON has
  ``"event": "ready"`` (with a ``listen`` list of the bound sockets);
* SIGTERM stops it cleanly (calls get `shutdown_grace`, the store is flushed); SIGKILL is a crash.

The config YAML follows softswitch/config/schema.py: ``server.listen`` has udp, tcp and tls sockets on
127.0.0.1 with free ports, ``server.domain`` is 127.0.0.1 unless given, the database is a SQLite file in the
test directory, the control API is on a free port with its token file in the test directory, ``rtp_ports``
is a free range below the ephemeral ports, and TLS uses a certificate made for the test by a throw-away CA
(`ca_file` is what a phone verifies against). `extra_config` is merged into the generated mapping
(nested mappings merge key by key; anything else replaces).

`restart()` keeps the ports, the database and the token, so tests of durability see the same switch.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil
import yaml

from .ports import free_port, free_udp_range
from .process import ManagedProcess, ProcessError

__all__ = ["SoftswitchServer", "deep_merge", "make_test_pki"]

REPO_ROOT = Path(__file__).resolve().parents[3]


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `extra` merged in: mappings merge recursively, other values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_test_pki(directory: Path, names: Iterable[str]) -> tuple[Path, Path, Path]:
    """Make a CA and a server certificate for `names` (DNS names or IP addresses) in `directory`.

    Returns `(ca_file, cert_file, key_file)` as PEM files. RSA 2048 + SHA-256, valid for a day: pjsua2's
    bundled OpenSSL 1.0.2 verifies it, and so do Python's ssl and baresip.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(minutes=5)
    not_after = now + datetime.timedelta(days=1)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "softswitch test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    names = list(dict.fromkeys(names))
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


def _agent_entry(agent: Mapping[str, Any] | tuple[str, str] | str) -> dict[str, Any]:
    if isinstance(agent, str):
        return {"id": agent, "password": f"pw-{agent}"}
    if isinstance(agent, tuple):
        return {"id": agent[0], "password": agent[1]}
    return dict(agent)


class SoftswitchServer:
    """`softswitch serve` on free loopback ports with its own config, database and certificates.

    Example::

        server = SoftswitchServer(tmp_path, agents=[{"id": "alice", "password": "pw-a", "extension": "1001"}])
        server.start()
        phone = phones("alice", server=server, password="pw-a")
        ...
        server.stop()

    Agents may also be given as `"alice"` (password `pw-alice`) or `("alice", "secret")`.
    """

    def __init__(
        self,
        tmp_path: Path,
        agents: Iterable[Mapping[str, Any] | tuple[str, str] | str] = (),
        *,
        extra_config: Mapping[str, Any] | None = None,
        domain: str = "127.0.0.1",
        transports: tuple[str, ...] = ("udp", "tcp", "tls"),
        python: str = sys.executable,
        name: str = "softswitch",
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
        rtp_range_size: int = 200,
    ) -> None:
        self.dir = Path(tmp_path) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.agents = [_agent_entry(a) for a in agents]
        self.extra_config = dict(extra_config or {})
        self._domain = domain
        self.transports = transports
        self.python = python
        self.log_level = log_level
        self.env = dict(env) if env is not None else None
        self.rtp_range_size = rtp_range_size
        self.config_path = self.dir / "softswitch.yaml"
        self.db_path = self.dir / "softswitch.db"
        self.token_file = self.dir / "control.token"
        self.recordings_dir = self.dir / "recordings"
        self.ca_file: Path | None = None
        self.cert_file: Path | None = None
        self.key_file: Path | None = None
        self.udp_port = 0
        self.tcp_port = 0
        self.tls_port = 0
        self.control_port = 0
        self.rtp_ports: tuple[int, int] = (0, 0)
        self.config: dict[str, Any] = {}
        self.proc: ManagedProcess | None = None
        self.ready: dict[str, Any] = {}
        self.log_events: list[dict[str, Any]] = []
        self._consumed: set[int] = set()
        self._log_cond = threading.Condition()
        self.starts = 0

    # -- addresses -----------------------------------------------------------------------------------------

    @property
    def domain(self) -> str:
        return self._domain

    def port_for(self, transport: str) -> int:
        port = {"udp": self.udp_port, "tcp": self.tcp_port, "tls": self.tls_port}.get(transport, 0)
        if not port:
            raise ValueError(f"this server has no {transport} listener (transports: {self.transports})")
        return port

    def uri_for(self, transport: str = "udp") -> str:
        """Registrar / proxy URI, e.g. `sip:127.0.0.1:40000` or `sip:127.0.0.1:40001;transport=tcp`."""
        port = self.port_for(transport)
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:127.0.0.1:{port}{suffix}"

    def user_uri(self, user: str, transport: str = "udp") -> str:
        """A request URI for `user` (id, extension or queue number) sent straight to this server."""
        port = self.port_for(transport)
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@127.0.0.1:{port}{suffix}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError(f"{self.name} is not started")
        return self.proc.pid

    def control_token(self) -> str:
        return self.token_file.read_text().strip()

    def api(self, path: str, timeout: float = 5.0) -> Any:
        """GET `path` (e.g. `/api/status`) from the running switch's control API with its token."""
        request = urllib.request.Request(self.control_url + path)
        request.add_header("Authorization", f"Bearer {self.control_token()}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``softswitch ARGS --config <this server's YAML>`` as a subprocess (the admin's view).

        Works whether the switch is running or not (commands that need it fall back or fail as designed).
        """
        return subprocess.run(
            [self.python, "-m", "softswitch", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
            env=self._env(),
            check=False,
        )

    def cli_json(self, *args: str, timeout: float = 30.0) -> Any:
        """`cli(*args, "--json")`, asserting exit status 0, parsed."""
        result = self.cli(*args, "--json", timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"softswitch {' '.join(args)} --json exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return json.loads(result.stdout)

    # -- config --------------------------------------------------------------------------------------------

    def _allocate(self) -> None:
        taken: set[int] = set()

        def pick(kind: str) -> int:
            while True:
                port = free_port(kind)
                if port not in taken:
                    taken.add(port)
                    return port

        self.udp_port = pick("udp+tcp") if "udp" in self.transports else 0
        self.tcp_port = pick("udp+tcp") if "tcp" in self.transports else 0
        self.tls_port = pick("tcp") if "tls" in self.transports else 0
        self.control_port = pick("tcp")
        self.rtp_ports = free_udp_range(self.rtp_range_size)

    def build_config(self) -> dict[str, Any]:
        """The configuration mapping (written as YAML by `write_config`)."""
        listen = []
        for transport, port in (("udp", self.udp_port), ("tcp", self.tcp_port), ("tls", self.tls_port)):
            if transport in self.transports:
                listen.append(f"{transport}://127.0.0.1:{port}")
        server: dict[str, Any] = {
            "listen": listen,
            "domain": self._domain,
            "rtp_ports": f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "database": f"sqlite:///{self.db_path}",
            "recordings_dir": str(self.recordings_dir),
            "control": f"127.0.0.1:{self.control_port}",
            "control_token_file": str(self.token_file),
            "log_level": self.log_level,
        }
        if self._domain != "127.0.0.1":
            server["aliases"] = ["127.0.0.1"]
        if self.cert_file is not None and self.key_file is not None:
            server["tls"] = {"cert": str(self.cert_file), "key": str(self.key_file)}
        config: dict[str, Any] = {"server": server, "agents": self.agents}
        return deep_merge(config, self.extra_config)

    def write_config(self) -> Path:
        """Pick ports (first time only), make certificates if TLS is on, and write the YAML file."""
        if not self.udp_port and not self.tcp_port and not self.tls_port:
            self._allocate()
        if "tls" in self.transports and self.cert_file is None:
            self.ca_file, self.cert_file, self.key_file = make_test_pki(
                self.dir / "tls", [self._domain, "127.0.0.1", "localhost"]
            )
        self.config = self.build_config()
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return self.config_path

    # -- lifecycle -----------------------------------------------------------------------------------------

    def _on_line(self, stream: str, line: str) -> None:
        if stream != "stderr" or not line.startswith("{"):
            return
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return
        if isinstance(record, dict):
            with self._log_cond:
                self.log_events.append(record)
                self._log_cond.notify_all()

    def start(self, timeout: float = 20.0) -> SoftswitchServer:
        """Write the config (if not yet written), start the switch, wait for its `ready` log line.

        On the first start only, a port taken by someone else between our check and the switch's bind
        ("Address already in use") is retried with fresh ports, up to three times.
        """
        if self.proc is not None and self.proc.alive():
            raise ProcessError(f"{self.name} is already running (pid {self.proc.pid})")
        first = not self.config
        if first:
            self.write_config()
        for attempt in range(3 if first else 1):
            try:
                return self._start_once(timeout)
            except ProcessError as exc:
                if not first or attempt == 2 or "already in use" not in str(exc):
                    raise
                self.udp_port = self.tcp_port = self.tls_port = 0
                self.write_config()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> SoftswitchServer:
        self.starts += 1
        with self._log_cond:
            self.log_events = []
            self._consumed = set()
        self.proc = ManagedProcess(
            f"{self.name}-{self.starts}" if self.starts > 1 else self.name,
            [self.python, "-m", "softswitch", "serve", "--config", str(self.config_path)],
            log_dir=self.dir,
            cwd=self.dir,
            env=self._env(),
            on_line=self._on_line,
        )
        self.proc.start()
        try:
            line = self.proc.wait_for_line(_is_ready_line, timeout)
        except ProcessError as exc:
            self.proc.kill()
            raise ProcessError(
                f"softswitch serve did not log a ready event (config {self.config_path}):\n{exc}"
            ) from None
        self.ready = json.loads(line)
        self._check_listeners()
        return self

    def _env(self) -> dict[str, str]:
        import os

        env = dict(os.environ if self.env is None else self.env)
        # Run the working tree's package even when it is not installed in the interpreter; or, with
        # SOFTSWITCH_TEST_ROOT set, another checkout's (a snapshot of HEAD while the tree is mid-change).
        root = os.environ.get("SOFTSWITCH_TEST_ROOT") or str(REPO_ROOT)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
        return env

    def _check_listeners(self) -> None:
        """The ready line lists the bound sockets; each configured one must be among them."""
        announced = self.ready.get("listen")
        if not isinstance(announced, list):
            return
        wanted = [spec for spec in self.config["server"]["listen"]]
        missing = [spec for spec in wanted if spec not in announced]
        if missing:
            raise ProcessError(
                f"softswitch said ready but does not listen on {missing} (it listens on {announced})\n"
                f"{self.log_tail()}"
            )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; return the exit code."""
        return self.proc.stop(timeout) if self.proc is not None else None

    def kill(self) -> int | None:
        """SIGKILL at once (a crash): no shutdown code runs."""
        return self.proc.kill() if self.proc is not None else None

    def restart(self, timeout: float = 20.0, *, crash: bool = False) -> SoftswitchServer:
        """Stop (or with `crash`, SIGKILL) and start again with the same ports, database and token."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def expect_log(self, event: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for a structured log record with `"event": event` and matching fields; consume and return it.

        Records already logged count (the first unconsumed match wins), so a test can ask after the fact.
        """
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while True:
                for index, record in enumerate(self.log_events):
                    if index in self._consumed:
                        continue
                    if record.get("event") == event and all(record.get(k) == v for k, v in match.items()):
                        self._consumed.add(index)
                        return record
                remaining = deadline - time.monotonic()
                alive = self.proc is not None and self.proc.alive()
                if remaining <= 0 or not alive:
                    why = (
                        "timed out" if alive else f"the server exited ({self.proc and self.proc.returncode})"
                    )
                    raise AssertionError(
                        f"softswitch: expected log event {event!r} {match or ''} within {timeout} s; {why}\n"
                        f"{self.log_tail()}"
                    )
                self._log_cond.wait(min(remaining, 0.25))

    def log_tail(self, lines: int = 40) -> str:
        return self.proc.log_tail(lines) if self.proc is not None else f"({self.name} not started)"

    def processes(self) -> list[psutil.Process]:
        main = psutil.Process(self.pid)
        return [main, *main.children(recursive=True)]

    def __enter__(self) -> SoftswitchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_ready_line(stream: str, line: str) -> bool:
    if stream != "stderr" or '"ready"' not in line:
        return False
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and record.get("event") == "ready"
