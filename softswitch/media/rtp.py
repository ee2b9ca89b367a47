"""RTP packets (RFC 3550 §5.1, §5.3.1) and the wrap-around arithmetic every RTP comparison needs.

Implemented:
  * `RtpPacket`: the fixed header, the CSRC list, the header extension (§5.3.1, profile + value kept
    opaque) and padding (the P bit; the padding length is kept so `serialize()` inverts `parse()` for
    packets whose padding octets are zero, which is what every sender writes).
  * Hot-path helpers that never build an object: `peek_header()` reads (payload type, sequence
    number, timestamp, SSRC) with one `struct` call; `rewrite_header()` patches sequence number,
    timestamp, SSRC and optionally marker / payload type in a copy of the bytes.
  * 16-bit sequence and 32-bit timestamp arithmetic: `seq_add`, `seq_diff`, `seq_newer`, `ts_add`,
    `ts_diff`, `ts_newer` (RFC 1982 serial-number style: "newer" means less than half the space ahead).
  * `is_rtcp()`: the RTP/RTCP demultiplexing rule of RFC 5761 §4 (second octet 192..223 is RTCP).

Left out: header-extension element parsing (RFC 8285), SRTP, payload-format specifics (see dtmf.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "RTP_HEADER_SIZE",
    "RTP_VERSION",
    "RtpPacket",
    "is_rtcp",
    "peek_header",
    "rewrite_header",
    "seq_add",
    "seq_diff",
    "seq_newer",
    "ts_add",
    "ts_diff",
    "ts_newer",
]

RTP_VERSION: Final = 2
RTP_HEADER_SIZE: Final = 12

_FIXED = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_SEQ_TS_SSRC = struct.Struct("!HII")
_EXT_HEADER = struct.Struct("!HH")  # defined-by-profile, length in 32-bit words

_SEQ_MOD: Final = 1 << 16
_SEQ_HALF: Final = 1 << 15
_TS_MOD: Final = 1 << 32
_TS_HALF: Final = 1 << 31


# --- wrap-around arithmetic (never compare sequence numbers or timestamps with a bare `<`) ---------


def seq_add(seq: int, delta: int) -> int:
    """`seq + delta` modulo 2**16."""
    return (seq + delta) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance from `b` to `a` in 16-bit sequence space, in [-32768, 32767]."""
    return ((a - b + _SEQ_HALF) & 0xFFFF) - _SEQ_HALF


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number `a` comes after `b` (less than half the space ahead)."""
    return a != b and ((a - b) & 0xFFFF) < _SEQ_HALF


def ts_add(ts: int, delta: int) -> int:
    """`ts + delta` modulo 2**32."""
    return (ts + delta) & 0xFFFFFFFF


def ts_diff(a: int, b: int) -> int:
    """Signed distance from `b` to `a` in 32-bit timestamp space."""
    return ((a - b + _TS_HALF) & 0xFFFFFFFF) - _TS_HALF


def ts_newer(a: int, b: int) -> bool:
    """True when timestamp `a` comes after `b` (less than half the space ahead)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < _TS_HALF


# --- demultiplexing -------------------------------------------------------------------------------


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: an RTCP packet's second octet (its packet type) is in 192..223.

    RTP payload types 64..95 with the marker bit set would collide with that range, which is why
    RFC 5761 forbids them on a multiplexed port; we never negotiate them.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


# --- hot-path helpers -----------------------------------------------------------------------------


def peek_header(data: bytes) -> tuple[int, int, int, int]:
    """(payload_type, sequence_number, timestamp, ssrc) of an RTP packet without parsing the rest.

    Raises `ValueError` when `data` is shorter than the fixed header or is not RTP version 2.
    """
    if len(data) < RTP_HEADER_SIZE:
        raise ValueError("RTP packet length is less than 12 bytes")
    first, second, seq, ts, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise ValueError(f"RTP packet has version {first >> 6}, expected 2")
    return second & 0x7F, seq, ts, ssrc


def rewrite_header(
    data: bytes,
    *,
    seq: int,
    ts: int,
    ssrc: int,
    marker: bool | None = None,
    payload_type: int | None = None,
) -> bytes:
    """A copy of RTP packet `data` with sequence number, timestamp and SSRC replaced.

    `marker` (set or clear the M bit) and `payload_type` are left as they were when None. The payload,
    CSRC list and extension are copied untouched; the caller has already checked the fixed header.
    """
    buf = bytearray(data)
    _SEQ_TS_SSRC.pack_into(buf, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    if marker is not None or payload_type is not None:
        second = buf[1]
        if marker is not None:
            second = (second | 0x80) if marker else (second & 0x7F)
        if payload_type is not None:
            second = (second & 0x80) | (payload_type & 0x7F)
        buf[1] = second
    return bytes(buf)


# --- the full packet ------------------------------------------------------------------------------


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet; field names follow RFC 3550 §5.1.

    >>> pkt = RtpPacket(payload_type=0, sequence_number=1, timestamp=160, ssrc=0x1234, payload=b"\\xff" * 160)
    >>> RtpPacket.parse(pkt.serialize()) == pkt
    True
    """

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    """The 16 "defined by profile" bits of the header extension (§5.3.1); None when X = 0."""
    extension_value: bytes = b""
    """The header extension body (a multiple of 4 octets), opaque."""
    padding: int = 0
    """Number of padding octets at the end, including the count octet itself; 0 when P = 0."""
    version: int = RTP_VERSION

    @property
    def extension(self) -> bool:
        """The X bit."""
        return self.extension_profile is not None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raises `ValueError` naming the part that is missing or wrong."""
        if len(data) < RTP_HEADER_SIZE:
            raise ValueError("RTP packet length is less than 12 bytes")
        first, second, seq, ts, ssrc = _FIXED.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise ValueError(f"RTP packet has version {version}, expected 2")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        cc = first & 0x0F
        pos = RTP_HEADER_SIZE
        end = len(data)

        if pos + 4 * cc > end:
            raise ValueError(f"RTP packet has truncated CSRC list ({cc} entries announced)")
        csrc = list(struct.unpack_from(f"!{cc}I", data, pos)) if cc else []
        pos += 4 * cc

        profile: int | None = None
        ext_value = b""
        if has_extension:
            if pos + 4 > end:
                raise ValueError("RTP packet has truncated extension profile / length")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            if pos + 4 * words > end:
                raise ValueError(f"RTP packet has truncated extension value ({words} words announced)")
            ext_value = bytes(data[pos : pos + 4 * words])
            pos += 4 * words

        padding = 0
        if has_padding:
            if end <= pos:
                raise ValueError("RTP packet has padding bit set but no padding length octet")
            padding = data[end - 1]
            if padding == 0 or pos + padding > end:
                raise ValueError(f"RTP packet padding length {padding} is invalid")
            end -= padding

        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension_profile=profile,
            extension_value=ext_value,
            padding=padding,
            version=version,
        )

    def serialize(self) -> bytes:
        """The packet as bytes; padding octets (if any) are zeros followed by the count octet."""
        if len(self.csrc) > 15:
            raise ValueError("RTP packet cannot carry more than 15 CSRC identifiers")
        if len(self.extension_value) % 4:
            raise ValueError("RTP header extension value must be a multiple of 4 octets")
        if not 0 <= self.padding <= 255:
            raise ValueError("RTP padding length must be in 0..255")
        first = (
            (self.version << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if self.extension_profile is not None else 0)
            | len(self.csrc)
        )
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            _FIXED.pack(
                first,
                second,
                self.sequence_number & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension_value) // 4))
            parts.append(self.extension_value)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return self.serialize()
