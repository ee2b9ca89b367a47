"""The ACD's own configuration: queues and agents as frozen dataclasses.

Field names are the YAML's (see `config/softswitch.yaml` and `softswitch/config/schema.py`), so the config
loader converts with `QueueConfig.from_dict(model.model_dump(mode="json"))` and
`AgentConfig.from_dict(...)`; keys the ACD does not use (`record`, `password`, ...) are ignored there.
Every check that only needs one queue or one agent is made here and raises `ConfigError`; cross-checks
(overflow targets exist, ids unique) are made by `AcdEngine` when it is built or reloaded.

Defaults follow Asterisk's app_queue where a contact centre would not object (`joinempty=yes`,
`leavewhenempty=no`, `retry=5`); where it would, the comment says why we differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "EMPTY_CONDITIONS",
    "AgentConfig",
    "Announce",
    "ConfigError",
    "Overflow",
    "QueueConfig",
    "RelaxStep",
]

#: Agent conditions that can make a queue count as empty for `join_empty` / `leave_when_empty` (Asterisk's
#: `joinempty=paused,unavailable,...` list with our state names; `busy` is offered, on a queue call or a
#: direct call).
EMPTY_CONDITIONS = ("logged_out", "paused", "unreachable", "wrap_up", "busy")

_DTMF_KEYS = "0123456789*#ABCDabcd"
MIN_LEVEL = 1
MAX_LEVEL = 10


class ConfigError(ValueError):
    """A queue or agent definition the engine cannot run with; the message names the offending key."""


def _skills(owner: str, raw: Mapping[str, Any] | None, *, low: int) -> Mapping[str, int]:
    result: dict[str, int] = {}
    for name, level in (raw or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{owner}: skill names must be non-empty strings, got {name!r}")
        if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= MAX_LEVEL:
            raise ConfigError(
                f"{owner}: skill {name!r} level must be an integer {low}..{MAX_LEVEL}, got {level!r}"
            )
        result[name] = level
    return MappingProxyType(result)


def _seconds(owner: str, value: float | None, *, allow_none: bool = False, positive: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{owner} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{owner} must be a finite number of seconds >= 0, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{owner} must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RelaxStep:
    """After `after` seconds in the queue, the minimums in `skills` replace the queue's; 0 drops a skill.

    Skills a step does not name keep their level from the step before. Steps only ever lower requirements, so
    the set of agents who may take a call only grows while it waits.
    """

    after: float
    skills: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _seconds("relax.after", self.after, positive=True)
        object.__setattr__(self, "skills", _skills("relax.skills", self.skills, low=0))


@dataclass(frozen=True, slots=True)
class Overflow:
    """After `after` seconds in this queue a waiting caller moves to queue `to`."""

    after: float
    to: str

    def __post_init__(self) -> None:
        _seconds("overflow.after", self.after, positive=True)
        if not self.to:
            raise ConfigError("overflow.to must name a queue")


@dataclass(frozen=True, slots=True)
class Announce:
    """Every `every` seconds of waiting: play `prompt` (if any), then say the position (if `position`)."""

    every: float | None = None
    position: bool = False
    prompt: str | None = None

    def __post_init__(self) -> None:
        _seconds("announce.every", self.every, allow_none=True, positive=True)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue as the ACD sees it (YAML `queues[]`)."""

    name: str
    #: Numbers that reach the queue; routing is `callflow.py`'s business, kept here for the snapshot.
    numbers: tuple[str, ...] = ()
    #: Required skills with minimum proficiency 1..10.
    skills: Mapping[str, int] = field(default_factory=dict)
    #: A name from `strategies.known_strategies()`.
    strategy: str = "longest_idle"
    #: Higher is served first, across all queues an agent serves.
    priority: int = 0
    vip_numbers: tuple[str, ...] = ()
    #: Priority of callers in `vip_numbers`; default `priority + 10`.
    vip_priority: int | None = None
    #: Asterisk rings a member 15 s by default; softphones on Wi-Fi need a little longer.
    ring_timeout: float = 20.0
    #: Seconds an agent is left alone after a call of this queue (Asterisk `wrapuptime`, default 0 there).
    wrap_up: float = 10.0
    #: Longest wait in seconds, then `TimeOut(reason="max_wait", to=exit_to)`; None = no limit.
    max_wait: float | None = 600.0
    #: Most calls in the queue; callers beyond it get `TimeOut(reason="full")` (Asterisk `maxlen`).
    max_callers: int | None = None
    overflow: Overflow | None = None
    relax: tuple[RelaxStep, ...] = ()
    #: Music on hold file, passed through in `StartMusicOnHold`.
    moh: str | None = None
    announce: Announce | None = None
    #: Seconds; the service level is the share of calls answered within it.
    service_level: float = 20.0
    #: Let callers join when the queue is empty (see `empty_when`); Asterisk `joinempty=yes`.
    join_empty: bool = True
    #: Send waiting callers out when the queue becomes empty; Asterisk `leavewhenempty=no`.
    leave_when_empty: bool = False
    #: Agent conditions that do not count as "someone there" (subset of EMPTY_CONDITIONS). The default is the
    #: YAML's meaning: a queue is empty when no agent who could ever take its calls is logged in.
    empty_when: tuple[str, ...] = ("logged_out",)
    exit_key: str | None = None
    #: Where exit_key, max_wait, a full or an empty queue send callers (an extension or a queue).
    exit_to: str | None = None
    #: Consecutive missed offers before the agent is auto-paused; 0 = never. Asterisk's autopause pauses
    #: after one; three tolerates a dropped Wi-Fi packet or a short absence.
    max_missed: int = 3
    #: Seconds before a call that has rung every eligible agent rings them again (Asterisk `retry`: 5).
    retry: float = 5.0

    def __post_init__(self) -> None:
        from .strategies import known_strategies  # late: strategies imports nothing from here at load time

        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("queue name must be a non-empty string")
        where = f"queue {self.name!r}"
        object.__setattr__(self, "numbers", tuple(self.numbers))
        object.__setattr__(self, "vip_numbers", tuple(self.vip_numbers))
        object.__setattr__(self, "skills", _skills(f"{where}: skills", self.skills, low=MIN_LEVEL))
        object.__setattr__(self, "relax", tuple(self.relax))
        object.__setattr__(self, "empty_when", tuple(self.empty_when))
        if self.strategy not in known_strategies():
            known = ", ".join(known_strategies())
            raise ConfigError(f"{where}: unknown strategy {self.strategy!r} (known: {known})")
        _seconds(f"{where}: ring_timeout", self.ring_timeout, positive=True)
        _seconds(f"{where}: wrap_up", self.wrap_up)
        _seconds(f"{where}: max_wait", self.max_wait, allow_none=True, positive=True)
        _seconds(f"{where}: service_level", self.service_level)
        _seconds(f"{where}: retry", self.retry)
        if self.max_callers is not None and self.max_callers < 1:
            raise ConfigError(f"{where}: max_callers must be >= 1")
        if self.max_missed < 0:
            raise ConfigError(f"{where}: max_missed must be >= 0")
        if self.vip_priority is not None and self.vip_priority <= self.priority:
            raise ConfigError(f"{where}: vip_priority must exceed priority ({self.priority})")
        if self.overflow is not None and self.overflow.to == self.name:
            raise ConfigError(f"{where}: a queue cannot overflow to itself")
        if self.exit_key is not None and (len(self.exit_key) != 1 or self.exit_key not in _DTMF_KEYS):
            raise ConfigError(f"{where}: exit_key must be one DTMF key, got {self.exit_key!r}")
        for condition in self.empty_when:
            if condition not in EMPTY_CONDITIONS:
                known = ", ".join(EMPTY_CONDITIONS)
                raise ConfigError(f"{where}: unknown empty_when condition {condition!r} (known: {known})")
        current = dict(self.skills)
        previous = 0.0
        for i, step in enumerate(self.relax):
            if not isinstance(step, RelaxStep):
                raise ConfigError(f"{where}: relax[{i}] must be a RelaxStep")
            if step.after <= previous:
                raise ConfigError(f"{where}: relax[{i}].after must exceed {previous} (steps ascend)")
            previous = step.after
            for skill, level in step.skills.items():
                if level > current.get(skill, 0):
                    was = current.get(skill, 0)
                    raise ConfigError(f"{where}: relax[{i}] may only lower requirements; {skill!r} is {was}")
                current[skill] = level

    def priority_for(self, caller: str | None) -> int:
        """The priority of a call from `caller`: `vip_priority` for VIP numbers, else `priority`."""
        if caller is not None and caller in self.vip_numbers:
            return self.vip_priority if self.vip_priority is not None else self.priority + 10
        return self.priority

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> QueueConfig:
        """Build from YAML-shaped data (plain dicts and lists); keys the ACD does not use are ignored."""
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in raw.items() if key in known}
        if isinstance(values.get("overflow"), Mapping):
            values["overflow"] = Overflow(**values["overflow"])
        if isinstance(values.get("announce"), Mapping):
            announce = dict(values["announce"])
            if announce.get("prompt") is not None:
                announce["prompt"] = str(announce["prompt"])
            values["announce"] = Announce(**announce)
        if "relax" in values:
            values["relax"] = tuple(
                step if isinstance(step, RelaxStep) else RelaxStep(**step) for step in values["relax"] or ()
            )
        if values.get("moh") is not None:
            values["moh"] = str(values["moh"])
        for key in ("numbers", "vip_numbers", "empty_when"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """One agent as the ACD sees it (YAML `agents[]`)."""

    id: str
    #: Skills with proficiency 1..10.
    skills: Mapping[str, int] = field(default_factory=dict)
    name: str = ""
    team: str | None = None
    #: IANA zone for this agent's daily reports; the engine itself works in `now` seconds.
    timezone: str = "UTC"
    #: Overrides the queue's `max_missed` for this agent; 0 = never auto-pause.
    max_missed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError("agent id must be a non-empty string")
        object.__setattr__(self, "skills", _skills(f"agent {self.id!r}: skills", self.skills, low=MIN_LEVEL))
        if self.max_missed is not None and self.max_missed < 0:
            raise ConfigError(f"agent {self.id!r}: max_missed must be >= 0")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AgentConfig:
        """Build from YAML-shaped data; keys the ACD does not use (password, extension, ...) are ignored."""
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in raw.items() if key in known})


def check_roster(queues: Iterable[QueueConfig], agents: Iterable[AgentConfig]) -> None:
    """Cross-checks: unique queue names and agent ids, overflow targets that exist."""
    names: set[str] = set()
    queue_list = list(queues)
    for queue in queue_list:
        if queue.name in names:
            raise ConfigError(f"queue {queue.name!r} is defined twice")
        names.add(queue.name)
    for queue in queue_list:
        if queue.overflow is not None and queue.overflow.to not in names:
            raise ConfigError(f"queue {queue.name!r}: overflow.to {queue.overflow.to!r} is not a queue")
    ids: set[str] = set()
    for agent in agents:
        if agent.id in ids:
            raise ConfigError(f"agent {agent.id!r} is defined twice")
        ids.add(agent.id)
