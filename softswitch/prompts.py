"""The switch's own voice: the prompt catalogue, its generator, the default music on hold, and phrases.

Prompts are short WAV files (8 kHz mono 16-bit, the telephone's own format, so nothing is resampled at call
time) made at set-up by `softswitch prompts` from the texts in `PROMPTS` with espeak-ng (installed by
`scripts/setup-system.sh`): espeak-ng writes 22.05 kHz speech, we trim its silences, resample with
`media.player.resample`, even out the loudness and write the file atomically. Numbers are composed the way
Asterisk composes them ("twenty" + "three"), so 28 number files cover positions and minutes 1-99.

The default music on hold (`moh-default.wav`) is synthesised here with numpy: a slow I-vi-IV-V progression
as a soft pad, a plucked arpeggio and a quiet bass, all inside the telephone band, at about -18 dBFS. Every
note is written onto a circular timeline (a note that runs past the end continues at the start), so the
file is exactly periodic and loops without a click.

At start-up `PromptLibrary.load(directory)` decodes every file once into shared `media.player.Sound`
objects; the call flow asks for phrases by name:

    library = PromptLibrary.load("var/sounds")
    player = PromptPlayer(library.phrase(announcement_phrase(position=3, estimated_wait=140.0)))
    # "you are caller number" "three" "in the queue" "your estimated waiting time is" "two" "minutes"

Phrase builders (`position_phrase`, `wait_phrase`, `feature_prompt`, `timeout_prompt`, ...) are pure and
return prompt names. Not here: languages other than English, and playing anything (that is media/player.py).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from softswitch.media.player import Sound, SoundFileError, load_sound, resample

__all__ = [
    "DEFAULT_MOH",
    "DEFAULT_SOUNDS_DIR",
    "MOH_NAME",
    "PROMPTS",
    "SAMPLE_RATE",
    "PromptError",
    "PromptLibrary",
    "announcement_phrase",
    "exit_key_phrase",
    "feature_prompt",
    "generate",
    "make_music_on_hold",
    "number_phrase",
    "position_phrase",
    "synthesize_music_on_hold",
    "timeout_prompt",
    "wait_phrase",
]

SAMPLE_RATE: Final = 8000
DEFAULT_SOUNDS_DIR: Final = Path("var/sounds")
MOH_NAME: Final = "moh-default"
#: Where the default music on hold lives; a queue's `moh` overrides it.
DEFAULT_MOH: Final = DEFAULT_SOUNDS_DIR / f"{MOH_NAME}.wav"

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty",
         90: "ninety"}  # fmt: skip

_PHRASES: dict[str, str] = {
    # waiting callers
    "you-are-caller-number": "you are caller number",
    "in-the-queue": "in the queue",
    "you-are-next": "you are next in line",
    "many-callers-ahead": "there are many callers ahead of you",
    "estimated-wait-is": "your estimated waiting time is",
    "minutes": "minutes",
    "minute": "minute",
    "less-than-one-minute": "less than one minute",
    "more-than-an-hour": "more than an hour",
    "please-hold": "please hold, your call is important to us",
    "all-agents-busy": "all our agents are busy, please hold",
    "thank-you-for-holding": "thank you for holding",
    "no-agents-goodbye": "there are no agents available, goodbye",
    "queue-full": "all our lines are busy, please call again later, goodbye",
    "max-wait-goodbye": "we are sorry, nobody could take your call, please try again later, goodbye",
    "transferring": "please hold while we transfer your call",
    "press-to-leave": "to leave the queue, press",
    "star": "star",
    "hash": "hash",
    "goodbye": "goodbye",
    # agents' feature codes
    "logged-in": "you are logged in",
    "logged-out": "you are logged out",
    "logout-pending": "you will be logged out after this call",
    "paused": "you are paused",
    "welcome-back": "welcome back",
    "wrap-up-ended": "wrap-up ended",
    "not-logged-in": "you are not logged in",
    "invalid-code": "sorry, that code is not valid",
}

#: Prompt name -> the English text espeak-ng speaks. Numbers are `number-N` for N in 0..19 and the tens.
PROMPTS: Final[Mapping[str, str]] = MappingProxyType(
    {f"number-{n}": word for n, word in enumerate(_ONES)}
    | {f"number-{n}": word for n, word in _TENS.items()}
    | _PHRASES
)

# espeak-ng: the stock American English voice, a little slower than its default 175 words per minute so
# numbers stay clear through G.711.
_ESPEAK_VOICE: Final = "en-us"
_ESPEAK_SPEED: Final = 150
_SPEECH_RMS_DBFS: Final = -20.0  # loudness of the voiced part, like a telephone talker
_PEAK_DBFS: Final = -1.0
_MOH_RMS_DBFS: Final = -18.0
_PAD_SECONDS: Final = 0.04  # silence kept before and after each prompt so concatenations breathe
_FADE_SECONDS: Final = 0.005


class PromptError(RuntimeError):
    """Prompts cannot be generated or loaded; the message says which and what to do."""


# ====================================================================================================
# phrases (pure)


def number_phrase(n: int) -> list[str]:
    """Prompt names that say `n` (0..99): `[number-20, number-3]` for 23."""
    if not 0 <= n <= 99:
        raise ValueError(f"number_phrase covers 0..99, got {n}")
    if n < 20:
        return [f"number-{n}"]
    tens, ones = divmod(n, 10)
    return [f"number-{tens * 10}"] + ([f"number-{ones}"] if ones else [])


def position_phrase(n: int) -> list[str]:
    """Prompt names for a caller's position (1 = next): "you are caller number" N "in the queue"."""
    if n < 1:
        raise ValueError(f"a position starts at 1, got {n}")
    if n == 1:
        return ["you-are-next"]
    if n > 99:
        return ["many-callers-ahead"]
    return ["you-are-caller-number", *number_phrase(n), "in-the-queue"]


