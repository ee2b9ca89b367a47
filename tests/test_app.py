"""App bookkeeping that needs no sockets: the hand-off between the binding writes and the other store work."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from softswitch.app import App
from softswitch.config import load_settings

CONFIG = Path(__file__).resolve().parents[1] / "config" / "softswitch.yaml"


class _Endpoint:
    def __init__(self) -> None:
        self.persisted_tokens: list[tuple[int, bool]] = []

    def persisted(self, token: int, *, ok: bool, now: float) -> None:
        self.persisted_tokens.append((token, ok))


class _Transport:
    def __init__(self) -> None:
        self.pumps = 0

    def pump(self) -> None:
        self.pumps += 1


class _Writer:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def submit(self, job: Any, done: Any) -> bool:
        self.jobs.append(job)
        return True


def test_a_binding_write_finishing_keeps_queue_events_waiting_for_their_flush() -> None:
    async def scenario() -> None:
        app = App(load_settings(CONFIG), CONFIG)
        app.loop = asyncio.get_running_loop()
        endpoint, transport, writer = _Endpoint(), _Transport(), _Writer()
        app.endpoint, app.transport, app.writer = endpoint, transport, writer  # type: ignore[assignment]
        timer = app.loop.call_later(3600, lambda: None)
        app._reconcile_timer = timer
        record = object()
        app._acd_records.append(record)
        app._acd_flush = app.loop.call_soon(lambda: None)
        app._binding_in_flight = True

        app._bindings_written([7, 8], True)  # a binding commit lands before the queue events are flushed

        assert endpoint.persisted_tokens == [(7, True), (8, True)] and transport.pumps == 1
        assert not app._binding_in_flight
        assert app._acd_records == [record]  # still there for the flush already scheduled
        assert app._acd_flush is not None
        assert app._reconcile_timer is timer  # so a shutdown can still cancel it
        timer.cancel()

    asyncio.run(scenario())
