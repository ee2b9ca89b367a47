"""The group-committing writer thread: few commits for many jobs, every callback called, failures isolated,
nothing submitted lost at close, and a full queue refused without blocking."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from softswitch.store import StoreWriter, make_engine, migrate
from softswitch.store.models import Meta

WAIT = 10.0  # generous upper bound for waits on events; tests never sleep


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    migrate(engine)
    yield engine
    engine.dispose()


class Commits:
    """Counts COMMITs on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, _connection: Any) -> None:
        self.count += 1


def insert(key: str) -> Callable[[Session], str]:
    def job(session: Session) -> str:
        session.add(Meta(key=key, value="v"))
        return key

    return job


def fail(session: Session) -> str:
    raise ValueError("bad job")


def rows(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Meta.key).where(Meta.key.like("k%"))))


def test_jobs_queued_together_are_committed_together(engine: Engine) -> None:
    commits = Commits(engine)
    writer = StoreWriter(engine)
    outcomes: list[object] = []
    for i in range(200):
        assert writer.submit(insert(f"k{i}"), done=outcomes.append)
    writer.start()
    assert writer.flush(WAIT)

    assert outcomes == [f"k{i}" for i in range(200)]  # every callback, in submission order, after commit
    assert commits.count == 1
    stats = writer.stats()
    assert (stats["jobs"], stats["batches"], stats["max_batch"], stats["failed"]) == (200, 1, 200, 0)
    assert rows(engine) == {f"k{i}" for i in range(200)}
    writer.close()


def test_jobs_arriving_while_a_group_is_written_form_the_next_group(engine: Engine) -> None:
    started, release = threading.Event(), threading.Event()

    def blocker(session: Session) -> str:
        started.set()
        assert release.wait(WAIT)
        return "blocker"

    writer = StoreWriter(engine)
    writer.start()
    done: list[object] = []
    writer.submit(blocker, done=done.append)
    assert started.wait(WAIT)
    for i in range(100):
        writer.submit(insert(f"k{i}"), done=done.append)
    release.set()
    assert writer.flush(WAIT)

    assert done == ["blocker", *(f"k{i}" for i in range(100))]
    assert writer.stats()["batches"] == 2
    assert writer.stats()["max_batch"] == 100
    writer.close()


def test_max_batch_caps_a_group(engine: Engine) -> None:
    writer = StoreWriter(engine, max_batch=30)
    for i in range(100):
        writer.submit(insert(f"k{i}"))
    writer.start()
    assert writer.flush(WAIT)
    assert writer.stats()["batches"] == 4 and writer.stats()["max_batch"] == 30
    writer.close()


def test_a_failing_job_does_not_fail_its_neighbours(engine: Engine) -> None:
    writer = StoreWriter(engine)
    outcomes: dict[str, object] = {}

    def record(name: str) -> Callable[[object], None]:
        return lambda outcome: outcomes.__setitem__(name, outcome)

    for i in range(10):
        writer.submit(insert(f"k{i}"), done=record(f"k{i}"))
    writer.submit(fail, done=record("bad"))
    for i in range(10, 20):
        writer.submit(insert(f"k{i}"), done=record(f"k{i}"))
    writer.start()
    assert writer.flush(WAIT)

    assert isinstance(outcomes.pop("bad"), ValueError)
    assert outcomes == {f"k{i}": f"k{i}" for i in range(20)}
    assert rows(engine) == {f"k{i}" for i in range(20)}
    stats = writer.stats()
    assert (stats["failed"], stats["retried_batches"], stats["jobs"]) == (1, 1, 21)
    writer.close()


def test_a_failure_at_commit_time_is_pinned_on_the_right_job(engine: Engine) -> None:
    """Two inserts of the same key only fail when flushed: the retry tells which one was at fault."""
    writer = StoreWriter(engine)
    outcomes: list[object] = []
    writer.submit(insert("k-dup"), done=outcomes.append)
    writer.submit(insert("k-dup"), done=outcomes.append)
    writer.submit(insert("k-other"), done=outcomes.append)
    writer.start()
    assert writer.flush(WAIT)

    assert outcomes[0] == "k-dup" and outcomes[2] == "k-other"
    assert isinstance(outcomes[1], Exception) and "UNIQUE" in str(outcomes[1])
    assert rows(engine) == {"k-dup", "k-other"}
    writer.close()


