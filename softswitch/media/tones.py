"""Call-progress and feature tones as ports: ringback, busy, beeps, a confirmation tone, DTMF.

Each tone is rendered once into a `Sound` (one cadence cycle) and played by the same players as music on
hold, so tones cost what music costs. Frequencies and cadences:
  * ringback: "eu" 425 Hz 1 s on / 4 s off (ETSI / ITU-T E.180 recommended), "us" 440+480 Hz 2 s / 4 s
    (ANSI T1.401), "uk" 400+450 Hz 0.4 / 0.2 / 0.4 / 2.0 s;
  * busy: "eu" 425 Hz 0.5 s / 0.5 s, "us" 480+620 Hz 0.5 s / 0.5 s;
  * DTMF: the ITU-T Q.23 row/column pairs;
  * beep and confirmation tone: our own choice (1000 Hz 200 ms; three 880 Hz blips of 100 ms, 60 ms apart),
    used for "recording starts" and for feature-code confirmations.
Level is per frequency component, in dBFS (default -13, comfortably below clipping for two components).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from softswitch.media.g711 import SAMPLE_RATE
from softswitch.media.player import LoopingPlayer, PromptPlayer, Sound

__all__ = ["beep", "busy", "confirmation_tone", "dtmf_tone", "render", "ringback", "tone"]

Cadence = Sequence[tuple[int, int]]  # (on ms, off ms) segments of one cycle

_RINGBACK: Final[dict[str, tuple[tuple[float, ...], tuple[tuple[int, int], ...]]]] = {
    "eu": ((425.0,), ((1000, 4000),)),
    "us": ((440.0, 480.0), ((2000, 4000),)),
    "uk": ((400.0, 450.0), ((400, 200), (400, 2000))),
}
_BUSY: Final[dict[str, tuple[tuple[float, ...], tuple[tuple[int, int], ...]]]] = {
    "eu": ((425.0,), ((500, 500),)),
    "us": ((480.0, 620.0), ((500, 500),)),
}
_DTMF_ROWS: Final = (697.0, 770.0, 852.0, 941.0)
_DTMF_COLS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_DTMF_KEYS: Final = ("123A", "456B", "789C", "*0#D")


def render(
    frequencies: Sequence[float], cadence: Cadence, *, level_dbfs: float = -13.0, name: str = ""
) -> Sound:
    """One cycle of a cadenced multi-frequency tone as a `Sound`."""
    amplitude = 32767.0 * 10 ** (level_dbfs / 20)
    parts = []
    for on_ms, off_ms in cadence:
        t = np.arange(on_ms * SAMPLE_RATE // 1000) / SAMPLE_RATE
        burst = sum((amplitude * np.sin(2 * np.pi * f * t) for f in frequencies), np.zeros(len(t)))
        parts.append(np.clip(np.round(burst), -32768, 32767).astype(np.int16))
        parts.append(np.zeros(off_ms * SAMPLE_RATE // 1000, dtype=np.int16))
    return Sound(np.concatenate(parts) if parts else np.zeros(0, np.int16), name=name)


def tone(
    frequencies: Sequence[float],
    cadence: Cadence,
    *,
    repeat: int | None = None,
    level_dbfs: float = -13.0,
) -> LoopingPlayer | PromptPlayer:
    """A tone port: forever (`repeat=None`) or `repeat` cycles then done."""
    sound = render(frequencies, cadence, level_dbfs=level_dbfs)
    if repeat is None:
        return LoopingPlayer(sound)
    return PromptPlayer([sound] * repeat)


def ringback(country: str = "eu") -> LoopingPlayer:
    """Ringback tone, looping."""
    try:
        freqs, cadence = _RINGBACK[country]
    except KeyError:
        raise ValueError(f"unknown ringback {country!r}; known: {', '.join(_RINGBACK)}") from None
    return LoopingPlayer(render(freqs, cadence, name=f"ringback-{country}"))


def busy(country: str = "eu") -> LoopingPlayer:
    """Busy tone, looping."""
    try:
        freqs, cadence = _BUSY[country]
    except KeyError:
        raise ValueError(f"unknown busy tone {country!r}; known: {', '.join(_BUSY)}") from None
    return LoopingPlayer(render(freqs, cadence, name=f"busy-{country}"))


def beep(frequency: float = 1000.0, duration_ms: int = 200) -> PromptPlayer:
    """One beep, then done."""
    return PromptPlayer([render((frequency,), ((duration_ms, 0),))])


def confirmation_tone() -> PromptPlayer:
    """Three short 880 Hz blips: "feature code accepted"."""
    return PromptPlayer([render((880.0,), ((100, 60),) * 3)])


def dtmf_tone(digit: str, duration_ms: int = 100, gap_ms: int = 50) -> PromptPlayer:
    """The in-band DTMF tone for one key (ITU-T Q.23), then `gap_ms` of silence."""
    for row, keys in enumerate(_DTMF_KEYS):
        col = keys.find(digit.upper())
        if len(digit) == 1 and col >= 0:
            freqs = (_DTMF_ROWS[row], _DTMF_COLS[col])
            return PromptPlayer([render(freqs, ((duration_ms, gap_ms),), level_dbfs=-10.0)])
    raise ValueError(f"not a DTMF digit: {digit!r}")
