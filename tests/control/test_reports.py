"""Historical figures: the engine's records, stored as wall-clock rows and read back by `reports`, give
exactly the figures of the engine's live snapshot; a window in the middle of the day, read with only the
history it needs, gives what the whole record stream says about that window."""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import random
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from softswitch.acd import (
    AcdEngine,
    AgentConfig,
    AgentStateChanged,
    AgentStatus,
    ConnectCall,
    OfferCall,
    OverflowRule,
    QueueConfig,
    QueueEvent,
    QueueEventKind,
    Record,
)
from softswitch.control.reports import (
    ReportError,
    acd_record,
    build_report,
    day_window,
    figures_dict,
    load_report,
    parse_time,
    store_records,
)
from softswitch.store import make_engine, migrate
from softswitch.store.acd import load_queue_events, save_agent_states, save_queue_events
from softswitch.store.records import AgentStateRecord, QueueEventRecord

#: Wall clock = engine clock + OFFSET. Engine times are multiples of 1/1024 s, which this offset leaves
#: exact in a float, so the figures must match to the last bit, not just approximately.
OFFSET = 1_700_000_000.0
TICK = 1 / 1024
HOURS = 3.0

QUEUES = [
    QueueConfig(
        "lv", skills={"latvian": 5}, ring_timeout=15, wrap_up=8, service_level=20, max_missed=2,
        overflow=OverflowRule(after=90, to="en"), max_wait=400,
    ),
    QueueConfig(
        "en", skills={"english": 5}, strategy="round_robin", wrap_up=5, service_level=30, exit_key="0",
        exit_to="1900",
    ),
]  # fmt: skip
AGENTS = [
    AgentConfig("alice", {"latvian": 9, "english": 6}),
    AgentConfig("bob", {"latvian": 6}),
    AgentConfig("carol", {"english": 9}),
    AgentConfig("dave", {"english": 5, "latvian": 5}),
]
SERVICE_LEVELS = {q.name: q.service_level for q in QUEUES}


def quantize(t: float) -> float:
    return round(t / TICK) * TICK


def drive(seed: int) -> tuple[AcdEngine, list[Record], float]:
    """A few hours of a small contact centre: arrivals, answers, misses, rejections, hang-ups from either
    side, impatient callers, the exit key, pauses and resumes; every time on the 1/1024 s grid."""
    rng = random.Random(seed)
    engine = AcdEngine(QUEUES, AGENTS)
    world: list[tuple[float, int, str, str, str]] = []
    seq = 0
    records: list[Record] = []
    connected: set[str] = set()
    gone: set[str] = set()

    def at(t: float, kind: str, subject: str, other: str = "") -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(world, (quantize(t), seq, kind, subject, other))

    for agent in AGENTS:
        engine.agent_login(agent.id, now=0.0)
        at(rng.uniform(600, 3600), "pause", agent.id)
    for queue in QUEUES:
        at(rng.expovariate(45 / 3600), "arrive", queue.name)
    end = HOURS * 3600
    count = 0
    while True:
        deadline = engine.next_deadline()
        next_world = world[0][0] if world else float("inf")
        now = min(next_world, deadline if deadline is not None else float("inf"))
        if now > end:
            break
        if deadline is not None and deadline <= next_world:
            engine.handle_timer(now=deadline)
        else:
            _, _, kind, subject, other = heapq.heappop(world)
            if kind == "arrive":
                count += 1
                call = f"{subject}-{count}"
                engine.call_arrived(call, subject, now=now)
                at(now + rng.expovariate(45 / 3600), "arrive", subject)
                at(now + rng.expovariate(1 / 150), "abandon", call)
                if subject == "en" and rng.random() < 0.1:
                    at(now + rng.uniform(5, 60), "exit", call)
            elif kind == "abandon" and subject not in connected and subject not in gone:
                engine.caller_abandoned(subject, now=now)
                gone.add(subject)
            elif kind == "exit" and subject not in connected and subject not in gone:
                if engine.dtmf(subject, "0", now=now):
                    gone.add(subject)
            elif kind == "answer":
                engine.offer_answered(subject, other, now=now)
            elif kind == "reject":
                engine.offer_failed(subject, other, reason="rejected", now=now)
            elif kind == "hang_up" and subject in connected:
                engine.call_ended(subject, by=other, now=now)
                connected.discard(subject)
                gone.add(subject)
            elif kind == "pause":
                engine.agent_pause(subject, rng.choice(["lunch", "training"]), now=now)
                at(now + rng.uniform(120, 900), "resume", subject)
            elif kind == "resume":
                engine.agent_resume(subject, now=now)
                at(now + rng.uniform(900, 3600), "pause", subject)
        for action in engine.actions():
            if isinstance(action, OfferCall):
                luck = rng.random()
                if luck < 0.75:
                    at(now + rng.uniform(0, 12), "answer", action.call, action.agent)
                elif luck < 0.85:
                    at(now + rng.uniform(1, 4), "reject", action.call, action.agent)
                # else: nobody answers and the ring timeout fires
            elif isinstance(action, ConnectCall):
                connected.add(action.call)
                at(now + rng.expovariate(1 / 180), "hang_up", action.call, rng.choice(["agent", "caller"]))
        records.extend(engine.records())
    return engine, records, end


