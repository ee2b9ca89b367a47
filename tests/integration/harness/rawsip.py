"""Raw SIP over a plain socket: health probes and malformed-message tests.

`options_request()` builds a minimal OPTIONS (RFC 3261 §11) aimed at the server itself; `exchange()` sends
any bytes over UDP or TCP from a fresh loopback socket and collects what comes back within a timeout;
`wait_until_answering()` repeats an OPTIONS probe until the server answers (the readiness check for
servers that do not log a "ready" line, such as Kamailio). Nothing here parses SIP beyond the status line.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass

__all__ = [
    "Reply",
    "exchange",
    "options_request",
    "status_codes",
    "wait_until_answering",
]

_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3}) ", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back from one `exchange()`: raw bytes, and the transport error if the peer hung up."""

    data: bytes
    closed_by_peer: bool = False

    @property
    def codes(self) -> list[int]:
        return status_codes(self.data)


def status_codes(data: bytes) -> list[int]:
    """The status codes of every SIP response found in `data`, in order."""
    return [int(m.group(1)) for m in _STATUS_RE.finditer(data)]


def options_request(
    host: str,
    port: int,
    *,
    transport: str = "udp",
    local_port: int = 0,
    user: str | None = None,
) -> bytes:
    """A minimal, valid OPTIONS request to `sip:[user@]host:port` (RFC 3261 §11, §8.1.1)."""
    branch = "z9hG4bK" + secrets.token_hex(8)
    tag = secrets.token_hex(4)
    call_id = secrets.token_hex(8) + "@harness"
    target = f"sip:{user + '@' if user else ''}{host}:{port}"
    via_transport = transport.upper()
    lines = [
        f"OPTIONS {target} SIP/2.0",
        f"Via: SIP/2.0/{via_transport} 127.0.0.1:{local_port or 9};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@127.0.0.1>;tag={tag}",
        f"To: <{target}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        "Accept: application/sdp",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def exchange(
    data: bytes,
    host: str,
    port: int,
    *,
    transport: str = "udp",
    timeout: float = 1.0,
    expect_responses: int = 1,
) -> Reply:
    """Send `data` once and collect replies until `expect_responses` status lines arrived or `timeout`.

    UDP: one datagram from a fresh socket. TCP: connect, send, read until the peer closes or enough
    responses came. A refused TCP connection raises ConnectionRefusedError.
    """
    deadline = time.monotonic() + timeout
    received = bytearray()
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(data, (host, port))
            while len(status_codes(bytes(received))) < expect_responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                try:
                    chunk, _ = sock.recvfrom(65535)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    return Reply(bytes(received), closed_by_peer=True)
                received += chunk
        return Reply(bytes(received))
    if transport != "tcp":
        raise ValueError(f"transport must be udp or tcp, not {transport!r}")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        while len(status_codes(bytes(received))) < expect_responses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65535)
            except TimeoutError:
                break
            except ConnectionResetError:
                return Reply(bytes(received), closed_by_peer=True)
            if not chunk:
                return Reply(bytes(received), closed_by_peer=True)
            received += chunk
    return Reply(bytes(received))


def wait_until_answering(
    host: str,
    port: int,
    *,
    transports: tuple[str, ...] = ("udp", "tcp"),
    timeout: float = 10.0,
    alive: object = None,
) -> None:
    """Probe with OPTIONS on each transport until a SIP response comes back; raise TimeoutError.

    `alive`, if given, is a zero-argument callable; when it returns False the wait ends at once with
    RuntimeError (the server died, no point waiting).
    """
    deadline = time.monotonic() + timeout
    pending = list(transports)
    last_error = "no answer"
    while pending:
        if alive is not None and not alive():  # type: ignore[operator]
            raise RuntimeError(f"server exited while waiting for it to answer on {host}:{port}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"no SIP answer from {host}:{port} over {', '.join(pending)} "
                f"within {timeout} s ({last_error})"
            )
        transport = pending[0]
        try:
            reply = exchange(
                options_request(host, port, transport=transport),
                host,
                port,
                transport=transport,
                timeout=min(0.2, remaining),
            )
        except OSError as exc:
            last_error = f"{transport}: {exc}"
            # Refused: nothing listens yet. Probe again after a short interval, not in a busy loop.
            _pause(min(0.05, max(0.0, deadline - time.monotonic())))
            continue
        if reply.codes:
            pending.pop(0)
        else:
            last_error = f"{transport}: silent"


def _pause(seconds: float) -> None:
    """Wait on an Event that nobody sets: a bounded pause between readiness probes."""
    import threading

    threading.Event().wait(seconds)
