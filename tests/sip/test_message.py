"""Requests, responses and their headers (RFC 3261 §7, §8.2.6, §20): building, reading, serialising."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import CSeq
from softswitch.sip.message import (
    REASON_PHRASES,
    Headers,
    Request,
    Response,
    new_branch,
    new_call_id,
    new_tag,
)
from softswitch.sip.parser import parse_message
from softswitch.sip.uri import SipUri, parse_uri

REGISTER = (
    b"REGISTER sip:cc.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK-524287-1;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-proxy\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:alice@192.168.1.23:5060;transport=udp>;expires=3600\r\n"
    b"To: <sip:alice@cc.example.com>\r\n"
    b'From: "Alice" <sip:alice@cc.example.com>;tag=5c2f8e1a\r\n'
    b"Call-ID: YjY5ZDE2ZTc4NjA0MmVkNjE5MzFmZjQ2ZWVhOGE0ZGM\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Expires: 3600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE\r\n"
    b"Allow: OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def register() -> Request:
    msg = parse_message(REGISTER)
    assert isinstance(msg, Request)
    return msg


# --------------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------------


def test_lookup_is_case_insensitive_and_knows_compact_forms() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("CALL-ID", "x"), ("Call-ID", "y")])
    assert headers.get("Via") == headers.get("VIA") == "SIP/2.0/UDP a"
    assert headers.get("i") == "x"  # the first one
    assert headers.get_all("call-id") == ["x", "y"]
    assert headers.get("Missing") is None and headers.get("Missing", "d") == "d"
    assert "via" in headers and "v" in headers and "Route" not in headers
    assert 7 not in headers  # type: ignore[comparison-overlap]


def test_names_are_kept_as_written_and_order_is_kept() -> None:
    headers = Headers([("v", "a"), ("x-CUSTOM", "1"), ("Via", "b")])
    assert headers.items() == [("v", "a"), ("x-CUSTOM", "1"), ("Via", "b")]
    assert list(headers) == headers.items()
    assert len(headers) == 3
    assert headers.keyed() == [("via", "v", "a"), ("x-custom", "x-CUSTOM", "1"), ("via", "Via", "b")]


def test_values_splits_list_headers_only() -> None:
    headers = Headers([("Allow", "INVITE, ACK"), ("Allow", "BYE"), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT")])
    assert headers.values("allow") == ["INVITE", "ACK", "BYE"]
    assert headers.values("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]  # a comma that is not a separator


def test_add_and_prepend_write_canonical_names() -> None:
    headers = Headers([("To", "<sip:b@x>")])
    headers.add("call-id", "abc")
    headers.prepend("v", "SIP/2.0/UDP h")
    assert headers.items() == [("Via", "SIP/2.0/UDP h"), ("To", "<sip:b@x>"), ("Call-ID", "abc")]


def test_set_replaces_every_line_in_place_of_the_first() -> None:
    headers = Headers([("A", "1"), ("Expires", "10"), ("B", "2"), ("expires", "20")])
    headers.set("EXPIRES", "30")
    assert headers.items() == [("A", "1"), ("Expires", "30"), ("B", "2")]
    headers.set("Server", "softswitch")
    assert headers.items()[-1] == ("Server", "softswitch")


def test_remove_and_replace_values() -> None:
    headers = Headers([("Via", "a, b"), ("To", "t"), ("Via", "c"), ("From", "f")])
    headers.replace_values("via", ["x", "y"])
    assert headers.items() == [("Via", "x"), ("Via", "y"), ("To", "t"), ("From", "f")]
    headers.remove("v")
    assert headers.items() == [("To", "t"), ("From", "f")]
    headers.replace_values("Route", ["<sip:p@q;lr>"])  # absent: appended
    assert headers.items()[-1] == ("Route", "<sip:p@q;lr>")


def test_equality_ignores_name_spelling_but_not_values_or_order() -> None:
    assert Headers([("v", "a"), ("To", "t")]) == Headers([("VIA", "a"), ("to", "t")])
    assert Headers([("Via", "a")]) != Headers([("Via", "b")])
    assert Headers([("To", "t"), ("Via", "a")]) != Headers([("Via", "a"), ("To", "t")])


def test_copy_is_independent() -> None:
    original = register()
    headers = original.headers.copy()
    headers.add("X-Extra", "1")
    assert "X-Extra" not in original.headers
    assert headers.get("Call-ID") == original.call_id


# --------------------------------------------------------------------------------------------------
# typed views
# --------------------------------------------------------------------------------------------------


def test_typed_views_of_a_request() -> None:
    msg = register()
    assert [v.host for v in msg.vias] == ["192.168.1.23", "10.0.0.1"]
    assert msg.via.branch == "z9hG4bK-524287-1"
    assert msg.from_.display == "Alice" and msg.from_.tag == "5c2f8e1a"
    assert msg.to.uri == parse_uri("sip:alice@cc.example.com") and msg.to.tag is None
    assert msg.call_id == "YjY5ZDE2ZTc4NjA0MmVkNjE5MzFmZjQ2ZWVhOGE0ZGM"
    assert msg.cseq == CSeq(2, "REGISTER")
    assert msg.max_forwards == 70 and msg.expires == 3600 and msg.content_length == 0
    assert [str(c.uri) for c in msg.contacts] == ["sip:alice@192.168.1.23:5060;transport=udp"]
    assert msg.contact_star is False
    assert msg.content_type is None


def test_typed_views_follow_header_changes() -> None:
    msg = register()
    assert msg.expires == 3600
    msg.headers.set("Expires", "60")
    msg.headers.set("Contact", "<sip:alice@10.9.9.9>")
    assert msg.expires == 60
    assert [str(c.uri) for c in msg.contacts] == ["sip:alice@10.9.9.9"]


def test_contact_star() -> None:
    msg = register()
    msg.headers.set("Contact", " * ")
    assert msg.contact_star is True and msg.contacts == []
    msg.headers.add("Contact", "<sip:a@b>")
    assert msg.contact_star is False
    with pytest.raises(SipParseError, match=r"Contact: \* mixed"):
        msg.contacts  # noqa: B018


@pytest.mark.parametrize(
    ("name", "value", "attribute"),
    [
        ("Max-Forwards", "256", "max_forwards"),
        ("Max-Forwards", "-1", "max_forwards"),
        ("Expires", "4294967296", "expires"),
        ("Expires", "soon", "expires"),
        ("Content-Length", "²", "content_length"),
        ("Content-Length", "12345678901", "content_length"),
        ("Call-ID", "with space", "call_id"),
        ("Call-ID", "tab\there", "call_id"),
        ("Call-ID", "ünicode", "call_id"),
        ("Call-ID", "", "call_id"),
    ],
)
def test_malformed_values_raise_parse_errors_naming_the_header(name: str, value: str, attribute: str) -> None:
    msg = register()
    msg.headers.set(name, value)
    with pytest.raises(SipParseError) as info:
        getattr(msg, attribute)
    assert info.value.header == name


def test_missing_required_headers_raise_parse_errors() -> None:
    msg = Request("OPTIONS", "sip:a@b")
    for attribute, header in (
        ("vias", "Via"),
        ("from_", "From"),
        ("to", "To"),
        ("call_id", "Call-ID"),
        ("cseq", "CSeq"),
    ):
        with pytest.raises(SipParseError, match=f"missing {header} header"):
            getattr(msg, attribute)
    assert msg.max_forwards is None and msg.expires is None and msg.content_length is None


def test_content_type_is_the_lower_case_media_type() -> None:
    msg = register()
    msg.headers.set("c", "Application/SDP ; charset=utf-8")
    assert msg.content_type == "application/sdp"


# --------------------------------------------------------------------------------------------------
# building and serialising
# --------------------------------------------------------------------------------------------------


def test_a_built_request_serialises_with_content_length() -> None:
    request = Request(
        "OPTIONS",
        "sip:bob@biloxi.example.com",
        Headers([("Via", "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877"), ("Max-Forwards", "70")]),
    )
    assert bytes(request) == (
        b"OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    assert isinstance(request.uri, SipUri)
    assert repr(request) == "<Request OPTIONS sip:bob@biloxi.example.com>"


def test_set_body_sets_type_and_length() -> None:
    response = Response(200)
    response.set_body(b"v=0\r\n", "application/sdp")
    assert response.headers.items() == [("Content-Type", "application/sdp"), ("Content-Length", "5")]
    assert bytes(response).endswith(b"\r\nContent-Length: 5\r\n\r\nv=0\r\n")
    response.set_body(b"")
    assert response.headers.items() == [("Content-Length", "0")]


def test_response_reason_defaults_to_the_standard_phrase() -> None:
    assert Response(486).reason == "Busy Here"
    assert Response(299).reason == "Unknown"
    assert Response(200, "Ok").reason == "Ok"
    assert REASON_PHRASES[513] == "Message Too Large"
    assert repr(Response(180)) == "<Response 180 Ringing>"


def test_a_parsed_message_serialises_byte_for_byte_until_it_is_changed() -> None:
    spaced = REGISTER.replace(b"Content-Length: 0", b"Content-Length:  0").replace(b"CSeq: 2", b"CSeq:  2")
    msg = parse_message(spaced)
    assert bytes(msg) == spaced
    msg.headers.set("Expires", "60")
    changed = bytes(msg)
    assert b"Expires: 60\r\n" in changed and b"Content-Length: 0\r\n" in changed  # rewritten line by line
    assert parse_message(changed) == msg


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h.add("X", "1"),
        lambda h: h.prepend("Via", "SIP/2.0/UDP p;branch=z9hG4bK0"),
        lambda h: h.set("Expires", "1"),
        lambda h: h.remove("Allow"),
        lambda h: h.replace_values("Allow", ["INVITE"]),
    ],
)
def test_every_header_change_is_serialised(change: Callable[[Headers], None]) -> None:
    msg = register()
    change(msg.headers)
    assert parse_message(bytes(msg)).headers == msg.headers


def test_copied_headers_keep_serialising_as_received() -> None:
    msg = register()
    copy = Request(msg.method, msg.uri, msg.headers.copy())
    assert bytes(copy) == REGISTER


def test_equality_of_messages() -> None:
    assert register() == register()
    other = register()
    other.body = b"x"
    assert other != register()
    assert Response(200) == Response(200) and Response(200) != Response(200, "Okay")
    assert register() != Response(200)


def test_identifiers_are_fresh_and_well_formed() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100 and all(re.fullmatch(r"z9hG4bK[0-9a-f]{16}", b) for b in branches)
    assert len({new_tag() for _ in range(100)}) == 100
    call_id = new_call_id("cc.example.com")
    assert call_id.endswith("@cc.example.com") and len(call_id) > 20


# --------------------------------------------------------------------------------------------------
# replies (§8.2.6.2) and received/rport (RFC 3581)
# --------------------------------------------------------------------------------------------------


def test_reply_copies_via_from_call_id_cseq_and_tags_to() -> None:
    response = register().reply(
        200, to_tag="as0c11b7", headers=[("Contact", "<sip:alice@192.168.1.23>;expires=3600")]
    )
    assert response.status == 200 and response.reason == "OK"
    assert [name for name, _ in response.headers] == [
        "Via",
        "Via",
        "To",
        "From",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
    ]
    assert response.to.tag == "as0c11b7"
    assert response.headers.get_all("Via") == register().headers.get_all("Via")
    reparsed = parse_message(bytes(response))
    assert reparsed == response


def test_reply_leaves_an_existing_to_tag_and_tags_no_100() -> None:
    msg = register()
    msg.headers.set("To", "<sip:alice@cc.example.com>;tag=existing")
    assert msg.reply(200, to_tag="new").to.tag == "existing"
    assert register().reply(100, to_tag="new").to.tag is None


def test_reply_with_a_body() -> None:
    response = register().reply(488, "Not Here", to_tag="t", body=b"v=0\r\n", content_type="application/sdp")
    assert response.reason == "Not Here"
    assert response.content_type == "application/sdp" and response.content_length == 5
    assert bytes(response).endswith(b"\r\n\r\nv=0\r\n")


def test_set_received_adds_received_and_fills_rport() -> None:
    msg = register()
    msg.set_received("203.0.113.5", 40222)
    top = msg.via
    assert top.received == "203.0.113.5" and top.rport == "40222"
    reparsed = parse_message(bytes(msg))
    assert reparsed.via.params == {"branch": "z9hG4bK-524287-1", "rport": "40222", "received": "203.0.113.5"}
    assert [v.host for v in reparsed.vias] == ["192.168.1.23", "10.0.0.1"]
    assert msg.reply(200, to_tag="x").via.rport == "40222"  # the reply carries what we stamped


def test_set_received_without_rport_only_when_the_host_differs() -> None:
    msg = parse_message(REGISTER.replace(b";rport", b""))
    assert isinstance(msg, Request)
    msg.set_received("192.168.1.23", 5060)
    assert bytes(msg) == REGISTER.replace(b";rport", b"")  # nothing to say, nothing changed
    msg.set_received("203.0.113.5", 5060)
    assert msg.via.received == "203.0.113.5" and msg.via.rport is None


def test_set_received_with_rport_always_adds_received() -> None:
    msg = register()
    msg.set_received("192.168.1.23", 5060)  # same host, but rport asks for it (RFC 3581 §4)
    assert msg.via.received == "192.168.1.23" and msg.via.rport == "5060"


def test_set_received_keeps_the_rest_of_a_combined_via_line() -> None:
    combined = REGISTER.replace(b";rport\r\nVia: SIP/2.0/UDP 10.0.0.1", b";rport, SIP/2.0/UDP 10.0.0.1")
    msg = parse_message(combined)
    assert isinstance(msg, Request)
    msg.set_received("203.0.113.5", 1024)
    reparsed = parse_message(bytes(msg))
    assert [(v.host, v.received) for v in reparsed.vias] == [
        ("192.168.1.23", "203.0.113.5"),
        ("10.0.0.1", None),
    ]


def test_set_received_rewrites_only_the_top_via_line_as_written() -> None:
    compact = REGISTER.replace(b"Via: SIP/2.0/UDP 192.168.1.23", b"v: SIP/2.0/UDP 192.168.1.23")
    msg = parse_message(compact)
    assert isinstance(msg, Request)
    msg.set_received("203.0.113.5", 1024)
    lines = bytes(msg).split(b"\r\n")
    assert (
        lines[1]
        == b"v: SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK-524287-1;rport=1024;received=203.0.113.5"
    )
    assert lines[2:] == compact.split(b"\r\n")[2:]  # every other line as it was
    assert msg.from_.tag == "5c2f8e1a" and msg.contacts[0].params == {"expires": "3600"}
