"""Malformed input and stream framing against a real `softswitch serve`, with a phone registering throughout.

Acceptance of the foundation issue (robustness and transports): garbage, binary noise, requests truncated
at every header, oversize messages and requests missing a mandatory header, over UDP and over TCP, each get
a 400 whose reason phrase says what was wrong (or the specific status the RFC names) or silence — never a
crash: a pjsua2 phone keeps re-registering successfully during a flood of all of it, and afterwards the
switch is alive, answers OPTIONS and counted no internal error. TCP: a double CRLF gets exactly one CRLF
back (RFC 5626 §3.5.1); pipelined messages are each answered; a message split over several writes is
answered once; a connection idle past `tcp_idle_timeout` is closed by the switch.

Silence is proven without waiting out timeouts (`garbage.send_settled`): over UDP a valid OPTIONS follows
the payload on the same socket, over TCP the client half-closes and reads until the switch closes.
"""

from __future__ import annotations

import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import PhoneFactory, SoftswitchServer
from tests.integration.harness.rawsip import Reply, SipClient, options_request, split_stream, status_codes
from tests.sipp import garbage

pytestmark = pytest.mark.integration

AGENTS = [{"id": "alice", "password": "pw-alice", "extension": "1001"}]
MAX_MESSAGE = 4096
IDLE_TIMEOUT = 1.0
CONFIG = {"server": {"tcp_idle_timeout": IDLE_TIMEOUT, "limits": {"max_message_size": MAX_MESSAGE}}}
TRANSPORTS = ["udp", "tcp"]
FLOOD_ROUNDS = 6

