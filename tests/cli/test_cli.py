"""`softswitch config check` as the admin runs it: a subprocess, exit status, and the messages on stderr.

The example configuration passes; a broken one exits 1 and names file, line and key path for each problem
(an unknown key, a value out of range, a duplicate extension), all of them in one run.
No server is needed (the command works offline).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "softswitch.yaml"


def config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "softswitch", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line containing `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


# Each breakage: (replace this, with that, the line marker after the edit, the key path reported).
UNKNOWN_KEY = (
    "    qualify_interval: 30",
    "    qualify_intervall: 30",
    "qualify_intervall",
    "server.registrar.qualify_intervall",
)
BAD_VALUE = (
    "skills: {latvian: 9, english: 6, billing: 7}",
    "skills: {latvian: 11, english: 6, billing: 7}",
    "latvian: 11",
    "agents[0].skills.latvian",
)
DUPLICATE_EXTENSION = (
    'extension: "1002"',
    'extension: "1001"   # bob',
    '1001"   # bob',
    "agents[1].extension",
)


def broken(tmp_path: Path, *edits: tuple[str, str, str, str]) -> tuple[Path, str]:
    text = EXAMPLE.read_text()
    for old, new, _, _ in edits:
        assert text.count(old) == 1, f"the example config changed: {old!r} is not there exactly once"
        text = text.replace(old, new)
    path = tmp_path / "softswitch.yaml"
    path.write_text(text)
    return path, text


def assert_reported(
    result: subprocess.CompletedProcess[str], path: Path, text: str, edit: tuple[str, ...]
) -> None:
    marker, key = edit[2], edit[3]
    line = line_of(text, marker)
    pattern = rf"^{re.escape(str(path))}:{line}:(\d+:)? {re.escape(key)}: "
    assert re.search(pattern, result.stderr, re.MULTILINE), f"no {path}:{line}: {key} in:\n{result.stderr}"


def test_config_check_accepts_the_example_config() -> None:
    result = config_check(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert re.search(r": ok \(3 agents, 1 supervisors, 2 queues, 1 trunks\)", result.stdout), result.stdout


@pytest.mark.parametrize(
    "edit",
    [UNKNOWN_KEY, BAD_VALUE, DUPLICATE_EXTENSION],
    ids=["unknown-key", "bad-value", "duplicate-extension"],
)
def test_config_check_names_file_line_and_key(tmp_path: Path, edit: tuple[str, str, str, str]) -> None:
    path, text = broken(tmp_path, edit)
    result = config_check(path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_reported(result, path, text, edit)
    assert "ok (" not in result.stdout


def test_config_check_prints_every_field_error_at_once(tmp_path: Path) -> None:
    path, text = broken(tmp_path, UNKNOWN_KEY, BAD_VALUE)
    result = config_check(path)
    assert result.returncode == 1
    for edit in (UNKNOWN_KEY, BAD_VALUE):
        assert_reported(result, path, text, edit)
    # The unknown key comes with a suggestion, the bad value with the limit it broke.
    assert "did you mean 'qualify_interval'" in result.stderr
    assert "less than or equal to 10" in result.stderr


def test_config_check_prints_field_and_cross_reference_errors_at_once(tmp_path: Path) -> None:
    path, text = broken(tmp_path, UNKNOWN_KEY, BAD_VALUE, DUPLICATE_EXTENSION)
    result = config_check(path)
    assert result.returncode == 1
    for edit in (UNKNOWN_KEY, BAD_VALUE, DUPLICATE_EXTENSION):
        assert_reported(result, path, text, edit)


def test_config_check_of_a_missing_file_exits_1(tmp_path: Path) -> None:
    result = config_check(tmp_path / "nowhere.yaml")
    assert result.returncode == 1
    assert "nowhere.yaml" in result.stderr
