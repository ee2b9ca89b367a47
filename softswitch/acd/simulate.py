"""Capacity planning: the real ACD engine on a simulated clock against a described load.

`simulate(queues, agents, load, hours=..., seed=...)` runs `AcdEngine` event by event (no wall clock, no
network, no audio): Poisson arrivals per queue, exponential handle times and patience, every agent of the
roster logged in from time 0. A simulated agent answers an offer at once, or after the queue's
`answer_delay`. The load's `wrap_up`, when given, replaces the queue's configured wrap-up (what-if planning);
agents stay in wrap-up for the whole of it. The figures are the ones `stats.py` computes from the engine's own
records, so the simulator and the live reports cannot disagree on a definition.

`erlang_c(arrival_rate, service_time, agents)` is the textbook M/M/c result (probability of waiting, average
speed of answer, service level), the referee the tests hold the engine to: one queue, Poisson arrivals,
exponential handle times, no abandonment, c identical agents.

Reading `load.yaml` and printing belong to the CLI (`softswitch simulate`); `Load.from_dict` takes the parsed
YAML and `SimulationResult.as_dict()` / `format_table()` give the output.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .actions import CancelOffer, ConnectCall, ExitTo, OfferCall, Overflow, TimeOut
from .config import AgentConfig, ConfigError, QueueConfig
from .engine import AcdEngine
from .stats import StatsCollector

__all__ = [
    "ErlangC",
    "Load",
    "QueueLoad",
    "QueueResult",
    "SimulationResult",
    "erlang_c",
    "simulate",
]

RESULT_KEYS = ("offered", "answered", "abandoned", "p_wait", "service_level", "asa", "aht", "occupancy")


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """The traffic offered to one queue (`load.yaml`: `queues: {NAME: {...}}`)."""

    arrivals_per_hour: float
    #: Mean talk time in seconds (exponential).
    handle_time: float
    #: Seconds of wrap-up after each call; None keeps the queue's configured `wrap_up`.
    wrap_up: float | None = None
    #: Mean seconds a caller waits before hanging up (exponential); None: callers never give up.
    patience: float | None = None
    #: Seconds an agent's phone rings before the agent answers; None: at once.
    answer_delay: float | None = None

    def __post_init__(self) -> None:
        for name in ("arrivals_per_hour", "handle_time", "wrap_up", "patience", "answer_delay"):
            value = getattr(self, name)
            if value is None and name not in ("arrivals_per_hour", "handle_time"):
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise ConfigError(f"load: {name} must be a number >= 0, got {value!r}")
        if self.handle_time <= 0:
            raise ConfigError("load: handle_time must be > 0")
        if self.patience is not None and self.patience <= 0:
            raise ConfigError("load: patience must be > 0 or null")


@dataclass(frozen=True, slots=True)
class Load:
    queues: Mapping[str, QueueLoad]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Load:
        """From the parsed `load.yaml`: `{"queues": {NAME: {arrivals_per_hour: ..., handle_time: ...}}}`."""
        queues = raw.get("queues")
        if not isinstance(queues, Mapping) or not queues:
            raise ConfigError("load: expected a non-empty 'queues' mapping")
        known = set(QueueLoad.__dataclass_fields__)
        result: dict[str, QueueLoad] = {}
        for name, values in queues.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"load: queues.{name} must be a mapping")
            unknown = set(values) - known
            if unknown:
                raise ConfigError(
                    f"load: queues.{name}: unknown keys {sorted(unknown)} (known: {sorted(known)})"
                )
            try:
                result[str(name)] = QueueLoad(**values)
            except TypeError as error:
                raise ConfigError(f"load: queues.{name}: {error}") from None
        return cls(result)


@dataclass(frozen=True, slots=True)
class QueueResult:
    offered: int
    answered: int
    abandoned: int
    p_wait: float | None
    service_level: float | None
    asa: float | None
    aht: float | None
    occupancy: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {key: getattr(self, key) for key in RESULT_KEYS}


@dataclass(frozen=True, slots=True)
class SimulationResult:
    hours: float
    seed: int
    queues: Mapping[str, QueueResult]

    def as_dict(self) -> dict[str, dict[str, float | int | None]]:
        """`--json`: one object per queue with the keys offered, answered, abandoned, p_wait, service_level,
        asa, aht, occupancy."""
        return {name: result.as_dict() for name, result in self.queues.items()}

    def format_table(self) -> str:
        def cell(value: float | int | None, kind: str) -> str:
            if value is None:
                return "-"
            if kind == "share":
                return f"{100 * value:.1f}%"
            if kind == "seconds":
                return f"{value:.1f}s"
            return str(value)

        columns = [
            ("queue", "name"), ("offered", "count"), ("answered", "count"), ("abandoned", "count"),
            ("p_wait", "share"), ("service_level", "share"), ("asa", "seconds"), ("aht", "seconds"),
            ("occupancy", "share"),
        ]
        rows = [[title for title, _ in columns]]
        for name, result in self.queues.items():
            rows.append([name] + [cell(getattr(result, title), kind) for title, kind in columns[1:]])
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        lines = [
            "  ".join(text.ljust(width) if i == 0 else text.rjust(width) for i, (text, width) in
                      enumerate(zip(row, widths, strict=True)))
            for row in rows
        ]
        return "\n".join([f"simulated {self.hours:g} h, seed {self.seed}", *lines])


def simulate(
    queues: Sequence[QueueConfig],
    agents: Sequence[AgentConfig],
    load: Load,
    *,
    hours: float,
    seed: int,
    warmup: float = 0.0,
) -> SimulationResult:
    """Run the engine for `hours` of simulated time; figures count from `warmup` seconds on."""
    by_name = {queue.name: queue for queue in queues}
    for name in load.queues:
        if name not in by_name:
            known = ", ".join(by_name)
            raise ConfigError(f"load: queue {name!r} is not in the configuration (queues: {known})")
    configs = [
        replace(queue, wrap_up=load.queues[queue.name].wrap_up)
        if queue.name in load.queues and load.queues[queue.name].wrap_up is not None
        else queue
        for queue in queues
    ]
    rng = random.Random(seed)
    engine = AcdEngine(configs, agents, rng=random.Random(f"{seed}/engine"), live_stats=False)
    stats = StatsCollector(service_levels={q.name: q.service_level for q in configs}, since=warmup)
    end = hours * 3600.0
    run = _Run(engine, stats, load, rng)
    for agent in agents:
        engine.agent_login(agent.id, now=0.0)
    for name, queue_load in load.queues.items():
        if queue_load.arrivals_per_hour > 0:
            run.push(rng.expovariate(queue_load.arrivals_per_hour / 3600.0), "arrive", name, None)
    run.drain(0.0)
    while True:
        next_event = run.events[0][0] if run.events else math.inf
        deadline = engine.next_deadline()
        now = min(next_event, math.inf if deadline is None else deadline)
        if now > end:
            break
        if deadline is not None and deadline <= next_event:
            engine.handle_timer(now=deadline)
        else:
            _at, _seq, kind, subject, agent = heapq.heappop(run.events)
            run.handle(kind, subject, agent, now)
        run.drain(now)

    results: dict[str, QueueResult] = {}
    agent_figures = {agent.id: stats.agent(agent.id, now=end) for agent in agents}
    for name in by_name:
        figures = stats.queue(name, now=end)
        busy = available = 0.0
        for agent_id in engine.agents_serving(name):
            busy += agent_figures[agent_id].busy_time
            available += agent_figures[agent_id].available_time
        results[name] = QueueResult(
            offered=figures.offered,
            answered=figures.answered,
            abandoned=figures.abandoned,
            p_wait=figures.p_wait,
            service_level=figures.service_level,
            asa=figures.asa,
            aht=figures.aht,
            occupancy=busy / (busy + available) if busy + available > 0 else None,
        )
    return SimulationResult(hours=hours, seed=seed, queues=results)


class _Run:
    """The simulated world around the engine: callers and agents' phones."""

    def __init__(self, engine: AcdEngine, stats: StatsCollector, load: Load, rng: random.Random) -> None:
        self.engine = engine
        self.stats = stats
        self.load = load
        self.rng = rng
        self.events: list[tuple[float, int, str, str, str | None]] = []
        self.seq = 0
        self.count = 0
        #: call -> queue it is in now (overflows move it)
        self.queue_of: dict[str, str] = {}
        self.connected: set[str] = set()
        self.ringing: set[tuple[str, str]] = set()
        #: call -> its talk time, drawn when it arrived
        self.talk: dict[str, float] = {}

    def push(self, at: float, kind: str, subject: str, agent: str | None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, subject, agent))

    def handle(self, kind: str, subject: str, agent: str | None, now: float) -> None:
        engine = self.engine
        if kind == "arrive":
            queue_load = self.load.queues[subject]
            gap = self.rng.expovariate(queue_load.arrivals_per_hour / 3600.0)
            self.push(now + gap, "arrive", subject, None)
            self.count += 1
            call = f"{subject}#{self.count}"
            self.queue_of[call] = subject
            # Drawn at arrival, so a run's random stream does not depend on who answers when.
            self.talk[call] = self.rng.expovariate(1.0 / queue_load.handle_time)
            if queue_load.patience is not None:
                self.push(now + self.rng.expovariate(1.0 / queue_load.patience), "abandon", call, None)
            engine.call_arrived(call, subject, now=now)
        elif kind == "abandon":
            if subject in self.queue_of and subject not in self.connected:
                engine.caller_abandoned(subject, now=now)
                self.forget(subject)
        elif kind == "answer":
            assert agent is not None
            if (subject, agent) in self.ringing:
                engine.offer_answered(subject, agent, now=now)
        elif kind == "hang_up":
            if subject in self.connected:
                engine.call_ended(subject, by="agent", now=now)
                self.forget(subject)

    def forget(self, call: str) -> None:
        self.queue_of.pop(call, None)
        self.connected.discard(call)
        self.talk.pop(call, None)

    def drain(self, now: float) -> None:
        engine = self.engine
        while True:
            actions = engine.actions()
            self.stats.extend(engine.records())
            if not actions:
                return
            for action in actions:
                match action:
                    case OfferCall(call, agent, _ring_until):
                        self.ringing.add((call, agent))
                        queue = self.queue_of.get(call)
                        delay = self.load.queues[queue].answer_delay if queue in self.load.queues else None
                        if delay:
                            self.push(now + delay, "answer", call, agent)
                        elif call not in self.connected:
                            engine.offer_answered(call, agent, now=now)
                    case CancelOffer(call, agent, _reason):
                        self.ringing.discard((call, agent))
                    case ConnectCall(call, agent):
                        self.ringing.discard((call, agent))
                        self.connected.add(call)
                        self.push(now + self.talk.pop(call), "hang_up", call, None)
                    case Overflow(call, to_queue, _from):
                        self.queue_of[call] = to_queue
                    case TimeOut(call) | ExitTo(call):
                        self.forget(call)
                    case _:
                        pass


