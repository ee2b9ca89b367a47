from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.media.sdp import (
    Attribute,
    Connection,
    Direction,
    LocalOrigin,
    MediaDescription,
    NegotiationError,
    Origin,
    RtpCodec,
    SdpParseError,
    SessionDescription,
    Timing,
    anchor,
    answer_for,
    common_codecs,
    direction,
    negotiate,
    offer_for,
    payload_type_map,
    rtcp_address,
    rtp_address,
)


def crlf(text: str) -> str:
    return "\r\n".join(text.strip().splitlines()) + "\r\n"


# Shaped like pjsua2's offer: session-level b= before t=, media-level c=, rtcp with address, an ssrc line.
PJSUA_OFFER = crlf("""
v=0
o=- 3914144245 3914144245 IN IP4 192.168.1.20
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 0 8 101
c=IN IP4 192.168.1.20
b=AS:64000
b=TIAS:64000
a=rtcp:4001 IN IP4 192.168.1.20
a=sendrecv
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ssrc:1176914436 cname:4ae97cc3530bd8b4
""")

# A WebRTC-ish offer with opus first, ICE, rtcp-mux and a video stream.
ICE_OFFER = crlf("""
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=ice-lite
m=audio 50000 RTP/AVP 111 9 0 8 96
c=IN IP4 198.51.100.7
a=candidate:1 1 udp 2113937151 10.0.0.7 50000 typ host
a=candidate:2 1 udp 1845501695 198.51.100.7 50000 typ srflx raddr 10.0.0.7 rport 50000
a=ice-ufrag:abcd
a=ice-pwd:0123456789abcdef012345
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:96 telephone-event/8000
a=ptime:20
m=video 50002 RTP/AVP 97
c=IN IP4 198.51.100.7
a=rtpmap:97 VP8/90000
""")

# The RFC 2543 way to hold: c=0.0.0.0 at session level, no direction attribute.
OLD_HOLD = crlf("""
v=0
o=alice 1 2 IN IP4 192.0.2.10
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 4000 RTP/AVP 0
""")


@pytest.mark.parametrize("text", [PJSUA_OFFER, ICE_OFFER, OLD_HOLD])
def test_round_trip_is_byte_for_byte(text: str) -> None:
    assert str(SessionDescription.parse(text)) == text


def test_parse_fields() -> None:
    sdp = SessionDescription.parse(PJSUA_OFFER)
    assert sdp.origin == Origin("-", "3914144245", 3914144245, "IN", "IP4", "192.168.1.20")
    assert sdp.session_name == "pjmedia"
    assert sdp.connection is None
    assert sdp.timing == [Timing(0, 0)]
    assert sdp.attributes == [Attribute("X-nat", "0")]
    assert sdp.extra == [("b", "AS:84")]
    (m,) = sdp.media
    assert (m.media, m.port, m.proto, m.formats) == ("audio", 4000, "RTP/AVP", ["0", "8", "101"])
    assert m.connection == Connection("192.168.1.20")
    assert m.extra == [("b", "AS:64000"), ("b", "TIAS:64000")]
    assert m.codecs() == [
        RtpCodec(0, "PCMU", 8000),
        RtpCodec(8, "PCMA", 8000),
        RtpCodec(101, "telephone-event", 8000, None, "0-16"),
    ]
    assert m.rtcp_attribute() == (4001, "192.168.1.20")
    assert m.declared_direction is Direction.SENDRECV


def test_lf_line_endings_and_unknown_lines_are_kept_in_order() -> None:
    text = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nx=first\nt=0 0\ny=second\nm=audio 9 RTP/AVP 0\nq=m-level\n"
    sdp = SessionDescription.parse(text)
    assert sdp.extra == [("x", "first"), ("y", "second")]
    assert sdp.media[0].extra == [("q", "m-level")]
    out = str(sdp)
    assert out.index("x=first") < out.index("y=second") < out.index("m=audio") < out.index("q=m-level")


