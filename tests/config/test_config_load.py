"""Loading configuration files: the example loads; every problem names file, line and key, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from softswitch.config import ConfigError, ConfigIssue, Settings, load_settings, parse_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "softswitch.yaml"

VALID = textwrap.dedent(
    """\
    server:
      domain: cc.example.com
    agents:
      - id: alice
        password: "alice-secret"
        extension: "1001"
        skills: {billing: 7, latvian: 9}
        team: riga
      - id: bob
        password: "bob-secret"
        extension: "1002"
        skills: {billing: 4}
        team: riga
    supervisors:
      - id: sam
        password: "sam-secret"
        extension: "1900"
        teams: [riga]
    queues:
      - name: billing
        numbers: ["7001"]
        skills: {billing: 3}
      - name: overflow
        numbers: ["7002"]
    trunks:
      - name: carrier
        match: {source: 198.51.100.0/24}
        dids: {"+37167000001": "7001"}
    """
)


def line_of(text: str, marker: str) -> int:
    """1-based number of the first line containing `marker`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in text")


def errors_of(text: str, filename: str = "test.yaml") -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename)
    return caught.value.errors


def only_error(text: str) -> ConfigIssue:
    errors = errors_of(text)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def test_example_file_loads() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.server.domain == "cc.example.com"
    assert [str(spec) for spec in settings.server.listen] == [
        "udp://0.0.0.0:5060",
        "tcp://0.0.0.0:5060",
        "tls://0.0.0.0:5061",
    ]
    assert settings.server.database == "sqlite:///var/softswitch.db"
    assert settings.server.rtp_ports == (20000, 29999)
    assert len(settings.agents) == 3 and len(settings.supervisors) == 1
    assert len(settings.queues) == 2 and len(settings.trunks) == 1
    assert settings.serves_domain("127.0.0.1") and settings.serves_domain("localhost")
    assert all(agent.skills for agent in settings.agents)


def test_example_file_has_no_warnings() -> None:
    assert load_settings(EXAMPLE).warnings() == []


def test_valid_text_parses() -> None:
    settings = parse_settings(VALID, "test.yaml")
    assert isinstance(settings, Settings)
    assert settings.agent_by_id("alice") is not None


def test_unknown_key_names_line_key_and_suggests_the_right_one() -> None:
    text = VALID.replace('    password: "bob-secret"', '    pasword: "bob-secret"')
    issue = only_error(text)
    assert (issue.line, issue.key) == (line_of(text, "pasword"), "agents[1].pasword")
    assert issue.column == 5
    assert "unknown key 'pasword'" in issue.message and "did you mean 'password'" in issue.message
    assert issue.hint is not None and "password" in issue.hint


def test_bad_skill_level_points_at_the_skill() -> None:
    text = VALID.replace("skills: {billing: 4}", "skills: {billing: 11}")
    issue = only_error(text)
    assert issue.key == "agents[1].skills.billing"
    assert issue.line == line_of(text, "billing: 11")
    assert "11" in issue.message and "10" in issue.message


def test_bad_strategy_lists_the_known_ones() -> None:
    text = VALID.replace('    numbers: ["7001"]', '    numbers: ["7001"]\n    strategy: fastest')
    issue = only_error(text)
    assert (issue.key, issue.line) == ("queues[0].strategy", line_of(text, "strategy: fastest"))
    for known in ("longest_idle", "least_calls", "round_robin", "ring_all", "best_skill", "random"):
        assert known in issue.message


def test_bad_cidr_names_the_entry() -> None:
    text = VALID.replace("source: 198.51.100.0/24", "source: [192.0.2.0/24, 198.51.100.7/24]")
    issue = only_error(text)
    assert issue.key == "trunks[0].match.source[1]"
    assert issue.line == line_of(text, "198.51.100.7/24")
    assert "did you mean 198.51.100.0/24" in issue.message


def test_not_an_address_at_all() -> None:
    text = VALID.replace("source: 198.51.100.0/24", "source: carrier.example.net")
    issue = only_error(text)
    assert issue.key.startswith("trunks[0].match.source")
    assert "not an IP address or network" in issue.message


def test_duplicate_extension_across_agents_supervisors_and_queues() -> None:
    text = VALID.replace('numbers: ["7002"]', 'numbers: ["1002"]')
    issue = only_error(text)
    assert (issue.key, issue.line) == ("queues[1].numbers[0]", line_of(text, 'numbers: ["1002"]'))
    assert "agents[1].extension" in issue.message


