"""SIP, SIPS, tel and other URIs (RFC 3261 §19.1, RFC 3966): parsing, serialising, §19.1.4 comparison."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import SipParseError
from softswitch.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# --------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------


def test_every_part_of_a_sip_uri() -> None:
    uri = sip(
        "sips:alice:secret@atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent"
    )
    assert uri.scheme == "sips"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port) == ("atlanta.example.com", 5061)
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"}
    assert uri.transport == "tcp"
    assert uri.headers == {"subject": "project%20x", "priority": "urgent"}


def test_the_smallest_sip_uri() -> None:
    uri = sip("sip:example.com")
    assert (uri.user, uri.password, uri.port, uri.params, uri.headers) == (None, None, None, {}, {})
    assert uri.transport is None


def test_scheme_is_case_insensitive_and_kept_lower_case() -> None:
    assert sip("SIP:alice@example.com").scheme == "sip"
    assert sip("SiPs:alice@example.com").scheme == "sips"


def test_parameter_names_are_lower_cased_and_values_kept() -> None:
    assert sip("sip:a@b;Transport=UDP;User=Phone").params == {"transport": "UDP", "user": "Phone"}


def test_ipv4_host_and_port() -> None:
    uri = sip("sip:bob@192.0.2.4:5080")
    assert (uri.host, uri.port, uri.host_port) == ("192.0.2.4", 5080, "192.0.2.4:5080")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "2001:db8::10", None),
        ("sip:alice@[2001:db8::10]:5070", "2001:db8::10", 5070),
        ("sip:[::1];transport=tcp", "::1", None),
        ("sip:[::ffff:192.0.2.1]:5060", "::ffff:192.0.2.1", 5060),
        ("sip:[2001:DB8:0:0:0:0:0:1]", "2001:DB8:0:0:0:0:0:1", None),
    ],
)
def test_ipv6_references_are_stored_without_brackets(text: str, host: str, port: int | None) -> None:
    uri = sip(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text  # and written with them
    assert uri.host_port.startswith("[")


def test_user_part_may_hold_question_marks_and_semicolons() -> None:
    uri = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1@example.com")
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1"
    assert uri.host == "example.com" and uri.headers == {}


def test_unescaped_at_sign_in_a_header_is_read_as_a_header() -> None:
    # Some phones write Refer-To: <sip:bob@b.example?Replaces=call@10.0.0.1...> without escaping the "@".
    uri = sip("sip:b.example;lr?Replaces=abc@10.0.0.1%3Bto-tag%3D1")
    assert uri.user is None and uri.host == "b.example" and uri.params == {"lr": None}
    assert uri.headers == {"Replaces": "abc@10.0.0.1%3Bto-tag%3D1"}
    with_user = sip("sip:bob@b.example?Replaces=abc@10.0.0.1")
    assert (with_user.user, with_user.host) == ("bob", "b.example")


def test_escapes_are_kept_as_sent() -> None:
    uri = sip("sip:%61lice@example.com;n%61me=v%61lue")
    assert uri.user == "%61lice" and uri.params == {"n%61me": "v%61lue"}
    assert str(uri) == "sip:%61lice@example.com;n%61me=v%61lue"


def test_aor_is_scheme_unescaped_user_and_lower_case_host() -> None:
    assert sip("sip:%61lice@AtLanTa.example.COM:5060;transport=tcp").aor == "sip:alice@atlanta.example.com"
    assert sip("sips:Bob@example.com").aor == "sips:Bob@example.com"
    assert sip("sip:example.com").aor == "sip:example.com"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com;ext=42")
    assert isinstance(uri, TelUri)
    assert uri.number == "+1-201-555-0123" and uri.user == "+1-201-555-0123"
    assert uri.params == {"phone-context": "example.com", "ext": "42"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;ext=42"


@pytest.mark.parametrize(
    "text", ["urn:service:sos", "http://www.example.com/a?b=c", "mailto:a@example.com", "isbn:2983792873"]
)
def test_other_schemes_are_kept_whole(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert str(uri) == text


def test_sip_uri_parse_refuses_other_schemes_with_416() -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse("tel:+12015550123")
    assert info.value.status == 416
    assert SipUri.parse("sip:a@b") == sip("sip:a@b")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@example.com",  # no scheme
        ":alice@example.com",
        "1sip:alice@example.com",  # a scheme starts with a letter
        "sip:",
        "sip:@example.com",  # empty user part
        "sip:alice@",  # no host
        "sip:alice@exa mple.com",
        "sip:alice@example.com:",  # empty port
        "sip:alice@example.com:65536",
        "sip:alice@example.com:-1",
        "sip:alice@example.com:5o60",
        "sip:alice@example.com:²",
        "sip:alice@-example.com",
        "sip:alice@example..com",
        "sip:alice@exa_",
        "sip:alice@[2001:db8::10",  # unterminated reference
        "sip:alice@[2001:db8::10]x",
        "sip:alice@[::::]",
        "sip:alice@[1:2:3:4:5:6:7:8:9]",
        "sip:alice@[fe80::1%25eth0]",  # zone ids are not in RFC 3261's grammar
        "sip:alice@[example.com]",
        "sip:alice@example.com;;lr",  # empty parameter
        "sip:alice@example.com;=x",  # parameter without a name
        "sip:alice@example.com;lr;",
        "sip:<alice@example.com>",
        'sip:"alice"@example.com',
        "sip:alice@example.com\x00",
        "sip:alice\t@example.com",
        "tel:",
        "tel:;ext=1",
        "tel:+1 555",
        "urn:",
    ],
)
def test_malformed_uris_are_refused(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_surrounding_white_space_is_ignored() -> None:
    assert parse_uri("  sip:alice@example.com \t") == sip("sip:alice@example.com")


# --------------------------------------------------------------------------------------------------
# serialising and copying
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sips:alice:pw@example.com:5061",
        "sip:example.com;lr",
        "sip:alice@192.0.2.1:5060;transport=udp;rinstance=4a1f9c2e7b3d5a68",
        "sip:+12015550123@gw.example.com;user=phone",
        "sip:bob@example.com?subject=hi&priority=urgent",
        "sip:user;par=u%40example.net@example.com",
        "sip:[2001:db8::1]:5070;maddr=[2001:db8::2]",
        "tel:+12015550123;ext=1",
    ],
)
def test_str_gives_back_what_was_parsed(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_built_uris_serialise_in_field_order() -> None:
    uri = SipUri(host="example.com", user="alice", port=5060, params={"transport": "tcp", "lr": None})
    assert str(uri) == "sip:alice@example.com:5060;transport=tcp;lr"
    assert str(SipUri(host="2001:db8::1")) == "sip:[2001:db8::1]"


def test_copy_changes_only_what_it_is_told_and_shares_no_dicts() -> None:
    uri = sip("sip:alice@example.com;transport=udp")
    other = uri.copy(port=5070)
    assert str(other) == "sip:alice@example.com:5070;transport=udp"
    other.params["lr"] = None
    assert uri.params == {"transport": "udp"}


# --------------------------------------------------------------------------------------------------
# §19.1.4 comparison: the RFC's own examples
# --------------------------------------------------------------------------------------------------

EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=off"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    ("sip:alice@atlanta.com;%6C%72", "sip:alice@atlanta.com;lr"),
    ("sip:a@h;name=value%41", "sip:a@h;name=valueA"),
    ("sip:a@h;maddr=%5B::1%5D", "sip:a@h;maddr=[::1]"),
    ("sip:a@h?Subject=%6Ee%78t", "sip:a@h?subject=next"),
    ("sip:a@h", "sip:a@H"),
]

NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # user is case-sensitive
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),  # default port is not the same as no port
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),  # not transitive
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:a@h;name=value%2541", "sip:a@h;name=valueA"),  # no recursive unescaping (RFC 4475 §3.1.1.3)
    ("sip:%00@h", "sip:%00%00@h"),  # RFC 4475 §3.1.1.4
    ("sip:a%3Bb@h", "sip:a;b@h"),  # an escaped reserved character is not the character
    ("sip:%FE@h", "sip:%FF@h"),  # escapes that are not UTF-8 stay distinct
    ("sip:alice:one@h", "sip:alice:two@h"),
    ("sip:a@h;user=phone", "sip:a@h"),
    ("sip:a@h;ttl=1", "sip:a@h"),
    ("sip:a@h;method=INVITE", "sip:a@h"),
    ("sip:a@h;maddr=1.2.3.4", "sip:a@h"),
]


@pytest.mark.parametrize(("left", "right"), EQUIVALENT)
def test_equivalent_uris(left: str, right: str) -> None:
    assert parse_uri(left).equivalent(parse_uri(right))
    assert parse_uri(right).equivalent(parse_uri(left))


@pytest.mark.parametrize(("left", "right"), NOT_EQUIVALENT)
def test_uris_that_are_not_equivalent(left: str, right: str) -> None:
    assert not parse_uri(left).equivalent(parse_uri(right))
    assert not parse_uri(right).equivalent(parse_uri(left))


def test_equivalence_is_not_python_equality() -> None:
    left, right = sip("sip:alice@AtLanTa.CoM"), sip("sip:alice@atlanta.com")
    assert left.equivalent(right) and left != right


def test_tel_uri_comparison_ignores_visual_separators() -> None:
    assert parse_uri("tel:+1-201-555-0123").equivalent(parse_uri("tel:+1(201)555.0123"))
    assert not parse_uri("tel:+1-201-555-0123").equivalent(parse_uri("tel:+1-201-555-0124"))
    assert not parse_uri("tel:+12015550123").equivalent(parse_uri("sip:+12015550123@h"))


def test_absolute_uri_comparison_is_case_insensitive() -> None:
    assert parse_uri("URN:service:SOS").equivalent(parse_uri("urn:service:sos"))
    assert not parse_uri("urn:service:sos").equivalent(parse_uri("urn:service:police"))
