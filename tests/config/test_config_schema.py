"""The schema's parsing, cross-checks and lookups, tested on Python data (no YAML)."""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from softswitch.config import ConfigError, HostPort, ListenSpec, Settings, digest_ha1, parse_settings, schema

BASE: dict[str, Any] = {
    "server": {"domain": "cc.example.com", "aliases": ["127.0.0.1", "::1", "localhost"]},
    "agents": [
        {
            "id": "alice",
            "password": "alice-secret",
            "extension": "1001",
            "skills": {"billing": 7},
            "team": "riga",
        },
        {
            "id": "bob",
            "password": "bob-secret",
            "extension": "1002",
            "skills": {"billing": 4},
            "team": "riga",
        },
    ],
    "supervisors": [{"id": "sam", "password": "sam-secret", "extension": "1900", "teams": ["riga"]}],
    "queues": [
        {"name": "billing", "numbers": ["7001", "+37167000001"], "skills": {"billing": 5}},
        {"name": "general", "numbers": ["7002"]},
    ],
    "trunks": [
        {"name": "wide", "match": {"source": "198.51.0.0/16"}},
        {
            "name": "narrow",
            "match": {"source": ["198.51.100.0/24", "2001:db8::/32"]},
            "dids": {"555": "7001"},
        },
    ],
}


def make(**changes: Any) -> Settings:
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target: Any = data
        *path, last = dotted.split("__")
        for part in path:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return Settings.model_validate(data)


def messages(exc: ValidationError) -> str:
    return str(exc)


# ---- listen specs and addresses


@pytest.mark.parametrize(
    ("text", "transport", "host", "port"),
    [
        ("udp://0.0.0.0:5060", "udp", "0.0.0.0", 5060),
        ("tcp://[::1]:5060", "tcp", "::1", 5060),
        ("tls://127.0.0.1:5061", "tls", "127.0.0.1", 5061),
        ("TLS://[2001:DB8::1]", "tls", "2001:db8::1", 5061),
        ("udp://sip.example.com", "udp", "sip.example.com", 5060),
    ],
)
def test_listen_spec_parses(text: str, transport: str, host: str, port: int) -> None:
    spec = ListenSpec.model_validate(text)
    assert (spec.transport, spec.host, spec.port) == (transport, host, port)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sctp://0.0.0.0:5060", "unknown transport 'sctp'"),
        ("udp://0.0.0.0:0", "outside 1-65535"),
        ("udp://0.0.0.0:70000", "outside 1-65535"),
        ("0.0.0.0:5060", "expected transport://host:port"),
        ("udp://[not-v6]:5060", "not an IPv6 address"),
        ("tcp://::1:5060", "expected host:port"),
        ("udp://bad_host!:5060", "neither an IP address nor a valid host name"),
    ],
)
def test_listen_spec_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ListenSpec.model_validate(text)
    assert fragment in messages(caught.value)


