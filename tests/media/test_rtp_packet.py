from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.media.rtp import (
    RtpPacket,
    is_rtcp,
    peek_header,
    rewrite_header,
    seq_add,
    seq_diff,
    seq_newer,
    ts_add,
    ts_diff,
    ts_newer,
)

# A PCMU packet as a phone sends it: V=2, M=1, PT=0, seq=0x1234, ts=0x00000a0, SSRC=0xdeadbeef.
PCMU = bytes.fromhex("80801234000000a0deadbeef") + b"\xff" * 160


def test_parse_fixed_header_fields() -> None:
    pkt = RtpPacket.parse(PCMU)
    assert pkt.version == 2
    assert pkt.marker is True
    assert pkt.payload_type == 0
    assert pkt.sequence_number == 0x1234
    assert pkt.timestamp == 0xA0
    assert pkt.ssrc == 0xDEADBEEF
    assert pkt.csrc == []
    assert pkt.extension is False
    assert pkt.padding == 0
    assert pkt.payload == b"\xff" * 160
    assert pkt.serialize() == PCMU


def test_parse_csrc_extension_and_padding_round_trip() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 2, 8]) + struct.pack("!HII", 7, 8, 9)
    csrc = struct.pack("!II", 0x11111111, 0x22222222)
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"
    payload = b"\xd5" * 4
    padding = b"\x00\x00\x03"
    data = header + csrc + ext + payload + padding
    pkt = RtpPacket.parse(data)
    assert pkt.csrc == [0x11111111, 0x22222222]
    assert pkt.extension_profile == 0xBEDE
    assert pkt.extension_value == b"\x10\xaa\x00\x00"
    assert pkt.payload == payload
    assert pkt.padding == 3
    assert pkt.serialize() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "RTP packet length is less than 12 bytes"),
        (bytes.fromhex("40001234000000a0deadbeef"), "RTP packet has version 1, expected 2"),
        (bytes.fromhex("82001234000000a0deadbeef") + b"\x00" * 4, "RTP packet has truncated CSRC list"),
        (bytes.fromhex("90001234000000a0deadbeef") + b"\x00\x00", "truncated extension profile"),
        (
            bytes.fromhex("90001234000000a0deadbeef") + b"\x00\x00\x00\x02" + b"\x00" * 4,
            "truncated extension value (2 words announced)",
        ),
        (bytes.fromhex("a0001234000000a0deadbeef") + b"\x00\x05", "RTP packet padding length 5 is invalid"),
        (bytes.fromhex("a0001234000000a0deadbeef") + b"\x00\x00", "RTP packet padding length 0 is invalid"),
        (bytes.fromhex("a0001234000000a0deadbeef"), "padding bit set but no padding length octet"),
    ],
)
def test_parse_errors_name_what_is_truncated(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RtpPacket.parse(data)


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    ext=st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12))),
    payload=st.binary(max_size=200),
    padding=st.integers(0, 40),
)
def test_serialize_then_parse_is_identity(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    marker: bool,
    csrc: list[int],
    ext: tuple[int, bytes] | None,
    payload: bytes,
    padding: int,
) -> None:
    profile, value = (None, b"") if ext is None else (ext[0], ext[1] + bytes(-len(ext[1]) % 4))
    pkt = RtpPacket(
        payload_type=pt,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=payload,
        marker=marker,
        csrc=csrc,
        extension_profile=profile,
        extension_value=value,
        padding=padding,
    )
    data = pkt.serialize()
    assert RtpPacket.parse(data) == pkt
    assert peek_header(data) == (pt, seq, ts, ssrc)


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_value_error(data: bytes) -> None:
    try:
        pkt = RtpPacket.parse(data)
    except ValueError:
        return
    assert pkt.version == 2


def test_peek_header_rejects_short_and_wrong_version() -> None:
    with pytest.raises(ValueError, match="less than 12 bytes"):
        peek_header(b"\x80" * 11)
    with pytest.raises(ValueError, match="version 0"):
        peek_header(bytes(12))


def test_rewrite_header_patches_only_the_named_fields() -> None:
    out = rewrite_header(PCMU, seq=0xFFFF, ts=0xFFFFFFFF, ssrc=0x01020304)
    pkt = RtpPacket.parse(out)
    assert (pkt.sequence_number, pkt.timestamp, pkt.ssrc) == (0xFFFF, 0xFFFFFFFF, 0x01020304)
    assert pkt.marker is True and pkt.payload_type == 0 and pkt.payload == b"\xff" * 160
    cleared = RtpPacket.parse(rewrite_header(PCMU, seq=1, ts=2, ssrc=3, marker=False, payload_type=8))
    assert cleared.marker is False and cleared.payload_type == 8
    assert PCMU[1] == 0x80  # the input is not modified


def test_rewrite_header_wraps_values() -> None:
    out = rewrite_header(PCMU, seq=0x10001, ts=(1 << 32) + 5, ssrc=7)
    assert peek_header(out)[1:3] == (1, 5)


def test_sequence_arithmetic_wraps() -> None:
    assert seq_add(0xFFFF, 1) == 0
    assert seq_add(0, -1) == 0xFFFF
    assert seq_diff(0, 0xFFFF) == 1
    assert seq_diff(0xFFFF, 0) == -1
    assert seq_diff(0x8000, 0) == -0x8000
    assert seq_newer(0, 0xFFFF)
    assert not seq_newer(0xFFFF, 0)
    assert not seq_newer(5, 5)
    assert seq_newer(0x7FFF, 0)
    assert not seq_newer(0x8000, 0)


def test_timestamp_arithmetic_wraps() -> None:
    assert ts_add(0xFFFFFF60, 160) == 0
    assert ts_diff(0, 0xFFFFFF60) == 160
    assert ts_diff(0xFFFFFF60, 0) == -160
    assert ts_newer(100, 0xFFFFFF00)
    assert not ts_newer(0xFFFFFF00, 100)
    assert not ts_newer(1, 1)


@given(a=st.integers(0, 0xFFFF), d=st.integers(-0x7FFF, 0x7FFF))
def test_seq_diff_inverts_seq_add(a: int, d: int) -> None:
    b = seq_add(a, d)
    assert seq_diff(b, a) == d
    assert seq_newer(b, a) == (d > 0)


def test_is_rtcp_uses_rfc5761_range() -> None:
    assert is_rtcp(b"\x80\xc8")  # SR, 200
    assert is_rtcp(b"\x81\xc9")  # RR, 201
    assert is_rtcp(bytes([0x80, 192])) and is_rtcp(bytes([0x80, 223]))
    assert not is_rtcp(PCMU)  # PT 0 with marker = 128
    assert not is_rtcp(bytes([0x80, 0x80 | 101]))  # telephone-event with marker = 229
    assert not is_rtcp(b"\x80")
