from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from softswitch.media.g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    PCMA,
    PCMU,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    ULAW_DECODE,
    ULAW_ENCODE,
    codec_by_name,
    codec_by_payload_type,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


def test_constants_and_table_shapes() -> None:
    assert (SAMPLE_RATE, SAMPLES_PER_FRAME) == (8000, 160)
    assert ULAW_DECODE.shape == ALAW_DECODE.shape == (256,)
    assert ULAW_ENCODE.shape == ALAW_ENCODE.shape == (65536,)
    assert ULAW_DECODE.dtype == ALAW_DECODE.dtype == np.int16
    assert not ULAW_ENCODE.flags.writeable


def test_silence_codes() -> None:
    assert encode_ulaw(np.zeros(3, np.int16)) == b"\xff\xff\xff"
    assert encode_alaw(np.zeros(3, np.int16)) == b"\xd5\xd5\xd5"
    assert PCMU.silence == b"\xff" * 160
    assert PCMA.silence == b"\xd5" * 160
    assert decode_ulaw(b"\xff\x7f").tolist() == [0, 0]  # 0x7F is mu-law "negative zero"
    assert decode_alaw(b"\xd5\x55").tolist() == [8, -8]  # A-law has no zero level


@pytest.mark.parametrize(
    ("code", "value"),
    [
        # ITU-T G.711 Table 2a (mu-law): code 1000 0000 decodes to +8031 in the 14-bit domain (x4 = 32124),
        # 0000 0000 to -8031; 1111 0000 is the top of the first segment, +30 (x4 = 120).
        (0x80, 32124),
        (0x00, -32124),
        (0xF0, 120),
        (0x70, -120),
        (0xEF, 132),  # first step of segment 1: 33 in 14-bit units
    ],
)
def test_ulaw_known_code_points(code: int, value: int) -> None:
    assert int(ULAW_DECODE[code]) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [
        # ITU-T G.711 Table 1a (A-law): the largest level is 4032 in the 13-bit domain (x8 = 32256);
        # the smallest is 1 (x8 = 8). Transmitted codes have the even bits inverted (xor 0x55).
        (0xAA, 32256),
        (0x2A, -32256),
        (0xD5, 8),
        (0x55, -8),
        (0xD4, 24),
    ],
)
def test_alaw_known_code_points(code: int, value: int) -> None:
    assert int(ALAW_DECODE[code]) == value


def test_ulaw_round_trip_error_is_at_most_half_a_step() -> None:
    codes = np.frombuffer(encode_ulaw(ALL_SAMPLES), dtype=np.uint8)
    decoded = ULAW_DECODE[codes].astype(np.int32)
    exponent = ((~codes.astype(np.int32)) >> 4) & 7
    half_step = 4 << exponent  # steps are 8 << exponent in the 16-bit domain
    error = np.abs(decoded - ALL_SAMPLES.astype(np.int32))
    inside = np.abs(ALL_SAMPLES.astype(np.int32)) <= 32635  # beyond that G.711 clips
    assert np.all(error[inside] <= half_step[inside])
    assert np.all(np.abs(decoded[~inside]) == 32124)


def test_alaw_round_trip_error_is_at_most_half_a_step() -> None:
    codes = np.frombuffer(encode_alaw(ALL_SAMPLES), dtype=np.uint8)
    decoded = ALAW_DECODE[codes].astype(np.int32)
    segment = ((codes.astype(np.int32) ^ 0x55) >> 4) & 7
    half_step = 8 << np.maximum(segment - 1, 0)
    error = np.abs(decoded - ALL_SAMPLES.astype(np.int32))
    assert np.all(error <= half_step)


@pytest.mark.parametrize(("encode", "table"), [(encode_ulaw, ULAW_DECODE), (encode_alaw, ALAW_DECODE)])
def test_quantiser_is_monotonic(encode: Callable[[np.ndarray], bytes], table: np.ndarray) -> None:
    decoded = table[np.frombuffer(encode(ALL_SAMPLES), dtype=np.uint8)]
    assert np.all(np.diff(decoded.astype(np.int32)) >= 0)


def test_every_code_survives_decode_then_encode() -> None:
    codes = np.arange(256, dtype=np.uint8)
    ulaw_again = np.frombuffer(encode_ulaw(decode_ulaw(codes)), dtype=np.uint8)
    expected = codes.copy()
    expected[0x7F] = 0xFF  # negative zero comes back as positive zero
    assert np.array_equal(ulaw_again, expected)
    alaw_again = np.frombuffer(encode_alaw(decode_alaw(codes)), dtype=np.uint8)
    assert np.array_equal(alaw_again, codes)


def test_bytes_input_is_little_endian_pcm() -> None:
    pcm = np.array([0, 1000, -1000, 32767], dtype="<i2").tobytes()
    assert encode_ulaw(pcm) == encode_ulaw(np.array([0, 1000, -1000, 32767], np.int16))


def test_codec_interface() -> None:
    frame = (np.sin(np.arange(160) * 2 * np.pi * 1000 / 8000) * 8000).astype(np.int16)
    for codec, pt in ((PCMU, 0), (PCMA, 8)):
        payload = codec.encode(frame)
        assert len(payload) == 160
        assert codec.payload_type == pt and codec.clock_rate == 8000
        back = codec.decode(payload)
        assert back.dtype == np.int16 and back.shape == (160,)
        assert np.max(np.abs(back.astype(np.int32) - frame)) <= 256
    assert codec_by_name("pcmu") is PCMU
    assert codec_by_name("PCMA") is PCMA
    assert codec_by_payload_type(8) is PCMA and codec_by_payload_type(9) is None
    with pytest.raises(ValueError, match="unknown codec 'opus'; known: PCMU, PCMA"):
        codec_by_name("opus")
