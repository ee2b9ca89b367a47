from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.media.rtcp import (
    Bye,
    RawRtcp,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    parse_compound,
    report_block,
    serialize_compound,
)


def _sr_with_one_block() -> bytes:
    # V=2 RC=1 PT=200 length=12 words: SSRC, NTP(2), RTP ts, packets, octets + one 6-word block
    header = struct.pack("!BBH", 0x81, 200, 12)
    sender = struct.pack("!IIIIII", 0xCAFEBABE, 0xE5A0B0C0, 0x80000000, 160_000, 1000, 172_000)
    block = struct.pack("!IIIIII", 0x1234, (25 << 24) | 0xFFFFFE, 0x0001FFFF, 42, 0xB0C08000, 65536)
    return header + sender + block


def _sdes_cname() -> bytes:
    chunk = struct.pack("!I", 0xCAFEBABE) + bytes([1, 11]) + b"alice@host1" + b"\x00"
    chunk += bytes(-len(chunk) % 4)
    return struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


def test_parse_sender_report_fields() -> None:
    (sr,) = parse_compound(_sr_with_one_block())
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0xCAFEBABE
    assert sr.ntp_timestamp == (0xE5A0B0C0 << 32) | 0x80000000
    assert (sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (160_000, 1000, 172_000)
    (block,) = sr.reports
    assert block.ssrc == 0x1234
    assert block.fraction_lost == 25
    assert block.packets_lost == -2  # 24-bit two's complement
    assert block.highest_sequence == 0x0001FFFF
    assert (block.jitter, block.lsr, block.dlsr) == (42, 0xB0C08000, 65536)


def test_compound_sr_sdes_round_trips_byte_for_byte() -> None:
    data = _sr_with_one_block() + _sdes_cname()
    packets = parse_compound(data)
    assert [type(p) for p in packets] == [SenderReport, SourceDescription]
    sdes = packets[1]
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].cname == "alice@host1"
    assert serialize_compound(packets) == data


def test_receiver_report_and_bye_with_reason_round_trip() -> None:
    rr = ReceiverReport(0x42, [ReportBlock(ssrc=7, fraction_lost=3, packets_lost=10, highest_sequence=99)])
    bye = Bye([0x42, 0x43], reason="hung up")
    data = serialize_compound([rr, bye])
    assert len(data) % 4 == 0
    assert parse_compound(data) == [rr, bye]


def test_unknown_packet_types_are_kept_whole() -> None:
    app = struct.pack("!BBH", 0x80, 204, 2) + struct.pack("!I", 5) + b"NAME"
    rr = ReceiverReport(5).serialize()
    packets = parse_compound(rr + app)
    assert packets[1] == RawRtcp(204, 0, struct.pack("!I", 5) + b"NAME")
    assert serialize_compound(packets) == rr + app


def test_padding_on_last_packet_is_accepted() -> None:
    body = struct.pack("!I", 9) + b"\x00\x00\x00\x04"  # 4 padding octets, count in the last
    data = struct.pack("!BBH", 0xA0, 201, 2) + body
    assert parse_compound(data) == [ReceiverReport(9)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc8", "less than 4 bytes"),
        (struct.pack("!BBH", 0x40, 201, 1) + b"\x00" * 4, "version 1"),
        (struct.pack("!BBH", 0x80, 201, 3) + b"\x00" * 4, "truncated"),
        (struct.pack("!BBH", 0x81, 201, 1) + b"\x00" * 4, "RR has truncated report blocks"),
        (struct.pack("!BBH", 0x80, 200, 1) + b"\x00" * 4, "SR has truncated sender info"),
        (struct.pack("!BBH", 0x81, 203, 0), "BYE has truncated source list"),
        (struct.pack("!BBH", 0x82, 202, 2) + b"\x00\x00\x00\x01" + bytes(4), "SDES has truncated chunk SSRC"),
        (struct.pack("!BBH", 0x81, 202, 1) + b"\x00\x00\x00\x01", "SDES chunk has no END item"),
        (struct.pack("!BBH", 0x80, 201, 1) + b"\x00" * 4 + b"\x80", "trailing bytes"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compound(data)


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_raise_value_error(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except ValueError:
        return
    assert packets


@given(
    ssrc=st.integers(0, 0xFFFFFFFF),
    cname=st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255),
    reason=st.one_of(st.none(), st.text(max_size=30).filter(lambda s: len(s.encode()) <= 255)),
    lost=st.integers(-(1 << 23), (1 << 23) - 1),
)
def test_round_trip_property(ssrc: int, cname: str, reason: str | None, lost: int) -> None:
    packets: list[RtcpPacket] = [
        SenderReport(ssrc, 1, 2, 3, 4, [ReportBlock(ssrc ^ 1, packets_lost=lost)]),
        SourceDescription([SdesChunk(ssrc, [(SdesItem.CNAME, cname.encode())])]),
        Bye([ssrc], reason),
    ]
    assert parse_compound(serialize_compound(packets)) == packets


def test_report_block_follows_appendix_a3() -> None:
    # 100 expected since base, 95 received overall; since the last report 50 expected, 45 received.
    block = report_block(
        7,
        base_seq=1000,
        extended_max=1099,
        received=95,
        expected_prior=50,
        received_prior=50,
        jitter=12.7,
    )
    assert block.packets_lost == 5
    assert block.fraction_lost == (5 << 8) // 50
    assert block.highest_sequence == 1099
    assert block.jitter == 12
    no_loss = report_block(7, base_seq=0, extended_max=9, received=10, expected_prior=0, received_prior=0,
                           jitter=0.0)
    assert (no_loss.fraction_lost, no_loss.packets_lost) == (0, 0)
