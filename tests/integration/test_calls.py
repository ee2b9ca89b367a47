"""Calls through the switch end to end, with real phones (pjsua2, one process each; baresip for interop).

Acceptance of the calls issue, the phone half: a caller reaches an agent by extension and each side hears
the other's tone and not its own (700 Hz caller, 1,100 Hz agent, checked by FFT on what each recorded);
hold and resume by re-INVITE with audio both ways afterwards (also a hold longer than the RTP timeout);
CANCEL while ringing (487, the agent's leg cancelled); decline and busy mapped to the caller; DTMF (RFC 4733
and SIP INFO) surfaced at the switch; an agent whose process is killed mid-call ends the call by RTP
timeout and the record says why; TCP and TLS legs; forking to an agent's two phones (the first answer
wins, the other gets CANCEL with "Call completed elsewhere"); early media (183 with SDP) reaching the
caller; the failure answers (ring timeout 480, agent offline 480, unknown number 404, a vanished phone
unreachable, bad credentials 401 then 403, Require: 100rel 420 with Unsupported); anonymous callers and
trunks (matched by source address) reaching public numbers only; `softswitch calls --json` during a call;
the call detail records after it; baresip <-> pjsua2 through the switch.

With raw SIP and RTP (`RawPhone`: a plain socket and an RTP/RTCP pair, both ends in the test's hand):
RTP and RTCP relayed both ways from the ports the switch advertised, latching onto a phone behind NAT, a
codec both legs share (G.722) passed through, UPDATE and a codec change by re-INVITE re-anchored on the
same relay ports, glare answered 491 whichever side asks second, one event per RFC 4733 digit although its
end packet comes three times.

Two switches serve the module: `switch` (default timers) and `short` (ring timeout 1.5 s, RTP timeout 2 s),
each with a pool of agents; every test takes fresh agents from the pool (so no stale registration from an
earlier test can be rung), and after every test the switch must be left with no live call (the leak
check in the `switch`/`short` fixtures). A trunk is matched by source 127.0.0.2/32: a phone bound to that
address is the carrier; everything from 127.0.0.1 is a phone.
"""

from __future__ import annotations

import itertools
import re
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Phone, PhoneFactory, SoftswitchServer, assert_hears
from tests.integration.harness.baresip import Baresip
from tests.integration.harness.calls import (
    RawPhone,
    body_of,
    cdr,
    cdr_legs,
    live_calls,
    make_sdp,
    media_of,
    rtcp_receiver_report,
    rtp_packet,
    sdp_offer,
    wait_no_calls,
)
from tests.integration.harness.rawsip import SipClient, SipResponse, parse_challenge

pytestmark = pytest.mark.integration

POOL = 80
TRUNK_SOURCE = "127.0.0.2"
QUEUE_NUMBER = "+37167009999"
QUEUE_SHORT = "7001"
SHORT_RING = 1.5
SHORT_RTP = 2


@dataclass(frozen=True, slots=True)
class Person:
    """An agent or supervisor in a test switch's config."""

    id: str
    password: str
    extension: str
    did: str

    @property
    def aor(self) -> str:
        return f"sip:{self.id}@127.0.0.1"


def _people(prefix: str, first_extension: int) -> list[Person]:
    return [
        Person(
            f"{prefix}{i:02d}",
            f"pw-{prefix}{i:02d}",
            str(first_extension + i),
            f"+371670{first_extension + i}",
        )
        for i in range(1, POOL + 1)
    ]


def _config(people: list[Person], supervisor: Person, **server: Any) -> dict[str, Any]:
    return {
        "server": {"security": {"auth_failures": 1000, "ban_time": 0}, **server},
        "supervisors": [
            {"id": supervisor.id, "password": supervisor.password, "extension": supervisor.extension}
        ],
        "queues": [{"name": "support", "numbers": [QUEUE_NUMBER, QUEUE_SHORT]}],
        "trunks": [
            {
                "name": "carrier",
                "match": {"source": f"{TRUNK_SOURCE}/32"},
                "dids": {p.did: p.extension for p in people},
            }
        ],
    }


class Pool:
    """Hands out people of one switch's config, each at most once per module."""

    def __init__(self, server: SoftswitchServer, people: list[Person], supervisor: Person) -> None:
        self.server = server
        self.supervisor = supervisor
        self._free: Iterator[Person] = iter(people)

    def take(self, count: int = 1) -> list[Person]:
        taken = list(itertools.islice(self._free, count))
        if len(taken) < count:
            raise RuntimeError(f"the agent pool of {self.server.name} is used up: raise POOL")
        return taken


def _start(tmp: Path, name: str, prefix: str, first: int, **server: Any) -> tuple[SoftswitchServer, Pool]:
    people = _people(prefix, first)
    supervisor = Person(f"{prefix}sup", f"pw-{prefix}sup", str(first + 900), "")
    agents = [{"id": p.id, "password": p.password, "extension": p.extension} for p in people]
    instance = SoftswitchServer(tmp, agents, name=name, extra_config=_config(people, supervisor, **server))
    instance.start()
    return instance, Pool(instance, people, supervisor)


