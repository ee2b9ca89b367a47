"""Who gets which call: skills and relaxation, priority and wait across queues, the six strategies."""

from __future__ import annotations

import random
from collections import Counter

from acd_testkit import engine_with, only, run_until

from softswitch.acd import AcdEngine, AgentConfig, QueueConfig, RelaxStep
from softswitch.acd.actions import CancelOffer, ConnectCall, OfferCall, StartMusicOnHold


def test_style_guide_example_call_offered_to_the_only_eligible_agent():
    engine = engine_with(
        [QueueConfig("billing-lv", skills={"latvian": 5})], [AgentConfig("alice", {"latvian": 9})]
    )
    engine.call_arrived("c1", queue="billing-lv", priority=5, now=100.0)
    assert engine.actions() == [StartMusicOnHold("c1"), OfferCall("c1", agent="alice", ring_until=120.0)]
    assert engine.next_deadline() == 120.0


def test_agent_lacking_a_required_skill_is_never_offered():
    engine = engine_with(
        [QueueConfig("billing", skills={"billing": 5, "latvian": 3})],
        [AgentConfig("low", {"billing": 4, "latvian": 9}), AgentConfig("nolv", {"billing": 9})],
    )
    engine.call_arrived("c1", "billing", now=1.0)
    assert only(engine.actions(), OfferCall) == []
    assert engine.next_deadline() == 601.0  # only max_wait is pending


def test_relax_step_lets_a_less_skilled_agent_take_the_call_after_the_wait():
    queue = QueueConfig("billing", skills={"billing": 5}, relax=(RelaxStep(60, {"billing": 2}),))
    engine = engine_with([queue], [AgentConfig("junior", {"billing": 3})])
    engine.call_arrived("c1", "billing", now=10.0)
    assert only(engine.actions(), OfferCall) == []
    assert engine.next_deadline() == 70.0
    engine.handle_timer(now=69.9)
    assert engine.actions() == []
    engine.handle_timer(now=70.0)
    assert engine.actions() == [OfferCall("c1", "junior", 90.0)]


def test_relax_to_zero_drops_the_skill():
    queue = QueueConfig("q", skills={"latvian": 5, "billing": 3}, relax=(RelaxStep(30, {"latvian": 0}),))
    engine = engine_with([queue], [AgentConfig("en", {"billing": 8})])
    engine.call_arrived("c1", "q", now=0.0)
    assert only(engine.actions(), OfferCall) == []
    assert run_until(engine, 30.0) == [OfferCall("c1", "en", 50.0)]


def _busy_engine(queues, agents):
    """Every agent logged in and on a call, so waiting calls pile up."""
    engine = engine_with(queues, agents)
    for index, agent in enumerate(agents):
        queue = next(
            q.name for q in queues if all(agent.skills.get(s, 0) >= lv for s, lv in q.skills.items())
        )
        engine.call_arrived(f"busy{index}", queue, now=0.0)
        engine.offer_answered(f"busy{index}", agent.id, now=0.0)
    engine.actions()
    return engine


def test_free_agent_takes_highest_priority_call_across_queues_before_older_calls():
    queues = [
        QueueConfig("low", skills={"x": 1}, priority=1),
        QueueConfig("high", skills={"x": 1}, priority=5),
    ]
    engine = _busy_engine(queues, [AgentConfig("a", {"x": 5})])
    engine.call_arrived("old-low", "low", now=1.0)
    engine.call_arrived("new-high", "high", now=50.0)
    engine.call_ended("busy0", by="agent", now=60.0)
    engine.actions()
    run_until(engine, 70.0)  # wrap-up ends
    assert engine.actions() == [] and engine.agent_status("a") == "offered"
    snapshot = engine.snapshot()
    assert snapshot.calls["new-high"].agents == ("a",)


def test_free_agent_takes_the_longest_waiting_call_across_queues_at_equal_priority():
    queues = [QueueConfig("q1", skills={"x": 1}, wrap_up=0), QueueConfig("q2", skills={"y": 1}, wrap_up=0)]
    engine = _busy_engine(queues, [AgentConfig("a", {"x": 5, "y": 5})])
    engine.call_arrived("q2-first", "q2", now=5.0)
    engine.call_arrived("q1-second", "q1", now=6.0)
    engine.call_arrived("q2-third", "q2", now=7.0)
    engine.actions()
    engine.call_ended("busy0", by="caller", now=10.0)
    assert only(engine.actions(), OfferCall) == [OfferCall("q2-first", "a", 30.0)]


