"""Loading configuration files: the example loads; every problem names file, line and key, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def lines_of(text: str, marker: str) -> list[int]:
    """1-based numbers of every line containing `marker`."""
    return [number for number, line in enumerate(text.splitlines(), start=1) if marker in line]


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


# ---- every problem in one run: field errors do not hide cross-field ones, and cause no false ones


def test_unknown_key_bad_value_and_duplicate_extension_come_out_together_in_line_order() -> None:
    text = (
        VALID.replace(
            "  domain: cc.example.com", "  domain: cc.example.com\n  registrar: {qualify_intervall: 30}"
        )
        .replace("skills: {billing: 7, latvian: 9}", "skills: {billing: 7, latvian: 11}")
        .replace('extension: "1002"', 'extension: "1001"')
    )
    errors = errors_of(text)
    assert [(e.key, e.line) for e in errors] == [
        ("server.registrar.qualify_intervall", line_of(text, "qualify_intervall")),
        ("agents[0].skills.latvian", line_of(text, "latvian: 11")),
        ("agents[1].extension", lines_of(text, 'extension: "1001"')[1]),
    ]
    assert "already used by agents[0].extension" in errors[2].message
    assert all(e.column is not None for e in errors)


def test_duplicate_id_and_bad_skill_level_on_the_same_agent() -> None:
    text = VALID.replace("  - id: bob", "  - id: alice").replace(
        "skills: {billing: 4}", "skills: {billing: 40}"
    )
    errors = errors_of(text)
    assert [e.key for e in errors] == ["agents[1].id", "agents[1].skills.billing"]
    assert "already used by agents[0].id" in errors[0].message


def test_an_agent_with_bad_skills_still_belongs_to_its_team_and_owns_its_extension() -> None:
    # Only bob is in team riga, and his skills are invalid: the supervisor's team and the queue's exit_to
    # still find him.
    text = (
        VALID.replace("team: riga", "team: jelgava", 1)
        .replace("skills: {billing: 4}", "skills: {billing: 40}")
        .replace('numbers: ["7001"]', 'numbers: ["7001"]\n    exit_key: "0"\n    exit_to: "1002"')
    )
    issue = only_error(text)
    assert issue.key == "agents[1].skills.billing"


def test_unknown_overflow_target_and_bad_strategy_on_the_same_queue() -> None:
    text = VALID.replace(
        '    numbers: ["7002"]',
        '    numbers: ["7002"]\n    strategy: fastest\n    overflow: {after: 30, to: nowhere}',
    )
    errors = errors_of(text)
    assert [e.key for e in errors] == ["queues[1].strategy", "queues[1].overflow.to"]
    assert "there is no queue 'nowhere'" in errors[1].message


def test_a_queue_with_a_bad_strategy_is_still_a_valid_overflow_target() -> None:
    text = VALID.replace(
        '    numbers: ["7001"]', '    numbers: ["7001"]\n    overflow: {after: 30, to: overflow}'
    ).replace('    numbers: ["7002"]', '    numbers: ["7002"]\n    strategy: fastest')
    assert only_error(text).key == "queues[1].strategy"


def test_checks_inside_one_section_survive_a_field_error_beside_them() -> None:
    text = VALID.replace(
        "  domain: cc.example.com",
        "  domain: cc.example.com\n  registrar:\n    min_expires: 600\n    max_expires: 60\n    colour: red",
    ).replace(
        '    numbers: ["7002"]',
        '    numbers: ["7002"]\n    strategy: fastest\n    priority: 5\n    vip_priority: 2',
    )
    assert [e.key for e in errors_of(text)] == [
        "server.registrar.min_expires",
        "server.registrar.colour",
        "queues[1].strategy",
        "queues[1].vip_priority",
    ]


def test_an_invalid_value_is_not_reported_again_as_a_missing_target() -> None:
    # alice's extension is refused (unquoted); the DID and exit_to naming it are not also "unknown".
    text = VALID.replace('extension: "1001"', "extension: 1001").replace(
        '    numbers: ["7002"]', '    numbers: ["7002"]\n    exit_key: "0"\n    exit_to: "1001"'
    )
    issue = only_error(text)
    assert issue.key == "agents[0].extension" and "quoted string" in issue.message
    # alice's team is refused and bob is elsewhere: the supervisor's team riga may be alice's, so no report.
    text = VALID.replace("team: riga", "team: [riga]", 1).replace("team: riga", "team: jelgava")
    assert only_error(text).key == "agents[0].team"


def test_a_misspelt_key_does_not_also_report_the_key_it_was_meant_to_be_as_missing() -> None:
    text = VALID.replace("    teams: [riga]", "    temas: [riga]").replace(
        '    password: "sam-secret"', '    pasword: "sam-secret"'
    )
    assert [e.key for e in errors_of(text)] == ["supervisors[0].pasword", "supervisors[0].temas"]


def test_yaml_syntax_error_is_reported_alone() -> None:
    text = VALID.replace('extension: "1002"', 'extension: "1001"').replace(
        "name: overflow", "name: [overflow"
    )
    issue = only_error(text)
    assert "YAML syntax error" in issue.message


def test_a_problem_pydantic_reports_is_not_repeated() -> None:
    # The duplicate is found by the model (everything else valid) and would be found again on the data.
    issue = only_error(VALID.replace('extension: "1002"', 'extension: "1001"'))
    assert issue.key == "agents[1].extension"


# Independent breakages of VALID, each at its own place; any combination must report exactly the union of
# what each reports alone (nothing hidden, nothing invented), sorted by line.
BREAKAGES: dict[str, tuple[str, str]] = {
    "unknown server key": ("  domain: cc.example.com", "  domain: cc.example.com\n  colour: blue"),
    "registrar order": ("server:\n", "server:\n  registrar: {min_expires: 100, max_expires: 50}\n"),
    "skill level": ("skills: {billing: 7, latvian: 9}", "skills: {billing: 7, latvian: 11}"),
    "duplicate extension": ('extension: "1002"', 'extension: "1001"'),
    "duplicate id": ("  - id: sam", "  - id: alice"),
    "team typo": ("teams: [riga]", "teams: [rgia]"),
    "bad strategy": ('numbers: ["7001"]', 'numbers: ["7001"]\n    strategy: fastest'),
    "overflow target": ('numbers: ["7002"]', 'numbers: ["7002"]\n    overflow: {after: 30, to: nowhere}'),
    "vip priority": ("name: overflow", "name: overflow\n    priority: 5\n    vip_priority: 5"),
    "did target": ('"+37167000001": "7001"', '"+37167000001": "7999"'),
    "host bits": ("source: 198.51.100.0/24", "source: 198.51.100.7/24"),
}


def _broken(names: frozenset[str]) -> str:
    text = VALID
    for name in sorted(names):
        old, new = BREAKAGES[name]
        assert text.count(old) == 1, name
        text = text.replace(old, new)
    return text


def _reported(names: frozenset[str]) -> set[tuple[str, str]]:
    return {(e.key, e.message) for e in errors_of(_broken(names))}


def test_each_breakage_alone_is_reported() -> None:
    for name in BREAKAGES:
        assert _reported(frozenset({name})), name


@settings(max_examples=40, deadline=None)
@given(st.frozensets(st.sampled_from(sorted(BREAKAGES)), min_size=2))
def test_any_combination_reports_the_union_of_its_parts(names: frozenset[str]) -> None:
    errors = errors_of(_broken(names))
    assert {(e.key, e.message) for e in errors} == set().union(*(_reported(frozenset({n})) for n in names))
    lines = [e.line for e in errors]
    assert None not in lines and lines == sorted(lines)  # type: ignore[type-var]
