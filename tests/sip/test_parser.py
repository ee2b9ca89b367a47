"""parse_message and error_response (RFC 3261 §7, §8.2.6.2, §18.3, RFC 3581): behaviour at the edge."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import CSeq
from softswitch.sip.message import Request, Response
from softswitch.sip.parser import DEFAULT_LIMITS, ParserLimits, error_response, parse_message
from softswitch.sip.uri import parse_uri

INVITE = (
    b"INVITE sip:7001@cc.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.15:53411;branch=z9hG4bK-1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:bob@10.0.0.15:53411>\r\n"
    b"To: <sip:7001@cc.example.com>\r\n"
    b'From: "Bob" <sip:bob@cc.example.com>;tag=2b5c7e91\r\n'
    b"Call-ID: NmY5ZWI3NDdmZDI4ZTc2YmRlZTRhYmE5NjFiNzZiYzQ\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b"v=0\r\ns=-\r\nt=0"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.15:53411;branch=z9hG4bK-1;rport=53411;received=198.51.100.7\r\n"
    b"To: <sip:7001@cc.example.com>;tag=as0c11b7\r\n"
    b'From: "Bob" <sip:bob@cc.example.com>;tag=2b5c7e91\r\n'
    b"Call-ID: NmY5ZWI3NDdmZDI4ZTc2YmRlZTRhYmE5NjFiNzZiYzQ\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:7001@203.0.113.10>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
SOURCE = ("198.51.100.7", 40222)


def request(data: bytes = INVITE) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def refusal(data: bytes, *, limits: ParserLimits = DEFAULT_LIMITS) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, limits=limits)
    return info.value


# --------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------


def test_a_request() -> None:
    msg = request()
    assert msg.method == "INVITE" and msg.uri == parse_uri("sip:7001@cc.example.com")
    assert msg.cseq == CSeq(1, "INVITE") and msg.max_forwards == 70
    assert msg.body == b"v=0\r\ns=-\r\nt=0"
    assert bytes(msg) == INVITE


def test_a_response() -> None:
    msg = parse_message(OK)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.to.tag == "as0c11b7" and msg.via.received == "198.51.100.7"
    assert msg.max_forwards is None  # not read for responses
    assert bytes(msg) == OK


def test_compact_forms_are_the_same_headers() -> None:
    compact = (
        b"INVITE sip:7001@cc.example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 10.0.0.15:53411;branch=z9hG4bK-1;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"m: <sip:bob@10.0.0.15:53411>\r\n"
        b"t: <sip:7001@cc.example.com>\r\n"
        b'f: "Bob" <sip:bob@cc.example.com>;tag=2b5c7e91\r\n'
        b"i: NmY5ZWI3NDdmZDI4ZTc2YmRlZTRhYmE5NjFiNzZiYzQ\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"c: application/sdp\r\n"
        b"l: 13\r\n"
        b"\r\n"
        b"v=0\r\ns=-\r\nt=0"
    )
    msg = request(compact)
    assert msg == request()  # headers compare by key, not by spelling
    assert bytes(msg) == compact  # and keep their spelling on the wire
    assert msg.headers.get("Content-Type") == "application/sdp"


def test_header_names_in_any_case_with_space_before_the_colon() -> None:
    data = INVITE.replace(b"CSeq: 1 INVITE", b"cSEQ   :   1 INVITE").replace(
        b"Max-Forwards:", b"MAX-FORWARDS\t:"
    )
    msg = request(data)
    assert msg.cseq == CSeq(1, "INVITE") and msg.max_forwards == 70
    assert bytes(msg) == data


def test_multi_value_headers_over_lines_and_commas() -> None:
    data = OK.replace(
        b"Contact: <sip:7001@203.0.113.10>\r\n",
        b'Contact: <sip:a@h1>;q=0.1, "Doe, J" <sip:b@h2>\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\n'
        b"Contact: <sip:c@h3>\r\nRecord-Route: <sip:p3;lr>\r\n",
    )
    msg = parse_message(data)
    assert [str(c.uri) for c in msg.contacts] == ["sip:a@h1", "sip:b@h2", "sip:c@h3"]
    assert msg.contacts[1].display == "Doe, J"
    assert msg.headers.values("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert msg.headers.get_all("Record-Route") == ["<sip:p1;lr>, <sip:p2;lr>", "<sip:p3;lr>"]


def test_line_folding_joins_with_one_space() -> None:
    data = INVITE.replace(
        b"Max-Forwards: 70\r\n", b"Subject: first\r\n  second\r\n\tthird\r\nMax-Forwards:\r\n 70\r\n"
    )
    msg = request(data)
    assert msg.headers.get("Subject") == "first second third"
    assert msg.max_forwards == 70
    assert bytes(msg) == data  # unmodified: the folds are kept


def test_leading_crlfs_and_bare_lf_line_ends() -> None:
    assert request(b"\r\n\r\n" + INVITE) == request()
    lf = INVITE.replace(b"\r\n", b"\n").replace(b"v=0\ns=-\nt=0", b"v=0\r\ns=-\r\nt=0")
    assert request(lf) == request()


def test_bytes_past_content_length_are_discarded() -> None:
    assert request(INVITE + b"garbage").body == b"v=0\r\ns=-\r\nt=0"


def test_without_content_length_the_body_is_the_rest_of_the_datagram() -> None:
    msg = request(INVITE.replace(b"Content-Length: 13\r\n", b"") + b"\r\n")
    assert msg.content_length is None and msg.body == b"v=0\r\ns=-\r\nt=0\r\n"
    assert b"Content-Length: 15\r\n" in bytes(msg)  # serialising says how long it is


def test_core_headers_are_checked_before_the_message_is_returned() -> None:
    for bad in (b"Contact: <sip:bob@10.0.0.15:99999>", b"Contact: *, <sip:a@b>", b"Contact: sip:a@b?x=y"):
        exc = refusal(INVITE.replace(b"Contact: <sip:bob@10.0.0.15:53411>", bad))
        assert exc.header == "Contact"


def test_headers_nobody_reads_are_not_checked() -> None:
    msg = request(
        INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nRecord-Route: <<<\r\nDate: soon\r\n")
    )
    assert msg.headers.get("Record-Route") == "<<<"


@pytest.mark.parametrize(
    ("status_line", "status", "reason"),
    [
        (b"SIP/2.0 100 Trying", 100, "Trying"),
        (b"SIP/2.0 699 Whatever", 699, "Whatever"),
        (b"SIP/2.0 183 Session Progress", 183, "Session Progress"),
        (b"SIP/2.0 200", 200, ""),  # no SP before an empty reason phrase: accepted
        (b"sip/2.0 200 OK", 200, "OK"),  # §7.1: the version is case-insensitive
    ],
)
def test_status_lines(status_line: bytes, status: int, reason: str) -> None:
    msg = parse_message(OK.replace(b"SIP/2.0 200 OK", status_line, 1))
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (status, reason)


@pytest.mark.parametrize(
    ("status_line", "words"),
    [
        (b"SIP/2.0 099 Low", "status code out of range"),
        (b"SIP/2.0 700 High", "status code out of range"),
        (b"SIP/2.0 20 OK", "malformed status line"),
        (b"SIP/2.0 2000 OK", "malformed status line"),
        (b"SIP/2.0  200 OK", "malformed status line"),
        (b"SIP/3.0 200 OK", "unsupported version"),
    ],
)
def test_malformed_responses_are_refused_and_never_answered(status_line: bytes, words: str) -> None:
    exc = refusal(OK.replace(b"SIP/2.0 200 OK", status_line, 1))
    assert words in exc.reason
    assert exc.basis is None and error_response(exc, SOURCE) is None


def test_a_response_with_a_bad_core_header_is_refused() -> None:
    exc = refusal(OK.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"))
    assert exc.header == "CSeq" and error_response(exc) is None


# --------------------------------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------------------------------


def test_default_limits() -> None:
    assert DEFAULT_LIMITS == ParserLimits(max_message_size=65535, max_headers=128, max_line_length=8192)


def test_each_limit_has_its_status() -> None:
    limits = ParserLimits(max_message_size=2000, max_headers=12, max_line_length=200)
    assert parse_message(INVITE, limits=limits) == request()
    assert refusal(INVITE + b"x" * 2000, limits=limits).status == 513
    many = INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + b"X: 1\r\n" * 4)
    assert (refusal(many, limits=limits).status, refusal(many, limits=limits).reason) == (
        513,
        "too many headers",
    )
    long_line = INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nX: " + b"a" * 200 + b"\r\n")
    assert refusal(long_line, limits=limits).reason == "header line too long"
    folded = INVITE.replace(
        b"Max-Forwards: 70\r\n",
        b"Max-Forwards: 70\r\nX: a\r\n" + b" " + b"b" * 100 + b"\r\n " + b"c" * 100 + b"\r\n",
    )
    assert refusal(folded, limits=limits).status == 513  # the unfolded line counts
    long_uri = INVITE.replace(
        b"sip:7001@cc.example.com SIP", b"sip:" + b"7" * 200 + b"@cc.example.com SIP", 1
    )
    assert refusal(long_uri, limits=limits).status == 414
    huge_body = INVITE.replace(b"Content-Length: 13", b"Content-Length: 2001")
    assert refusal(huge_body, limits=limits).status == 413


# --------------------------------------------------------------------------------------------------
# error_response
# --------------------------------------------------------------------------------------------------


def test_error_response_copies_what_section_8_2_6_2_says_and_tags_to() -> None:
    exc = refusal(INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: lots"))
    assert (exc.status, exc.header) == (400, "Max-Forwards")
    response = error_response(exc)
    assert response is not None
    assert response.reason == "Bad Request (malformed Max-Forwards header)"
    assert response.headers.items()[:1] == [("Via", "SIP/2.0/UDP 10.0.0.15:53411;branch=z9hG4bK-1;rport")]
    assert response.from_ == request().from_ and response.call_id == request().call_id
    assert response.cseq == CSeq(1, "INVITE")
    assert response.to.uri == request().to.uri and response.to.tag is not None
    assert response.content_length == 0
    assert parse_message(bytes(response)) == response


def test_error_response_tag_is_the_same_for_a_retransmission() -> None:
    data = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: lots")
    first, again = error_response(refusal(data)), error_response(refusal(data))
    assert first is not None and again is not None
    assert first.to.tag == again.to.tag
    other = error_response(refusal(data.replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE")))
    assert other is not None and other.to.tag != first.to.tag


def test_error_response_keeps_an_existing_to_tag() -> None:
    data = INVITE.replace(b"To: <sip:7001@cc.example.com>", b"To: <sip:7001@cc.example.com>;tag=dialog1")
    response = error_response(refusal(data.replace(b"Max-Forwards: 70", b"Max-Forwards: x")))
    assert response is not None and response.to.tag == "dialog1"


def test_error_response_stamps_received_and_rport_for_the_source() -> None:
    response = error_response(refusal(INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: x")), SOURCE)
    assert response is not None
    assert response.via.received == "198.51.100.7" and response.via.rport == "40222"


def test_error_response_without_rport_adds_received_only_when_the_host_differs() -> None:
    data = INVITE.replace(b";rport", b"").replace(b"Max-Forwards: 70", b"Max-Forwards: x")
    same = error_response(refusal(data), ("10.0.0.15", 53411))
    assert same is not None and same.via.received is None and same.via.rport is None
    other = error_response(refusal(data), SOURCE)
    assert other is not None and other.via.received == "198.51.100.7"


def test_error_response_reason_is_printable_ascii_and_bounded() -> None:
    data = INVITE.replace(
        b"To: <sip:7001@cc.example.com>", "To: Jānis\x07 <sip:7001@cc.example.com>".encode()
    )
    data = data.replace(b"Max-Forwards: 70\r\n", b"")
    response = error_response(refusal(data.replace(b"<sip:7001@cc", b"<sip:7001@c c")))
    assert response is not None
    assert response.reason.isascii() and response.reason.isprintable()
    long_to = b"To: <sip:7001@" + b"c c" * 200 + b">"
    long_reason = error_response(refusal(INVITE.replace(b"To: <sip:7001@cc.example.com>", long_to)))
    assert long_reason is not None and len(long_reason.reason) == 120


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            INVITE.replace(
                b"INVITE sip:7001@cc.example.com SIP/2.0", b"INVITE  sip:7001@cc.example.com SIP/2.0"
            ),
            400,
        ),
        (INVITE.replace(b"Max-Forwards: 70", b"Max Forwards: 70"), 400),
        (INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + b"X: 1\r\n" * 200), 513),
        (INVITE.replace(b" SIP/2.0\r\n", b" SIP/2.1\r\n", 1), 505),
        (INVITE[: INVITE.index(b"Content-Type")], 400),  # truncated after the core headers
    ],
)
def test_requests_whose_header_block_is_malformed_are_still_answered(data: bytes, status: int) -> None:
    exc = refusal(data)
    assert exc.status == status
    response = error_response(exc, SOURCE)
    assert response is not None and response.status == status
    assert response.call_id == "NmY5ZWI3NDdmZDI4ZTc2YmRlZTRhYmE5NjFiNzZiYzQ"


def test_folded_core_headers_are_salvaged_unfolded() -> None:
    data = INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1\r\n INVITE").replace(b"Max-Forwards: 70", b"Bad Line")
    response = error_response(refusal(data))
    assert response is not None and response.cseq == CSeq(1, "INVITE")


def test_what_cannot_be_answered() -> None:
    no_via = INVITE.replace(b"Via: SIP/2.0/UDP 10.0.0.15:53411;branch=z9hG4bK-1;rport\r\n", b"")
    assert error_response(refusal(no_via)) is None
    junk_via = INVITE.replace(b"SIP/2.0/UDP 10.0.0.15:53411;branch=z9hG4bK-1;rport", b"nonsense")
    assert error_response(refusal(junk_via)) is None
    ack = (
        INVITE.replace(b"INVITE sip", b"ACK sip")
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"Max-Forwards: 70", b"Max-Forwards: x")
    )
    assert error_response(refusal(ack)) is None
    assert error_response(SipParseError("made up")) is None  # no basis


def test_the_basis_is_the_method_and_the_header_items() -> None:
    exc = refusal(INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: x"))
    assert exc.basis is not None
    method, items = exc.basis
    assert method == "INVITE"
    assert ("cseq", "CSeq", "1 INVITE") in items
