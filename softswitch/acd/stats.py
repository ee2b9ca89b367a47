"""Statistics from the ACD's records: service level, answer speed, handle time, abandonment, occupancy.

`StatsCollector` folds `QueueEvent` and `AgentStateChanged` records one at a time, in time order, keeping
only running sums and the calls still in a queue, so the engine can feed it live (for `snapshot()`) and a
report can feed it a day's rows from the store. Outcome events count when they fall inside `[since, until)`;
agent state time is clipped to that window.

Definitions (per queue):

* offered: calls that entered the queue (arrivals and overflows in); calls refused at the door
  (full, join_empty) are `refused` instead;
* finished: calls whose stay in the queue ended other than by overflow — answered, abandoned, timed out,
  left by key or because the queue emptied. A call that overflows is counted by the queue that finishes it;
* service level: answered within `service_level` seconds / finished;
* ASA: mean wait of answered calls, from entering this queue to the agent answering;
* AHT: mean talk time plus wrap-up time per completed call;
* abandonment rate: abandoned / finished;
* p_wait: share of finished calls that were not offered to an agent the moment they entered;
* occupancy (per agent): time offered, on a call, on a direct call or in wrap-up over that time plus time
  available. Paused, unreachable and logged-out time count in neither.

Times are the engine's seconds; reports by an agent's calendar day convert with the agent's time zone before
choosing `since` and `until`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .actions import AgentStateChanged, QueueEvent, QueueEventKind, Record
from .agent import AgentStatus

__all__ = ["AgentFigures", "QueueFigures", "StatsCollector"]

_FINISH = {
    QueueEventKind.CONNECT: "answered",
    QueueEventKind.ABANDON: "abandoned",
    QueueEventKind.TIMEOUT: "timed_out",
    QueueEventKind.EXIT_KEY: "exited",
    QueueEventKind.EXIT_EMPTY: "exited",
}
_BUSY = frozenset(
    {AgentStatus.OFFERED, AgentStatus.ON_CALL, AgentStatus.DIRECT_CALL, AgentStatus.WRAP_UP}
)


@dataclass(frozen=True, slots=True)
class QueueFigures:
    queue: str
    offered: int
    answered: int
    abandoned: int
    timed_out: int
    exited: int
    overflowed: int
    refused: int
    answered_within_sl: int
    service_level: float | None
    asa: float | None
    aht: float | None
    avg_talk: float | None
    abandonment_rate: float | None
    p_wait: float | None
    #: Longest wait of a call that finished in the window.
    longest_wait: float
    #: Calls in the queue now (live).
    waiting: int
    #: Longest current wait (live; needs `now`).
    longest_waiting: float


@dataclass(frozen=True, slots=True)
class AgentFigures:
    agent: str
    calls_handled: int
    talk_time: float
    wrap_up_time: float
    missed_offers: int
    logged_in_time: float
    available_time: float
    busy_time: float
    paused_time: float
    unreachable_time: float
    occupancy: float | None
    paused_by_reason: Mapping[str, float] = field(default_factory=dict)


class _QueueSums:
    __slots__ = (
        "abandoned",
        "answered",
        "exited",
        "finished",
        "handled",
        "longest",
        "offered",
        "overflowed",
        "refused",
        "sl",
        "talk",
        "timed_out",
        "wait_sum",
        "waited",
        "wrap",
    )

    def __init__(self) -> None:
        self.offered = self.answered = self.abandoned = self.timed_out = self.exited = 0
        self.overflowed = self.refused = self.sl = self.finished = self.waited = self.handled = 0
        self.wait_sum = self.talk = self.wrap = self.longest = 0.0


class _AgentSums:
    __slots__ = ("handled", "missed", "pause_reason", "paused_by", "since", "status", "talk", "time", "wrap")

    def __init__(self) -> None:
        self.handled = self.missed = 0
        self.talk = self.wrap = 0.0
        self.time: dict[AgentStatus, float] = dict.fromkeys(AgentStatus, 0.0)
        self.paused_by: dict[str, float] = {}
        self.status = AgentStatus.LOGGED_OUT
        self.pause_reason = ""
        self.since: float | None = None


class StatsCollector:
    """Running figures per queue and per agent from the record stream."""

    def __init__(
        self,
        *,
        service_levels: Mapping[str, float] | None = None,
        default_service_level: float = 20.0,
        since: float | None = None,
        until: float | None = None,
    ) -> None:
        self.service_levels = dict(service_levels or {})
        self.default_service_level = default_service_level
        self.since = -math.inf if since is None else since
        self.until = math.inf if until is None else until
        self._queues: dict[str, _QueueSums] = {}
        self._agents: dict[str, _AgentSums] = {}
        #: call id -> (queue, entered_at, offered at once on entry) for calls in a queue now
        self._inflight: dict[str, tuple[str, float, bool | None]] = {}
        #: queue -> {call id: entered_at} (the same calls, by queue)
        self._waiting: dict[str, dict[str, float]] = {}

    # -- feeding ------------------------------------------------------------------------------------

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record)

    def add(self, record: Record) -> None:
        if isinstance(record, QueueEvent):
            self._queue_event(record)
        else:
            self._agent_state(record)

    def _inside(self, at: float) -> bool:
        return self.since <= at < self.until

    def _queue(self, name: str) -> _QueueSums:
        sums = self._queues.get(name)
        if sums is None:
            sums = self._queues[name] = _QueueSums()
        return sums

    def _agent(self, agent_id: str) -> _AgentSums:
        sums = self._agents.get(agent_id)
        if sums is None:
            sums = self._agents[agent_id] = _AgentSums()
        return sums

    def _queue_event(self, event: QueueEvent) -> None:
        kind = event.kind
        inside = self._inside(event.at)
        if kind is QueueEventKind.ENTER:
            assert event.call is not None and event.queue is not None
            self._inflight[event.call] = (event.queue, event.at, None)
            self._waiting.setdefault(event.queue, {})[event.call] = event.at
            if inside:
                self._queue(event.queue).offered += 1
            return
        if kind is QueueEventKind.OFFER:
            state = self._inflight.get(event.call or "")
            if state is not None and state[2] is None:
                self._inflight[event.call or ""] = (state[0], state[1], (event.wait or 0.0) <= 1e-9)
            if inside and event.agent is not None:
                self._agent(event.agent)
            return
        if kind in (QueueEventKind.RING_NO_ANSWER, QueueEventKind.OFFER_REJECTED):
            if inside and event.agent is not None:
                self._agent(event.agent).missed += 1
            return
        if kind in (QueueEventKind.FULL,) or (
            kind is QueueEventKind.EXIT_EMPTY and event.detail == "join_empty"
        ):
            if inside and event.queue is not None:
                self._queue(event.queue).refused += 1
            return
        if kind is QueueEventKind.OVERFLOW:
            self._leave(event.call)
            if inside and event.queue is not None:
                self._queue(event.queue).overflowed += 1
            return
        outcome = _FINISH.get(kind)
        if outcome is not None:
            state = self._leave(event.call)
            if not inside or event.queue is None:
                return
            sums = self._queue(event.queue)
            wait = event.wait or 0.0
            setattr(sums, outcome, getattr(sums, outcome) + 1)
            sums.finished += 1
            sums.longest = max(sums.longest, wait)
            if state is None or not state[2]:
                sums.waited += 1
            if kind is QueueEventKind.CONNECT:
                sums.wait_sum += wait
                threshold = self.service_levels.get(event.queue, self.default_service_level)
                if wait <= threshold:
                    sums.sl += 1
            return
        if kind in (QueueEventKind.COMPLETE_AGENT, QueueEventKind.COMPLETE_CALLER):
            if not inside:
                return
            talk = event.duration or 0.0
            if event.queue is not None:
                sums = self._queue(event.queue)
                sums.handled += 1
                sums.talk += talk
            if event.agent is not None:
                agent = self._agent(event.agent)
                agent.handled += 1
                agent.talk += talk
            return
        if kind is QueueEventKind.WRAP_UP:
            if not inside:
                return
            if event.queue is not None:
                self._queue(event.queue).wrap += event.duration or 0.0
            if event.agent is not None:
                self._agent(event.agent).wrap += event.duration or 0.0

    def _leave(self, call: str | None) -> tuple[str, float, bool | None] | None:
        state = self._inflight.pop(call or "", None)
        if state is not None:
            waiting = self._waiting[state[0]]
            waiting.pop(call or "", None)
            if not waiting:
                del self._waiting[state[0]]
        return state

    def _agent_state(self, change: AgentStateChanged) -> None:
        sums = self._agent(change.agent)
        if sums.since is not None:
            self._accrue(sums, sums.since, change.at)
        sums.status = change.new
        sums.pause_reason = change.reason if change.new is AgentStatus.PAUSED else ""
        sums.since = change.at

    def _accrue(self, sums: _AgentSums, start: float, end: float) -> None:
        start = max(start, self.since)
        end = min(end, self.until)
        if end <= start:
            return
        sums.time[sums.status] += end - start
        if sums.status is AgentStatus.PAUSED:
            sums.paused_by[sums.pause_reason] = sums.paused_by.get(sums.pause_reason, 0.0) + end - start

    # -- reading ------------------------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        return sorted(set(self._queues) | set(self._waiting))

    def queue(self, name: str, *, now: float | None = None) -> QueueFigures:
        sums = self._queues.get(name) or _QueueSums()
        waiting = self._waiting.get(name, {})
        longest_waiting = 0.0
        if now is not None and waiting:
            longest_waiting = now - min(waiting.values())
        finished = sums.finished
        return QueueFigures(
            queue=name,
            offered=sums.offered,
            answered=sums.answered,
            abandoned=sums.abandoned,
            timed_out=sums.timed_out,
            exited=sums.exited,
            overflowed=sums.overflowed,
            refused=sums.refused,
            answered_within_sl=sums.sl,
            service_level=sums.sl / finished if finished else None,
            asa=sums.wait_sum / sums.answered if sums.answered else None,
            aht=(sums.talk + sums.wrap) / sums.handled if sums.handled else None,
            avg_talk=sums.talk / sums.handled if sums.handled else None,
            abandonment_rate=sums.abandoned / finished if finished else None,
            p_wait=sums.waited / finished if finished else None,
            longest_wait=sums.longest,
            waiting=len(waiting),
            longest_waiting=max(0.0, longest_waiting),
        )

    def queues(self, *, now: float | None = None) -> dict[str, QueueFigures]:
        return {name: self.queue(name, now=now) for name in self.queue_names()}

    def agent(self, agent_id: str, *, now: float | None = None) -> AgentFigures:
        sums = self._agents.get(agent_id) or _AgentSums()
        time = dict(sums.time)
        paused_by = dict(sums.paused_by)
        if now is not None and sums.since is not None:
            start, end = max(sums.since, self.since), min(now, self.until)
            if end > start:
                time[sums.status] += end - start
                if sums.status is AgentStatus.PAUSED:
                    paused_by[sums.pause_reason] = paused_by.get(sums.pause_reason, 0.0) + end - start
        busy = sum(time[status] for status in _BUSY)
        available = time[AgentStatus.AVAILABLE]
        logged_in = sum(value for status, value in time.items() if status is not AgentStatus.LOGGED_OUT)
        return AgentFigures(
            agent=agent_id,
            calls_handled=sums.handled,
            talk_time=sums.talk,
            wrap_up_time=sums.wrap,
            missed_offers=sums.missed,
            logged_in_time=logged_in,
            available_time=available,
            busy_time=busy,
            paused_time=time[AgentStatus.PAUSED],
            unreachable_time=time[AgentStatus.UNREACHABLE],
            occupancy=busy / (busy + available) if busy + available > 0 else None,
            paused_by_reason=paused_by,
        )

    def agents(self, *, now: float | None = None) -> dict[str, AgentFigures]:
        return {agent_id: self.agent(agent_id, now=now) for agent_id in sorted(self._agents)}
