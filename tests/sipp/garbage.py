"""Malformed and hostile SIP payloads for the robustness tests, sent with a plain socket.

Each `Garbage` names the behaviour it pins and the answers that are acceptable: a status code the RFC
asks for, or "drop" (no answer at all, because there is nothing to answer to or the RFC says discard).
Whatever the payload, the server must stay up: every test of these ends with an OPTIONS probe that must
still get 200. Send them with `send()` (UDP or TCP); RFC 4475 torture messages live in tests/data/sip/.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.integration.harness.rawsip import Reply, exchange

__all__ = ["PAYLOADS", "Garbage", "render", "send"]


@dataclass(frozen=True, slots=True)
class Garbage:
    name: str
    template: bytes
    """The payload; `{host}`, `{port}` and `{branch}` are filled in by `render`."""
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


_VIA = "Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport"
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
                content_length=9000,
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


def render(garbage: Garbage, host: str, port: int, branch: str = "z9hG4bKgarbage") -> bytes:
    """The payload with host, port and branch filled in (byte-level, so binary payloads stay intact)."""
    return (
        garbage.template.replace(b"{host}", host.encode())
        .replace(b"{port}", str(port).encode())
        .replace(b"{branch}", branch.encode())
    )


def send(garbage: Garbage, host: str, port: int, *, transport: str = "udp", timeout: float = 0.5) -> Reply:
    """Send one payload from a fresh socket and return what came back within `timeout`."""
    return exchange(render(garbage, host, port), host, port, transport=transport, timeout=timeout)
