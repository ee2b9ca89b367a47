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


def _minutes(seconds: float | None) -> str:
    if not seconds:
        return "0:00"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _state(acd: dict[str, Any] | None) -> str:
    if acd is None:
        return ""
    status = str(acd.get("status") or "")
    if status == "paused" and acd.get("pause_reason"):
        return f"paused ({acd['pause_reason']})"
    return status.replace("_", " ")


@click.command("agents")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def agents(config_path: Path, as_json: bool) -> None:
    """Agents and supervisors: registrations (source address and port, transport, user agent, expiry,
    reachability) and ACD state with today's figures. From the database when the switch is down."""
    settings = load_or_exit(config_path)
    source = "server"
    acd: dict[str, dict[str, Any]] = {}
    client = client_for(settings)
    try:
        registrations = client.get("/api/registrations")["registrations"]
        acd = {a["id"]: a for a in client.get("/api/acd/agents")["agents"]}
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
                "acd": acd.get(user_id),
            }
        )
    if as_json:
        emit_json({"source": source, "agents": people})
        return
    rows = []
    now = time.time()
    for person in people:
        state = _state(person["acd"]) if role_is_agent(person) else person["role"]
        figures = (person["acd"] or {}).get("figures") or {}
        occupancy = figures.get("occupancy")
        stats = [
            figures.get("calls_handled", ""),
            _minutes(figures.get("talk_time")) if figures else "",
            "" if occupancy is None else f"{occupancy * 100:.0f}%",
            figures.get("missed_offers", ""),
        ]
        regs = person["registrations"] or [None]
        for i, reg in enumerate(regs):
            lead = (
                [person["id"], person["extension"], state, *stats] if i == 0 else ["", "", "", "", "", "", ""]
            )
            if reg is None:
                rows.append([*lead, "not registered", "", "", "", ""])
                continue
            reach = reg.get("reachable")
            seen = "?" if reach is None else ("yes" if reach else "NO")
            if reach and reg.get("rtt_ms") is not None:
                seen = f"yes ({reg['rtt_ms']:.0f} ms)"
            expires = f"{fmt_time(reg['expires_at'])} ({max(0, int(reg['expires_at'] - now))}s)"
            rows.append([*lead, reg["source"], reg["transport"], reg.get("user_agent") or "", expires, seen])
    headers = [
        "AGENT",
        "EXT",
        "STATE",
        "CALLS",
        "TALK",
        "OCC",
        "MISSED",
        "FROM",
        "TRANSPORT",
        "USER AGENT",
        "EXPIRES",
        "REACHABLE",
    ]
    click.echo(table(headers, rows))
    if source == "database":
        click.echo("(the switch is not running: registrations read from the database)", err=True)


def role_is_agent(person: dict[str, Any]) -> bool:
    return person["role"] == "agent"