def test_vip_callers_get_vip_priority_and_explicit_priority_overrides():
    queue = QueueConfig("q", skills={"x": 1}, priority=2, vip_numbers=("+37129999999",), wrap_up=0)
    engine = _busy_engine([queue], [AgentConfig("a", {"x": 1})])
    engine.call_arrived("normal", "q", caller="+37100000000", now=1.0)
    engine.call_arrived("vip", "q", caller="+37129999999", now=2.0)
    engine.call_arrived("forced", "q", caller="+37100000001", priority=11, now=3.0)
    snapshot = engine.snapshot()
    assert [snapshot.calls[c].priority for c in ("normal", "vip", "forced")] == [2, 12, 11]
    assert [snapshot.calls[c].position for c in ("normal", "vip", "forced")] == [3, 1, 2]
    engine.actions()
    engine.call_ended("busy0", by="caller", now=10.0)
    assert only(engine.actions(), OfferCall) == [OfferCall("vip", "a", 30.0)]


def _idle_agents_engine(strategy: str, agents: list[AgentConfig], **queue_args) -> AcdEngine:
    return engine_with([QueueConfig("q", strategy=strategy, wrap_up=0, **queue_args)], agents, login=[])


def _offered(engine: AcdEngine) -> list[str]:
    return [offer.agent for offer in only(engine.actions(), OfferCall)]


def test_longest_idle_offers_the_agent_available_longest():
    engine = _idle_agents_engine("longest_idle", [AgentConfig(n) for n in ("a", "b", "c")])
    engine.agent_login("b", now=1.0)
    engine.agent_login("c", now=2.0)
    engine.agent_login("a", now=3.0)
    engine.call_arrived("c1", "q", now=10.0)
    assert _offered(engine) == ["b"]
    engine.offer_answered("c1", "b", now=11.0)
    engine.call_ended("c1", by="caller", now=12.0)  # b is idle again from 12.0
    engine.call_arrived("c2", "q", now=13.0)
    assert _offered(engine) == ["c"]


def test_a_missed_offer_does_not_reset_idle_time():
    engine = _idle_agents_engine("longest_idle", [AgentConfig(n) for n in ("a", "b")], retry=0)
    engine.agent_login("a", now=1.0)
    engine.agent_login("b", now=2.0)
    engine.call_arrived("c1", "q", now=10.0)
    assert _offered(engine) == ["a"]
    engine.offer_failed("c1", "a", reason="rejected", now=11.0)
    assert _offered(engine) == ["b"]  # the next agent, not the same one again
    engine.offer_answered("c1", "b", now=12.0)
    engine.call_arrived("c2", "q", now=13.0)
    assert _offered(engine) == ["a"]


def test_least_calls_offers_the_agent_with_fewest_answered_calls():
    engine = _idle_agents_engine("least_calls", [AgentConfig(n) for n in ("a", "b")])
    engine.agent_login("a", now=0.0)
    engine.call_arrived("c1", "q", now=1.0)
    engine.offer_answered("c1", "a", now=1.0)
    engine.call_ended("c1", by="caller", now=2.0)
    engine.agent_login("b", now=3.0)  # a has been idle longer, but has taken a call
    engine.actions()
    engine.call_arrived("c2", "q", now=4.0)
    assert _offered(engine) == ["b"]


def test_round_robin_rotates_through_the_agents():
    engine = _idle_agents_engine("round_robin", [AgentConfig(n) for n in ("a", "b", "c")])
    for name in ("c", "b", "a"):
        engine.agent_login(name, now=0.0)
    engine.actions()
    order = []
    for i in range(6):
        engine.call_arrived(f"c{i}", "q", now=float(i))
        (offer,) = only(engine.actions(), OfferCall)
        order.append(offer.agent)
        engine.offer_answered(offer.call, offer.agent, now=float(i))
        engine.call_ended(offer.call, by="agent", now=float(i) + 0.5)
    assert order == ["a", "b", "c", "a", "b", "c"]


