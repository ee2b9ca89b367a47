from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]

from softswitch.media.player import LoopingPlayer, PromptPlayer, Sound, SoundFileError, load_sound, resample
from softswitch.media.port import BufferPort, EncodedSource, MediaPort, NullPort, silence
from softswitch.media.tones import beep, busy, confirmation_tone, dtmf_tone, ringback, tone


def peak_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def drain(port: MediaPort, limit: int = 10_000) -> list[np.ndarray]:
    frames = []
    for _ in range(limit):
        f = port.get_frame()
        if f is None:
            break
        frames.append(f)
    return frames


def test_ports_satisfy_the_protocols() -> None:
    for port in (NullPort(), BufferPort(), LoopingPlayer(np.zeros(10, np.int16)), PromptPlayer([])):
        assert isinstance(port, MediaPort)
    assert isinstance(LoopingPlayer(np.zeros(10, np.int16)), EncodedSource)
    assert not isinstance(PromptPlayer([]), EncodedSource)


def test_null_port_is_silent_and_discards() -> None:
    null = NullPort()
    null.put_frame(silence())
    assert null.get_frame() is None and null.frames_discarded == 1
    assert not silence().flags.writeable and silence().shape == (160,)


def test_buffer_port_rechunks_and_bounds_latency() -> None:
    buf = BufferPort(max_samples=480)
    buf.put_frame(np.arange(240, dtype=np.int16))  # a 30 ms packet
    buf.put_frame(np.arange(240, 480, dtype=np.int16))
    first, second, third = buf.get_frame(), buf.get_frame(), buf.get_frame()
    assert first is not None and second is not None and third is not None
    assert np.array_equal(np.concatenate([first, second, third]), np.arange(480, dtype=np.int16))
    assert buf.get_frame() is None and buf.underruns == 1
    buf.put_frame(np.zeros(400, np.int16))
    buf.put_frame(np.ones(200, np.int16))  # 600 > 480: the oldest 120 samples go
    assert buf.samples_dropped == 120 and buf.available == 480
    frames = drain(buf)
    assert np.concatenate(frames).tolist() == [0] * 280 + [1] * 200


def test_buffer_port_prefill_absorbs_jitter() -> None:
    buf = BufferPort(prefill=320)
    buf.put_frame(np.ones(160, np.int16))
    assert buf.get_frame() is None and buf.underruns == 0  # waiting for 40 ms of audio
    buf.put_frame(np.ones(160, np.int16))
    assert buf.get_frame() is not None and buf.get_frame() is not None
    assert buf.get_frame() is None and buf.underruns == 1  # ran dry: prefill again
    buf.put_frame(np.ones(160, np.int16))
    assert buf.get_frame() is None


def test_looping_player_wraps_without_gaps() -> None:
    sound = Sound(np.arange(1000, dtype=np.int16))
    moh = LoopingPlayer(sound)
    played = np.concatenate([moh.get_frame() for _ in range(25)])  # 4000 samples = 4 loops
    assert np.array_equal(played, np.tile(np.arange(1000, dtype=np.int16), 4))
    short = LoopingPlayer(np.array([1, 2, 3], np.int16))
    assert short.get_frame().tolist()[:7] == [1, 2, 3, 1, 2, 3, 1]


def test_players_share_the_decoded_sound_and_its_encoding() -> None:
    sound = Sound((np.sin(np.arange(8000) * 0.3) * 5000).astype(np.int16))
    a, b = LoopingPlayer(sound), LoopingPlayer(sound, position=480)
    assert a._buf is b._buf  # one buffer however many callers listen
    a.get_payload("PCMU")
    assert sound.encoded_loop("PCMU") is sound.encoded_loop("PCMU")
    from softswitch.media.g711 import PCMU

    assert b.get_payload("PCMU") == PCMU.encode(sound.samples[480:640])


def test_prompt_player_plays_once_across_sound_boundaries() -> None:
    p = PromptPlayer([np.full(100, 1, np.int16), np.full(300, 2, np.int16)])
    assert p.remaining == pytest.approx(400 / 8000)
    frames = drain(p)
    assert len(frames) == 3 and p.done
    assert np.concatenate(frames).tolist() == [1] * 100 + [2] * 300 + [0] * 80
    assert p.get_frame() is None


def test_resample_keeps_a_tone_and_removes_what_cannot_be_represented() -> None:
    t = np.arange(48000) / 48000
    mixed = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 6000 * t)  # 6 kHz cannot exist at 8 kHz
    out = resample(mixed, 48000, 8000)
    assert len(out) == 8000
    spectrum = np.abs(np.fft.rfft(out[1000:7000]))
    freqs = np.fft.rfftfreq(6000, 1 / 8000)
    assert freqs[np.argmax(spectrum)] == pytest.approx(1000, abs=2)
    alias = spectrum[np.abs(freqs - 2000) < 20].max()  # 6 kHz would fold to 2 kHz
    assert alias < spectrum.max() * 0.05


def test_load_sound_decodes_resamples_and_mixes_down(tmp_path: Path) -> None:
    path = tmp_path / "moh.wav"
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    soundfile.write(path, stereo, 16000, subtype="PCM_16")
    sound = load_sound(path)
    assert sound.samples.dtype == np.int16 and len(sound) == 8000 and sound.duration == 1.0
    assert peak_hz(sound.samples[1000:7000]) == pytest.approx(440, abs=3)
    assert 15000 < np.abs(sound.samples).max() < 17500  # 0.5 full scale survives
    assert sound.name == str(path)


def test_load_sound_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-audio.wav"
    bad.write_bytes(b"this is not a wav file")
    with pytest.raises(SoundFileError, match=r"not-audio\.wav: cannot read sound file"):
        load_sound(bad)
    with pytest.raises(SoundFileError, match=r"missing\.wav"):
        load_sound(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 8000)
    with pytest.raises(SoundFileError, match="holds no audio"):
        load_sound(empty)


@pytest.mark.parametrize(("country", "hz", "on_s", "cycle_s"), [("eu", 425, 1.0, 5.0), ("us", 440, 2.0, 6.0)])
def test_ringback_cadence_and_frequency(country: str, hz: float, on_s: float, cycle_s: float) -> None:
    port = ringback(country)
    audio = np.concatenate([port.get_frame() for _ in range(int(cycle_s * 50))])
    on = int(on_s * 8000)
    assert np.abs(audio[on:]).max() == 0
    assert np.abs(audio[:on]).max() > 5000
    assert peak_hz(audio[:on]) == pytest.approx(hz, abs=5)


def test_finite_tones_finish() -> None:
    b = beep(1000.0, 200)
    frames = drain(b)
    assert len(frames) == 10 and b.done
    assert peak_hz(np.concatenate(frames)) == pytest.approx(1000, abs=5)
    conf = confirmation_tone()
    assert len(drain(conf)) == 24 and conf.done  # 3 x 160 ms
    assert busy("us").get_frame() is not None
    assert len(drain(tone((500.0,), ((20, 20),), repeat=3))) == 6


def test_dtmf_tone_has_row_and_column() -> None:
    audio = np.concatenate(drain(dtmf_tone("5", duration_ms=200, gap_ms=0)))
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top_two == pytest.approx([770, 1336], abs=6)
    with pytest.raises(ValueError, match="not a DTMF digit"):
        dtmf_tone("x")
    with pytest.raises(ValueError, match="unknown ringback"):
        ringback("mars")
