"""Agent states and their exits: ring-no-answer, auto-pause, wrap-up, pause, logout, reachability."""

from __future__ import annotations

from acd_testkit import engine_with, kinds, only, run_until

from softswitch.acd import AUTO_PAUSE_REASON, Ack, AgentConfig, AgentStatus, QueueConfig
from softswitch.acd.actions import (
    AgentStateChanged,
    CancelOffer,
    ConnectCall,
    OfferCall,
    PauseAgent,
    QueueEvent,
    QueueEventKind,
)


def test_ring_no_answer_tries_the_next_agent_and_auto_pauses_after_n_misses():
    engine = engine_with(
        [QueueConfig("q", max_missed=2, retry=0)], [AgentConfig("alice"), AgentConfig("bob")], login=["alice"]
    )
    engine.call_arrived("c1", "q", now=0.0)
    assert only(engine.actions(), OfferCall) == [OfferCall("c1", "alice", 20.0)]
    engine.agent_login("bob", now=1.0)
    engine.handle_timer(now=20.0)  # ring-no-answer: bob is next
    assert engine.actions() == [CancelOffer("c1", "alice", "ring_timeout"), OfferCall("c1", "bob", 40.0)]
    assert engine.agent_status("alice") == AgentStatus.AVAILABLE
    engine.call_arrived("c2", "q", now=21.0)
    assert engine.actions()[-1] == OfferCall("c2", "alice", 41.0)
    engine.handle_timer(now=40.0)  # bob misses c1; alice is busy ringing, bob gets c1 again at once (retry=0)
    engine.actions()
    engine.handle_timer(now=41.0)  # alice's second miss in a row
    actions = engine.actions()
    assert CancelOffer("c2", "alice", "ring_timeout") in actions
    assert PauseAgent("alice", AUTO_PAUSE_REASON) in actions
    assert engine.agent_status("alice") == AgentStatus.PAUSED
    states = [r for r in engine.records() if isinstance(r, AgentStateChanged) and r.agent == "alice"]
    assert states[-1] == AgentStateChanged(
        "alice", AgentStatus.OFFERED, AgentStatus.PAUSED, AUTO_PAUSE_REASON, 41.0
    )


def test_an_answer_resets_the_miss_count():
    engine = engine_with([QueueConfig("q", max_missed=2, wrap_up=0, retry=0)], [AgentConfig("a")])
    for i, outcome in enumerate(["miss", "answer", "miss", "answer", "miss"]):
        engine.call_arrived(f"c{i}", "q", now=100.0 * i)
        if outcome == "miss":
            engine.offer_failed(f"c{i}", "a", reason="rejected", now=100.0 * i + 1)
            engine.caller_abandoned(f"c{i}", now=100.0 * i + 2)
        else:
            engine.offer_answered(f"c{i}", "a", now=100.0 * i + 1)
            engine.call_ended(f"c{i}", by="agent", now=100.0 * i + 2)
    assert only(engine.actions(), PauseAgent) == []
    assert engine.agent_status("a") == AgentStatus.AVAILABLE


def test_agent_max_missed_overrides_the_queue_and_zero_never_pauses():
    engine = engine_with([QueueConfig("q", max_missed=1, retry=0)], [AgentConfig("a", max_missed=0)])
    for i in range(5):
        engine.call_arrived(f"c{i}", "q", now=10.0 * i)
        engine.offer_failed(f"c{i}", "a", reason="no_answer", now=10.0 * i + 1)
        engine.caller_abandoned(f"c{i}", now=10.0 * i + 2)
    assert only(engine.actions(), PauseAgent) == []
    assert engine.agent_status("a") == AgentStatus.AVAILABLE


