"""The registrar end to end: real phones register with `softswitch serve`; the admin's CLI shows them.

Acceptance of the foundation issue (registration half): pjsua2 phones register with digest over UDP, TCP
and TLS (TLS verified against the test CA), refresh with a new expiry and unregister;
`softswitch agents --json` shows each binding with its source address and port, transport, user agent,
expiry and qualify reachability; the bindings outlive a clean stop (read from the database) and a SIGKILL
right after a 200 (acknowledged means durable), and a call still reaches a phone restored from the store;
sipp registers 200 users from an injection file; two phones share one AOR and `Contact: *` removes both;
an Expires below min_expires gets 423 with Min-Expires; qualify marks a killed phone unreachable.

One switch serves the tests that only add and remove their own agents' bindings (module scope); the tests
that stop, kill or load the switch get their own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.harness import Phone, PhoneFactory, SoftswitchServer
from tests.integration.harness.rawsip import SipClient
from tests.integration.harness.sipp import run_sipp, write_users_file

pytestmark = pytest.mark.integration

PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan"]
AGENTS = [
    {"id": name, "password": f"pw-{name}", "extension": f"{1001 + index}"}
    for index, name in enumerate(PEOPLE)
]
# Agents configured with an HA1 instead of a password (the realm is the domain, 127.0.0.1).
AGENTS += [
    {"id": "judy", "ha1_md5": hashlib.md5(b"judy:127.0.0.1:pw-judy").hexdigest(), "extension": "1101"},
    {"id": "kim", "ha1_sha256": hashlib.sha256(b"kim:127.0.0.1:pw-kim").hexdigest(), "extension": "1102"},
]
EXTENSION = {agent["id"]: agent["extension"] for agent in AGENTS}
MIN_EXPIRES = 20
QUALIFY_INTERVAL = 1.0
QUALIFY_TIMEOUT = 0.5
SHORT_TIMERS = {
    "server": {
        "registrar": {
            "min_expires": MIN_EXPIRES,
            "qualify_interval": QUALIFY_INTERVAL,
            "qualify_timeout": QUALIFY_TIMEOUT,
        },
        # Both algorithms offered (RFC 8760), MD5 first for pjsua2 and sipp; SHA-256 for the raw client.
        "security": {"digest_algorithms": ["MD5", "SHA-256"]},
    }
}


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftswitchServer]:
    server = SoftswitchServer(tmp_path_factory.mktemp("registrar"), AGENTS, extra_config=SHORT_TIMERS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- helpers -------------------------------------------------------------------------------------------------


def agents_view(server: SoftswitchServer, *, source: str = "server") -> dict[str, list[dict[str, Any]]]:
    """`softswitch agents --json`: user id -> registrations, asserting where the CLI read them from."""
    data = server.cli_json("agents")
    assert data["source"] == source, data
    return {person["id"]: list(person["registrations"]) for person in data["agents"]}


def registrations(server: SoftswitchServer, user: str, *, source: str = "server") -> list[dict[str, Any]]:
    """`softswitch agents --json` for one user."""
    return agents_view(server, source=source)[user]


def wall_time_of(event: dict[str, Any]) -> float:
    """The wall-clock time of a driver event (its "t" is CLOCK_MONOTONIC, shared by every process)."""
    return time.time() - (time.monotonic() - float(event["t"]))


def assert_binding_is(
    reg: dict[str, Any], phone: Phone, server: SoftswitchServer, granted: dict[str, Any]
) -> None:
    """The CLI's row for `phone`: source, transport, user agent, and an expiry matching the 200."""
    assert reg["transport"] == phone.transport, reg
    assert reg["source_host"] == "127.0.0.1", reg
    assert reg["source"] == f"127.0.0.1:{reg['source_port']}", reg
    if phone.transport == "udp":
        assert reg["source_port"] == phone.port, (reg, phone.port)
    else:
        # A stream phone's source port is its end of the connection to our listener.
        conns = psutil.Process(phone.pid).net_connections(kind="tcp")
        ours = [
            c
            for c in conns
            if c.raddr
            and c.raddr.port == server.port_for(phone.transport)
            and c.status == psutil.CONN_ESTABLISHED
        ]
        assert [c.laddr.port for c in ours] == [reg["source_port"]], (reg, conns)
    assert reg["user_agent"] == f"softswitch-harness-pjsua2/{phone.name}", reg
    expected = wall_time_of(granted) + granted["expiration"]
    assert abs(reg["expires_at"] - expected) <= 1.0, (reg, granted)


