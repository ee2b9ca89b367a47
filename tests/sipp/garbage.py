"""Malformed and hostile SIP payloads for the robustness tests, sent with a plain socket.

Each `Garbage` names the behaviour it pins and the answers that are acceptable: a status code the RFC
asks for, or "drop" (no answer at all, because there is nothing to answer to or the RFC says discard).
Whatever the payload, the server must stay up: every test of these ends with an OPTIONS probe that must
still get 200. Send them with `send()` (UDP or TCP; waits `timeout` for an answer) or `send_settled()`
(proves silence without waiting out a timeout); RFC 4475 torture messages live in tests/data/sip/.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass

from tests.integration.harness.rawsip import Reply, exchange, options_request

__all__ = ["PAYLOADS", "Garbage", "render", "send", "send_settled"]


@dataclass(frozen=True, slots=True)
class Garbage:
    name: str
    template: bytes
    """The payload; `{host}`, `{port}`, `{branch}` and `{transport}` are filled in by `render`."""
    pins: str
    acceptable: frozenset[int | str]
    """Status codes and/or "drop" (no answer) that satisfy the RFC."""
    transports: tuple[str, ...] = ("udp", "tcp")


def _request(first_line: str, *headers: str, body: str = "", content_length: int | None = None) -> bytes:
    length = len(body.encode()) if content_length is None else content_length
    lines = [first_line, *headers]
    if content_length is not None or body or not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


_VIA = "Via: SIP/2.0/{transport} 127.0.0.1:9;branch={branch};rport"
_FROM = "From: <sip:garbage@127.0.0.1>;tag=g1"
_TO = "To: <sip:{host}:{port}>"
_CALL_ID = "Call-ID: garbage-{branch}@127.0.0.1"
_MAXF = "Max-Forwards: 70"

_rng = random.Random(4475)

PAYLOADS: dict[str, Garbage] = {
    g.name: g
    for g in (
        Garbage(
            "empty",
            b"",
            "an empty datagram is not a message: nothing to answer",
            frozenset({"drop"}),
            ("udp",),
        ),
        Garbage(
            "crlf_keepalive",
            b"\r\n\r\n",
            "RFC 5626 §3.5.1 CRLF keep-alive: over UDP ignored; over TCP answered with a single CRLF (pong), "
            "never with a SIP response",
            frozenset({"drop"}),
        ),
        Garbage(
            "random_binary",
            bytes(_rng.getrandbits(8) for _ in range(512)),
            "bytes that are not SIP: without a parsable Via there is nobody to answer, so drop (and on TCP "
            "the connection may be closed)",
            frozenset({"drop", 400}),
        ),
        Garbage(
            "no_via",
            _request("OPTIONS sip:{host}:{port} SIP/2.0", _MAXF, _FROM, _TO, _CALL_ID, "CSeq: 1 OPTIONS"),
            "RFC 3261 §8.1.1.7, §18.2.2: a request without Via cannot be answered (responses follow Via)",
            frozenset({"drop", 400}),
        ),
        Garbage(
            "no_call_id",
            _request("OPTIONS sip:{host}:{port} SIP/2.0", _VIA, _MAXF, _FROM, _TO, "CSeq: 1 OPTIONS"),
            "RFC 3261 §8.1.1: Call-ID is mandatory; a request without it gets 400 Bad Request",
            frozenset({400, "drop"}),
        ),
        Garbage(
            "no_cseq",
            _request("OPTIONS sip:{host}:{port} SIP/2.0", _VIA, _MAXF, _FROM, _TO, _CALL_ID),
            "RFC 3261 §8.1.1: CSeq is mandatory: 400",
            frozenset({400, "drop"}),
        ),
        Garbage(
            "bad_cseq_number",
            _request(
                "OPTIONS sip:{host}:{port} SIP/2.0", _VIA, _MAXF, _FROM, _TO, _CALL_ID, "CSeq: abc OPTIONS"
            ),
            "RFC 3261 §20.16: the CSeq number is a 32-bit unsigned integer: 400",
            frozenset({400, "drop"}),
        ),
        Garbage(
            "cseq_method_mismatch",
            _request(
                "OPTIONS sip:{host}:{port} SIP/2.0", _VIA, _MAXF, _FROM, _TO, _CALL_ID, "CSeq: 1 INVITE"
            ),
            "RFC 3261 §8.1.1.5: the CSeq method must match the request method: 400",
            frozenset({400, "drop"}),
        ),
        Garbage(
            "sip_version_3",
            _request(
                "OPTIONS sip:{host}:{port} SIP/3.0", _VIA, _MAXF, _FROM, _TO, _CALL_ID, "CSeq: 1 OPTIONS"
            ),
            "RFC 3261 §21.5.6: a SIP version the server does not support gets 505 Version Not Supported",
            frozenset({505, 400, "drop"}),
        ),
        Garbage(
            "unknown_method",
            _request(
                "FROBNICATE sip:{host}:{port} SIP/2.0",
                _VIA,
                _MAXF,
                _FROM,
                _TO,
                _CALL_ID,
                "CSeq: 1 FROBNICATE",
            ),
            "RFC 3261 §8.2.1: a method the server does not know gets 501 (or 405 with Allow)",
            frozenset({501, 405}),
        ),
        Garbage(
            "content_length_too_big",
            _request(
                "OPTIONS sip:{host}:{port} SIP/2.0",
                _VIA,
                _MAXF,
                _FROM,
                _TO,
                _CALL_ID,
                "CSeq: 1 OPTIONS",
                body="hello",
                content_length=2000,
            ),
            "RFC 3261 §18.3: over UDP a Content-Length larger than the datagram's body means discard "
            "(400 is tolerated); over TCP the server waits for the rest, so only UDP is sent",
            frozenset({"drop", 400}),
            ("udp",),
        ),
        Garbage(
            "huge_header",
            _request(
                "OPTIONS sip:{host}:{port} SIP/2.0",
                _VIA,
                _MAXF,
                _FROM,
                _TO,
                _CALL_ID,
                "CSeq: 1 OPTIONS",
                "X-Filler: " + "a" * 60000,
            ),
            "a 60 KB header line: over the line limit, so 400/413/494 or a drop, never a crash",
            frozenset({"drop", 400, 413, 494, 513}),
        ),
        Garbage(
            "nul_in_header",
            _request(
                "OPTIONS sip:{host}:{port} SIP/2.0",
                _VIA,
                _MAXF,
                _FROM,
                _TO,
                _CALL_ID,
                "CSeq: 1 OPTIONS",
                "X-Nul: a\x00b",
            ),
            "a NUL byte inside a header value is not TEXT-UTF8 (§25.1): 400 or drop",
            frozenset({"drop", 400}),
        ),
        Garbage(
            "truncated_headers",
            b"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            + _VIA.encode()
            + b"\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:",
            "a datagram cut off inside the headers (no blank line): discard, or 400",
            frozenset({"drop", 400}),
            ("udp",),
        ),
    )
}


def render(
    garbage: Garbage, host: str, port: int, branch: str = "z9hG4bKgarbage", *, transport: str = "udp"
) -> bytes:
    """The payload with host, port, branch and the Via transport filled in (byte-level, so binary payloads
    stay intact). The Via names the transport the payload is sent over: a server may answer a request
    whose Via says UDP over UDP even when it came over TCP (RFC 3261 §18.2.2 goes by the Via)."""
    return (
        garbage.template.replace(b"{host}", host.encode())
        .replace(b"{port}", str(port).encode())
        .replace(b"{branch}", branch.encode())
        .replace(b"{transport}", transport.upper().encode())
    )


def send(garbage: Garbage, host: str, port: int, *, transport: str = "udp", timeout: float = 0.5) -> Reply:
    """Send one payload from a fresh socket and return what came back within `timeout`."""
    return exchange(
        render(garbage, host, port, transport=transport), host, port, transport=transport, timeout=timeout
    )


def send_settled(data: bytes, host: str, port: int, *, transport: str = "udp", timeout: float = 3.0) -> Reply:
    """Send raw bytes and return every answer to them, knowing when no more can come.

    UDP: the payload, then a valid OPTIONS from the same socket; a server handles one socket's datagrams in
    order, so whatever arrives before the OPTIONS' own answer is the payload's answer, and nothing means
    silence. Raises AssertionError when the OPTIONS gets no answer (the server died or dropped us).
    TCP: the payload on a fresh connection, then a half-close; everything until the server closes is the
    answer (`closed_by_peer` is False if it did not close within `timeout`).
    """
    deadline = time.monotonic() + timeout
    received = bytearray()
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            marker = options_request(host, port, local_port=sock.getsockname()[1])
            call_id = marker.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0]
            if data:
                sock.sendto(data, (host, port))
            sock.sendto(marker, (host, port))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no answer to the OPTIONS sent after the payload within {timeout} s "
                        f"(received so far: {bytes(received)[:300]!r})"
                    )
                sock.settimeout(remaining)
                try:
                    chunk, _ = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                if b"Call-ID: " + call_id + b"\r\n" in chunk and chunk.startswith(b"SIP/2.0 "):
                    return Reply(bytes(received))
                received += chunk
    if transport != "tcp":
        raise ValueError(f"transport must be udp or tcp, not {transport!r}")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return Reply(bytes(received), closed_by_peer=True)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Reply(bytes(received), closed_by_peer=False)
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65535)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return Reply(bytes(received), closed_by_peer=True)
            if not chunk:
                return Reply(bytes(received), closed_by_peer=True)
            received += chunk