# Statuses a parse failure may be answered with (RFC 3261 §21.4, §21.5): each must explain itself.
PARSE_STATUSES = {400, 413, 414, 416, 494, 505, 513}


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftswitchServer]:
    server = SoftswitchServer(
        tmp_path_factory.mktemp("malformed"), AGENTS, transports=("udp", "tcp"), extra_config=CONFIG
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def port(server: SoftswitchServer, transport: str) -> int:
    return server.port_for(transport)


def new_branch() -> str:
    """A fresh Via branch: a payload sent twice with one branch is a retransmission (RFC 3261 §17.2.3)."""
    return "z9hG4bK" + secrets.token_hex(8)


def assert_answered_with(reply: Reply, acceptable: set[int | str], what: str) -> None:
    """Every answer in `reply` is acceptable ("drop": none at all); parse errors explain themselves."""
    codes = reply.codes
    if not codes:
        assert "drop" in acceptable, f"{what}: expected one of {acceptable}, got silence"
        return
    assert len(codes) == 1, f"{what}: one payload, several answers {codes}: {reply.data[:400]!r}"
    assert codes[0] in acceptable, (
        f"{what}: got {codes[0]}, expected one of {acceptable}: {reply.data[:400]!r}"
    )
    if codes[0] in PARSE_STATUSES:
        status_line = reply.data.split(b"\r\n", 1)[0].decode(errors="replace")
        # e.g. "SIP/2.0 400 Bad Request (malformed CSeq 'abc OPTIONS')": the phrase names the problem.
        assert re.search(r"\(.+\)", status_line), f"{what}: the reason phrase does not say why: {status_line}"


def assert_alive(server: SoftswitchServer) -> None:
    assert server.proc is not None and server.proc.alive(), server.log_tail()
    for transport in TRANSPORTS:
        with SipClient("127.0.0.1", port(server, transport), transport=transport) as client:
            answer = client.options(f"sip:{server.domain}")
        assert answer is not None and answer.status == 200, (transport, server.log_tail())
    counters = server.api("/api/status").get("counters", {})
    assert counters.get("internal_error", 0) == 0, (counters, server.log_tail())


# -- payloads ------------------------------------------------------------------------------------------------


def valid_invite(host: str, port: int, transport: str) -> bytes:
    """A complete, well-formed INVITE with an SDP body, as a softphone sends it."""
    body = (
        "v=0\r\no=- 3 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    lines = [
        f"INVITE sip:1001@{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:9;branch={new_branch()};rport",
        "Max-Forwards: 70",
        f'From: "Garbage" <sip:garbage@{host}>;tag=trunc1',
        f"To: <sip:1001@{host}>",
        "Call-ID: truncated-invite@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: <sip:garbage@127.0.0.1:9>",
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
        "Supported: replaces, timer",
        "User-Agent: truncation-test",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def truncations(message: bytes) -> list[bytes]:
    """The message cut at the end of every line and in the middle of every line (never whole)."""
    cuts: set[int] = set()
    start = 0
    while (end := message.find(b"\r\n", start)) >= 0:
        cuts.add(end + 2)  # after the line's CRLF
        cuts.add(end)  # before it
        cuts.add((start + end) // 2)  # inside the line
        start = end + 2
    cuts.add(len(message) - 7)  # inside the body
    return [message[:cut] for cut in sorted(cuts) if 0 < cut < len(message)]


def without_header(message: bytes, name: str) -> bytes:
    lines = message.split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(name.lower().encode() + b":")]
    assert len(kept) == len(lines) - 1, f"{name} is not in the message"
    return b"\r\n".join(kept)


def binary_blobs(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    blobs = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1400))) for _ in range(count)]
    # Noise behind a plausible start line, and a request line followed by high bytes and NULs.
    blobs.append(b"OPTIONS sip:x SIP/2.0\r\n" + bytes(rng.getrandbits(8) for _ in range(300)))
    blobs.append(b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: \xff\xfe\x00\x00\r\n\r\n")
    return blobs


def oversize(host: str, port: int, transport: str) -> list[bytes]:
    """Requests over `MAX_MESSAGE` bytes: in one header line, and in the body."""
    base = options_request(host, port, transport=transport).decode()
    filler = base.replace(
        "Content-Length: 0\r\n", "X-Filler: " + "a" * (MAX_MESSAGE + 500) + "\r\nContent-Length: 0\r\n"
    )
    body = "b" * (MAX_MESSAGE + 500)
    with_body = base.replace(
        "Content-Length: 0\r\n\r\n", f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    return [filler.encode(), with_body.encode()]


# -- the garbage corpus, one payload at a time ---------------------------------------------------------------

GARBAGE_CASES = [
    pytest.param(
        name,
        transport,
        id=f"{name}-{transport}",
    )
    for name, item in garbage.PAYLOADS.items()
    for transport in item.transports
]


@pytest.mark.parametrize(("name", "transport"), GARBAGE_CASES)
def test_garbage_gets_the_rfc_answer_or_silence(switch: SoftswitchServer, name: str, transport: str) -> None:
    item = garbage.PAYLOADS[name]
    data = garbage.render(item, "127.0.0.1", port(switch, transport), new_branch(), transport=transport)
    reply = garbage.send_settled(data, "127.0.0.1", port(switch, transport), transport=transport)
    assert_answered_with(reply, set(item.acceptable), f"{name} over {transport} ({item.pins})")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_request_truncated_anywhere_gets_400_or_silence(switch: SoftswitchServer, transport: str) -> None:
    whole = valid_invite("127.0.0.1", port(switch, transport), transport)
    pieces = truncations(whole)
    assert len(pieces) > 30
    for piece in pieces:
        reply = garbage.send_settled(piece, "127.0.0.1", port(switch, transport), transport=transport)
        assert_answered_with(reply, {400, "drop"}, f"INVITE cut after {len(piece)} bytes: {piece[-40:]!r}")
    # The whole message is answered (a challenge): the truncations were refused for being truncated.
    reply = garbage.send_settled(whole, "127.0.0.1", port(switch, transport), transport=transport)
    assert [code for code in reply.codes if code >= 200] in ([401], [407]), reply.data[:300]


MISSING: dict[str, set[int | str]] = {
    "Via": {"drop", 400},  # §18.2.2: no Via, no one to answer
    "From": {"drop", 400},
    "To": {"drop", 400},
    "Call-ID": {"drop", 400},
    "CSeq": {"drop", 400},
    "Max-Forwards": {"drop", 400, 200},  # §8.2 does not make a UAS check it
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("header", list(MISSING))
def test_a_request_missing_a_mandatory_header_gets_400_or_silence(
    switch: SoftswitchServer, transport: str, header: str
) -> None:
    request = options_request("127.0.0.1", port(switch, transport), transport=transport)
    reply = garbage.send_settled(
        without_header(request, header), "127.0.0.1", port(switch, transport), transport=transport
    )
    assert_answered_with(reply, MISSING[header], f"OPTIONS without {header}")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_oversize_messages_get_513_or_silence(switch: SoftswitchServer, transport: str) -> None:
    for payload in oversize("127.0.0.1", port(switch, transport), transport):
        assert len(payload) > MAX_MESSAGE
        reply = garbage.send_settled(payload, "127.0.0.1", port(switch, transport), transport=transport)
        assert_answered_with(reply, {"drop", 400, 413, 513}, f"{len(payload)}-byte message")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_binary_noise_gets_400_or_silence(switch: SoftswitchServer, transport: str) -> None:
    for index, blob in enumerate(binary_blobs(30, seed=5626 if transport == "udp" else 3261)):
        reply = garbage.send_settled(blob, "127.0.0.1", port(switch, transport), transport=transport)
        assert_answered_with(reply, {"drop", 400}, f"blob {index} ({len(blob)} bytes)")
    assert_alive(switch)


# -- the flood, while a phone keeps registering --------------------------------------------------------------


def flood_once(server: SoftswitchServer) -> int:
    """Send every kind of bad input once over each transport; return how many payloads were sent."""
    sent = 0
    for transport in TRANSPORTS:
        target = port(server, transport)
        payloads = [
            garbage.render(item, "127.0.0.1", target, new_branch(), transport=transport)
            for item in garbage.PAYLOADS.values()
            if transport in item.transports
        ]
        payloads += truncations(valid_invite("127.0.0.1", target, transport))[::3]
        payloads += binary_blobs(10, seed=len(payloads))
        payloads += oversize("127.0.0.1", target, transport)
        for payload in payloads:
            garbage.send_settled(payload, "127.0.0.1", target, transport=transport)
            sent += 1
    return sent


def test_the_switch_survives_a_flood_while_a_phone_keeps_registering(
    switch: SoftswitchServer, phones: PhoneFactory
) -> None:
    alice = phones("alice", server=switch, password="pw-alice")
    errors: list[BaseException] = []
    sent: list[int] = []

    def flood() -> None:
        try:
            for _ in range(FLOOD_ROUNDS):
                sent.append(flood_once(switch))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    flooder = threading.Thread(target=flood, name="flood", daemon=True)
    flooder.start()
    codes = []
    while flooder.is_alive():
        codes.append(alice.register(expiry=300, code=None)["code"])
    flooder.join()
    assert not errors, errors
    assert sum(sent) > 90 * FLOOD_ROUNDS
    assert len(codes) >= 2 * FLOOD_ROUNDS, f"only {len(codes)} re-registrations during the flood"
    assert set(codes) == {200}, codes
    assert_alive(switch)


# -- TCP framing and connections -----------------------------------------------------------------------------


def tcp_connect(server: SoftswitchServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.tcp_port), timeout=2.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_for(sock: socket.socket, seconds: float) -> bytes:
    """Everything the peer sends within `seconds` (an absence check, bounded)."""
    deadline = time.monotonic() + seconds
    data = bytearray()
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65535)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def read_messages(sock: socket.socket, count: int, timeout: float = 2.0) -> list[bytes]:
    buffer = bytearray()
    messages: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"expected {count} messages, got {messages} and {bytes(buffer)!r}"
        sock.settimeout(remaining)
        chunk = sock.recv(65535)
        assert chunk, f"connection closed after {messages}"
        buffer += chunk
        messages += split_stream(buffer)
    return messages


def test_tcp_double_crlf_gets_exactly_one_crlf(switch: SoftswitchServer) -> None:
    with tcp_connect(switch) as sock:
        sock.sendall(b"\r\n\r\n")
        sock.settimeout(2.0)
        assert sock.recv(2) == b"\r\n"
        assert read_for(sock, 0.3) == b"", "more than one CRLF (or a SIP response) came back"
        # The connection is still usable.
        sock.sendall(options_request("127.0.0.1", switch.tcp_port, transport="tcp"))
        (answer,) = read_messages(sock, 1)
        assert status_codes(answer) == [200]


def test_tcp_pipelined_requests_are_each_answered(switch: SoftswitchServer) -> None:
    requests = [options_request("127.0.0.1", switch.tcp_port, transport="tcp") for _ in range(3)]
    call_ids = [r.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0] for r in requests]
    with tcp_connect(switch) as sock:
        sock.sendall(b"".join(requests))
        answers = read_messages(sock, 3)
        assert [status_codes(a) for a in answers] == [[200]] * 3
        assert [a.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0] for a in answers] == call_ids
        assert read_for(sock, 0.2) == b""


