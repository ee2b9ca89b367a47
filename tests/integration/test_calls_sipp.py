"""Calls through the switch driven by sipp: a sipp caller (a trunk) -> our switch -> a sipp agent.

Acceptance of the calls issue, the sipp half: plain calls; a caller whose ACK is late (the switch
retransmits its 200 and keeps the call); a callee whose 200 is retransmitted after the ACK (the switch ACKs
every copy, RFC 3261 §13.2.2.4 - a Python phone, because sipp takes the second identical ACK for a
retransmission of the first and replays its own 200 forever); a caller that never ACKs (the switch gives
up after 64*T1 and hangs both legs up, §13.3.1.4); CANCEL racing the callee's 200 (every way the race can go
ends cleanly); INVITE retransmissions absorbed (one call, not two); busy and declined callees mapped to the
caller; a record-routing proxy on either side stays in the path of that leg's in-dialog requests; a call
that finds every RTP port taken is refused at once with 503. After every test the switch must have no call
and no leg left (`/api/calls` empty, `/api/status` calls 0).

The caller side is a trunk matched by source 127.0.0.1/32 dialling DIDs, so no digest is involved (that is
test_calls.py's business). Each test registers a fresh agent's contact at the port its sipp UAS then
listens on (`register_contact`). Qualify is off: sipp would count the switch's OPTIONS as failed calls.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import SoftswitchServer
from tests.integration.harness.calls import (
    RawPhone,
    cdr,
    cdr_legs,
    header_of,
    live_calls,
    register_contact,
    wait_for,
    wait_no_calls,
)
from tests.integration.harness.ports import free_port
from tests.integration.harness.rawsip import SipClient
from tests.integration.harness.sipp import SippResult, SippRun, run_sipp, start_sipp

pytestmark = pytest.mark.integration

POOL = 30
TRUNK = "carrier"
# sipp's own defaults abort a call on any message it does not expect at that instant; in the races below a
# message can land in the instant between two of sipp's own sends. Ignored, its retransmission is met.
TOLERANT = ["-default_behaviors", "all,-abortunexp"]


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    password: str
    extension: str
    did: str


def _agents(first: int) -> list[Agent]:
    return [
        Agent(f"sipp{i:02d}", f"pw-sipp{i:02d}", str(first + i), f"+3716800{first + i}") for i in range(POOL)
    ]


def _switch(
    tmp: Path, name: str, agents: list[Agent], *, rtp_range_size: int = 2000, **server: Any
) -> SoftswitchServer:
    config = {
        "server": {
            "security": {"auth_failures": 100_000, "ban_time": 0},
            "registrar": {"qualify_interval": 0},
            **server,
        },
        "trunks": [
            {"name": TRUNK, "match": {"source": "127.0.0.1/32"}, "dids": {a.did: a.extension for a in agents}}
        ],
    }
    entries = [{"id": a.id, "password": a.password, "extension": a.extension} for a in agents]
    # A call holds two RTP port pairs, and a pair stays in quarantine for 10 s after the call: the races
    # below make dozens of calls in a few seconds.
    return SoftswitchServer(
        tmp,
        entries,
        name=name,
        transports=("udp", "tcp"),
        extra_config=config,
        rtp_range_size=rtp_range_size,
    ).start()


class Pool:
    def __init__(self, server: SoftswitchServer, agents: list[Agent]) -> None:
        self.server = server
        self._free = iter(agents)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.udp_port}"

    def take(self) -> Agent:
        agent = next(self._free, None)
        if agent is None:
            raise RuntimeError(f"the agent pool of {self.server.name} is used up: raise POOL")
        return agent


@pytest.fixture(scope="module")
def _main(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    agents = _agents(4000)
    server = _switch(tmp_path_factory.mktemp("calls-sipp"), "softswitch", agents)
    try:
        yield Pool(server, agents)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    # T1 = 50 ms: 64*T1 (how long a 2xx waits for its ACK) is 3.2 s instead of 32 s.
    agents = _agents(5000)
    server = _switch(
        tmp_path_factory.mktemp("calls-sipp-fast"), "softswitch-fast", agents, timers={"t1": 0.05, "t2": 0.4}
    )
    try:
        yield Pool(server, agents)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    # Six RTP ports: two or three even/odd pairs, so one call (two legs) at a time.
    agents = _agents(6000)
    server = _switch(tmp_path_factory.mktemp("calls-sipp-tiny"), "softswitch-tiny", agents, rtp_range_size=6)
    try:
        yield Pool(server, agents)
    finally:
        server.stop()


def _no_leaks(pool: Pool) -> Iterator[Pool]:
    before = {c["id"] for c in live_calls(pool.server)}  # a failed test may leave a call: not ours to judge
    yield pool
    assert_no_calls(pool.server, ignore=before)


@pytest.fixture
def switch(_main: Pool, sipp_dir: Path) -> Iterator[Pool]:
    """The switch with RFC 3261 timers; it must end every call of the test."""
    yield from _no_leaks(_main)


@pytest.fixture
def fast(_fast: Pool, sipp_dir: Path) -> Iterator[Pool]:
    """The switch with T1 = 50 ms; it must end every call of the test."""
    yield from _no_leaks(_fast)


@pytest.fixture
def tiny(_tiny: Pool) -> Iterator[Pool]:
    """The switch with room for one call's media; it must end every call of the test."""
    yield from _no_leaks(_tiny)


