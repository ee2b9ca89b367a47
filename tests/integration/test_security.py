"""Security at the SIP edge of a real `softswitch serve`: enumeration, brute force, method and domain policy.

Acceptance of the foundation issue (security half):
* a wrong password and an unknown user are indistinguishable on the wire — the same status lines byte for
  byte, the same WWW-Authenticate shape (only nonce and opaque values may differ), the same headers and
  final answer — for REGISTER and for INVITE, over UDP and TCP; sipvicious `svwar` finds no user;
* repeated failures from one address are throttled (403 without checking the password), then banned
  (silence on every transport) for `security.ban_time`, logged with the address; `svcrack` is banned long
  before it reaches the right password in its dictionary;
* OPTIONS gets 200 with Allow/Accept/Supported; SUBSCRIBE/PUBLISH get 405 with Allow; a request for a
  domain we do not serve gets 403.

Every raw-SIP test sends from its own loopback address (127.0.0.N), so the failures it causes and the ban
it provokes stay its own while one switch serves the module. sipvicious cannot choose its source address
(`svwar`/`svcrack` 0.3.3 ignore `-b`), so the brute-force run gets a switch of its own.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ManagedProcess, PhoneFactory, SoftswitchServer
from tests.integration.harness.rawsip import SipClient, SipResponse

pytestmark = pytest.mark.integration

AGENTS = [
    {"id": "alice", "password": "pw-alice", "extension": "1001"},
    {"id": "bob", "password": "pw-bob", "extension": "1002"},
]
AUTH_FAILURES = 8  # the switch throttles after 5 (guard.py's throttle_after) and bans at this many
THROTTLE_AFTER = 5
BAN_TIME = 2.0
SECURITY = {"server": {"security": {"auth_failures": AUTH_FAILURES, "auth_window": 30, "ban_time": BAN_TIME}}}
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

_sources = (f"127.0.0.{n}" for n in itertools.count(20))


def next_source() -> str:
    """A loopback address no other test of this module sends from."""
    return next(_sources)


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftswitchServer]:
    server = SoftswitchServer(
        tmp_path_factory.mktemp("security"), AGENTS, transports=("udp", "tcp"), extra_config=SECURITY
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def port(server: SoftswitchServer, transport: str) -> int:
    return server.port_for(transport)


# -- no username enumeration ---------------------------------------------------------------------------------

_VOLATILE_PARAMS = re.compile(r'\b(nonce|opaque)="[^"]*"')


def shape(response: SipResponse) -> list[tuple[str, str]]:
    """The response with what may legitimately differ between two requests masked out: our own Via
    branch/port, the user in From/To, tags, Call-ID, CSeq number, the Date, nonce and opaque values."""
    out = []
    for name, value in response.headers:
        key = name.lower()
        if key in ("via", "v"):
            value = re.sub(r"branch=[^;]*", "branch=*", value)
            value = re.sub(r"(rport=|:)\d+", r"\1*", value)
        elif key in ("from", "f", "to", "t"):
            value = re.sub(r"sip:[^@>]*@", "sip:*@", value)
            value = re.sub(r"tag=[^;]*", "tag=*", value)
        elif key in ("call-id", "i", "date"):
            value = "*"
        elif key == "cseq":
            value = re.sub(r"^\d+", "*", value)
        elif key == "www-authenticate":
            value = _VOLATILE_PARAMS.sub(r'\1="*"', value)
        out.append((name, value))
    return out


def assert_indistinguishable(known: SipResponse | None, unknown: SipResponse | None) -> None:
    assert known is not None and unknown is not None, (known, unknown)
    assert known.status_line == unknown.status_line, (known.raw, unknown.raw)
    assert shape(known) == shape(unknown), (known.raw, unknown.raw)
    assert known.body == unknown.body


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_wrong_password_and_unknown_user_get_the_same_register_answers(
    switch: SoftswitchServer, transport: str
) -> None:
    with SipClient("127.0.0.1", port(switch, transport), transport=transport, local_host=next_source()) as c:
        known = c.register("alice", "not-her-password", domain=switch.domain)
        unknown = c.register("mallory", "whatever", domain=switch.domain)
    for (k, u), step in zip((known, unknown), ("challenge", "answer"), strict=True):
        assert k is not None and u is not None, step
    assert known[0] is not None and known[0].status == 401
    assert len(known[0].get_all("www-authenticate")) >= 1
    assert known[1] is not None and known[1].status == 403
    assert_indistinguishable(known[0], unknown[0])
    assert_indistinguishable(known[1], unknown[1])


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_wrong_password_and_unknown_user_get_the_same_invite_answers(
    switch: SoftswitchServer, transport: str
) -> None:
    source = next_source()
    with SipClient("127.0.0.1", port(switch, transport), transport=transport, local_host=source) as c:
        answers = []
        for user, password in (("alice", "not-her-password"), ("mallory", "whatever")):
            answers.append(
                c.transact(
                    "INVITE",
                    f"sip:1002@{switch.domain}",
                    from_uri=f"sip:{user}@{switch.domain}",
                    password=password,
                    headers=[("Contact", f"<{c.contact(user)}>"), ("Content-Type", "application/sdp")],
                    body=SDP,
                )
            )
    (known_first, known_final), (unknown_first, unknown_final) = answers
    assert known_first is not None and known_first.status in (401, 407), known_first
    assert known_final is not None and known_final.status == 403, known_final
    assert_indistinguishable(known_first, unknown_first)
    assert_indistinguishable(known_final, unknown_final)


def test_a_phone_with_a_wrong_password_is_refused(switch: SoftswitchServer, phones: PhoneFactory) -> None:
    mallory = phones("alice", server=switch, password="guessed", wait_registered=False)
    refused = mallory.expect("reg_state", code=403)
    assert not refused["active"]
    failure = switch.expect_log("auth_failed", username="alice", source="127.0.0.1")
    assert failure["outcome"] == "bad_response"


# -- brute force: throttle, ban, ban end ---------------------------------------------------------------------


def test_repeated_failures_are_throttled_then_banned_for_ban_time(switch: SoftswitchServer) -> None:
    attacker = next_source()
    udp = SipClient("127.0.0.1", switch.udp_port, local_host=attacker, timeout=1.0)
    tcp = SipClient("127.0.0.1", switch.tcp_port, transport="tcp", local_host=attacker, timeout=1.0)
    try:
        for _ in range(THROTTLE_AFTER):
            _, answer = udp.register("alice", "wrong", domain=switch.domain)
            assert answer is not None and answer.status == 403
        # Throttled: even the right password is refused now, without being checked.
        _, answer = udp.register("alice", "pw-alice", domain=switch.domain)
        assert answer is not None and answer.status == 403, answer
        switch.expect_log("auth_failed", source=attacker, outcome="throttled")
        for _ in range(AUTH_FAILURES - THROTTLE_AFTER - 1):
            udp.register("alice", "wrong", domain=switch.domain)
        banned = switch.expect_log("banned", source=attacker)
        banned_at = time.monotonic()
        assert abs(banned["seconds"] - BAN_TIME) < 0.5, banned

        # Banned: silence on UDP and on the TCP connection, while everyone else is still answered.
        assert udp.options(f"sip:{switch.domain}", timeout=0.3) is None
        assert tcp.options(f"sip:{switch.domain}", timeout=0.3) is None
        with SipClient("127.0.0.1", switch.udp_port, local_host=next_source()) as bystander:
            answer = bystander.options(f"sip:{switch.domain}")
            assert answer is not None and answer.status == 200

        # The ban ends after ban_time, and then the right password works again.
        deadline = banned_at + BAN_TIME + 3.0
        while (answer := udp.options(f"sip:{switch.domain}", timeout=0.2)) is None:
            assert time.monotonic() < deadline, "the ban did not end"
        assert answer.status == 200
        assert time.monotonic() - banned_at >= BAN_TIME - 0.3
        _, answer = udp.register("alice", "pw-alice", domain=switch.domain, expires=0)
        assert answer is not None and answer.status == 200, answer
    finally:
        udp.close()
        tcp.close()


def test_a_banned_source_loses_its_tcp_connection(switch: SoftswitchServer) -> None:
    attacker = next_source()
    with SipClient("127.0.0.1", switch.tcp_port, transport="tcp", local_host=attacker, timeout=1.0) as tcp:
        for _ in range(AUTH_FAILURES):
            tcp.register("alice", "wrong", domain=switch.domain)
        switch.expect_log("banned", source=attacker)
        assert tcp.options(f"sip:{switch.domain}", timeout=0.3) is None
        assert tcp.read_raw(1.0) == b"" and tcp.closed_by_peer, "the banned source's connection is still open"


# -- method and domain policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_gets_200_with_allow_accept_supported(switch: SoftswitchServer, transport: str) -> None:
    with SipClient("127.0.0.1", port(switch, transport), transport=transport, local_host=next_source()) as c:
        answer = c.options(f"sip:{switch.domain}")
    assert answer is not None and answer.status == 200
    allow = {m.strip() for m in (answer.get("allow") or "").split(",")}
    assert {"REGISTER", "OPTIONS", "INVITE", "ACK", "BYE", "CANCEL"} <= allow, answer.raw
    assert "application/sdp" in (answer.get("accept") or ""), answer.raw
    assert answer.get("supported") is not None, answer.raw


@pytest.mark.parametrize("method", ["SUBSCRIBE", "PUBLISH"])
def test_an_unsupported_method_gets_405_with_allow(switch: SoftswitchServer, method: str) -> None:
    with SipClient("127.0.0.1", switch.udp_port, local_host=next_source()) as c:
        uri = f"sip:alice@{switch.domain}"
        data, call_id, cseq = c.request(
            method, uri, from_uri=f"sip:bob@{switch.domain}", to_uri=uri, headers=[("Event", "presence")]
        )
        answer = c.ask(data, call_id, cseq)
    assert answer is not None and answer.status == 405, answer
    allow = {m.strip() for m in (answer.get("allow") or "").split(",")}
    assert "REGISTER" in allow and method not in allow, answer.raw


@pytest.mark.parametrize("method", ["REGISTER", "OPTIONS", "INVITE"])
def test_a_request_for_a_domain_we_do_not_serve_is_refused(switch: SoftswitchServer, method: str) -> None:
    with SipClient("127.0.0.1", switch.udp_port, local_host=next_source()) as c:
        if method == "REGISTER":
            answer, _ = c.register("alice", "pw-alice", domain="example.org")
        elif method == "OPTIONS":
            answer = c.options("sip:example.org")
        else:
            answer, _ = c.transact(
                "INVITE",
                "sip:1001@example.org",
                from_uri="sip:bob@example.org",
                password="pw-bob",
                headers=[("Contact", f"<{c.contact('bob')}>"), ("Content-Type", "application/sdp")],
                body=SDP,
            )
    assert answer is not None and answer.status == 403, answer


# -- sipvicious ----------------------------------------------------------------------------------------------


def sipvicious(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"sipvicious is not installed ({tool}; apt-get install sipvicious)")
    return path


def test_svwar_cannot_tell_real_users_from_made_up_ones(switch: SoftswitchServer, tmp_path: Path) -> None:
    svwar = sipvicious("svwar")
    names = ["alice", "1001", "bob", "1002", "nosuchuser", "9999"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    result = subprocess.run(
        [
            svwar,
            "--force",
            "-m",
            "REGISTER",
            "-d",
            str(tmp_path / "names.txt"),
            "--maximumtime",
            "1",
            "-P",
            "0",
            f"udp://127.0.0.1:{switch.udp_port}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    # svwar compares each answer with the one a random user got; if any real user were answered
    # differently it would list it as "reqauth"/"noauth"/"weird".
    assert "Ok SIP device found" in output or "svwar will probably not work" in output, output
    assert not re.search(r"\b(reqauth|noauth|weird)\b", output), output
    assert "found nothing" in output, output


def test_svcrack_is_banned_before_it_reaches_the_password(tmp_path: Path) -> None:
    svcrack = sipvicious("svcrack")
    server = SoftswitchServer(
        tmp_path,
        AGENTS,
        transports=("udp",),
        extra_config={"server": {"security": {"auth_failures": AUTH_FAILURES, "ban_time": 60}}},
        name="softswitch-svcrack",
    )
    server.start()
    guesses = [f"guess{n}" for n in range(3 * AUTH_FAILURES)] + ["pw-alice"]
    (tmp_path / "passwords.txt").write_text("\n".join(guesses) + "\n")
    argv = [
        svcrack,
        "-v",
        "-u",
        "alice",
        "-d",
        str(tmp_path / "passwords.txt"),
        "--maximumtime",
        "1",
        "-P",
        "0",
    ]
    cracker = ManagedProcess("svcrack", [*argv, f"udp://127.0.0.1:{server.udp_port}"], log_dir=tmp_path)
    try:
        cracker.start()
        banned = server.expect_log("banned", source="127.0.0.1", timeout=10)
        assert banned["seconds"] > 50
        # svcrack hears nothing more and gives up (after `--maximumtime`; it then lingers for its fixed
        # 10 s socket timeout, so it is stopped here rather than waited for).
        cracker.wait_for_line(lambda _stream, line: "since we last received a response" in line, 10)
        cracker.stop(2.0)
        output = cracker.log_tail(400)
        assert "The password for" not in output and "pw-alice" not in output, output
        failures = [e for e in server.log_events if e.get("event") == "auth_failed"]
        assert len(failures) == AUTH_FAILURES, [e.get("outcome") for e in failures]
        assert {e["outcome"] for e in failures} == {"bad_response", "throttled"}
        with SipClient("127.0.0.1", server.udp_port) as banned_source:
            assert banned_source.options(f"sip:{server.domain}", timeout=0.3) is None
        with SipClient("127.0.0.1", server.udp_port, local_host="127.0.0.2") as other:
            answer = other.options(f"sip:{server.domain}")
            assert answer is not None and answer.status == 200
    finally:
        cracker.stop(1.0)
        server.stop()
