"""The media clock (asyncio edge): one 20 ms tick for every port that makes or mixes audio.

pjmedia's clock.h in asyncio form. Ticks fall on an absolute grid (`start + n * interval`), each scheduled
with `loop.call_at` from the previous one's grid time, so lateness never accumulates into drift. Every
registered `Tickable` gets `tick(now=<grid time>)` once per tick, lower `phase` first (the mixer before the
streams that send its output), and the `Send`s they return are handed to `write` in one batch.

Late ticks: when the loop was busy, up to `max_catch_up` missed ticks run back to back (so players stay in
step and receivers' jitter buffers absorb the burst); beyond that the clock skips ahead to the present and
counts `skipped_ticks` (streams then show a timestamp gap, which receivers play as silence). Nothing else in
the media layer sleeps or keeps time. An exception in one tickable is logged and counted; the clock goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from enum import IntEnum
from typing import Protocol

from softswitch.media.stream import Send

__all__ = ["Phase", "Tickable", "Ticker", "due_ticks"]

log = logging.getLogger(__name__)


class Tickable(Protocol):
    """Anything the media clock drives: players' streams, relay sessions with local audio, mixers."""

    def tick(self, *, now: float) -> list[Send]: ...


class Phase(IntEnum):
    """Order within one tick."""

    MIX = 0  #: mixers: pull from sources, push to sinks
    SEND = 1  #: streams: pull from ports, packetise


def due_ticks(
    next_at: float, now: float, interval: float, max_catch_up: int
) -> tuple[list[float], float, int]:
    """Which grid times to tick now, the next grid time, and how many ticks to skip.

    The timer for `next_at` fired at `now` (possibly a little early, by the loop's clock resolution, or
    late). Always tick `next_at`; then catch up on further due ticks, at most `max_catch_up` in total.
    """
    times = [next_at]
    due = next_at + interval
    while due <= now and len(times) < max_catch_up:
        times.append(due)
        due += interval
    skipped = 0
    if due <= now:
        skipped = math.floor((now - due) / interval) + 1
        due += skipped * interval
    return times, due, skipped


class Ticker:
    """The one media clock.

    >>> async def demo():
    ...     ticker = Ticker(write=lambda sends: None)
    ...     ticker.start(); ticker.stop()
    >>> asyncio.run(demo())
    """

    def __init__(
        self,
        write: Callable[[list[Send]], None],
        *,
        interval: float = 0.020,
        max_catch_up: int = 5,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.write = write
        self.interval = interval
        self.max_catch_up = max_catch_up
        self._loop = loop
        self._members: dict[int, tuple[Phase, Tickable]] = {}
        self._order: list[Tickable] | None = []
        self._handle: asyncio.TimerHandle | None = None
        self._next_at = 0.0
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.errors = 0

    def __len__(self) -> int:
        return len(self._members)

    def add(self, obj: Tickable, *, phase: Phase = Phase.SEND) -> None:
        """Tick `obj` from the next tick on (adding twice is harmless)."""
        self._members[id(obj)] = (phase, obj)
        self._order = None

    def remove(self, obj: Tickable) -> None:
        if self._members.pop(id(obj), None) is not None:
            self._order = None

    def __contains__(self, obj: object) -> bool:
        return id(obj) in self._members

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Start ticking on the running loop; the first tick is one interval from now."""
        if self._handle is not None:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._next_at = loop.time() + self.interval
        self._handle = loop.call_at(self._next_at, self._on_time)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_time(self) -> None:
        loop = self._loop
        assert loop is not None
        times, self._next_at, skipped = due_ticks(
            self._next_at, loop.time(), self.interval, self.max_catch_up
        )
        self.late_ticks += len(times) - 1
        if skipped:
            self.skipped_ticks += skipped
            log.warning("- media clock skipped %d ticks (event loop busy)", skipped)
        for t in times:
            self.tick(now=t)
        self._handle = loop.call_at(self._next_at, self._on_time)

    def tick(self, *, now: float) -> None:
        """Run one tick at grid time `now` (the loop calls this; tests may too)."""
        self.ticks += 1
        if self._order is None:
            self._order = [obj for _, obj in sorted(self._members.values(), key=lambda m: m[0])]
        sends: list[Send] = []
        for obj in self._order:
            try:
                sends += obj.tick(now=now)
            except Exception:
                self.errors += 1
                log.exception("x media clock: %r failed to tick", obj)
        if sends:
            self.write(sends)
