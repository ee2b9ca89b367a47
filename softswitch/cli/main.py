"""`softswitch`: the click group and the commands that work offline (serve, config check, cert)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from softswitch import __version__
from softswitch.cli.acd import agent, reload
from softswitch.cli.agents import agents
from softswitch.cli.calls import calls
from softswitch.cli.common import client_for, config_option, load_or_exit
from softswitch.cli.output import emit_json
from softswitch.cli.prompts import prompts
from softswitch.cli.queues import queues
from softswitch.cli.simulate import simulate
from softswitch.control.client import ControlError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="softswitch")
def main() -> None:
    """softswitch: a SIP softswitch with skills-based call distribution for virtual contact centers."""


@main.command()
@config_option
def serve(config_path: Path) -> None:
    """Run the switch in the foreground (structured logs on stderr; SIGINT/SIGTERM stop it cleanly)."""
    settings = load_or_exit(config_path)
    from softswitch.app import App
    from softswitch.logs import setup_logging

    setup_logging(settings.server.log_level)
    profile = os.environ.get("SOFTSWITCH_PROFILE")  # developers: write a cProfile of the event loop here
    try:
        if profile:
            import cProfile

            with cProfile.Profile() as profiler:
                code = asyncio.run(App(settings, config_path).run())
            profiler.dump_stats(profile)
        else:
            code = asyncio.run(App(settings, config_path).run())
    except OSError as exc:
        click.echo(f"softswitch: cannot start: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


@main.group("config")
def config_group() -> None:
    """Configuration commands."""


@config_group.command("check")
@config_option
def config_check(config_path: Path) -> None:
    """Validate the YAML; on error print file:line:key for each problem and exit 1."""
    settings = load_or_exit(config_path)
    for warning in settings.warnings():
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{config_path}: ok ({len(settings.agents)} agents, {len(settings.supervisors)} supervisors, "
        f"{len(settings.queues)} queues, {len(settings.trunks)} trunks)"
    )


@main.command()
@config_option
@click.option("--if-missing", is_flag=True, help="Do nothing when the certificate already exists.")
def cert(config_path: Path, if_missing: bool) -> None:
    """Create a self-signed TLS certificate and key at server.tls.cert / server.tls.key (for trying TLS)."""
    settings = load_or_exit(config_path)
    from softswitch.tlscert import make_self_signed

    tls = settings.server.tls
    if if_missing and Path(tls.cert).exists() and Path(tls.key).exists():
        return
    names = [str(settings.server.domain), *(str(a) for a in settings.server.aliases), "localhost"]
    make_self_signed(Path(tls.cert), Path(tls.key), names)
    click.echo(f"wrote {tls.cert} and {tls.key} (self-signed for {', '.join(dict.fromkeys(names))})")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status(config_path: Path, as_json: bool) -> None:
    """The running switch's status."""
    settings = load_or_exit(config_path)
    try:
        data = client_for(settings).get("/api/status")
    except ControlError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if as_json:
        emit_json(data)
        return
    for key in (
        "version",
        "pid",
        "uptime",
        "domain",
        "listen",
        "registrations",
        "connections",
        "transactions",
    ):
        value = data.get(key)
        click.echo(f"{key:14} {', '.join(value) if isinstance(value, list) else value}")


main.add_command(agents)
main.add_command(calls)
main.add_command(agent)
main.add_command(reload)
main.add_command(prompts)
main.add_command(queues)
main.add_command(simulate)
