"""Audio checks for the integration tests: make tones, then prove by FFT what a peer heard.

Tones used in tests sit inside the telephone band (300-3400 Hz); anything above 4 kHz aliases at 8 kHz.
`dominant_frequency` and `band_energy_ratio` skip the leading silence (a recorder starts before the first
RTP packet arrives) and use a Hann window. `assert_hears` says in its failure message what was heard
instead: the strongest peaks, the share of energy at the expected tone, the level and the duration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

__all__ = [
    "AudioInput",
    "assert_hears",
    "assert_silent",
    "band_energy_ratio",
    "dominant_frequency",
    "load",
    "rms",
    "trim_silence",
    "write_tone",
]

AudioInput = str | Path | npt.NDArray[np.floating] | npt.NDArray[np.integer]

SILENCE_THRESHOLD = 0.01
"""Samples below this fraction of full scale count as silence when trimming."""


def write_tone(
    path: str | Path,
    freq_hz: float,
    seconds: float,
    rate: int = 8000,
    amplitude: float = 0.5,
) -> Path:
    """Write a mono 16-bit PCM WAV holding a sine of `freq_hz`; return the path."""
    if not 0 < freq_hz < rate / 2:
        raise ValueError(f"{freq_hz} Hz is not below the Nyquist frequency {rate / 2} Hz")
    n = round(seconds * rate)
    t = np.arange(n) / rate
    samples = amplitude * np.sin(2 * np.pi * freq_hz * t)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples.astype(np.float32), rate, subtype="PCM_16")
    return path


def load(
    source: AudioInput, rate: int | None = None, *, channel: int | None = None
) -> tuple[np.ndarray, int]:
    """Return `(mono float64 samples in [-1, 1], rate)` from a file path or an array.

    For a file the rate comes from the file (a `rate` that disagrees is an error); for an array `rate` is
    required. Integer arrays are scaled by their dtype's range. Stereo input is mixed down unless
    `channel` picks one (0 = left).
    """
    if isinstance(source, str | Path):
        data, file_rate = soundfile.read(str(source), dtype="float64", always_2d=True)
        if rate is not None and rate != file_rate:
            raise ValueError(f"{source} is {file_rate} Hz, not {rate} Hz")
        rate = int(file_rate)
    else:
        if rate is None:
            raise ValueError("rate is required when passing samples")
        array = np.asarray(source)
        if np.issubdtype(array.dtype, np.integer):
            data = array.astype(np.float64) / float(np.iinfo(array.dtype).max)
        else:
            data = array.astype(np.float64)
        if data.ndim == 1:
            data = data[:, None]
    if channel is not None:
        mono = data[:, channel]
    else:
        mono = data.mean(axis=1)
    return mono, rate


def trim_silence(samples: np.ndarray, threshold: float = SILENCE_THRESHOLD) -> np.ndarray:
    """Drop the leading and trailing samples quieter than `threshold` (fraction of full scale)."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


def rms(source: AudioInput, rate: int | None = None, *, channel: int | None = None) -> float:
    """Root mean square level of the whole signal, in full-scale units (a full-scale sine is 0.707)."""
    # The rate does not change an RMS; arrays may come without one.
    samples, _ = load(source, rate if rate is not None or not _is_array(source) else 1, channel=channel)
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples**2)))


def _is_array(source: AudioInput) -> bool:
    return not isinstance(source, str | Path)


