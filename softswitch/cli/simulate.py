"""`softswitch simulate`: the real ACD engine on a simulated clock against a described load (offline).

    softswitch simulate --config softswitch.yaml --load load.yaml --hours 8 --seed 1 [--json]

`load.yaml` is `queues: {NAME: {arrivals_per_hour: X, handle_time: S, wrap_up: S, patience: S or null,
answer_delay: S}}` (Poisson arrivals; exponential handle time and patience; `wrap_up` replaces the queue's
configured one; an agent answers an offer at once unless `answer_delay` is given). The agents are the
configuration's roster, all logged in. Every problem in the load file is reported at once as
`file:line: key: message` and the command exits 1.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml
from yaml.nodes import MappingNode, Node

from softswitch.cli.common import config_option, load_or_exit
from softswitch.cli.output import emit_json

__all__ = ["read_load", "simulate"]

# key -> (required, may be null, must be > 0, what it is)
_FIELDS: dict[str, tuple[bool, bool, bool, str]] = {
    "arrivals_per_hour": (True, False, False, "calls per hour"),
    "handle_time": (True, False, True, "mean talk time in seconds"),
    "wrap_up": (False, True, False, "seconds of wrap-up after each call"),
    "patience": (False, True, True, "mean seconds a caller waits before hanging up"),
    "answer_delay": (False, True, False, "seconds an agent's phone rings before the answer"),
}


class LoadFileError(Exception):
    """Problems in a load file, one `file:line: key: message` per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _child(node: Node | None, key: str) -> tuple[Node | None, Node | None]:
    """(key node, value node) of `key` in a mapping node."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == key:
                return key_node, value_node
    return None, None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_load(path: Path, queue_names: list[str]) -> Any:
    """Read and check `path`; returns `acd.Load`. Raises `LoadFileError` listing every problem."""
    from softswitch.acd import ConfigError, Load

    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadFileError([f"{name}: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        raise LoadFileError([f"{where}: {exc.problem or exc}"]) from None

    def at(node: Node | None, key: str, message: str) -> str:
        if node is None:
            return f"{name}: {key}: {message}"
        where = f"{name}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
        return f"{where}: {key}: {message}"

    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise LoadFileError([f"{name}: expected a mapping with 'queues: {{NAME: {{...}}}}'"])
    for key in data:
        if key != "queues":
            problems.append(at(_child(root, str(key))[0], str(key), "unknown key (known: queues)"))
    queues_key, queues_node = _child(root, "queues")
    queues = data.get("queues")
    if not isinstance(queues, Mapping) or not queues:
        problems.append(at(queues_key, "queues", "expected a mapping of queue names to their load"))
        raise LoadFileError(problems)
    for queue, values in queues.items():
        key_node, value_node = _child(queues_node, str(queue))
        where = f"queues.{queue}"
        if str(queue) not in queue_names:
            known = ", ".join(queue_names) or "none"
            problems.append(at(key_node, where, f"no such queue in the configuration (queues: {known})"))
        if not isinstance(values, Mapping):
            problems.append(at(key_node, where, "expected a mapping (arrivals_per_hour, handle_time, ...)"))
            continue
        for field in values:
            if field not in _FIELDS:
                known = ", ".join(_FIELDS)
                problems.append(
                    at(_child(value_node, str(field))[0], f"{where}.{field}", f"unknown key (known: {known})")
                )
        for field, (required, nullable, positive, meaning) in _FIELDS.items():
            field_node = _child(value_node, field)[1]
            if field not in values:
                if required:
                    problems.append(at(key_node, f"{where}.{field}", f"missing ({meaning})"))
                continue
            value = values[field]
            if value is None and nullable:
                continue
            if not _number(value) or value < 0 or (positive and value <= 0):
                wanted = "a number > 0" if positive else "a number >= 0"
                wanted += " or null" if nullable else ""
                problems.append(at(field_node, f"{where}.{field}", f"must be {wanted}, got {value!r}"))
    if problems:
        raise LoadFileError(problems)
    try:
        return Load.from_dict(data)
    except ConfigError as exc:  # a rule of the engine's own the checks above do not know yet
        raise LoadFileError([f"{name}: {exc}"]) from None


@click.command("simulate")
@config_option
@click.option(
    "--load",
    "load_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The offered traffic: queues: {NAME: {arrivals_per_hour, handle_time, wrap_up, patience}}.",
)
@click.option(
    "--hours",
    type=click.FloatRange(min=0, min_open=True, max=24 * 365),
    default=8.0,
    show_default=True,
    help="Simulated hours.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed; a seed gives one result.")
@click.option("--json", "as_json", is_flag=True, help="One object per queue instead of a table.")
def simulate(config_path: Path, load_path: Path, hours: float, seed: int, as_json: bool) -> None:
    """Run the ACD against a simulated load: offered, answered, abandoned, P(wait), service level, ASA,
    AHT and occupancy per queue, with every configured agent logged in."""
    settings = load_or_exit(config_path)
    from softswitch.acd import AgentConfig, ConfigError, QueueConfig
    from softswitch.acd import simulate as run

    try:
        queues = [QueueConfig.from_dict(queue.model_dump(mode="json")) for queue in settings.queues]
        agents = [AgentConfig.from_dict(agent.model_dump(mode="json")) for agent in settings.agents]
    except ConfigError as exc:
        click.echo(f"{config_path}: {exc}", err=True)
        sys.exit(1)
    try:
        load = read_load(load_path, [queue.name for queue in queues])
    except LoadFileError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    try:
        result = run(queues, agents, load, hours=hours, seed=seed)
    except ConfigError as exc:
        click.echo(f"{load_path}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(result.format_table())
