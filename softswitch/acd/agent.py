"""Agents: the facts the engine keeps about each one, and the one state derived from them.

An agent's state is never stored and mutated on its own; it is *derived* from a handful of facts
(logged in, reachable, pause reason, the queue call it rings for or talks on, a direct call, a wrap-up
deadline). Each fact has its own way out: a call ends, a deadline passes, the phone registers again, the
agent resumes, reconciliation clears it. So there is no transition to forget and no state without an exit,
which is how "agent stuck in reserved" bugs are avoided. Precedence when several facts hold:

    logged_out > offered > on_call > direct_call > unreachable > wrap_up > paused > available

(a pause requested during a call shows after the call and its wrap-up; a wrap-up keeps running while the
phone is briefly unreachable). Only `available` may be offered a call.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from .config import AgentConfig

if TYPE_CHECKING:
    from .queue import Call, QueueState

__all__ = ["BUSY_STATES", "Agent", "AgentStatus"]


class AgentStatus(StrEnum):
    """What an agent is doing, as supervisors see it and as the agent state log records it."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    #: A queue call rings the agent's phone.
    OFFERED = "offered"
    #: Talking on a queue call.
    ON_CALL = "on_call"
    #: On a call that did not come from a queue (an extension dialled, an outbound call).
    DIRECT_CALL = "direct_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    #: Logged in, but no live binding or qualify failing.
    UNREACHABLE = "unreachable"


#: States counted as "busy" for `empty_when: [busy]` and for occupancy.
BUSY_STATES = frozenset({AgentStatus.OFFERED, AgentStatus.ON_CALL, AgentStatus.DIRECT_CALL})


class Agent:
    """One agent's facts. Engine-internal and mutable; strategies read it, nothing else writes it."""

    __slots__ = (
        "answered",
        "call",
        "config",
        "direct",
        "id",
        "idle_since",
        "index",
        "last_offered",
        "logged_in",
        "logout_pending",
        "misses",
        "pause_reason",
        "reachable",
        "retired",
        "score",
        "serves",
        "status",
        "status_since",
        "token",
        "wrap_call",
        "wrap_queue",
        "wrap_started",
        "wrap_until",
    )

    def __init__(self, config: AgentConfig, index: int, *, now: float) -> None:
        self.config = config
        self.id = config.id
        #: Position in the roster; the last tie-break of every strategy, so choices are reproducible.
        self.index = index
        self.logged_in = False
        #: Unknown until the edge says otherwise: a login from the CLI is trusted to have a phone.
        self.reachable = True
        self.pause_reason: str | None = None
        self.direct = False
        #: The queue call this agent rings for (offered) or talks on (connected); at most one, ever.
        self.call: Call | None = None
        self.wrap_until: float | None = None
        self.wrap_queue: QueueState | None = None
        self.wrap_call: str | None = None
        self.wrap_started = 0.0
        self.logout_pending = False
        #: Consecutive missed offers (no answer / rejected); reset by an answer or a resume.
        self.misses = 0
        #: Queue calls answered since the engine started (least_calls).
        self.answered = 0
        #: When the agent last became available after work, a pause or a login (longest_idle).
        self.idle_since = now
        #: queue name -> that queue's offer sequence number when it last offered this agent (round_robin).
        self.last_offered: dict[str, int] = {}
        #: queue name -> summed proficiency in the queue's required skills (best_skill).
        self.score: dict[str, int] = {}
        #: queue name -> first relax step at which this agent qualifies, for every queue it can ever serve.
        self.serves: dict[str, int] = {}
        #: Bumped whenever availability changes; heap entries carrying an older token are stale.
        self.token = 0
        self.status = AgentStatus.LOGGED_OUT
        self.status_since = now
        #: Removed from the configuration; logged out and forgotten as soon as no call holds it.
        self.retired = False

    @property
    def offered(self) -> bool:
        return self.call is not None and self.call.agent is not self

    @property
    def connected(self) -> bool:
        return self.call is not None and self.call.agent is self

    def derive_status(self) -> AgentStatus:
        """The state the facts imply (precedence in the module docstring)."""
        if not self.logged_in:
            return AgentStatus.LOGGED_OUT
        call = self.call
        if call is not None:
            return AgentStatus.ON_CALL if call.agent is self else AgentStatus.OFFERED
        if self.direct:
            return AgentStatus.DIRECT_CALL
        if not self.reachable:
            return AgentStatus.UNREACHABLE
        if self.wrap_until is not None:
            return AgentStatus.WRAP_UP
        if self.pause_reason is not None:
            return AgentStatus.PAUSED
        return AgentStatus.AVAILABLE

    def __repr__(self) -> str:
        return f"<Agent {self.id} {self.status}>"