def test_static_payload_types_need_no_rtpmap_and_unknown_dynamic_ones_are_skipped() -> None:
    m = MediaDescription("audio", 4000, "RTP/AVP", ["18", "9", "100"])
    assert m.codecs() == [RtpCodec(18, "G729", 8000, 1), RtpCodec(9, "G722", 8000, 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SDP"),
        ("o=- 1 1 IN IP4 a\r\n", "line 1: first line must be v="),
        ("v=1\r\n", "unsupported SDP version"),
        ("v=0\r\ns=-\r\n", "missing o= line"),
        ("v=0\r\no=- 1 IN IP4 a\r\n", "line 2: o= needs 6 fields"),
        ("v=0\r\no=- 1 x IN IP4 a\r\n", "session version is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\nm=audio x RTP/AVP 0\r\n", "line 3: m= port is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 70000 RTP/AVP 0\r\n", "out of range"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IP4\r\n", "c= needs 3 fields"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\nt=now\r\n", "t= needs two integers"),
        ("v=0\r\ngarbage\r\n", "line 2: not a type=value line"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SdpParseError, match=message):
        SessionDescription.parse(text)


def test_direction_rules() -> None:
    sdp = SessionDescription.parse(PJSUA_OFFER)
    m = sdp.media[0]
    assert direction(m, sdp) is Direction.SENDRECV
    m.set_direction(Direction.SENDONLY)
    assert direction(m, sdp) is Direction.SENDONLY
    assert m.get_all("sendrecv") == [] and m.has("sendonly")
    m.remove("sendonly")
    sdp.add("inactive")
    assert direction(m, sdp) is Direction.INACTIVE  # falls back to the session level
    m.port = 0
    assert direction(m, sdp) is Direction.INACTIVE


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (None, Direction.SENDONLY),
        (Direction.SENDRECV, Direction.SENDONLY),
        (Direction.RECVONLY, Direction.INACTIVE),
        (Direction.SENDONLY, Direction.SENDONLY),
    ],
)
def test_old_hold_removes_the_receive_half(declared: Direction | None, expected: Direction) -> None:
    sdp = SessionDescription.parse(OLD_HOLD)
    if declared is not None:
        sdp.media[0].set_direction(declared)
    assert direction(sdp.media[0], sdp) is expected
    assert rtp_address(sdp.media[0], sdp) is None


def test_direction_algebra() -> None:
    assert Direction.SENDONLY.reversed() is Direction.RECVONLY
    assert Direction.INACTIVE.reversed() is Direction.INACTIVE
    assert Direction.of(sends=True, receives=False) is Direction.SENDONLY
    assert Direction.SENDRECV.sends and Direction.SENDRECV.receives


def test_addresses() -> None:
    sdp = SessionDescription.parse(PJSUA_OFFER)
    assert rtp_address(sdp.media[0], sdp) == ("192.168.1.20", 4000)
    assert rtcp_address(sdp.media[0], sdp) == ("192.168.1.20", 4001)
    ice = SessionDescription.parse(ICE_OFFER)
    assert rtcp_address(ice.media[0], ice) == ("198.51.100.7", 50001)  # default: RTP port + 1


def test_anchor_points_media_at_the_relay_and_keeps_codecs() -> None:
    origin = LocalOrigin(session_id=77, address="203.0.113.1")
    offer = SessionDescription.parse(ICE_OFFER)
    out = anchor(offer, address="203.0.113.1", port=20000, origin=origin)
    assert out.connection == Connection("203.0.113.1", "IP4")
    audio, video = out.media
    assert audio.port == 20000 and audio.connection is None
    assert audio.formats == ["111", "9", "0", "8", "96"]
    assert audio.get("fmtp") == "111 minptime=10;useinbandfec=1"
    assert audio.get("ptime") == "20"
    names = {a.name for a in audio.attributes} | {a.name for a in out.attributes}
    assert names.isdisjoint({"candidate", "ice-ufrag", "ice-pwd", "rtcp-mux", "ice-lite", "rtcp", "ssrc"})
    assert video.port == 0 and video.formats == ["97"]  # disabled: the relay carries audio only
    assert out.origin.username == "softswitch" and out.origin.session_id == "77"
    assert offer.media[0].port == 50000  # the input is untouched
    assert str(SessionDescription.parse(str(out))) == str(out)


def test_anchor_makes_old_hold_explicit() -> None:
    origin = LocalOrigin(session_id=1, address="203.0.113.1")
    out = anchor(SessionDescription.parse(OLD_HOLD), address="203.0.113.1", port=20002, origin=origin)
    assert rtp_address(out.media[0], out) == ("203.0.113.1", 20002)
    assert out.media[0].declared_direction is Direction.SENDONLY
    assert direction(out.media[0], out) is Direction.SENDONLY


def test_anchor_ipv6_relay_address() -> None:
    origin = LocalOrigin(session_id=1, address="2001:db8::1")
    out = anchor(SessionDescription.parse(PJSUA_OFFER), address="2001:db8::1", port=20000, origin=origin)
    assert str(out.connection) == "IN IP6 2001:db8::1"
    assert out.origin.addrtype == "IP6"


def test_origin_version_increases_only_when_the_sdp_changes() -> None:
    origin = LocalOrigin(session_id=5, address="203.0.113.1")
    offer = SessionDescription.parse(PJSUA_OFFER)
    first = anchor(offer, address="203.0.113.1", port=20000, origin=origin)
    same = anchor(offer, address="203.0.113.1", port=20000, origin=origin)
    assert first.origin.session_version == same.origin.session_version == 1
    offer.media[0].set_direction(Direction.SENDONLY)  # re-INVITE: hold
    held = anchor(offer, address="203.0.113.1", port=20000, origin=origin)
    assert held.origin.session_version == 2
    offer.media[0].set_direction(Direction.SENDRECV)  # resume
    resumed = anchor(offer, address="203.0.113.1", port=20000, origin=origin)
    assert resumed.origin.session_version == 3


