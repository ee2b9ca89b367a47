"""The store's writer thread: a bounded queue of jobs, run in groups, one commit per group.

"Acknowledged means durable": the switch answers a REGISTER only after its binding is committed. Committing
each job alone would cost one disk sync per job; instead one daemon thread takes every job queued within
`group_window` seconds of the first (up to `max_batch`), runs them in one session and transaction, commits
once, and then reports each job's result to its callback. Under load the group grows, so throughput scales
with latency, not with the number of commits (group commit, as in database write-ahead logs).

    writer = StoreWriter(engine)
    writer.start()
    ok = writer.submit(lambda s: replace_bindings(s, aor, rows),
                       done=lambda result: loop.call_soon_threadsafe(on_saved, aor, result))
    if not ok:
        ...                       # queue full (or closing): answer 500/503 with Retry-After, do not block
    writer.close()                # at shutdown: runs everything submitted, commits, stops the thread

Rules for jobs and callbacks:

* A job is `job(session) -> result`. It must not commit, roll back or close the session, and should return
  plain data (not ORM objects). It may run twice: when any job of a group fails, the group's transaction is
  rolled back and every job of the group is run again alone, in its own transaction, so one bad job does
  not fail its neighbours. Jobs must therefore touch nothing but the session.
* `done(outcome)` gets the job's return value after the commit, or the exception if the job (or its
  commit) failed. It runs **on the writer thread**: the asyncio app must wrap it with
  `loop.call_soon_threadsafe`, and it must be quick (it delays the next group). Exceptions it raises are
  logged and ignored.
* Full queue: `submit` returns False at once and never blocks the event loop; the caller decides (refuse
  the REGISTER with 500 + Retry-After, drop a statistics row and count it). Counted in `stats()["rejected"]`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

__all__ = ["StoreWriter"]

log = logging.getLogger("softswitch.store")

T = TypeVar("T")

_SAMPLES = 4096  # latency samples kept for the percentiles


@dataclass(slots=True)
class _Job:
    run: Callable[[Session], Any]
    done: Callable[[Any], None] | None
    submitted_at: float


class _Stop:
    """Queued by close(): everything queued before it is written, then the thread ends."""


_STOP = _Stop()


class StoreWriter:
    """One daemon thread committing submitted jobs in groups; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_queue: int = 10000,
        group_window: float = 0.002,
        max_batch: int = 500,
        name: str = "softswitch-store-writer",
    ) -> None:
        if max_queue < 1 or max_batch < 1 or group_window < 0:
            raise ValueError("max_queue and max_batch must be >= 1 and group_window >= 0")
        self._engine = engine
        self._group_window = group_window
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.Queue[_Job | _Stop] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stopped = False
        # statistics, guarded by _lock
        self._submitted = 0
        self._completed = 0
        self._failed = 0
        self._rejected = 0
        self._batches = 0
        self._commits = 0
        self._retried_batches = 0
        self._max_batch_seen = 0
        self._latencies: deque[float] = deque(maxlen=_SAMPLES)
        self._commit_times: deque[float] = deque(maxlen=_SAMPLES)

    # ---- the caller's side (any thread; normally the event loop)

    def start(self) -> None:
        """Start the writer thread (idempotent). Jobs submitted before start wait in the queue."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("StoreWriter was closed; make a new one")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def submit(
        self, job: Callable[[Session], T], done: Callable[[T | BaseException], None] | None = None
    ) -> bool:
        """Queue a job; False (at once, without blocking) if the queue is full or the writer is closing."""
        with self._lock:
            if self._closing:
                self._rejected += 1
                return False
            try:
                self._queue.put_nowait(_Job(job, done, time.monotonic()))
            except queue.Full:
                self._rejected += 1
                return False
            self._submitted += 1
            return True

    def flush(self, timeout: float) -> bool:
        """Wait until every job submitted before this call has been written and its callback called.

        True when done, False on timeout (also when the writer was never started).
        """
        with self._changed:
            target = self._submitted
            return self._changed.wait_for(lambda: self._completed >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, write every job already submitted, commit, and stop the thread.

        Starts the thread if it was never started, so nothing submitted is lost. If the jobs cannot be
        written within `timeout` seconds, logs an error and returns; the daemon thread keeps writing until
        the process exits.
        """
        with self._lock:
            if self._stopped:
                return
            self._closing = True
            never_started = self._thread is None
        if never_started:
            self.start()
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error(
                "- store writer: could not queue stop within %.1f s; %d jobs pending", timeout, self.pending
            )
            return
        thread = self._thread
        assert thread is not None
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.error("- store writer: %d jobs still pending after %.1f s", self.pending, timeout)

    @property
    def pending(self) -> int:
        """Jobs submitted but not finished."""
        with self._lock:
            return self._submitted - self._completed

    def stats(self) -> dict[str, float | int]:
        """Counters and latency figures.

        jobs (finished), failed, rejected (queue full or closing), batches (groups taken), commits,
        retried_batches (groups rerun job by job), max_batch, queue_depth, and in milliseconds:
        commit_latency_p50_ms / _p99_ms (submit → committed, what a REGISTER waits) and
        commit_time_p50_ms / _p99_ms (the COMMIT statement alone).
        """
        with self._lock:
            latencies = sorted(self._latencies)
            commit_times = sorted(self._commit_times)
            return {
                "jobs": self._completed,
                "failed": self._failed,
                "rejected": self._rejected,
                "batches": self._batches,
                "commits": self._commits,
                "retried_batches": self._retried_batches,
                "max_batch": self._max_batch_seen,
                "queue_depth": self._queue.qsize(),
                "commit_latency_p50_ms": _percentile(latencies, 0.50) * 1000,
                "commit_latency_p99_ms": _percentile(latencies, 0.99) * 1000,
                "commit_time_p50_ms": _percentile(commit_times, 0.50) * 1000,
                "commit_time_p99_ms": _percentile(commit_times, 0.99) * 1000,
            }

    def __enter__(self) -> StoreWriter:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- the writer thread

    def _run(self) -> None:
        log.debug("- store writer started")
        try:
            while True:
                batch, stop = self._take_batch()
                if batch:
                    try:
                        self._write(batch)
                    except Exception:  # a bug here must not kill the thread and strand every caller
                        log.exception(
                            "x store writer: unexpected error writing a group of %d jobs", len(batch)
                        )
                if stop:
                    break
        finally:
            with self._changed:
                self._stopped = True
                self._changed.notify_all()
            log.debug("- store writer stopped")

    def _take_batch(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if isinstance(first, _Stop):
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._group_window
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if isinstance(item, _Stop):
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, batch: list[_Job]) -> None:
        retried = False
        try:
            outcomes = self._attempt(batch)
            retried = isinstance(outcomes, BaseException) and len(batch) > 1
            if isinstance(outcomes, BaseException):
                if len(batch) > 1:
                    log.warning(
                        "x store writer: group of %d failed (%s); retrying each job alone",
                        len(batch),
                        outcomes,
                    )
                    outcomes = [self._attempt_one(job) for job in batch]
                else:
                    outcomes = [outcomes]
        except Exception as exc:  # a bug in the writer itself: every caller still hears about its job
            log.exception("x store writer: unexpected error writing a group of %d jobs", len(batch))
            outcomes = [exc] * len(batch)
        finished = time.monotonic()
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        with self._lock:
            self._batches += 1
            self._retried_batches += retried
            self._failed += failed
            self._max_batch_seen = max(self._max_batch_seen, len(batch))
            self._latencies.extend(finished - job.submitted_at for job in batch)
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("x store writer: job failed: %r", outcome)
            if job.done is not None:
                try:
                    job.done(outcome)
                except Exception:
                    log.exception("x store writer: completion callback raised")
        with self._changed:
            self._completed += len(batch)
            self._changed.notify_all()

    def _attempt_one(self, job: _Job) -> Any:
        outcome = self._attempt([job])
        return outcome if isinstance(outcome, BaseException) else outcome[0]

    def _attempt(self, batch: list[_Job]) -> list[Any] | BaseException:
        """Run the jobs in one transaction and commit: their results, or the first exception (rolled back)."""
        session = Session(self._engine, expire_on_commit=False)
        try:
            results = [job.run(session) for job in batch]
            started = time.monotonic()
            session.commit()
            elapsed = time.monotonic() - started
            with self._lock:
                self._commits += 1
                self._commit_times.append(elapsed)
            return results
        except Exception as exc:
            try:
                session.rollback()
            except Exception:
                log.exception("x store writer: rollback failed")
            return exc
        finally:
            try:
                session.close()
            except Exception:  # the outcome above stands; a close that fails must not hide it
                log.exception("x store writer: closing the session failed")


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted samples; 0.0 when there are none."""
    if not ordered:
        return 0.0
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
