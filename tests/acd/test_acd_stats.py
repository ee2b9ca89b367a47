"""Figures from the record stream: service level, ASA, AHT, abandonment, p_wait, occupancy, windows."""

from __future__ import annotations

import pytest
from acd_testkit import engine_with, run_until

from softswitch.acd import AgentConfig, AgentStatus, QueueConfig, StatsCollector
from softswitch.acd.actions import AgentStateChanged, QueueEvent, QueueEventKind


def _day():
    """Four calls on one agent: answered at 0 s and 30 s of wait, one abandoned, one timed out."""
    engine = engine_with(
        [QueueConfig("q", wrap_up=10, service_level=20, max_wait=100)], [AgentConfig("a")], login=[]
    )
    engine.agent_login("a", now=0.0)
    engine.call_arrived("c1", "q", now=0.0)  # answered at once, talk 60
    engine.offer_answered("c1", "a", now=0.0)
    engine.call_arrived("c2", "q", now=40.0)  # waits until 70 + wrap 10 = 80 -> 40 s
    engine.call_arrived("c3", "q", now=45.0)  # abandons at 75
    engine.call_ended("c1", by="caller", now=60.0)
    engine.caller_abandoned("c3", now=75.0)
    run_until(engine, 70.0)
    engine.offer_answered("c2", "a", now=70.0)  # wait 30
    engine.call_arrived("c4", "q", now=80.0)  # times out at 180
    engine.call_ended("c2", by="agent", now=170.0)  # talk 100
    run_until(engine, 200.0)
    return engine


def test_queue_figures_from_a_scripted_day():
    engine = _day()
    figures = engine.snapshot(now=200.0).queues["q"].figures
    assert (figures.offered, figures.answered, figures.abandoned, figures.timed_out) == (4, 2, 1, 1)
    assert figures.service_level == pytest.approx(1 / 4)  # c1 within 20 s; c2 at 30 s is not
    assert figures.asa == pytest.approx(15.0)
    assert figures.aht == pytest.approx((60 + 10 + 100 + 10) / 2)
    assert figures.avg_talk == pytest.approx(80.0)
    assert figures.abandonment_rate == pytest.approx(1 / 4)
    assert figures.p_wait == pytest.approx(3 / 4)  # only c1 was offered on arrival
    assert figures.longest_wait == pytest.approx(100.0)
    assert figures.waiting == 0


def test_agent_figures_from_a_scripted_day():
    engine = _day()
    figures = engine.snapshot(now=200.0).agents["a"].figures
    assert figures.calls_handled == 2
    assert figures.talk_time == pytest.approx(160.0)
    assert figures.wrap_up_time == pytest.approx(20.0)
    assert figures.logged_in_time == pytest.approx(200.0)
    assert figures.busy_time == pytest.approx(180.0)  # on call 0-60, wrap 60-70, on call 70-170, wrap 170-180
    assert figures.available_time == pytest.approx(20.0)
    assert figures.occupancy == pytest.approx(0.9)


def test_the_same_figures_from_the_stored_records_and_a_window():
    engine = _day()
    records = engine.records()
    report = StatsCollector(service_levels={"q": 20})
    report.extend(records)
    assert report.queue("q", now=200.0) == engine.snapshot(now=200.0).queues["q"].figures
    assert report.agent("a", now=200.0) == engine.snapshot(now=200.0).agents["a"].figures
    window = StatsCollector(service_levels={"q": 20}, since=50.0, until=150.0)
    window.extend(records)
    figures = window.queue("q")
    assert (figures.offered, figures.answered, figures.abandoned, figures.timed_out) == (1, 1, 1, 0)
    agent = window.agent("a")
    assert agent.logged_in_time == pytest.approx(100.0)  # clipped to the window
    assert (agent.calls_handled, agent.talk_time) == (1, 60.0)  # c1 ends at 60 (inside), c2 at 170


def test_live_waiting_and_longest_wait():
    stats = StatsCollector()
    stats.add(QueueEvent(10.0, QueueEventKind.ENTER, "q", "c1"))
    stats.add(QueueEvent(15.0, QueueEventKind.ENTER, "q", "c2"))
    stats.add(QueueEvent(16.0, QueueEventKind.ABANDON, "q", "c2", wait=1.0))
    figures = stats.queue("q", now=40.0)
    assert figures.waiting == 1 and figures.longest_waiting == pytest.approx(30.0)


def test_pause_time_by_reason_and_missed_offers():
    stats = StatsCollector()
    s = AgentStatus
    stats.add(AgentStateChanged("a", s.LOGGED_OUT, s.AVAILABLE, "login", 0.0))
    stats.add(AgentStateChanged("a", s.AVAILABLE, s.PAUSED, "lunch", 10.0))
    stats.add(AgentStateChanged("a", s.PAUSED, s.PAUSED, "training", 40.0))
    stats.add(AgentStateChanged("a", s.PAUSED, s.AVAILABLE, "resume", 100.0))
    stats.add(QueueEvent(101.0, QueueEventKind.RING_NO_ANSWER, "q", "c1", "a", duration=20.0))
    stats.add(QueueEvent(102.0, QueueEventKind.OFFER_REJECTED, "q", "c2", "a", duration=1.0))
    figures = stats.agent("a", now=110.0)
    assert figures.paused_by_reason == {"lunch": 30.0, "training": 60.0}
    assert figures.paused_time == pytest.approx(90.0)
    assert figures.available_time == pytest.approx(20.0)
    assert figures.missed_offers == 2
