"""`softswitch simulate`'s core: the real engine on a simulated clock, refereed by Erlang C."""

from __future__ import annotations

import math

import pytest

from softswitch.acd import AgentConfig, ConfigError, QueueConfig
from softswitch.acd.simulate import Load, QueueLoad, erlang_c, simulate


def test_erlang_c_textbook_values():
    # c = 3 agents, A = 2 Erlang: Erlang B(3, 2) = 4/19, C = 3B / (3 - 2(1 - B)) = 4/9.
    result = erlang_c(arrival_rate=2 / 60, service_time=60.0, agents=3)
    assert result.p_wait == pytest.approx(4 / 9)
    assert result.asa == pytest.approx(4 / 9 * 60 / (3 - 2))
    assert result.service_level(20) == pytest.approx(1 - 4 / 9 * math.exp(-(3 - 2) * 20 / 60))
    assert result.occupancy == pytest.approx(2 / 3)
    # One agent is M/M/1: P(wait) = rho, ASA = rho h / (1 - rho).
    single = erlang_c(arrival_rate=0.5 / 100, service_time=100.0, agents=1)
    assert (single.p_wait, single.asa) == (pytest.approx(0.5), pytest.approx(100.0))


def test_erlang_c_overload_waits_for_ever():
    result = erlang_c(arrival_rate=1.0, service_time=5.0, agents=4)
    assert result.p_wait == 1.0 and result.asa == math.inf and result.service_level(20) == 0.0


def test_simulated_p_wait_asa_and_service_level_agree_with_erlang_c():
    """Referee: one queue, Poisson arrivals, exponential talk, 2 identical agents at 50 % load, ~100k calls.

    Over seeds 1-10 the largest deviations were 2.1 % (P(wait)), 3.2 % (ASA) and 0.007 (service level);
    the bounds below are about three standard deviations. Talk times are drawn at arrival, so the sample path
    for a seed does not depend on the engine's internals.
    """
    handle, agents, load = 60.0, 2, 1.0
    per_hour = load / handle * 3600
    queue = QueueConfig("q", wrap_up=0, max_wait=None, service_level=20)
    result = simulate(
        [queue],
        [AgentConfig(f"a{i}") for i in range(agents)],
        Load({"q": QueueLoad(per_hour, handle)}),
        hours=100_000 / per_hour,
        seed=1,
        warmup=3600,
    ).queues["q"]
    reference = erlang_c(per_hour / 3600, handle, agents)
    assert result.offered > 95_000 and result.abandoned == 0
    assert result.p_wait == pytest.approx(reference.p_wait, rel=0.04)
    assert result.asa == pytest.approx(reference.asa, rel=0.06)
    assert result.service_level == pytest.approx(reference.service_level(20), abs=0.02)
    assert result.occupancy == pytest.approx(reference.occupancy, rel=0.03)
    assert result.aht == pytest.approx(handle, rel=0.03)


def _small_run(seed: int = 3, **load):
    queue = QueueConfig("q", wrap_up=0, max_wait=None)
    values = {"arrivals_per_hour": 100, "handle_time": 120} | load
    return simulate(
        [queue],
        [AgentConfig("a"), AgentConfig("b"), AgentConfig("c")],
        Load({"q": QueueLoad(**values)}),
        hours=20,
        seed=seed,
    )


def test_same_seed_same_figures_other_seed_other_figures():
    assert _small_run(seed=3) == _small_run(seed=3)
    assert _small_run(seed=3) != _small_run(seed=4)


def test_impatient_callers_abandon():
    result = _small_run(arrivals_per_hour=200, patience=30).queues["q"]
    assert result.abandoned > 50
    assert result.answered + result.abandoned <= result.offered <= result.answered + result.abandoned + 10


def test_answer_delay_is_part_of_the_wait():
    result = _small_run(answer_delay=7).queues["q"]
    assert result.asa >= 7.0
    assert result.p_wait == pytest.approx(_small_run().queues["q"].p_wait, abs=0.1)


def test_load_wrap_up_replaces_the_configured_one():
    result = _small_run(wrap_up=30).queues["q"]
    assert result.aht == pytest.approx(120 + 30, rel=0.1)


def test_shared_agents_serve_two_queues_and_each_gets_its_figures():
    queues = [
        QueueConfig("lv", skills={"lv": 1}, priority=5, wrap_up=0, max_wait=None),
        QueueConfig("en", skills={"en": 1}, wrap_up=0, max_wait=None),
    ]
    agents = [
        AgentConfig("both", {"lv": 5, "en": 5}),
        AgentConfig("en1", {"en": 5}),
        AgentConfig("lv1", {"lv": 5}),
    ]
    load = Load({"lv": QueueLoad(35, 120), "en": QueueLoad(35, 120)})
    result = simulate(queues, agents, load, hours=50, seed=2)
    for name in ("lv", "en"):
        figures = result.queues[name]
        assert figures.offered > 1500 and figures.answered == pytest.approx(figures.offered, abs=10)
        assert 0.3 < figures.occupancy < 1.0
    assert result.queues["lv"].asa < result.queues["en"].asa  # lv has priority on the shared agent


def test_json_shape_has_exactly_the_issue_keys():
    result = _small_run()
    assert list(result.as_dict()) == ["q"]
    assert list(result.as_dict()["q"]) == [
        "offered",
        "answered",
        "abandoned",
        "p_wait",
        "service_level",
        "asa",
        "aht",
        "occupancy",
    ]
    table = result.format_table()
    assert "service_level" in table and table.splitlines()[2].startswith("q ")


def test_load_file_model_is_checked():
    load = Load.from_dict({"queues": {"q": {"arrivals_per_hour": 10, "handle_time": 60, "patience": None}}})
    assert load.queues["q"] == QueueLoad(10, 60)
    with pytest.raises(ConfigError, match="unknown keys"):
        Load.from_dict({"queues": {"q": {"arrivals_per_hour": 10, "handle_time": 60, "aht": 3}}})
    with pytest.raises(ConfigError, match="handle_time"):
        Load.from_dict({"queues": {"q": {"arrivals_per_hour": 10, "handle_time": 0}}})
    with pytest.raises(ConfigError, match="'nope' is not in the configuration"):
        simulate([QueueConfig("q")], [], Load({"nope": QueueLoad(1, 1)}), hours=1, seed=0)
