"""ACD invariants over random sequences of events and faults (hypothesis state machine).

The machine plays the switch: it keeps its own truth (live calls and the agents on them, direct calls,
reachable phones), feeds the engine inputs — sometimes late, duplicated or never (a lost BYE, a lost
direct-call end, a missed reachability change) — advances time deadline by deadline, reloads the
configuration and reconciles. After every step it checks, from the outside:

1. an agent is never offered a call while it rings for or talks on another;
2. a call is never offered to an agent lacking a required skill, unless a relax step due by then allows it;
3. a paused agent and an agent in wrap-up are never offered a call;
4. no waiting call and available agent that could take it are left apart (except an agent the call rang
   this round, which waits for the queue's retry);
5. when an agent is offered a call, no better call (priority, then first arrival) that it could take was
   waiting untried before the step and is still waiting after it — across all queues;
6. the agent state log is a chain (each change starts where the previous one ended);
7. the engine's internal indexes agree with its state.

At the end it tells the engine the truth once (`reconcile`), runs every deadline, and checks that every
agent without a live call is available, paused or logged out — nobody is stuck.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from softswitch.acd import AcdEngine, AgentConfig, AgentStatus, QueueConfig, RelaxStep
from softswitch.acd.actions import (
    AgentStateChanged,
    CancelOffer,
    ConnectCall,
    ExitTo,
    OfferCall,
    PauseAgent,
    QueueEventKind,
    TimeOut,
)
from softswitch.acd.config import Announce, Overflow
from softswitch.acd.skills import Requirements, meets

STRATEGIES = ["longest_idle", "least_calls", "round_robin", "ring_all", "best_skill", "random"]
AGENT_IDS = ["a0", "a1", "a2", "a3", "a4"]
QUEUES = ["q0", "q1", "q2"]
levels = st.integers(0, 9)


def agent_config(agent_id: str, x: int, y: int) -> AgentConfig:
    return AgentConfig(agent_id, {name: level for name, level in (("x", x), ("y", y)) if level > 0})


class AcdMachine(RuleBasedStateMachine):
    # -- set-up ---------------------------------------------------------------------------------------

    @initialize(
        strategies=st.lists(st.sampled_from(STRATEGIES), min_size=3, max_size=3),
        priorities=st.lists(st.integers(0, 3), min_size=3, max_size=3),
        skills=st.lists(st.tuples(levels, levels), min_size=5, max_size=5),
        ring_timeout=st.sampled_from([5.0, 20.0]),
        wrap_up=st.sampled_from([0.0, 10.0]),
        max_missed=st.sampled_from([0, 1, 3]),
        retry=st.sampled_from([0.0, 5.0]),
        empties=st.tuples(st.booleans(), st.booleans()),
        logged_in=st.sets(st.sampled_from(AGENT_IDS), min_size=2),
    )
    def setup(
        self, strategies, priorities, skills, ring_timeout, wrap_up, max_missed, retry, empties, logged_in
    ):
        common = {"ring_timeout": ring_timeout, "wrap_up": wrap_up, "max_missed": max_missed, "retry": retry}
        self.queue_configs = {
            "q0": QueueConfig(
                "q0",
                skills={"x": 5},
                relax=(RelaxStep(30, {"x": 2}),),
                strategy=strategies[0],
                priority=priorities[0],
                max_wait=300,
                exit_key="0",
                exit_to="vm",
                **common,
            ),
            "q1": QueueConfig(
                "q1",
                skills={"y": 3},
                strategy=strategies[1],
                priority=priorities[1],
                max_wait=200,
                join_empty=empties[0],
                leave_when_empty=empties[1],
                announce=Announce(every=15, position=True),
                **common,
            ),
            "q2": QueueConfig(
                "q2",
                skills={"x": 1, "y": 1},
                relax=(RelaxStep(20, {"y": 0}),),
                strategy=strategies[2],
                priority=priorities[2],
                overflow=Overflow(40, "q0"),
                max_wait=250,
                vip_numbers=("vip",),
                **common,
            ),
        }
        self.all_queue_configs = dict(
            self.queue_configs
        )  # removed queues keep serving with their last config
        self.agent_configs = {
            aid: agent_config(aid, x, y) for aid, (x, y) in zip(AGENT_IDS, skills, strict=True)
        }
        self.engine = AcdEngine(list(self.queue_configs.values()), list(self.agent_configs.values()))
        self.now = 0.0
        self.counter = 0
        # the switch's truth
        self.live: dict[str, set[str]] = {}
        self.direct: set[str] = set()
        self.reachable: set[str] = set(AGENT_IDS)
        # what the engine told us
        self.ringing: dict[str, str] = {}  # agent -> call
        self.talking: dict[str, str] = {}  # agent -> call
        self.paused: set[str] = set()
        self.logout_pending: set[str] = set()
        self.wrap_until: dict[str, float] = {}
        self.entered: dict[str, tuple[str, float]] = {}  # call -> (queue, entered_at)
        self.last_state: dict[str, AgentStatus] = {}
        for agent in sorted(logged_in):
            self.step(lambda agent=agent: self.engine.agent_login(agent, now=0.0))

    # -- the step and its checks ----------------------------------------------------------------------

    def step(self, thunk, *, answered: tuple[str, str] | None = None, exact_order: bool = True):
        before = self.engine.snapshot(now=self.now)
        result = thunk()
        actions = self.engine.actions()
        records = self.engine.records()
        self.engine.check_consistency()
        offered_now: dict[str, list[str]] = {}
        # Records first: they carry entries into queues and completions, in order with the actions.
        for record in records:
            self.fold_record(record)
        for action in actions:
            match action:
                case OfferCall(call, agent, ring_until):
                    self.check_offer(call, agent, ring_until)
                    self.ringing[agent] = call
                    offered_now.setdefault(call, []).append(agent)
                case CancelOffer(call, agent, _reason):
                    if self.ringing.get(agent) == call:
                        del self.ringing[agent]
                case ConnectCall(call, agent):
                    assert answered == (call, agent), (action, answered)
                    self.ringing.pop(agent, None)
                    self.talking[agent] = call
                    self.live[call] = {agent}
                case TimeOut(call) | ExitTo(call):
                    self.live.pop(call, None)
                case PauseAgent(agent):
                    self.paused.add(agent)
        after = self.engine.snapshot(now=self.now)
        self.check_no_idle_match(after)
        if exact_order:
            self.check_order(before, after, offered_now)
        return result

    def fold_record(self, record) -> None:
        if isinstance(record, AgentStateChanged):
            previous = self.last_state.get(record.agent, AgentStatus.LOGGED_OUT)
            assert record.old == previous, (record, previous)
            self.last_state[record.agent] = record.new
            return
        kind = record.kind
        if kind is QueueEventKind.ENTER:
            self.entered[record.call] = (record.queue, record.at)
        elif kind in (QueueEventKind.COMPLETE_AGENT, QueueEventKind.COMPLETE_CALLER):
            self.talking.pop(record.agent, None)
            wrap = self.all_queue_configs[record.queue].wrap_up
            if record.agent in self.logout_pending or record.agent not in self.agent_configs:
                self.logout_pending.discard(record.agent)
            elif wrap > 0:
                self.wrap_until[record.agent] = record.at + wrap
        elif kind is QueueEventKind.WRAP_UP:
            self.wrap_until.pop(record.agent, None)
        elif kind is QueueEventKind.LOGOUT:
            self.wrap_until.pop(record.agent, None)
            self.paused.discard(record.agent)
            self.logout_pending.discard(record.agent)
        elif kind in (
            QueueEventKind.RING_NO_ANSWER,
            QueueEventKind.OFFER_REJECTED,
            QueueEventKind.OFFER_UNREACHABLE,
            QueueEventKind.OFFER_WITHDRAWN,
        ):
            if self.ringing.get(record.agent) == record.call:
                del self.ringing[record.agent]

    def check_offer(self, call: str, agent: str, ring_until: float) -> None:
        assert agent not in self.ringing, f"{agent} offered {call} while ringing for {self.ringing[agent]}"
        assert agent not in self.talking, f"{agent} offered {call} while talking on {self.talking[agent]}"
        assert agent not in self.paused, f"paused {agent} offered {call}"
        assert self.wrap_until.get(agent, -math.inf) <= self.now, f"{agent} offered {call} during wrap-up"
        assert agent in self.agent_configs, f"removed agent {agent} offered {call}"
        queue, entered = self.entered[call]
        config = self.all_queue_configs[queue]
        requirements = Requirements.build(config.skills, config.relax)
        allowed = requirements.steps[requirements.step_at(self.now - entered)]
        assert meets(self.agent_configs[agent].skills, allowed), (call, queue, agent, allowed)
        assert ring_until == self.now + config.ring_timeout

    def eligible(self, agent: str, call) -> bool:
        config = self.all_queue_configs[call.queue]
        requirements = Requirements.build(config.skills, config.relax)
        skills = self.agent_configs[agent].skills if agent in self.agent_configs else None
        return skills is not None and meets(skills, requirements.steps[call.step])

    def check_no_idle_match(self, snapshot) -> None:
        idle = [a for a, view in snapshot.agents.items() if view.status is AgentStatus.AVAILABLE]
        for call in snapshot.calls.values():
            if call.state != "waiting":
                continue
            for agent in idle:
                if self.eligible(agent, call):
                    assert agent in call.rung, f"{call.id} waits while eligible {agent} is available"
                    assert call.retry_at is not None and call.retry_at >= self.now, (
                        f"{call.id} rang {agent} and has no new round scheduled"
                    )

    def check_order(self, before, after, offered_now: dict[str, list[str]]) -> None:
        for call_id, agents in offered_now.items():
            chosen = after.calls.get(call_id) or before.calls.get(call_id)
            if chosen is None:
                continue
            chosen_order = (-chosen.priority, chosen.arrived_at)
            for other in before.calls.values():
                later = after.calls.get(other.id)
                if (
                    other.id in offered_now
                    or other.state != "waiting"
                    or later is None
                    or later.state != "waiting"
                    or later.queue != other.queue
                ):
                    continue
                for agent in agents:
                    if agent in other.rung or not self.eligible(agent, other):
                        continue
                    assert (-other.priority, other.arrived_at) >= chosen_order, (
                        f"{agent} got {call_id} {chosen_order} while better {other.id} waited"
                    )

    # -- inputs ---------------------------------------------------------------------------------------

    def new_call_id(self) -> str:
        self.counter += 1
        return f"c{self.counter}"

    @rule(
        queue=st.sampled_from([*QUEUES, *QUEUES, "nope"]),
        caller=st.sampled_from([None, "vip", "+371"]),
        priority=st.sampled_from([None, None, 0, 7]),
    )
    def arrive(self, queue, caller, priority):
        call = self.new_call_id()
        self.live[call] = set()
        self.step(
            lambda: self.engine.call_arrived(call, queue, caller=caller, priority=priority, now=self.now)
        )

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def answer(self, data):
        agent = data.draw(st.sampled_from(sorted(self.ringing)))
        call = self.ringing[agent]
        self.step(lambda: self.engine.offer_answered(call, agent, now=self.now), answered=(call, agent))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data(), reason=st.sampled_from(["no_answer", "rejected", "unreachable"]))
    def fail_offer(self, data, reason):
        agent = data.draw(st.sampled_from(sorted(self.ringing)))
        call = self.ringing.pop(agent)
        if reason == "unreachable":
            self.reachable.discard(agent)
        self.step(lambda: self.engine.offer_failed(call, agent, reason=reason, now=self.now))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def withdraw_offer(self, data):
        """The switch ended a ring that was not the agent's fault (ring_all: a colleague's failed answer)."""
        agent = data.draw(st.sampled_from(sorted(self.ringing)))
        call = self.ringing.pop(agent)
        self.step(lambda: self.engine.offer_withdrawn(call, agent, reason="colleague_failed", now=self.now))

    @precondition(lambda self: self.ringing)
    @rule(data=st.data())
    def answer_quickly(self, data):
        """Agents answer more often than anything else happens (a second rule doubles the weight)."""
        self.answer(data)

    @precondition(lambda self: self.talking)
    @rule(data=st.data(), by=st.sampled_from(["agent", "caller"]))
    def end_talk(self, data, by):
        agent = data.draw(st.sampled_from(sorted(self.talking)))
        call = self.talking[agent]
        self.live.pop(call, None)
        self.step(lambda: self.engine.call_ended(call, by=by, now=self.now))

    @rule(data=st.data())
    def stale_or_random_answer(self, data):
        """An answer for a call/agent pair the engine may no longer hold (races, retransmissions)."""
        call = f"c{data.draw(st.integers(1, max(1, self.counter)))}"
        agent = data.draw(st.sampled_from(AGENT_IDS))
        if self.ringing.get(agent) == call:
            return  # a genuine answer is the answer rule's business
        self.step(lambda: self.engine.offer_answered(call, agent, now=self.now))

    @precondition(lambda self: self.live)
    @rule(data=st.data(), by=st.sampled_from(["agent", "caller"]), how=st.sampled_from(["end", "abandon"]))
    def hang_up(self, data, by, how):
        call = data.draw(st.sampled_from(sorted(self.live)))
        del self.live[call]
        if how == "end":
            self.step(lambda: self.engine.call_ended(call, by=by, now=self.now))
        else:
            self.step(lambda: self.engine.caller_abandoned(call, now=self.now))

    @precondition(lambda self: self.live)
    @rule(data=st.data(), digit=st.sampled_from(["0", "5"]))
    def press(self, data, digit):
        call = data.draw(st.sampled_from(sorted(self.live)))
        self.step(lambda: self.engine.dtmf(call, digit, now=self.now))

    @rule(
        agent=st.sampled_from(AGENT_IDS),
        what=st.sampled_from(["login", "logout", "pause", "resume", "end_wrap"]),
    )
    def agent_command(self, agent, what):
        engine = self.engine
        if what == "login":
            paused = agent in self.paused
            self.paused.discard(agent)  # a login starts available
            ack = self.step(lambda: engine.agent_login(agent, now=self.now))
            if ack != "done" and paused:
                self.paused.add(agent)
        elif what == "logout":
            ack = self.step(lambda: engine.agent_logout(agent, now=self.now))
            if ack == "pending":
                self.logout_pending.add(agent)
        elif what == "pause":
            ack = self.step(lambda: engine.agent_pause(agent, "break", now=self.now))
            if ack in ("done", "no_change"):
                self.paused.add(agent)
        elif what == "resume":
            self.paused.discard(agent)  # offers may follow within the same step
            self.step(lambda: engine.agent_resume(agent, now=self.now))
        else:
            self.step(lambda: engine.end_wrap_up(agent, now=self.now))

    @rule(agent=st.sampled_from(AGENT_IDS), reachable=st.booleans(), told=st.booleans())
    def phone_reachability(self, agent, reachable, told):
        (self.reachable.add if reachable else self.reachable.discard)(agent)
        if told:
            self.step(lambda: self.engine.agent_reachable(agent, reachable, now=self.now))

    @rule(agent=st.sampled_from(AGENT_IDS), active=st.booleans(), told=st.booleans())
    def direct_call(self, agent, active, told):
        (self.direct.add if active else self.direct.discard)(agent)
        if told:
            self.step(lambda: self.engine.agent_direct_call(agent, active, now=self.now))

    @precondition(lambda self: self.live)
    @rule(data=st.data(), fault=st.sampled_from(["lost_bye", "agent_leg_lost"]))
    def lose_a_message(self, data, fault):
        """The switch's truth changes and the engine is never told."""
        call = data.draw(st.sampled_from(sorted(self.live)))
        if fault == "lost_bye":
            del self.live[call]
        else:
            self.live[call] = set()

    @rule()
    def reconcile(self):
        live = {call: set(agents) for call, agents in self.live.items()}
        for agent in self.direct:
            live[f"direct-{agent}"] = {agent}
        self.step(lambda: self.engine.reconcile(live, set(self.reachable), now=self.now), exact_order=False)

    @rule(agent=st.sampled_from(AGENT_IDS), x=levels, y=levels, drop_q1=st.booleans(), drop_a4=st.booleans())
    def reload(self, agent, x, y, drop_q1, drop_a4):
        agents = dict(self.agent_configs)
        agents[agent] = agent_config(agent, x, y)
        if drop_a4:
            agents.pop("a4", None)
        elif "a4" not in agents:
            agents["a4"] = agent_config("a4", 3, 3)
        queues = dict(self.queue_configs)
        if drop_q1:
            queues.pop("q1", None)
        elif "q1" not in queues:
            queues["q1"] = replace(self.all_queue_configs["q1"], wrap_up=5.0)
        self.queue_configs = queues
        self.all_queue_configs.update(queues)
        self.agent_configs = agents
        self.step(
            lambda: self.engine.reload(list(queues.values()), list(agents.values()), now=self.now),
            exact_order=False,
        )

    @rule(dt=st.sampled_from([0.0, 1.0, 2.0, 4.0, 8.0, 15.0, 60.0]))
    def advance(self, dt):
        target = self.now + dt
        while (deadline := self.engine.next_deadline()) is not None and deadline <= target:
            self.now = max(self.now, deadline)
            self.step(lambda: self.engine.handle_timer(now=self.now))
        self.now = target

    # -- the end: nobody stuck ------------------------------------------------------------------------

    def teardown(self):
        if not hasattr(self, "engine"):
            return
        self.reconcile()
        for _ in range(10_000):
            deadline = self.engine.next_deadline()
            if deadline is None:
                break
            self.now = max(self.now, deadline)
            self.step(lambda: self.engine.handle_timer(now=self.now))
        else:
            raise AssertionError("deadlines never ran out")
        on_live_call = {agent for agents in self.live.values() for agent in agents}
        for agent, view in self.engine.snapshot(now=self.now).agents.items():
            allowed = {AgentStatus.AVAILABLE, AgentStatus.PAUSED, AgentStatus.LOGGED_OUT}
            if agent in on_live_call:
                allowed.add(AgentStatus.ON_CALL)
            if agent in self.direct:
                allowed.add(AgentStatus.DIRECT_CALL)
            if agent not in self.reachable:
                allowed.add(AgentStatus.UNREACHABLE)
            assert view.status in allowed, f"{agent} stuck in {view.status}"
            if view.status is AgentStatus.PAUSED:
                assert view.pause_reason in ("break", "missed_offers"), view
        for call in self.engine.snapshot(now=self.now).calls.values():
            assert call.state == "connected" and call.id in self.live, f"{call.id} left {call.state}"


AcdMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=70,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAcdInvariants = AcdMachine.TestCase


def test_a_broken_invariant_is_caught():
    """The machine's checks can fail: an engine that offers a paused agent is reported."""
    machine = AcdMachine()
    machine.setup(
        strategies=["longest_idle"] * 3,
        priorities=[0, 0, 0],
        skills=[(9, 9)] * 5,
        ring_timeout=20.0,
        wrap_up=0.0,
        max_missed=0,
        retry=0.0,
        empties=(True, False),
        logged_in={"a1"},
    )
    machine.paused.add("a0")  # the model believes a0 paused; the engine does not
    machine.agent_command("a0", "login")
    machine.paused.add("a0")
    try:
        machine.arrive("q0", None, None)
    except AssertionError as error:
        assert "paused a0" in str(error)
    else:
        raise AssertionError("the paused-agent check did not fire")
