"""RTCP packets (RFC 3550 §6): SR, RR, SDES, BYE and compound packets, plus report-block arithmetic.

Implemented:
  * §6.4.1 SR and §6.4.2 RR with their report blocks (and the opaque profile-specific extension);
  * §6.5 SDES chunks and items (CNAME and the others kept as (type, bytes) pairs);
  * §6.6 BYE with its optional reason;
  * every other packet type (APP §6.7, XR, RTPFB/PSFB feedback) is kept whole as `RawRtcp` so a relay
    can pass it through byte for byte;
  * compound packets (§6.1): `parse_compound()` / `serialize_compound()`;
  * `report_block()`: fraction lost and cumulative loss per §6.4.1 and Appendix A.3, from the counters a
    receiver keeps (jitter itself is computed by the receiver per Appendix A.8).

Left out: the transmission-interval algorithm (§6.3, we only relay other endpoints' RTCP), RTCP
encryption, and the Appendix A.2 header-validity rules beyond "version 2 and lengths that add up"
(RFC 5506 reduced-size RTCP starts with a feedback packet, so we do not insist on SR/RR first).
Padding (P bit) is accepted on input and dropped on output.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

__all__ = [
    "Bye",
    "RawRtcp",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpType",
    "SdesChunk",
    "SdesItem",
    "SenderReport",
    "SourceDescription",
    "parse_compound",
    "report_block",
    "serialize_compound",
]

_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP timestamp, RTP timestamp, packet count, octet count
_REPORT_BLOCK = struct.Struct("!IIIIII")
REPORT_BLOCK_SIZE: Final = 24


class RtcpType(IntEnum):
    """RFC 3550 §12.1 RTCP packet types (and the RFC 4585 / RFC 3611 ones we pass through)."""

    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204
    RTPFB = 205  #: RFC 4585 transport-layer feedback
    PSFB = 206  #: RFC 4585 payload-specific feedback
    XR = 207  #: RFC 3611 extended reports


class SdesItem(IntEnum):
    """RFC 3550 §6.5 SDES item types."""

    END = 0
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


@dataclass(slots=True)
class ReportBlock:
    """One reception report (§6.4.1): what `ssrc`'s stream looked like to the reporter."""

    ssrc: int
    fraction_lost: int = 0
    """Fraction of packets lost since the previous report, as a fixed-point number / 256."""
    packets_lost: int = 0
    """Cumulative packets lost (24-bit signed: duplicates can make it negative)."""
    highest_sequence: int = 0
    """Extended highest sequence number received: cycles << 16 | highest 16-bit sequence number."""
    jitter: int = 0
    """Interarrival jitter in timestamp units (Appendix A.8)."""
    lsr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR received from `ssrc`."""
    dlsr: int = 0
    """Delay since that SR, in units of 1/65536 s."""

    @classmethod
    def _parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.packets_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc & 0xFFFFFFFF,
            ((self.fraction_lost & 0xFF) << 24) | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


def _header(packet_type: int, count: int, body_len: int) -> bytes:
    if body_len % 4:
        raise ValueError("RTCP packet body must be a multiple of 4 octets")
    if count > 31:
        raise ValueError("RTCP count field cannot exceed 31")
    return _HEADER.pack(0x80 | count, packet_type, body_len // 4)


def _parse_blocks(data: bytes, pos: int, count: int, end: int, what: str) -> list[ReportBlock]:
    if pos + count * REPORT_BLOCK_SIZE > end:
        raise ValueError(f"RTCP {what} has truncated report blocks ({count} announced)")
    return [ReportBlock._parse(data, pos + i * REPORT_BLOCK_SIZE) for i in range(count)]


@dataclass(slots=True)
class SenderReport:
    """SR (§6.4.1): sender info plus reception reports."""

    ssrc: int
    ntp_timestamp: int = 0
    """64-bit NTP timestamp (seconds since 1900 << 32 | fraction)."""
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""
    """Profile-specific extension (§6.4.3), opaque."""

    def serialize(self) -> bytes:
        body = _SENDER_INFO.pack(
            self.ssrc & 0xFFFFFFFF,
            self.ntp_timestamp & 0xFFFFFFFFFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )
        body += b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RtcpType.SR, len(self.reports), len(body)) + body


@dataclass(slots=True)
class ReceiverReport:
    """RR (§6.4.2): reception reports from a participant that is not sending."""

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    def serialize(self) -> bytes:
        body = _SSRC.pack(self.ssrc & 0xFFFFFFFF)
        body += b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RtcpType.RR, len(self.reports), len(body)) + body


@dataclass(slots=True)
class SdesChunk:
    """One SDES chunk (§6.5): a source and its (item type, value) pairs."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SdesItem.CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        out = bytearray(_SSRC.pack(self.ssrc & 0xFFFFFFFF))
        for kind, value in self.items:
            if len(value) > 255:
                raise ValueError("SDES item value cannot exceed 255 octets")
            out += bytes([kind, len(value)]) + value
        out += b"\x00"  # END item
        out += bytes(-len(out) % 4)
        return bytes(out)


@dataclass(slots=True)
class SourceDescription:
    """SDES (§6.5)."""

    chunks: list[SdesChunk] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = b"".join(c.serialize() for c in self.chunks)
        return _header(RtcpType.SDES, len(self.chunks), len(body)) + body


