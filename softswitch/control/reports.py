"""Historical ACD figures from the store: the same `StatsCollector` the live engine uses, fed stored rows.

The switch writes the engine's records to the store as plain rows in wall-clock time (`store_records`
converts them; `app.py` hands the result to the writer). A report reads the rows of a window
`[since, until)` back, turns them into the engine's own records and folds them with `acd.StatsCollector`,
so live (`GET /api/queues`) and historical (`softswitch queues --since`) figures cannot disagree on a
definition. To count from the start of the window the report also reads:

* the earlier events of every call that has an event in the window (when a call answered at 00:01
  entered, and whether it was offered the moment it entered), and
* each agent's last state change before `since` (the state the agent was in when the window opened).

Service-level thresholds come from the configuration (a queue that no longer exists uses the default).
Reports are read-only: they never migrate the database, and a database that is empty or at another
revision is a `ReportError` saying what to do. Calendar days are chosen in a time zone (`day_window`), so
an agent's day can be reported in the agent's own zone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from softswitch.acd import (
    AgentFigures,
    AgentStateChanged,
    AgentStatus,
    QueueEvent,
    QueueEventKind,
    QueueFigures,
    Record,
    StatsCollector,
)
from softswitch.store.acd import latest_agent_states, load_agent_states, load_queue_events
from softswitch.store.records import AgentStateRecord, QueueEventRecord

if TYPE_CHECKING:
    from softswitch.config.schema import Settings

__all__ = [
    "DEFAULT_SERVICE_LEVEL",
    "Report",
    "ReportError",
    "acd_record",
    "build_report",
    "day_window",
    "figures_dict",
    "load_report",
    "parse_time",
    "report_for_settings",
    "store_records",
]

#: The queue schema's default (`queues[].service_level`): the 80/20 convention's 20 seconds.
DEFAULT_SERVICE_LEVEL = 20.0


class ReportError(RuntimeError):
    """The figures cannot be computed (no database yet, an unknown schema, a bad time); says what to do."""


# ====================================================================================================
# records: engine <-> store


def store_records(
    records: Iterable[Record], *, offset: float = 0.0
) -> tuple[list[QueueEventRecord], list[AgentStateRecord]]:
    """The engine's records as store rows, their times moved to wall clock by adding `offset` (use one fixed
    offset for the life of the process, so order and durations survive the conversion)."""
    events: list[QueueEventRecord] = []
    states: list[AgentStateRecord] = []
    for record in records:
        if isinstance(record, QueueEvent):
            events.append(
                QueueEventRecord(
                    at=record.at + offset,
                    kind=record.kind.value,
                    queue=record.queue,
                    call=record.call,
                    agent=record.agent,
                    position=record.position,
                    wait=record.wait,
                    duration=record.duration,
                    detail=record.detail,
                )
            )
        else:
            states.append(
                AgentStateRecord(
                    at=record.at + offset,
                    agent=record.agent,
                    old=record.old.value,
                    new=record.new.value,
                    reason=record.reason,
                )
            )
    return events, states


def acd_record(row: QueueEventRecord | AgentStateRecord) -> Record:
    """A store row back as the engine's record (times stay wall clock). Raises `ReportError` for a kind or
    state this version does not know (a newer switch wrote it)."""
    try:
        if isinstance(row, QueueEventRecord):
            return QueueEvent(
                at=row.at,
                kind=QueueEventKind(row.kind),
                queue=row.queue,
                call=row.call,
                agent=row.agent,
                position=row.position,
                wait=row.wait,
                duration=row.duration,
                detail=row.detail,
            )
        return AgentStateChanged(
            agent=row.agent, old=AgentStatus(row.old), new=AgentStatus(row.new), reason=row.reason, at=row.at
        )
    except ValueError as exc:
        raise ReportError(f"unknown value in the stored ACD log: {exc}") from None


# ====================================================================================================
# figures


@dataclass(frozen=True, slots=True)
class Report:
    """Figures per queue and per agent over `[since, until)` (epoch seconds; `since` None: from the start)."""

    since: float | None
    until: float
    queues: Mapping[str, QueueFigures]
    agents: Mapping[str, AgentFigures]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: {"since", "until", "queues": [{"name", "figures"}], "agents": [{"id", "figures"}]}."""
        return {
            "since": self.since,
            "until": self.until,
            "queues": [{"name": name, "figures": figures_dict(f)} for name, f in self.queues.items()],
            "agents": [{"id": agent, "figures": figures_dict(f)} for agent, f in self.agents.items()],
        }