def test_common_codecs_and_payload_type_map() -> None:
    a = SessionDescription.parse(ICE_OFFER).media[0]  # opus, G722, PCMU, PCMA, te/96
    b = SessionDescription.parse(PJSUA_OFFER).media[0]  # PCMU, PCMA, te/101
    assert [c.name for c in common_codecs(a, b)] == ["PCMU", "PCMA", "telephone-event"]
    assert [c.name for c in common_codecs(b, a)] == ["PCMU", "PCMA", "telephone-event"]
    assert payload_type_map(a, b) == {96: 101}
    assert payload_type_map(b, a) == {101: 96}
    assert payload_type_map(b, b) == {}


def test_negotiate_takes_the_offerers_first_supported_codec() -> None:
    offer = SessionDescription.parse(ICE_OFFER)
    agreed = negotiate(offer)
    assert agreed.codec == RtpCodec(0, "PCMU", 8000, 1)
    assert agreed.dtmf == RtpCodec(96, "telephone-event", 8000)
    assert agreed.remote == ("198.51.100.7", 50000)
    assert negotiate(offer, ("PCMA",)).codec.payload_type == 8
    assert negotiate(offer, dtmf=False).dtmf is None


def test_answer_for_reuses_offer_numbers_and_rejects_other_streams() -> None:
    origin = LocalOrigin(session_id=9, address="203.0.113.1")
    offer = SessionDescription.parse(ICE_OFFER)
    answer = answer_for(offer, address="203.0.113.1", port=20010, origin=origin)
    audio, video = answer.media
    assert audio.port == 20010 and audio.formats == ["0", "96"]
    assert audio.get_all("rtpmap") == ["0 PCMU/8000", "96 telephone-event/8000"]
    assert audio.get("ptime") == "20"
    assert direction(audio, answer) is Direction.SENDRECV
    assert (video.port, video.proto, video.formats) == (0, "RTP/AVP", ["97"])
    assert rtp_address(audio, answer) == ("203.0.113.1", 20010)
    assert negotiate(answer).codec.name == "PCMU"


@pytest.mark.parametrize(
    ("offered", "ours", "answered"),
    [
        (Direction.SENDONLY, Direction.SENDRECV, Direction.RECVONLY),  # we are put on hold
        (Direction.INACTIVE, Direction.SENDRECV, Direction.INACTIVE),
        (Direction.RECVONLY, Direction.SENDRECV, Direction.SENDONLY),
        (Direction.SENDRECV, Direction.SENDONLY, Direction.SENDONLY),  # music on hold: we only send
    ],
)
def test_answer_direction_narrows(offered: Direction, ours: Direction, answered: Direction) -> None:
    offer = SessionDescription.parse(PJSUA_OFFER)
    offer.media[0].set_direction(offered)
    origin = LocalOrigin(session_id=1, address="203.0.113.1")
    answer = answer_for(offer, address="203.0.113.1", port=20000, origin=origin, direction=ours)
    assert direction(answer.media[0], answer) is answered


def test_answer_for_without_common_codec_or_with_srtp_raises() -> None:
    origin = LocalOrigin(session_id=1, address="203.0.113.1")
    only_opus = SessionDescription.parse(ICE_OFFER.replace(" 111 9 0 8 96", " 111"))
    with pytest.raises(NegotiationError, match="no RTP/AVP audio stream"):
        answer_for(only_opus, address="203.0.113.1", port=20000, origin=origin)
    srtp = SessionDescription.parse(PJSUA_OFFER.replace("RTP/AVP", "RTP/SAVP"))
    with pytest.raises(NegotiationError):
        negotiate(srtp)


def test_offer_for() -> None:
    origin = LocalOrigin(session_id=3, address="203.0.113.1")
    offer = offer_for(address="203.0.113.1", port=20020, origin=origin)
    (m,) = offer.media
    assert m.formats == ["0", "8", "101"]
    assert m.get("fmtp") == "101 0-16"
    assert str(SessionDescription.parse(str(offer))) == str(offer)
    with pytest.raises(ValueError, match="static payload types"):
        offer_for(address="203.0.113.1", port=1, origin=origin, codecs=("opus",))


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)


@given(
    name=_token,
    version=st.integers(0, 2**63),
    port=st.integers(1, 65535),
    formats=st.lists(st.integers(0, 127).map(str), min_size=1, max_size=5),
    attrs=st.lists(st.tuples(_token, st.one_of(st.none(), _token)), max_size=5),
    session_attrs=st.lists(st.tuples(_token, st.one_of(st.none(), _token)), max_size=3),
)
def test_generated_sdp_round_trips(
    name: str,
    version: int,
    port: int,
    formats: list[str],
    attrs: list[tuple[str, str | None]],
    session_attrs: list[tuple[str, str | None]],
) -> None:
    media_attrs = [Attribute(n, v) for n, v in attrs]
    sdp = SessionDescription(
        origin=Origin("-", "1", version, "IN", "IP4", "192.0.2.1"),
        session_name=name,
        connection=Connection("192.0.2.1"),
        timing=[Timing(0, 0)],
        attributes=[Attribute(n, v) for n, v in session_attrs],
        media=[MediaDescription("audio", port, "RTP/AVP", formats, attributes=media_attrs)],
    )
    assert SessionDescription.parse(str(sdp)) == sdp
