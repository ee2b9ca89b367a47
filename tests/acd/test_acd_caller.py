"""The waiting caller: music, announcements, exit key, maximum wait, empty and full queues, overflow."""

from __future__ import annotations

from acd_testkit import engine_with, kinds, only, run_until

from softswitch.acd import AgentConfig, QueueConfig
from softswitch.acd.actions import (
    AnnouncePosition,
    CancelOffer,
    ConnectCall,
    ExitTo,
    OfferCall,
    Overflow,
    PlayPrompt,
    QueueEvent,
    QueueEventKind,
    StartMusicOnHold,
    TimeOut,
)
from softswitch.acd.config import Announce
from softswitch.acd.config import Overflow as OverflowRule


def test_caller_hears_the_queue_music():
    engine = engine_with([QueueConfig("q", moh="sounds/moh.wav")], [AgentConfig("a")], login=[])
    engine.call_arrived("c1", "q", now=0.0)
    assert engine.actions() == [StartMusicOnHold("c1", "sounds/moh.wav")]


def test_periodic_announcements_with_position_and_estimated_wait():
    queue = QueueConfig("q", wrap_up=0, announce=Announce(every=30, position=True, prompt="hold.wav"))
    engine = engine_with([queue], [AgentConfig("a")])
    engine.call_arrived("talking", "q", now=0.0)
    engine.offer_answered("talking", "a", now=0.0)
    engine.call_arrived("c1", "q", now=1.0)
    engine.call_arrived("c2", "q", now=2.0)
    engine.actions()
    assert run_until(engine, 31.0) == [PlayPrompt("c1", "hold.wav"), AnnouncePosition("c1", 1, None)]
    assert run_until(engine, 32.0) == [PlayPrompt("c2", "hold.wav"), AnnouncePosition("c2", 2, None)]
    engine.call_ended("talking", by="agent", now=40.0)  # one call of 40 s: the estimate is 40 s per position
    engine.offer_answered("c1", "a", now=41.0)
    engine.actions()
    assert run_until(engine, 62.0) == [PlayPrompt("c2", "hold.wav"), AnnouncePosition("c2", 1, 40.0)]