@pytest.fixture
def store() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    migrate(engine)
    yield engine
    engine.dispose()


def save(store: Engine, records: list[Record]) -> None:
    events, states = store_records(records, offset=OFFSET)
    with Session(store) as session, session.begin():
        save_queue_events(session, events)
        save_agent_states(session, states)


def plain(figures: Any) -> dict[str, Any]:
    out = dataclasses.asdict(figures)
    out["paused_by_reason"] = dict(out.get("paused_by_reason", {}))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stored_records_give_the_live_snapshots_figures(store: Engine, seed: int) -> None:
    engine, records, end = drive(seed)
    snapshot = engine.snapshot(now=end)
    kinds = {r.kind for r in records if isinstance(r, QueueEvent)}
    assert {
        QueueEventKind.CONNECT, QueueEventKind.ABANDON, QueueEventKind.RING_NO_ANSWER,
        QueueEventKind.OFFER_REJECTED, QueueEventKind.OVERFLOW, QueueEventKind.PAUSE,
        QueueEventKind.COMPLETE_AGENT, QueueEventKind.COMPLETE_CALLER, QueueEventKind.WRAP_UP,
    } <= kinds  # fmt: skip
    save(store, records)

    with Session(store) as session:
        report = load_report(
            session, since=None, until=end + OFFSET, service_levels=SERVICE_LEVELS,
            queues=[q.name for q in QUEUES], agents=[a.id for a in AGENTS],
        )  # fmt: skip

    assert list(report.queues) == ["lv", "en"]
    for name, live in snapshot.queues.items():
        assert report.queues[name] == live.figures
        assert live.figures.answered > 10
    assert list(report.agents) == [a.id for a in AGENTS]
    for agent_id, live_agent in snapshot.agents.items():
        assert plain(report.agents[agent_id]) == plain(live_agent.figures)
        assert live_agent.figures.calls_handled > 0 and live_agent.figures.paused_time > 0


def test_a_window_reads_only_what_it_needs_and_still_counts_right(store: Engine) -> None:
    _engine, records, _end = drive(4)
    save(store, records)
    events, states = store_records(records, offset=OFFSET)
    since, until = OFFSET + 3600.0, OFFSET + 7200.0

    # The reference: every row written before `until`, folded with the window's bounds.
    everything = build_report(
        [e for e in events if e.at < until],
        sorted((s for s in states if s.at < until), key=lambda s: s.at),
        since=since,
        until=until,
        service_levels=SERVICE_LEVELS,
    )
    with Session(store) as session:
        windowed = load_report(session, since=since, until=until, service_levels=SERVICE_LEVELS)
        in_window = load_queue_events(session, since=since, until=until)
        with_history = load_queue_events(session, since=since, until=until, with_history=True)

    assert len(in_window) < len(with_history) < len(events)  # calls straddling `since` brought history
    assert windowed.queues == everything.queues
    assert sum(q.waiting for q in windowed.queues.values()) > 0  # calls still waiting when the window shut
    assert {a: plain(f) for a, f in windowed.agents.items()} == {
        a: plain(f) for a, f in everything.agents.items()
    }
    # Agents logged in before the window opened have their available time counted from `since`.
    assert all(f.logged_in_time > 0 for f in windowed.agents.values())
    assert sum(f.logged_in_time for f in windowed.agents.values()) <= 3600.0 * len(AGENTS) + 1e-6
    assert windowed.queues["lv"].offered < everything_offered(events, "lv")