@given(
    transport=st.sampled_from(["udp", "tcp", "tls"]),
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(1, 65535),
)
def test_listen_spec_round_trips_through_its_text(
    transport: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    spec = ListenSpec(transport=transport, host=str(address), port=port)  # type: ignore[arg-type]
    assert ListenSpec.model_validate(str(spec)) == spec


def test_host_port() -> None:
    assert HostPort.model_validate("[::1]:8089") == HostPort(host="::1", port=8089)
    assert str(HostPort.model_validate("127.0.0.1:8089")) == "127.0.0.1:8089"
    with pytest.raises(ValidationError, match="a port is required"):
        HostPort.model_validate("127.0.0.1")


def test_defaults_match_the_documented_ones() -> None:
    server = make().server
    assert [str(s) for s in server.listen] == [
        "udp://0.0.0.0:5060",
        "tcp://0.0.0.0:5060",
        "tls://0.0.0.0:5061",
    ]
    assert server.rtp_ports == (20000, 29999)
    assert str(server.control) == "127.0.0.1:8089"
    assert (server.timers.t1, server.timers.t2, server.timers.t4) == (0.5, 4.0, 5.0)
    assert (server.limits.max_message_size, server.limits.max_headers, server.limits.max_line_length) == (
        65535,
        128,
        8192,
    )
    r = server.registrar
    assert (r.min_expires, r.max_expires, r.default_expires, r.max_contacts) == (60, 7200, 3600, 10)
    sec = server.security
    assert (sec.nonce_ttl, sec.auth_failures, sec.auth_window, sec.ban_time) == (300, 10, 60, 600)
    assert (server.tcp_idle_timeout, server.rtp_timeout, server.ring_timeout, server.shutdown_grace) == (
        600,
        30,
        30,
        5,
    )
    assert server.log_level == "info"
    q = make().queues[0]
    assert (q.ring_timeout, q.wrap_up, q.max_wait, q.service_level, q.max_missed) == (20, 10, 600, 20, 3)
    assert (q.join_empty, q.leave_when_empty, q.strategy, q.priority) == (True, False, "longest_idle", 0)
    f = make().features
    assert (f.login, f.logout, f.pause, f.resume, f.end_wrap_up) == ("*11", "*12", "*13", "*14", "*15")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("20001-29999", "must be even"), ("30000-20000", "below the high port"), ("20000", "LOW-HIGH")],
)
def test_rtp_ports_errors(value: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        make(server__rtp_ports=value)


def test_registrar_times_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="exceeds max_expires"):
        make(server__registrar={"min_expires": 100, "max_expires": 50})
    with pytest.raises(ValidationError, match="must lie between"):
        make(server__registrar={"default_expires": 10})


def test_duplicate_listener_is_refused() -> None:
    with pytest.raises(ValidationError, match="already listed"):
        make(server__listen=["udp://0.0.0.0:5060", "udp://0.0.0.0"])


# ---- every field is documented, every model strict


def _models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.append(annotation)
            for field in annotation.model_fields.values():
                visit(field.annotation)
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(Settings)
    return seen


def test_every_field_has_a_description_and_every_model_forbids_unknown_keys() -> None:
    models = _models()
    assert len(models) >= 15
    for model in models:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


# ---- users and credentials


def test_credentials_from_password_follow_rfc_2617() -> None:
    # RFC 2617 §3.5: Mufasa / testrealm@host.com / "Circle Of Life".
    assert (
        digest_ha1("md5", "Mufasa", "testrealm@host.com", "Circle Of Life")
        == "939e7578ed9e3c518a452acee763bce9"
    )
    settings = make(server__domain="testrealm.example", agents__0__password="Circle Of Life")
    md5, sha256 = settings.credentials_for("alice")
    assert md5 == hashlib.md5(b"alice:testrealm.example:Circle Of Life").hexdigest()
    assert sha256 == hashlib.sha256(b"alice:testrealm.example:Circle Of Life").hexdigest()


def test_credentials_from_ha1_only_and_unknown_users() -> None:
    ha1 = "0123456789ABCDEF0123456789abcdef"
    settings = make(agents__1={"id": "bob", "ha1_md5": ha1})
    assert settings.credentials_for("bob") == (ha1.lower(), None)
    assert settings.credentials_for("mallory") == (None, None)


def test_user_needs_some_credential() -> None:
    with pytest.raises(ValidationError, match="give a password, ha1_md5 or ha1_sha256"):
        make(agents__1={"id": "bob"})


def test_ha1_must_match_the_password() -> None:
    with pytest.raises(ValidationError, match="does not match the password"):
        make(agents__1__ha1_sha256="ab" * 32)
    good = digest_ha1("sha256", "bob", "cc.example.com", "bob-secret")
    assert make(agents__1__ha1_sha256=good).credentials_for("bob")[1] == good


@pytest.mark.parametrize("bad", ["abc", "g" * 32, "0" * 31])
def test_ha1_md5_format(bad: str) -> None:
    with pytest.raises(ValidationError, match="32 hex digits"):
        make(agents__1__ha1_md5=bad)


