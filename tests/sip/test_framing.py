"""Stream framing: whole, byte by byte, pipelined, keep-alives, limits and errors."""

from __future__ import annotations

import pytest

from softswitch.sip.framing import (
    FramedItem,
    FramingError,
    KeepAlivePing,
    KeepAlivePong,
    Message,
    StreamFramer,
    encode_keepalive_response,
)

REGISTER = (
    b"REGISTER sip:cc.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.4:5060;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:alice@cc.example.com>\r\n"
    b"From: <sip:alice@cc.example.com>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.4;transport=tcp>\r\n"
    b"Expires: 7200\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
INVITE = (
    b"INVITE sip:7001@cc.example.com SIP/2.0\r\n"
    b"v: SIP/2.0/TCP 192.0.2.4;branch=z9hG4bK776asdhds\r\n"
    b"f: <sip:alice@cc.example.com>;tag=1928301774\r\n"
    b"t: <sip:7001@cc.example.com>\r\n"
    b"i: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"c: application/sdp\r\n"
    b"l: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)
OK_WITH_BODY = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.4;branch=z9hG4bK776asdhds\r\n"
    b"CONTENT-LENGTH   :   5\r\n"
    b"\r\n"
    b"hello"
)


def feed_whole(data: bytes, **kwargs: int) -> list[FramedItem]:
    return StreamFramer(**kwargs).feed(data)


def feed_bytewise(data: bytes, **kwargs: int) -> list[FramedItem]:
    framer = StreamFramer(**kwargs)
    items: list[FramedItem] = []
    for i in range(len(data)):
        items += framer.feed(data[i : i + 1])
    return items


def both_ways(data: bytes, **kwargs: int) -> list[FramedItem]:
    whole = feed_whole(data, **kwargs)
    assert feed_bytewise(data, **kwargs) == whole
    return whole


@pytest.mark.parametrize("message", [REGISTER, INVITE, OK_WITH_BODY])
def test_one_message_whole_and_byte_by_byte(message: bytes) -> None:
    assert both_ways(message) == [Message(message)]


def test_partial_message_is_held_until_complete() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE[:-10]) == []
    assert framer.buffered == len(INVITE) - 10
    assert framer.feed(INVITE[-10:]) == [Message(INVITE)]
    assert framer.buffered == 0


def test_split_inside_the_empty_line() -> None:
    end = REGISTER.index(b"\r\n\r\n")
    for cut in range(end, end + 4):
        framer = StreamFramer()
        assert framer.feed(REGISTER[:cut]) == []
        assert framer.feed(REGISTER[cut:]) == [Message(REGISTER)]


def test_pipelined_messages_in_one_read() -> None:
    data = REGISTER + INVITE + OK_WITH_BODY + REGISTER
    assert both_ways(data) == [Message(REGISTER), Message(INVITE), Message(OK_WITH_BODY), Message(REGISTER)]


def test_second_message_glued_to_the_first_read() -> None:
    framer = StreamFramer()
    assert framer.feed(REGISTER + INVITE[:20]) == [Message(REGISTER)]
    assert framer.feed(INVITE[20:]) == [Message(INVITE)]


def test_body_that_looks_like_a_message_is_body() -> None:
    body = REGISTER  # contains CRLFCRLF and a Content-Length of its own
    outer = b"MESSAGE sip:bob@x SIP/2.0\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    assert both_ways(outer) == [Message(outer)]


def test_keepalive_ping_and_pong_between_messages() -> None:
    data = b"\r\n\r\n" + REGISTER + b"\r\n" + INVITE + b"\r\n\r\n" + b"\r\n\r\n"
    assert both_ways(data) == [
        KeepAlivePing(),
        Message(REGISTER),
        KeepAlivePong(),
        Message(INVITE),
        KeepAlivePing(),
        KeepAlivePing(),
    ]


def test_lone_crlf_waits_until_it_cannot_be_a_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [KeepAlivePing()]
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"R") == [KeepAlivePong()]
    assert framer.feed(REGISTER[1:]) == [Message(REGISTER)]


def test_three_crlfs_are_a_ping_then_a_pong() -> None:
    assert both_ways(b"\r\n\r\n\r\n" + REGISTER) == [KeepAlivePing(), KeepAlivePong(), Message(REGISTER)]


def test_ping_answer_is_a_single_crlf() -> None:
    assert encode_keepalive_response() == b"\r\n"
    assert KeepAlivePing().response() == b"\r\n"


def test_compact_and_case_insensitive_content_length() -> None:
    for header in (b"l: 5", b"L:5", b"content-length: 5", b"Content-Length:\t5 ", b"cOnTeNt-LeNgTh : 5"):
        message = b"SIP/2.0 200 OK\r\nVia: x\r\n" + header + b"\r\n\r\nhello"
        assert both_ways(message + REGISTER) == [Message(message), Message(REGISTER)]


def test_folded_content_length_value() -> None:
    message = b"SIP/2.0 200 OK\r\nContent-Length:\r\n   5\r\n\r\nhello"
    assert both_ways(message) == [Message(message)]


def test_header_names_ending_in_l_are_not_content_length() -> None:
    message = b"SIP/2.0 200 OK\r\nUrl: 99\r\nxl: 7\r\nl: 2\r\n\r\nhi"
    assert both_ways(message) == [Message(message)]