def wait_phrase(seconds: float | None) -> list[str]:
    """Prompt names for an estimated wait, rounded to whole minutes; [] when there is no estimate."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return []
    if seconds < 60:
        return ["estimated-wait-is", "less-than-one-minute"]
    minutes = int(seconds / 60 + 0.5)
    if minutes >= 60:
        return ["estimated-wait-is", "more-than-an-hour"]
    return ["estimated-wait-is", *number_phrase(minutes), "minute" if minutes == 1 else "minutes"]


def announcement_phrase(position: int, estimated_wait: float | None) -> list[str]:
    """What an `AnnouncePosition(position, estimated_wait)` action says: position, then the wait if known."""
    return position_phrase(position) + wait_phrase(estimated_wait)


def exit_key_phrase(key: str) -> list[str]:
    """ "to leave the queue, press" KEY; [] for keys we have no word for (A-D)."""
    if key.isdigit() and len(key) == 1:
        word = f"number-{key}"
    elif key in ("*", "#"):
        word = "star" if key == "*" else "hash"
    else:
        return []
    return ["press-to-leave", word]


_FEATURE_PROMPTS: Final[Mapping[tuple[str, str], str]] = MappingProxyType(
    {
        ("login", "done"): "logged-in",
        ("login", "no_change"): "logged-in",
        ("logout", "done"): "logged-out",
        ("logout", "no_change"): "logged-out",
        ("logout", "pending"): "logout-pending",
        ("logout", "not_logged_in"): "logged-out",
        ("pause", "done"): "paused",
        ("pause", "no_change"): "paused",
        ("pause", "pending"): "paused",
        ("resume", "done"): "welcome-back",
        ("resume", "no_change"): "welcome-back",
        ("end_wrap_up", "done"): "wrap-up-ended",
        ("end_wrap_up", "no_change"): "wrap-up-ended",
    }
)


def feature_prompt(action: str, ack: str) -> str:
    """The confirmation prompt for a feature code: `action` is login, logout, pause, resume or end_wrap_up
    (end-wrap-up is accepted too), `ack` the engine's `Ack` value. Anything else is "invalid-code"."""
    action = action.replace("-", "_")
    prompt = _FEATURE_PROMPTS.get((action, str(ack)))
    if prompt is not None:
        return prompt
    if str(ack) == "not_logged_in":
        return "not-logged-in"
    return "invalid-code"


