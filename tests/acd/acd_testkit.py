"""Small helpers shared by the ACD tests: build an engine with literal times, pick actions by type."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from softswitch.acd import AcdEngine, AgentConfig, QueueConfig
from softswitch.acd.actions import Action, QueueEvent, QueueEventKind, Record

T = TypeVar("T")


def engine_with(
    queues: Iterable[QueueConfig],
    agents: Iterable[AgentConfig],
    *,
    login: Iterable[str] | None = None,
    at: float = 0.0,
) -> AcdEngine:
    """An engine with `login` (default: every agent) logged in at time `at`; actions and records drained."""
    agent_list = list(agents)
    engine = AcdEngine(list(queues), agent_list)
    for agent_id in login if login is not None else [a.id for a in agent_list]:
        engine.agent_login(agent_id, now=at)
    engine.actions()
    engine.records()
    return engine


def only(actions: Iterable[Action], kind: type[T]) -> list[T]:
    return [action for action in actions if isinstance(action, kind)]


def kinds(records: Iterable[Record]) -> list[QueueEventKind]:
    return [record.kind for record in records if isinstance(record, QueueEvent)]


def run_until(engine: AcdEngine, until: float) -> list[Action]:
    """Run every deadline up to `until`, returning the actions produced."""
    actions: list[Action] = []
    while (deadline := engine.next_deadline()) is not None and deadline <= until:
        engine.handle_timer(now=deadline)
        actions.extend(engine.actions())
    return actions
