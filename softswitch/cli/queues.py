"""`softswitch queues`: calls waiting, agents and service figures per queue, live or for a past window.

Live (no time option): from the running switch (`GET /api/queues`), figures since the switch started.
Historical (`--since ISO` or `--today`, optionally `--until ISO`): computed from the queue events in the
database by `control.reports`; the switch need not be running. Times without an offset are local time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from softswitch.cli.common import client_for, config_option, fmt_time, load_or_exit
from softswitch.cli.output import emit_json, table
from softswitch.config.schema import Settings
from softswitch.control.client import ControlError, ServerDown

__all__ = ["format_duration", "format_share", "queues"]

_BUSY = ("offered", "on_call", "direct_call", "wrap_up")


def format_duration(seconds: float | None) -> str:
    """m:ss (h:mm:ss from an hour); "-" when there is nothing to measure."""
    if seconds is None:
        return "-"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _pick(entries: Sequence[Mapping[str, Any]], name: str | None, known: Sequence[str]) -> list[Any]:
    if name is None:
        return list(entries)
    chosen = [entry for entry in entries if entry.get("name") == name]
    if not chosen:
        _fail(f"unknown queue {name!r} (queues: {', '.join(known) or 'none'})")
    return chosen


def _live(settings: Settings, queue: str | None, as_json: bool) -> None:
    try:
        entries = client_for(settings).get("/api/queues")["queues"]
    except ServerDown as exc:
        _fail(f"{exc}\n(for figures from the database: softswitch queues --today, or --since ISO)")
        return
    except ControlError as exc:
        _fail(str(exc))
        return
    entries = _pick(entries, queue, [e.get("name", "") for e in entries])
    if as_json:
        emit_json({"queues": entries})
        return
    rows = []
    for entry in entries:
        agents: Mapping[str, int] = entry.get("agents") or {}
        figures: Mapping[str, Any] = entry.get("figures") or {}
        occupied = entry.get("waiting") or entry.get("ringing")
        rows.append(
            [
                entry["name"] + (" (removed)" if entry.get("retired") else ""),
                entry.get("waiting", 0),
                entry.get("ringing", 0),
                format_duration(entry.get("longest_wait")) if occupied else "",
                agents.get("available", 0),
                sum(agents.get(status, 0) for status in _BUSY),
                agents.get("paused", 0),
                figures.get("offered", 0),
                figures.get("answered", 0),
                figures.get("abandoned", 0),
                format_share(figures.get("service_level")),
                format_duration(figures.get("asa")),
                format_duration(figures.get("aht")),
                format_share(figures.get("abandonment_rate")),
            ]
        )
    headers = [
        "QUEUE", "WAITING", "RINGING", "LONGEST", "AVAIL", "BUSY", "PAUSED", "OFFERED", "ANSWERED",
        "ABANDONED", "SL", "ASA", "AHT", "ABANDON%",
    ]  # fmt: skip
    click.echo(table(headers, rows) if rows else "no queues")


def _window(since_text: str | None, until_text: str | None, today: bool) -> tuple[float, float]:
    from softswitch.control.reports import ReportError, day_window, parse_time

    now = time.time()
    try:
        until = parse_time(until_text) if until_text is not None else now
        if today:
            since, _ = day_window(now)
        else:
            assert since_text is not None
            since = parse_time(since_text)
    except ReportError as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable: _fail exits
    if since >= until:
        _fail(f"nothing to report: {fmt_time(since)} is not before {fmt_time(until)}")
    return since, until


def _historical(settings: Settings, since: float, until: float, queue: str | None, as_json: bool) -> None:
    from softswitch.control.reports import ReportError, figures_dict, report_for_settings

    try:
        report = report_for_settings(settings, since=since, until=until)
    except ReportError as exc:
        _fail(str(exc))
        return
    entries = [{"name": name, "figures": figures_dict(f)} for name, f in report.queues.items()]
    entries = _pick(entries, queue, list(report.queues))
    if as_json:
        emit_json({"since": since, "until": until, "queues": entries})
        return
    click.echo(f"from {fmt_time(since)} to {fmt_time(until)}")
    rows = []
    for entry in entries:
        f = entry["figures"]
        rows.append(
            [
                entry["name"],
                f["offered"],
                f["answered"],
                f["abandoned"],
                f["timed_out"] + f["exited"],
                f["overflowed"],
                format_share(f["service_level"]),
                format_duration(f["asa"]),
                format_duration(f["aht"]),
                format_share(f["abandonment_rate"]),
                format_duration(f["longest_wait"]) if f["offered"] or f["answered"] else "-",
            ]
        )
    headers = [
        "QUEUE", "OFFERED", "ANSWERED", "ABANDONED", "LEFT", "OVERFLOWED", "SL", "ASA", "AHT", "ABANDON%",
        "LONGEST",
    ]  # fmt: skip
    click.echo(table(headers, rows) if rows else "no queues")


@click.command("queues")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--since", "since_text", metavar="ISO", help="Figures from this time on, from the database (local time)."
)
@click.option("--until", "until_text", metavar="ISO", help="With --since or --today: end of the window.")
@click.option("--today", is_flag=True, help="Figures since local midnight, from the database.")
@click.option("--queue", "queue_name", metavar="NAME", help="Only this queue.")
def queues(
    config_path: Path,
    as_json: bool,
    since_text: str | None,
    until_text: str | None,
    today: bool,
    queue_name: str | None,
) -> None:
    """Queues: calls waiting, agents available/busy/paused, service level, ASA, AHT, abandonment.

    Without --since/--today: live from the running switch (figures since it started). With them: from
    the database, for the window given; the switch need not be running."""
    if since_text is not None and today:
        _fail("give --since or --today, not both")
    if until_text is not None and since_text is None and not today:
        _fail("--until needs --since or --today")
    settings = load_or_exit(config_path)
    if since_text is None and not today:
        _live(settings, queue_name, as_json)
        return
    since, until = _window(since_text, until_text, today)
    _historical(settings, since, until, queue_name, as_json)
