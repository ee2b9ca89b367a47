"""`softswitch agents`: who is registered, from where, over what, with which phone, until when."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from softswitch.cli.common import client_for, config_option, fmt_time, load_or_exit
from softswitch.cli.output import emit_json, table
from softswitch.config.schema import Settings
from softswitch.control.client import ServerDown

__all__ = ["agents"]


def _offline_registrations(settings: Settings) -> list[dict[str, Any]]:
    from softswitch.control.offline import registrations_from_store

    return registrations_from_store(settings.server.database)


def _people(settings: Settings) -> list[tuple[str, str, str | None, str]]:
    out = [(a.id, a.name or a.id, a.extension, "agent") for a in settings.agents]
    out += [(s.id, s.name or s.id, s.extension, "supervisor") for s in settings.supervisors]
    return out


@click.command("agents")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def agents(config_path: Path, as_json: bool) -> None:
    """Agents and supervisors with their registrations (live, or from the database if the switch is down)."""
    settings = load_or_exit(config_path)
    source = "server"
    try:
        registrations = client_for(settings).get("/api/registrations")["registrations"]
    except ServerDown:
        source = "database"
        registrations = _offline_registrations(settings)
    by_user: dict[str, list[dict[str, Any]]] = {}
    for reg in registrations:
        by_user.setdefault(reg["user"], []).append(reg)
    people = []
    for user_id, name, extension, role in _people(settings):
        people.append(
            {
                "id": user_id,
                "name": name,
                "extension": extension,
                "role": role,
                "registrations": by_user.pop(user_id, []),
            }
        )
    if as_json:
        emit_json({"source": source, "agents": people})
        return
    rows = []
    now = time.time()
    for person in people:
        regs = person["registrations"] or [None]
        for reg in regs:
            if reg is None:
                rows.append(
                    [person["id"], person["extension"], person["role"], "not registered", "", "", "", ""]
                )
                continue
            reach = reg.get("reachable")
            state = "?" if reach is None else ("yes" if reach else "NO")
            if reach and reg.get("rtt_ms") is not None:
                state = f"yes ({reg['rtt_ms']:.0f} ms)"
            rows.append(
                [
                    person["id"],
                    person["extension"],
                    person["role"],
                    f"{reg['source']}",
                    reg["transport"],
                    reg.get("user_agent") or "",
                    f"{fmt_time(reg['expires_at'])} ({max(0, int(reg['expires_at'] - now))}s)",
                    state,
                ]
            )
    click.echo(
        table(["AGENT", "EXT", "ROLE", "FROM", "TRANSPORT", "USER AGENT", "EXPIRES", "REACHABLE"], rows)
    )
    if source == "database":
        click.echo("(the switch is not running: registrations read from the database)", err=True)
