"""What the ACD engine asks the switch to do (actions) and what it writes down (records).

Actions are commands for `callflow.py`: ring an agent, stop ringing, bridge, play a prompt, send the caller
elsewhere. Records are the two logs the issue asks for: `QueueEvent` (like Asterisk's queue_log: enter,
offer, ring-no-answer, connect, complete, abandon with position and wait, overflow, timeout, exit, pause,
resume) and `AgentStateChanged` (every agent state change with its time and reason). The engine hands them
out separately (`AcdEngine.actions()` and `AcdEngine.records()`), so the call flow matches on actions only and
the store persists records only. All times are the engine's `now` (monotonic seconds); turning them into wall
time for reports is the store's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .agent import AgentStatus

__all__ = [
    "Action",
    "AgentStateChanged",
    "AnnouncePosition",
    "CancelOffer",
    "ConnectCall",
    "ExitTo",
    "OfferCall",
    "Overflow",
    "PauseAgent",
    "PlayPrompt",
    "QueueEvent",
    "QueueEventKind",
    "Record",
    "Repair",
    "StartMusicOnHold",
    "TimeOut",
]


@dataclass(frozen=True, slots=True)
class StartMusicOnHold:
    """Play the queue's music to the caller (again after an overflow to a queue with other music)."""

    call: str
    music: str | None = None


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play a prompt file to the waiting caller, then resume the music."""

    call: str
    prompt: str


@dataclass(frozen=True, slots=True)
class AnnouncePosition:
    """Tell the caller their position (1 = next) and, when known, the estimated wait in seconds."""

    call: str
    position: int
    estimated_wait: float | None


@dataclass(frozen=True, slots=True)
class OfferCall:
    """Ring `agent` for `call` until `ring_until`; the engine times the offer out itself."""

    call: str
    agent: str
    ring_until: float


@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Stop ringing `agent` for `call` (or hang up its leg if it answered too late).

    `reason`: ring_timeout, answered_elsewhere, caller_gone, agent_paused, agent_logged_out, unreachable,
    withdrawn (an answer for an offer the engine no longer holds), removed (agent deleted by a reload).
    """

    call: str
    agent: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectCall:
    """`agent` answered: bridge the caller to the agent's leg and stop the music."""

    call: str
    agent: str


@dataclass(frozen=True, slots=True)
class Overflow:
    """The call moved from `from_queue` to `to_queue` (the engine already re-queued it there)."""

    call: str
    to_queue: str
    from_queue: str = ""


@dataclass(frozen=True, slots=True)
class TimeOut:
    """The call leaves the queue without an agent: send it to `to` (None: hang up with a prompt).

    `reason`: max_wait, join_empty, leave_empty, full, unknown_queue, agent_lost (its agent's leg vanished,
    found by reconciliation).
    """

    call: str
    reason: str
    to: str | None = None


@dataclass(frozen=True, slots=True)
class ExitTo:
    """The caller pressed the queue's exit key: send the call to `target`."""

    call: str
    target: str | None
    digit: str


@dataclass(frozen=True, slots=True)
class PauseAgent:
    """The engine paused the agent (auto-pause after missed offers); tell the agent's phone if you can."""

    agent: str
    reason: str


Action = (
    StartMusicOnHold
    | PlayPrompt
    | AnnouncePosition
    | OfferCall
    | CancelOffer
    | ConnectCall
    | Overflow
    | TimeOut
    | ExitTo
    | PauseAgent
)


class QueueEventKind(StrEnum):
    """Rows of the queue event table (Asterisk queue_log names in comments)."""

    ENTER = "enter"  # ENTERQUEUE; position = position on entry
    OFFER = "offer"  # (RINGING); wait so far
    RING_NO_ANSWER = "ring_no_answer"  # RINGNOANSWER; duration = ring time
    OFFER_REJECTED = "offer_rejected"  # (RINGNOANSWER with busy/decline)
    OFFER_UNREACHABLE = "offer_unreachable"  # (RINGNOANSWER, device unavailable)
    OFFER_WITHDRAWN = "offer_withdrawn"  # (RINGCANCELED); detail = reason
    CONNECT = "connect"  # CONNECT; wait = hold time, duration = ring time
    COMPLETE_AGENT = "complete_agent"  # COMPLETEAGENT; wait = hold time, duration = talk time
    COMPLETE_CALLER = "complete_caller"  # COMPLETECALLER
    WRAP_UP = "wrap_up"  # (none); at the end of wrap-up, duration = wrap-up time
    ABANDON = "abandon"  # ABANDON; position, wait
    OVERFLOW = "overflow"  # (EXITWITHTIMEOUT + ENTERQUEUE); detail = target queue
    RELAX = "relax"  # (none); detail = new relax step
    TIMEOUT = "timeout"  # EXITWITHTIMEOUT; position, wait
    EXIT_KEY = "exit_key"  # EXITWITHKEY; detail = key
    EXIT_EMPTY = "exit_empty"  # EXITEMPTY / JOINEMPTY; detail = join_empty or leave_empty
    FULL = "full"  # FULL
    PAUSE = "pause"  # PAUSE; detail = reason
    RESUME = "resume"  # UNPAUSE
    LOGIN = "login"  # ADDMEMBER
    LOGOUT = "logout"  # REMOVEMEMBER
    REPAIR = "repair"  # (none); reconciliation fixed a mismatch, detail says which


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One row of the queue event table."""

    at: float
    kind: QueueEventKind
    queue: str | None = None
    call: str | None = None
    agent: str | None = None
    #: Position in the queue (1 = next) where it matters: enter, abandon, timeout, exits.
    position: int | None = None
    #: Seconds the call had waited in this queue at the time of the event.
    wait: float | None = None
    #: Ring time, talk time or wrap-up time, by kind.
    duration: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """One row of the agent state log. For PAUSED `reason` is the pause reason code."""

    agent: str
    old: AgentStatus
    new: AgentStatus
    reason: str
    at: float


Record = QueueEvent | AgentStateChanged


@dataclass(frozen=True, slots=True)
class Repair:
    """A mismatch reconciliation found and fixed.

    `kind`: call_vanished, agent_lost, direct_call_ended, direct_call_found, reachable, unreachable.
    """

    kind: str
    call: str | None
    agent: str | None
    detail: str = ""