def timeout_prompt(reason: str, to: str | None) -> str:
    """What a caller hears when the queue lets go of the call (`acd.TimeOut` / `ExitTo`): "transferring"
    when there is somewhere to go, otherwise a goodbye that says why."""
    if to is not None:
        return "transferring"
    if reason in ("join_empty", "leave_empty"):
        return "no-agents-goodbye"
    if reason == "full":
        return "queue-full"
    if reason == "max_wait":
        return "max-wait-goodbye"
    return "goodbye"


# ====================================================================================================
# level helpers


def _dbfs(level: float) -> float:
    return 10 ** (level / 20)


def _fade(x: npt.NDArray[np.float64], samples: int) -> None:
    """Raised-cosine fade in and out over `samples`, in place."""
    samples = min(samples, len(x) // 2)
    if samples <= 0:
        return
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, samples))
    x[:samples] *= ramp
    x[-samples:] *= ramp[::-1]


def _to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, samples: npt.NDArray[np.int16]) -> None:
    """Write 8 kHz mono PCM_16 atomically (a switch reading the directory never sees half a file)."""
    import soundfile  # type: ignore[import-untyped]

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    soundfile.write(str(tmp), samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _speech_to_prompt(samples: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.int16]:
    """espeak-ng's output -> a trimmed, resampled, level-matched 8 kHz prompt."""
    x = np.asarray(samples, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak <= 0:
        raise PromptError("espeak-ng produced silence")
    voiced = np.flatnonzero(np.abs(x) > peak * 0.02)  # -34 dB below the peak counts as silence
    pad = int(_PAD_SECONDS * rate)
    x = x[max(0, voiced[0] - pad) : voiced[-1] + pad + 1].copy()
    _fade(x, int(_FADE_SECONDS * rate))
    y = resample(x, rate, SAMPLE_RATE)
    # Loudness of the voiced part, in 20 ms blocks louder than -40 dB below the loudest block.
    block = SAMPLE_RATE // 50
    usable = len(y) // block * block
    blocks = y[:usable].reshape(-1, block) if usable else y.reshape(1, -1)
    energy = np.sqrt(np.mean(blocks**2, axis=1))
    active = energy[energy > energy.max() * 0.01]
    rms = float(np.sqrt(np.mean(active**2)))
    gain = _dbfs(_SPEECH_RMS_DBFS) / rms
    gain = min(gain, _dbfs(_PEAK_DBFS) / float(np.max(np.abs(y))))
    return _to_int16(y * gain)


# ====================================================================================================
# generation


def _espeak(text: str, workdir: Path) -> tuple[npt.NDArray[np.float64], int]:
    import soundfile

    executable = shutil.which("espeak-ng")
    if executable is None:
        raise PromptError("espeak-ng is not installed (scripts/setup-system.sh installs it)")
    out = workdir / "speech.wav"
    result = subprocess.run(
        [executable, "-v", _ESPEAK_VOICE, "-s", str(_ESPEAK_SPEED), "-w", str(out), "--", text],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0 or not out.exists():
        raise PromptError(f"espeak-ng failed on {text!r}: {result.stderr.strip() or result.returncode}")
    data, rate = soundfile.read(str(out), dtype="float64", always_2d=True)
    return data.mean(axis=1), int(rate)


def generate(
    directory: str | os.PathLike[str] = DEFAULT_SOUNDS_DIR,
    *,
    if_missing: bool,
    names: Iterable[str] | None = None,
    music: bool = True,
) -> list[Path]:
    """Write `<name>.wav` for every prompt in `PROMPTS` (or only `names`) and, with `music`, the default
    music on hold `moh-default.wav`, into `directory`. With `if_missing`, files that exist are left alone.
    Returns the files written. Raises `PromptError` when espeak-ng is missing or fails."""
    target = Path(directory)
    wanted = list(PROMPTS) if names is None else list(names)
    unknown = [name for name in wanted if name not in PROMPTS]
    if unknown:
        raise PromptError(f"unknown prompts: {', '.join(unknown)}")
    written: list[Path] = []
    todo = [name for name in wanted if not (if_missing and (target / f"{name}.wav").exists())]
    if todo:
        with tempfile.TemporaryDirectory(prefix="softswitch-prompts-") as work:
            for name in todo:
                samples, rate = _espeak(PROMPTS[name], Path(work))
                path = target / f"{name}.wav"
                _write_wav(path, _speech_to_prompt(samples, rate))
                written.append(path)
    moh = target / f"{MOH_NAME}.wav"
    if music and not (if_missing and moh.exists()):
        make_music_on_hold(moh)
        written.append(moh)
    return written


# ====================================================================================================
# music on hold


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


# Eight bars, four beats each: C, Am, F, G, C, Em, F, G (G leads back to the C at the loop point), as MIDI
# notes around middle C; the pad and the arpeggio play them an octave up, inside the telephone band.
_CHORDS: Final = (
    (60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62),
    (60, 64, 67), (52, 55, 59), (53, 57, 60), (55, 59, 62),
)  # fmt: skip
# Arpeggio over each bar in eighth notes: chord tones an octave up, 3 = the root an octave higher still.
_ARPEGGIO: Final = (0, 1, 2, 3, 2, 1, 0, 1)


def _add_circular(buf: npt.NDArray[np.float64], start: int, note: npt.NDArray[np.float64]) -> None:
    """Add `note` at `start`, wrapping past the end to the beginning (the loop is a circle)."""
    n = len(buf)
    start %= n
    first = min(len(note), n - start)
    buf[start : start + first] += note[:first]
    rest = note[first:]
    while len(rest):
        take = min(len(rest), n)
        buf[:take] += rest[:take]
        rest = rest[take:]


def _tone(freq: float, seconds: float, partials: Sequence[float], rate: int) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    for k, amplitude in enumerate(partials, start=1):
        if amplitude and freq * k < 3400.0:  # keep every partial inside the telephone band
            out += amplitude * np.sin(2 * math.pi * freq * k * t)
    return out


def _envelope(
    samples: int, attack: int, release: int, decay: float | None, rate: int
) -> npt.NDArray[np.float64]:
    """Raised-cosine attack, optional exponential decay, raised-cosine release to exactly zero."""
    env = np.ones(samples)
    if decay is not None:
        env *= np.exp(-np.arange(samples) / (decay * rate))
    attack, release = min(attack, samples // 2), min(release, samples // 2)
    if attack:
        env[:attack] *= 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, attack))
    if release:
        env[-release:] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, math.pi, release))
    return env