# -- helpers -------------------------------------------------------------------------------------------------


def assert_no_calls(server: SoftswitchServer, timeout: float = 5.0, ignore: set[str] | None = None) -> None:
    """No live call (`softswitch calls`) and no call state in the B2BUA (`/api/status` calls) beyond the
    calls in `ignore` (left by an earlier, failed test)."""
    left = [c["id"] for c in live_calls(server) if c["id"] not in (ignore or set())]
    wait_no_calls(server, ids=left, timeout=timeout)
    limit = len(ignore or ())
    wait_for(
        server, lambda: server.api("/api/status")["calls"] <= limit, timeout, "the B2BUA to hold no new call"
    )


def sipp_agent(
    pool: Pool, sipp_dir: Path, scenario: str, calls: int, *, extra: list[str] | None = None
) -> tuple[Agent, SippRun]:
    """A fresh agent whose registered contact is a sipp UAS running `scenario` for `calls` calls."""
    agent = pool.take()
    port = free_port("udp+tcp")
    register_contact(pool.server, agent.id, agent.password, port)
    uas = start_sipp(
        scenario, None, directory=sipp_dir, calls=calls, local_port=port, timeout=30, extra_args=extra or []
    )
    uas.wait_listening()
    return agent, uas


def call_ids(server: SoftswitchServer, did: str, count: int, timeout: float = 10.0) -> list[str]:
    """The switch's ids of `count` calls to `did`, from its `call_incoming` log lines."""
    return [server.expect_log("call_incoming", timeout=timeout, called=did)["call"] for _ in range(count)]


def traced(result: SippResult) -> str:
    """The -trace_msg log of a sipp run."""
    assert result.directory is not None
    logs = sorted(result.directory.glob("*_messages.log"))
    assert logs, f"no -trace_msg log in {result.directory}"
    return "\n".join(path.read_text(errors="replace") for path in logs)


def messages(trace: str) -> list[str]:
    """The SIP messages in a sipp -trace_msg log, as text (sent and received)."""
    return [
        block.split("\n", 2)[2].strip()
        for block in trace.split("-----------------------------------------------")
        if block.count("\n") >= 2 and ("message" in block.split("\n", 2)[1])
    ]


def first_line(message: str) -> str:
    return message.split("\n", 1)[0].strip()


