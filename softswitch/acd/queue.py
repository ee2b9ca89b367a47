"""Queues: the calls in each queue and the indexes that make choosing fast.

Per queue and per relax step the engine keeps two heaps with lazy deletion:

* waiting calls filed by `(-priority, arrived_at, seq)`: best priority, then the longest wait since the call
  first arrived (an overflowed call keeps its place in time), then arrival order;
* available agents filed under the first step at which they qualify, ordered by the queue strategy's key.

A call at step s may take an agent filed under any step <= s; an agent filed under step k may take a call at
any step >= k. So choosing an agent for a call is a peek at (s + 1) heaps, and choosing a call for a newly
free agent is a peek at a few heaps per queue it serves — never a scan of all agents or all calls. Entries
go stale instead of being removed (a call's `hgen` or an agent's `token` moves on); heaps are rebuilt when
stale entries outnumber live ones. Positions ("you are number 3") come from per-priority sorted lists.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_left, insort
from collections.abc import Collection, Iterator
from enum import IntEnum, StrEnum

from .agent import BUSY_STATES, Agent, AgentStatus
from .config import QueueConfig
from .skills import Requirements
from .strategies import Strategy

__all__ = ["Call", "CallState", "QueueState", "Timer"]


class Timer(IntEnum):
    """Kinds of deadline in the engine's one timer heap."""

    RING = 0  # an offer rings out (per call and agent)
    WRAP = 1  # an agent's wrap-up ends
    RELAX = 2  # a waiting call reaches its next relax step
    OVERFLOW = 3
    MAX_WAIT = 4
    ANNOUNCE = 5
    RETRY = 6  # a new round of offers may ring agents rung before


#: The Call slot holding each call deadline (RING lives in Call.offers, WRAP on the agent).
_DEADLINE_SLOTS = {
    Timer.RELAX: "relax_at",
    Timer.OVERFLOW: "overflow_at",
    Timer.MAX_WAIT: "max_wait_at",
    Timer.ANNOUNCE: "announce_at",
    Timer.RETRY: "retry_at",
}
# Shared empties: most calls are never offered or only once, and an empty set costs 216 bytes per call.
_NO_OFFERS: dict[str, float] = {}
_NO_ONE: frozenset[str] = frozenset()


class CallState(StrEnum):
    WAITING = "waiting"
    #: Ringing one agent (or several, with ring_all).
    OFFERED = "offered"
    CONNECTED = "connected"
    ENDED = "ended"


class Call:
    """One caller in the ACD, from arrival to the end of the conversation. Engine-internal."""

    __slots__ = (
        "agent",
        "announce_at",
        "arrived_at",
        "caller",
        "connected_at",
        "entered_at",
        "explicit_priority",
        "hgen",
        "id",
        "max_wait_at",
        "offered_at",
        "offers",
        "overflow_at",
        "overflow_due",
        "priority",
        "queue",
        "relax_at",
        "retry_at",
        "seq",
        "state",
        "step",
        "timeout_due",
        "tried",
    )

    def __init__(
        self, call_id: str, queue: QueueState, *, caller: str | None, priority: int, explicit: bool,
        seq: int, now: float,
    ) -> None:
        self.id = call_id
        self.caller = caller
        self.queue = queue
        self.priority = priority
        self.explicit_priority = explicit
        #: First arrival in the ACD; orders calls across queues ("longest wait").
        self.arrived_at = now
        #: Arrival in the current queue; its relax, overflow, max-wait and announce timers count from here.
        self.entered_at = now
        self.seq = seq
        self.step = 0
        self.state = CallState.WAITING
        #: agent id -> ring_until for every agent ringing now (a shared empty dict until the first ring).
        self.offers: dict[str, float] = _NO_OFFERS
        self.offered_at = now
        #: The agent the call is connected to.
        self.agent: Agent | None = None
        self.connected_at = now
        #: Agents offered this call in the current round; the next agent is someone else.
        self.tried: set[str] | frozenset[str] = _NO_ONE
        #: Generation of this call's heap entry; bumped when it leaves waiting, changes step or queue.
        self.hgen = 0
        #: Deadlines by kind (see Timer); a heap entry is live while its time equals the one stored here.
        self.relax_at: float | None = None
        self.overflow_at: float | None = None
        self.max_wait_at: float | None = None
        self.announce_at: float | None = None
        self.retry_at: float | None = None
        #: An overflow / max-wait deadline passed while the call was ringing; applied if the ring fails.
        self.overflow_due = False
        self.timeout_due = False

    @property
    def order(self) -> tuple[int, float, int]:
        return (-self.priority, self.arrived_at, self.seq)

    def ring(self, agent_id: str, until: float) -> None:
        """Record an offer to `agent_id` ringing until `until`."""
        if self.offers is _NO_OFFERS:
            self.offers = {}
        if not isinstance(self.tried, set):
            self.tried = set()
        self.offers[agent_id] = until
        self.tried.add(agent_id)

    def untry(self, agent_id: str) -> None:
        """Forget that `agent_id` was rung this round (its ring ended through no fault of its own)."""
        if isinstance(self.tried, set):
            self.tried.discard(agent_id)

    def new_round(self) -> None:
        """Forget who was rung: every eligible agent may be offered the call again."""
        self.tried = _NO_ONE

    def deadline(self, kind: Timer) -> float | None:
        return getattr(self, _DEADLINE_SLOTS[kind])  # type: ignore[no-any-return]

    def set_deadline(self, kind: Timer, at: float | None) -> None:
        setattr(self, _DEADLINE_SLOTS[kind], at)

    def clear_deadlines(self) -> None:
        self.relax_at = self.overflow_at = self.max_wait_at = self.announce_at = self.retry_at = None

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.state} in {self.queue.name}>"


