"""The ACD's commands as an admin or supervisor runs them: `simulate` (offline, deterministic per seed, clear
errors for a bad load file), `agent ...` and `reload` against a stand-in control API, `queues` live from
that API and historical from the database with the switch down, and `prompts`."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import soundfile
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from softswitch.acd.simulate import RESULT_KEYS
from softswitch.cli.main import main
from softswitch.control.reports import day_window
from softswitch.store import make_engine, migrate
from softswitch.store.acd import save_agent_states, save_queue_events
from softswitch.store.records import AgentStateRecord, QueueEventRecord

TOKEN = "test-token-123"

CONFIG = """\
server:
  domain: cc.test
  database: sqlite:///{tmp}/db/softswitch.db
  control: 127.0.0.1:{port}
  control_token_file: {tmp}/control.token
  sounds_dir: {tmp}/sounds
agents:
  - {{id: alice, password: "alice-pw", extension: "1001", skills: {{english: 8, billing: 6}}}}
  - {{id: bob, password: "bob-pw", extension: "1002", skills: {{english: 6}}}}
  - {{id: carol, password: "carol-pw", extension: "1003", skills: {{english: 9, billing: 9}}}}
queues:
  - name: sales
    numbers: ["7001"]
    skills: {{english: 5}}
    service_level: 20
    wrap_up: 5
    moh: {tmp}/config-sounds/moh.wav
    announce: {{every: 30, prompt: {tmp}/config-sounds/please-hold.wav}}
  - name: billing
    numbers: ["7002"]
    skills: {{billing: 5}}
    service_level: 30
    announce: {{every: 60, position: true, prompt: {tmp}/config-sounds/custom-greeting.wav}}
"""

LOAD = """\
queues:
  sales: {arrivals_per_hour: 60, handle_time: 120, wrap_up: 10, patience: 90}
  billing: {arrivals_per_hour: 20, handle_time: 200, patience: null}
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---------------------------------------------------------------------------------------------------
# a stand-in for the switch's control API


