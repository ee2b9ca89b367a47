"""What the ACD engine is told: inputs as small frozen dataclasses.

Each event has a method of the same meaning on `AcdEngine` (`CallArrived` is `engine.call_arrived(...)`);
`engine.handle(event, now=...)` dispatches one to the other, so a recorded or generated stream of events
(the simulator, hypothesis tests, a replay of a day's log) drives the same code as the live switch.
Names are past tense for what happened; `now` is never part of an event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .config import AgentConfig, QueueConfig

__all__ = [
    "AcdEvent",
    "AgentDirectCall",
    "AgentLoggedIn",
    "AgentLoggedOut",
    "AgentPaused",
    "AgentReachability",
    "AgentResumed",
    "CallArrived",
    "CallEnded",
    "CallerAbandoned",
    "ConfigReloaded",
    "DtmfReceived",
    "FailureReason",
    "OfferAnswered",
    "OfferFailed",
    "OfferWithdrawn",
    "Reconciled",
    "TimePassed",
    "WrapUpEnded",
]

FailureReason = Literal["no_answer", "rejected", "unreachable"]


@dataclass(frozen=True, slots=True)
class CallArrived:
    """A caller was answered by a queue's number. `priority` None: the queue's (or its VIP priority)."""

    call: str
    queue: str
    caller: str | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class OfferAnswered:
    call: str
    agent: str


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    """The switch stopped ringing the agent for a reason that is not the agent's (a colleague's answer in
    `ring_all` that then failed): not a miss."""

    call: str
    agent: str
    reason: str


@dataclass(frozen=True, slots=True)
class OfferFailed:
    """The agent's phone did not take the call: no answer, a rejection (486/603) or no way to reach it."""

    call: str
    agent: str
    reason: FailureReason


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call ended; `by` says whose side hung up."""

    call: str
    by: Literal["agent", "caller"]


@dataclass(frozen=True, slots=True)
class CallerAbandoned:
    """The caller hung up before reaching an agent."""

    call: str


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    call: str
    digit: str


@dataclass(frozen=True, slots=True)
class AgentLoggedIn:
    agent: str


@dataclass(frozen=True, slots=True)
class AgentLoggedOut:
    agent: str


@dataclass(frozen=True, slots=True)
class AgentPaused:
    agent: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentResumed:
    agent: str


@dataclass(frozen=True, slots=True)
class WrapUpEnded:
    """The agent ended wrap-up early (feature code or CLI)."""

    agent: str


@dataclass(frozen=True, slots=True)
class AgentReachability:
    """The agent's phone gained or lost its last live binding, or qualify started or stopped failing."""

    agent: str
    reachable: bool


@dataclass(frozen=True, slots=True)
class AgentDirectCall:
    """The agent started or finished a call that did not come from a queue."""

    agent: str
    active: bool


@dataclass(frozen=True, slots=True)
class ConfigReloaded:
    queues: tuple[QueueConfig, ...]
    agents: tuple[AgentConfig, ...]


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The switch's truth: live call ids with the agents on them, and the agents with live bindings."""

    live_calls: Mapping[str, Collection[str]] = field(default_factory=dict)
    reachable_agents: Collection[str] = ()


@dataclass(frozen=True, slots=True)
class TimePassed:
    """Only the clock moved: run every deadline that is due."""


AcdEvent = (
    CallArrived
    | OfferAnswered
    | OfferFailed
    | OfferWithdrawn
    | CallEnded
    | CallerAbandoned
    | DtmfReceived
    | AgentLoggedIn
    | AgentLoggedOut
    | AgentPaused
    | AgentResumed
    | WrapUpEnded
    | AgentReachability
    | AgentDirectCall
    | ConfigReloaded
    | Reconciled
    | TimePassed
)
