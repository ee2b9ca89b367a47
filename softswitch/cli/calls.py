"""`softswitch calls`: the calls that are up right now."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from softswitch.cli.common import client_for, config_option, load_or_exit
from softswitch.cli.output import emit_json, table
from softswitch.control.client import ControlError

__all__ = ["calls"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


@click.command("calls")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def calls(config_path: Path, as_json: bool) -> None:
    """Live calls: id, parties, state, duration, codec (from the running switch)."""
    settings = load_or_exit(config_path)
    try:
        data = client_for(settings).get("/api/calls")["calls"]
    except ControlError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if as_json:
        emit_json({"calls": data})
        return
    if not data:
        click.echo("no calls")
        return
    rows = [
        [
            c["id"],
            f"{c['caller']}" + (f" ({c['caller_name']})" if c.get("caller_name") else ""),
            c["called"],
            c.get("agent") or "",
            c["state"],
            _duration(c.get("duration")),
            _duration(c.get("talk_time")),
            c.get("codec") or "",
        ]
        for c in data
    ]
    click.echo(table(["CALL", "CALLER", "CALLED", "AGENT", "STATE", "DURATION", "TALK", "CODEC"], rows))
