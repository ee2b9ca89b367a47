"""Automatic call distribution: a sans-IO engine for skills-based queues.

`AcdEngine` takes inputs (call arrived, offer answered or failed, call ended, agent commands, reachability,
reload, reconcile, time passed) with a keyword-only `now` and answers with actions for the call flow, records
for the store and its next deadline. It imports only the standard library; nothing here knows SIP or media.
`stats` folds records into service level, ASA, AHT, abandonment and occupancy; `simulate` drives the same
engine on a simulated clock for capacity planning and the Erlang C check.
"""

from __future__ import annotations

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
from .agent import AgentStatus
from .config import AgentConfig, Announce, ConfigError, QueueConfig, RelaxStep
from .config import Overflow as OverflowRule
from .engine import AUTO_PAUSE_REASON, AcdEngine, AcdSnapshot, Ack, AgentSnapshot, CallSnapshot, QueueSnapshot
from .simulate import ErlangC, Load, QueueLoad, QueueResult, SimulationResult, erlang_c, simulate
from .stats import AgentFigures, QueueFigures, StatsCollector
from .strategies import UnknownStrategy, known_strategies, register_strategy

__all__ = [
    "AUTO_PAUSE_REASON",
    "AcdEngine",
    "AcdSnapshot",
    "Ack",
    "Action",
    "AgentConfig",
    "AgentFigures",
    "AgentSnapshot",
    "AgentStateChanged",
    "AgentStatus",
    "Announce",
    "AnnouncePosition",
    "CallSnapshot",
    "CancelOffer",
    "ConfigError",
    "ConnectCall",
    "ErlangC",
    "ExitTo",
    "Load",
    "OfferCall",
    "Overflow",
    "OverflowRule",
    "PauseAgent",
    "PlayPrompt",
    "QueueConfig",
    "QueueEvent",
    "QueueEventKind",
    "QueueFigures",
    "QueueLoad",
    "QueueResult",
    "QueueSnapshot",
    "Record",
    "RelaxStep",
    "Repair",
    "SimulationResult",
    "StartMusicOnHold",
    "StatsCollector",
    "TimeOut",
    "UnknownStrategy",
    "erlang_c",
    "known_strategies",
    "register_strategy",
    "simulate",
]