class FakeSwitch:
    """Answers control API requests from a table and remembers what it was asked."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append((self.command, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    status, answer = 401, {"error": "missing or wrong control token"}
                else:
                    status, answer = fake.answers.get((self.command, self.path), (404, {"error": "no route"}))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        # A short poll interval: shutdown() waits for serve_forever to look up.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> FakeSwitch:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def switch() -> Iterator[FakeSwitch]:
    with FakeSwitch() as fake:
        yield fake


@pytest.fixture
def config(tmp_path: Path, switch: FakeSwitch) -> Path:
    (tmp_path / "control.token").write_text(TOKEN + "\n")
    path = tmp_path / "softswitch.yaml"
    path.write_text(CONFIG.format(tmp=tmp_path, port=switch.port))
    return path


@pytest.fixture
def load(tmp_path: Path) -> Path:
    path = tmp_path / "load.yaml"
    path.write_text(LOAD)
    return path


# ---------------------------------------------------------------------------------------------------
# simulate


def test_simulate_json_has_the_issues_keys_and_sane_values(config: Path, load: Path) -> None:
    args = ["--config", str(config), "--load", str(load), "--hours", "8", "--seed", "7", "--json"]
    result = run("simulate", *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"sales", "billing"}
    for figures in data.values():
        assert set(figures) == set(RESULT_KEYS)
        assert figures["answered"] + figures["abandoned"] <= figures["offered"]
        for share in ("p_wait", "service_level", "occupancy"):
            assert 0.0 <= figures[share] <= 1.0
        assert figures["asa"] >= 0.0
    sales, billing = data["sales"], data["billing"]
    assert abs(sales["offered"] - 480) < 5 * 480**0.5  # Poisson: 60 an hour for 8 hours
    assert abs(billing["offered"] - 160) < 5 * 160**0.5
    assert billing["abandoned"] == 0  # patience: null, nobody gives up
    assert sales["abandoned"] > 0
    assert sales["aht"] == pytest.approx(130, rel=0.2)  # 120 s talk + the load's 10 s wrap-up
    assert billing["aht"] == pytest.approx(200 + 10, rel=0.25)  # the queue's own wrap_up default: 10 s


def test_simulate_is_deterministic_for_a_seed(config: Path, load: Path) -> None:
    args = ["simulate", "--config", str(config), "--load", str(load), "--hours", "2"]
    first = run(*args, "--seed", "3", "--json")
    again = run(*args, "--seed", "3", "--json")
    other = run(*args, "--seed", "4", "--json")
    assert first.exit_code == again.exit_code == other.exit_code == 0
    assert first.stdout == again.stdout
    assert first.stdout != other.stdout


def test_simulate_prints_a_table(config: Path, load: Path) -> None:
    result = run("simulate", "--config", str(config), "--load", str(load), "--hours", "1", "--seed", "1")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "simulated 1 h, seed 1"
    assert lines[1].split() == ["queue", *RESULT_KEYS]
    assert [line.split()[0] for line in lines[2:]] == ["sales", "billing"]


def test_simulate_answer_delay_is_waited_for(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text("queues:\n  sales: {arrivals_per_hour: 10, handle_time: 60, answer_delay: 12}\n")
    result = run("simulate", "--config", str(config), "--load", str(path), "--hours", "4", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["sales"]["asa"] >= 12.0
    assert json.loads(result.stdout)["billing"]["offered"] == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("queues:\n  sales: {arrivals_per_hour: 60, handel_time: 120}\n",
         [r":2:34: queues\.sales\.handel_time: unknown key", r":2:3: queues\.sales\.handle_time: missing"]),
        ("queues:\n  sales:\n    arrivals_per_hour: lots\n    handle_time: 60\n",
         [r":3:24: queues\.sales\.arrivals_per_hour: must be a number >= 0, got 'lots'"]),
        ("queues:\n  sales: {arrivals_per_hour: 5, handle_time: 0, patience: -3}\n",
         [r":2:46: queues\.sales\.handle_time: must be a number > 0,",
          r":2:59: queues\.sales\.patience: must be a number > 0 or null"]),
        ("queues:\n  support: {arrivals_per_hour: 5, handle_time: 60}\n",
         [r":2:3: queues\.support: no such queue in the configuration \(queues: sales, billing\)"]),
        ("queue:\n  sales: {arrivals_per_hour: 5, handle_time: 60}\n",
         [r":1:1: queue: unknown key", r": queues: expected a mapping"]),  # no line: the key is not there
        ("queues: [sales]\n", [r":1:1: queues: expected a mapping of queue names"]),
        ("queues:\n  sales: {arrivals_per_hour: 5, handle_time: 60\n", [r":3:1: "]),
        ("- just a list\n", [r": expected a mapping with 'queues"]),
    ],
)  # fmt: skip
def test_a_bad_load_file_is_named_with_line_and_key(
    config: Path, tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "load.yaml"
    path.write_text(text)
    result = run("simulate", "--config", str(config), "--load", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    for pattern in expected:
        assert re.search(re.escape(str(path)) + pattern, result.stderr), (pattern, result.stderr)


def test_a_missing_load_file(config: Path, tmp_path: Path) -> None:
    result = run("simulate", "--config", str(config), "--load", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope.yaml'}: cannot read" in result.stderr


# ---------------------------------------------------------------------------------------------------
# agent commands and reload, through the control API


@pytest.mark.parametrize(
    ("args", "path", "body", "ack", "output", "code"),
    [
        (["login", "alice"], "/api/agents/alice/login", {}, "done", "alice: logged in", 0),
        (["login", "alice"], "/api/agents/alice/login", {}, "no_change", "alice: already logged in", 0),
        (["logout", "bob"], "/api/agents/bob/logout", {}, "pending",
         "bob: will be logged out when the current call ends", 0),
        (["pause", "bob", "--reason", "lunch"], "/api/agents/bob/pause", {"reason": "lunch"}, "done",
         "bob: paused (lunch)", 0),
        (["pause", "bob"], "/api/agents/bob/pause", {}, "done", "bob: paused", 0),
        (["resume", "carol"], "/api/agents/carol/resume", {}, "no_change", "carol: was not paused", 0),
        (["end-wrap-up", "carol"], "/api/agents/carol/end-wrap-up", {}, "done", "carol: wrap-up ended", 0),
        (["pause", "carol"], "/api/agents/carol/pause", {}, "not_logged_in", "carol: not logged in", 1),
    ],
)  # fmt: skip
def test_agent_commands(
    config: Path, switch: FakeSwitch, args: list[str], path: str, body: dict[str, str], ack: str, output: str,
    code: int,
) -> None:  # fmt: skip
    switch.answers[("POST", path)] = (200, {"ack": ack})
    result = run("agent", args[0], "--config", str(config), *args[1:])
    assert switch.requests == [("POST", path, body)]
    assert result.exit_code == code
    assert output in (result.stdout if code == 0 else result.stderr)


def test_agent_command_json(config: Path, switch: FakeSwitch) -> None:
    switch.answers[("POST", "/api/agents/alice/logout")] = (200, {"ack": "done"})
    result = run("agent", "logout", "--config", str(config), "alice", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ack": "done"}


def test_unknown_agent(config: Path, switch: FakeSwitch) -> None:
    switch.answers[("POST", "/api/agents/zed%2Fx/login")] = (404, {"ack": "unknown_agent"})
    result = run("agent", "login", "--config", str(config), "zed/x")
    assert switch.requests[0][1] == "/api/agents/zed%2Fx/login"  # an id cannot escape its path segment
    assert result.exit_code == 1
    assert "unknown agent 'zed/x' (agents: alice, bob, carol)" in result.stderr


def test_reload_ok(config: Path, switch: FakeSwitch) -> None:
    switch.answers[("POST", "/api/reload")] = (200, {"ok": True, "queues": 2, "agents": 3})
    result = run("reload", "--config", str(config))
    assert result.exit_code == 0
    assert result.stdout.strip() == "reloaded: 2 queues, 3 agents"
    assert switch.requests == [("POST", "/api/reload", {})]


def test_reload_of_a_bad_configuration_prints_its_errors_and_exits_1(
    config: Path, switch: FakeSwitch
) -> None:
    issues = [
        "config/softswitch.yaml:12:5: queues[0].strategy: must be one of longest_idle, ...",
        "config/softswitch.yaml:30:7: agents[1].skills.latvian: must be at most 10",
    ]
    answer = {"error": "the configuration has errors", "issues": issues}
    switch.answers[("POST", "/api/reload")] = (400, answer)
    result = run("reload", "--config", str(config))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["reload refused: the configuration has errors", *issues]
    json_result = run("reload", "--config", str(config), "--json")
    assert json_result.exit_code == 1
    assert json.loads(json_result.stdout)["issues"] == issues


def test_commands_say_when_the_switch_is_not_running(config: Path, tmp_path: Path) -> None:
    (tmp_path / "control.token").unlink()
    for args in (["reload"], ["agent", "login"], ["queues"]):
        extra = ["alice"] if args[0] == "agent" else []
        result = run(*args, "--config", str(config), *extra)
        assert result.exit_code == 1
        assert "is the switch running?" in result.stderr


def test_a_wrong_token_is_an_error(config: Path, tmp_path: Path, switch: FakeSwitch) -> None:
    (tmp_path / "control.token").write_text("stale\n")
    result = run("reload", "--config", str(config))
    assert result.exit_code == 1
    assert "401: missing or wrong control token" in result.stderr


# ---------------------------------------------------------------------------------------------------
# queues: live


LIVE = {
    "queues": [
        {
            "name": "sales", "waiting": 2, "ringing": 1, "longest_wait": 75.4, "retired": False,
            "agents": {"available": 1, "on_call": 2, "wrap_up": 1, "paused": 1, "logged_out": 0},
            "figures": {"queue": "sales", "offered": 40, "answered": 30, "abandoned": 6,
                        "service_level": 0.8125, "asa": 14.2, "aht": 185.0, "abandonment_rate": 0.15},
        },
        {
            "name": "billing", "waiting": 0, "ringing": 0, "longest_wait": 0.0, "retired": False,
            "agents": {"available": 2}, "figures": {"queue": "billing", "offered": 0, "answered": 0,
                                                    "abandoned": 0, "service_level": None, "asa": None,
                                                    "aht": None, "abandonment_rate": None},
        },
    ]
}  # fmt: skip


def test_queues_live_table(config: Path, switch: FakeSwitch) -> None:
    switch.answers[("GET", "/api/queues")] = (200, LIVE)
    result = run("queues", "--config", str(config))
    assert result.exit_code == 0
    header, sales, billing = result.stdout.splitlines()
    assert header.split() == [
        "QUEUE", "WAITING", "RINGING", "LONGEST", "AVAIL", "BUSY", "PAUSED", "OFFERED", "ANSWERED",
        "ABANDONED", "SL", "ASA", "AHT", "ABANDON%",
    ]  # fmt: skip
    assert sales.split() == [
        "sales", "2", "1", "1:15", "1", "3", "1", "40", "30", "6", "81%", "0:14", "3:05", "15%",
    ]  # fmt: skip
    assert billing.split() == ["billing", "0", "0", "2", "0", "0", "0", "0", "0", "-", "-", "-", "-"]


def test_queues_live_json_and_filter(config: Path, switch: FakeSwitch) -> None:
    switch.answers[("GET", "/api/queues")] = (200, LIVE)
    result = run("queues", "--config", str(config), "--json")
    assert json.loads(result.stdout) == LIVE
    result = run("queues", "--config", str(config), "--json", "--queue", "billing")
    assert json.loads(result.stdout) == {"queues": [LIVE["queues"][1]]}
    result = run("queues", "--config", str(config), "--queue", "nope")
    assert result.exit_code == 1 and "unknown queue 'nope' (queues: sales, billing)" in result.stderr


# ---------------------------------------------------------------------------------------------------
# queues: historical, from the database, with no switch running


def stored(tmp_path: Path, base: float) -> None:
    """Sales: one call answered in 10 s, one abandoned after 40 s; billing: one answered in 45 s."""
    url = f"sqlite:///{tmp_path}/db/softswitch.db"
    migrate(url)
    engine = make_engine(url)
    events = [
        QueueEventRecord(base + 0, "enter", "sales", "c1", position=1),
        QueueEventRecord(base + 10, "connect", "sales", "c1", "alice", wait=10.0, duration=3.0),
        QueueEventRecord(base + 70, "complete_caller", "sales", "c1", "alice", wait=10.0, duration=60.0),
        QueueEventRecord(base + 75, "wrap_up", "sales", "c1", "alice", duration=5.0),
        QueueEventRecord(base + 1, "enter", "sales", "c2", position=2),
        QueueEventRecord(base + 41, "abandon", "sales", "c2", position=1, wait=40.0),
        QueueEventRecord(base + 2, "enter", "billing", "c3", position=1),
        QueueEventRecord(base + 47, "connect", "billing", "c3", "carol", wait=45.0, duration=2.0),
    ]
    try:
        with Session(engine) as session, session.begin():
            save_queue_events(session, sorted(events, key=lambda e: e.at))
            save_agent_states(session, [AgentStateRecord(base - 100, "alice", "logged_out", "available")])
    finally:
        engine.dispose()


def test_queues_since_reads_the_database(config: Path, tmp_path: Path) -> None:
    base = 1_790_000_000.0  # 2026-09-21
    stored(tmp_path, base)
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(base - 5))
    until = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(base + 3600))
    (tmp_path / "control.token").unlink()  # the switch is down: nothing needs it
    result = run("queues", "--config", str(config), "--since", since, "--until", until, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["since"], data["until"]) == (base - 5, base + 3600)
    figures = {entry["name"]: entry["figures"] for entry in data["queues"]}
    assert list(figures) == ["sales", "billing"]
    sales, billing = figures["sales"], figures["billing"]
    assert (sales["offered"], sales["answered"], sales["abandoned"]) == (2, 1, 1)
    assert sales["service_level"] == 0.5 and sales["asa"] == 10.0 and sales["aht"] == 65.0
    assert sales["abandonment_rate"] == 0.5
    assert billing["answered"] == 1 and billing["service_level"] == 0.0  # 45 s > its 30 s service level

    table = run("queues", "--config", str(config), "--since", since, "--until", until, "--queue", "sales")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].startswith("from ")
    assert lines[2].split() == ["sales", "2", "1", "1", "0", "0", "50%", "0:10", "1:05", "50%", "0:40"]
    assert len(lines) == 3

    later = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(base + 60))
    result = run("queues", "--config", str(config), "--since", later, "--until", until, "--json")
    sales = json.loads(result.stdout)["queues"][0]["figures"]
    assert (sales["offered"], sales["answered"], sales["abandoned"]) == (0, 0, 0)  # outcomes were earlier


def test_queues_today(config: Path, tmp_path: Path) -> None:
    now = time.time()
    start, _ = day_window(now)
    base = start + min(1.0, (now - start) / 4)
    stored(tmp_path, base)
    result = run("queues", "--config", str(config), "--today", "--json", "--until", "2999-01-01")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["since"] == start
    assert data["queues"][0]["figures"]["offered"] == 2


def test_queues_history_options_and_errors(config: Path, tmp_path: Path) -> None:
    result = run("queues", "--config", str(config), "--today", "--since", "2026-01-01")
    assert result.exit_code == 1 and "not both" in result.stderr
    result = run("queues", "--config", str(config), "--until", "2026-01-01")
    assert result.exit_code == 1 and "--until needs --since or --today" in result.stderr
    result = run("queues", "--config", str(config), "--since", "last tuesday")
    assert result.exit_code == 1 and "not an ISO 8601 time: 'last tuesday'" in result.stderr
    result = run("queues", "--config", str(config), "--since", "2026-01-02", "--until", "2026-01-01")
    assert result.exit_code == 1 and "nothing to report" in result.stderr
    result = run("queues", "--config", str(config), "--since", "2026-01-01")
    assert result.exit_code == 1 and "no statistics yet" in result.stderr
    assert not (tmp_path / "db").exists()  # reading created no database
    stored(tmp_path, 1_790_000_000.0)
    result = run("queues", "--config", str(config), "--since", "2026-01-01", "--queue", "nope")
    assert result.exit_code == 1 and "unknown queue 'nope' (queues: sales, billing)" in result.stderr


# ---------------------------------------------------------------------------------------------------
# prompts


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_prompts_command_makes_the_sounds_and_the_configured_files(config: Path, tmp_path: Path) -> None:
    from softswitch.prompts import MOH_NAME, PROMPTS

    result = run("prompts", "--config", str(config), "--if-missing")
    assert result.exit_code == 0, result.stderr
    sounds = tmp_path / "sounds"
    assert {p.stem for p in sounds.glob("*.wav")} == {*PROMPTS, MOH_NAME}
    assert f"{sounds}: wrote {len(PROMPTS)} prompts and the default music on hold" in result.stdout
    configured = tmp_path / "config-sounds"
    assert soundfile.info(str(configured / "moh.wav")).duration == pytest.approx(30.0)
    assert (configured / "please-hold.wav").read_bytes() == (sounds / "please-hold.wav").read_bytes()
    assert not (configured / "custom-greeting.wav").exists()
    assert f"warning: {configured / 'custom-greeting.wav'}: missing" in result.stderr

    stamp = (sounds / "number-5.wav").stat().st_mtime_ns
    again = run("prompts", "--config", str(config), "--if-missing")
    assert again.exit_code == 0
    assert "are there" in again.stdout
    assert (sounds / "number-5.wav").stat().st_mtime_ns == stamp