# -- registration over each transport ------------------------------------------------------------------------


def test_phones_register_over_udp_tcp_and_tls_refresh_and_unregister(
    switch: SoftswitchServer, phones: PhoneFactory
) -> None:
    assert switch.ca_file is not None
    alice, bob, carol = phones.many(
        [
            ("alice", {"server": switch, "password": "pw-alice", "transport": "udp"}),
            ("bob", {"server": switch, "password": "pw-bob", "transport": "tcp"}),
            (
                "carol",
                {
                    "server": switch,
                    "password": "pw-carol",
                    "transport": "tls",
                    "ca_file": switch.ca_file,
                    "verify_server": True,
                },
            ),
        ],
        wait_registered=False,
    )
    granted = {phone.name: phone.wait_registered() for phone in (alice, bob, carol)}
    for phone in (alice, bob, carol):
        assert granted[phone.name]["expiration"] == 300
        # Qualify (OPTIONS over the phone's own flow) reports the phone reachable, with a round-trip time.
        switch.expect_log("reachability", timeout=5, aor=f"sip:{phone.name}@127.0.0.1", reachable=True)

    view = agents_view(switch)
    for phone in (alice, bob, carol):
        (reg,) = view[phone.name]
        assert_binding_is(reg, phone, switch, granted[phone.name])
        assert reg["reachable"] is True and 0 <= reg["rtt_ms"] < 1000, reg

    # The table an admin reads says the same: address:port, transport, user agent, until when, reachable.
    table = switch.cli("agents")
    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("alice ")]
    (reg,) = view["alice"]
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(reg["expires_at"]))
    for shown in (reg["source"], "udp", "softswitch-harness-pjsua2/alice", until, "yes ("):
        assert shown in row, (shown, row)

    # Refresh with a new expiry: the same binding, a new expiry.
    refreshed = bob.register(expiry=120)
    assert refreshed["expiration"] == 120
    (reg,) = registrations(switch, "bob")
    assert_binding_is(reg, bob, switch, refreshed)

    # Unregister: the binding is gone; the others stay.
    gone = carol.unregister()
    assert gone["code"] == 200
    view = agents_view(switch)
    assert view["carol"] == []
    assert len(view["alice"]) == 1


def test_expires_below_min_expires_gets_423_with_min_expires(
    switch: SoftswitchServer, phones: PhoneFactory
) -> None:
    with SipClient("127.0.0.1", switch.udp_port) as client:
        challenge, answer = client.register("dave", "pw-dave", domain=switch.domain, expires=MIN_EXPIRES - 15)
    assert challenge is not None and challenge.status == 401
    assert answer is not None, "no answer to the authenticated REGISTER"
    assert answer.status == 423, answer.raw
    assert answer.get("min-expires") == str(MIN_EXPIRES), answer.raw
    assert registrations(switch, "dave") == []
    # A phone that asks for too little follows the 423 and registers for Min-Expires (RFC 3261 §10.2.8).
    dave = phones("dave", server=switch, password="pw-dave", reg_expiry=5, wait_registered=False)
    assert dave.wait_registered()["expiration"] == MIN_EXPIRES
    (reg,) = registrations(switch, "dave")
    assert 0 < reg["expires_in"] <= MIN_EXPIRES


def test_agents_configured_with_ha1_register(switch: SoftswitchServer, phones: PhoneFactory) -> None:
    """An admin may keep plaintext out of the YAML: ha1_md5 answers MD5 challenges (what pjsua2 and
    sipp answer, MD5 being offered first), ha1_sha256 answers SHA-256 ones (RFC 8760)."""
    judy = phones("judy", server=switch, password="pw-judy", wait_registered=False)
    assert judy.wait_registered()["code"] == 200
    with SipClient("127.0.0.1", switch.udp_port) as client:
        _, answer = client.register("kim", "pw-kim", domain=switch.domain, algorithm="SHA-256", expires=60)
        assert answer is not None and answer.status == 200, answer and answer.raw
        _, wrong = client.register("kim", "not-kims", domain=switch.domain, algorithm="SHA-256")
        assert wrong is not None and wrong.status == 403
        _, gone = client.register("kim", "pw-kim", domain=switch.domain, algorithm="SHA-256", expires=0)
        assert gone is not None and gone.status == 200
    assert len(registrations(switch, "judy")) == 1