def test_duplicate_user_id() -> None:
    text = VALID.replace("  - id: sam", "  - id: bob")
    issue = only_error(text)
    supervisor_line = [n for n, line in enumerate(text.splitlines(), 1) if "- id: bob" in line][1]
    assert (issue.key, issue.line) == ("supervisors[0].id", supervisor_line)
    assert "agents[1].id" in issue.message


def test_yaml_syntax_error_gives_file_and_line() -> None:
    text = VALID.replace("skills: {billing: 4}", "skills: {billing: 4")
    issue = only_error(text)
    assert issue.file == "test.yaml" and issue.line is not None
    assert issue.line >= line_of(text, "skills: {billing: 4") and "YAML syntax error" in issue.message


def test_unquoted_feature_code_is_explained() -> None:
    issue = only_error(VALID + "features:\n  login: *11\n")
    assert issue.line == line_of(VALID + "features:\n  login: *11\n", "login: *11")
    assert "quoted" in issue.message


def test_unquoted_extension_is_refused_with_a_hint() -> None:
    text = VALID.replace('extension: "1002"', "extension: 01002")
    issue = only_error(text)
    assert issue.key == "agents[1].extension"
    assert "quoted string" in issue.message


def test_missing_required_key_points_at_the_key_that_lacks_it() -> None:
    text = VALID.replace("  domain: cc.example.com\n", "  rtp_ports: 20000-29999\n")
    issue = only_error(text)
    assert issue.key == "server.domain"
    assert (issue.line, issue.column) == (line_of(text, "server:"), 1)
    assert "missing required key 'domain'" in issue.message


def test_multiple_errors_are_reported_together_in_file_order() -> None:
    text = (
        VALID.replace("skills: {billing: 4}", "skills: {billing: 0}")
        .replace("  domain: cc.example.com", "  domain: cc.example.com\n  rtp_ports: 20001-20000")
        .replace("source: 198.51.100.0/24", "source: 300.1.1.0/24")
        .replace("name: overflow", "name: overflow\n    colour: blue")
    )
    errors = errors_of(text)
    assert [e.key for e in errors] == [
        "server.rtp_ports",
        "agents[1].skills.billing",
        "queues[1].colour",
        "trunks[0].match.source",  # a single network written as a scalar: no [0] in the file
    ]
    assert [e.line for e in errors] == sorted(e.line for e in errors if e.line is not None)


def test_cross_reference_errors_are_reported_together() -> None:
    text = (
        VALID.replace("teams: [riga]", "teams: [rgia]")
        .replace('dids: {"+37167000001": "7001"}', 'dids: {"+37167000001": "7999"}')
        .replace('numbers: ["7002"]', 'numbers: ["7002"]\n    overflow: {after: 30, to: nowhere}')
    )
    errors = errors_of(text)
    by_key = {e.key: e for e in errors}
    assert set(by_key) == {
        "supervisors[0].teams[0]",
        "queues[1].overflow.to",
        'trunks[0].dids["+37167000001"]',
    }
    assert "riga" in by_key["supervisors[0].teams[0]"].message  # names the known teams
    assert by_key["queues[1].overflow.to"].line == line_of(text, "to: nowhere")
    assert by_key['trunks[0].dids["+37167000001"]'].line == line_of(text, "7999")


def test_str_of_config_error_is_one_line_per_issue() -> None:
    text = VALID.replace('    password: "alice-secret"', '    password: "alice-secret"\n    colour: red')
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "config/softswitch.yaml")
    line = line_of(text, "colour")
    assert str(caught.value) == f"config/softswitch.yaml:{line}:5: agents[0].colour: unknown key 'colour'"


def test_repeated_key_in_one_mapping_is_an_error() -> None:
    text = VALID.replace('    password: "bob-secret"', '    password: "bob-secret"\n    password: "other"')
    issue = only_error(text)
    assert issue.key == "agents[1].password" and issue.line == line_of(text, '"other"')
    assert f"line {line_of(text, 'bob-secret')}" in issue.message


def test_empty_file_and_non_mapping() -> None:
    assert "empty" in only_error("").message
    assert "mapping" in only_error("- just\n- a list\n").message


def test_passwords_are_not_echoed_in_messages() -> None:
    text = VALID.replace('password: "bob-secret"', "password: [hunter2]")
    issue = only_error(text)
    assert issue.key == "agents[1].password"
    assert "hunter2" not in str(issue)


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("/nonexistent/softswitch.yaml")
    assert caught.value.errors[0].file == "/nonexistent/softswitch.yaml"
    assert "cannot read" in caught.value.errors[0].message


def test_load_settings_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(VALID.replace("skills: {billing: 4}", "skills: {billing: x}"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}:{line_of(VALID, 'billing: 4')}:")