@dataclass(frozen=True, slots=True)
class ErlangC:
    """M/M/c waiting figures; times in the unit of `service_time`."""

    agents: int
    offered_load: float
    p_wait: float
    asa: float
    service_time: float

    @property
    def occupancy(self) -> float:
        return min(1.0, self.offered_load / self.agents)

    def service_level(self, target: float) -> float:
        """Share of calls answered within `target`: 1 - P(wait) * exp(-(c - A) * target / service_time)."""
        if self.offered_load >= self.agents:
            return 0.0
        return 1.0 - self.p_wait * math.exp(-(self.agents - self.offered_load) * target / self.service_time)


def erlang_c(arrival_rate: float, service_time: float, agents: int) -> ErlangC:
    """Probability of waiting and ASA for Poisson arrivals (`arrival_rate` per time unit), exponential
    service (mean `service_time`) and `agents` servers. An overloaded system (A >= c) waits for ever."""
    if agents < 1 or arrival_rate < 0 or service_time <= 0:
        raise ValueError("erlang_c needs agents >= 1, arrival_rate >= 0 and service_time > 0")
    load = arrival_rate * service_time
    if load >= agents:
        return ErlangC(agents, load, 1.0, math.inf, service_time)
    blocking = 1.0  # Erlang B by its stable recurrence: B(k) = A B(k-1) / (k + A B(k-1))
    for k in range(1, agents + 1):
        blocking = load * blocking / (k + load * blocking)
    p_wait = agents * blocking / (agents - load * (1.0 - blocking))
    return ErlangC(agents, load, p_wait, p_wait * service_time / (agents - load), service_time)