def test_a_raising_callback_does_not_stop_the_writer(engine: Engine) -> None:
    writer = StoreWriter(engine)
    writer.start()
    after: list[object] = []

    def explode(_outcome: object) -> None:
        raise RuntimeError("callback bug")

    writer.submit(insert("k1"), done=explode)
    writer.submit(insert("k2"), done=after.append)
    assert writer.flush(WAIT)
    assert after == ["k2"]
    writer.close()


def test_close_drains_everything_submitted(engine: Engine) -> None:
    writer = StoreWriter(engine, group_window=0.0)
    done = threading.Semaphore(0)
    for i in range(1000):
        writer.submit(insert(f"k{i}"), done=lambda _o: done.release())
    writer.start()
    writer.close()

    assert rows(engine) == {f"k{i}" for i in range(1000)}
    assert all(done.acquire(timeout=0) for _ in range(1000))
    assert writer.pending == 0
    assert not writer.submit(insert("late"))  # closed: refused, not queued
    with pytest.raises(RuntimeError):
        writer.start()
    writer.close()  # a second close is harmless


def test_close_without_start_still_writes(engine: Engine) -> None:
    writer = StoreWriter(engine)
    writer.submit(insert("k1"))
    writer.close()
    assert rows(engine) == {"k1"}


def test_submit_returns_false_when_the_queue_is_full(engine: Engine) -> None:
    writer = StoreWriter(engine, max_queue=5)
    assert all(writer.submit(insert(f"k{i}")) for i in range(5))
    assert writer.submit(insert("k5")) is False
    assert writer.stats()["rejected"] == 1
    assert writer.stats()["queue_depth"] == 5
    writer.close()
    assert rows(engine) == {f"k{i}" for i in range(5)}


def test_flush_times_out_when_the_writer_is_not_running(engine: Engine) -> None:
    writer = StoreWriter(engine)
    assert writer.flush(0.0)  # nothing submitted: trivially flushed
    writer.submit(insert("k1"))
    assert not writer.flush(0.01)
    writer.close()
    assert writer.flush(0.0)


def test_many_jobs_from_many_threads(tmp_path: Path) -> None:
    """Benchmark-like: a real file, four submitting threads. Prints figures; asserts only correctness."""
    engine = make_engine(f"sqlite:///{tmp_path}/bench.db")
    migrate(engine)
    commits = Commits(engine)
    writer = StoreWriter(engine)
    writer.start()
    completed = threading.Semaphore(0)
    per_thread = 1000

    def producer(prefix: str) -> None:
        for i in range(per_thread):
            while not writer.submit(insert(f"k{prefix}-{i}"), done=lambda _o: completed.release()):
                writer.flush(WAIT)  # queue full: wait for room, as a caller may choose to

    threads = [threading.Thread(target=producer, args=(str(n),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 6)
    assert writer.flush(WAIT * 6)
    writer.close()

    assert all(completed.acquire(timeout=0) for _ in range(4 * per_thread))
    assert len(rows(engine)) == 4 * per_thread
    stats = writer.stats()
    assert stats["jobs"] == 4 * per_thread and stats["failed"] == 0
    print(
        f"\nstore writer: {stats['jobs']} jobs in {stats['batches']} groups ({commits.count} commits), "
        + ", ".join(
            f"{k}={stats[k]:.2f}"
            for k in ("commit_latency_p50_ms", "commit_latency_p99_ms", "commit_time_p50_ms")
        )
    )
    engine.dispose()


def test_a_session_that_cannot_even_be_opened_still_answers_every_job(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import softswitch.store.writer as writer_module

    def broken_session(*_args: Any, **_kwargs: Any) -> Session:
        raise RuntimeError("no session today")

    monkeypatch.setattr(writer_module, "Session", broken_session)
    writer = StoreWriter(engine)
    outcomes: list[object] = []
    answered = threading.Event()

    def done(outcome: object) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 2:
            answered.set()

    writer.start()
    try:
        assert writer.submit(insert("k-a"), done) and writer.submit(insert("k-b"), done)
        assert answered.wait(WAIT)
        assert writer.flush(WAIT)
    finally:
        writer.close(WAIT)
    assert len(outcomes) == 2 and all(isinstance(o, RuntimeError) for o in outcomes)
    assert writer.stats()["failed"] == 2