def test_a_single_agent_who_missed_is_offered_the_same_call_again_after_retry():
    engine = engine_with([QueueConfig("q", retry=5, max_missed=0)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    engine.offer_failed("c1", "a", reason="rejected", now=3.0)
    assert engine.actions() == []
    assert engine.next_deadline() == 8.0
    engine.handle_timer(now=8.0)
    assert engine.actions() == [OfferCall("c1", "a", 28.0)]


def test_unreachable_offer_marks_the_phone_unreachable_without_counting_a_miss():
    engine = engine_with([QueueConfig("q", max_missed=1)], [AgentConfig("a"), AgentConfig("b")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    engine.offer_failed("c1", "a", reason="unreachable", now=1.0)
    assert engine.actions() == [OfferCall("c1", "b", 21.0)]
    assert engine.agent_status("a") == AgentStatus.UNREACHABLE
    engine.agent_reachable("a", True, now=5.0)
    assert engine.agent_status("a") == AgentStatus.AVAILABLE  # no auto-pause: the phone failed, not the agent


def test_phone_vanishing_mid_offer_cancels_the_ring_and_tries_the_next_agent():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a"), AgentConfig("b")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    engine.agent_reachable("a", False, now=2.0)
    assert engine.actions() == [CancelOffer("c1", "a", "unreachable"), OfferCall("c1", "b", 22.0)]
    assert engine.agent_status("a") == AgentStatus.UNREACHABLE


def test_unreachable_agent_gets_calls_again_once_reachable():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")])
    engine.agent_reachable("a", False, now=0.0)
    engine.call_arrived("c1", "q", now=1.0)
    assert only(engine.actions(), OfferCall) == []
    engine.agent_reachable("a", True, now=2.0)
    assert engine.actions() == [OfferCall("c1", "a", 22.0)]


def test_wrap_up_is_honoured_then_the_agent_takes_the_waiting_call():
    engine = engine_with([QueueConfig("q", wrap_up=30)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=2.0)
    engine.call_ended("c1", by="caller", now=60.0)
    assert engine.agent_status("a") == AgentStatus.WRAP_UP
    engine.call_arrived("c2", "q", now=61.0)
    assert only(engine.actions(), OfferCall) == [OfferCall("c1", "a", 20.0)]
    assert engine.next_deadline() == 90.0
    engine.handle_timer(now=89.0)
    assert engine.actions() == []
    engine.handle_timer(now=90.0)
    assert engine.actions() == [OfferCall("c2", "a", 110.0)]
    wrap = [r for r in engine.records() if isinstance(r, QueueEvent) and r.kind is QueueEventKind.WRAP_UP]
    assert wrap == [
        QueueEvent(90.0, QueueEventKind.WRAP_UP, "q", "c1", "a", duration=30.0, detail="wrap_up_timer")
    ]


def test_agent_may_end_wrap_up_early():
    engine = engine_with([QueueConfig("q", wrap_up=30)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    engine.call_ended("c1", by="agent", now=10.0)
    engine.call_arrived("c2", "q", now=11.0)
    engine.actions()
    assert engine.end_wrap_up("a", now=15.0) == Ack.DONE
    assert engine.actions() == [OfferCall("c2", "a", 35.0)]
    assert engine.end_wrap_up("a", now=16.0) == Ack.NO_CHANGE


def test_paused_agent_is_not_offered_until_resumed():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")])
    assert engine.agent_pause("a", "lunch", now=0.0) == Ack.DONE
    assert engine.agent_pause("a", "lunch", now=0.5) == Ack.NO_CHANGE
    engine.call_arrived("c1", "q", now=1.0)
    assert only(engine.actions(), OfferCall) == []
    assert engine.snapshot().agents["a"].pause_reason == "lunch"
    assert engine.agent_resume("a", now=50.0) == Ack.DONE
    assert engine.actions() == [OfferCall("c1", "a", 70.0)]
    assert kinds(engine.records()).count(QueueEventKind.PAUSE) == 1


def test_pause_during_a_call_starts_after_the_call_and_its_wrap_up():
    engine = engine_with([QueueConfig("q", wrap_up=10)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    engine.agent_pause("a", "coffee", now=5.0)
    assert engine.agent_status("a") == AgentStatus.ON_CALL
    engine.call_ended("c1", by="caller", now=20.0)
    assert engine.agent_status("a") == AgentStatus.WRAP_UP
    run_until(engine, 30.0)
    assert engine.agent_status("a") == AgentStatus.PAUSED
    changes = [(r.new, r.reason) for r in engine.records() if isinstance(r, AgentStateChanged)]
    assert changes[-1] == (AgentStatus.PAUSED, "coffee")


def test_pause_while_ringing_withdraws_the_offer_without_a_miss():
    engine = engine_with([QueueConfig("q", max_missed=1)], [AgentConfig("a"), AgentConfig("b")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    engine.agent_pause("a", "", now=1.0)
    assert engine.actions() == [CancelOffer("c1", "a", "agent_paused"), OfferCall("c1", "b", 21.0)]
    assert engine.snapshot().agents["a"].misses == 0


def test_logout_during_a_call_happens_when_the_call_ends_without_wrap_up():
    engine = engine_with([QueueConfig("q", wrap_up=30)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    assert engine.agent_logout("a", now=5.0) == Ack.PENDING
    assert engine.agent_status("a") == AgentStatus.ON_CALL
    engine.call_ended("c1", by="agent", now=9.0)
    assert engine.agent_status("a") == AgentStatus.LOGGED_OUT
    assert engine.next_deadline() is None
    assert engine.agent_logout("a", now=10.0) == Ack.NOT_LOGGED_IN


def test_logout_while_ringing_sends_the_call_to_the_next_agent():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a"), AgentConfig("b")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    assert engine.agent_logout("a", now=1.0) == Ack.DONE
    assert engine.actions() == [CancelOffer("c1", "a", "agent_logged_out"), OfferCall("c1", "b", 21.0)]


def test_direct_call_makes_the_agent_busy_until_it_ends():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")])
    engine.agent_direct_call("a", True, now=0.0)
    assert engine.agent_status("a") == AgentStatus.DIRECT_CALL
    engine.call_arrived("c1", "q", now=1.0)
    assert only(engine.actions(), OfferCall) == []
    engine.agent_direct_call("a", False, now=30.0)
    assert engine.actions() == [OfferCall("c1", "a", 50.0)]


def test_commands_for_unknown_or_logged_out_agents_say_so():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")], login=[])
    assert engine.agent_login("zed", now=0.0) == Ack.UNKNOWN_AGENT
    assert engine.agent_pause("a", "x", now=0.0) == Ack.NOT_LOGGED_IN
    assert engine.agent_resume("a", now=0.0) == Ack.NOT_LOGGED_IN
    assert engine.end_wrap_up("a", now=0.0) == Ack.NOT_LOGGED_IN
    assert engine.agent_login("a", now=0.0) == Ack.DONE
    assert engine.agent_login("a", now=0.0) == Ack.NO_CHANGE
    assert engine.agent_resume("a", now=0.0) == Ack.NO_CHANGE


def test_every_state_change_is_logged_with_time_and_reason():
    engine = engine_with([QueueConfig("q", wrap_up=5)], [AgentConfig("a")], login=[])
    engine.agent_login("a", now=1.0)
    engine.call_arrived("c1", "q", now=2.0)
    engine.offer_answered("c1", "a", now=3.0)
    engine.call_ended("c1", by="caller", now=9.0)
    run_until(engine, 14.0)
    engine.agent_pause("a", "training", now=20.0)
    engine.agent_resume("a", now=30.0)
    engine.agent_logout("a", now=40.0)
    log = [(r.at, r.old, r.new, r.reason) for r in engine.records() if isinstance(r, AgentStateChanged)]
    s = AgentStatus
    assert log == [
        (1.0, s.LOGGED_OUT, s.AVAILABLE, "login"),
        (2.0, s.AVAILABLE, s.OFFERED, "offer"),
        (3.0, s.OFFERED, s.ON_CALL, "answered"),
        (9.0, s.ON_CALL, s.WRAP_UP, "call_ended"),
        (14.0, s.WRAP_UP, s.AVAILABLE, "wrap_up_timer"),
        (20.0, s.AVAILABLE, s.PAUSED, "training"),
        (30.0, s.PAUSED, s.AVAILABLE, "resume"),
        (40.0, s.AVAILABLE, s.LOGGED_OUT, "logout"),
    ]


def test_queue_event_rows_for_a_complete_call():
    engine = engine_with([QueueConfig("q", wrap_up=5)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", caller="+371", now=2.0)
    engine.offer_answered("c1", "a", now=6.0)
    assert ConnectCall("c1", "a") in engine.actions()
    engine.call_ended("c1", by="agent", now=66.0)
    run_until(engine, 71.0)
    rows = [r for r in engine.records() if isinstance(r, QueueEvent)]
    k = QueueEventKind
    assert rows == [
        QueueEvent(2.0, k.ENTER, "q", "c1", position=1, detail="+371"),
        QueueEvent(2.0, k.OFFER, "q", "c1", "a", wait=0.0),
        QueueEvent(6.0, k.CONNECT, "q", "c1", "a", wait=4.0, duration=4.0),
        QueueEvent(66.0, k.COMPLETE_AGENT, "q", "c1", "a", wait=4.0, duration=60.0),
        QueueEvent(71.0, k.WRAP_UP, "q", "c1", "a", duration=5.0, detail="wrap_up_timer"),
    ]


def test_agent_who_missed_a_call_and_paused_gets_it_after_resuming():
    """Regression: the retry round was only scheduled when the agent rung was free, so an agent that missed,
    got auto-paused and resumed skipped the call until max_wait."""
    engine = engine_with([QueueConfig("q", max_missed=1, retry=5)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    run_until(engine, 20.0)  # no answer: a is auto-paused
    assert engine.agent_status("a") == AgentStatus.PAUSED
    run_until(engine, 25.0)  # the new round starts
    engine.actions()
    engine.agent_resume("a", now=100.0)
    assert engine.actions() == [OfferCall("c1", "a", 120.0)]