@pytest.mark.parametrize("bad_id", ["al ice", "alice@x", "", "a" * 65])
def test_user_id_syntax(bad_id: str) -> None:
    with pytest.raises(ValidationError, match="letters, digits"):
        make(agents__0__id=bad_id)


def test_timezone_is_checked() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Atlantis'"):
        make(agents__0__timezone="Europe/Atlantis")
    assert make(agents__0__timezone="Europe/Riga").agents[0].tz.key == "Europe/Riga"


def test_password_is_hidden_in_repr() -> None:
    assert "alice-secret" not in repr(make().agents[0])


# ---- queues


def test_relax_steps_must_ascend_and_only_lower_known_skills() -> None:
    with pytest.raises(ValidationError) as caught:
        make(
            queues__0__relax=[
                {"after": 60, "skills": {"billing": 7}},
                {"after": 30, "skills": {"latvian": 1}},
            ]
        )
    text = messages(caught.value)
    assert "relax[0].skills.billing" in text and "only lower" in text
    assert "relax[1].after" in text and "ascending" in text
    assert "relax[1].skills.latvian" in text


def test_skills_at_applies_relax_steps_in_time() -> None:
    queue = make(
        queues__0__skills={"billing": 5, "latvian": 5},
        queues__0__relax=[{"after": 60, "skills": {"billing": 2}}, {"after": 120, "skills": {"latvian": 0}}],
    ).queues[0]
    assert queue.skills_at(0) == {"billing": 5, "latvian": 5}
    assert queue.skills_at(60) == {"billing": 2, "latvian": 5}
    assert queue.skills_at(500) == {"billing": 2}


def test_vip_priority() -> None:
    queue = make(queues__0__priority=5, queues__0__vip_numbers=["+37129999999"]).queues[0]
    assert queue.priority_for("+37129999999") == 15
    assert queue.priority_for("+37120000000") == queue.priority_for(None) == 5
    with pytest.raises(ValidationError, match="vip_priority must exceed priority"):
        make(queues__0__priority=5, queues__0__vip_priority=5)


def test_record_sample_needs_percent() -> None:
    with pytest.raises(ValidationError, match="needs percent"):
        make(queues__0__record={"mode": "sample"})
    assert make(queues__0__record={"mode": "sample", "percent": 10}).queues[0].record.percent == 10


def test_exit_key_needs_a_target_that_exists() -> None:
    with pytest.raises(ValidationError, match="exit_key needs exit_to"):
        make(queues__0__exit_key="0")
    with pytest.raises(ValidationError, match="neither an extension nor a queue"):
        make(queues__0__exit_key="0", queues__0__exit_to="4444")
    assert make(queues__0__exit_key="#", queues__0__exit_to="general").queues[0].exit_to == "general"
    with pytest.raises(ValidationError, match="one DTMF key"):
        make(queues__0__exit_key="12", queues__0__exit_to="general")


def test_overflow_target_must_exist_and_not_loop() -> None:
    with pytest.raises(ValidationError, match="there is no queue 'nowhere'"):
        make(queues__0__overflow={"after": 10, "to": "nowhere"})
    with pytest.raises(ValidationError, match="overflow to itself"):
        make(queues__0__overflow={"after": 10, "to": "billing"})
    with pytest.raises(ValidationError, match="overflow loop: billing -> general -> billing"):
        make(
            queues__0__overflow={"after": 10, "to": "general"},
            queues__1__overflow={"after": 10, "to": "billing"},
        )


def test_duplicate_queue_names() -> None:
    with pytest.raises(ValidationError, match="queue name 'billing' is already used"):
        make(queues__1__name="billing")


# ---- trunks, features, lookups


def test_trunk_for_prefers_the_most_specific_network() -> None:
    settings = make()
    assert settings.trunk_for("198.51.100.7").name == "narrow"  # type: ignore[union-attr]
    assert settings.trunk_for("198.51.7.7").name == "wide"  # type: ignore[union-attr]
    assert settings.trunk_for("[2001:db8::5]").name == "narrow"  # type: ignore[union-attr]
    assert settings.trunk_for("192.0.2.1") is None
    assert settings.trunk_for("not-an-ip") is None


