"""The ACD engine: a sans-IO decision core for queues, agents, skills and strategies.

Inputs are method calls with a keyword-only `now` (or `handle(event, now=...)` with an `events` dataclass);
outputs are `actions()` (commands for the call flow), `records()` (queue events and agent state changes for
the store) and `next_deadline()`; `handle_timer(now=...)` runs what is due. No sockets, files, threads,
clocks or asyncio: the same engine runs live, in `softswitch simulate` and in hypothesis tests.

How a decision is made. After every input the engine settles. First each agent that became available takes
the best waiting call it may serve, across every queue: highest priority, then longest wait since first
arrival. Then each call that became waiting, best first, looks for an agent: the queue's strategy among the
eligible, available agents it has not rung this round. Both look-ups are heap peeks (see `queue.py`). The
resulting invariant, checked by the property tests: no waiting call and available agent that could take it
are left apart, except an agent the call rang this round, which may take it again once the queue's `retry`
has passed (that deadline is always set).

Every agent state has an exit (see `agent.py`): offers time out at `ring_until`; a call that vanishes, a
lost BYE or CANCEL, a phone that loses its binding, an answer racing a hang-up are each an input or a
deadline with a defined result; `reconcile()` compares the engine with the switch's live calls and bindings
and repairs what disagrees. After a restart the engine starts empty; the switch logs agents back in.

Not here: routing a dialled number to a queue, media, persistence, wall-clock time (all in the layers above).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from .actions import (
    Action,
    AgentStateChanged,
    AnnouncePosition,
    CancelOffer,
    ConnectCall,
    ExitTo,
    OfferCall,
    Overflow,
    PauseAgent,
    PlayPrompt,
    QueueEvent,
    QueueEventKind,
    Record,
    Repair,
    StartMusicOnHold,
    TimeOut,
)
from .agent import Agent, AgentStatus
from .config import AgentConfig, QueueConfig, check_roster
from .events import (
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
from .queue import Call, CallState, QueueState
from .queue import Timer as _Timer
from .skills import proficiency_score
from .stats import AgentFigures, QueueFigures, StatsCollector
from .strategies import create_strategy

__all__ = [
    "AUTO_PAUSE_REASON",
    "AcdEngine",
    "AcdSnapshot",
    "Ack",
    "AgentSnapshot",
    "CallSnapshot",
    "QueueSnapshot",
]

#: Pause reason code of an auto-pause after `max_missed` missed offers.
AUTO_PAUSE_REASON = "missed_offers"
#: Weight of the newest call in the moving average of handle time used for estimated waits.
_EWMA_WEIGHT = 0.2
_WORKING = (AgentStatus.OFFERED, AgentStatus.ON_CALL, AgentStatus.DIRECT_CALL, AgentStatus.WRAP_UP)
_FAILURE_KINDS = {
    "no_answer": QueueEventKind.RING_NO_ANSWER,
    "rejected": QueueEventKind.OFFER_REJECTED,
    "unreachable": QueueEventKind.OFFER_UNREACHABLE,
}


class Ack(StrEnum):
    """Answer to an agent command (the call flow turns it into a confirmation prompt, the CLI into text)."""

    DONE = "done"
    #: Accepted; takes effect when the agent's current call ends (logout during a call).
    PENDING = "pending"
    #: Nothing to do: already in that state.
    NO_CHANGE = "no_change"
    NOT_LOGGED_IN = "not_logged_in"
    UNKNOWN_AGENT = "unknown_agent"


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    name: str
    waiting: int
    ringing: int
    longest_wait: float
    #: Agents who can serve the queue, by state.
    agents: Mapping[AgentStatus, int]
    #: Figures since the engine started (see stats.py for the definitions).
    figures: QueueFigures
    retired: bool = False

    @property
    def available(self) -> int:
        return self.agents.get(AgentStatus.AVAILABLE, 0)

    @property
    def busy(self) -> int:
        """Ringing, on a queue call, on a direct call or in wrap-up."""
        return sum(self.agents.get(status, 0) for status in _WORKING)

    @property
    def paused(self) -> int:
        return self.agents.get(AgentStatus.PAUSED, 0)

    @property
    def logged_in(self) -> int:
        return sum(count for status, count in self.agents.items() if status is not AgentStatus.LOGGED_OUT)


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    id: str
    name: str
    status: AgentStatus
    since: float
    pause_reason: str | None
    call: str | None
    queue: str | None
    wrap_up_until: float | None
    misses: int
    figures: AgentFigures


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    id: str
    queue: str
    caller: str | None
    priority: int
    state: CallState
    arrived_at: float
    entered_at: float
    position: int | None
    step: int
    #: Agents ringing now, or the agent talking.
    agents: tuple[str, ...]
    #: Agents offered this call in the current round (they are tried again only after `retry`).
    rung: tuple[str, ...] = ()
    #: When the next round starts (the rung agents may be offered the call again).
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class AcdSnapshot:
    at: float
    queues: Mapping[str, QueueSnapshot]
    agents: Mapping[str, AgentSnapshot]
    calls: Mapping[str, CallSnapshot]


class AcdEngine:
    """Queues, agents and calls; decisions out as actions. All methods take a keyword-only `now`.

    >>> engine = AcdEngine([QueueConfig("sales")], [AgentConfig("alice")])
    >>> engine.agent_login("alice", now=0.0)
    <Ack.DONE: 'done'>
    >>> engine.call_arrived("c1", "sales", now=1.0)
    >>> engine.actions()
    [StartMusicOnHold(call='c1', music=None), OfferCall(call='c1', agent='alice', ring_until=21.0)]
    """

    def __init__(
        self,
        queues: Iterable[QueueConfig],
        agents: Iterable[AgentConfig],
        *,
        rng: random.Random | None = None,
        live_stats: bool = True,
    ) -> None:
        queue_list, agent_list = list(queues), list(agents)
        check_roster(queue_list, agent_list)
        #: Injected randomness (the `random` strategy); seed it for reproducible runs.
        self._rng = rng if rng is not None else random.Random(0)
        self._queues: dict[str, QueueState] = {
            queue.name: QueueState(queue, create_strategy(queue.strategy, rng=self._rng))
            for queue in queue_list
        }
        self._agents: dict[str, Agent] = {
            agent.id: Agent(agent, index, now=0.0) for index, agent in enumerate(agent_list)
        }
        self._calls: dict[str, Call] = {}
        self._seq = itertools.count()
        self._timers: list[tuple[float, int, _Timer, Call | Agent, str | None]] = []
        self._actions: list[Action] = []
        self._records: list[Record] = []
        self._pending_calls: list[tuple[tuple[int, float, int], int, Call]] = []
        self._pending_agents: dict[str, Agent] = {}
        self._pending_empty: set[QueueState] = set()
        self._now = 0.0
        self._stats: StatsCollector | None = None
        if live_stats:
            self._stats = StatsCollector(service_levels={q.name: q.service_level for q in queue_list})
        self._index_roster()

    # ================================================================================================
    # outputs

    def actions(self) -> list[Action]:
        """Commands for the call flow since the last call, in order (drains)."""
        actions, self._actions = self._actions, []
        return actions

    def records(self) -> list[Record]:
        """Queue events and agent state changes since the last call, in order (drains)."""
        records, self._records = self._records, []
        return records

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next run, or None if nothing is scheduled."""
        timers = self._timers
        while timers:
            entry = timers[0]
            if self._timer_live(entry):
                return entry[0]
            heapq.heappop(timers)
        return None

    def handle_timer(self, *, now: float) -> None:
        """Run every deadline at or before `now` (ring timeouts, wrap-up ends, relax steps, ...)."""
        self._now = now
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            if not self._timer_live(entry):
                continue
            _at, _seq, kind, subject, agent_id = entry
            if kind is _Timer.WRAP:
                assert isinstance(subject, Agent)
                self._end_wrap_up(subject, "wrap_up_timer", now)
                continue
            assert isinstance(subject, Call)
            if kind is not _Timer.RING:
                subject.set_deadline(kind, None)
            if kind is _Timer.RING:
                assert agent_id is not None
                self._offer_failed(subject, self._agents[agent_id], "no_answer", now, timed_out=True)
            elif kind is _Timer.RELAX:
                self._relax(subject, now)
            elif kind is _Timer.OVERFLOW:
                if subject.state is CallState.WAITING:
                    self._overflow(subject, now)
                else:
                    subject.overflow_due = True
            elif kind is _Timer.MAX_WAIT:
                if subject.state is CallState.WAITING:
                    self._time_out(subject, "max_wait", now)
                else:
                    subject.timeout_due = True
            elif kind is _Timer.ANNOUNCE:
                self._announce(subject, now)
            elif kind is _Timer.RETRY:
                subject.new_round()
                self._want_call(subject)
            self._settle(now)
        self._settle(now)

    # ================================================================================================
    # calls

    def call_arrived(
        self, call_id: str, queue: str, *, caller: str | None = None, priority: int | None = None, now: float
    ) -> None:
        """A caller reached `queue` (already answered by the call flow). `priority` overrides the queue's."""
        self._now = now
        if call_id in self._calls:
            return  # a repeated notification of the same call
        state = self._queues.get(queue)
        if state is None or state.retired:
            self._actions.append(TimeOut(call_id, "unknown_queue", None))
            return
        config = state.config
        if config.max_callers is not None and len(state.calls) >= config.max_callers:
            self._record(QueueEventKind.FULL, now, queue=state.name, call=call_id)
            self._actions.append(TimeOut(call_id, "full", config.exit_to))
            return
        if not config.join_empty and state.present() == 0:
            self._record(QueueEventKind.EXIT_EMPTY, now, queue=state.name, call=call_id, detail="join_empty")
            self._actions.append(TimeOut(call_id, "join_empty", config.exit_to))
            return
        explicit = priority is not None
        call = Call(
            call_id, state, caller=caller,
            priority=priority if priority is not None else config.priority_for(caller),
            explicit=explicit, seq=next(self._seq), now=now,
        )
        self._calls[call_id] = call
        self._actions.append(StartMusicOnHold(call_id, config.moh))
        self._enter(call, state, now)
        self._settle(now)

    def offer_answered(self, call_id: str, agent_id: str, *, now: float) -> None:
        """The agent's phone answered the offer. An answer for an offer no longer held is hung up."""
        self._now = now
        call = self._calls.get(call_id)
        agent = self._agents.get(agent_id)
        if call is None or agent is None or agent_id not in call.offers:
            if call is not None and call.agent is agent:
                return  # a repeated 200 OK for the answer we already took
            # The offer was withdrawn (caller gone, ring timeout, answered elsewhere): drop the agent's leg.
            self._actions.append(CancelOffer(call_id, agent_id, "withdrawn"))
            return
        queue = call.queue
        del call.offers[agent_id]
        self._withdraw_offers(call, "answered_elsewhere", now)
        self._leave_queue(call)
        call.state = CallState.CONNECTED
        call.agent = agent
        call.connected_at = now
        agent.misses = 0
        agent.answered += 1
        self._record(
            QueueEventKind.CONNECT, now, queue=queue.name, call=call_id, agent=agent_id,
            wait=now - call.entered_at, duration=now - call.offered_at,
        )
        self._actions.append(ConnectCall(call_id, agent_id))
        self._refresh(agent, "answered", now)
        self._settle(now)

    def offer_failed(
        self, call_id: str, agent_id: str, *, reason: str, now: float
    ) -> None:
        """The agent's phone did not take the call: `reason` is no_answer, rejected or unreachable."""
        if reason not in _FAILURE_KINDS:
            known = ", ".join(_FAILURE_KINDS)
            raise ValueError(f"offer_failed reason must be one of {known}, not {reason!r}")
        self._now = now
        call = self._calls.get(call_id)
        agent = self._agents.get(agent_id)
        if call is None or agent is None or agent_id not in call.offers:
            return  # the offer already ended (timed out, withdrawn, answered elsewhere)
        self._offer_failed(call, agent, reason, now)
        self._settle(now)

    def offer_withdrawn(self, call_id: str, agent_id: str, *, reason: str, now: float) -> None:
        """The switch already stopped ringing the agent for a reason that is not the agent's (in ring_all,
        a colleague answered first and that answer then failed). Not a miss, and it does not count as rung
        this round; no `CancelOffer` follows, since the ring is already over. The agent is free for the
        next decision."""
        self._now = now
        call = self._calls.get(call_id)
        agent = self._agents.get(agent_id)
        if call is None or agent is None or agent_id not in call.offers:
            return
        call.untry(agent_id)  # it never had a fair chance: it may be rung again this round
        self._withdraw_agent_offer(agent, reason, now, cancel=False)
        self._settle(now)

    def call_ended(self, call_id: str, *, by: str, now: float) -> None:
        """The call ended; `by` is "agent" or "caller". Before an answer this is an abandon."""
        if by not in ("agent", "caller"):
            raise ValueError(f"call_ended by must be 'agent' or 'caller', not {by!r}")
        self._now = now
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.state is CallState.CONNECTED:
            self._complete(call, by, now)
        else:
            self._abandon(call, now, detail=f"ended_by_{by}")
        self._settle(now)

    def caller_abandoned(self, call_id: str, *, now: float) -> None:
        """The caller hung up. After the answer this is the caller completing the call."""
        self._now = now
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.state is CallState.CONNECTED:
            self._complete(call, "caller", now)
        else:
            self._abandon(call, now)
        self._settle(now)

    def dtmf(self, call_id: str, digit: str, *, now: float) -> bool:
        """A waiting caller pressed `digit`; True if it was the queue's exit key (the call leaves)."""
        self._now = now
        call = self._calls.get(call_id)
        if call is None or call.state not in (CallState.WAITING, CallState.OFFERED):
            return False
        config = call.queue.config
        if config.exit_key is None or digit.upper() != config.exit_key.upper():
            return False
        self._record(
            QueueEventKind.EXIT_KEY, now, queue=call.queue.name, call=call_id,
            position=call.queue.position(call), wait=now - call.entered_at, detail=digit,
        )
        self._withdraw_offers(call, "caller_gone", now)
        self._remove(call)
        self._actions.append(ExitTo(call_id, config.exit_to, digit))
        self._settle(now)
        return True

    # ================================================================================================
    # agents

    def agent_login(self, agent_id: str, *, now: float) -> Ack:
        self._now = now
        agent = self._agents.get(agent_id)
        if agent is None or agent.retired:
            return Ack.UNKNOWN_AGENT
        if agent.logged_in:
            return Ack.NO_CHANGE
        agent.logged_in = True
        agent.pause_reason = None
        agent.misses = 0
        self._record(QueueEventKind.LOGIN, now, agent=agent_id)
        self._refresh(agent, "login", now)
        self._settle(now)
        return Ack.DONE

    def agent_logout(self, agent_id: str, *, now: float) -> Ack:
        """Log out now, or after the current call (PENDING) if the agent is talking."""
        self._now = now
        agent = self._agents.get(agent_id)
        if agent is None:
            return Ack.UNKNOWN_AGENT
        if not agent.logged_in:
            return Ack.NOT_LOGGED_IN
        if agent.connected:
            agent.logout_pending = True
            return Ack.PENDING
        self._logout(agent, "logout", now)
        self._settle(now)
        return Ack.DONE

    def agent_pause(self, agent_id: str, reason: str = "", *, now: float) -> Ack:
        """Pause with a reason code. During a call the pause starts after the call and its wrap-up."""
        self._now = now
        agent = self._agents.get(agent_id)
        if agent is None:
            return Ack.UNKNOWN_AGENT
        if not agent.logged_in:
            return Ack.NOT_LOGGED_IN
        if agent.pause_reason == reason:
            return Ack.NO_CHANGE
        changed_reason = agent.pause_reason is not None and agent.status is AgentStatus.PAUSED
        if agent.offered:
            self._withdraw_agent_offer(agent, "agent_paused", now)
        agent.pause_reason = reason
        self._record(QueueEventKind.PAUSE, now, agent=agent_id, detail=reason)
        if changed_reason:
            self._state_record(agent, AgentStatus.PAUSED, AgentStatus.PAUSED, reason, now)
        self._refresh(agent, reason, now)
        self._settle(now)
        return Ack.DONE

    def agent_resume(self, agent_id: str, *, now: float) -> Ack:
        self._now = now
        agent = self._agents.get(agent_id)
        if agent is None:
            return Ack.UNKNOWN_AGENT
        if not agent.logged_in:
            return Ack.NOT_LOGGED_IN
        if agent.pause_reason is None:
            return Ack.NO_CHANGE
        agent.pause_reason = None
        agent.misses = 0
        self._record(QueueEventKind.RESUME, now, agent=agent_id)
        self._refresh(agent, "resume", now)
        self._settle(now)
        return Ack.DONE

    def end_wrap_up(self, agent_id: str, *, now: float) -> Ack:
        """The agent is ready before the wrap-up timer ends."""
        self._now = now
        agent = self._agents.get(agent_id)
        if agent is None:
            return Ack.UNKNOWN_AGENT
        if not agent.logged_in:
            return Ack.NOT_LOGGED_IN
        if agent.wrap_until is None:
            return Ack.NO_CHANGE
        self._end_wrap_up(agent, "ended_by_agent", now)
        self._settle(now)
        return Ack.DONE

    def agent_reachable(self, agent_id: str, reachable: bool, *, now: float) -> None:
        """The agent's phone gained (True) or lost (False) its last live binding or its qualify state."""
        self._now = now
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        self._set_reachable(agent, reachable, now)
        self._settle(now)

    def agent_direct_call(self, agent_id: str, active: bool, *, now: float) -> None:
        """The agent is (True) or is no longer (False) on a call that did not come from a queue."""
        self._now = now
        agent = self._agents.get(agent_id)
        if agent is None or agent.direct == active:
            return
        agent.direct = active
        self._refresh(agent, "direct_call" if active else "direct_call_ended", now)
        self._settle(now)

    # ================================================================================================
    # configuration and repair

    def reload(self, queues: Iterable[QueueConfig], agents: Iterable[AgentConfig], *, now: float) -> None:
        """Apply a new configuration to new decisions; no call is dropped.

        Calls keep their place and wait; their relax, overflow, max-wait and announce timers are recomputed
        from the new queue definitions and the time they entered. A removed queue keeps serving the calls it
        holds and takes no new ones. A removed agent is logged out (after its current call, if talking).
        Offers ringing now ring on.
        """
        self._now = now
        queue_list, agent_list = list(queues), list(agents)
        check_roster(queue_list, agent_list)
        new_queues: dict[str, QueueState] = {}
        for config in queue_list:
            new_queues[config.name] = QueueState(config, create_strategy(config.strategy, rng=self._rng))
        for name, old in self._queues.items():
            new = new_queues.get(name)
            if new is None:
                if old.calls:
                    old.retired = True
                    old.reset_heaps()
                    new_queues[name] = old  # serves the calls it holds, takes no new ones
                continue
            new.offer_seq = old.offer_seq
            new.handle_ewma = old.handle_ewma
            for call in old.calls.values():
                new.add(call)
                call.queue = new
        for call in self._calls.values():
            if call.state is CallState.CONNECTED and call.queue.name in new_queues:
                call.queue = new_queues[call.queue.name]
        for agent in self._agents.values():
            if agent.wrap_queue is not None and agent.wrap_queue.name in new_queues:
                agent.wrap_queue = new_queues[agent.wrap_queue.name]
        self._queues = new_queues
        if self._stats is not None:
            self._stats.service_levels.update({q.name: q.service_level for q in queue_list})

        known = {config.id: config for config in agent_list}
        for index, config in enumerate(agent_list):
            agent = self._agents.get(config.id)
            if agent is None:
                self._agents[config.id] = Agent(config, index, now=now)
            else:
                agent.config = config
                agent.index = index
                agent.retired = False
        for agent in list(self._agents.values()):
            if agent.id not in known:
                agent.retired = True
        self._index_roster()
        for agent in list(self._agents.values()):
            if agent.retired:
                self._retire(agent, now)

        for call in self._calls.values():
            if call.state is CallState.CONNECTED:
                continue
            call.clear_deadlines()
            queue = call.queue
            call.step = min(queue.requirements.step_at(now - call.entered_at), queue.requirements.count - 1)
            self._schedule_waiting_timers(call, now)
            if call.state is CallState.WAITING:
                call.hgen += 1
                queue.file_call(call)
                self._want_call(call)
        for queue in self._queues.values():
            if queue.config.leave_when_empty and queue.calls and queue.present() == 0:
                self._pending_empty.add(queue)
        self._settle(now)

    def reconcile(
        self, live_calls: Mapping[str, Collection[str]], reachable_agents: Collection[str], *, now: float
    ) -> list[Repair]:
        """Compare with the switch's truth and repair every mismatch; returns what was repaired.

        `live_calls` maps each live call id to the agents whose phones are on it (a waiting caller maps to
        no one; a direct call maps to its agent); `reachable_agents` are agents with a live binding that
        answers qualify.
        Offers are left alone: each has its own ring deadline.
        """
        self._now = now
        repairs: list[Repair] = []

        def repaired(kind: str, call: Call | None, agent: str | None, detail: str = "") -> None:
            repairs.append(Repair(kind, call.id if call else None, agent, detail))
            self._record(
                QueueEventKind.REPAIR, now, queue=call.queue.name if call else None,
                call=call.id if call else None, agent=agent, detail=kind,
            )

        reachable = set(reachable_agents)
        on_queue_calls: set[str] = set()
        for call in list(self._calls.values()):
            if call.id not in live_calls:
                repaired("call_vanished", call, call.agent.id if call.agent else None, str(call.state))
                if call.state is CallState.CONNECTED:
                    self._complete(call, "caller", now, detail="reconcile")
                else:
                    self._abandon(call, now, detail="reconcile")
                continue
            if call.state is CallState.CONNECTED:
                assert call.agent is not None
                if call.agent.id in live_calls[call.id]:
                    on_queue_calls.add(call.agent.id)
                    continue
                repaired("agent_lost", call, call.agent.id)
                exit_to = call.queue.config.exit_to
                self._complete(call, "agent", now, detail="reconcile")
                self._actions.append(TimeOut(call.id, "agent_lost", exit_to))
            else:
                on_queue_calls.update(call.offers)
        busy_direct: set[str] = set()
        for call_id, agents in live_calls.items():
            call = self._calls.get(call_id)
            if call is None:
                busy_direct.update(agents)
            elif call.state is not CallState.CONNECTED:
                busy_direct.update(a for a in agents if a not in call.offers)
        for agent in list(self._agents.values()):
            direct = agent.id in busy_direct and agent.id not in on_queue_calls
            if agent.direct != direct:
                repaired("direct_call_found" if direct else "direct_call_ended", None, agent.id)
                agent.direct = direct
                self._refresh(agent, "reconcile", now)
            if agent.logged_in and (agent.id in reachable) != agent.reachable:
                repaired("reachable" if agent.id in reachable else "unreachable", None, agent.id)
                self._set_reachable(agent, agent.id in reachable, now)
        self._settle(now)
        return repairs

    def handle(self, event: AcdEvent, *, now: float) -> object:
        """Dispatch an `events` dataclass to the method of the same meaning; returns its result."""
        match event:
            case CallArrived(call, queue, caller, priority):
                return self.call_arrived(call, queue, caller=caller, priority=priority, now=now)
            case OfferAnswered(call, agent):
                return self.offer_answered(call, agent, now=now)
            case OfferFailed(call, agent, reason):
                return self.offer_failed(call, agent, reason=reason, now=now)
            case OfferWithdrawn(call, agent, reason):
                return self.offer_withdrawn(call, agent, reason=reason, now=now)
            case CallEnded(call, by):
                return self.call_ended(call, by=by, now=now)
            case CallerAbandoned(call):
                return self.caller_abandoned(call, now=now)
            case DtmfReceived(call, digit):
                return self.dtmf(call, digit, now=now)
            case AgentLoggedIn(agent):
                return self.agent_login(agent, now=now)
            case AgentLoggedOut(agent):
                return self.agent_logout(agent, now=now)
            case AgentPaused(agent, reason):
                return self.agent_pause(agent, reason, now=now)
            case AgentResumed(agent):
                return self.agent_resume(agent, now=now)
            case WrapUpEnded(agent):
                return self.end_wrap_up(agent, now=now)
            case AgentReachability(agent, reachable):
                return self.agent_reachable(agent, reachable, now=now)
            case AgentDirectCall(agent, active):
                return self.agent_direct_call(agent, active, now=now)
            case ConfigReloaded(queues, agents):
                return self.reload(queues, agents, now=now)
            case Reconciled(live_calls, reachable_agents):
                return self.reconcile(live_calls, reachable_agents, now=now)
            case TimePassed():
                return self.handle_timer(now=now)
        raise TypeError(f"not an ACD event: {event!r}")

    # ================================================================================================
    # reading

    def agent_status(self, agent_id: str) -> AgentStatus:
        return self._agents[agent_id].status

    def agents_serving(self, queue: str) -> list[str]:
        """Agents who can take this queue's calls at some relax step, in roster order."""
        return [a.id for a in sorted(self._agents.values(), key=lambda a: a.index) if queue in a.serves]

    def queue_names(self) -> list[str]:
        return [name for name, queue in self._queues.items() if not queue.retired]

    def call_count(self) -> int:
        return len(self._calls)

    def snapshot(self, *, now: float | None = None, calls: bool = True) -> AcdSnapshot:
        """Live state and figures for supervisors; `now` defaults to the latest time the engine was given."""
        at = self._now if now is None else now
        stats = self._stats or StatsCollector()
        queues: dict[str, QueueSnapshot] = {}
        for name, queue in self._queues.items():
            waiting = [c for c in queue.calls.values() if c.state is CallState.WAITING]
            queues[name] = QueueSnapshot(
                name=name,
                waiting=len(waiting),
                ringing=len(queue.calls) - len(waiting),
                longest_wait=max((at - c.entered_at for c in queue.calls.values()), default=0.0),
                agents=dict(queue.counts),
                figures=stats.queue(name, now=at),
                retired=queue.retired,
            )
        agents = {
            agent.id: AgentSnapshot(
                id=agent.id,
                name=agent.config.name,
                status=agent.status,
                since=agent.status_since,
                pause_reason=agent.pause_reason,
                call=agent.call.id if agent.call else None,
                queue=agent.call.queue.name if agent.call else None,
                wrap_up_until=agent.wrap_until,
                misses=agent.misses,
                figures=stats.agent(agent.id, now=at),
            )
            for agent in sorted(self._agents.values(), key=lambda a: a.index)
        }
        call_views: dict[str, CallSnapshot] = {}
        if calls:
            for call in self._calls.values():
                in_queue = call.id in call.queue.calls
                call_views[call.id] = CallSnapshot(
                    id=call.id,
                    queue=call.queue.name,
                    caller=call.caller,
                    priority=call.priority,
                    state=call.state,
                    arrived_at=call.arrived_at,
                    entered_at=call.entered_at,
                    position=call.queue.position(call) if in_queue else None,
                    step=call.step,
                    agents=tuple(call.offers) if call.offers else ((call.agent.id,) if call.agent else ()),
                    rung=tuple(sorted(call.tried)),
                    retry_at=call.retry_at,
                )
        return AcdSnapshot(at=at, queues=queues, agents=agents, calls=call_views)

    # ================================================================================================
    # internals: roster and indexes

    def _index_roster(self) -> None:
        """(Re)compute which agent serves which queue from which step, and rebuild every index."""
        for queue in self._queues.values():
            queue.qualified = [0] * queue.requirements.count
            queue.counts = dict.fromkeys(AgentStatus, 0)
            for heap in queue.agent_heaps:
                heap.clear()
        for agent in self._agents.values():
            agent.serves = {}
            agent.score = {}
            if agent.retired:
                continue
            skills = agent.config.skills
            for queue in self._queues.values():
                step = queue.requirements.first_step(skills)
                if step is None:
                    continue
                agent.serves[queue.name] = step
                agent.score[queue.name] = proficiency_score(skills, queue.requirements.names)
                queue.qualified[step] += 1
                queue.counts[agent.status] += 1
            agent.token += 1
            if agent.status is AgentStatus.AVAILABLE:
                self._pending_agents[agent.id] = agent  # filed when settled (see _refresh)

    def _file_agent(self, agent: Agent) -> None:
        queues = self._queues
        for name, step in agent.serves.items():
            queues[name].file_agent(agent, step, next(self._seq))

    def _refresh(self, agent: Agent, reason: str, now: float) -> None:
        """Re-derive the agent's state; log, re-index and queue a dispatch if it changed."""
        new = agent.derive_status()
        old = agent.status
        if new is old:
            return
        agent.status = new
        agent.status_since = now
        agent.token += 1
        logged_reason = (agent.pause_reason or "") if new is AgentStatus.PAUSED else reason
        self._state_record(agent, old, new, logged_reason, now)
        queues = self._queues
        for name in agent.serves:
            queue = queues[name]
            counts = queue.counts
            counts[old] -= 1
            counts[new] += 1
            if queue.config.leave_when_empty and queue.calls and queue.present() == 0:
                self._pending_empty.add(queue)
        if new is AgentStatus.AVAILABLE:
            if old is not AgentStatus.OFFERED:
                agent.idle_since = now
            # Filed into the queues' agent heaps by _dispatch_agent only if no waiting call takes it: most
            # agents freed in a busy centre take a call at once, and would only leave stale entries behind.
            self._pending_agents[agent.id] = agent

    def _state_record(
        self, agent: Agent, old: AgentStatus, new: AgentStatus, reason: str, now: float
    ) -> None:
        record = AgentStateChanged(agent.id, old, new, reason, now)
        self._records.append(record)
        if self._stats is not None:
            self._stats.add(record)

    def _record(
        self, kind: QueueEventKind, now: float, *, queue: str | None = None, call: str | None = None,
        agent: str | None = None, position: int | None = None, wait: float | None = None,
        duration: float | None = None, detail: str = "",
    ) -> None:
        record = QueueEvent(now, kind, queue, call, agent, position, wait, duration, detail)
        self._records.append(record)
        if self._stats is not None:
            self._stats.add(record)

    # ================================================================================================
    # internals: timers

    def _push_timer(
        self, at: float, kind: _Timer, subject: Call | Agent, agent_id: str | None = None
    ) -> None:
        heapq.heappush(self._timers, (at, next(self._seq), kind, subject, agent_id))
        if len(self._timers) > 8 * (len(self._calls) + len(self._agents)) + 1024:
            self._timers = [entry for entry in self._timers if self._timer_live(entry)]
            heapq.heapify(self._timers)

    def _set_call_timer(self, call: Call, kind: _Timer, at: float) -> None:
        call.set_deadline(kind, at)
        self._push_timer(at, kind, call)

    @staticmethod
    def _timer_live(entry: tuple[float, int, _Timer, Call | Agent, str | None]) -> bool:
        at, _seq, kind, subject, agent_id = entry
        if kind is _Timer.WRAP:
            return isinstance(subject, Agent) and subject.wrap_until == at
        assert isinstance(subject, Call)
        if subject.state is CallState.ENDED:
            return False
        if kind is _Timer.RING:
            return subject.offers.get(agent_id or "") == at
        return subject.deadline(kind) == at

    def _schedule_waiting_timers(self, call: Call, now: float) -> None:
        """Relax, overflow, max-wait and announce deadlines of a call in its current queue."""
        queue = call.queue
        config = queue.config
        entered = call.entered_at
        afters = queue.requirements.afters
        if call.step + 1 < len(afters):
            self._set_call_timer(call, _Timer.RELAX, entered + afters[call.step + 1])
        if config.overflow is not None and not queue.retired:
            self._set_call_timer(call, _Timer.OVERFLOW, max(now, entered + config.overflow.after))
        if config.max_wait is not None:
            self._set_call_timer(call, _Timer.MAX_WAIT, max(now, entered + config.max_wait))
        if config.announce is not None and config.announce.every is not None:
            every = config.announce.every
            waited = max(0.0, now - entered)
            self._set_call_timer(call, _Timer.ANNOUNCE, entered + (int(waited // every) + 1) * every)

    # ================================================================================================
    # internals: the life of a call

    def _enter(self, call: Call, queue: QueueState, now: float) -> None:
        call.queue = queue
        call.entered_at = now
        call.step = 0
        call.new_round()
        call.state = CallState.WAITING
        call.overflow_due = call.timeout_due = False
        queue.add(call)
        self._record(
            QueueEventKind.ENTER, now, queue=queue.name, call=call.id, position=queue.position(call),
            detail=call.caller or "",
        )
        self._schedule_waiting_timers(call, now)
        if queue.config.leave_when_empty and queue.present() == 0:
            self._pending_empty.add(queue)
        call.hgen += 1
        queue.file_call(call)
        self._want_call(call)

    def _want_call(self, call: Call) -> None:
        heapq.heappush(self._pending_calls, (call.order, call.hgen, call))

    def _leave_queue(self, call: Call) -> None:
        """The call stops waiting in its queue (connected, gone, or moving to another queue)."""
        queue = call.queue
        queue.remove(call)
        call.hgen += 1
        call.clear_deadlines()
        call.overflow_due = call.timeout_due = False
        if queue.retired and not queue.calls:
            self._drop_queue(queue)

    def _remove(self, call: Call) -> None:
        """The call leaves the ACD altogether."""
        self._leave_queue(call)
        call.state = CallState.ENDED
        call.clear_deadlines()
        self._calls.pop(call.id, None)

    def _drop_queue(self, queue: QueueState) -> None:
        if self._queues.get(queue.name) is not queue:
            return
        del self._queues[queue.name]
        for agent in self._agents.values():
            agent.serves.pop(queue.name, None)
            agent.score.pop(queue.name, None)

    def _relax(self, call: Call, now: float) -> None:
        queue = call.queue
        step = max(call.step + 1, queue.requirements.step_at(now - call.entered_at))
        call.step = min(step, queue.requirements.count - 1)
        self._record(
            QueueEventKind.RELAX, now, queue=queue.name, call=call.id, wait=now - call.entered_at,
            detail=str(call.step),
        )
        afters = queue.requirements.afters
        if call.step + 1 < len(afters):
            self._set_call_timer(call, _Timer.RELAX, call.entered_at + afters[call.step + 1])
        if call.state is CallState.WAITING:
            call.hgen += 1
            queue.file_call(call)
            self._want_call(call)

    def _overflow(self, call: Call, now: float) -> bool:
        """Move a waiting call to its queue's overflow target; False (and it stays) if the target is
        missing, full or refuses empty joins."""
        source = call.queue
        overflow = source.config.overflow
        if overflow is None:
            return False
        target = self._queues.get(overflow.to)
        if target is None or target.retired:
            return False
        if target.config.max_callers is not None and len(target.calls) >= target.config.max_callers:
            return False
        if not target.config.join_empty and target.present() == 0:
            return False
        self._record(
            QueueEventKind.OVERFLOW, now, queue=source.name, call=call.id, position=source.position(call),
            wait=now - call.entered_at, detail=target.name,
        )
        self._leave_queue(call)
        if not call.explicit_priority:
            call.priority = target.config.priority_for(call.caller)
        self._actions.append(Overflow(call.id, target.name, source.name))
        if target.config.moh != source.config.moh:
            self._actions.append(StartMusicOnHold(call.id, target.config.moh))
        self._enter(call, target, now)
        return True

    def _announce(self, call: Call, now: float) -> None:
        announce = call.queue.config.announce
        if announce is None or announce.every is None:
            return
        self._set_call_timer(call, _Timer.ANNOUNCE, now + announce.every)
        if call.state is not CallState.WAITING:
            return  # ringing an agent: no need to interrupt
        if announce.prompt is not None:
            self._actions.append(PlayPrompt(call.id, announce.prompt))
        if announce.position:
            queue = call.queue
            position = queue.position(call)
            staffed = queue.staffed()
            estimate = None
            if queue.handle_ewma is not None and staffed > 0:
                estimate = round(position * queue.handle_ewma / staffed, 1)
            self._actions.append(AnnouncePosition(call.id, position, estimate))

    def _time_out(self, call: Call, reason: str, now: float) -> None:
        queue = call.queue
        kind = QueueEventKind.TIMEOUT if reason == "max_wait" else QueueEventKind.EXIT_EMPTY
        self._record(
            kind, now, queue=queue.name, call=call.id, position=queue.position(call),
            wait=now - call.entered_at, detail=reason,
        )
        self._withdraw_offers(call, "caller_gone", now)
        self._remove(call)
        self._actions.append(TimeOut(call.id, reason, queue.config.exit_to))

    def _abandon(self, call: Call, now: float, *, detail: str = "") -> None:
        queue = call.queue
        self._record(
            QueueEventKind.ABANDON, now, queue=queue.name, call=call.id, position=queue.position(call),
            wait=now - call.entered_at, detail=detail,
        )
        self._withdraw_offers(call, "caller_gone", now)
        self._remove(call)

    def _complete(self, call: Call, by: str, now: float, *, detail: str = "") -> None:
        agent = call.agent
        assert agent is not None
        queue = call.queue
        talk = now - call.connected_at
        kind = QueueEventKind.COMPLETE_AGENT if by == "agent" else QueueEventKind.COMPLETE_CALLER
        self._record(
            kind, now, queue=queue.name, call=call.id, agent=agent.id,
            wait=call.connected_at - call.entered_at, duration=talk, detail=detail,
        )
        sample = talk + queue.config.wrap_up
        previous = queue.handle_ewma
        queue.handle_ewma = sample if previous is None else previous + _EWMA_WEIGHT * (sample - previous)
        self._remove(call)
        agent.call = None
        if agent.logout_pending or agent.retired:
            self._logout(agent, "logout", now)
            if agent.retired:
                self._forget(agent)
            return
        if queue.config.wrap_up > 0:
            agent.wrap_until = now + queue.config.wrap_up
            agent.wrap_queue = queue
            agent.wrap_call = call.id
            agent.wrap_started = now
            self._push_timer(agent.wrap_until, _Timer.WRAP, agent)
        self._refresh(agent, "call_ended", now)

    # ================================================================================================
    # internals: offers

    def _offer(self, call: Call, agents: list[Agent], now: float) -> None:
        queue = call.queue
        ring_until = now + queue.config.ring_timeout
        call.state = CallState.OFFERED
        call.hgen += 1
        call.offered_at = now
        for agent in agents:
            call.ring(agent.id, ring_until)
            agent.call = call
            queue.offer_seq += 1
            agent.last_offered[queue.name] = queue.offer_seq
            self._push_timer(ring_until, _Timer.RING, call, agent.id)
            self._record(
                QueueEventKind.OFFER, now, queue=queue.name, call=call.id, agent=agent.id,
                wait=now - call.entered_at,
            )
            self._actions.append(OfferCall(call.id, agent.id, ring_until))
            self._refresh(agent, "offer", now)

    def _offer_failed(
        self, call: Call, agent: Agent, reason: str, now: float, *, timed_out: bool = False
    ) -> None:
        del call.offers[agent.id]
        agent.call = None
        if timed_out:
            self._actions.append(CancelOffer(call.id, agent.id, "ring_timeout"))
        self._record(
            _FAILURE_KINDS[reason], now, queue=call.queue.name, call=call.id, agent=agent.id,
            duration=now - call.offered_at,
        )
        if reason == "unreachable":
            agent.reachable = False
        else:
            agent.misses += 1
            limit = agent.config.max_missed
            if limit is None:
                limit = call.queue.config.max_missed
            if limit and agent.misses >= limit and agent.logged_in and agent.pause_reason is None:
                agent.pause_reason = AUTO_PAUSE_REASON
                self._record(QueueEventKind.PAUSE, now, agent=agent.id, detail=AUTO_PAUSE_REASON)
                self._actions.append(PauseAgent(agent.id, AUTO_PAUSE_REASON))
        self._refresh(agent, reason, now)
        if not call.offers:
            self._requeue(call, now)

    def _withdraw_offers(self, call: Call, reason: str, now: float) -> None:
        """Stop every ring of `call` (caller gone, answered elsewhere); the agents are free again."""
        for agent_id in list(call.offers):
            del call.offers[agent_id]
            agent = self._agents[agent_id]
            agent.call = None
            self._actions.append(CancelOffer(call.id, agent_id, reason))
            self._record(
                QueueEventKind.OFFER_WITHDRAWN, now, queue=call.queue.name, call=call.id, agent=agent_id,
                duration=now - call.offered_at, detail=reason,
            )
            self._refresh(agent, reason, now)

    def _withdraw_agent_offer(self, agent: Agent, reason: str, now: float, *, cancel: bool = True) -> None:
        """Stop ringing this agent (it paused or logged out); not a miss. The call looks for someone else."""
        call = agent.call
        assert call is not None and agent.id in call.offers
        del call.offers[agent.id]
        agent.call = None
        if cancel:
            self._actions.append(CancelOffer(call.id, agent.id, reason))
        self._record(
            QueueEventKind.OFFER_WITHDRAWN, now, queue=call.queue.name, call=call.id, agent=agent.id,
            duration=now - call.offered_at, detail=reason,
        )
        self._refresh(agent, reason, now)
        if not call.offers:
            self._requeue(call, now)

    def _requeue(self, call: Call, now: float) -> None:
        """Every ring of the call ended without an answer: back to waiting (or out, if a deadline passed)."""
        call.state = CallState.WAITING
        call.hgen += 1
        if call.timeout_due:
            self._time_out(call, "max_wait", now)
            return
        if call.overflow_due:
            call.overflow_due = False
            if self._overflow(call, now):
                return
        queue = call.queue
        if queue.config.leave_when_empty and queue.present() == 0:
            self._pending_empty.add(queue)
        queue.file_call(call)
        self._want_call(call)

    def _set_reachable(self, agent: Agent, reachable: bool, now: float) -> None:
        if agent.reachable == reachable:
            return
        agent.reachable = reachable
        if not reachable and agent.offered:
            call = agent.call
            assert call is not None
            self._actions.append(CancelOffer(call.id, agent.id, "unreachable"))
            self._offer_failed(call, agent, "unreachable", now)
            return
        self._refresh(agent, "reachable" if reachable else "unreachable", now)

    # ================================================================================================
    # internals: agents leaving

    def _end_wrap_up(self, agent: Agent, reason: str, now: float) -> None:
        if agent.wrap_until is None:
            return
        queue = agent.wrap_queue
        self._record(
            QueueEventKind.WRAP_UP, now, queue=queue.name if queue else None, call=agent.wrap_call,
            agent=agent.id, duration=now - agent.wrap_started, detail=reason,
        )
        agent.wrap_until = None
        agent.wrap_queue = None
        agent.wrap_call = None
        self._refresh(agent, reason, now)

    def _logout(self, agent: Agent, reason: str, now: float) -> None:
        if agent.offered:
            self._withdraw_agent_offer(agent, "agent_logged_out", now)
        self._end_wrap_up(agent, reason, now)
        agent.logged_in = False
        agent.logout_pending = False
        agent.pause_reason = None
        agent.misses = 0
        self._record(QueueEventKind.LOGOUT, now, agent=agent.id, detail=reason)
        self._refresh(agent, reason, now)

    def _retire(self, agent: Agent, now: float) -> None:
        """A reload removed the agent: log it out now, or after its call."""
        if agent.connected:
            agent.logout_pending = True
            return
        if agent.offered:
            self._withdraw_agent_offer(agent, "removed", now)
        if agent.logged_in:
            self._logout(agent, "removed", now)
        self._forget(agent)

    def _forget(self, agent: Agent) -> None:
        for name in agent.serves:
            queue = self._queues.get(name)
            if queue is not None:
                queue.counts[agent.status] -= 1
        agent.serves = {}
        agent.token += 1
        if self._agents.get(agent.id) is agent:
            del self._agents[agent.id]

    # ================================================================================================
    # internals: deciding

    def _settle(self, now: float) -> None:
        """Match waiting calls and available agents until no eligible pair is left apart."""
        pending_calls = self._pending_calls
        pending_agents = self._pending_agents
        while True:
            if self._pending_empty:
                queue = self._pending_empty.pop()
                if self._queues.get(queue.name) is queue and queue.present() == 0:
                    for call in list(queue.waiting_calls()):
                        self._time_out(call, "leave_empty", now)
            elif pending_agents:
                # Newly free agents choose first: every waiting call is already in the heaps, so each takes
                # the best call it may serve. A pending call choosing first could take a newly free agent
                # that a better, older call (not pending itself) was waiting for. Pending agents are not in
                # the agent heaps yet, so no call may choose them before they have chosen.
                agent_id = next(iter(pending_agents))
                agent = pending_agents.pop(agent_id)
                if agent.status is AgentStatus.AVAILABLE:
                    self._dispatch_agent(agent, now)
            elif pending_calls:
                _order, hgen, call = heapq.heappop(pending_calls)
                if call.hgen == hgen and call.state is CallState.WAITING:
                    self._dispatch_call(call, now)
            else:
                return

    def _dispatch_call(self, call: Call, now: float) -> None:
        queue = call.queue
        if queue.config.leave_when_empty and queue.present() == 0:
            self._time_out(call, "leave_empty", now)
            return
        for _round in range(2):
            chosen = self._choose(call, now)
            if chosen:
                self._offer(call, chosen, now)
                return
            if not call.tried or call.retry_at is not None:
                return
            # Everyone eligible and free was rung this round. A new round starts after `retry` (Asterisk's
            # retry), whether or not those agents are free now: until then they prefer other calls, after
            # it they may take this one again. Without the deadline an agent rung once would skip the call
            # for good.
            if queue.config.retry > 0:
                self._set_call_timer(call, _Timer.RETRY, now + queue.config.retry)
                return
            call.new_round()

    def _choose(self, call: Call, now: float) -> list[Agent]:
        """The agents to offer `call` to now, by its queue's strategy, skipping those rung this round."""
        queue = call.queue
        if queue.counts[AgentStatus.AVAILABLE] == 0:
            return []  # nobody who could ever serve this queue is free: the common case when all are busy
        strategy = queue.strategy
        step = call.step
        if strategy.rings_all:
            return queue.candidates(step, call.tried)
        if strategy.ordered:
            agent = queue.best_agent(step, call.tried)
        elif strategy.uniform:
            agent = queue.sample_agent(step, call.tried, strategy.rng)
        else:
            candidates = queue.candidates(step, call.tried)
            agent_id = strategy.choose(call, candidates, now=now) if candidates else None
            agent = self._agents[agent_id] if agent_id is not None else None
        return [agent] if agent is not None else []

    def _dispatch_agent(self, agent: Agent, now: float) -> None:
        best = None
        queues = self._queues
        agent_id = agent.id
        for name, step in agent.serves.items():
            entry = queues[name].best_call(step, agent_id)
            if entry is not None and (best is None or entry < best):
                best = entry
        if best is not None:
            self._offer(best[4], [agent], now)
        else:
            self._file_agent(agent)  # idle: now calls may choose it

    # ================================================================================================
    # for tests

    def check_consistency(self) -> None:
        """Assert the internal cross-references agree (used by the property tests after every step)."""
        for agent in self._agents.values():
            assert agent.status is agent.derive_status(), agent
            call = agent.call
            if call is not None:
                assert self._calls.get(call.id) is call, (agent, call)
                assert agent.id in call.offers or call.agent is agent, (agent, call)
            if agent.status is AgentStatus.AVAILABLE:
                for name, step in agent.serves.items():
                    queue = self._queues[name]
                    heap = queue.agent_heaps[step]
                    assert any(e[3] is agent and e[2] == agent.token for e in heap), (agent, name)
        for call in self._calls.values():
            assert call.state is not CallState.ENDED
            for agent_id in call.offers:
                assert self._agents[agent_id].call is call
            if call.state is CallState.OFFERED:
                assert call.offers
            if call.state is CallState.CONNECTED:
                assert call.agent is not None and call.agent.call is call and not call.offers
                assert call.id not in call.queue.calls
            else:
                assert call.queue.calls.get(call.id) is call, call
            if call.state is CallState.WAITING:
                heap = call.queue.call_heaps[call.step]
                assert any(e[4] is call and e[3] == call.hgen for e in heap), call
        for queue in self._queues.values():
            expected = dict.fromkeys(AgentStatus, 0)
            for agent in self._agents.values():
                if queue.name in agent.serves:
                    expected[agent.status] += 1
            assert expected == queue.counts, (queue.name, expected, queue.counts)
