"""Typed header values (RFC 3261 §20): names and compact forms, lists, parameters, Via, name-addr, CSeq."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import (
    COMPACT_FORMS,
    LIST_HEADERS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_via,
    parse_via_list,
    quote,
    split_list,
    unquote_string,
)
from softswitch.sip.uri import AbsoluteUri, TelUri, parse_uri

# --------------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("v", "via"),
        ("f", "from"),
        ("t", "to"),
        ("i", "call-id"),
        ("m", "contact"),
        ("l", "content-length"),
        ("c", "content-type"),
        ("k", "supported"),
        ("s", "subject"),
        ("e", "content-encoding"),
        ("o", "event"),
        ("r", "refer-to"),
        ("b", "referred-by"),
        ("u", "allow-events"),
        ("x", "session-expires"),
    ],
)
def test_compact_forms_map_to_their_full_names(compact: str, full: str) -> None:
    assert COMPACT_FORMS[compact] == full
    assert header_key(compact) == header_key(compact.upper()) == full


@pytest.mark.parametrize("name", ["Via", "VIA", "via", "vIa", "v", "V"])
def test_header_keys_ignore_case(name: str) -> None:
    assert header_key(name) == "via"


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("call-id", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("i", "Call-ID"),
        ("cseq", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("X-Custom-Thing", "X-Custom-Thing"),
        ("x-lower", "x-lower"),
    ],
)
def test_canonical_names(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_single_value_headers_are_not_list_headers() -> None:
    for name in (
        "from",
        "to",
        "call-id",
        "cseq",
        "authorization",
        "www-authenticate",
        "date",
        "content-length",
    ):
        assert name not in LIST_HEADERS
    for name in ("via", "contact", "route", "record-route", "allow", "supported", "require"):
        assert name in LIST_HEADERS


# --------------------------------------------------------------------------------------------------
# quoted strings and lists
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quoted", "text"),
    [
        ('"plain"', "plain"),
        ('""', ""),
        ('"a\\"b"', 'a"b'),
        ('"back\\\\slash"', "back\\slash"),
        ('"J Rosenberg \\\\\\""', 'J Rosenberg \\"'),
        ('"\\a\\b"', "ab"),  # any character may be quoted
        ('"BEL:\\\x07"', "BEL:\x07"),
        ("not quoted", "not quoted"),
    ],
)
def test_unquote_string(quoted: str, text: str) -> None:
    assert unquote_string(quoted) == text


@pytest.mark.parametrize("text", ["plain", "", 'a"b', "back\\slash", '\\"\\"', "Ωμέγα"])
def test_quote_is_the_inverse_of_unquote(text: str) -> None:
    assert unquote_string(quote(text)) == text


def test_quote_escapes_only_backslash_and_quote() -> None:
    assert quote('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("INVITE, ACK,BYE", ["INVITE", "ACK", "BYE"]),
        ("single", ["single"]),
        ("   ", []),
        ("", []),
        ('"Doe, John" <sip:j@d>, <sip:k@d>', ['"Doe, John" <sip:j@d>', "<sip:k@d>"]),
        ("<sip:a@b;x=1,2>, <sip:c@d>", ["<sip:a@b;x=1,2>", "<sip:c@d>"]),  # commas inside <> stay
        ('"a\\",b" <sip:x@y>,<sip:z@w>', ['"a\\",b" <sip:x@y>', "<sip:z@w>"]),  # escaped quote in quotes
        ('<sip:a@b>;methods="INVITE, ACK", <sip:c@d>', ['<sip:a@b>;methods="INVITE, ACK"', "<sip:c@d>"]),
        ("<sip:a@b, <sip:c@d>", ["<sip:a@b, <sip:c@d>"]),  # '<' without '>' takes the rest
        ("a > b, c", ["a > b", "c"]),  # a stray '>' is just a character
    ],
)
def test_split_list(value: str, items: list[str]) -> None:
    assert split_list(value) == items


@pytest.mark.parametrize("value", ["a,,b", "a, ,b", ",a", "a,", ";;,;,,"])
def test_split_list_refuses_empty_elements(value: str) -> None:
    with pytest.raises(SipParseError, match="empty element"):
        split_list(value)


def test_split_list_refuses_an_unterminated_quoted_string_among_several() -> None:
    with pytest.raises(SipParseError, match="unterminated quoted string"):
        split_list('"Doe, John <sip:j@d>, <sip:k@d>')


# --------------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("", {}),
        (";tag=abc", {"tag": "abc"}),
        (";branch=z9hG4bK776;rport", {"branch": "z9hG4bK776", "rport": None}),
        (";Expires=60;Q=0.5", {"expires": "60", "q": "0.5"}),  # names lower-cased, values as sent
        (" ; tag = 98asjd8 ", {"tag": "98asjd8"}),  # LWS around ";" and "="
        (';+sip.instance="<urn:uuid:1-2>";reg-id=1', {"+sip.instance": '"<urn:uuid:1-2>"', "reg-id": "1"}),
        (';methods="INVITE, ACK";x', {"methods": '"INVITE, ACK"', "x": None}),
        (";a=b=c", {"a": "b=c"}),
        (";received=2001:db8::1", {"received": "2001:db8::1"}),
        (";empty=", {"empty": ""}),
        (";tag=_token~1'+`*%!-.", {"tag": "_token~1'+`*%!-."}),
    ],
)
def test_parse_params(text: str, params: dict[str, str | None]) -> None:
    assert parse_params(text) == params


@pytest.mark.parametrize(
    "text",
    [";", ";;", ";=x", "tag=1", ";a b", ';q="unterminated', ";a=\x00", ";a\x0b", ";a,b"],
)
def test_parse_params_refuses_malformed_parameters(text: str) -> None:
    with pytest.raises(SipParseError, match="malformed parameter"):
        parse_params(text)


# --------------------------------------------------------------------------------------------------
# Via (§20.42)
# --------------------------------------------------------------------------------------------------


def test_via_fields() -> None:
    via = parse_via("SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK-524287-1;rport;received=203.0.113.9")
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "192.168.1.23", 5060)
    assert via.branch == "z9hG4bK-524287-1"
    assert via.rport == "" and via.received == "203.0.113.9"
    assert via.sent_by == "192.168.1.23:5060"


def test_via_with_lws_everywhere() -> None:
    via = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "spindle.example.com",
        None,
        "z9hG4bK9ikj8",
    )


def test_via_transport_is_upper_cased_and_rport_absent_is_none() -> None:
    via = parse_via("sip/2.0/tls host.example.com")
    assert (via.protocol, via.transport, via.rport, via.branch) == ("SIP/2.0", "TLS", None, None)


def test_via_ipv6_sent_by() -> None:
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKas3")
    assert (via.host, via.port, via.sent_by) == ("2001:db8::9:1", 5060, "[2001:db8::9:1]:5060")


def test_via_str_round_trip() -> None:
    text = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=5060;received=198.51.100.1"
    assert str(parse_via(text)) == text
    assert str(Via("WS", "df7jal23ls0d.invalid", params={"branch": "z9hG4bK"})) == (
        "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK"
    )


def test_via_list_reads_every_element() -> None:
    vias = parse_via_list("SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com:5070")
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "a.example.com", None),
        ("TCP", "b.example.com", 5070),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty Via"),
        ("SIP/2.0/UDP", "malformed Via"),
        ("SIP/2.0 host", "malformed Via"),
        ("HTTP/1.1/TCP host", "unsupported Via protocol"),
        ("SIP/2.0/UDP host:70000", "Via port out of range"),
        ("SIP/2.0/UDP host;branch=", "empty Via branch"),
        ("SIP/2.0/UDP host;;", "malformed Via parameters"),
        ("SIP/2.0/UDP host garbage", "malformed Via parameters"),
        ("SIP/2.0/UDP [::::]", "malformed IPv6 address"),
        ("SIP/2.0/UDP 192.0.2.15;;,;,,", "empty element"),
    ],
)
def test_malformed_vias_name_the_via_header(text: str, words: str) -> None:
    with pytest.raises(SipParseError, match=words) as info:
        parse_via_list(text)
    assert info.value.header == "Via"


# --------------------------------------------------------------------------------------------------
# name-addr / addr-spec
# --------------------------------------------------------------------------------------------------


def test_name_addr_with_quoted_display_name() -> None:
    addr = parse_name_addr('"Alice \\"Al\\" Liddell" <sip:alice@atlanta.example.com>;tag=1928301774')
    assert addr.display == 'Alice "Al" Liddell'
    assert addr.uri == parse_uri("sip:alice@atlanta.example.com")
    assert addr.tag == "1928301774"


def test_name_addr_with_token_display_name_and_no_space() -> None:
    addr = parse_name_addr("Bob Customer<sip:bob@example.com>")
    assert addr.display == "Bob Customer"


def test_name_addr_non_ascii_display_name() -> None:
    assert parse_name_addr("Jānis Bērziņš <sip:janis@example.lv>").display == "Jānis Bērziņš"
    assert parse_name_addr('"Ēriks" <sip:e@example.lv>').display == "Ēriks"


def test_uri_parameters_inside_angle_brackets_header_parameters_outside() -> None:
    addr = parse_name_addr("<sip:alice@example.com;transport=tcp>;expires=60;q=0.7")
    assert addr.sip_uri.params == {"transport": "tcp"}
    assert addr.params == {"expires": "60", "q": "0.7"}


def test_addr_spec_parameters_are_header_parameters() -> None:
    # §20.10: without <>, everything after the first ";" belongs to the header, not the URI.
    addr = parse_name_addr("sip:+12015550123@gw.example.com;user=phone;tag=887s")
    assert addr.display is None and addr.sip_uri.params == {}
    assert addr.params == {"user": "phone", "tag": "887s"}


def test_other_schemes_in_name_addrs() -> None:
    assert isinstance(parse_name_addr("<tel:+12015550123>").uri, TelUri)
    assert isinstance(parse_name_addr("<urn:service:sos>").uri, AbsoluteUri)
    with pytest.raises(SipParseError) as info:
        parse_name_addr("<tel:+12015550123>").sip_uri  # noqa: B018
    assert info.value.status == 416


def test_with_tag_returns_a_new_value() -> None:
    addr = parse_name_addr("<sip:bob@example.com>")
    tagged = addr.with_tag("8321234356")
    assert tagged.tag == "8321234356" and addr.tag is None
    assert str(tagged) == "<sip:bob@example.com>;tag=8321234356"


@pytest.mark.parametrize(
    "text",
    [
        '"Alice" <sip:alice@example.com>;tag=1',
        "<sip:bob@example.com>",
        '"A \\"quoted\\" \\\\ name" <sip:a@b>',
        "<sip:alice@example.com;transport=tcp>;expires=60",
        '"" <sip:anonymous@anonymous.invalid>',
    ],
)
def test_name_addr_str_parses_back_to_the_same_value(text: str) -> None:
    addr = parse_name_addr(text)
    assert parse_name_addr(str(addr)) == addr


def test_str_always_writes_angle_brackets_and_quotes_display_names() -> None:
    addr = NameAddr(uri=parse_uri("sip:a@b;lr"), display="Queue, billing", params={"tag": "x"})
    assert str(addr) == '"Queue, billing" <sip:a@b;lr>;tag=x'
    assert str(parse_name_addr("sip:a@b;tag=1")) == "<sip:a@b>;tag=1"


def test_name_addr_list() -> None:
    contacts = parse_name_addr_list(
        '"Doe, John" <sip:j@d>;q=0.5, <sip:k@d>;expires=0, sip:l@d;expires=60', header="Contact"
    )
    assert [(c.display, str(c.uri), c.params) for c in contacts] == [
        ("Doe, John", "sip:j@d", {"q": "0.5"}),
        (None, "sip:k@d", {"expires": "0"}),
        (None, "sip:l@d", {"expires": "60"}),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('"Mr. J. User <sip:j.user@example.com>', "unterminated display name"),
        ('"Alice" sip:alice@example.com', "display name without <URI>"),
        ("Bell, Alexander <sip:a.g.bell@example.com>", "invalid display name"),
        ("<sip:alice@example.com", "missing '>'"),
        ("sip:alice@example.com?Route=%3Csip:x%3E", "must be enclosed in <>"),
        ("sip:alice @example.com", "malformed addr-spec"),
        ("", "malformed"),
        ("<sip:alice@example.com>;;", "malformed parameter"),
        ("<>", "URI without a scheme"),
    ],
)
def test_malformed_name_addrs_name_their_header(text: str, words: str) -> None:
    with pytest.raises(SipParseError, match=words) as info:
        parse_name_addr(text, header="To")
    assert info.value.header == "To"
    assert info.value.reason.startswith("malformed To: ")


# --------------------------------------------------------------------------------------------------
# CSeq (§20.16)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cseq"),
    [
        ("1 INVITE", CSeq(1, "INVITE")),
        ("  0009   INVITE ", CSeq(9, "INVITE")),
        ("2147483647 REGISTER", CSeq(2**31 - 1, "REGISTER")),
        ("0 ACK", CSeq(0, "ACK")),
        ("8 RE%47IST%45R", CSeq(8, "RE%47IST%45R")),
    ],
)
def test_parse_cseq(text: str, cseq: CSeq) -> None:
    assert parse_cseq(text) == cseq
    assert str(cseq) == f"{cseq.seq} {cseq.method}"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("INVITE", "malformed CSeq"),
        ("1", "malformed CSeq"),
        ("-1 INVITE", "malformed CSeq"),
        ("1 INVITE extra", "malformed CSeq"),
        ("1 INV ITE", "malformed CSeq"),
        ("１ INVITE", "malformed CSeq"),  # a full-width digit
        ("2147483648 INVITE", "out of range"),  # §8.1.1.5: less than 2**31
        ("36893488147419103232 REGISTER", "out of range"),
        ("9" * 5000 + " INVITE", "out of range"),  # longer than int() accepts
    ],
)
def test_malformed_cseq(text: str, words: str) -> None:
    with pytest.raises(SipParseError, match=words) as info:
        parse_cseq(text)
    assert info.value.header == "CSeq"