def test_no_announcement_while_the_call_rings_an_agent():
    queue = QueueConfig("q", ring_timeout=60, announce=Announce(every=30, prompt="hold.wav"))
    engine = engine_with([queue], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    assert run_until(engine, 59.0) == []


def test_exit_key_sends_the_caller_to_the_fallback():
    queue = QueueConfig("q", exit_key="0", exit_to="1900")
    engine = engine_with([queue], [AgentConfig("a")], login=[])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    assert engine.dtmf("c1", "5", now=3.0) is False
    assert engine.dtmf("c1", "0", now=4.0) is True
    assert engine.actions() == [ExitTo("c1", "1900", "0")]
    assert (
        QueueEvent(4.0, QueueEventKind.EXIT_KEY, "q", "c1", position=1, wait=4.0, detail="0")
        in engine.records()
    )
    assert engine.call_count() == 0


def test_exit_key_while_ringing_stops_the_ring():
    engine = engine_with([QueueConfig("q", exit_key="#", exit_to="vm")], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    assert engine.dtmf("c1", "#", now=1.0)
    assert engine.actions() == [CancelOffer("c1", "a", "caller_gone"), ExitTo("c1", "vm", "#")]
    assert engine.agent_status("a") == "available"


def test_maximum_wait_times_the_call_out_to_exit_to():
    engine = engine_with([QueueConfig("q", max_wait=120, exit_to="vm")], [AgentConfig("a")], login=[])
    engine.call_arrived("c1", "q", now=10.0)
    engine.actions()
    assert engine.next_deadline() == 130.0
    assert run_until(engine, 130.0) == [TimeOut("c1", "max_wait", "vm")]
    rows = [r for r in engine.records() if isinstance(r, QueueEvent) and r.kind is QueueEventKind.TIMEOUT]
    assert rows == [
        QueueEvent(130.0, QueueEventKind.TIMEOUT, "q", "c1", position=1, wait=120.0, detail="max_wait")
    ]


def test_maximum_wait_reached_while_ringing_lets_the_ring_finish():
    engine = engine_with([QueueConfig("q", max_wait=30, ring_timeout=20)], [AgentConfig("a")], login=[])
    engine.call_arrived("c1", "q", now=0.0)
    engine.agent_login("a", now=25.0)
    engine.actions()
    run_until(engine, 30.0)
    engine.offer_answered("c1", "a", now=35.0)
    assert engine.actions() == [ConnectCall("c1", "a")]
    engine.call_arrived("c2", "q", now=100.0)  # a is talking
    engine.call_ended("c1", by="caller", now=105.0)
    run_until(engine, 115.0)
    engine.actions()
    run_until(engine, 130.0)  # c2: max wait at 130 while ringing since 115; the ring ends at 135
    assert engine.actions() == []
    assert run_until(engine, 135.0) == [
        CancelOffer("c2", "a", "ring_timeout"),
        TimeOut("c2", "max_wait", None),
    ]


def test_join_empty_false_turns_callers_away_when_no_agent_is_logged_in():
    queue = QueueConfig("q", skills={"x": 1}, join_empty=False, exit_to="vm")
    engine = engine_with(
        [queue], [AgentConfig("a", {"x": 1}), AgentConfig("other", {"y": 1})], login=["other"]
    )
    engine.call_arrived("c1", "q", now=0.0)
    assert engine.actions() == [TimeOut("c1", "join_empty", "vm")]
    assert kinds(engine.records()) == [QueueEventKind.EXIT_EMPTY]
    engine.agent_login("a", now=1.0)
    engine.agent_pause("a", "lunch", now=1.0)  # paused still counts as "there" by default
    engine.call_arrived("c2", "q", now=2.0)
    assert engine.actions() == [StartMusicOnHold("c2")]


def test_empty_when_lists_the_conditions_that_do_not_count():
    queue = QueueConfig("q", join_empty=False, empty_when=("logged_out", "paused"))
    engine = engine_with([queue], [AgentConfig("a")])
    engine.agent_pause("a", "lunch", now=0.0)
    engine.call_arrived("c1", "q", now=1.0)
    assert engine.actions() == [TimeOut("c1", "join_empty", None)]


def test_leave_when_empty_sends_waiting_callers_out_when_the_last_agent_logs_out():
    queue = QueueConfig("q", leave_when_empty=True, exit_to="vm", wrap_up=0)
    engine = engine_with([queue], [AgentConfig("a")])
    engine.call_arrived("talking", "q", now=0.0)
    engine.offer_answered("talking", "a", now=0.0)
    engine.call_arrived("c1", "q", now=1.0)
    engine.call_arrived("c2", "q", now=2.0)
    engine.actions()
    assert engine.agent_logout("a", now=5.0) == "pending"
    assert engine.actions() == []
    engine.call_ended("talking", by="agent", now=9.0)
    assert only(engine.actions(), TimeOut) == [
        TimeOut("c1", "leave_empty", "vm"),
        TimeOut("c2", "leave_empty", "vm"),
    ]
    assert engine.call_count() == 0


def test_full_queue_refuses_new_callers():
    engine = engine_with([QueueConfig("q", max_callers=2, exit_to="vm")], [], login=[])
    for i in range(3):
        engine.call_arrived(f"c{i}", "q", now=float(i))
    assert only(engine.actions(), TimeOut) == [TimeOut("c2", "full", "vm")]
    assert kinds(engine.records()) == [QueueEventKind.ENTER, QueueEventKind.ENTER, QueueEventKind.FULL]


def test_unknown_queue_is_refused():
    engine = engine_with([QueueConfig("q")], [])
    engine.call_arrived("c1", "nope", now=0.0)
    assert engine.actions() == [TimeOut("c1", "unknown_queue", None)]


def test_overflow_moves_the_call_to_the_target_queue_after_the_wait():
    queues = [
        QueueConfig("lv", skills={"latvian": 5}, priority=5, overflow=OverflowRule(120, "en"), moh="lv.wav"),
        QueueConfig("en", skills={"english": 5}, priority=3, moh="en.wav"),
    ]
    engine = engine_with(queues, [AgentConfig("eve", {"english": 7})])
    engine.call_arrived("c1", "lv", now=0.0)
    engine.actions()
    assert engine.next_deadline() == 120.0
    assert run_until(engine, 120.0) == [
        Overflow("c1", "en", "lv"),
        StartMusicOnHold("c1", "en.wav"),
        OfferCall("c1", "eve", 140.0),
    ]
    assert engine.snapshot().calls["c1"].priority == 3
    rows = [r for r in engine.records() if isinstance(r, QueueEvent)]
    assert [(r.kind, r.queue) for r in rows] == [
        (QueueEventKind.ENTER, "lv"),
        (QueueEventKind.OVERFLOW, "lv"),
        (QueueEventKind.ENTER, "en"),
        (QueueEventKind.OFFER, "en"),
    ]


def test_overflowed_call_keeps_its_place_in_time_in_the_target_queue():
    queues = [
        QueueConfig("lv", skills={"latvian": 5}, overflow=OverflowRule(60, "en"), wrap_up=0),
        QueueConfig("en", skills={"english": 5}, wrap_up=0),
    ]
    engine = engine_with(queues, [AgentConfig("eve", {"english": 7})])
    engine.call_arrived("talking", "en", now=0.0)
    engine.offer_answered("talking", "eve", now=0.0)
    engine.call_arrived("lv-early", "lv", now=1.0)
    engine.call_arrived("en-later", "en", now=30.0)
    run_until(engine, 61.0)  # lv-early overflows into en; it arrived before en-later
    assert engine.snapshot().calls["lv-early"].position == 1
    engine.actions()
    engine.call_ended("talking", by="caller", now=70.0)
    assert only(engine.actions(), OfferCall) == [OfferCall("lv-early", "eve", 90.0)]


def test_overflow_due_while_ringing_happens_if_the_ring_fails():
    queues = [
        QueueConfig("a", overflow=OverflowRule(10, "b"), ring_timeout=20, retry=100),
        QueueConfig("b", skills={"french": 1}),
    ]
    engine = engine_with(queues, [AgentConfig("x")])
    engine.call_arrived("c1", "a", now=0.0)
    engine.actions()
    assert run_until(engine, 10.0) == []
    assert run_until(engine, 20.0) == [CancelOffer("c1", "x", "ring_timeout"), Overflow("c1", "b", "a")]
