"""No agent is ever stuck: races, lost messages, reconciliation, restart, reload without dropping calls."""

from __future__ import annotations

from acd_testkit import engine_with, only, run_until

from softswitch.acd import AcdEngine, AgentConfig, AgentStatus, QueueConfig, Repair
from softswitch.acd.actions import CancelOffer, ConnectCall, OfferCall, QueueEvent, QueueEventKind, TimeOut
from softswitch.acd.events import (
    AgentLoggedIn,
    CallArrived,
    OfferAnswered,
    Reconciled,
    TimePassed,
)


def test_answer_racing_a_hang_up_is_dropped_and_the_agent_stays_free():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.caller_abandoned("c1", now=3.0)
    assert only(engine.actions(), CancelOffer) == [CancelOffer("c1", "a", "caller_gone")]
    engine.offer_answered("c1", "a", now=3.01)  # the 200 OK crossed the CANCEL
    assert engine.actions() == [CancelOffer("c1", "a", "withdrawn")]
    assert engine.agent_status("a") == AgentStatus.AVAILABLE
    abandon = [r for r in engine.records() if isinstance(r, QueueEvent) and r.kind is QueueEventKind.ABANDON]
    assert abandon == [QueueEvent(3.0, QueueEventKind.ABANDON, "q", "c1", position=1, wait=3.0)]


def test_a_ring_withdrawn_through_no_fault_of_the_agent_is_no_miss_and_may_ring_again_at_once():
    engine = engine_with(
        [QueueConfig("q", strategy="ring_all", retry=30)], [AgentConfig("a"), AgentConfig("b")]
    )
    engine.call_arrived("c1", "q", now=0.0)
    assert sorted(o.agent for o in only(engine.actions(), OfferCall)) == ["a", "b"]
    engine.offer_withdrawn("c1", "b", reason="answered_elsewhere_failed", now=1.0)
    assert engine.actions() == []  # the switch already ended b's ring: nothing to cancel
    assert engine.snapshot().agents["b"].status is AgentStatus.AVAILABLE
    engine.offer_failed("c1", "a", reason="rejected", now=1.0)
    # a rejected and waits for the retry; b was not rung fairly this round, so it is rung again now
    assert [o.agent for o in only(engine.actions(), OfferCall)] == ["b"]
    misses = {agent: view.misses for agent, view in engine.snapshot().agents.items()}
    assert misses == {"a": 1, "b": 0}
    kinds_seen = [r.kind for r in engine.records() if isinstance(r, QueueEvent) and r.agent == "b"]
    assert QueueEventKind.RING_NO_ANSWER not in kinds_seen
    engine.offer_withdrawn("c1", "nobody", reason="x", now=2.0)  # unknown agent or call: ignored
    engine.offer_withdrawn("gone", "b", reason="x", now=2.0)
    assert engine.snapshot().agents["b"].status is AgentStatus.OFFERED


