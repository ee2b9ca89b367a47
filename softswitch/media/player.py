"""Sound sources: music on hold and prompts as passive ports (pjmedia's wav_port, aiortc's MediaPlayer nouns).

Sound files are decoded once, when the configuration is loaded (`load_sound`): to 8 kHz mono int16, kept in
a `Sound` that every caller shares. A `Sound` also caches its G.711 encoding, so 300 callers listening to
the same music cost one slice of bytes per 20 ms each, not an encode (`LoopingPlayer.get_payload`).

  * `LoopingPlayer(sound)`: plays forever from its own position (music on hold).
  * `PromptPlayer([sound, ...])`: plays the sequence once (e.g. "you are caller" + "3" + "in the queue"),
    then returns None and reports `done`.

Nothing here sleeps or keeps time: the media clock asks for a frame every 20 ms. A bad sound file is a
`SoundFileError` at load time (a configuration error), never a call-time failure. `soundfile` is imported
only inside `load_sound`, so the rest of the media layer needs nothing beyond numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Final

import numpy as np
import numpy.typing as npt

from softswitch.media.g711 import SAMPLE_RATE, codec_by_name
from softswitch.media.port import FRAME_SAMPLES, Frame

__all__ = ["Chain", "LoopingPlayer", "PromptPlayer", "Sound", "SoundFileError", "load_sound", "resample"]

_FRAME: Final = FRAME_SAMPLES


class SoundFileError(ValueError):
    """A sound file could not be read or is unusable; the message names the file."""


class Sound:
    """Decoded audio at 8 kHz mono int16, read-only, shared by every player that plays it.

    >>> Sound(np.zeros(8000, np.int16), name="silence").duration
    1.0
    """

    def __init__(self, samples: npt.ArrayLike, *, name: str = "") -> None:
        arr = np.array(samples, dtype=np.int16).reshape(-1)
        arr.setflags(write=False)
        self.samples: npt.NDArray[np.int16] = arr
        self.name = name
        self._loop: npt.NDArray[np.int16] | None = None
        self._encoded: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def loop_buffer(self) -> npt.NDArray[np.int16]:
        """The sound repeated to at least one frame, plus its first frame again at the end, so any
        frame-sized window starting inside the first `loop_length` samples is one slice."""
        if self._loop is None:
            base = self.samples if len(self.samples) else np.zeros(_FRAME, np.int16)
            if len(base) < _FRAME:
                base = np.tile(base, -(-_FRAME // len(base)))
            buf = np.concatenate([base, base[:_FRAME]])
            buf.setflags(write=False)
            self._loop = buf
        return self._loop

    @property
    def loop_length(self) -> int:
        return len(self.loop_buffer()) - _FRAME

    def encoded_loop(self, codec_name: str) -> bytes:
        """`loop_buffer()` encoded with a G.711 codec, computed once per codec."""
        data = self._encoded.get(codec_name)
        if data is None:
            data = self._encoded[codec_name] = codec_by_name(codec_name).encode(self.loop_buffer())
        return data


def _as_sound(s: Sound | npt.ArrayLike) -> Sound:
    return s if isinstance(s, Sound) else Sound(s)


class LoopingPlayer:
    """Plays a sound in a loop, forever: music on hold.

    >>> moh = LoopingPlayer(Sound(np.arange(200, dtype=np.int16)))
    >>> [int(moh.get_frame()[0]) for _ in range(3)]
    [0, 160, 120]
    """

    done: Final = False

    def __init__(self, sound: Sound | npt.ArrayLike, *, position: int = 0) -> None:
        self.sound = _as_sound(sound)
        self._buf = self.sound.loop_buffer()
        self._length = self.sound.loop_length
        self.position = position % self._length

    def get_frame(self) -> Frame:
        pos = self.position
        self.position = (pos + _FRAME) % self._length
        return self._buf[pos : pos + _FRAME]

    def get_payload(self, codec_name: str) -> bytes:
        """The next frame already encoded (one slice of the sound's cached encoding)."""
        pos = self.position
        self.position = (pos + _FRAME) % self._length
        return self.sound.encoded_loop(codec_name)[pos : pos + _FRAME]

    def put_frame(self, frame: Frame) -> None:
        """A player is a source only."""


class PromptPlayer:
    """Plays a sequence of sounds once, then reports `done` and returns None.

    >>> p = PromptPlayer([np.ones(100, np.int16), np.full(100, 2, np.int16)])
    >>> f = p.get_frame(); (int(f[99]), int(f[100]), p.done)
    (1, 2, False)
    >>> int(p.get_frame()[39]), int(p.get_frame() is None), p.done
    (2, 1, True)
    """

    def __init__(self, sounds: Sequence[Sound | npt.ArrayLike]) -> None:
        self.sounds = [_as_sound(s) for s in sounds]
        self._index = 0
        self._offset = 0

    @property
    def done(self) -> bool:
        return self._index >= len(self.sounds)

    @property
    def remaining(self) -> float:
        """Seconds of audio left."""
        left = sum(len(s) for s in self.sounds[self._index :]) - self._offset
        return max(left, 0) / SAMPLE_RATE

    def get_frame(self) -> Frame | None:
        if self.done:
            return None
        out = np.zeros(_FRAME, dtype=np.int16)
        filled = 0
        while filled < _FRAME and self._index < len(self.sounds):
            samples = self.sounds[self._index].samples
            take = min(_FRAME - filled, len(samples) - self._offset)
            out[filled : filled + take] = samples[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset >= len(samples):
                self._index += 1
                self._offset = 0
        return out

    def put_frame(self, frame: Frame) -> None:
        """A player is a source only."""


class Chain:
    """Plays `first` until it is done, then `then` (a prompt, then music on hold again; or silence).

    >>> c = Chain(PromptPlayer([np.ones(160, np.int16)]), None)
    >>> int(c.get_frame()[0]), c.get_frame() is None
    (1, True)
    """

    def __init__(self, first: PromptPlayer, then: LoopingPlayer | PromptPlayer | None) -> None:
        self.first = first
        self.then = then

    @property
    def done(self) -> bool:
        return self.first.done and (self.then is None or getattr(self.then, "done", False))

    def get_frame(self) -> Frame | None:
        frame = self.first.get_frame()
        if frame is not None:
            return frame
        return None if self.then is None else self.then.get_frame()

    def put_frame(self, frame: Frame) -> None:
        """A player is a source only."""


def resample(samples: npt.ArrayLike, src_rate: int, dst_rate: int) -> npt.NDArray[np.float64]:
    """Resample float audio: windowed-sinc low-pass (when going down) then linear interpolation.

    Good enough for prompts and music on hold on the telephone band; not a mastering resampler.
    """
    x = np.asarray(samples, dtype=np.float64)
    if src_rate == dst_rate or len(x) == 0:
        return x
    if dst_rate < src_rate:
        cutoff = 0.45 * dst_rate / src_rate  # cycles per input sample, a little under the new Nyquist
        n = np.arange(101) - 50
        taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(len(n))
        taps /= taps.sum()
        x = np.convolve(x, taps, mode="same")
    count = int(len(x) * dst_rate / src_rate)
    positions = np.arange(count) * (src_rate / dst_rate)
    return np.asarray(np.interp(positions, np.arange(len(x)), x), dtype=np.float64)


def load_sound(path: str | PathLike[str], *, name: str | None = None) -> Sound:
    """Decode a sound file (anything libsndfile reads) to an 8 kHz mono int16 `Sound`.

    Raises `SoundFileError` naming the file when it cannot be read or holds no audio.
    """
    import soundfile  # type: ignore[import-untyped]  # load-time only; see the module docstring

    try:
        data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise SoundFileError(f"{path}: cannot read sound file: {exc}") from exc
    if data.size == 0:
        raise SoundFileError(f"{path}: sound file holds no audio")
    mono = data.mean(axis=1)
    mono = resample(mono, int(rate), SAMPLE_RATE)
    samples = np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)
    return Sound(samples, name=name if name is not None else str(path))
