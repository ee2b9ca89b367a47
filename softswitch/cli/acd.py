"""`softswitch agent login|logout|pause|resume|end-wrap-up ID` and `softswitch reload`: the ACD's commands
that act on the running switch through the control API.

Exit status: 0 when the switch did it, will do it (a logout during a call) or had nothing to do; 1 for an
unknown agent, an agent who is not logged in (pause, resume, end-wrap-up), a configuration the switch
refused to reload (its problems are printed, one per line, as `config check` prints them) or a switch that
is not running.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from softswitch.cli.common import client_for, config_option, load_or_exit
from softswitch.cli.output import emit_json
from softswitch.control.client import ControlClient, ServerDown

__all__ = ["agent", "reload", "request_json"]

#: Reloading decodes every sound file of the new configuration; give it longer than a status query.
RELOAD_TIMEOUT = 30.0

ACTIONS = ("login", "logout", "pause", "resume", "end-wrap-up")

# (action, ack) -> (message, exit status); "{id}" and "{reason}" are filled in.
_MESSAGES: dict[tuple[str, str], tuple[str, int]] = {
    ("login", "done"): ("{id}: logged in", 0),
    ("login", "no_change"): ("{id}: already logged in", 0),
    ("logout", "done"): ("{id}: logged out", 0),
    ("logout", "pending"): ("{id}: will be logged out when the current call ends", 0),
    ("logout", "no_change"): ("{id}: already logged out", 0),
    ("logout", "not_logged_in"): ("{id}: already logged out", 0),
    ("pause", "done"): ("{id}: paused{reason}", 0),
    ("pause", "pending"): ("{id}: will pause after the current call{reason}", 0),
    ("pause", "no_change"): ("{id}: already paused{reason}", 0),
    ("resume", "done"): ("{id}: resumed", 0),
    ("resume", "no_change"): ("{id}: was not paused", 0),
    ("end-wrap-up", "done"): ("{id}: wrap-up ended", 0),
    ("end-wrap-up", "no_change"): ("{id}: was not in wrap-up", 0),
}


def request_json(
    client: ControlClient,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
) -> tuple[int, Any]:
    """(HTTP status, JSON body) of a control API request, error answers included (see
    `ControlClient.exchange`)."""
    return client.exchange(method, path, body, timeout=timeout)


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _error_text(status: int, payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("error"):
        return f"{status}: {payload['error']}"
    return f"the switch answered {status}"


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _agent_command(config_path: Path, action: str, agent_id: str, reason: str | None, as_json: bool) -> None:
    settings = load_or_exit(config_path)
    body = {"reason": reason} if reason is not None else {}
    try:
        path = f"/api/agents/{quote(agent_id)}/{action}"
        status, payload = request_json(client_for(settings), "POST", path, body)
    except ServerDown as exc:
        _fail(str(exc))
        return
    ack = payload.get("ack") if isinstance(payload, dict) else None
    if as_json and ack is not None:
        emit_json(payload)
    if status == 404 or ack == "unknown_agent":
        known = ", ".join(a.id for a in settings.agents) or "none configured"
        _fail(f"unknown agent {agent_id!r} (agents: {known})")
    if status != 200 or not isinstance(ack, str):
        _fail(_error_text(status, payload))
    if ack == "not_logged_in" and (action, ack) not in _MESSAGES:
        _fail(f"{agent_id}: not logged in")
    message, code = _MESSAGES.get((action, ack), (f"{{id}}: {ack}", 0))
    if not as_json:
        click.echo(message.format(id=agent_id, reason=f" ({reason})" if reason else ""))
    sys.exit(code)


@click.group("agent")
def agent() -> None:
    """Log agents in and out, pause and resume them, end their wrap-up (on the running switch)."""


def _make(action: str, doc: str) -> None:
    @agent.command(action, help=doc)
    @config_option
    @click.argument("agent_id", metavar="ID")
    @click.option("--json", "as_json", is_flag=True, help="Print the switch's answer as JSON.")
    def command(config_path: Path, agent_id: str, as_json: bool) -> None:
        _agent_command(config_path, action, agent_id, None, as_json)


_make("login", "Log agent ID in: queue calls are offered to it.")
_make("logout", "Log agent ID out (after its current call, if it is on one).")
_make("resume", "End agent ID's pause.")
_make("end-wrap-up", "End agent ID's wrap-up now: it is ready for the next call.")


@agent.command("pause")
@config_option
@click.argument("agent_id", metavar="ID")
@click.option("--reason", metavar="R", default=None, help="Pause reason code (lunch, training, 2, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print the switch's answer as JSON.")
def pause(config_path: Path, agent_id: str, reason: str | None, as_json: bool) -> None:
    """Pause agent ID (no queue calls until it resumes); during a call the pause starts after it."""
    _agent_command(config_path, "pause", agent_id, reason, as_json)


@click.command("reload")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the switch's answer as JSON.")
def reload(config_path: Path, as_json: bool) -> None:
    """Make the running switch read its configuration file again (like SIGHUP); calls are not dropped.

    New queues, skills and agents apply to new decisions. If the file has errors the switch keeps the
    configuration it has, and this prints the errors and exits 1."""
    settings = load_or_exit(config_path)
    try:
        client = client_for(settings)
        status, payload = request_json(client, "POST", "/api/reload", {}, timeout=RELOAD_TIMEOUT)
    except ServerDown as exc:
        _fail(str(exc))
        return
    if as_json:
        emit_json(payload)
    if status == 200 and isinstance(payload, dict) and payload.get("ok"):
        if not as_json:
            click.echo(f"reloaded: {payload.get('queues')} queues, {payload.get('agents')} agents")
        return
    if status == 400 and isinstance(payload, dict):
        click.echo(f"reload refused: {payload.get('error') or 'the configuration has errors'}", err=True)
        for issue in payload.get("issues") or []:
            click.echo(str(issue), err=True)
        sys.exit(1)
    _fail(_error_text(status, payload))