def test_answer_arriving_after_the_ring_timeout_is_refused():
    engine = engine_with([QueueConfig("q", retry=30)], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    run_until(engine, 20.0)
    engine.actions()
    engine.offer_answered("c1", "a", now=20.2)
    assert engine.actions() == [CancelOffer("c1", "a", "withdrawn")]
    assert engine.snapshot().calls["c1"].state == "waiting"


def test_repeated_answer_and_repeated_arrival_are_ignored():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    engine.actions()
    engine.offer_answered("c1", "a", now=1.1)
    engine.call_arrived("c1", "q", now=1.2)
    engine.offer_failed("c1", "a", reason="no_answer", now=1.3)
    assert engine.actions() == []
    assert engine.agent_status("a") == AgentStatus.ON_CALL


def test_inputs_about_unknown_calls_and_agents_change_nothing():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")])
    engine.call_ended("ghost", by="agent", now=1.0)
    engine.caller_abandoned("ghost", now=1.0)
    engine.offer_failed("ghost", "a", reason="rejected", now=1.0)
    engine.agent_reachable("nobody", False, now=1.0)
    engine.agent_direct_call("nobody", True, now=1.0)
    assert engine.dtmf("ghost", "1", now=1.0) is False
    assert engine.actions() == [] and engine.records() == []


def test_call_ended_before_the_answer_is_an_abandon():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.call_ended("c1", by="caller", now=5.0)
    assert CancelOffer("c1", "a", "caller_gone") in engine.actions()
    assert engine.agent_status("a") == AgentStatus.AVAILABLE


def test_lost_bye_is_repaired_by_reconciliation():
    engine = engine_with([QueueConfig("q", wrap_up=10)], [AgentConfig("a"), AgentConfig("b")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    # The BYE never reached us: the switch's own call table no longer has c1.
    repairs = engine.reconcile({}, {"a", "b"}, now=300.0)
    assert repairs == [Repair("call_vanished", "c1", "a", "connected")]
    assert engine.agent_status("a") == AgentStatus.WRAP_UP
    run_until(engine, 310.0)
    assert engine.agent_status("a") == AgentStatus.AVAILABLE
    assert QueueEventKind.REPAIR in [r.kind for r in engine.records() if isinstance(r, QueueEvent)]


def test_vanished_agent_leg_frees_the_agent_and_sends_the_caller_on():
    engine = engine_with([QueueConfig("q", wrap_up=0, exit_to="vm")], [AgentConfig("a")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    engine.actions()
    repairs = engine.reconcile({"c1": set()}, {"a"}, now=50.0)
    assert repairs == [Repair("agent_lost", "c1", "a")]
    assert engine.actions() == [TimeOut("c1", "agent_lost", "vm")]
    assert engine.agent_status("a") == AgentStatus.AVAILABLE


def test_lost_direct_call_end_and_unreported_direct_call_are_both_repaired():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a"), AgentConfig("b")])
    engine.agent_direct_call("a", True, now=0.0)
    repairs = engine.reconcile({"x9": {"b"}}, {"a", "b"}, now=60.0)
    assert sorted(repairs, key=lambda r: r.kind) == [
        Repair("direct_call_ended", None, "a"),
        Repair("direct_call_found", None, "b"),
    ]
    assert engine.agent_status("a") == AgentStatus.AVAILABLE
    assert engine.agent_status("b") == AgentStatus.DIRECT_CALL


def test_reachability_is_reconciled_with_the_live_bindings():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a"), AgentConfig("b")])
    engine.agent_reachable("a", False, now=0.0)
    repairs = engine.reconcile({}, {"a"}, now=10.0)
    assert sorted(repairs, key=lambda r: r.agent or "") == [
        Repair("reachable", None, "a"),
        Repair("unreachable", None, "b"),
    ]
    assert engine.agent_status("a") == AgentStatus.AVAILABLE
    assert engine.agent_status("b") == AgentStatus.UNREACHABLE


def test_reconcile_with_the_truth_changes_nothing():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a"), AgentConfig("b")], login=["a"])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    engine.call_arrived("c2", "q", now=2.0)
    engine.actions()
    engine.records()
    assert engine.reconcile({"c1": {"a"}, "c2": set()}, {"a", "b"}, now=5.0) == []
    assert engine.actions() == [] and engine.records() == []


def test_restart_starts_empty_and_the_switch_logs_agents_back_in():
    queues, agents = [QueueConfig("q")], [AgentConfig("a")]
    before = engine_with(queues, agents)
    before.call_arrived("c1", "q", now=0.0)
    after = AcdEngine(queues, agents)  # the process restarted: live state is rebuilt from nothing
    assert after.agent_status("a") == AgentStatus.LOGGED_OUT and after.call_count() == 0
    for event in (AgentLoggedIn("a"), CallArrived("c2", "q"), OfferAnswered("c2", "a"), TimePassed()):
        after.handle(event, now=10.0)
    assert ConnectCall("c2", "a") in after.actions()
    assert after.handle(Reconciled({"c2": {"a"}}, {"a"}), now=11.0) == []


def test_reload_adds_queues_and_agents_without_dropping_calls():
    engine = engine_with([QueueConfig("q", skills={"x": 1})], [AgentConfig("a", {"x": 1})])
    engine.call_arrived("talking", "q", now=0.0)
    engine.offer_answered("talking", "a", now=0.0)
    engine.call_arrived("waiting", "q", now=1.0)
    engine.actions()
    engine.reload(
        [QueueConfig("q", skills={"x": 1}), QueueConfig("new", skills={"y": 1})],
        [AgentConfig("a", {"x": 1}), AgentConfig("b", {"x": 2, "y": 1})],
        now=10.0,
    )
    assert engine.actions() == []  # b is new and logged out
    engine.agent_login("b", now=11.0)
    assert engine.actions() == [OfferCall("waiting", "b", 31.0)]
    engine.call_arrived("c3", "new", now=12.0)
    assert engine.snapshot().calls["c3"].queue == "new"
    assert engine.agent_status("a") == AgentStatus.ON_CALL
    engine.check_consistency()


def test_reload_that_gives_an_agent_a_skill_makes_waiting_calls_eligible_at_once():
    engine = engine_with([QueueConfig("fr", skills={"french": 3})], [AgentConfig("a", {"english": 5})])
    engine.call_arrived("c1", "fr", now=0.0)
    engine.actions()
    engine.reload([QueueConfig("fr", skills={"french": 3})], [AgentConfig("a", {"french": 4})], now=5.0)
    assert engine.actions() == [OfferCall("c1", "a", 25.0)]


def test_removed_queue_keeps_serving_its_calls_and_takes_no_new_ones():
    engine = engine_with([QueueConfig("old"), QueueConfig("other")], [AgentConfig("a")], login=[])
    engine.call_arrived("c1", "old", now=0.0)
    engine.actions()
    engine.reload([QueueConfig("other")], [AgentConfig("a")], now=5.0)
    engine.call_arrived("c2", "old", now=6.0)
    assert engine.actions() == [TimeOut("c2", "unknown_queue", None)]
    engine.agent_login("a", now=7.0)
    assert engine.actions() == [OfferCall("c1", "a", 27.0)]
    engine.offer_answered("c1", "a", now=8.0)
    assert "old" not in engine.queue_names()
    engine.call_ended("c1", by="agent", now=20.0)
    assert engine.agent_status("a") == AgentStatus.WRAP_UP
    engine.check_consistency()


def test_removed_agent_finishes_its_call_then_is_logged_out():
    engine = engine_with([QueueConfig("q")], [AgentConfig("a"), AgentConfig("b")])
    engine.call_arrived("c1", "q", now=0.0)
    engine.offer_answered("c1", "a", now=1.0)
    engine.reload([QueueConfig("q")], [AgentConfig("b")], now=5.0)
    assert engine.agent_status("a") == AgentStatus.ON_CALL
    engine.call_ended("c1", by="caller", now=30.0)
    assert "a" not in engine.snapshot().agents
    engine.check_consistency()


def test_reload_recomputes_timers_from_when_calls_entered():
    engine = engine_with([QueueConfig("q", max_wait=600)], [], login=[])
    engine.call_arrived("c1", "q", now=0.0)
    engine.actions()
    engine.reload([QueueConfig("q", max_wait=100, exit_to="vm")], [], now=150.0)
    assert engine.next_deadline() == 150.0
    assert run_until(engine, 150.0) == [TimeOut("c1", "max_wait", "vm")]
