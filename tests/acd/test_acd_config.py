from __future__ import annotations

import random

import pytest

from softswitch.acd import AcdEngine, AgentConfig, ConfigError, QueueConfig, RelaxStep
from softswitch.acd.config import Announce, Overflow
from softswitch.acd.skills import Requirements
from softswitch.acd.strategies import UnknownStrategy, create_strategy, known_strategies


def test_the_six_strategies_of_the_issue_are_registered_by_their_yaml_names():
    assert set(known_strategies()) >= {
        "longest_idle",
        "least_calls",
        "round_robin",
        "ring_all",
        "best_skill",
        "random",
    }


def test_unknown_strategy_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as error:
        QueueConfig("q", strategy="fewest")
    assert "'fewest'" in str(error.value)
    assert "longest_idle" in str(error.value) and "ring_all" in str(error.value)
    with pytest.raises(UnknownStrategy, match=r"Unknown ACD strategy 'fewest' \(known: best_skill, "):
        create_strategy("fewest", rng=random.Random(0))


def test_relax_steps_may_only_lower_requirements_and_must_ascend():
    with pytest.raises(ConfigError, match="only lower"):
        QueueConfig("q", skills={"billing": 3}, relax=(RelaxStep(30, {"billing": 5}),))
    with pytest.raises(ConfigError, match="only lower"):
        QueueConfig("q", skills={"billing": 3}, relax=(RelaxStep(30, {"french": 1}),))
    with pytest.raises(ConfigError, match="must exceed"):
        QueueConfig("q", skills={"a": 5}, relax=(RelaxStep(30, {"a": 4}), RelaxStep(30, {"a": 3})))


@pytest.mark.parametrize("level", [0, 11, "5", 2.5, True])
def test_agent_proficiency_is_an_integer_from_1_to_10(level):
    with pytest.raises(ConfigError, match=r"1\.\.10"):
        AgentConfig("alice", {"billing": level})


def test_queue_checks_name_the_key():
    with pytest.raises(ConfigError, match="ring_timeout"):
        QueueConfig("q", ring_timeout=0)
    with pytest.raises(ConfigError, match="overflow to itself"):
        QueueConfig("q", overflow=Overflow(10, "q"))
    with pytest.raises(ConfigError, match="vip_priority"):
        QueueConfig("q", priority=5, vip_priority=5)
    with pytest.raises(ConfigError, match="exit_key"):
        QueueConfig("q", exit_key="10")
    with pytest.raises(ConfigError, match="empty_when"):
        QueueConfig("q", empty_when=("asleep",))


def test_engine_checks_the_roster_as_a_whole():
    with pytest.raises(ConfigError, match=r"overflow\.to 'nowhere'"):
        AcdEngine([QueueConfig("q", overflow=Overflow(10, "nowhere"))], [])
    with pytest.raises(ConfigError, match="defined twice"):
        AcdEngine([QueueConfig("q")], [AgentConfig("a"), AgentConfig("a")])
    with pytest.raises(ConfigError, match="defined twice"):
        AcdEngine([QueueConfig("q"), QueueConfig("q")], [])


def test_from_dict_takes_the_yaml_shape_and_ignores_keys_for_other_layers():
    queue = QueueConfig.from_dict(
        {
            "name": "billing-lv",
            "numbers": ["+37167000001", "7001"],
            "skills": {"latvian": 5, "billing": 3},
            "strategy": "best_skill",
            "overflow": {"after": 120, "to": "billing-en"},
            "relax": [{"after": 60, "skills": {"billing": 1}}],
            "announce": {"every": 45, "position": True, "prompt": "config/sounds/please-hold.wav"},
            "record": {"mode": "all"},
            "vip_numbers": ["+37129999999"],
            "max_missed": 2,
        }
    )
    assert queue.overflow == Overflow(120, "billing-en")
    assert queue.relax == (RelaxStep(60, {"billing": 1}),)
    assert queue.announce == Announce(45, True, "config/sounds/please-hold.wav")
    assert queue.numbers == ("+37167000001", "7001")
    assert queue.priority_for("+37129999999") == 10 and queue.priority_for("+371") == 0
    agent = AgentConfig.from_dict({"id": "alice", "password": "x", "skills": {"billing": 7}, "team": "riga"})
    assert agent.skills == {"billing": 7} and agent.team == "riga"


def test_requirements_merge_relax_steps_and_zero_drops_a_skill():
    req = Requirements.build(
        {"latvian": 5, "billing": 3}, [RelaxStep(60, {"billing": 1}), RelaxStep(120, {"latvian": 0})]
    )
    assert req.steps == ({"latvian": 5, "billing": 3}, {"latvian": 5, "billing": 1}, {"billing": 1})
    assert [req.step_at(t) for t in (0, 59.9, 60, 119, 120, 1e9)] == [0, 0, 1, 1, 2, 2]
    assert req.first_step({"latvian": 9, "billing": 7}) == 0
    assert req.first_step({"latvian": 5, "billing": 1}) == 1
    assert req.first_step({"billing": 2}) == 2
    assert req.first_step({"latvian": 9}) is None