def test_calls_straddling_the_start_of_the_window_are_judged_on_their_whole_stay(store: Engine) -> None:
    since = OFFSET + 1000.0
    rows = [
        # Offered the moment it entered, answered just after the window opened: it did not wait.
        QueueEventRecord(since - 3, "enter", "lv", "quick", position=1),
        QueueEventRecord(since - 3, "offer", "lv", "quick", "alice", wait=0.0),
        QueueEventRecord(since + 2, "connect", "lv", "quick", "alice", wait=5.0, duration=5.0),
        # Entered before the window and still waiting when it shut.
        QueueEventRecord(since - 50, "enter", "lv", "slow", position=2),
        QueueEventRecord(since + 10, "offer", "lv", "slow", "bob", wait=60.0),
        # Finished before the window: not counted, not read.
        QueueEventRecord(since - 900, "enter", "lv", "old", position=1),
        QueueEventRecord(since - 800, "abandon", "lv", "old", position=1, wait=100.0),
    ]
    with Session(store) as session, session.begin():
        save_queue_events(session, rows)
    with Session(store) as session:
        report = load_report(session, since=since, until=since + 100)
    lv = report.queues["lv"]
    assert (lv.offered, lv.answered, lv.abandoned) == (0, 1, 0)  # both entered before the window
    assert lv.p_wait == 0.0 and lv.service_level == 1.0 and lv.asa == 5.0
    assert (lv.waiting, lv.longest_waiting) == (1, 150.0)


def everything_offered(events: list[QueueEventRecord], queue: str) -> int:
    return sum(1 for e in events if e.kind == "enter" and e.queue == queue)


def test_configured_queues_and_agents_appear_even_when_idle() -> None:
    report = build_report(
        [QueueEventRecord(OFFSET + 5, "enter", "retired", "c1")],
        [AgentStateRecord(OFFSET, "zed", "logged_out", "available")],
        since=OFFSET,
        until=OFFSET + 60,
        queues=["sales"],
        agents=["alice"],
    )
    assert list(report.queues) == ["sales", "retired"]
    assert list(report.agents) == ["alice", "zed"]
    assert report.queues["sales"].offered == 0 and report.queues["sales"].service_level is None
    assert report.queues["retired"].waiting == 1 and report.queues["retired"].longest_waiting == 55
    assert report.agents["zed"].available_time == 60
    data = report.as_dict()
    assert data["queues"][0] == {"name": "sales", "figures": figures_dict(report.queues["sales"])}
    assert data["agents"][1]["figures"]["available_time"] == 60
    assert (data["since"], data["until"]) == (OFFSET, OFFSET + 60)


def test_records_convert_both_ways() -> None:
    event = QueueEvent(12.5, QueueEventKind.ABANDON, "lv", "c9", None, 3, 40.0, None, "")
    change = AgentStateChanged("bob", AgentStatus.AVAILABLE, AgentStatus.PAUSED, "lunch", 13.0)
    events, states = store_records([event, change], offset=100.0)
    assert events == [QueueEventRecord(112.5, "abandon", "lv", "c9", None, 3, 40.0, None, "")]
    assert states == [AgentStateRecord(113.0, "bob", "available", "paused", "lunch")]
    assert acd_record(events[0]) == dataclasses.replace(event, at=112.5)
    assert acd_record(states[0]) == dataclasses.replace(change, at=113.0)
    with pytest.raises(ReportError, match="unknown value"):
        acd_record(QueueEventRecord(1.0, "teleported"))


def test_an_empty_window_is_refused(store: Engine) -> None:
    with Session(store) as session, pytest.raises(ReportError, match="empty"):
        load_report(session, since=OFFSET + 10, until=OFFSET + 10)


def test_day_window_follows_the_zone_including_clock_changes() -> None:
    riga = zoneinfo.ZoneInfo("Europe/Riga")
    noon = dt.datetime(2026, 3, 29, 12, 0, tzinfo=riga).timestamp()  # clocks went forward at 03:00
    start, end = day_window(noon, riga)
    assert start == dt.datetime(2026, 3, 29, tzinfo=riga).timestamp()
    assert end - start == 23 * 3600
    start, end = day_window(noon, riga, days_back=1)
    assert end - start == 24 * 3600 and end == dt.datetime(2026, 3, 29, tzinfo=riga).timestamp()
    utc_start, _ = day_window(noon, dt.UTC)
    assert utc_start == dt.datetime(2026, 3, 29, tzinfo=dt.UTC).timestamp()
    local_start, local_end = day_window(noon)
    assert local_start <= noon < local_end


def test_parse_time() -> None:
    riga = zoneinfo.ZoneInfo("Europe/Riga")
    assert parse_time("2026-11-24", riga) == dt.datetime(2026, 11, 24, tzinfo=riga).timestamp()
    half_past_eight = dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC).timestamp()
    assert parse_time("2026-11-24T08:30:00+00:00") == half_past_eight
    assert parse_time(" 2026-11-24 08:30 ", dt.UTC) == half_past_eight
    with pytest.raises(ReportError, match="ISO 8601"):
        parse_time("yesterday")