def test_repeated_equal_content_length_is_accepted() -> None:
    message = b"SIP/2.0 200 OK\r\nContent-Length: 2\r\nl: 02\r\n\r\nhi"
    assert both_ways(message) == [Message(message)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
            "missing Content-Length (required on stream transports, RFC 3261 §18.3)",
        ),
        (b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n", "negative Content-Length -1"),
        (b"SIP/2.0 200 OK\r\nContent-Length: ten\r\n\r\n", "non-numeric Content-Length b'ten'"),
        (b"SIP/2.0 200 OK\r\nContent-Length: \r\n\r\n", "non-numeric Content-Length b''"),
        (b"SIP/2.0 200 OK\r\nContent-Length: 1 2\r\n\r\n", "non-numeric Content-Length b'1 2'"),
        (b"SIP/2.0 200 OK\r\nContent-Length: +3\r\n\r\n", "non-numeric Content-Length b'+3'"),
        (b"SIP/2.0 200 OK\r\nl: 2\r\nl: 3\r\n\r\n", "conflicting Content-Length values [2, 3]"),
        (
            b"SIP/2.0 200 OK\r\nl: " + b"9" * 5000 + b"\r\n\r\n",
            "Content-Length of 5000 digits is over any limit",
        ),
        (b"SIP/2.0 200 OK\r\nl: 65519\r\n\r\n", "message of 65547 bytes exceeds the 65535-byte limit"),
    ],
)
def test_errors(data: bytes, reason: str) -> None:
    items = both_ways(data)
    assert items == [FramingError(reason)]


def test_error_after_good_messages_keeps_them_and_stops() -> None:
    framer = StreamFramer()
    bad = b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n"
    items = framer.feed(REGISTER + b"\r\n\r\n" + bad + REGISTER)
    assert items == [
        Message(REGISTER),
        KeepAlivePing(),
        FramingError("missing Content-Length (required on stream transports, RFC 3261 §18.3)"),
    ]
    assert framer.failed == items[-1]
    assert framer.feed(REGISTER) == []
    assert framer.buffered == 0


def test_message_exactly_at_the_size_limit_is_accepted() -> None:
    head = b"MESSAGE sip:x SIP/2.0\r\nl: "
    # header block length depends on the digits; solve for a total of exactly 1000 bytes
    for body_length in range(900, 1000):
        message = head + str(body_length).encode() + b"\r\n\r\n" + b"x" * body_length
        if len(message) == 1000:
            break
    assert len(message) == 1000
    assert both_ways(message, max_message_size=1000, max_header_size=100) == [Message(message)]
    too_big = message + b"x"
    too_big = too_big.replace(str(body_length).encode(), str(body_length + 1).encode(), 1)
    assert both_ways(too_big, max_message_size=1000, max_header_size=100) == [
        FramingError("message of 1001 bytes exceeds the 1000-byte limit")
    ]


def test_header_block_limit_exact_and_over() -> None:
    block = b"OPTIONS sip:x SIP/2.0\r\nl: 0\r\nX: "
    block += b"a" * (100 - len(block) - 4) + b"\r\n\r\n"
    assert len(block) == 100
    assert both_ways(block, max_header_size=100, max_message_size=1000) == [Message(block)]
    longer = block.replace(b"X: a", b"X: aa", 1)
    assert both_ways(longer, max_header_size=100, max_message_size=1000) == [
        FramingError("header block exceeds the 100-byte limit")
    ]


def test_header_limit_fires_before_the_end_arrives() -> None:
    framer = StreamFramer(max_header_size=100, max_message_size=1000)
    assert framer.feed(b"OPTIONS sip:x SIP/2.0\r\n") == []
    assert framer.feed(b"X: " + b"a" * 200) == [FramingError("header block exceeds the 100-byte limit")]


def test_garbage_without_an_empty_line_is_bounded() -> None:
    framer = StreamFramer()
    items: list[FramedItem] = []
    for _ in range(20):
        items += framer.feed(b"\x00" * 1000)
    assert items == [FramingError("header block exceeds the 16384-byte limit")]
    assert framer.buffered == 0


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        StreamFramer(max_header_size=3)
    with pytest.raises(ValueError):
        StreamFramer(max_message_size=3)


def test_header_limit_never_exceeds_the_message_limit() -> None:
    framer = StreamFramer(max_message_size=100)
    assert framer.max_header_size == 100
    assert framer.feed(b"X" * 100) == [FramingError("header block exceeds the 100-byte limit")]


def test_search_resumes_instead_of_rescanning() -> None:
    # A 16 KiB header block fed one byte at a time: with a rescan per feed this is ~130 M byte
    # comparisons; resuming keeps it linear. Checked by counting, not by timing.
    framer = StreamFramer()
    block = b"OPTIONS sip:x SIP/2.0\r\nl: 0\r\nX: " + b"a" * 16000 + b"\r\n\r\n"
    scans: list[int] = []
    for i in range(len(block)):
        framer.feed(block[i : i + 1])
        scans.append(len(framer._buf) - framer._scan)
    assert max(scans) <= 4


def test_header_limit_is_judged_as_soon_as_it_is_certain() -> None:
    block = b"OPTIONS sip:x SIP/2.0\r\nl: 0\r\nX: "
    block += b"a" * (100 - len(block) - 4) + b"\r\n\r\n"
    framer = StreamFramer(max_header_size=100, max_message_size=1000)
    assert framer.feed(block[:-1]) == []  # 99 bytes: one more byte can still end a 100-byte block
    assert framer.feed(block[-1:]) == [Message(block)]
    framer = StreamFramer(max_header_size=100, max_message_size=1000)
    assert framer.feed(b"X" * 99) == []
    assert framer.feed(b"X") == [FramingError("header block exceeds the 100-byte limit")]  # 100, no end yet