def test_did_targets_must_exist() -> None:
    with pytest.raises(ValidationError, match="'4444' is not an extension or queue number"):
        make(trunks__1__dids={"555": "4444"})


def test_codecs_are_checked_and_normalised() -> None:
    assert make(trunks__0__codecs=["pcma", "PCMU"]).trunks[0].codecs == ("PCMA", "PCMU")
    with pytest.raises(ValidationError, match="PCMU"):
        make(trunks__0__codecs=["G729"])


def test_feature_codes_match_and_must_not_collide() -> None:
    features = make().features
    assert features.match("*11") == ("login", "")
    assert features.match("*132") == ("pause", "2")
    assert features.match("*13") == ("pause", "")
    assert features.match("*112") is None
    assert features.match("1001") is None
    with pytest.raises(ValidationError, match="collides with"):
        make(features={"login": "*1", "logout": "*12"})
    with pytest.raises(ValidationError, match="start with"):
        make(features={"login": "11"})


def test_lookups() -> None:
    settings = make()
    assert settings.agent_by_id("alice") is settings.agents[0]
    assert settings.agent_by_id("sam") is None
    assert settings.supervisor_by_id("sam") is settings.supervisors[0]
    assert settings.user_by_id("sam") is settings.supervisors[0]
    assert settings.resolve_number("1002") is settings.agents[1]
    assert settings.resolve_number("+37167000001") is settings.queues[0]
    assert settings.resolve_number("9999") is None
    assert settings.resolve_target("general") is settings.queues[1]
    assert settings.queue_by_name("general") is settings.queues[1]
    assert set(settings.numbers()) == {"1001", "1002", "1900", "7001", "+37167000001", "7002"}
    assert settings.supervisors[0].supervises("riga") and not settings.supervisors[0].supervises("london")
    assert [a.id for a in settings.team_members("riga")] == ["alice", "bob"]


def test_serves_domain() -> None:
    settings = make()
    for host in ("cc.example.com", "CC.Example.COM", "127.0.0.1", "[::1]", "0:0::1", "localhost"):
        assert settings.serves_domain(host), host
    assert not settings.serves_domain("evil.example.com")


def test_supervisor_teams_must_exist_unless_star() -> None:
    with pytest.raises(ValidationError, match="no agent is in team 'rgia'"):
        make(supervisors__0__teams=["rgia"])
    assert make(supervisors__0__teams=["*"]).supervisors[0].supervises("anything")


def test_warnings() -> None:
    assert make().warnings() == []
    settings = make(agents__0__password="tiny1", queues__1__skills={"chinese": 3})
    warnings = settings.warnings()
    assert any(w.startswith("agents[0].password") for w in warnings)
    assert any(w.startswith("queues[1].skills.chinese") for w in warnings)
    assert not any("tiny1" in w for w in warnings)


def test_numbers_keep_their_plus_when_quoted() -> None:
    settings = parse_settings(
        'server: {domain: x.example}\nqueues:\n  - {name: q, numbers: ["+3711"]}\n', "t"
    )
    assert settings.queues[0].numbers == ("+3711",)
    with pytest.raises(ConfigError, match="quoted string"):
        parse_settings("server: {domain: x.example}\nqueues:\n  - {name: q, numbers: [+3711]}\n", "t")


def test_boolean_lookalikes_are_refused_for_text() -> None:
    with pytest.raises(ConfigError, match="as the boolean false"):
        parse_settings('server: {domain: x.example}\nagents:\n  - {id: a, name: no, password: "pw"}\n', "t")


def test_located_errors_text() -> None:
    error = schema.LocatedErrors([(("relax", 1, "after"), "bad"), ((), "top")])
    assert str(error) == "relax[1].after: bad; (top): top"


# ---- the cross-field checks also run on data that does not validate


def test_no_model_hides_validation_in_a_field_validator() -> None:
    # RawView validates a field through its annotation alone; a field_validator would be missed there.
    for model in _models():
        assert not model.__pydantic_decorators__.field_validators, model.__name__


