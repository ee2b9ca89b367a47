"""Strategies: how a queue chooses among the eligible, available agents for a call.

Each strategy registers itself under the name the YAML uses. Most are a sort key: the engine keeps
available agents in per-queue heaps ordered by that key, so choosing is a peek, not a scan. The key must not
change while an agent stays available (it is computed when the agent becomes available). `random` and
`ring_all` need the whole candidate list and implement `choose` instead.

| name         | chooses                                                                           |
|--------------|-----------------------------------------------------------------------------------|
| longest_idle | the agent available for longest (since its last call, pause or login)             |
| least_calls  | fewest queue calls answered since the engine started, then longest idle           |
| round_robin  | the agent this queue offered a call to least recently (never offered: roster order)|
| ring_all     | every eligible available agent at once; the first to answer takes the call         |
| best_skill   | highest summed proficiency in the queue's required skills, then longest idle       |
| random       | uniformly among the candidates (with the engine's injected `random.Random`)        |

Ties always end on roster order, so a fixed seed gives a reproducible run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeVar

if TYPE_CHECKING:
    from .agent import Agent
    from .queue import Call

__all__ = [
    "Strategy",
    "UnknownStrategy",
    "create_strategy",
    "known_strategies",
    "register_strategy",
]

SortKey = tuple[float, ...]


class UnknownStrategy(ValueError):
    """A strategy name no one registered; the message lists the known ones."""


class Strategy:
    """Chooses an agent for a call. Override `key` (fast path) or `choose` (and set `ordered = False`)."""

    name: ClassVar[str] = ""
    #: The engine keeps candidates in heaps ordered by `key` and takes the smallest.
    ordered: ClassVar[bool] = True
    #: Offer the call to every candidate at once.
    rings_all: ClassVar[bool] = False
    #: `choose` is a uniform draw: the engine may sample its indexes instead of listing every candidate.
    uniform: ClassVar[bool] = False

    def __init__(self, *, rng: random.Random) -> None:
        self.rng = rng

    def key(self, agent: Agent, queue: str) -> SortKey:
        """Sort key of `agent` for `queue`; smaller is chosen first."""
        return (agent.index,)

    def choose(self, call: Call, candidates: Sequence[Agent], *, now: float) -> str | None:
        """The id of the agent to offer `call` to, or None to leave it waiting."""
        if not candidates:
            return None
        queue = call.queue.name
        return min(candidates, key=lambda agent: self.key(agent, queue)).id


_REGISTRY: dict[str, Callable[..., Strategy]] = {}
_S = TypeVar("_S", bound=type[Strategy])


def register_strategy(name: str, factory: Callable[..., Strategy]) -> None:
    """Make `name` usable in `queues[].strategy`; `factory(rng=...)` builds one per queue."""
    _REGISTRY[name] = factory


def known_strategies() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def create_strategy(name: str, *, rng: random.Random) -> Strategy:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownStrategy(
            f"Unknown ACD strategy {name!r} (known: {', '.join(known_strategies())})"
        ) from None
    return factory(rng=rng)


def _registered(cls: _S) -> _S:
    register_strategy(cls.name, cls)
    return cls


@_registered
class LongestIdle(Strategy):
    name = "longest_idle"

    def key(self, agent: Agent, queue: str) -> SortKey:
        return (agent.idle_since, agent.index)


@_registered
class LeastCalls(Strategy):
    name = "least_calls"

    def key(self, agent: Agent, queue: str) -> SortKey:
        return (agent.answered, agent.idle_since, agent.index)


@_registered
class RoundRobin(Strategy):
    # Asterisk's rrmemory resumes after the member rung last; "least recently offered by this queue" is the
    # same rotation and needs no pointer into a roster that reloads can change.
    name = "round_robin"

    def key(self, agent: Agent, queue: str) -> SortKey:
        return (agent.last_offered.get(queue, -1), agent.index)


@_registered
class BestSkill(Strategy):
    name = "best_skill"

    def key(self, agent: Agent, queue: str) -> SortKey:
        return (-agent.score.get(queue, 0), agent.idle_since, agent.index)


@_registered
class Random(Strategy):
    name = "random"
    ordered = False
    uniform = True

    def choose(self, call: Call, candidates: Sequence[Agent], *, now: float) -> str | None:
        if not candidates:
            return None
        ordered = sorted(candidates, key=lambda agent: agent.index)
        return self.rng.choice(ordered).id


@_registered
class RingAll(Strategy):
    name = "ring_all"
    ordered = False
    rings_all = True
