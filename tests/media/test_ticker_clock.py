from __future__ import annotations

import asyncio

import pytest

from softswitch.media.stream import Send
from softswitch.media.ticker import Phase, Ticker, due_ticks


def test_due_ticks_on_time() -> None:
    assert due_ticks(1.0, 1.0, 0.02, 5) == ([1.0], pytest.approx(1.02), 0)
    times, _nxt, skipped = due_ticks(1.0, 0.9999999, 0.02, 5)  # fired a hair early: still one tick
    assert times == [1.0] and skipped == 0


def test_due_ticks_catches_up_then_skips() -> None:
    times, nxt, skipped = due_ticks(1.0, 1.061, 0.02, 5)  # 3 ticks late
    assert times == pytest.approx([1.0, 1.02, 1.04, 1.06]) and skipped == 0
    assert nxt == pytest.approx(1.08)
    times, nxt, skipped = due_ticks(1.0, 1.5, 0.02, 5)  # the loop stalled for half a second
    assert len(times) == 5 and skipped in (20, 21)
    assert nxt == pytest.approx(1.0 + (len(times) + skipped) * 0.02)  # still on the grid
    assert 1.5 - 1e-9 <= nxt <= 1.52 + 1e-9  # and not in the past


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, float]], *, fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    def tick(self, *, now: float) -> list[Send]:
        self.log.append((self.name, now))
        if self.fail:
            raise RuntimeError("broken port")
        return [Send(1, self.name.encode(), ("127.0.0.1", 9))]


def test_phases_order_each_tick_and_a_failing_member_does_not_stop_the_clock() -> None:
    log: list[tuple[str, float]] = []
    written: list[list[Send]] = []
    ticker = Ticker(written.append)
    ticker.add(Recorder("stream", log), phase=Phase.SEND)
    ticker.add(Recorder("broken", log, fail=True), phase=Phase.SEND)
    ticker.add(Recorder("mixer", log), phase=Phase.MIX)
    ticker.tick(now=5.0)
    assert [name for name, _ in log] == ["mixer", "stream", "broken"]
    assert ticker.errors == 1
    assert [s.data for s in written[0]] == [b"mixer", b"stream"]
    assert len(ticker) == 3


def test_ticks_land_on_an_absolute_20ms_grid() -> None:
    async def main() -> None:
        log: list[tuple[str, float]] = []
        done = asyncio.Event()

        class Counter(Recorder):
            def tick(self, *, now: float) -> list[Send]:
                out = super().tick(now=now)
                if len(self.log) >= 15:
                    done.set()
                return out

        counter = Counter("c", log)
        ticker = Ticker(lambda sends: None)
        ticker.add(counter)
        ticker.start()
        ticker.start()  # idempotent
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            ticker.stop()
        assert not ticker.running
        times = [t for _, t in log]
        grid = [(t - times[0]) / 0.02 for t in times]
        # grid times: no drift, ever; a tick skipped because a busy machine stalled the loop for more than
        # 100 ms leaves a hole in the grid but never moves it
        assert grid == pytest.approx([round(g) for g in grid], abs=1e-6)
        assert round(grid[-1]) == len(times) - 1 + ticker.skipped_ticks
        ticker.remove(counter)
        assert counter not in ticker and len(ticker) == 0

    asyncio.run(main())