class QueueState:
    """One queue's configuration, calls and indexes. Engine-internal."""

    __slots__ = (
        "absent",
        "agent_heaps",
        "call_heaps",
        "calls",
        "config",
        "counts",
        "handle_ewma",
        "name",
        "offer_seq",
        "order",
        "qualified",
        "requirements",
        "retired",
        "strategy",
    )

    def __init__(self, config: QueueConfig, strategy: Strategy) -> None:
        self.config = config
        self.name = config.name
        self.strategy = strategy
        self.requirements = Requirements.build(config.skills, config.relax)
        steps = self.requirements.count
        self.call_heaps: list[list[tuple[int, float, int, int, Call]]] = [[] for _ in range(steps)]
        self.agent_heaps: list[list[tuple[tuple[float, ...], int, int, Agent]]] = [[] for _ in range(steps)]
        #: Number of agents filed under each step (bounds the live entries of agent_heaps[step]).
        self.qualified = [0] * steps
        #: Agents that can ever serve this queue, by state.
        self.counts: dict[AgentStatus, int] = dict.fromkeys(AgentStatus, 0)
        #: States that do not count as "someone there" for join_empty / leave_when_empty.
        absent = {AgentStatus.LOGGED_OUT}
        names = {
            "paused": {AgentStatus.PAUSED},
            "unreachable": {AgentStatus.UNREACHABLE},
            "wrap_up": {AgentStatus.WRAP_UP},
            "busy": set(BUSY_STATES),
            "logged_out": {AgentStatus.LOGGED_OUT},
        }
        for condition in config.empty_when:
            absent |= names[condition]
        self.absent = frozenset(absent)
        #: Calls in the queue (waiting or ringing), by id.
        self.calls: dict[str, Call] = {}
        #: priority -> sorted (arrived_at, seq) of the calls in the queue, for positions.
        self.order: dict[int, list[tuple[float, int]]] = {}
        #: Counts offers (round_robin remembers who was offered when).
        self.offer_seq = 0
        #: Moving average of talk + wrap-up, for the estimated wait.
        self.handle_ewma: float | None = None
        self.retired = False

    # -- membership and positions --------------------------------------------------------------------

    def add(self, call: Call) -> None:
        self.calls[call.id] = call
        insort(self.order.setdefault(call.priority, []), (call.arrived_at, call.seq))

    def remove(self, call: Call) -> None:
        if self.calls.pop(call.id, None) is None:
            return
        ordered = self.order[call.priority]
        index = bisect_left(ordered, (call.arrived_at, call.seq))
        if index < len(ordered) and ordered[index] == (call.arrived_at, call.seq):
            del ordered[index]
        if not ordered:
            del self.order[call.priority]

    def position(self, call: Call) -> int:
        """1 for the call that will be served next, counting every call in the queue (ringing ones too)."""
        ahead = sum(len(ordered) for priority, ordered in self.order.items() if priority > call.priority)
        ordered = self.order.get(call.priority, [])
        return ahead + bisect_left(ordered, (call.arrived_at, call.seq)) + 1

    def present(self) -> int:
        """Agents that can serve this queue and count as "there" (see QueueConfig.empty_when)."""
        return sum(count for status, count in self.counts.items() if status not in self.absent)

    def staffed(self) -> int:
        """Agents that can serve this queue and are working (not logged out, paused or unreachable)."""
        counts = self.counts
        return (
            counts[AgentStatus.AVAILABLE] + counts[AgentStatus.OFFERED] + counts[AgentStatus.ON_CALL]
            + counts[AgentStatus.DIRECT_CALL] + counts[AgentStatus.WRAP_UP]
        )

    # -- waiting calls ------------------------------------------------------------------------------------

    def file_call(self, call: Call) -> None:
        """File a waiting call under its step (call.hgen must have been bumped by the caller)."""
        heap = self.call_heaps[call.step]
        heapq.heappush(heap, (-call.priority, call.arrived_at, call.seq, call.hgen, call))
        if len(heap) > 2 * len(self.calls) + 64:
            heap[:] = [entry for entry in heap if _call_live(entry, self)]
            heapq.heapify(heap)

    def best_call(self, from_step: int, agent_id: str) -> tuple[int, float, int, int, Call] | None:
        """The best waiting call at a step >= from_step that `agent_id` has not been offered this round."""
        best = None
        for step in range(from_step, len(self.call_heaps)):
            heap = self.call_heaps[step]
            skipped = []
            while heap:
                entry = heap[0]
                if not _call_live(entry, self):
                    heapq.heappop(heap)
                elif agent_id in entry[4].tried:
                    skipped.append(heapq.heappop(heap))
                else:
                    if best is None or entry < best:
                        best = entry
                    break
            for entry in skipped:
                heapq.heappush(heap, entry)
        return best

    def waiting_calls(self) -> Iterator[Call]:
        return (call for call in self.calls.values() if call.state is CallState.WAITING)

    # -- available agents ---------------------------------------------------------------------------------

    def file_agent(self, agent: Agent, step: int, seq: int) -> None:
        heap = self.agent_heaps[step]
        heapq.heappush(heap, (self.strategy.key(agent, self.name), seq, agent.token, agent))
        if len(heap) > 2 * self.qualified[step] + 64:
            heap[:] = [entry for entry in heap if _agent_live(entry)]
            heapq.heapify(heap)

    def best_agent(self, step: int, exclude: Collection[str]) -> Agent | None:
        """The strategy's first choice among available agents qualified at `step`, skipping `exclude`."""
        best = None
        for index in range(step + 1):
            heap = self.agent_heaps[index]
            skipped = []
            while heap:
                entry = heap[0]
                if not _agent_live(entry):
                    heapq.heappop(heap)
                elif entry[3].id in exclude:
                    skipped.append(heapq.heappop(heap))
                else:
                    if best is None or entry < best:
                        best = entry
                    break
            for entry in skipped:
                heapq.heappush(heap, entry)
        return None if best is None else best[3]

    def sample_agent(self, step: int, exclude: Collection[str], rng: random.Random) -> Agent | None:
        """A uniformly random available agent qualified at `step`, not in `exclude`.

        Each available agent has exactly one live entry in this queue's heaps, so drawing entries uniformly
        and rejecting stale or excluded ones is a uniform draw among the candidates. After a few misses
        (mostly stale heaps) it lists the candidates instead.
        """
        heaps = self.agent_heaps[: step + 1]
        total = sum(len(heap) for heap in heaps)
        for _ in range(32 if total else 0):
            index = rng.randrange(total)
            for heap in heaps:
                if index < len(heap):
                    entry = heap[index]
                    break
                index -= len(heap)
            if _agent_live(entry) and entry[3].id not in exclude:
                return entry[3]
        candidates = self.candidates(step, exclude)
        return rng.choice(candidates) if candidates else None

    def candidates(self, step: int, exclude: Collection[str] = ()) -> list[Agent]:
        """Every available agent qualified at `step`, minus `exclude`, in roster order."""
        found: dict[str, Agent] = {}
        for index in range(step + 1):
            for entry in self.agent_heaps[index]:
                agent = entry[3]
                if _agent_live(entry) and agent.id not in exclude:
                    found[agent.id] = agent
        return sorted(found.values(), key=lambda agent: agent.index)

    def reset_heaps(self) -> None:
        for heap in self.call_heaps:
            heap.clear()
        for heap in self.agent_heaps:
            heap.clear()


def _call_live(entry: tuple[int, float, int, int, Call], queue: QueueState) -> bool:
    call = entry[4]
    return call.hgen == entry[3] and call.state is CallState.WAITING and call.queue is queue


def _agent_live(entry: tuple[tuple[float, ...], int, int, Agent]) -> bool:
    agent = entry[3]
    return agent.token == entry[2] and agent.status is AgentStatus.AVAILABLE
