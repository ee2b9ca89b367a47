"""Raw SIP over a plain socket: health probes, malformed-message tests and hand-made digest exchanges.

`options_request()` builds a minimal OPTIONS (RFC 3261 §11) aimed at the server itself; `exchange()` sends
any bytes over UDP or TCP from a fresh loopback socket and collects what comes back within a timeout;
`wait_until_answering()` repeats an OPTIONS probe until the server answers (the readiness check for
servers that do not log a "ready" line, such as Kamailio).

For tests that must see every byte of an exchange (anti-enumeration, Contact: *, 423, bans):
`SipClient` keeps one UDP or TCP socket, optionally bound to another loopback address (127.0.0.2, ...,
so that a test's failures and bans stay its own), builds requests with `request()`, answers a digest
challenge with `authorization()` (RFC 7616 / RFC 8760: MD5 and SHA-256, qop=auth or none) and returns
responses parsed by `parse_response()` (status line, headers in order, body). The parsing is deliberately
minimal and independent of softswitch/sip: a test must not trust the code it is testing to read its answers.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Reply",
    "SipClient",
    "SipResponse",
    "authorization",
    "build_request",
    "exchange",
    "options_request",
    "parse_challenge",
    "parse_response",
    "split_stream",
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


# -- parsed responses -------------------------------------------------------------------------------------

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length", "m": "contact"}


def _canonical(name: str) -> str:
    lowered = name.strip().lower()
    return _COMPACT.get(lowered, lowered)


@dataclass(frozen=True, slots=True)
class SipResponse:
    """One SIP response as received: the raw bytes, the status line, the headers in order, the body."""

    raw: bytes
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    @property
    def status_line(self) -> bytes:
        return self.raw.split(b"\r\n", 1)[0]

    def get(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive, compact forms understood), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        wanted = _canonical(name)
        return [value for key, value in self.headers if _canonical(key) == wanted]

    def names(self) -> list[str]:
        """Header names in order, canonical (lower case, compact forms expanded)."""
        return [_canonical(key) for key, _ in self.headers]

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = (self.get("cseq") or "0 ?").split()
        return int(number), method

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""


def parse_response(data: bytes) -> SipResponse:
    """Parse one complete response (header folding is not supported: our switch does not fold)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    match = re.match(r"^SIP/2\.0 (\d{3}) (.*)$", lines[0])
    if match is None:
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"header line without a colon: {line!r}")
        headers.append((name.strip(), value.strip()))
    return SipResponse(data, int(match.group(1)), match.group(2), tuple(headers), body)


def split_stream(buffer: bytearray) -> list[bytes]:
    """Remove and return every complete message at the start of a stream buffer (RFC 3261 §18.3 framing).

    Leading CRLFs (keep-alive pongs) are removed too and returned as `b"\r\n"` items, one per CRLF.
    """
    out: list[bytes] = []
    while buffer:
        if buffer.startswith(b"\r\n") and not buffer.startswith(b"\r\n\r\n"):
            del buffer[:2]
            out.append(b"\r\n")
            continue
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            break
        head = bytes(buffer[:end]).decode("utf-8", errors="replace")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if _canonical(name) == "content-length":
                length = int(value.strip())
        total = end + 4 + length
        if len(buffer) < total:
            break
        out.append(bytes(buffer[:total]))
        del buffer[:total]
    return out


# -- digest (RFC 7616, RFC 8760) ----------------------------------------------------------------------------

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def parse_challenge(value: str) -> dict[str, str]:
    """`Digest realm="x", nonce="y", ...` -> {"realm": "x", "nonce": "y", ...} (names lower-cased)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not a Digest challenge: {value!r}")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        raw = match.group(2)
        params[match.group(1).lower()] = raw[1:-1] if raw.startswith('"') else raw
    return params


def authorization(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
) -> str:
    """The Authorization header value answering one WWW-Authenticate `challenge`."""
    params = parse_challenge(challenge)
    algorithm = params.get("algorithm", "MD5").upper()
    digest = _HASHES[algorithm]

    def h(text: str) -> str:
        return digest(text.encode()).hexdigest()

    realm, nonce = params["realm"], params["nonce"]
    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f"algorithm={algorithm}",
    ]
    if "auth" in qops:
        cnonce = cnonce or secrets.token_hex(8)
        count = f"{nc:08x}"
        response = h(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


# -- building requests --------------------------------------------------------------------------------------


def build_request(
    method: str,
    uri: str,
    *,
    via_host: str,
    via_port: int,
    transport: str = "udp",
    from_uri: str,
    to_uri: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """A request with every mandatory header (RFC 3261 §8.1.1) plus `headers`, in that order."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {via_host}:{via_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f"From: <{from_uri}>;tag={from_tag or secrets.token_hex(4)}",
        f"To: <{to_uri or from_uri}>",
        f"Call-ID: {call_id or secrets.token_hex(8) + '@rawsip'}",
        f"CSeq: {cseq} {method}",
        *(f"{name}: {value}" for name, value in headers),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


