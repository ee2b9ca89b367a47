"""Media ports: the passive audio interface every player, tone, mixer slot and tap speaks (pjmedia style).

A port hands out and takes 20 ms frames of 160 int16 samples at 8 kHz. Ports have no thread and no timer:
the one media clock (ticker.py) asks sources for frames and gives frames to sinks. `get_frame()` returns
None when the port has nothing to say this tick (silence, or a prompt that has finished); sinks treat None
as silence.

Here: the `MediaPort` protocol, the optional `EncodedSource` shortcut (a source that can hand out frames
already encoded, e.g. music on hold encoded once at load), `NullPort` (a blackhole sink / silent source)
and `BufferPort` (a bounded FIFO that re-chunks audio of any length into frames; what a relay leg's audio
goes through on its way into the mixer).
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "FRAME_SAMPLES",
    "BufferPort",
    "EncodedSource",
    "Frame",
    "MediaPort",
    "NullPort",
    "silence",
]

FRAME_SAMPLES: Final = 160  # 20 ms at 8000 Hz
Frame = npt.NDArray[np.int16]

_SILENCE: Final = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_SILENCE.setflags(write=False)


def silence() -> Frame:
    """A read-only frame of silence (shared; copy it before writing)."""
    return _SILENCE


@runtime_checkable
class MediaPort(Protocol):
    """A passive source and/or sink of 20 ms int16 frames."""

    def get_frame(self) -> Frame | None:
        """The next frame this port produces, or None for nothing (silence / finished)."""
        ...

    def put_frame(self, frame: Frame) -> None:
        """Give the port a frame it consumes (a sink); sources that are not sinks ignore it."""
        ...


@runtime_checkable
class EncodedSource(Protocol):
    """A source that can return its next frame already encoded (and advance as `get_frame` would)."""

    def get_payload(self, codec_name: str) -> bytes | None: ...


class NullPort:
    """A silent source and a sink that discards everything (aiortc's `MediaBlackhole`, pjmedia's null port).

    >>> NullPort().get_frame() is None
    True
    """

    def __init__(self) -> None:
        self.frames_discarded = 0

    def get_frame(self) -> Frame | None:
        return None

    def put_frame(self, frame: Frame) -> None:
        self.frames_discarded += 1


class BufferPort:
    """A bounded FIFO port: `put_frame` accepts any number of samples, `get_frame` returns 160 at a time.

    Overflow policy: when more than `max_samples` are waiting, the oldest samples are dropped (counted in
    `samples_dropped`) so latency stays bounded; an underrun returns None (counted in `underruns`). With
    `prefill`, output starts (and restarts after an underrun) only once that many samples are waiting: a
    minimal jitter buffer for audio that arrives with network timing and leaves with the media clock's.

    >>> buf = BufferPort()
    >>> buf.put_frame(np.ones(240, np.int16)); buf.get_frame().shape, buf.get_frame()
    ((160,), None)
    """

    def __init__(self, *, max_samples: int = 5 * FRAME_SAMPLES, prefill: int = 0) -> None:
        self.max_samples = max_samples
        self.prefill = prefill
        self._chunks: deque[Frame] = deque()
        self._available = 0
        self._primed = prefill == 0
        self.samples_dropped = 0
        self.underruns = 0

    @property
    def available(self) -> int:
        """Samples waiting."""
        return self._available

    def clear(self) -> None:
        self._chunks.clear()
        self._available = 0

    def put_frame(self, frame: Frame) -> None:
        if len(frame) == 0:
            return
        self._chunks.append(frame)
        self._available += len(frame)
        excess = self._available - self.max_samples
        while excess > 0:
            head = self._chunks[0]
            if len(head) <= excess:
                self._chunks.popleft()
                cut = len(head)
            else:
                self._chunks[0] = head[excess:]
                cut = excess
            self._available -= cut
            self.samples_dropped += cut
            excess -= cut

    def get_frame(self) -> Frame | None:
        if not self._primed:
            if self._available < max(self.prefill, FRAME_SAMPLES):
                return None
            self._primed = True
        if self._available < FRAME_SAMPLES:
            self.underruns += 1
            self._primed = self.prefill == 0
            return None
        head = self._chunks[0]
        if len(head) == FRAME_SAMPLES:
            self._chunks.popleft()
            self._available -= FRAME_SAMPLES
            return head
        out = np.empty(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES:
            head = self._chunks[0]
            take = min(len(head), FRAME_SAMPLES - filled)
            out[filled : filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[take:]
        self._available -= FRAME_SAMPLES
        return out
