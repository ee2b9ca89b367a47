"""Shared CLI plumbing: the --config option, loading settings, and the control client."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from softswitch.config.load import ConfigError, load_settings
from softswitch.config.schema import Settings
from softswitch.control.client import ControlClient

__all__ = ["DEFAULT_CONFIG", "client_for", "config_option", "load_or_exit"]

DEFAULT_CONFIG = os.environ.get("SOFTSWITCH_CONFIG", "config/softswitch.yaml")

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The switch's YAML configuration (env SOFTSWITCH_CONFIG).",
)


def load_or_exit(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except FileNotFoundError:
        click.echo(f"{path}: no such file", err=True)
        sys.exit(1)


def client_for(settings: Settings) -> ControlClient:
    server = settings.server
    return ControlClient(str(server.control.host), server.control.port, Path(server.control_token_file))


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def ensure(value: Any) -> Any:
    return value