def test_two_phones_share_one_aor_and_contact_star_removes_both(
    switch: SoftswitchServer, phones: PhoneFactory
) -> None:
    uri = f"sip:erin@{switch.domain}"
    phones.many(
        [
            ("erin-desk", {"server": switch, "id_uri": uri, "password": "pw-erin"}),
            ("erin-mobile", {"server": switch, "id_uri": uri, "password": "pw-erin", "transport": "tcp"}),
        ]
    )
    regs = registrations(switch, "erin")
    assert sorted((r["transport"], r["user_agent"]) for r in regs) == [
        ("tcp", "softswitch-harness-pjsua2/erin-mobile"),
        ("udp", "softswitch-harness-pjsua2/erin-desk"),
    ]
    assert len({r["contact"] for r in regs}) == 2

    # RFC 3261 §10.2.2: Contact: * with Expires: 0 removes every binding of the AOR.
    with SipClient("127.0.0.1", switch.udp_port) as client:
        _, answer = client.register("erin", "pw-erin", domain=switch.domain, contact="*", expires=0)
    assert answer is not None and answer.status == 200, answer and answer.raw
    assert answer.get_all("contact") == [], answer.raw
    assert registrations(switch, "erin") == []


@pytest.mark.parametrize(("user", "transport"), [("heidi", "udp"), ("ivan", "tcp")])
def test_a_phone_behind_nat_is_reached_over_the_flow_it_registered_from(
    switch: SoftswitchServer, user: str, transport: str
) -> None:
    """The phone advertises a private address (Via, Contact) it cannot be reached at; the switch answers
    and later qualifies it at the source address and port of its packets, over its very socket or TCP
    connection (RFC 3581 rport, RFC 5626 flow reuse), and shows that public address to the admin."""
    private = ("192.168.1.50", 5060)
    with SipClient(
        "127.0.0.1",
        switch.port_for(transport),
        transport=transport,
        local_host="127.0.0.5",
        advertise=private,
    ) as phone:
        _, answer = phone.register(user, f"pw-{user}", domain=switch.domain, expires=120)
        assert answer is not None and answer.status == 200, answer and answer.raw
        assert "received=127.0.0.5;" in (answer.get("via") or "") + ";", answer.raw
        assert f"rport={phone.local[1]}" in (answer.get("via") or ""), answer.raw
        probe = phone.next_request(timeout=QUALIFY_INTERVAL + 3.0)
        assert probe is not None, "the switch never qualified the phone at its public address"
        assert probe.startswith(f"OPTIONS sip:{user}@192.168.1.50:5060".encode()), probe[:200]
        phone.answer_request(probe)
        switch.expect_log("reachability", timeout=3, aor=f"sip:{user}@127.0.0.1", reachable=True)
        (reg,) = registrations(switch, user)
        assert (reg["source_host"], reg["source_port"], reg["transport"]) == (
            "127.0.0.5",
            phone.local[1],
            transport,
        )
        assert reg["contact"].startswith(f"sip:{user}@192.168.1.50:5060"), reg
        assert reg["reachable"] is True, reg
        _, gone = phone.register(user, f"pw-{user}", domain=switch.domain, expires=0)
        assert gone is not None and gone.status == 200


def test_qualify_keeps_a_live_phone_reachable_and_marks_a_killed_one_unreachable(
    switch: SoftswitchServer, phones: PhoneFactory
) -> None:
    frank, _grace = phones.many(
        [
            ("frank", {"server": switch, "password": "pw-frank"}),
            ("grace", {"server": switch, "password": "pw-grace", "transport": "tcp"}),
        ]
    )
    for name in ("frank", "grace"):
        switch.expect_log("reachability", timeout=5, aor=f"sip:{name}@127.0.0.1", reachable=True)
    frank.kill()
    killed_at = time.monotonic()
    lost = switch.expect_log(
        "reachability",
        timeout=QUALIFY_INTERVAL + QUALIFY_TIMEOUT + 2.0,
        aor="sip:frank@127.0.0.1",
        reachable=False,
    )
    assert lost["rtt_ms"] is None
    # The next probe goes out within an interval; no answer within qualify_timeout marks it unreachable.
    assert time.monotonic() - killed_at <= QUALIFY_INTERVAL + QUALIFY_TIMEOUT + 1.0
    view = agents_view(switch)
    (frank_reg,) = view["frank"]
    assert frank_reg["reachable"] is False, frank_reg
    # grace answered every probe meanwhile (at least one more interval has passed): still reachable.
    (grace_reg,) = view["grace"]
    assert grace_reg["reachable"] is True and grace_reg["rtt_ms"] is not None, grace_reg
    unreachable = [
        e
        for e in switch.log_events
        if e.get("event") == "reachability"
        and e.get("aor") == "sip:grace@127.0.0.1"
        and not e.get("reachable")
    ]
    assert unreachable == []