@dataclass(slots=True)
class Bye:
    """BYE (§6.6): these sources are leaving, optionally saying why."""

    sources: list[int] = field(default_factory=list)
    reason: str | None = None

    def serialize(self) -> bytes:
        body = bytearray(b"".join(_SSRC.pack(s & 0xFFFFFFFF) for s in self.sources))
        if self.reason is not None:
            text = self.reason.encode("utf-8")[:255]
            body += bytes([len(text)]) + text
            body += bytes(-len(body) % 4)
        return _header(RtcpType.BYE, len(self.sources), len(body)) + bytes(body)


@dataclass(slots=True)
class RawRtcp:
    """Any other RTCP packet (APP, XR, feedback, unknown), kept whole for pass-through."""

    packet_type: int
    count: int
    body: bytes

    def serialize(self) -> bytes:
        return _header(self.packet_type, self.count, len(self.body)) + self.body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RawRtcp


def _parse_sdes(data: bytes, pos: int, count: int, end: int) -> SourceDescription:
    chunks: list[SdesChunk] = []
    for _ in range(count):
        if pos + 4 > end:
            raise ValueError("RTCP SDES has truncated chunk SSRC")
        chunk = SdesChunk(_SSRC.unpack_from(data, pos)[0])
        pos += 4
        while True:
            if pos >= end:
                raise ValueError("RTCP SDES chunk has no END item")
            kind = data[pos]
            if kind == SdesItem.END:
                pos += 1
                pos += -pos % 4  # chunks end on a 32-bit boundary
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise ValueError("RTCP SDES has truncated item")
            length = data[pos + 1]
            chunk.items.append((kind, bytes(data[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        chunks.append(chunk)
    return SourceDescription(chunks)


def _parse_bye(data: bytes, pos: int, count: int, end: int) -> Bye:
    if pos + 4 * count > end:
        raise ValueError(f"RTCP BYE has truncated source list ({count} announced)")
    sources = list(struct.unpack_from(f"!{count}I", data, pos))
    pos += 4 * count
    reason = None
    if pos < end:
        length = data[pos]
        if pos + 1 + length > end:
            raise ValueError("RTCP BYE has truncated reason")
        reason = data[pos + 1 : pos + 1 + length].decode("utf-8", "replace")
    return Bye(sources, reason)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """All RTCP packets in one datagram, in order; raises `ValueError` naming the first problem."""
    packets: list[RtcpPacket] = []
    pos = 0
    total = len(data)
    if total < 4:
        raise ValueError("RTCP packet length is less than 4 bytes")
    while pos < total:
        if pos + 4 > total:
            raise ValueError("RTCP compound packet has trailing bytes")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise ValueError(f"RTCP packet has version {first >> 6}, expected 2")
        end = pos + 4 + 4 * words
        if end > total:
            raise ValueError(f"RTCP packet type {packet_type} is truncated ({4 * words} octets announced)")
        count = first & 0x1F
        body_end = end
        if first & 0x20:  # padding: only legal on the last packet, count in the last octet
            pad = data[end - 1]
            if pad == 0 or pad > 4 * words:
                raise ValueError(f"RTCP padding length {pad} is invalid")
            body_end -= pad
        body = pos + 4
        if packet_type == RtcpType.SR:
            if body + _SENDER_INFO.size > body_end:
                raise ValueError("RTCP SR has truncated sender info")
            ssrc, ntp, rtp_ts, pkts, octets = _SENDER_INFO.unpack_from(data, body)
            blocks_at = body + _SENDER_INFO.size
            reports = _parse_blocks(data, blocks_at, count, body_end, "SR")
            ext = bytes(data[blocks_at + count * REPORT_BLOCK_SIZE : body_end])
            packets.append(SenderReport(ssrc, ntp, rtp_ts, pkts, octets, reports, ext))
        elif packet_type == RtcpType.RR:
            if body + 4 > body_end:
                raise ValueError("RTCP RR has truncated SSRC")
            ssrc = _SSRC.unpack_from(data, body)[0]
            reports = _parse_blocks(data, body + 4, count, body_end, "RR")
            ext = bytes(data[body + 4 + count * REPORT_BLOCK_SIZE : body_end])
            packets.append(ReceiverReport(ssrc, reports, ext))
        elif packet_type == RtcpType.SDES:
            packets.append(_parse_sdes(data, body, count, body_end))
        elif packet_type == RtcpType.BYE:
            packets.append(_parse_bye(data, body, count, body_end))
        else:
            packets.append(RawRtcp(packet_type, count, bytes(data[body:body_end])))
        pos = end
    return packets


def serialize_compound(packets: list[RtcpPacket]) -> bytes:
    """The datagram carrying `packets` in order."""
    return b"".join(p.serialize() for p in packets)


def report_block(
    ssrc: int,
    *,
    base_seq: int,
    extended_max: int,
    received: int,
    expected_prior: int,
    received_prior: int,
    jitter: float,
    lsr: int = 0,
    dlsr: int = 0,
) -> ReportBlock:
    """A reception report from receiver counters, per Appendix A.3.

    `extended_max` is cycles << 16 | highest sequence number; `expected_prior` / `received_prior` are the
    values of expected / received at the previous report (0 for the first). The caller stores the new
    expected (`extended_max - base_seq + 1`) and `received` for the next report.
    """
    expected = extended_max - base_seq + 1
    lost = expected - received
    expected_interval = expected - expected_prior
    lost_interval = expected_interval - (received - received_prior)
    fraction = 0
    if expected_interval > 0 and lost_interval > 0:
        fraction = (lost_interval << 8) // expected_interval
    return ReportBlock(
        ssrc=ssrc,
        fraction_lost=min(fraction, 255),
        packets_lost=lost,
        highest_sequence=extended_max,
        jitter=int(jitter),
        lsr=lsr,
        dlsr=dlsr,
    )