def synthesize_music_on_hold(seconds: float = 30.0, *, rate: int = SAMPLE_RATE) -> npt.NDArray[np.int16]:
    """The default music on hold as int16 samples: exactly periodic with period `seconds`, about -18 dBFS."""
    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    total = round(seconds * rate)
    bar = total / len(_CHORDS)
    beat = bar / 4
    pad = np.zeros(total)
    arp = np.zeros(total)
    bass = np.zeros(total)
    for index, chord in enumerate(_CHORDS):
        start = round(index * bar)
        # Pad: the chord held through the bar, swelling in and fading into the next one.
        length = int(bar + 1.5 * beat)
        env = _envelope(length, int(0.8 * beat), int(1.5 * beat), None, rate)
        for midi in chord:
            for detune in (-0.06, 0.06):  # two slightly detuned voices: a gentle chorus
                voice = _tone(_hz(midi + 12 + detune), length / rate, (1.0, 0.3, 0.1), rate)
                _add_circular(pad, start, voice * env)
        # Arpeggio: plucked chord tones, then the root an octave higher; each rings past the next.
        tones = (*[m + 12 for m in chord], chord[0] + 24)
        note_length = int(3 * beat)
        pluck = _envelope(note_length, int(0.012 * rate), int(0.05 * rate), 0.45 * beat / rate, rate)
        for step, which in enumerate(_ARPEGGIO):
            note = _tone(_hz(tones[which]), note_length / rate, (1.0, 0.2, 0.05), rate)
            _add_circular(arp, start + round(step * beat / 2), note * pluck)
        # Bass: the root on beats one and three; its harmonics carry it through the phone's 300 Hz high-pass.
        bass_length = int(2 * beat)
        bass_env = _envelope(bass_length, int(0.02 * rate), int(0.3 * beat), 1.2 * beat / rate, rate)
        for half in (0, 2):
            note = _tone(_hz(chord[0]), bass_length / rate, (0.4, 1.0, 0.5), rate)
            _add_circular(bass, start + round(half * beat), note * bass_env)
    mix = 0.5 * pad / max(1e-9, float(np.sqrt(np.mean(pad**2))))
    mix += 0.4 * arp / max(1e-9, float(np.sqrt(np.mean(arp**2))))
    mix += 0.3 * bass / max(1e-9, float(np.sqrt(np.mean(bass**2))))
    mix *= _dbfs(_MOH_RMS_DBFS) / float(np.sqrt(np.mean(mix**2)))
    peak = float(np.max(np.abs(mix)))
    if peak > _dbfs(_PEAK_DBFS):
        mix *= _dbfs(_PEAK_DBFS) / peak
    return _to_int16(mix)