def test_a_view_of_valid_data_reads_what_the_model_holds() -> None:
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "softswitch.yaml").read_text())
    data["server"]["log_level"] = "INFO"  # normalised by the field's own validation
    settings = Settings.model_validate(data)
    view = schema.RawView(Settings, data)
    for name in Settings.model_fields:
        assert getattr(view, name) == getattr(settings, name), name
    assert schema.cross_field_issues(data) == []


def test_a_view_reads_past_invalid_fields_and_entries() -> None:
    data = copy.deepcopy(BASE)
    data["agents"][1]["skills"] = {"billing": 40}
    data["agents"][1]["extension"] = 1002
    data["queues"][0]["colour"] = "red"
    view = schema.RawView(Settings, data)
    alice, bob = view.agents
    assert isinstance(alice, schema.AgentSettings) and isinstance(bob, schema.RawView)
    assert (bob.id, bob.team, bob.timezone) == ("bob", "riga", "UTC")
    for unreadable in ("skills", "extension"):
        with pytest.raises(schema.Unknown):
            getattr(bob, unreadable)
    queue = view.queues[0]
    assert queue.name == "billing"
    with pytest.raises(schema.Unknown):  # absent, but `colour` may be it misspelt
        _ = queue.strategy


def test_digest_algorithms_listed_twice() -> None:
    with pytest.raises(ValidationError, match="MD5 is listed twice"):
        make(server__security={"digest_algorithms": ["MD5", "SHA-256", "MD5"]})


# ---- warnings about digest algorithms


def _ha1_only(**ha1: str) -> dict[str, str]:
    return {"id": "bob", "extension": "1002", "team": "riga", **ha1}


BOB_MD5 = digest_ha1("md5", "bob", "cc.example.com", "bob-secret")
BOB_SHA256 = digest_ha1("sha256", "bob", "cc.example.com", "bob-secret")


@pytest.mark.parametrize(
    ("ha1", "algorithms", "fragment"),
    [
        ({"ha1_sha256": BOB_SHA256}, ["MD5", "SHA-256"], "offers MD5 first"),
        ({"ha1_md5": BOB_MD5}, ["SHA-256", "MD5"], "offers SHA-256 first"),
        ({"ha1_sha256": BOB_SHA256}, ["MD5"], "cannot register at all"),
    ],
)
def test_a_user_without_an_ha1_for_the_first_challenge_is_warned_about(
    ha1: dict[str, str], algorithms: list[str], fragment: str
) -> None:
    settings = make(agents__1=_ha1_only(**ha1), server__security={"digest_algorithms": algorithms})
    (warning,) = [w for w in settings.warnings() if w.startswith("agents[1].ha1_")]
    assert fragment in warning and "bob" in warning
    missing = "ha1_md5" if algorithms[0] == "MD5" else "ha1_sha256"
    assert f"add {missing}" in warning
    assert BOB_MD5 not in warning and BOB_SHA256 not in warning


@pytest.mark.parametrize(
    ("ha1", "algorithms"),
    [
        ({"ha1_sha256": BOB_SHA256}, ["SHA-256", "MD5"]),
        ({"ha1_md5": BOB_MD5}, ["MD5", "SHA-256"]),
        ({"ha1_md5": BOB_MD5, "ha1_sha256": BOB_SHA256}, ["SHA-256"]),
        ({"password": "bob-secret"}, ["SHA-256"]),
    ],
)
def test_no_digest_warning_when_the_first_challenge_can_be_answered(
    ha1: dict[str, str], algorithms: list[str]
) -> None:
    settings = make(agents__1=_ha1_only(**ha1), server__security={"digest_algorithms": algorithms})
    assert settings.warnings() == []


def test_supervisors_are_warned_about_too() -> None:
    sam = digest_ha1("sha256", "sam", "cc.example.com", "sam-secret")
    settings = make(supervisors__0={"id": "sam", "ha1_sha256": sam, "extension": "1900", "teams": ["riga"]})
    assert [w.split(":")[0] for w in settings.warnings()] == ["supervisors[0].ha1_sha256"]
