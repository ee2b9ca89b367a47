"""G.711 μ-law and A-law (ITU-T G.711) as numpy lookup tables, behind a small `Codec` interface.

The tables are built once at import from the G.711 segment definitions: 256 entries to decode a code to a
16-bit linear sample, 65,536 entries to encode every 16-bit sample to a code. Encoding indexes the encode
table with the samples' bits reinterpreted as uint16, so one numpy gather does a whole frame.

Linear values are the usual 16-bit scaling of G.711's 14-bit (μ-law, ×4) and 13-bit (A-law, ×8) ranges:
μ-law decodes to ±32124 at most, A-law to ±32256. μ-law silence is 0xFF (0x7F is "negative zero"), A-law
silence is 0xD5 (the even bits inverted, as G.711 transmits them).

`Codec` is the interface a later codec (G.722, opus) would implement; only PCMU and PCMA live here. RTP
payload type numbers and clock rates are those of RFC 3551 §6 (PCMU = 0, PCMA = 8, both 8000 Hz).
Left out: the G.711 Appendix I packet-loss concealment and Appendix II comfort noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "PCMA",
    "PCMU",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "Codec",
    "G711Codec",
    "codec_by_name",
    "codec_by_payload_type",
    "decode_alaw",
    "decode_ulaw",
    "encode_alaw",
    "encode_ulaw",
]

SAMPLE_RATE: Final = 8000
SAMPLES_PER_FRAME: Final = 160  # 20 ms at 8 kHz
ULAW_SILENCE: Final = 0xFF
ALAW_SILENCE: Final = 0xD5

Samples = npt.NDArray[np.int16]

_ULAW_BIAS: Final = 0x84  # 33 in G.711's 14-bit domain, scaled to 16 bits
_ULAW_CLIP: Final = 32635  # largest magnitude that still fits once the bias is added


def _build_ulaw_decode() -> Samples:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    # segment (exponent) e holds magnitudes in [128 << e, 256 << e)
    exponent = np.searchsorted(np.array([256 << e for e in range(7)]), magnitude, side="right")
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (((exponent << 4) | mantissa) ^ mask).astype(np.uint8)


def _build_alaw_decode() -> Samples:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32) >> 3
    mask = np.where(x >= 0, 0xD5, 0x55)
    x = np.where(x >= 0, x, -x - 1)  # one's complement magnitude: -1 maps to 0, like +0
    seg = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), x, side="left")
    mantissa = np.where(seg < 2, (x >> 1) & 0x0F, (x >> np.maximum(seg, 1)) & 0x0F)
    return (((seg << 4) | mantissa) ^ mask).astype(np.uint8)


ULAW_DECODE: Final = _build_ulaw_decode()
ULAW_ENCODE: Final = _build_ulaw_encode()
ALAW_DECODE: Final = _build_alaw_decode()
ALAW_ENCODE: Final = _build_alaw_encode()
for _table in (ULAW_DECODE, ULAW_ENCODE, ALAW_DECODE, ALAW_ENCODE):
    _table.setflags(write=False)


def _as_samples(samples: npt.ArrayLike | bytes) -> Samples:
    if isinstance(samples, bytes | bytearray | memoryview):
        return np.frombuffer(samples, dtype="<i2").astype(np.int16, copy=False)
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        arr = arr.astype(np.int16)
    return arr


def _as_codes(payload: npt.ArrayLike | bytes) -> npt.NDArray[np.uint8]:
    if isinstance(payload, bytes | bytearray | memoryview):
        return np.frombuffer(payload, dtype=np.uint8)
    return np.asarray(payload, dtype=np.uint8)


def encode_ulaw(samples: npt.ArrayLike | bytes) -> bytes:
    """μ-law codes for int16 samples (an array, or raw little-endian 16-bit PCM bytes)."""
    return ULAW_ENCODE[_as_samples(samples).view(np.uint16)].tobytes()


def decode_ulaw(payload: npt.ArrayLike | bytes) -> Samples:
    """int16 samples for μ-law codes."""
    return ULAW_DECODE[_as_codes(payload)]


def encode_alaw(samples: npt.ArrayLike | bytes) -> bytes:
    """A-law codes for int16 samples (an array, or raw little-endian 16-bit PCM bytes)."""
    return ALAW_ENCODE[_as_samples(samples).view(np.uint16)].tobytes()


def decode_alaw(payload: npt.ArrayLike | bytes) -> Samples:
    """int16 samples for A-law codes."""
    return ALAW_DECODE[_as_codes(payload)]


class Codec(Protocol):
    """What the media layer needs from an audio codec: names for SDP, and frames in and out.

    `encode` takes one frame of int16 samples at `clock_rate` and returns the RTP payload; `decode` is its
    inverse. A codec whose RTP clock differs from its sample rate (G.722) would say so in its own class.
    """

    @property
    def name(self) -> str: ...  # the SDP encoding name (rtpmap), e.g. "PCMU"
    @property
    def payload_type(self) -> int | None: ...  # static RTP payload type, None for dynamic ones
    @property
    def clock_rate(self) -> int: ...
    @property
    def silence(self) -> bytes: ...  # one 20 ms frame of silence, already encoded

    def encode(self, frame: Samples) -> bytes: ...
    def decode(self, payload: bytes) -> Samples: ...


@dataclass(frozen=True, slots=True)
class G711Codec:
    """PCMU or PCMA: one byte per sample, tables from this module.

    >>> int(PCMU.decode(PCMU.encode(np.zeros(160, np.int16))).max())
    0
    """

    name: str
    payload_type: int
    encode_table: npt.NDArray[np.uint8]
    decode_table: Samples
    silence_code: int
    clock_rate: int = SAMPLE_RATE

    @property
    def silence(self) -> bytes:
        return bytes([self.silence_code]) * SAMPLES_PER_FRAME

    def encode(self, frame: Samples) -> bytes:
        if frame.dtype != np.int16:
            frame = frame.astype(np.int16)
        return self.encode_table[frame.view(np.uint16)].tobytes()

    def decode(self, payload: bytes) -> Samples:
        return self.decode_table[np.frombuffer(payload, dtype=np.uint8)]


PCMU: Final = G711Codec("PCMU", 0, ULAW_ENCODE, ULAW_DECODE, ULAW_SILENCE)
PCMA: Final = G711Codec("PCMA", 8, ALAW_ENCODE, ALAW_DECODE, ALAW_SILENCE)
_BY_NAME: Final[dict[str, G711Codec]] = {"PCMU": PCMU, "PCMA": PCMA}
_BY_PT: Final[dict[int, G711Codec]] = {0: PCMU, 8: PCMA}


def codec_by_name(name: str) -> G711Codec:
    """The codec for an SDP encoding name (case-insensitive); `ValueError` names the known ones."""
    try:
        return _BY_NAME[name.upper()]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(_BY_NAME)}") from None


def codec_by_payload_type(payload_type: int) -> G711Codec | None:
    """The codec for a static RTP payload type (0 or 8), else None."""
    return _BY_PT.get(payload_type)