def make_music_on_hold(path: str | os.PathLike[str] = DEFAULT_MOH, seconds: float = 30.0) -> Path:
    """Write the default music on hold (8 kHz mono 16-bit WAV, `seconds` long, loops seamlessly)."""
    target = Path(path)
    _write_wav(target, synthesize_music_on_hold(seconds))
    return target


# ====================================================================================================
# the library the switch loads at start-up


class PromptLibrary:
    """Every prompt (and the default music on hold) decoded once, shared by all players.

    >>> library = PromptLibrary({"minute": Sound(np.zeros(800, np.int16), name="minute")})
    >>> library.sound("minute").shape, [s.name for s in library.phrase(["minute"])]
    ((800,), ['minute'])
    """

    def __init__(self, sounds: Mapping[str, Sound], directory: Path | None = None) -> None:
        self._sounds = dict(sounds)
        self.directory = directory

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str] = DEFAULT_SOUNDS_DIR, *, required: bool = True
    ) -> PromptLibrary:
        """Decode `<name>.wav` for every name in `PROMPTS` plus `moh-default`. With `required`, a missing
        or unreadable file is a `PromptError` naming them all (run `softswitch prompts`); without, the
        library holds what there is."""
        base = Path(directory)
        sounds: dict[str, Sound] = {}
        missing: list[str] = []
        broken: list[str] = []
        for name in [*PROMPTS, MOH_NAME]:
            path = base / f"{name}.wav"
            if not path.exists():
                missing.append(name)
                continue
            try:
                sounds[name] = load_sound(path, name=name)
            except SoundFileError as exc:
                broken.append(str(exc))
        if required and (missing or broken):
            problems = []
            if missing:
                problems.append(f"missing in {base}: {', '.join(missing)}")
            problems.extend(broken)
            raise PromptError("; ".join(problems) + " (run `softswitch prompts` to make them)")
        return cls(sounds, base)

    def __contains__(self, name: object) -> bool:
        return name in self._sounds

    def __len__(self) -> int:
        return len(self._sounds)

    def names(self) -> list[str]:
        return sorted(self._sounds)

    def get(self, name: str) -> Sound:
        """The shared `Sound` (for `LoopingPlayer` / `PromptPlayer`); KeyError names the prompt."""
        try:
            return self._sounds[name]
        except KeyError:
            raise KeyError(f"no prompt {name!r} in {self.directory or 'the library'}") from None

    def sound(self, name: str) -> npt.NDArray[np.int16]:
        """The prompt's samples: 8 kHz mono int16, read-only."""
        return self.get(name).samples

    def phrase(self, names: Iterable[str]) -> list[Sound]:
        """The sounds for a list of prompt names, in order (feed it to `PromptPlayer`)."""
        return [self.get(name) for name in names]

    @property
    def music_on_hold(self) -> Sound:
        return self.get(MOH_NAME)

    # The phrase builders, for callers that hold only the library.
    position_phrase = staticmethod(position_phrase)
    wait_phrase = staticmethod(wait_phrase)
    announcement_phrase = staticmethod(announcement_phrase)