# -- sipp: 200 users -----------------------------------------------------------------------------------------

SIPP_USERS = {f"u{index:03d}": f"pw-u{index:03d}-x" for index in range(200)}


def test_sipp_registers_200_users_from_an_injection_file(tmp_path: Path, sipp_dir: Path) -> None:
    agents = [{"id": user, "password": password} for user, password in SIPP_USERS.items()]
    server = SoftswitchServer(
        tmp_path,
        agents,
        transports=("udp",),
        extra_config={"server": {"registrar": {"qualify_interval": 0}}},
        name="softswitch-sipp",
    )
    server.start()
    try:
        users = write_users_file(sipp_dir / "users.csv", SIPP_USERS, server.domain)
        result = run_sipp(
            "reg_auth",
            f"127.0.0.1:{server.udp_port}",
            inf=users,
            calls=len(SIPP_USERS),
            rate=200,
            limit=50,
            timeout=30,
            directory=sipp_dir,
        )
        result.assert_ok(successful=len(SIPP_USERS))
        data = server.cli_json("agents")
        by_user = {p["id"]: p["registrations"] for p in data["agents"]}
        assert set(by_user) == set(SIPP_USERS)
        missing = [user for user, regs in by_user.items() if len(regs) != 1]
        assert missing == [], f"users without exactly one binding: {missing[:10]}"
        rows = [regs[0] for regs in by_user.values()]
        assert {(r["transport"], r["user_agent"], r["source_host"]) for r in rows} == {
            ("udp", "sipp-reg_auth", "127.0.0.1")
        }
        assert all(3590 <= r["expires_in"] <= 3600 for r in rows)
    finally:
        server.stop()


# -- durability: clean stop, SIGKILL -------------------------------------------------------------------------


def test_bindings_survive_a_stop_and_a_sigkill_right_after_the_200(
    tmp_path: Path, phones: PhoneFactory
) -> None:
    server = SoftswitchServer(tmp_path, AGENTS[:3], extra_config=SHORT_TIMERS, name="softswitch-durable")
    server.start()
    try:
        alice, _bob = phones.many(
            [
                ("alice", {"server": server, "password": "pw-alice"}),
                ("bob", {"server": server, "password": "pw-bob", "transport": "tcp"}),
            ]
        )
        live = agents_view(server)
        assert len(live["alice"]) == 1 and len(live["bob"]) == 1, live

        # Clean stop: the CLI falls back to the database and shows the same bindings.
        assert server.stop() == 0
        stored_view = agents_view(server, source="database")
        for user in ("alice", "bob"):
            (stored,) = stored_view[user]
            (seen,) = live[user]
            for key in ("contact", "transport", "source_host", "source_port", "user_agent"):
                assert stored[key] == seen[key], (key, stored, seen)
            assert abs(stored["expires_at"] - seen["expires_at"]) < 0.01

        server.start()
        assert server.ready.get("bindings_restored") == 2, server.ready
        restored = agents_view(server)
        assert [(r["transport"], r["source_port"]) for r in restored["alice"] + restored["bob"]] == [
            (r["transport"], r["source_port"]) for r in live["alice"] + live["bob"]
        ]

        # SIGKILL the moment carol's phone has its 200: an acknowledged binding is a durable one.
        carol = phones(
            "carol",
            server=server,
            password="pw-carol",
            auto_answer=True,
            answer_delay=0.1,
            wait_registered=False,
        )
        granted = carol.wait_registered()
        server.kill()
        server.start()
        (reg,) = registrations(server, "carol")
        assert_binding_is(reg, carol, server, granted)

        # The restored binding is usable: alice calls carol's extension and carol answers.
        index = alice.call(server.user_uri(EXTENSION["carol"]))
        carol.expect("incoming_call", timeout=5)
        alice.expect("call_state", call=index, state="CONFIRMED", timeout=5)
        alice.hangup(call=index)
        alice.expect("call_state", call=index, state="DISCONNECTED")
    finally:
        server.stop()
