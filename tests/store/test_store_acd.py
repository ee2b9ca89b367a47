"""The ACD's logs in the store: the migration, exact round trips, order at equal times, half-open time
windows, a call's earlier history, each agent's state at an instant, and writes through the writer thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from softswitch.store import StoreWriter, current_revision, make_engine, migrate
from softswitch.store.acd import (
    latest_agent_states,
    load_agent_states,
    load_queue_events,
    save_agent_states,
    save_queue_events,
)
from softswitch.store.db import MIGRATIONS_DIR
from softswitch.store.records import AgentStateRecord, QueueEventRecord

T0 = 1_700_000_000.0


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    migrate(engine)
    yield engine
    engine.dispose()


def alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def event(
    at: float, kind: str, call: str | None = "c1", queue: str | None = "sales", **fields: object
) -> QueueEventRecord:
    return QueueEventRecord(at=T0 + at, kind=kind, queue=queue, call=call, **fields)  # type: ignore[arg-type]


def state(at: float, agent: str, old: str, new: str, reason: str = "") -> AgentStateRecord:
    return AgentStateRecord(at=T0 + at, agent=agent, old=old, new=new, reason=reason)


def write(engine: Engine, events: list[QueueEventRecord] = [], states: list[AgentStateRecord] = []) -> None:  # noqa: B006
    with Session(engine) as session, session.begin():
        save_queue_events(session, events)
        save_agent_states(session, states)


# ---------------------------------------------------------------------------------------------------
# the migration


def test_migration_0003_adds_the_tables_and_downgrades_cleanly(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    try:
        alembic(engine, "upgrade", "0002")
        assert not {"queue_events", "agent_states"} & set(inspect(engine).get_table_names())

        migrate(engine)

        assert current_revision(engine) == "0003"
        inspector = inspect(engine)
        columns = {c["name"]: c for c in inspector.get_columns("queue_events")}
        assert list(columns) == [
            "id", "at", "kind", "queue", "call", "agent", "position", "wait", "duration", "detail",
        ]  # fmt: skip
        assert not columns["at"]["nullable"] and columns["queue"]["nullable"]
        assert [c["name"] for c in inspector.get_columns("agent_states")] == [
            "id", "at", "agent", "old", "new", "reason",
        ]  # fmt: skip
        indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("queue_events")}
        assert indexes == {
            "ix_queue_events_at": ["at"],
            "ix_queue_events_queue_at": ["queue", "at"],
            "ix_queue_events_call": ["call"],
        }
        indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("agent_states")}
        assert indexes == {"ix_agent_states_at": ["at"], "ix_agent_states_agent_at": ["agent", "at"]}

        alembic(engine, "downgrade", "0002")
        assert current_revision(engine) == "0002"
        assert not {"queue_events", "agent_states"} & set(inspect(engine).get_table_names())
        assert "cdrs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------------
# round trips and order


def test_records_round_trip_exactly(engine: Engine) -> None:
    events = [
        event(0.0, "enter", position=3),
        event(4.25, "offer", agent="alice", wait=4.25),
        event(24.25, "ring_no_answer", agent="alice", duration=20.0),
        event(30.125, "connect", agent="bob", wait=30.125, duration=1.5),
        event(90.0, "complete_caller", agent="bob", wait=30.125, duration=59.875),
        event(100.0, "wrap_up", agent="bob", duration=10.0),
        event(101.0, "pause", call=None, queue=None, agent="carol", detail="lunch"),
        event(102.0, "overflow", call="c2", detail="billing-en"),
    ]
    states = [
        state(0.0, "alice", "logged_out", "available", "login"),
        state(101.0, "carol", "available", "paused", "lunch"),
    ]
    write(engine, events, states)
    with Session(engine) as session:
        assert load_queue_events(session) == events
        assert load_agent_states(session) == states


def test_equal_times_keep_the_order_they_were_written_in(engine: Engine) -> None:
    same = [event(5.0, kind) for kind in ("enter", "offer", "connect")]
    write(engine, [event(6.0, "complete_agent"), *same[:1]])
    bob = [state(5.0, "bob", "available", "offered"), state(5.0, "bob", "offered", "on_call")]
    write(engine, same[1:], bob)
    with Session(engine) as session:
        assert [e.kind for e in load_queue_events(session)] == ["enter", "offer", "connect", "complete_agent"]
        assert [s.new for s in load_agent_states(session)] == ["offered", "on_call"]


def test_nothing_to_save_writes_nothing(engine: Engine) -> None:
    write(engine, [], [])
    with Session(engine) as session:
        assert load_queue_events(session) == [] and load_agent_states(session) == []
        assert latest_agent_states(session) == {}


# ---------------------------------------------------------------------------------------------------
# time windows


def test_windows_are_half_open_and_filter_by_queue_and_agent(engine: Engine) -> None:
    entries = [(9.0, "a"), (10.0, "a"), (15.0, "b"), (20.0, "a")]
    write(
        engine,
        [event(t, "enter", call=f"c{t:g}", queue=q) for t, q in entries],
        [state(t, agent, "logged_out", "available") for t, agent in [(9.0, "x"), (10.0, "y"), (20.0, "x")]],
    )
    since, until = T0 + 10.0, T0 + 20.0
    with Session(engine) as session:
        assert [e.call for e in load_queue_events(session, since=since, until=until)] == ["c10", "c15"]
        assert [e.call for e in load_queue_events(session, since=since)] == ["c10", "c15", "c20"]
        assert [e.call for e in load_queue_events(session, until=until)] == ["c9", "c10", "c15"]
        assert [e.call for e in load_queue_events(session, since=since, queue="a")] == ["c10", "c20"]
        assert [s.agent for s in load_agent_states(session, since=since, until=until)] == ["y"]
        assert [s.at - T0 for s in load_agent_states(session, agent="x")] == [9.0, 20.0]
        assert load_queue_events(session, since=until, until=since) == []


def test_history_brings_the_earlier_events_of_calls_in_the_window(engine: Engine) -> None:
    write(
        engine,
        [
            event(-50.0, "enter", call="old", queue="lv"),  # finished before the window: not wanted
            event(-10.0, "abandon", call="old", queue="lv"),
            event(-40.0, "enter", call="c1", queue="lv"),  # entered before, overflowed, answered inside
            event(-20.0, "overflow", call="c1", queue="lv", detail="en"),
            event(-20.0, "enter", call="c1", queue="en"),
            event(5.0, "connect", call="c1", queue="en", agent="bob", wait=25.0),
            event(6.0, "enter", call="c2", queue="lv"),
            event(7.0, "pause", call=None, queue=None, agent="bob"),
        ],
    )
    with Session(engine) as session:
        plain = load_queue_events(session, since=T0)
        history = load_queue_events(session, since=T0, with_history=True)
        en_only = load_queue_events(session, since=T0, queue="en", with_history=True)
    assert [(e.call, e.kind) for e in plain] == [("c1", "connect"), ("c2", "enter"), (None, "pause")]
    assert [(e.call, e.kind, e.queue) for e in history] == [
        ("c1", "enter", "lv"),
        ("c1", "overflow", "lv"),
        ("c1", "enter", "en"),
        ("c1", "connect", "en"),
        ("c2", "enter", "lv"),
        (None, "pause", None),
    ]
    # The call's whole history comes along, its first queue's events included.
    assert [(e.kind, e.queue) for e in en_only] == [
        ("enter", "lv"), ("overflow", "lv"), ("enter", "en"), ("connect", "en"),
    ]  # fmt: skip


def test_latest_agent_states_is_each_agents_state_at_an_instant(engine: Engine) -> None:
    write(
        engine,
        states=[
            state(0.0, "alice", "logged_out", "available"),
            state(10.0, "alice", "available", "paused", "lunch"),
            state(10.0, "alice", "paused", "logged_out"),  # same instant: the later row wins
            state(5.0, "bob", "logged_out", "available"),
            state(30.0, "bob", "available", "on_call"),
        ],
    )
    with Session(engine) as session:
        at_10 = latest_agent_states(session, before=T0 + 10.0)
        after = latest_agent_states(session, before=T0 + 10.5)
        last = latest_agent_states(session)
        nothing = latest_agent_states(session, before=T0)
    assert {a: s.new for a, s in at_10.items()} == {"alice": "available", "bob": "available"}
    assert {a: s.new for a, s in after.items()} == {"alice": "logged_out", "bob": "available"}
    assert {a: s.new for a, s in last.items()} == {"alice": "logged_out", "bob": "on_call"}
    assert nothing == {}


# ---------------------------------------------------------------------------------------------------
# through the writer thread


def test_saved_as_writer_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    migrate(url)
    engine = make_engine(url)
    events = [event(float(i), "enter", call=f"c{i}") for i in range(300)]
    states = [state(float(i), "alice", "available", "offered") for i in range(300)]
    try:
        with StoreWriter(engine) as writer:
            for i in range(0, 300, 50):
                chunk_e, chunk_s = events[i : i + 50], states[i : i + 50]
                assert writer.submit(
                    lambda s, e=chunk_e, st=chunk_s: (save_queue_events(s, e), save_agent_states(s, st))
                )
            assert writer.flush(10.0)
        with Session(engine) as session:
            assert load_queue_events(session) == events
            assert load_agent_states(session) == states
    finally:
        engine.dispose()
