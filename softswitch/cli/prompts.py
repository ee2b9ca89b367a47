"""`softswitch prompts`: make the switch's spoken prompts and default music on hold (run by `make run`).

Writes every prompt of `softswitch.prompts.PROMPTS` and `moh-default.wav` into `server.sounds_dir`. Sound
files the configuration names but that do not exist yet are made too, and never overwritten: a queue's
`moh` gets the default music, an `announce.prompt` named like a catalogue prompt (`please-hold.wav`) gets
that prompt; any other missing file is a warning (the switch plays nothing in its place), since only the
admin knows what it should say.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from softswitch.cli.common import config_option, load_or_exit
from softswitch.config.schema import Settings

__all__ = ["prompts"]


def _configured_sounds(settings: Settings) -> list[tuple[Path, str]]:
    """(file, what it is) for every sound file the configuration names, in file order, without repeats."""
    seen: dict[Path, str] = {}
    for queue in settings.queues:
        if queue.moh is not None:
            seen.setdefault(Path(queue.moh), "moh")
        if queue.announce is not None and queue.announce.prompt is not None:
            seen.setdefault(Path(queue.announce.prompt), "prompt")
    return list(seen.items())


@click.command("prompts")
@config_option
@click.option("--if-missing", is_flag=True, help="Keep the files that exist; make only the missing ones.")
@click.option(
    "--dir",
    "directory",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the prompts here instead of server.sounds_dir.",
)
def prompts(config_path: Path, if_missing: bool, directory: Path | None) -> None:
    """Generate the spoken prompts (espeak-ng) and the default music on hold."""
    settings = load_or_exit(config_path)
    from softswitch.prompts import MOH_NAME, PROMPTS, PromptError, generate, make_music_on_hold

    target = directory if directory is not None else Path(settings.server.sounds_dir)
    try:
        written = generate(target, if_missing=if_missing)
    except (PromptError, OSError) as exc:
        click.echo(f"softswitch prompts: {exc}", err=True)
        sys.exit(1)
    spoken = [path for path in written if path.stem != MOH_NAME]
    if written:
        music = " and the default music on hold" if len(spoken) < len(written) else ""
        click.echo(f"{target}: wrote {len(spoken)} prompts{music}")
    elif if_missing:
        click.echo(f"{target}: all {len(PROMPTS)} prompts and the default music on hold are there")

    problems = 0
    for path, kind in _configured_sounds(settings):
        if path.exists():
            continue
        try:
            if kind == "moh":
                make_music_on_hold(path)
                click.echo(f"{path}: missing; wrote the default music on hold there")
            elif path.stem in PROMPTS and path.suffix.lower() == ".wav":
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(target / f"{path.stem}.wav", path)
                click.echo(f"{path}: missing; wrote the {path.stem!r} prompt there")
            else:
                click.echo(f"warning: {path}: missing; the configuration plays it, record it there", err=True)
        except OSError as exc:
            click.echo(f"{path}: cannot write: {exc}", err=True)
            problems += 1
    if problems:
        sys.exit(1)