def test_tcp_message_split_over_several_writes_is_answered_once(switch: SoftswitchServer) -> None:
    request = options_request("127.0.0.1", switch.tcp_port, transport="tcp").replace(
        b"Content-Length: 0\r\n\r\n", b"Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
    )
    cuts = [5, request.index(b"Call-ID"), len(request) - 6]  # in the start line, at a header, in the body
    with tcp_connect(switch) as sock:
        start = 0
        for cut in cuts:
            sock.sendall(request[start:cut])
            start = cut
            assert read_for(sock, 0.1) == b"", f"answered before the message was complete ({cut} bytes)"
        sock.sendall(request[start:])
        (answer,) = read_messages(sock, 1)
        assert status_codes(answer) == [200]
        assert read_for(sock, 0.3) == b"", "answered more than once"


def test_tcp_connection_idle_past_the_timeout_is_closed(switch: SoftswitchServer) -> None:
    with tcp_connect(switch) as sock:
        sock.sendall(options_request("127.0.0.1", switch.tcp_port, transport="tcp"))
        read_messages(sock, 1)
        idle_since = time.monotonic()
        sock.settimeout(IDLE_TIMEOUT + 3.0)
        assert sock.recv(1) == b"", "the switch sent something instead of closing"
        idle_for = time.monotonic() - idle_since
    assert IDLE_TIMEOUT * 0.9 <= idle_for <= IDLE_TIMEOUT + 4.0, idle_for