class SipClient:
    """One UDP socket or TCP connection to a SIP server, from `local_host` (any 127.x.y.z works on Linux).

    Example::

        with SipClient("127.0.0.1", server.udp_port, local_host="127.0.0.2") as client:
            challenge, final = client.register("alice", "pw-alice", domain="127.0.0.1")
            assert final is not None and final.status == 200

    `advertise` puts another address into Via and the default Contact, as a phone behind a home NAT does
    (its private address); the server must then answer, and reach the phone later, at the packets' source.
    While waiting for a response, requests arriving on the socket (the server's qualify OPTIONS) are
    answered 200 (`next_request()` returns them instead); responses that do not belong to the request
    being waited for (a retransmission of an earlier answer) are skipped.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transport: str = "udp",
        local_host: str = "127.0.0.1",
        timeout: float = 2.0,
        advertise: tuple[str, int] | None = None,
        local_port: int = 0,
    ) -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be udp or tcp, not {transport!r}")
        self.host = host
        self.port = port
        self.transport = transport
        self.timeout = timeout
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        if local_port:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((local_host, local_port))
        if transport == "tcp":
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.local = self.sock.getsockname()[:2]
        # What goes into Via and the default Contact: our socket's address, or (a phone behind NAT)
        # a private address nobody can reach, so the server must answer to the packets' source.
        self.advertise: tuple[str, int] = advertise or (self.local[0], self.local[1])
        self._buffer = bytearray()
        self._cseq = 0
        self.closed_by_peer = False
        self.received: list[bytes] = []

    # -- raw I/O --

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, (self.host, self.port))
        else:
            self.sock.sendall(data)

    def read_raw(self, timeout: float) -> bytes | None:
        """The next datagram, or the next chunk of the stream; None on timeout; b"" when TCP closed."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            if self.transport == "udp":
                data, _ = self.sock.recvfrom(65535)
            else:
                data = self.sock.recv(65535)
        except TimeoutError:
            return None
        except (ConnectionResetError, ConnectionRefusedError):
            self.closed_by_peer = True
            return b""
        if not data and self.transport == "tcp":
            self.closed_by_peer = True
        return data

    def next_request(self, timeout: float) -> bytes | None:
        """The next request the server sends us (responses and CRLFs are skipped); None on timeout."""
        deadline = time.monotonic() + timeout
        while (message := self.next_message(deadline - time.monotonic())) is not None:
            if message != b"\r\n" and not message.startswith(b"SIP/2.0 "):
                return message
        return None

    def next_message(self, timeout: float) -> bytes | None:
        """The next whole message (or a lone CRLF pong on TCP); None on timeout or when the peer closed."""
        deadline = time.monotonic() + timeout
        while True:
            if self.transport == "tcp":
                ready = split_stream(self._buffer)
                if ready:
                    self._buffer[:0] = b"".join(ready[1:])
                    self.received.append(ready[0])
                    return ready[0]
                if self.closed_by_peer:
                    return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            data = self.read_raw(remaining)
            if data is None:
                return None
            if self.transport == "udp":
                self.received.append(data)
                return data
            if not data:
                return None
            self._buffer += data

    def response(
        self, timeout: float | None = None, *, call_id: str | None = None, cseq: int | None = None
    ) -> SipResponse | None:
        """The next final response (matching `call_id`/`cseq` if given); None if none comes in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            message = self.next_message(deadline - time.monotonic())
            if message is None:
                return None
            if not message.startswith(b"SIP/2.0 "):
                self.answer_request(message)
                continue
            parsed = parse_response(message)
            if call_id is not None and parsed.call_id != call_id:
                continue
            if cseq is not None and parsed.cseq[0] != cseq:
                continue
            if parsed.status >= 200:
                return parsed

    def answer_request(self, message: bytes) -> None:
        """Answer a request from the server (a qualify OPTIONS) with 200, copying the §8.2.6.2 headers."""
        if message == b"\r\n" or message.startswith(b"ACK "):
            return
        head = message.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        copied = [
            line
            for line in head[1:]
            if _canonical(line.partition(":")[0]) in ("via", "from", "to", "call-id", "cseq")
        ]
        answer = "\r\n".join(["SIP/2.0 200 OK", *copied, "Content-Length: 0", "", ""]).encode()
        self.send(answer)

    # -- requests --

    def next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq

    def request(
        self,
        method: str,
        uri: str,
        *,
        from_uri: str,
        to_uri: str | None = None,
        call_id: str | None = None,
        cseq: int | None = None,
        from_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> tuple[bytes, str, int]:
        """Build a request from this socket's address; returns (bytes, call_id, cseq). Not sent."""
        call_id = call_id or secrets.token_hex(8) + "@rawsip"
        cseq = cseq if cseq is not None else self.next_cseq()
        data = build_request(
            method,
            uri,
            via_host=self.advertise[0],
            via_port=self.advertise[1],
            transport=self.transport,
            from_uri=from_uri,
            to_uri=to_uri,
            call_id=call_id,
            cseq=cseq,
            from_tag=from_tag,
            headers=headers,
            body=body,
        )
        return data, call_id, cseq

    def ask(self, data: bytes, call_id: str, cseq: int, timeout: float | None = None) -> SipResponse | None:
        """Send a request built by `request()` and wait for its final response."""
        self.send(data)
        return self.response(timeout, call_id=call_id, cseq=cseq)

    def contact(self, user: str) -> str:
        suffix = "" if self.transport == "udp" else ";transport=tcp"
        return f"sip:{user}@{self.advertise[0]}:{self.advertise[1]}{suffix}"

    def transact(
        self,
        method: str,
        uri: str,
        *,
        from_uri: str,
        to_uri: str | None = None,
        password: str | None = None,
        username: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        call_id: str | None = None,
        algorithm: str = "MD5",
        timeout: float | None = None,
    ) -> tuple[SipResponse | None, SipResponse | None]:
        """Send a request; if it is challenged (401/407) and `password` is given, retry with credentials.

        Returns `(first, second)`: the final answer to the request without credentials and the final
        answer to the retry (None when no retry was made: no challenge, no password, or silence). Final
        answers to an INVITE are ACKed (§17.1.1.3). The retry keeps the Call-ID and From tag (§22.2).
        """
        call_id = call_id or secrets.token_hex(8) + "@rawsip"
        from_tag = secrets.token_hex(4)
        extra = list(headers)
        data, _, cseq = self.request(
            method,
            uri,
            from_uri=from_uri,
            to_uri=to_uri,
            call_id=call_id,
            from_tag=from_tag,
            headers=extra,
            body=body,
        )
        first = self.ask(data, call_id, cseq, timeout)
        if first is not None and method == "INVITE":
            self.ack(first, uri)
        if first is None or first.status not in (401, 407) or password is None:
            return first, None
        challenge_header = "www-authenticate" if first.status == 401 else "proxy-authenticate"
        answer_header = "Authorization" if first.status == 401 else "Proxy-Authorization"
        challenges = [parse_challenge(c) | {"_raw": c} for c in first.get_all(challenge_header)]
        chosen = next((c for c in challenges if c.get("algorithm", "MD5").upper() == algorithm), None)
        if chosen is None:
            raise AssertionError(f"no {algorithm} challenge in {first.get_all(challenge_header)}")
        user = username or from_uri.split(":", 1)[1].split("@", 1)[0]
        credentials = authorization(chosen["_raw"], method=method, uri=uri, username=user, password=password)
        data, _, cseq = self.request(
            method,
            uri,
            from_uri=from_uri,
            to_uri=to_uri,
            call_id=call_id,
            from_tag=from_tag,
            headers=[*extra, (answer_header, credentials)],
            body=body,
        )
        second = self.ask(data, call_id, cseq, timeout)
        if second is not None and method == "INVITE":
            self.ack(second, uri)
        return first, second

    def ack(self, response: SipResponse, uri: str) -> None:
        """ACK a final response to an INVITE: for a non-2xx, in the INVITE's transaction (§17.1.1.3)."""
        via = response.get("via") or ""
        via = re.sub(r";received=[^;]*", "", via)
        via = re.sub(r";rport=\d+", ";rport", via)
        if response.status < 300:
            via = re.sub(r"branch=[^;]*", f"branch=z9hG4bK{secrets.token_hex(8)}", via)
        number, _ = response.cseq
        lines = [
            f"ACK {uri} SIP/2.0",
            f"Via: {via}",
            "Max-Forwards: 70",
            f"From: {response.get('from')}",
            f"To: {response.get('to')}",
            f"Call-ID: {response.call_id}",
            f"CSeq: {number} ACK",
            "Content-Length: 0",
            "",
            "",
        ]
        self.send("\r\n".join(lines).encode())

    def register(
        self,
        user: str,
        password: str | None,
        *,
        domain: str,
        contact: str | None = None,
        expires: int | None = 60,
        username: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        call_id: str | None = None,
        algorithm: str = "MD5",
        timeout: float | None = None,
    ) -> tuple[SipResponse | None, SipResponse | None]:
        """REGISTER `user` at `domain`, answering a 401 with the credentials (see `transact`).

        `contact` "*" sends the wildcard; the default is this socket's address.
        """
        extra = list(headers)
        extra.append(("Contact", "*" if contact == "*" else f"<{contact or self.contact(user)}>"))
        if expires is not None:
            extra.append(("Expires", str(expires)))
        return self.transact(
            "REGISTER",
            f"sip:{domain}",
            from_uri=f"sip:{user}@{domain}",
            password=password,
            username=username,
            headers=extra,
            call_id=call_id,
            algorithm=algorithm,
            timeout=timeout,
        )

    def options(self, uri: str, *, timeout: float | None = None) -> SipResponse | None:
        data, call_id, cseq = self.request("OPTIONS", uri, from_uri=f"sip:probe@{self.local[0]}", to_uri=uri)
        return self.ask(data, call_id, cseq, timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