def figures_dict(figures: QueueFigures | AgentFigures) -> dict[str, Any]:
    """A figures dataclass as plain JSON values (the same shape `GET /api/queues` uses)."""
    out = dataclasses.asdict(figures)
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
        elif isinstance(value, Mapping):
            out[key] = dict(value)
    return out


def _merged(events: Iterable[QueueEventRecord], states: Iterable[AgentStateRecord]) -> Iterable[Record]:
    """Both logs as one time-ordered stream of engine records (each log is already in order)."""
    return heapq.merge(
        (acd_record(row) for row in events), (acd_record(row) for row in states), key=lambda r: r.at
    )


def build_report(
    events: Iterable[QueueEventRecord],
    states: Iterable[AgentStateRecord],
    *,
    since: float | None,
    until: float,
    service_levels: Mapping[str, float] | None = None,
    default_service_level: float = DEFAULT_SERVICE_LEVEL,
    queues: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> Report:
    """Fold stored rows (each list in time order, history before `since` included) into figures.

    `queues` and `agents` are listed first and always (zero figures when idle), in that order; queues and
    agents found only in the rows (removed from the configuration since) follow, sorted."""
    collector = StatsCollector(
        service_levels=service_levels, default_service_level=default_service_level, since=since, until=until
    )
    collector.extend(_merged(events, states))
    queue_names = list(dict.fromkeys([*queues, *collector.queue_names()]))
    agent_ids = list(dict.fromkeys([*agents, *collector.agents()]))
    return Report(
        since=since,
        until=until,
        queues={name: collector.queue(name, now=until) for name in queue_names},
        agents={agent: collector.agent(agent, now=until) for agent in agent_ids},
    )


def load_report(
    session: Session,
    *,
    since: float | None,
    until: float,
    service_levels: Mapping[str, float] | None = None,
    default_service_level: float = DEFAULT_SERVICE_LEVEL,
    queues: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> Report:
    """Read the window (with the history it needs) from the store and build the report."""
    if since is not None and since >= until:
        raise ReportError("the report window is empty: since must be before until")
    events = load_queue_events(session, since=since, until=until, with_history=True)
    prior = latest_agent_states(session, before=since) if since is not None else {}
    states = sorted(prior.values(), key=lambda row: row.at) + load_agent_states(
        session, since=since, until=until
    )
    return build_report(
        events,
        states,
        since=since,
        until=until,
        service_levels=service_levels,
        default_service_level=default_service_level,
        queues=queues,
        agents=agents,
    )


def report_for_settings(settings: Settings, *, since: float | None, until: float) -> Report:
    """The report for a configuration: its database, its queues' service levels, its queues and agents."""
    from sqlalchemy.engine import make_url

    from softswitch.store.db import SchemaError, check_schema, make_engine

    url = make_url(settings.server.database)
    database = url.database or ""
    on_disk = database not in ("", ":memory:") and not database.startswith("file:")
    if url.get_backend_name() == "sqlite" and on_disk and not Path(database).expanduser().exists():
        raise ReportError(f"no statistics yet: {database} does not exist (the switch has not run)")
    engine = make_engine(settings.server.database)
    try:
        try:
            check_schema(engine)
        except SchemaError as exc:
            raise ReportError(f"no statistics in {settings.server.database}: {exc}") from None
        with Session(engine) as session:
            return load_report(
                session,
                since=since,
                until=until,
                service_levels={queue.name: float(queue.service_level) for queue in settings.queues},
                queues=[queue.name for queue in settings.queues],
                agents=[agent.id for agent in settings.agents],
            )
    finally:
        engine.dispose()


# ====================================================================================================
# time windows


def day_window(now: float, tz: dt.tzinfo | None = None, *, days_back: int = 0) -> tuple[float, float]:
    """[midnight, next midnight) of the calendar day containing `now` in `tz` (None: the local zone),
    `days_back` days earlier; 23 or 25 hours long on the days the clocks change."""
    local = dt.datetime.fromtimestamp(now, tz).astimezone(tz)
    day = local.date() - dt.timedelta(days=days_back)
    zone = local.tzinfo
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    if tz is None:  # the local zone: let the platform pick the offset that applies at each midnight
        start, end = start.replace(tzinfo=None).astimezone(), end.replace(tzinfo=None).astimezone()
    return start.timestamp(), end.timestamp()


def parse_time(text: str, tz: dt.tzinfo | None = None) -> float:
    """An ISO 8601 date or date-time as epoch seconds; without an offset it is in `tz` (None: local)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(
            f"not an ISO 8601 time: {text!r} (for example 2026-11-24 or 2026-11-24T08:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz) if tz is not None else value.astimezone()
    return value.timestamp()
