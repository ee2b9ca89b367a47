"""The ACD's two logs: queue events (like Asterisk's queue_log) and agent state changes.

Writes are appends in bulk (`save_queue_events`, `save_agent_states`: jobs for the `StoreWriter`, safe to
re-run because the writer rolls a failed group back first). Reads return the plain records in time order,
ties broken by insertion order, over a half-open window `[since, until)` of wall-clock epoch seconds:

* `load_queue_events(..., with_history=True)` also returns the earlier events of every call that has an
  event in the window, so a report starting at midnight knows when a call answered at 00:01 entered;
* `latest_agent_states(before=t)` is each agent's last change before `t`: its state at `t`, which a report
  needs to count time from the start of its window (and the switch needs after a restart).

The store takes plain records (`records.py`) and imports nothing from the ACD.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from softswitch.store.models import AgentStateRow, QueueEventRow
from softswitch.store.records import AgentStateRecord, QueueEventRecord

__all__ = [
    "latest_agent_states",
    "load_agent_states",
    "load_queue_events",
    "save_agent_states",
    "save_queue_events",
]

_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(QueueEventRecord))
_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(AgentStateRecord))


def save_queue_events(session: Session, rows: Sequence[QueueEventRecord]) -> None:
    """Append queue events (one bulk INSERT); keeps their order for events with equal times."""
    if rows:
        session.execute(insert(QueueEventRow), [dataclasses.asdict(row) for row in rows])


def save_agent_states(session: Session, rows: Sequence[AgentStateRecord]) -> None:
    """Append agent state changes (one bulk INSERT)."""
    if rows:
        session.execute(insert(AgentStateRow), [dataclasses.asdict(row) for row in rows])


def _window(query: Select[Any], column: Any, since: float | None, until: float | None) -> Select[Any]:
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


def _event(row: Any) -> QueueEventRecord:
    return QueueEventRecord(**{name: getattr(row, name) for name in _EVENT_FIELDS})


def _state(row: Any) -> AgentStateRecord:
    return AgentStateRecord(**{name: getattr(row, name) for name in _STATE_FIELDS})


def load_queue_events(
    session: Session,
    *,
    since: float | None = None,
    until: float | None = None,
    queue: str | None = None,
    with_history: bool = False,
) -> list[QueueEventRecord]:
    """Queue events with `since <= at < until` (None: unbounded), of one `queue` or all, in order.

    `with_history`: also the events before `since` of every call that has an event in the window (any
    queue: a call that overflowed brings its first queue's events too)."""
    columns = [getattr(QueueEventRow, name) for name in _EVENT_FIELDS]
    query = _window(select(*columns, QueueEventRow.id), QueueEventRow.at, since, until)
    if queue is not None:
        query = query.where(QueueEventRow.queue == queue)
    if with_history and since is not None:
        in_window = _window(select(QueueEventRow.call), QueueEventRow.at, since, until).where(
            QueueEventRow.call.is_not(None)
        )
        if queue is not None:
            in_window = in_window.where(QueueEventRow.queue == queue)
        earlier = select(*columns, QueueEventRow.id).where(
            QueueEventRow.at < since, QueueEventRow.call.in_(in_window.scalar_subquery())
        )
        union = query.union_all(earlier).subquery()
        query = select(*(union.c[name] for name in _EVENT_FIELDS), union.c.id)
        return [_event(row) for row in session.execute(query.order_by(union.c.at, union.c.id))]
    return [_event(row) for row in session.execute(query.order_by(QueueEventRow.at, QueueEventRow.id))]


def load_agent_states(
    session: Session,
    *,
    since: float | None = None,
    until: float | None = None,
    agent: str | None = None,
) -> list[AgentStateRecord]:
    """Agent state changes with `since <= at < until` (None: unbounded), of one `agent` or all, in order."""
    query = _window(select(AgentStateRow), AgentStateRow.at, since, until)
    if agent is not None:
        query = query.where(AgentStateRow.agent == agent)
    return [_state(row) for row in session.scalars(query.order_by(AgentStateRow.at, AgentStateRow.id))]


def latest_agent_states(session: Session, *, before: float | None = None) -> dict[str, AgentStateRecord]:
    """Each agent's last state change with `at < before` (None: the last of all), by agent id."""
    rank = (
        func.row_number()
        .over(partition_by=AgentStateRow.agent, order_by=(AgentStateRow.at.desc(), AgentStateRow.id.desc()))
        .label("rank")
    )
    inner = select(AgentStateRow, rank)
    if before is not None:
        inner = inner.where(AgentStateRow.at < before)
    ranked = inner.subquery()
    query = select(*(ranked.c[name] for name in _STATE_FIELDS)).where(ranked.c.rank == 1)
    return {row.agent: _state(row) for row in session.execute(query.order_by(ranked.c.agent))}
