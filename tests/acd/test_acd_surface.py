"""The package's edges: imports only the standard library, every event dispatches, the snapshot reads well."""

from __future__ import annotations

import ast
import sys
import typing
from pathlib import Path

from acd_testkit import engine_with

import softswitch.acd
from softswitch.acd import AgentConfig, AgentStatus, QueueConfig
from softswitch.acd.config import AgentConfig as ConfigAgent
from softswitch.acd.events import (
    AcdEvent,
    AgentDirectCall,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentReachability,
    AgentResumed,
    CallArrived,
    CallEnded,
    CallerAbandoned,
    ConfigReloaded,
    DtmfReceived,
    OfferAnswered,
    OfferFailed,
    OfferWithdrawn,
    Reconciled,
    TimePassed,
    WrapUpEnded,
)

PACKAGE = Path(softswitch.acd.__file__).parent


def test_acd_imports_only_the_standard_library():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level > 0:
                    continue  # within acd
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names, f"{path.name} imports {module}"


def test_every_event_type_is_dispatched_by_handle():
    engine = engine_with([QueueConfig("q", exit_key="0", exit_to="vm")], [AgentConfig("a")], login=[])
    events = [
        AgentLoggedIn("a"),
        CallArrived("c1", "q", caller="+371"),
        OfferFailed("c1", "a", "rejected"),
        TimePassed(),
        OfferWithdrawn("c1", "a", "answered_elsewhere_failed"),
        TimePassed(),
        AgentPaused("a", "lunch"),
        AgentResumed("a"),
        OfferAnswered("c1", "a"),
        CallEnded("c1", "caller"),
        WrapUpEnded("a"),
        CallArrived("c2", "q"),
        DtmfReceived("c2", "0"),
        AgentDirectCall("a", True),
        AgentReachability("a", False),
        Reconciled({}, {"a"}),
        ConfigReloaded((QueueConfig("q"),), (ConfigAgent("a"),)),
        CallerAbandoned("nobody"),
        AgentLoggedOut("a"),
    ]
    assert {type(event) for event in events} == set(typing.get_args(AcdEvent))
    for t, event in enumerate(events):
        engine.handle(event, now=float(t))
    assert engine.agent_status("a") is AgentStatus.LOGGED_OUT
    try:
        engine.handle("not an event", now=99.0)  # type: ignore[arg-type]
    except TypeError as error:
        assert "not an ACD event" in str(error)
    else:
        raise AssertionError("handle accepted a string")


def test_snapshot_counts_agents_by_state_per_queue():
    queue = QueueConfig("q", skills={"x": 1})
    agents = [AgentConfig(n, {"x": 1}) for n in "abcd"] + [AgentConfig("other", {"y": 1})]
    engine = engine_with([queue], agents, login=["a", "b", "c", "other"])
    engine.agent_pause("c", "lunch", now=1.0)
    engine.call_arrived("c1", "q", now=2.0)
    engine.offer_answered("c1", "a", now=3.0)
    engine.call_arrived("c2", "q", now=4.0)
    engine.call_arrived("c3", "q", now=5.0)
    view = engine.snapshot(now=10.0)
    q = view.queues["q"]
    assert (q.available, q.busy, q.paused, q.logged_in) == (0, 2, 1, 3)
    assert (q.waiting, q.ringing, q.longest_wait) == (1, 1, 6.0)
    assert view.agents["c"].pause_reason == "lunch" and view.agents["a"].call == "c1"
    assert view.calls["c3"].position == 2 and view.calls["c2"].agents == ("b",)
    assert "other" in view.agents and q.agents[AgentStatus.LOGGED_OUT] == 1