def cseq(message: str) -> str:
    match = re.search(r"^CSeq:\s*(.*?)\s*$", message, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else ""


# -- plain calls ---------------------------------------------------------------------------------------------


def test_sipp_calls_through_the_switch_to_a_registered_sipp_agent(switch: Pool, sipp_dir: Path) -> None:
    server = switch.server
    agent, uas = sipp_agent(switch, sipp_dir, "uas_answer", 5)
    uac = run_sipp(
        "uac_basic",
        switch.target,
        directory=sipp_dir,
        service=agent.did,
        calls=5,
        rate=20,
        extra_args=["-d", "200"],
    )
    uac.assert_ok(successful=5)
    uas.wait(10).assert_ok(successful=5)
    for call_id in call_ids(server, agent.did, 5):
        end = server.expect_log("call_ended", timeout=5, call=call_id)
        assert (end["cause"], end["by"]) == ("bye", "caller"), end
        row = cdr(server, call_id)
        assert (row["disposition"], row["trunk"], row["agent"], row["called"]) == (
            "answered",
            TRUNK,
            agent.id,
            agent.did,
        ), row
        assert [leg["status"] for leg in cdr_legs(server, call_id)] == [200, 200]


# -- lost and late ACKs --------------------------------------------------------------------------------------


def test_a_late_ack_gets_the_200_retransmitted_and_the_call_kept(switch: Pool, sipp_dir: Path) -> None:
    server = switch.server
    agent, uas = sipp_agent(switch, sipp_dir, "uas_answer", 2)
    uac = run_sipp(
        "uac_ack_delayed",
        switch.target,
        directory=sipp_dir,
        service=agent.did,
        calls=2,
        rate=10,
        extra_args=["-d", "200", "-trace_msg"],
    )
    uac.assert_ok(successful=2)
    uas.wait(10).assert_ok(successful=2)
    oks = [m for m in messages(traced(uac)) if first_line(m) == "SIP/2.0 200 OK" and cseq(m) == "1 INVITE"]
    # Each call's 200 came at least twice: sent, then retransmitted T1 later while the ACK was "lost".
    assert len(oks) >= 4, [first_line(m) for m in messages(traced(uac))]
    for call_id in call_ids(server, agent.did, 2):
        assert cdr(server, call_id)["hangup_cause"] == "bye"


def test_the_switch_acks_every_copy_of_the_agents_200(switch: Pool, sipp_dir: Path) -> None:
    server = switch.server
    person = switch.take()
    agent = RawPhone(server, person.id, password=person.password)
    try:
        agent.register()
        uac = start_sipp(
            "uac_basic",
            switch.target,
            directory=sipp_dir,
            service=person.did,
            calls=1,
            extra_args=["-d", "1500"],
        )
        ok = agent.accept(agent.next_request("INVITE"))
        first_ack = agent.next_request("ACK")
        agent.sip.send(ok)  # as if the ACK had been lost: the same 200 again
        second_ack = agent.next_request("ACK", timeout=2.0)
        assert second_ack.split(b"\r\n")[0] == first_ack.split(b"\r\n")[0]
        agent.respond(agent.next_request("BYE", timeout=5.0), 200)
        uac.wait().assert_ok(successful=1)
    finally:
        agent.close()
    (call_id,) = call_ids(server, person.did, 1)
    row = cdr(server, call_id)
    assert (row["disposition"], row["hangup_cause"], row["hangup_by"]) == ("answered", "bye", "caller"), row


def _first_of(method: str, timeout: float, **sockets: SipClient) -> tuple[str, bytes]:
    """(name, message) of the first `method` request arriving on any of `sockets` (OPTIONS answered)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([c.sock for c in sockets.values()], [], [], remaining)
        for name, client in sockets.items():
            if client.sock in ready:
                message = client.next_request(0.01)
                if message is None:
                    continue
                if message.startswith(b"OPTIONS "):
                    client.answer_request(message)
                elif message.startswith(method.encode() + b" "):
                    return name, message
    raise AssertionError(f"no {method} arrived at any of {list(sockets)} within {timeout} s")


def _route_of(request: bytes) -> str:
    return header_of(request, "route") or ""


def test_the_agents_record_route_is_honoured_on_its_leg(switch: Pool) -> None:
    """The agent sits behind a record-routing proxy: ACK and BYE go to the proxy with a Route header
    (RFC 3261 §12.1.2, §12.2.1.1, §8.1.2: a request goes to its first Route URI, a loose router)."""
    server = switch.server
    person = switch.take()
    agent = RawPhone(server, person.id, password=person.password)
    caller = RawPhone(server, "carrier")
    proxy = SipClient("127.0.0.1", server.udp_port)
    ended = False
    try:
        agent.register()
        route = f"<sip:127.0.0.1:{proxy.local[1]};lr>"
        cseq = caller.start_invite(person.did)
        agent.accept(agent.next_request("INVITE"), headers=[f"Record-Route: {route}"])
        assert caller.finish_invite(cseq).status == 200
        where, ack = _first_of("ACK", 3.0, proxy=proxy, phone=agent.sip)
        assert where == "proxy", f"the ACK went to the phone, not to its Record-Route hop:\n{ack.decode()}"
        caller.send_request("BYE")
        where, bye = _first_of("BYE", 3.0, proxy=proxy, phone=agent.sip)
        assert where == "proxy", f"the BYE went to the phone, not to its Record-Route hop:\n{bye.decode()}"
        for request in (ack, bye):
            assert request.split(b" ")[1].decode() == agent.contact, request
            assert _route_of(request) == route, request
        agent.respond(bye, 200)
        ended = True
    finally:
        if not ended:
            _hang_up_quietly(caller, agent)
        for phone in (agent, caller):
            phone.close()
        proxy.close()


def _hang_up_quietly(by: RawPhone, other: RawPhone) -> None:
    """End a call a failed test left up, if it is (BYE from `by`; `other` answers the switch's BYE)."""
    try:
        by.send_request("BYE")
        other.respond(other.next_request("BYE", timeout=1.0), 200)
    except (AssertionError, OSError):
        pass


def test_the_callers_record_route_is_honoured_on_its_leg(switch: Pool) -> None:
    """The caller (a carrier) sits behind a record-routing proxy: the switch's BYE goes to the proxy."""
    server = switch.server
    person = switch.take()
    agent = RawPhone(server, person.id, password=person.password)
    caller = RawPhone(server, "carrier")
    proxy = SipClient("127.0.0.1", server.udp_port)
    ended = False
    try:
        agent.register()
        route = f"<sip:127.0.0.1:{proxy.local[1]};lr>"
        cseq = caller.start_invite(person.did, headers=[("Record-Route", route)])
        agent.accept(agent.next_request("INVITE"))
        assert caller.finish_invite(cseq).status == 200
        agent.next_request("ACK")
        agent.send_request("BYE")  # the agent hangs up; the switch ends the caller's leg
        where, bye = _first_of("BYE", 3.0, proxy=proxy, caller=caller.sip)
        assert where == "proxy", f"the BYE went to the caller, not to its Record-Route hop:\n{bye.decode()}"
        assert bye.split(b" ")[1].decode() == caller.contact and _route_of(bye) == route, bye
        caller.respond(bye, 200)
        ended = True
    finally:
        if not ended:
            _hang_up_quietly(agent, caller)
        for phone in (agent, caller):
            phone.close()
        proxy.close()


def test_a_caller_that_never_acks_is_hung_up_after_64_t1(fast: Pool, sipp_dir: Path) -> None:
    server = fast.server
    agent, uas = sipp_agent(fast, sipp_dir, "uas_answer", 1)
    uac = run_sipp("uac_no_ack", fast.target, directory=sipp_dir, service=agent.did, calls=1, timeout=15)
    uac.assert_ok(successful=1)  # the switch's BYE came
    uas.wait(10).assert_ok(successful=1)  # and the agent's leg got one too
    (call_id,) = call_ids(server, agent.did, 1)
    end = server.expect_log("call_ended", timeout=5, call=call_id)
    row = cdr(server, call_id)
    assert row["hangup_by"] == "switch" and "ack" in row["hangup_cause"], (end, row)


# -- CANCEL races --------------------------------------------------------------------------------------------


def test_cancel_racing_the_agents_200_always_ends_cleanly(switch: Pool, sipp_dir: Path) -> None:
    """The agent answers 100 ms after the INVITE; the caller CANCELs 100 ms after the 180. Which arrives first
    at the switch varies call by call: 487 to the caller, or 200 + ACK + BYE; the agent's leg is CANCELled,
    or ACKed and BYEd (also when the CANCEL crossed its 200). Every call must end, on both legs."""
    server = switch.server
    calls = 30
    agent, uas = sipp_agent(switch, sipp_dir, "uas_cancel_race", calls, extra=TOLERANT)
    uac = run_sipp(
        "uac_cancel_race",
        switch.target,
        directory=sipp_dir,
        service=agent.did,
        calls=calls,
        rate=20,
        extra_args=["-d", "100", *TOLERANT],
        timeout=30,
    )
    uac.assert_ok(successful=calls)
    uas.wait(15).assert_ok(successful=calls)
    outcomes: dict[str, int] = {}
    for call_id in call_ids(server, agent.did, calls):
        row = cdr(server, call_id)
        outcome = f"{row['disposition']}/{row['hangup_cause']}/{row['hangup_by']}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert outcome in ("cancelled/cancelled/caller", "answered/bye/caller"), row
    # Both ways of the race happened (30 calls, each about even odds): the test did race.
    assert set(outcomes) == {"cancelled/cancelled/caller", "answered/bye/caller"}, outcomes


# -- retransmitted INVITEs, refusals -------------------------------------------------------------------------


def test_a_retransmitted_invite_is_absorbed_not_a_second_call(switch: Pool, sipp_dir: Path) -> None:
    server = switch.server
    calls = 10
    agent, uas = sipp_agent(switch, sipp_dir, "uas_answer", calls, extra=["-trace_msg"])
    uac = run_sipp(
        "uac_invite_retransmit",
        switch.target,
        directory=sipp_dir,
        service=agent.did,
        calls=calls,
        rate=20,
        extra_args=["-d", "100", *TOLERANT],
    )
    uac.assert_ok(successful=calls)
    agent_side = uas.wait(10)
    agent_side.assert_ok(successful=calls)
    invites = [m for m in messages(traced(agent_side)) if first_line(m).startswith("INVITE ")]
    assert len(invites) == calls, [first_line(m) for m in invites]
    ids = call_ids(server, agent.did, calls)
    with pytest.raises(AssertionError):  # and no 11th call was made of a copy
        server.expect_log("call_incoming", timeout=0.3, called=agent.did)
    assert len(set(ids)) == calls


@pytest.mark.parametrize(
    ("scenario", "code", "disposition"), [("uas_busy", 486, "busy"), ("uas_decline", 603, "declined")]
)
def test_a_busy_or_declining_agent_is_reported_to_the_caller(
    switch: Pool, sipp_dir: Path, scenario: str, code: int, disposition: str
) -> None:
    server = switch.server
    agent, uas = sipp_agent(switch, sipp_dir, scenario, 3)
    uac = run_sipp(
        "uac_rejected",
        switch.target,
        directory=sipp_dir,
        service=agent.did,
        calls=3,
        rate=20,
        extra_args=["-d", "50", "-trace_msg"],
    )
    uac.assert_ok(successful=3)
    uas.wait(10).assert_ok(successful=3)
    finals = [first_line(m) for m in messages(traced(uac)) if first_line(m).startswith(f"SIP/2.0 {code} ")]
    assert len(finals) >= 3, finals
    for call_id in call_ids(server, agent.did, 3):
        row = cdr(server, call_id)
        assert (row["disposition"], row["status"], row["agent"]) == (disposition, code, None), row
    assert not live_calls(server)


# -- resources ----------------------------------------------------------------------------------------------


def test_a_call_that_finds_no_free_rtp_port_is_refused_at_once(tiny: Pool) -> None:
    """With every RTP port taken by a ringing call, the next caller gets 503 at once (not 32 s of silence
    and a 500), and the switch keeps working."""
    server = tiny.server
    person = tiny.take()
    agent = RawPhone(server, person.id, password=person.password)
    first = RawPhone(server, "carrier")
    second = RawPhone(server, "carrier")
    try:
        agent.register()
        ringing = first.start_invite(person.did)
        invite = agent.next_request("INVITE")  # the first call holds its two port pairs while it rings
        refused = second.finish_invite(second.start_invite(person.did), timeout=3.0)
        assert refused.status == 503, refused.status_line
        # The ringing call is unharmed: the agent declines it and the caller hears that.
        agent.respond(invite, 486)
        assert first.finish_invite(ringing).status == 486
    finally:
        for phone in (agent, first, second):
            phone.close()
