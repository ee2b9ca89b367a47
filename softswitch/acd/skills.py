"""Skills routing: a queue's requirements, relaxed in steps as a call waits, and proficiency scoring.

A queue requires skills with minimum levels; `relax` steps lower some minimums (0 drops a skill) after
given waits. Step 0 is the queue's own requirement; step k applies from `afters[k]` seconds in the queue.
Because steps only lower minimums, an agent that qualifies at step k qualifies at every later step, so each
agent is filed once per queue under the first step at which it qualifies (`first_step`), and a call at
step s may go to any agent filed under a step <= s.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import RelaxStep

__all__ = ["Requirements", "meets", "proficiency_score"]


def meets(skills: Mapping[str, int], required: Mapping[str, int]) -> bool:
    """True if `skills` has every required skill at or above its minimum."""
    return all(skills.get(name, 0) >= level for name, level in required.items())


def proficiency_score(skills: Mapping[str, int], names: Sequence[str]) -> int:
    """Summed proficiency in `names` (best_skill ranks by it; every candidate is scored on the same names)."""
    return sum(skills.get(name, 0) for name in names)


@dataclass(frozen=True, slots=True)
class Requirements:
    """The requirement in force at each relax step of one queue."""

    #: Seconds in the queue from which each step applies; afters[0] == 0.
    afters: tuple[float, ...]
    #: Minimum levels per step (skills at level 0 removed).
    steps: tuple[Mapping[str, int], ...]
    #: The queue's own skill names, for best_skill scoring.
    names: tuple[str, ...]

    @classmethod
    def build(cls, skills: Mapping[str, int], relax: Sequence[RelaxStep]) -> Requirements:
        current = dict(skills)
        afters = [0.0]
        steps: list[Mapping[str, int]] = [dict(current)]
        for step in relax:
            current.update(step.skills)
            afters.append(float(step.after))
            steps.append({name: level for name, level in current.items() if level > 0})
        return cls(tuple(afters), tuple(steps), tuple(skills))

    @property
    def count(self) -> int:
        return len(self.steps)

    def step_at(self, waited: float) -> int:
        """The step in force after `waited` seconds in the queue."""
        return max(0, bisect_right(self.afters, waited) - 1)

    def first_step(self, skills: Mapping[str, int]) -> int | None:
        """The first step whose requirement `skills` meets, or None if the agent can never serve the queue."""
        for index, required in enumerate(self.steps):
            if meets(skills, required):
                return index
        return None