def test_best_skill_prefers_highest_proficiency_then_longest_idle():
    agents = [
        AgentConfig("ok", {"billing": 5}),
        AgentConfig("good", {"billing": 8}),
        AgentConfig("good2", {"billing": 8}),
    ]
    engine = _idle_agents_engine("best_skill", agents, skills={"billing": 3})
    engine.agent_login("ok", now=0.0)
    engine.agent_login("good2", now=1.0)
    engine.agent_login("good", now=2.0)
    engine.call_arrived("c1", "q", now=5.0)
    assert _offered(engine) == ["good2"]
    engine.call_arrived("c2", "q", now=6.0)
    assert _offered(engine) == ["good"]
    engine.call_arrived("c3", "q", now=7.0)
    assert _offered(engine) == ["ok"]


def test_random_is_reproducible_with_a_seed_and_reaches_every_candidate():
    def picks(seed: int) -> list[str]:
        engine = AcdEngine(
            [QueueConfig("q", strategy="random", wrap_up=0)],
            [AgentConfig(n) for n in "abcd"],
            rng=random.Random(seed),
        )
        for name in "abcd":
            engine.agent_login(name, now=0.0)
        chosen = []
        for i in range(200):
            engine.call_arrived(f"c{i}", "q", now=float(i))
            (offer,) = only(engine.actions(), OfferCall)
            chosen.append(offer.agent)
            engine.caller_abandoned(offer.call, now=float(i))
        return chosen

    assert picks(7) == picks(7)
    assert picks(7) != picks(8)
    counts = Counter(picks(7))
    assert set(counts) == set("abcd") and min(counts.values()) > 25


def test_ring_all_rings_every_eligible_agent_and_the_first_answer_wins():
    agents = [AgentConfig("a", {"x": 1}), AgentConfig("b", {"x": 1}), AgentConfig("c", {"y": 1})]
    engine = _idle_agents_engine("ring_all", agents, skills={"x": 1})
    for name in "abc":
        engine.agent_login(name, now=0.0)
    engine.actions()
    engine.call_arrived("c1", "q", now=1.0)
    assert only(engine.actions(), OfferCall) == [OfferCall("c1", "a", 21.0), OfferCall("c1", "b", 21.0)]
    engine.offer_answered("c1", "b", now=3.0)
    assert engine.actions() == [CancelOffer("c1", "a", "answered_elsewhere"), ConnectCall("c1", "b")]
    assert engine.agent_status("a") == "available" and engine.agent_status("b") == "on_call"


def test_ring_all_requeues_when_every_ring_fails_and_rings_again_after_retry():
    engine = _idle_agents_engine("ring_all", [AgentConfig("a"), AgentConfig("b")], retry=5, max_missed=0)
    engine.agent_login("a", now=0.0)
    engine.agent_login("b", now=0.0)
    engine.call_arrived("c1", "q", now=1.0)
    engine.actions()
    engine.offer_failed("c1", "a", reason="rejected", now=2.0)
    assert engine.actions() == []
    run_until(engine, 21.0)  # b rings out at 21
    assert engine.next_deadline() == 26.0
    assert run_until(engine, 26.0) == [OfferCall("c1", "a", 46.0), OfferCall("c1", "b", 46.0)]


def test_agent_freed_as_a_worse_call_requeues_takes_the_better_call():
    """Regression (found by the property test): a ring timeout and a relax step due at the same instant.

    The worse call re-queued and grabbed the agent it had just rung; the better call, which the agent had
    become eligible for at that same instant, kept waiting.
    """
    queues = [
        QueueConfig("vip", skills={"x": 1, "y": 1}, relax=(RelaxStep(20, {"y": 0}),), priority=10),
        QueueConfig("normal", skills={"x": 5}, retry=0, max_missed=0),
    ]
    engine = engine_with(queues, [AgentConfig("a0", {"x": 7})])
    engine.call_arrived("better", "vip", now=1.0)
    engine.call_arrived("worse", "normal", now=1.0)
    assert only(engine.actions(), OfferCall) == [OfferCall("worse", "a0", 21.0)]
    engine.handle_timer(now=21.0)  # better relaxes to x>=1; a0's ring for worse times out
    assert only(engine.actions(), OfferCall) == [OfferCall("better", "a0", 41.0)]