def _spectrum(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    windowed = (samples - samples.mean()) * np.hanning(samples.size)
    power = np.abs(np.fft.rfft(windowed)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate)
    return freqs, power


def dominant_frequency(
    source: AudioInput,
    rate: int | None = None,
    *,
    channel: int | None = None,
    min_hz: float = 50.0,
) -> float:
    """The frequency (Hz) of the strongest spectral peak above `min_hz`, leading/trailing silence ignored.

    Raises ValueError if the signal is silent (nothing above the silence threshold).
    """
    samples, rate = load(source, rate, channel=channel)
    samples = trim_silence(samples)
    if samples.size < 64:
        raise ValueError("the signal is silent: no sample above the silence threshold")
    freqs, power = _spectrum(samples, rate)
    power[freqs < min_hz] = 0.0
    peak = int(np.argmax(power))
    # Parabolic interpolation on the log spectrum for sub-bin accuracy.
    if 0 < peak < power.size - 1:
        a, b, c = np.log(power[peak - 1 : peak + 2] + 1e-30)
        denominator = a - 2 * b + c
        offset = 0.5 * (a - c) / denominator if denominator != 0 else 0.0
        return float(freqs[peak] + offset * (freqs[1] - freqs[0]))
    return float(freqs[peak])


def band_energy_ratio(
    samples: AudioInput, rate: int | None, f_lo: float, f_hi: float, *, channel: int | None = None
) -> float:
    """Share (0..1) of the signal's energy between `f_lo` and `f_hi` Hz (DC excluded, silence trimmed)."""
    data, rate = load(samples, rate, channel=channel)
    data = trim_silence(data)
    if data.size < 64:
        return 0.0
    freqs, power = _spectrum(data, rate)
    power[freqs < 20.0] = 0.0
    total = float(power.sum())
    if total == 0.0:
        return 0.0
    band = (freqs >= f_lo) & (freqs <= f_hi)
    return float(power[band].sum() / total)


def _peaks(samples: np.ndarray, rate: int, count: int = 3) -> list[tuple[float, float]]:
    """The `count` strongest peaks as (Hz, share of energy within +-25 Hz), strongest first."""
    freqs, power = _spectrum(samples, rate)
    power[freqs < 20.0] = 0.0
    total = float(power.sum()) or 1.0
    found: list[tuple[float, float]] = []
    work = power.copy()
    bin_hz = freqs[1] - freqs[0] if freqs.size > 1 else 1.0
    half = max(1, int(25.0 / bin_hz))
    for _ in range(count):
        peak = int(np.argmax(work))
        if work[peak] <= 0:
            break
        lo, hi = max(0, peak - half), peak + half + 1
        found.append((float(freqs[peak]), float(power[lo:hi].sum() / total)))
        work[lo:hi] = 0.0
    return found


def assert_hears(
    path: str | Path,
    freq: float,
    *,
    not_freq: float | None = None,
    tolerance_hz: float = 20.0,
    min_ratio: float = 0.6,
    max_other_ratio: float = 0.05,
    min_seconds: float = 0.5,
    channel: int | None = None,
) -> None:
    """Assert the recording at `path` holds a tone at `freq` (and not one at `not_freq`).

    Checks, on the recording with leading and trailing silence removed: at least `min_seconds` of sound;
    the dominant frequency within `tolerance_hz` of `freq`; at least `min_ratio` of the energy within
    `freq +- 2*tolerance_hz`; and, with `not_freq`, at most `max_other_ratio` of the energy around it.
    """
    samples, rate = load(path, channel=channel)
    total_seconds = samples.size / rate if rate else 0.0
    sound = trim_silence(samples)
    level = float(np.sqrt(np.mean(sound**2))) if sound.size else 0.0
    summary = f"{path}: {total_seconds:.2f} s recorded, {sound.size / rate:.2f} s of sound, rms {level:.3f}"
    if sound.size / rate < min_seconds:
        raise AssertionError(f"expected a {freq:g} Hz tone but the recording is (nearly) silent: {summary}")
    peaks = _peaks(sound, rate)
    peak_text = ", ".join(f"{hz:.0f} Hz ({share:.0%})" for hz, share in peaks)
    dominant = dominant_frequency(sound, rate)
    width = 2 * tolerance_hz
    ratio = band_energy_ratio(sound, rate, freq - width, freq + width)
    problems = []
    if abs(dominant - freq) > tolerance_hz:
        problems.append(
            f"dominant frequency {dominant:.1f} Hz is not within {tolerance_hz:g} Hz of {freq:g} Hz"
        )
    if ratio < min_ratio:
        problems.append(
            f"only {ratio:.0%} of the energy is within {freq:g}+-{width:g} Hz (need {min_ratio:.0%})"
        )
    if not_freq is not None:
        other = band_energy_ratio(sound, rate, not_freq - width, not_freq + width)
        if other > max_other_ratio:
            problems.append(
                f"{other:.0%} of the energy is within {not_freq:g}+-{width:g} Hz, which should be absent"
                f" (allowed {max_other_ratio:.0%})"
            )
    if problems:
        raise AssertionError(
            f"expected to hear {freq:g} Hz: "
            + "; ".join(problems)
            + f". Strongest peaks: {peak_text}. {summary}"
        )


def assert_silent(path: str | Path, *, max_rms: float = 0.01, channel: int | None = None) -> None:
    """Assert the recording at `path` holds no sound above `max_rms` (e.g. while on hold)."""
    samples, rate = load(path, channel=channel)
    level = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    if level > max_rms:
        sound = trim_silence(samples)
        peaks = (
            ", ".join(f"{hz:.0f} Hz ({share:.0%})" for hz, share in _peaks(sound, rate))
            if sound.size
            else "-"
        )
        raise AssertionError(
            f"expected silence in {path} but its rms is {level:.3f} (max {max_rms}); strongest peaks: {peaks}"
        )