@pytest.fixture(scope="module")
def _main(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    # MD5 only: baresip 1.0's libre gives up on a 401 as soon as any challenge in it is not MD5
    # ("Register: Function not implemented"), even when an MD5 one is offered too.
    server, pool = _start(
        tmp_path_factory.mktemp("calls"),
        "softswitch",
        "agent",
        2000,
        security={"auth_failures": 1000, "ban_time": 0, "digest_algorithms": ["MD5"]},
    )
    try:
        yield pool
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    server, pool = _start(
        tmp_path_factory.mktemp("calls-short"),
        "softswitch-short",
        "short",
        3000,
        ring_timeout=SHORT_RING,
        rtp_timeout=SHORT_RTP,
    )
    try:
        yield pool
    finally:
        server.stop()


def _leak_checked(pool: Pool, phones: PhoneFactory) -> Iterator[Pool]:
    before = {c["id"] for c in live_calls(pool.server)}
    yield pool
    phones.close_all()  # hang up whatever the test left up, then the switch must end those calls too
    left = [c for c in live_calls(pool.server) if c["id"] not in before]
    if left:
        wait_no_calls(pool.server, ids=[c["id"] for c in left], timeout=5.0)


@pytest.fixture
def switch(_main: Pool, phones: PhoneFactory) -> Iterator[Pool]:
    """The default switch (ring timeout 30 s, RTP timeout 30 s); no call may outlive the test."""
    yield from _leak_checked(_main, phones)


@pytest.fixture
def short(_short: Pool, phones: PhoneFactory) -> Iterator[Pool]:
    """The switch with short timers (ring 1.5 s, RTP 2 s); no call may outlive the test."""
    yield from _leak_checked(_short, phones)


# -- helpers -------------------------------------------------------------------------------------------------


def phone(phones: PhoneFactory, server: SoftswitchServer, person: Person, **options: Any) -> Phone:
    """A registered pjsua2 phone for `person`."""
    return phones(person.id, server=server, password=person.password, **options)


def talking_pair(
    phones: PhoneFactory, pool: Pool, tones: dict[int, Path], **agent_options: Any
) -> tuple[Person, Phone, Person, Phone]:
    """A caller playing 700 Hz and an agent playing 1,100 Hz that answers after 0.1 s, both registered."""
    caller, agent = pool.take(2)
    options = {"auto_answer": True, "answer_delay": 0.1, "play": tones[1100], **agent_options}
    caller_phone, agent_phone = phones.many(
        [
            (caller.id, {"server": pool.server, "password": caller.password, "play": tones[700]}),
            (agent.id, {"server": pool.server, "password": agent.password, **options}),
        ]
    )
    return caller, caller_phone, agent, agent_phone


def connect(caller: Phone, agent: Phone, uri: str) -> int:
    """Call `uri` from `caller`; wait until both phones have media; return the caller's call index."""
    index = caller.call(uri)
    caller.expect("call_state", call=index, state="CONFIRMED")
    caller.expect("media_active", call=index)
    agent.expect("media_active")
    return index


def record_both(tmp_path: Path, *pairs: tuple[Phone, str], seconds: float = 1.0) -> list[Path]:
    """Record what each phone hears for about `seconds`; return the WAV paths (complete on disk)."""
    for phone_, label in pairs:
        phone_.record(tmp_path / f"{label}.wav")
    # A bounded wait that also proves the call stays up meanwhile.
    pairs[0][0].expect_no("call_state", within=seconds, state="DISCONNECTED")
    return [Path(p.stop_record()["path"]) for p, _ in pairs]


def incoming(server: SoftswitchServer, called: str, timeout: float = 5.0) -> dict[str, Any]:
    """The switch's `call_incoming` log line for a call to `called`."""
    return server.expect_log("call_incoming", timeout=timeout, called=called)


def ended(server: SoftswitchServer, call_id: str, timeout: float = 10.0) -> dict[str, Any]:
    return server.expect_log("call_ended", timeout=timeout, call=call_id)


def sdp_port(message: str) -> int:
    match = re.search(r"^m=audio (\d+) ", message, re.MULTILINE)
    assert match, f"no m=audio line in:\n{message}"
    return int(match.group(1))


def sdp_host(message: str) -> str:
    match = re.search(r"^c=IN IP4 (\S+)", message, re.MULTILINE)
    assert match, f"no c= line in:\n{message}"
    return match.group(1)


def header(message: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*?)\r?$", message, re.MULTILINE | re.IGNORECASE)
    assert match, f"no {name} header in:\n{message}"
    return match.group(1).strip()


def received(phone_: Phone, first_line: str, timeout: float = 5.0) -> str:
    """The next SIP message received in a call whose first line starts with `first_line` (raw text)."""
    event = phone_.expect("tsx_rx", timeout=timeout, line=lambda line: line.startswith(first_line))
    return str(event["msg"])


def in_relay_range(server: SoftswitchServer, port: int) -> bool:
    low, high = server.rtp_ports
    return low <= port <= high


def raw_invite(
    client: SipClient,
    server: SoftswitchServer,
    number: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    password: str | None = None,
    username: str | None = None,
    timeout: float = 3.0,
) -> tuple[SipResponse | None, SipResponse | None]:
    """INVITE `number` at the switch from `client` with an offer (and digest if challenged and given)."""
    uri = f"sip:{number}@127.0.0.1:{server.udp_port}"
    user = username or "customer"
    extra = [("Contact", f"<{client.contact(user)}>"), ("Content-Type", "application/sdp")]
    return client.transact(
        "INVITE",
        uri,
        from_uri=f"sip:{user}@127.0.0.1",
        to_uri=uri,
        password=password,
        username=username,
        headers=[*extra, *(headers or [])],
        body=sdp_offer(client.local[1] + 2),
        timeout=timeout,
    )


# -- a call by extension: audio both ways, signalling re-originated, records ---------------------------------


def test_caller_and_agent_hear_each_other_through_our_relay_and_the_record_says_caller_hung_up(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = switch.server
    caller, alice, agent, bob = talking_pair(phones, switch, tones)
    index = alice.call(server.user_uri(agent.extension))
    invite = bob.expect("incoming_call")["invite"]
    alice.expect("call_state", call=index, state="CONFIRMED")
    alice.expect("media_active", call=index)
    bob.expect("media_active")
    call_id = incoming(server, agent.extension)["call"]

    # Two independent dialogs: the agent's INVITE is ours (Call-ID, From tag, Contact), and both phones
    # were given our relay's ports, not each other's.
    caller_call_id = alice.expect("call_state", call=index)["sip_call_id"]
    assert header(invite, "Call-ID") != caller_call_id
    assert f":{server.udp_port}" in header(invite, "Contact"), invite
    assert in_relay_range(server, sdp_port(invite)), (server.rtp_ports, invite)
    ok = received(alice, "SIP/2.0 200")
    assert in_relay_range(server, sdp_port(ok)), (server.rtp_ports, ok)
    assert sdp_host(ok) == sdp_host(invite) == "127.0.0.1"
    # The agent's 180 reached the caller.
    received(alice, "SIP/2.0 180")

    heard_by_caller, heard_by_agent = record_both(tmp_path, (alice, "caller"), (bob, "agent"))
    assert_hears(heard_by_caller, 1100, not_freq=700)
    assert_hears(heard_by_agent, 700, not_freq=1100)

    alice.hangup(call=index)
    bob.expect("call_state", state="DISCONNECTED")
    end = ended(server, call_id)
    assert (end["cause"], end["by"]) == ("bye", "caller"), end
    wait_no_calls(server, ids=[call_id])

    row = cdr(server, call_id)
    assert row["disposition"] == "answered", row
    assert (row["hangup_cause"], row["hangup_by"]) == ("bye", "caller"), row
    assert row["agent"] == agent.id and row["called"] == agent.extension, row
    assert row["caller_user"] == caller.id and row["codec"] == "PCMU", row
    assert row["started_at"] <= row["answered_at"] <= row["ended_at"], row
    legs = cdr_legs(server, call_id)
    assert [leg["leg"] for leg in legs] == ["a", "b"], legs
    for leg in legs:
        assert leg["status"] == 200 and leg["codec"] == "PCMU", leg
        # About 50 packets a second each way for a second or more; nothing lost on loopback.
        assert leg["rx_packets"] > 40 and leg["tx_packets"] > 40, leg
        assert leg["rx_lost"] == 0, leg
    assert legs[0]["sip_call_id"] == caller_call_id and legs[1]["sip_call_id"] == header(invite, "Call-ID")


def test_calls_json_shows_the_talking_call_and_the_record_says_agent_hung_up(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path]
) -> None:
    server = switch.server
    caller, alice, agent, bob = talking_pair(phones, switch, tones)
    connect(alice, bob, server.user_uri(agent.extension))
    call_id = incoming(server, agent.extension)["call"]

    shown = server.cli_json("calls")["calls"]
    (row,) = [c for c in shown if c["id"] == call_id]
    assert row["state"] == "talking" and row["codec"] == "PCMU", row
    assert row["caller"] == caller.id and row["called"] == agent.extension and row["agent"] == agent.id, row
    assert row["duration"] >= 0 and row["talk_time"] is not None, row
    table = server.cli("calls")
    assert table.returncode == 0 and call_id in table.stdout and "talking" in table.stdout, table

    bob.hangup()
    alice.expect("call_state", state="DISCONNECTED")
    end = ended(server, call_id)
    assert end["by"] == "callee", end
    row = cdr(server, call_id)
    assert (row["disposition"], row["hangup_cause"], row["hangup_by"]) == ("answered", "bye", "callee"), row
    assert all(c["id"] != call_id for c in server.cli_json("calls")["calls"])


def test_agents_and_supervisors_call_each_other_by_extension(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = switch.server
    supervisor = switch.supervisor
    (agent,) = switch.take(1)
    sam, ann = phones.many(
        [
            (supervisor.id, {"server": server, "password": supervisor.password, "play": tones[700]}),
            (
                agent.id,
                {"server": server, "password": agent.password, "play": tones[1100], "auto_answer": True},
            ),
        ]
    )
    connect(sam, ann, server.user_uri(agent.extension))
    heard_by_agent, heard_by_supervisor = record_both(tmp_path, (ann, "agent"), (sam, "sup"))
    assert_hears(heard_by_agent, 700, not_freq=1100)
    assert_hears(heard_by_supervisor, 1100, not_freq=700)
    sam.hangup()
    ann.expect("call_state", state="DISCONNECTED")

    sam.set_auto_answer(True)
    connect(ann, sam, server.user_uri(supervisor.extension))
    ann.hangup()
    sam.expect("call_state", state="DISCONNECTED")


# -- mid-call: hold, resume, DTMF ----------------------------------------------------------------------------


def test_hold_and_resume_by_reinvite_then_audio_flows_both_ways(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = switch.server
    _, alice, agent, bob = talking_pair(phones, switch, tones)
    connect(alice, bob, server.user_uri(agent.extension))
    bob.drain("tsx_rx")
    alice.hold()
    alice.expect("media_state", status="LOCAL_HOLD")
    bob.expect("media_state", status="REMOTE_HOLD")
    # The hold offer reached the agent re-anchored: sendonly from the caller became sendonly towards the
    # agent (direction honoured), with our address in it.
    reinvite = received(bob, "INVITE ")
    assert "a=sendonly" in reinvite and in_relay_range(server, sdp_port(reinvite)), reinvite
    alice.unhold()
    alice.expect("media_active")
    bob.expect("media_active")
    heard_by_caller, heard_by_agent = record_both(tmp_path, (alice, "caller"), (bob, "agent"))
    assert_hears(heard_by_agent, 700, not_freq=1100)
    assert_hears(heard_by_caller, 1100, not_freq=700)


def test_dtmf_rfc4733_and_sip_info_surface_at_the_switch(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path]
) -> None:
    server = switch.server
    _, alice, agent, bob = talking_pair(phones, switch, tones)
    connect(alice, bob, server.user_uri(agent.extension))
    call_id = incoming(server, agent.extension)["call"]
    alice.dtmf("42#")
    got = [server.expect_log("call_dtmf", timeout=5, call=call_id) for _ in range(3)]
    assert [(e["digit"], e["side"], e["method"]) for e in got] == [
        ("4", "a", "rfc4733"),
        ("2", "a", "rfc4733"),
        ("#", "a", "rfc4733"),
    ]
    # The events were relayed to the agent too (once each).
    assert [bob.expect("dtmf")["digit"] for _ in range(3)] == ["4", "2", "#"]
    bob.dtmf("7", method="info")
    event = server.expect_log("call_dtmf", timeout=5, call=call_id)
    assert (event["digit"], event["side"], event["method"]) == ("7", "b", "info"), event
    shown = [c for c in live_calls(server) if c["id"] == call_id]
    assert shown and shown[0]["dtmf"] == "42#7", shown


# -- the caller gives up, the agent refuses ------------------------------------------------------------------


def test_caller_cancels_while_agent_rings(switch: Pool, phones: PhoneFactory, tones: dict[int, Path]) -> None:
    server = switch.server
    _, alice, agent, bob = talking_pair(phones, switch, tones, auto_answer=False)
    index = alice.call(server.user_uri(agent.extension))
    bob.expect("incoming_call")
    alice.expect("call_state", call=index, state="EARLY")
    call_id = incoming(server, agent.extension)["call"]
    alice.hangup(call=index)
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == 487
    assert bob.expect("call_state", state="DISCONNECTED")["code"] == 487  # the agent's leg was cancelled
    end = ended(server, call_id)
    assert (end["cause"], end["by"]) == ("cancelled", "caller"), end
    row = cdr(server, call_id)
    assert (row["disposition"], row["answered_at"], row["status"]) == ("cancelled", None, 487), row
    legs = cdr_legs(server, call_id)
    assert [(leg["leg"], leg["status"]) for leg in legs] == [("a", 487), ("b", 487)], legs


@pytest.mark.parametrize(("code", "disposition"), [(603, "declined"), (486, "busy")])
def test_agent_declines_or_is_busy_and_the_caller_gets_that_answer(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], code: int, disposition: str
) -> None:
    server = switch.server
    _, alice, agent, _bob = talking_pair(phones, switch, tones, answer_code=code)
    index = alice.call(server.user_uri(agent.extension))
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == code
    call_id = incoming(server, agent.extension)["call"]
    row = cdr(server, call_id)
    assert (row["disposition"], row["status"], row["agent"]) == (disposition, code, None), row
    legs = cdr_legs(server, call_id)
    assert [(leg["leg"], leg["status"]) for leg in legs] == [("a", code), ("b", code)], legs


# -- transports ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("caller_transport", "agent_transport"), [("tcp", "tcp"), ("tls", "udp")])
def test_calls_over_tcp_and_tls_legs(
    switch: Pool,
    phones: PhoneFactory,
    tones: dict[int, Path],
    tmp_path: Path,
    caller_transport: str,
    agent_transport: str,
) -> None:
    server = switch.server
    assert server.ca_file is not None
    caller, agent = switch.take(2)
    tls = {"ca_file": server.ca_file, "verify_server": True}
    alice, bob = phones.many(
        [
            (
                caller.id,
                {
                    "server": server,
                    "password": caller.password,
                    "transport": caller_transport,
                    "play": tones[700],
                    **(tls if caller_transport == "tls" else {}),
                },
            ),
            (
                agent.id,
                {
                    "server": server,
                    "password": agent.password,
                    "transport": agent_transport,
                    "play": tones[1100],
                    "auto_answer": True,
                    **(tls if agent_transport == "tls" else {}),
                },
            ),
        ]
    )
    connect(alice, bob, server.user_uri(agent.extension, caller_transport))
    call_id = incoming(server, agent.extension)["call"]
    heard_by_caller, heard_by_agent = record_both(tmp_path, (alice, "caller"), (bob, "agent"))
    assert_hears(heard_by_caller, 1100, not_freq=700)
    assert_hears(heard_by_agent, 700, not_freq=1100)
    bob.hangup()
    alice.expect("call_state", state="DISCONNECTED")
    legs = cdr_legs(server, call_id)
    assert [(leg["leg"], leg["transport"]) for leg in legs] == [
        ("a", caller_transport),
        ("b", agent_transport),
    ], legs


# -- forking and early media ---------------------------------------------------------------------------------


def test_an_agent_with_two_phones_both_ring_first_answer_wins_other_gets_cancel(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = switch.server
    caller, agent = switch.take(2)
    desk_options = {"server": server, "password": agent.password, "id_uri": agent.aor, "username": agent.id}
    alice, desk, mobile = phones.many(
        [
            (caller.id, {"server": server, "password": caller.password, "play": tones[700]}),
            (f"{agent.id}-desk", {**desk_options, "play": tones[1000]}),
            (f"{agent.id}-mobile", {**desk_options, "play": tones[1100]}),
        ]
    )
    index = alice.call(server.user_uri(agent.extension))
    desk.expect("incoming_call")
    mobile.expect("incoming_call")
    mobile.answer()
    alice.expect("call_state", call=index, state="CONFIRMED")
    # The desk phone's INVITE was cancelled, saying why (RFC 3326 Reason).
    assert desk.expect("call_state", state="DISCONNECTED")["code"] == 487
    cancel = received(desk, "CANCEL ")
    assert "Call completed elsewhere" in header(cancel, "Reason"), cancel
    alice.expect("media_active", call=index)
    mobile.expect("media_active")
    (heard_by_caller,) = record_both(tmp_path, (alice, "caller"))
    assert_hears(heard_by_caller, 1100, not_freq=1000)
    call_id = incoming(server, agent.extension)["call"]
    alice.hangup()
    mobile.expect("call_state", state="DISCONNECTED")
    legs = cdr_legs(server, call_id)
    assert sorted(leg["status"] for leg in legs if leg["leg"] == "b") == [200, 487], legs


def test_early_media_from_the_agent_reaches_the_caller_before_the_answer(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = switch.server
    _, alice, agent, bob = talking_pair(phones, switch, tones, auto_answer=False, ring=False)
    index = alice.call(server.user_uri(agent.extension))
    bob.expect("incoming_call")
    bob.answer(183)  # 183 Session Progress with the agent's SDP: early media
    alice.expect("call_state", call=index, state="EARLY")
    alice.expect("media_active", call=index)
    progress = received(alice, "SIP/2.0 183")
    assert in_relay_range(server, sdp_port(progress)), progress
    (heard_early,) = record_both(tmp_path, (alice, "early"))
    assert_hears(heard_early, 1100, not_freq=700)
    assert not [e for e in alice.events if e.get("event") == "call_state" and e.get("state") == "CONFIRMED"]
    bob.answer(200)
    alice.expect("call_state", call=index, state="CONFIRMED")
    alice.hangup()
    bob.expect("call_state", state="DISCONNECTED")


# -- failures: no answer, offline, unknown, bad credentials, unsupported extensions -------------------------


def test_ring_timeout_gives_the_caller_480_and_cancels_the_agent(
    short: Pool, phones: PhoneFactory, tones: dict[int, Path]
) -> None:
    server = short.server
    _, alice, agent, bob = talking_pair(phones, short, tones, auto_answer=False)
    index = alice.call(server.user_uri(agent.extension))
    bob.expect("incoming_call")
    disconnected = alice.expect("call_state", call=index, state="DISCONNECTED", timeout=SHORT_RING + 3)
    assert disconnected["code"] == 480, disconnected
    assert bob.expect("call_state", state="DISCONNECTED")["code"] == 487
    call_id = incoming(server, agent.extension)["call"]
    row = cdr(server, call_id)
    assert (row["disposition"], row["status"]) == ("no_answer", 480), row
    assert SHORT_RING - 0.2 <= row["ended_at"] - row["started_at"] <= SHORT_RING + 1.5, row


def test_agent_offline_480_and_unknown_number_404(switch: Pool, phones: PhoneFactory) -> None:
    server = switch.server
    caller, offline = switch.take(2)
    alice = phone(phones, server, caller)
    index = alice.call(server.user_uri(offline.extension))
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == 480
    index = alice.call(server.user_uri("999999"))
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == 404
    offline_row = cdr(server, incoming(server, offline.extension)["call"])
    unknown_row = cdr(server, incoming(server, "999999")["call"])
    assert offline_row["disposition"] == "no_answer" and unknown_row["disposition"] == "failed"
    # The record keeps the answer the caller got.
    assert (offline_row["status"], unknown_row["status"]) == (480, 404), (offline_row, unknown_row)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_an_agent_whose_phone_vanished_is_unreachable_not_a_ring_timeout(
    switch: Pool, phones: PhoneFactory, transport: str
) -> None:
    """The agent is registered but its phone is gone (killed: a UDP port that answers nothing, a TCP
    connection closed). The caller hears 480 (or 408) soon - not after the 30 s ring timeout - and the
    record says unreachable."""
    server = switch.server
    caller, agent = switch.take(2)
    alice = phone(phones, server, caller)
    gone = phone(phones, server, agent, transport=transport)
    gone.kill()
    index = alice.call(server.user_uri(agent.extension))
    ended_ = alice.expect("call_state", call=index, state="DISCONNECTED", timeout=8.0)
    assert ended_["code"] in (408, 480), ended_
    row = cdr(server, incoming(server, agent.extension)["call"])
    assert (row["disposition"], row["hangup_cause"]) == ("no_answer", "unreachable"), row


def test_calls_to_an_extension_need_a_registered_users_credentials(
    switch: Pool, phones: PhoneFactory
) -> None:
    server = switch.server
    caller, offline = switch.take(2)
    with SipClient("127.0.0.1", server.udp_port) as client:
        first, second = raw_invite(client, server, offline.extension, username=caller.id, password="wrong")
    assert first is not None and first.status == 401, first
    challenge = parse_challenge(first.get("www-authenticate") or "")
    assert challenge["realm"] == server.domain and challenge["nonce"], first
    assert second is not None and second.status == 403, second
    # The right password gets through authentication to routing (the agent is offline: 480).
    with SipClient("127.0.0.1", server.udp_port) as client:
        first, second = raw_invite(
            client, server, offline.extension, username=caller.id, password=caller.password
        )
    assert first is not None and first.status == 401, first
    assert second is not None and second.status == 480, second
    # pjsua2 with a wrong password: challenged, retried, refused.
    mallory = phones(caller.id, server=server, password="not-the-password", register=False)
    index = mallory.call(server.user_uri(offline.extension))
    assert mallory.expect("call_state", call=index, state="DISCONNECTED")["code"] == 403


def test_require_100rel_is_refused_with_420_and_unsupported(switch: Pool) -> None:
    server = switch.server
    (agent,) = switch.take(1)
    with SipClient("127.0.0.1", server.udp_port) as client:
        first, _ = raw_invite(client, server, agent.did, headers=[("Require", "100rel")])
    assert first is not None and first.status == 420, first
    assert "100rel" in (first.get("unsupported") or ""), first.raw


# -- public numbers: anonymous callers and trunks ------------------------------------------------------------


def test_an_anonymous_caller_reaches_an_agent_by_did_and_a_queue_number_without_credentials(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = switch.server
    (agent,) = switch.take(1)
    customer, bob = phones.many(
        [
            ("customer", {"register": False, "play": tones[700]}),
            (
                agent.id,
                {"server": server, "password": agent.password, "play": tones[1100], "auto_answer": True},
            ),
        ]
    )
    connect(customer, bob, server.user_uri(agent.did))
    routed = incoming(server, agent.did)
    assert routed["route"] == f"user:{agent.id}", routed
    heard_by_customer, heard_by_agent = record_both(tmp_path, (customer, "customer"), (bob, "agent"))
    assert_hears(heard_by_customer, 1100, not_freq=700)
    assert_hears(heard_by_agent, 700, not_freq=1100)
    customer.hangup()
    bob.expect("call_state", state="DISCONNECTED")
    row = cdr(server, routed["call"])
    assert row["caller_user"] is None and row["trunk"] is None and row["agent"] == agent.id, row

    # A queue number is public too: routed to the queue without a challenge (the caller waits there).
    index = customer.call(server.user_uri(QUEUE_NUMBER))
    state = customer.expect("call_state", call=index, state=lambda s: s in ("CONFIRMED", "DISCONNECTED"))
    assert state["code"] not in (401, 403, 404, 407), state
    assert incoming(server, QUEUE_NUMBER)["route"] == "queue:support"
    if state["state"] == "CONFIRMED":
        customer.hangup(call=index)
        customer.expect("call_state", call=index, state="DISCONNECTED")
    # An extension is not public: the anonymous caller is challenged.
    index = customer.call(server.user_uri(agent.extension))
    assert customer.expect("call_state", call=index, state="DISCONNECTED")["code"] == 401


def test_a_trunk_reaches_an_agent_by_did_and_nothing_else(
    switch: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = switch.server
    (agent,) = switch.take(1)
    carrier, bob = phones.many(
        [
            ("carrier", {"register": False, "play": tones[700], "bind_address": TRUNK_SOURCE}),
            (
                agent.id,
                {"server": server, "password": agent.password, "play": tones[1100], "auto_answer": True},
            ),
        ]
    )
    connect(carrier, bob, server.user_uri(agent.did))
    routed = incoming(server, agent.did)
    (heard_by_agent,) = record_both(tmp_path, (bob, "agent"))
    assert_hears(heard_by_agent, 700, not_freq=1100)
    bob.hangup()
    carrier.expect("call_state", state="DISCONNECTED")
    row = cdr(server, routed["call"])
    assert row["trunk"] == "carrier" and row["agent"] == agent.id and row["hangup_by"] == "callee", row

    # From the trunk, only its DIDs: an extension or an unknown number is 404, with no challenge.
    for number in (agent.extension, "+10000000000"):
        with SipClient("127.0.0.1", server.udp_port, local_host=TRUNK_SOURCE) as client:
            first, _ = raw_invite(client, server, number)
        assert first is not None and first.status == 404, (number, first)


# -- timeouts: the vanished agent, hold longer than the RTP timeout ------------------------------------------


def test_agent_vanishes_mid_call_the_rtp_timeout_ends_it_and_the_record_says_why(
    short: Pool, phones: PhoneFactory, tones: dict[int, Path]
) -> None:
    server = short.server
    _, alice, agent, bob = talking_pair(phones, short, tones)
    index = connect(alice, bob, server.user_uri(agent.extension))
    call_id = incoming(server, agent.extension)["call"]
    bob.kill()
    timeout = server.expect_log("call_media_timeout", timeout=SHORT_RTP + 3, call=call_id)
    assert timeout["leg"] == "callee", timeout
    alice.expect("call_state", call=index, state="DISCONNECTED", timeout=5)
    end = ended(server, call_id)
    assert (end["cause"], end["by"]) == ("media_timeout", "callee"), end
    row = cdr(server, call_id)
    assert (row["disposition"], row["hangup_cause"], row["hangup_by"]) == (
        "answered",
        "media_timeout",
        "callee",
    ), row
    assert "RTP" in (row["detail"] or "") and "callee" in (row["detail"] or ""), row


def test_a_hold_longer_than_the_rtp_timeout_does_not_end_the_call(
    short: Pool, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    server = short.server
    _, alice, agent, bob = talking_pair(phones, short, tones)
    index = connect(alice, bob, server.user_uri(agent.extension))
    alice.hold()
    alice.expect("media_state", status="LOCAL_HOLD")
    bob.expect("media_state", status="REMOTE_HOLD")
    # The held side sends nothing (recvonly) for longer than the RTP timeout: that is hold, not a crash.
    alice.expect_no("call_state", within=SHORT_RTP + 1.5, state="DISCONNECTED", call=index)
    alice.unhold()
    alice.expect("media_active")
    bob.expect("media_active")
    (heard_by_caller,) = record_both(tmp_path, (alice, "caller"))
    assert_hears(heard_by_caller, 1100, not_freq=700)


# -- interop: baresip <-> pjsua2 ----------------------------------------------------------------------------


def test_baresip_caller_and_pjsua2_agent_hear_each_other(
    switch: Pool,
    phones: PhoneFactory,
    baresips: Callable[..., Baresip],
    tones: dict[int, Path],
    tmp_path: Path,
) -> None:
    server = switch.server
    caller, agent = switch.take(2)
    bob = phone(phones, server, agent, play=tones[1100], auto_answer=True)
    alice = baresips(caller.id, server=server, password=caller.password, source=700.0)
    alice.dial(server.user_uri(agent.extension))
    alice.expect("CALL_ESTABLISHED")
    bob.expect("media_active")
    (heard_by_agent,) = record_both(tmp_path, (bob, "agent"), seconds=1.5)
    assert_hears(heard_by_agent, 700, not_freq=1100)
    alice.hangup()
    alice.expect("CALL_CLOSED")
    bob.expect("call_state", state="DISCONNECTED")
    assert_hears(alice.recording("dec"), 1100, not_freq=700)


# -- raw SIP and RTP: relaying, latching, codecs, UPDATE, glare, RFC 4733 ------------------------------------


@dataclass
class RawCall:
    """A call from a trunk (raw phone at 127.0.0.2) to an agent (raw phone), both ends in the test's hand."""

    caller: RawPhone
    agent: RawPhone
    a_relay: tuple[str, int]  # where the caller sends RTP: the switch's answer
    b_relay: tuple[str, int]  # where the agent sends RTP: the switch's offer
    invite: bytes  # the INVITE the agent received
    answer: SipResponse  # the 200 the caller received
    call_id: str  # the switch's id of the call


@pytest.fixture
def raw_calls(switch: Pool) -> Iterator[Callable[..., RawCall]]:
    """Make calls between raw phones; each is hung up (BYE from the caller) and closed at the end."""
    made: list[RawCall] = []
    phones_: list[RawPhone] = []

    def make(
        *,
        caller_sdp: Callable[[RawPhone], bytes] | None = None,
        agent_sdp: Callable[[RawPhone], bytes] | None = None,
    ) -> RawCall:
        server = switch.server
        (person,) = switch.take(1)
        agent = RawPhone(server, person.id, password=person.password)
        caller = RawPhone(server, "carrier", local_host=TRUNK_SOURCE)
        phones_.extend([agent, caller])
        agent.register()
        cseq = caller.start_invite(person.did, caller_sdp(caller) if caller_sdp else None)
        invite = agent.next_request("INVITE")
        agent.accept(invite, agent_sdp(agent) if agent_sdp else None)
        answer = caller.finish_invite(cseq)
        assert answer.status == 200, answer.status_line
        agent.next_request("ACK")
        host_a, port_a, _, _ = media_of(answer.body)
        host_b, port_b, _, _ = media_of(body_of(invite))
        call = RawCall(
            caller,
            agent,
            (host_a, port_a),
            (host_b, port_b),
            invite,
            answer,
            incoming(server, person.did)["call"],
        )
        made.append(call)
        return call

    try:
        yield make
    finally:
        for call in made:
            try:
                _, cseq = call.caller.send_request("BYE")
                bye = call.agent.next_request("BYE", timeout=1.0)
                call.agent.respond(bye, 200)
                call.caller.final(cseq, timeout=1.0)
            except AssertionError:
                pass  # the test ended the call already
        for phone_ in phones_:
            phone_.close()


def relayed(
    sender: socket.socket, to: tuple[str, int], receiver: RawPhone, sock: socket.socket, data: bytes
) -> tuple[bytes, tuple[str, int]]:
    """Send `data` from `sender` to the relay at `to`; return what `receiver` got on `sock`, and whence."""
    sender.sendto(data, to)
    got = receiver.recv_media(sock, timeout=2.0)
    assert got is not None, f"nothing relayed to {receiver.user} ({len(data)} bytes sent to {to})"
    return got


def test_rtp_and_rtcp_are_relayed_both_ways_from_the_advertised_ports(
    raw_calls: Callable[..., RawCall],
) -> None:
    call = raw_calls()
    forward = rtp_packet(1, ssrc=0xA1A1A1A1, payload=b"\x11" * 160)
    data, source = relayed(call.caller.rtp, call.a_relay, call.agent, call.agent.rtp, forward)
    assert data[1] & 0x7F == 0 and data[12:] == forward[12:], "the PCMU payload was changed on the way"
    assert source == call.b_relay, (source, call.b_relay)  # symmetric: sent from the port in our offer
    back = rtp_packet(1, ssrc=0xB2B2B2B2, payload=b"\x22" * 160)
    data, source = relayed(call.agent.rtp, call.b_relay, call.caller, call.caller.rtp, back)
    assert data[12:] == back[12:] and source == call.a_relay, (source, call.a_relay)
    # RTCP on port + 1, both ways.
    report = rtcp_receiver_report(0xA1A1A1A1)
    a_rtcp, b_rtcp = (call.a_relay[0], call.a_relay[1] + 1), (call.b_relay[0], call.b_relay[1] + 1)
    data, source = relayed(call.caller.rtcp, a_rtcp, call.agent, call.agent.rtcp, report)
    assert data[1] == 201 and source == b_rtcp, (data[:8], source)
    data, source = relayed(
        call.agent.rtcp, b_rtcp, call.caller, call.caller.rtcp, rtcp_receiver_report(0xB2B2B2B2)
    )
    assert data[1] == 201 and source == a_rtcp, (data[:8], source)


def test_the_relay_latches_onto_where_a_phone_behind_nat_really_sends_from(
    raw_calls: Callable[..., RawCall],
) -> None:
    # The agent's SDP names a private address (its LAN side); its packets come from 127.0.0.1:<real port>.
    call = raw_calls(agent_sdp=lambda phone_: make_sdp(40000, host="192.168.1.10"))
    call.agent.rtp.sendto(rtp_packet(1, ssrc=0xC3C3C3C3), call.b_relay)
    call.caller.recv_media(call.caller.rtp, timeout=2.0)
    data, _ = relayed(
        call.caller.rtp, call.a_relay, call.agent, call.agent.rtp, rtp_packet(2, ssrc=0xD4D4D4D4)
    )
    assert data[12:] == b"\xff" * 160


def test_a_codec_both_legs_share_is_passed_through_untouched(
    raw_calls: Callable[..., RawCall], switch: Pool
) -> None:
    offer = ((9, "G722/8000"), (0, "PCMU/8000"), (101, "telephone-event/8000"))
    answer = ((9, "G722/8000"), (101, "telephone-event/8000"))
    call = raw_calls(
        caller_sdp=lambda phone_: make_sdp(phone_.rtp_port, codecs=offer),
        agent_sdp=lambda phone_: make_sdp(phone_.rtp_port, codecs=answer),
    )
    _, _, offered, _ = media_of(body_of(call.invite))
    assert offered[0] == 9 and 0 in offered, offered  # G.722 offered on to the agent, first
    _, _, answered, _ = media_of(call.answer.body)
    assert answered[0] == 9, answered
    packet = rtp_packet(1, pt=9, payload=b"\x5a" * 160)
    data, _ = relayed(call.caller.rtp, call.a_relay, call.agent, call.agent.rtp, packet)
    assert data[1] & 0x7F == 9 and data[12:] == packet[12:], "G.722 was not forwarded as it came"
    (shown,) = [c for c in live_calls(switch.server) if c["id"] == call.call_id]
    assert shown["codec"] == "G722", shown


def test_update_is_passed_through_re_anchored_and_the_relay_ports_stay(
    raw_calls: Callable[..., RawCall],
) -> None:
    call = raw_calls()
    _, cseq = call.caller.send_request("UPDATE", body=call.caller.sdp(direction="sendonly", version=2))
    update = call.agent.next_request("UPDATE")
    host, port, _, direction = media_of(body_of(update))
    assert (host, port, direction) == (*call.b_relay, "sendonly"), body_of(update)
    call.agent.respond(update, 200, body=call.agent.sdp(direction="recvonly", version=2))
    answer = call.caller.final(cseq)
    assert answer.status == 200, answer.status_line
    host, port, _, direction = media_of(answer.body)
    assert (host, port, direction) == (*call.a_relay, "recvonly"), answer.body
    # Media goes on over the same relay ports (the caller still sends while holding the agent).
    relayed(call.caller.rtp, call.a_relay, call.agent, call.agent.rtp, rtp_packet(5))


def test_a_codec_change_by_reinvite_reaches_the_other_side_and_media_follows(
    raw_calls: Callable[..., RawCall], switch: Pool
) -> None:
    call = raw_calls()
    pcma = ((8, "PCMA/8000"), (101, "telephone-event/8000"))
    _, cseq = call.caller.send_request("INVITE", body=call.caller.sdp(codecs=pcma, version=2))
    reinvite = call.agent.next_request("INVITE")
    host, port, payloads, _ = media_of(body_of(reinvite))
    assert (host, port) == call.b_relay and payloads[0] == 8 and 0 not in payloads, body_of(reinvite)
    call.agent.respond(reinvite, 200, body=call.agent.sdp(codecs=pcma, version=2))
    answer = call.caller.final(cseq)
    assert answer.status == 200 and media_of(answer.body)[2][0] == 8, answer.raw
    call.agent.next_request("ACK")
    data, _ = relayed(call.caller.rtp, call.a_relay, call.agent, call.agent.rtp, rtp_packet(9, pt=8))
    assert data[1] & 0x7F == 8
    (shown,) = [c for c in live_calls(switch.server) if c["id"] == call.call_id]
    assert shown["codec"] == "PCMA", shown


@pytest.mark.parametrize("first", ["caller", "agent"])
def test_glare_the_second_reinvite_gets_491_and_the_first_completes(
    raw_calls: Callable[..., RawCall], first: str
) -> None:
    """Both ends re-INVITE at once (RFC 3261 §14.2): the switch, with its own re-INVITE pending towards a
    leg, answers that leg's re-INVITE 491 Request Pending; the first offer goes through."""
    call = raw_calls()
    one, other = (call.caller, call.agent) if first == "caller" else (call.agent, call.caller)
    _, first_cseq = one.send_request("INVITE", body=one.sdp(direction="sendonly", version=2))
    forwarded = other.next_request("INVITE")  # the switch now has a re-INVITE pending towards `other`
    _, second_cseq = other.send_request("INVITE", body=other.sdp(direction="sendonly", version=3))
    refused = other.final(second_cseq)
    assert refused.status == 491, refused.status_line
    other.respond(forwarded, 200, body=other.sdp(direction="recvonly", version=3))
    answer = one.final(first_cseq)
    assert answer.status == 200 and media_of(answer.body)[3] == "recvonly", answer.raw


def _telephone_event(
    seq: int, timestamp: int, event: int, duration: int, *, end: bool, marker: bool
) -> bytes:
    """An RFC 4733 §2.3 telephone-event packet (PT 101): event, E bit, volume 10, duration."""
    payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 101, seq, timestamp, 0x0E0E0E0E)
    return header + payload


def test_an_rfc4733_digit_with_retransmitted_end_packets_is_one_event(
    raw_calls: Callable[..., RawCall], switch: Pool
) -> None:
    """RFC 4733 §2.5.1.4: the end of an event is sent three times; the switch reports the digit once."""
    call = raw_calls()
    server = switch.server
    timestamp = 160 * 1000
    packets = [
        _telephone_event(100, timestamp, 5, 160, end=False, marker=True),
        _telephone_event(101, timestamp, 5, 320, end=False, marker=False),
        _telephone_event(102, timestamp, 5, 480, end=False, marker=False),
        *(_telephone_event(103 + i, timestamp, 5, 640, end=True, marker=False) for i in range(3)),
    ]
    for packet in packets:
        relayed(call.caller.rtp, call.a_relay, call.agent, call.agent.rtp, packet)  # relayed as they came
    event = server.expect_log("call_dtmf", timeout=3, call=call.call_id)
    assert (event["digit"], event["side"], event["method"]) == ("5", "a", "rfc4733"), event
    with pytest.raises(AssertionError):
        server.expect_log("call_dtmf", timeout=0.5, call=call.call_id)
