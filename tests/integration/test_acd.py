"""The ACD end to end: `softswitch serve` with queues, pjsua2 agents and callers (one UA per process), sipp.

What is pinned here, each with real SIP peers and audio checked by FFT (numpy), never assumed:

* skills routing: three agents with different skills, each queue's calls reach the agent with the skills;
  a caller no eligible agent can take waits and hears the queue's music;
* a ring-no-answer moves the call on to the next agent; after `max_missed` misses the agent is auto-paused
  (reason `missed_offers`) and a paused agent gets no calls; `softswitch agent pause/resume` likewise;
* abandoned callers, `max_wait` timeouts (goodbye prompt, then BYE), `join_empty: false` refusals, the exit
  key (RFC 4733 DTMF from the caller) to `exit_to`, position announcements (spoken prompts, not music);
* feature codes dialled from an agent's phone (login, logout, pause with a reason, resume, end wrap-up):
  the switch answers, plays a confirmation, hangs up, and the engine's state changes;
* ring_all: both agents ring, the first to answer wins, the other gets CANCEL; wrap-up holds new calls back
  until it ends (or `end-wrap-up`);
* `softswitch queues --json` and `softswitch agents --json` during and after calls; the `queue_events` and
  `agent_states` tables; reload (adding a queue and an agent) with a queue call up; an agent who logged out
  stays logged out across a restart;
* a queue caller who cannot get RTP ports is refused at once (503), not left unanswered.

Timings are kept short (ring timeouts 1.5-2 s, wrap-up 1-2 s). Waits are on events with timeouts; the only
fixed windows are `expect_no` checks ("nothing happens within N s"), which are the behaviour under test.
Each test starts its own switch (UDP only) with prompts generated once per session into a temporary dir.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import yaml

from softswitch.prompts import generate
from tests.integration.harness import (
    Phone,
    PhoneFactory,
    SoftswitchServer,
    assert_hears,
    free_udp_range,
    write_tone,
)
from tests.integration.harness.audio import load, trim_silence
from tests.integration.harness.calls import wait_for, wait_no_calls
from tests.integration.harness.server import deep_merge
from tests.integration.harness.sipp import start_sipp

pytestmark = pytest.mark.integration

MUSIC_HZ = 500.0
"""The queues' music on hold in these tests: a pure tone, so that music and speech tell apart by FFT."""

# The switches' RTP ports: between the harness's usual 10000-30000 (where other tests and benchmarks on a
# shared machine bind thousands of ports at a time) and the kernel's ephemeral ports (32768-60999).
RTP_LOW, RTP_HIGH = 30000, 32768

# Agents' tones (what a caller hears once connected) — all inside the telephone band, well apart.
TONE_HZ = {"alice": 700, "bob": 1000, "carol": 1100, "dave": 1400}


# ----------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="session")
def sounds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The switch's prompts (espeak-ng) and default music, generated once for the whole session."""
    directory = tmp_path_factory.mktemp("sounds")
    generate(directory, if_missing=True)
    return directory


@pytest.fixture
def agent_tones(tmp_path: Path) -> dict[str, Path]:
    return {name: write_tone(tmp_path / f"tone-{name}.wav", hz, 3.0) for name, hz in TONE_HZ.items()}


@pytest.fixture
def music(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "moh.wav", MUSIC_HZ, 4.0, amplitude=0.4)


AcdFactory = Callable[..., SoftswitchServer]


@pytest.fixture
def acd_switch(make_softswitch: Callable[..., SoftswitchServer], sounds_dir: Path) -> AcdFactory:
    """`acd_switch(agents, queues, server={...}, extra={...})`: a started switch (UDP only) with these
    agents and queues, the session's prompts and `rtp_range_size` (200) RTP ports in RTP_LOW..RTP_HIGH
    (other keywords go to `SoftswitchServer`)."""

    def make(
        agents: list[dict[str, Any]],
        queues: list[dict[str, Any]],
        *,
        server: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SoftswitchServer:
        size = kwargs.pop("rtp_range_size", 200)
        first, last = free_udp_range(size, low=RTP_LOW, high=RTP_HIGH)
        config: dict[str, Any] = {
            "server": {"sounds_dir": str(sounds_dir), "rtp_ports": f"{first}-{last}", **(server or {})},
            "queues": queues,
        }
        return make_softswitch(
            agents, extra_config=deep_merge(config, extra or {}), transports=("udp",), **kwargs
        )

    return make


def agent(name: str, extension: str, **fields: Any) -> dict[str, Any]:
    return {"id": name, "password": f"pw-{name}", "extension": extension, **fields}


def queue(name: str, number: str, **fields: Any) -> dict[str, Any]:
    """A queue with the tests' short defaults (ring 2 s, wrap-up 1 s); `fields` override."""
    return {"name": name, "numbers": [number], "ring_timeout": 2, "wrap_up": 1, **fields}


def agent_phone(
    phones: PhoneFactory, server: SoftswitchServer, name: str, *, tone: Path | None = None, **kwargs: Any
) -> Phone:
    """A registered pjsua2 phone for agent `name` (password `pw-<name>`), playing `tone` into calls."""
    return phones(name, server=server, password=f"pw-{name}", play=tone, **kwargs)


def caller_phone(phones: PhoneFactory, server: SoftswitchServer, name: str, **kwargs: Any) -> Phone:
    """An unregistered customer's phone (queue numbers are public: no authentication)."""
    return phones(name, server=server, register=False, **kwargs)


def api_post(server: SoftswitchServer, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        server.control_url + path, data=json.dumps(body or {}).encode(), method="POST"
    )
    request.add_header("Authorization", f"Bearer {server.control_token()}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def queue_info(server: SoftswitchServer, name: str) -> dict[str, Any]:
    for entry in server.api("/api/queues")["queues"]:
        if entry["name"] == name:
            return dict(entry)
    raise AssertionError(f"queue {name!r} not in GET /api/queues")


def agents_info(server: SoftswitchServer) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in server.api("/api/acd/agents")["agents"]}


def wait_agent(
    server: SoftswitchServer, name: str, status: str, *, timeout: float = 5.0, **fields: Any
) -> dict[str, Any]:
    """Wait until agent `name`'s ACD status (GET /api/acd/agents) is `status` (and `fields` match)."""
    seen: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal seen
        seen = agents_info(server).get(name, {})
        if seen.get("status") == status and all(seen.get(k) == v for k, v in fields.items()):
            return seen
        return None

    try:
        return wait_for(server, check, timeout, f"agent {name} {status} {fields or ''}")
    except AssertionError as exc:
        raise AssertionError(f"agent {name} is {seen}, expected {status} {fields}\n{exc}") from None


def wait_queue(
    server: SoftswitchServer,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 5.0,
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal seen
        seen = queue_info(server, name)
        return seen if predicate(seen) else None

    try:
        return wait_for(server, check, timeout, f"queue {name}: {what}")
    except AssertionError as exc:
        raise AssertionError(f"queue {name} is {seen}; expected {what}\n{exc}") from None


def db_rows(server: SoftswitchServer, query: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=2.0)
    try:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(query, args)]
    finally:
        db.close()


def db_wait(
    server: SoftswitchServer,
    query: str,
    check: Callable[[list[dict[str, Any]]], bool],
    what: str,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Rows of `query` once `check(rows)` holds (the store writes on its own thread, a moment later)."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        nonlocal found
        found = db_rows(server, query)
        return check(found)

    try:
        wait_for(server, ready, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{what}: the database has {found}\n{exc}") from None
    return found


def record_for(
    phone: Phone, path: Path, seconds: float, *, call: int | None = None, settle: float = 0.0
) -> Path:
    """Record what `phone` hears on its (newest or given) call for `seconds` while the call stays up.

    With `settle`, record that much longer and drop it from the start of the file: pjsua2's adaptive jitter
    buffer holds up to ~0.5 s of the audio that came before (a raw RTP receiver sees the agent's audio
    within 25 ms of the bridge; a pjsua2 caller that heard music for a few seconds on a busy machine plays
    ~0.45 s more music first)."""
    raw = path.with_name(f"{path.stem}-raw{path.suffix}") if settle else path
    phone.record(raw, call=call)
    phone.expect_no(
        "call_state", within=seconds + settle, state="DISCONNECTED", call=call if call is not None else _any
    )
    phone.command("stop_record", call=call)
    phone.expect("record_done", path=str(raw))
    if settle:
        samples, rate = soundfile.read(str(raw), dtype="int16")
        soundfile.write(str(path), samples[int(settle * rate) :], rate, subtype="PCM_16")
    return path


def _any(value: object) -> bool:
    return True


def frame_shares(path: Path, freq: float, *, frame_s: float = 0.1) -> list[tuple[float, float]]:
    """(rms, share of energy within freq +- 60 Hz) per frame of `frame_s` seconds, silence trimmed."""
    samples, rate = load(path)
    samples = trim_silence(samples)
    size = int(frame_s * rate)
    out = []
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    band = (freqs >= freq - 60) & (freqs <= freq + 60)
    window = np.hanning(size)
    for start in range(0, samples.size - size + 1, size):
        frame = samples[start : start + size]
        level = float(np.sqrt(np.mean(frame**2)))
        power = np.abs(np.fft.rfft((frame - frame.mean()) * window)) ** 2
        power[freqs < 100] = 0.0
        total = float(power.sum()) or 1.0
        out.append((level, float(power[band].sum() / total)))
    return out


def speech_seconds(path: Path, *, music_hz: float = MUSIC_HZ, frame_s: float = 0.1) -> float:
    """Seconds of sound in `path` that is not the music tone: frames above -40 dBFS whose energy lies
    mostly (>= 70 %) outside music_hz +- 60 Hz (speech, a prompt), counted in `frame_s` steps."""
    frames = frame_shares(path, music_hz, frame_s=frame_s)
    return frame_s * sum(1 for level, share in frames if level > 0.01 and share < 0.3)


def music_seconds(path: Path, *, music_hz: float = MUSIC_HZ, frame_s: float = 0.1) -> float:
    """Seconds of `path` that are the music tone (>= 80 % of the frame's energy at music_hz)."""
    frames = frame_shares(path, music_hz, frame_s=frame_s)
    return frame_s * sum(1 for level, share in frames if level > 0.01 and share >= 0.8)


def _best_correlation(heard: np.ndarray, wanted: np.ndarray) -> float:
    """Peak normalised cross-correlation (0..1) of `wanted` at any offset inside `heard`."""
    if heard.size < wanted.size or wanted.size == 0:
        return 0.0
    n = int(2 ** np.ceil(np.log2(heard.size + wanted.size)))
    corr = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(wanted, n)), n)
    corr = corr[: heard.size - wanted.size + 1]
    energy = np.convolve(heard**2, np.ones(wanted.size), mode="valid")
    norm = np.sqrt(np.maximum(energy, 1e-12) * float(np.sum(wanted**2)))
    return float(np.max(np.abs(corr) / norm))


def prompt_match(path: Path, prompt: Path, *, chunk_s: float = 0.4) -> float:
    """How surely the recording `path` contains the prompt `prompt`: its 0.4 s chunks are each found by
    normalised cross-correlation (0..1) anywhere in the recording; the score is the median chunk's.

    Chunks make it robust to a jitter-buffer dropout or a stretched frame inside the prompt, which spoils
    a whole-prompt correlation. A prompt sent through G.711 and recorded by pjsua2 scores 0.9-1.0; a
    different prompt 0.05-0.4, except prompts that share words ("you are logged in" inside "you are logged
    out"; "goodbye" inside "max-wait-goodbye"): compare the candidates, take the best."""
    heard, rate = load(path)
    wanted, wanted_rate = load(prompt)
    assert rate == wanted_rate == 8000, (rate, wanted_rate)
    wanted = trim_silence(wanted)
    size = int(chunk_s * rate)
    chunks = [wanted[i : i + size] for i in range(0, max(1, wanted.size - size // 2), size)]
    scores = [_best_correlation(heard, c) for c in chunks if c.size >= size // 2 and np.any(c)]
    return float(np.median(scores)) if scores else 0.0


def hangup_and_wait(*pairs: tuple[Phone, int | None]) -> None:
    for phone, call in pairs:
        phone.hangup(call=call)
    for phone, call in pairs:
        phone.expect("call_state", state="DISCONNECTED", **({} if call is None else {"call": call}))


def connected(caller: Phone, call: int, timeout: float = 5.0) -> None:
    """The switch answered the caller's queue call and media flows."""
    caller.expect("call_state", call=call, state="CONFIRMED", timeout=timeout)
    caller.expect("media_active", call=call, timeout=timeout)


def offered(agent: Phone, timeout: float = 5.0) -> dict[str, Any]:
    """The next call offered to the agent's phone (its `incoming_call` event)."""
    return agent.expect("incoming_call", timeout=timeout)


def answered(agent: Phone, offer: dict[str, Any], timeout: float = 5.0) -> int:
    """The agent's phone answered `offer` (an `incoming_call` event) and media is up; returns the call index.

    pjsua2 reuses call indexes, so events are matched by index *and* time (after the offer)."""
    index, since = offer["call"], offer["t"]
    agent.expect("call_state", call=index, state="CONFIRMED", t=lambda t: t >= since, timeout=timeout)
    agent.expect("media_active", call=index, t=lambda t: t >= since, timeout=timeout)
    return int(index)


def ended(phone: Phone, call: int, since: float, timeout: float = 5.0) -> dict[str, Any]:
    """The phone's call `call` was disconnected (after monotonic time `since`)."""
    return phone.expect(
        "call_state", call=call, state="DISCONNECTED", t=lambda t: t >= since, timeout=timeout
    )


# ----------------------------------------------------------------------------------------------------------
# skills routing and music on hold


def test_calls_reach_agents_with_the_skills_and_a_waiting_caller_hears_music(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path, tmp_path: Path
) -> None:
    agents = [
        agent("alice", "1001", skills={"billing": 8}),
        agent("bob", "1002", skills={"tech": 7}),
        agent("carol", "1003", skills={"billing": 4, "tech": 4, "spanish": 9}),
    ]
    queues = [
        queue("billing", "7001", skills={"billing": 5}, moh=str(music)),
        queue("tech", "7002", skills={"tech": 5}, moh=str(music)),
        queue("spanish", "7003", skills={"spanish": 5}, moh=str(music)),
    ]
    server = acd_switch(agents, queues)
    alice, bob, carol = (
        agent_phone(phones, server, name, tone=agent_tones[name], auto_answer=True)
        for name in ("alice", "bob", "carol")
    )
    for name in ("alice", "bob", "carol"):
        wait_agent(server, name, "available")
    one = caller_phone(phones, server, "caller1")
    two = caller_phone(phones, server, "caller2")

    # One call into each queue, all up at once: each goes to the only agent with the skill, although
    # every agent is free (carol has billing and tech too, below those queues' minimum).
    to_billing = one.call(server.user_uri("7001"))
    alice.expect("incoming_call", timeout=5)
    to_tech = one.call(server.user_uri("7002"))
    bob.expect("incoming_call", timeout=5)
    to_spanish = two.call(server.user_uri("7003"))
    carol.expect("incoming_call", timeout=5)
    for phone, call in ((one, to_billing), (one, to_tech), (two, to_spanish)):
        connected(phone, call)
    wait_agent(server, "alice", "on_call", queue="billing")
    wait_agent(server, "bob", "on_call", queue="tech")
    wait_agent(server, "carol", "on_call", queue="spanish")
    assert_hears(
        record_for(one, tmp_path / "billing.wav", 1.0, call=to_billing), TONE_HZ["alice"], not_freq=MUSIC_HZ
    )
    assert_hears(record_for(one, tmp_path / "tech.wav", 1.0, call=to_tech), TONE_HZ["bob"], not_freq=MUSIC_HZ)

    # A second billing caller: alice is busy; bob and carol are free but not skilled enough, so it waits
    # with music.
    waiting = two.call(server.user_uri("7001"))
    connected(two, waiting)
    heard = record_for(two, tmp_path / "waiting.wav", 1.5, call=waiting)
    assert_hears(heard, MUSIC_HZ)
    assert music_seconds(heard) >= 1.0
    info = queue_info(server, "billing")
    assert info["waiting"] == 1, info
    for phone in (alice, bob, carol):
        phone.expect_no("incoming_call", within=0.1)

    # alice's first call ends; after her 1 s wrap-up the waiting caller reaches her, not anyone else.
    hangup_and_wait((one, to_billing))
    answered(alice, offered(alice))
    talk = record_for(two, tmp_path / "after-wait.wav", 1.0, call=waiting, settle=0.7)
    assert_hears(talk, TONE_HZ["alice"], not_freq=MUSIC_HZ)
    bob.expect_no("incoming_call", within=0.2)
    carol.expect_no("incoming_call", within=0.1)
    hangup_and_wait((one, to_tech), (two, to_spanish), (two, waiting))
    wait_no_calls(server)
    figures = queue_info(server, "billing")["figures"]
    assert (figures["offered"], figures["answered"], figures["abandoned"]) == (2, 2, 0), figures


# ----------------------------------------------------------------------------------------------------------
# unanswered offers, auto-pause, paused agents


def test_unanswered_offer_moves_on_and_the_agent_is_auto_paused_after_max_missed(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    # best_skill makes alice (9) the first choice every time; her phone rings but nobody answers it.
    agents = [agent("alice", "1001", skills={"billing": 9}), agent("bob", "1002", skills={"billing": 5})]
    queues = [
        queue("billing", "7001", skills={"billing": 3}, strategy="best_skill", ring_timeout=1.5, max_missed=2,
              moh=str(music)),
    ]  # fmt: skip
    server = acd_switch(agents, queues)
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"])
    bob = agent_phone(phones, server, "bob", tone=agent_tones["bob"], auto_answer=True)
    wait_agent(server, "alice", "available")
    wait_agent(server, "bob", "available")
    caller = caller_phone(phones, server, "caller")

    for miss in (1, 2):
        call = caller.call(server.user_uri("7001"))
        connected(caller, call)
        ring = offered(alice)
        # Nobody answers: after the 1.5 s ring timeout the switch CANCELs alice and offers bob.
        gone = ended(alice, ring["call"], ring["t"])
        assert gone["code"] == 487, gone
        assert 1.2 <= gone["t"] - ring["t"] <= 3.0, (
            f"alice rang {gone['t'] - ring['t']:.2f} s, ring_timeout 1.5"
        )
        answered(bob, offered(bob))
        assert_hears(
            record_for(caller, Path(server.dir) / f"call{miss}.wav", 1.0, call=call, settle=0.7),
            TONE_HZ["bob"],
            not_freq=MUSIC_HZ,
        )
        if miss == 1:
            state = wait_agent(server, "alice", "available")
            assert state["misses"] == 1, state
        hangup_and_wait((caller, call))

    # The second miss in a row paused alice (reason missed_offers); a paused agent gets no calls.
    state = wait_agent(server, "alice", "paused", pause_reason="missed_offers")
    assert state["figures"]["missed_offers"] == 2, state
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    answered(bob, offered(bob, timeout=5))
    alice.expect_no("incoming_call", within=0.5)
    hangup_and_wait((caller, call))
    wait_no_calls(server)
    misses = db_rows(
        server, "select * from queue_events where kind = 'ring_no_answer' and agent = 'alice' order by id"
    )
    assert len(misses) == 2, misses
    pauses = db_rows(server, "select * from agent_states where agent = 'alice' and new = 'paused'")
    assert [row["reason"] for row in pauses] == ["missed_offers"], pauses


def test_cli_pause_keeps_calls_away_until_resume(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    agents = [agent("alice", "1001", skills={"billing": 5}), agent("bob", "1002", skills={"billing": 5})]
    server = acd_switch(agents, [queue("billing", "7001", skills={"billing": 3}, moh=str(music))])
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"], auto_answer=True)
    bob = agent_phone(phones, server, "bob", tone=agent_tones["bob"], auto_answer=True)
    wait_agent(server, "alice", "available")
    wait_agent(server, "bob", "available")

    paused = server.cli("agent", "pause", "alice", "--reason", "lunch")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "alice: paused (lunch)"
    listing = {p["id"]: p for p in server.cli_json("agents")["agents"]}
    assert listing["alice"]["acd"]["status"] == "paused", listing["alice"]
    assert listing["alice"]["acd"]["pause_reason"] == "lunch", listing["alice"]
    assert listing["bob"]["acd"]["status"] == "available", listing["bob"]
    assert [r["user"] for r in listing["alice"]["registrations"]] == ["alice"]

    caller = caller_phone(phones, server, "caller")
    first = caller.call(server.user_uri("7001"))
    connected(caller, first)
    answered(bob, offered(bob))
    second = caller.call(server.user_uri("7001"))
    connected(caller, second)
    # bob is busy and alice paused: the second caller waits; alice's phone stays quiet.
    alice.expect_no("incoming_call", within=1.0)
    assert queue_info(server, "billing")["waiting"] == 1

    resumed = server.cli("agent", "resume", "alice")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "alice: resumed"
    answered(alice, offered(alice, timeout=3))
    assert_hears(
        record_for(caller, Path(server.dir) / "second.wav", 1.0, call=second, settle=0.7), TONE_HZ["alice"]
    )
    wait_agent(server, "alice", "on_call")
    hangup_and_wait((caller, first), (caller, second))
    wait_no_calls(server)
    rows = db_rows(server, "select kind, agent, detail from queue_events where kind in ('pause', 'resume')")
    assert [(r["kind"], r["agent"], r["detail"]) for r in rows] == [
        ("pause", "alice", "lunch"),
        ("resume", "alice", ""),
    ], rows


# ----------------------------------------------------------------------------------------------------------
# feature codes


def test_feature_codes_from_an_agent_phone_change_the_agent_state_with_a_spoken_confirmation(
    acd_switch: AcdFactory, phones: PhoneFactory, sounds_dir: Path, tmp_path: Path
) -> None:
    server = acd_switch([agent("alice", "1001", skills={"billing": 5})], [queue("billing", "7001")])
    alice = agent_phone(phones, server, "alice", record=tmp_path / "alice-{n}.wav")
    wait_agent(server, "alice", "available")

    def dial(number: int, code: str, prompt: str) -> None:
        call = alice.call(server.user_uri(code))
        start = alice.expect("call_state", call=call, state="CONFIRMED", timeout=5)
        # The switch hangs up after the confirmation: alice never hangs up herself.
        end = ended(alice, call, start["t"], timeout=8)
        assert any(
            e["event"] == "tsx_rx" and e.get("cseq") == "BYE" and e["t"] >= start["t"] for e in alice.events
        ), f"{code}: the switch did not send BYE"
        assert end["t"] - start["t"] < 6.0
        heard = Path(alice.expect("record_done", path=str(tmp_path / f"alice-{number}.wav"))["path"])
        assert speech_seconds(heard) >= 0.4, f"{code}: no confirmation heard in {heard}"
        scores = {name: prompt_match(heard, sounds_dir / f"{name}.wav") for name in confirmations}
        best = max(scores, key=scores.__getitem__)
        assert best == prompt and scores[best] >= 0.8, f"{code}: expected {prompt}.wav, matched {scores}"

    steps = (
        ("*12", "logged-out", "logged_out", {}),
        ("*11", "logged-in", "available", {}),
        ("*132", "paused", "paused", {"pause_reason": "2"}),
        ("*14", "welcome-back", "available", {}),
    )
    confirmations = [prompt for _, prompt, _, _ in steps]
    for number, (code, prompt, status, fields) in enumerate(steps, start=1):
        dial(number, code, prompt)
        wait_agent(server, "alice", status, **fields)

    rows = db_rows(server, "select old, new, reason from agent_states where agent = 'alice' order by id")
    changes = [(r["new"], r["reason"]) for r in rows]
    for wanted in (("logged_out", "logout"), ("paused", "2")):
        assert wanted in changes, changes


# ----------------------------------------------------------------------------------------------------------
# abandoned callers, live figures, the database


def test_abandoned_and_answered_calls_in_queues_json_and_the_database(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path, sipp_dir: Path
) -> None:
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5})],
        [queue("billing", "7001", skills={"billing": 3}, moh=str(music), service_level=10)],
    )
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"], auto_answer=True)
    wait_agent(server, "alice", "available")
    assert server.cli("agent", "logout", "alice").returncode == 0
    wait_agent(server, "alice", "logged_out")

    # A pjsua2 caller waits (nobody logged in) and gives up.
    caller = caller_phone(phones, server, "caller")
    first = caller.call(server.user_uri("7001"))
    connected(caller, first)
    live = {q["name"]: q for q in server.cli_json("queues")["queues"]}["billing"]
    assert live["waiting"] == 1 and live["figures"]["offered"] == 1, live
    assert live["agents"].get("logged_out") == 1, live
    hangup_and_wait((caller, first))
    wait_queue(server, "billing", lambda q: q["figures"]["abandoned"] == 1, "one abandoned call")

    # A sipp caller (no RTP) waits 1.5 s and hangs up: abandoned too.
    run = start_sipp(
        "uac_basic", f"127.0.0.1:{server.udp_port}", directory=sipp_dir, service="7001", calls=1,
        extra_args=["-d", "1500"], timeout=15,
    )  # fmt: skip
    result = run.wait()
    result.assert_ok(successful=1)
    wait_queue(server, "billing", lambda q: q["figures"]["abandoned"] == 2, "two abandoned calls")

    # alice logs in and takes the third caller at once.
    assert server.cli("agent", "login", "alice").returncode == 0
    third = caller.call(server.user_uri("7001"))
    connected(caller, third)
    answered(alice, offered(alice))
    during = {q["name"]: q for q in server.cli_json("queues")["queues"]}["billing"]
    assert during["waiting"] == 0 and during["agents"].get("on_call") == 1, during
    assert during["figures"]["answered"] == 1, during
    hangup_and_wait((caller, third))
    wait_no_calls(server)
    after = wait_queue(
        server, "billing", lambda q: q["agents"].get("available") == 1, "alice available again"
    )
    figures = after["figures"]
    assert (figures["offered"], figures["answered"], figures["abandoned"]) == (3, 1, 2), figures
    assert figures["answered_within_sl"] == 1, figures
    assert figures["service_level"] == pytest.approx(1 / 3), figures
    assert figures["abandonment_rate"] == pytest.approx(2 / 3), figures
    assert figures["aht"] is not None and figures["aht"] > 0, figures
    listing = {p["id"]: p for p in server.cli_json("agents")["agents"]}
    assert listing["alice"]["acd"]["figures"]["calls_handled"] == 1, listing["alice"]

    # Everything is in the database: three calls' queue events and alice's states.
    events = db_wait(
        server,
        "select * from queue_events order by id",
        lambda rows: any(r["kind"] == "wrap_up" for r in rows),
        "the queue events of the answered call, up to its wrap-up",
    )
    by_call: dict[str, list[str]] = {}
    for row in events:
        if row["call"]:
            by_call.setdefault(row["call"], []).append(row["kind"])
    kinds = sorted(by_call.values())
    assert kinds.count(["enter", "abandon"]) == 2, by_call
    answered_call = [k for k in kinds if "connect" in k]
    assert answered_call == [["enter", "offer", "connect", "complete_caller", "wrap_up"]], by_call
    assert {r["kind"] for r in events if not r["call"]} >= {"logout", "login"}, events
    states = [
        r["new"] for r in db_rows(server, "select new from agent_states where agent = 'alice' order by id")
    ]
    for wanted in ("logged_out", "available", "offered", "on_call", "wrap_up"):
        assert wanted in states, states
    # The stored figures equal the live ones (`softswitch queues --today` reads the database).
    stored = {q["name"]: q for q in server.cli_json("queues", "--today")["queues"]}["billing"]["figures"]
    for key in ("offered", "answered", "abandoned", "answered_within_sl"):
        assert stored[key] == figures[key], (key, stored, figures)


# ----------------------------------------------------------------------------------------------------------
# announcements, exit key, max_wait, join_empty


def test_position_announcements_are_spoken_over_the_music(
    acd_switch: AcdFactory, phones: PhoneFactory, music: Path, sounds_dir: Path, tmp_path: Path
) -> None:
    # Nobody has the skill: both callers wait; every 2 s each hears its position, music in between.
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5})],
        [
            queue(
                "sales", "7001", skills={"sales": 5}, moh=str(music), announce={"every": 2, "position": True}
            )
        ],
    )
    first = caller_phone(phones, server, "first", record=tmp_path / "first.wav")
    second = caller_phone(phones, server, "second", record=tmp_path / "second.wav")
    one = first.call(server.user_uri("7001"))
    connected(first, one)
    two = second.call(server.user_uri("7001"))
    connected(second, two)
    # Each has had one announcement after 2 s; both hang up before the second one.
    wait_queue(server, "sales", lambda q: q["waiting"] == 2, "two callers waiting")
    second.expect_no("call_state", within=3.6, state="DISCONNECTED")
    hangup_and_wait((first, one), (second, two))
    heard = {
        name: Path(phone.expect("record_done")["path"])
        for name, phone in (("first", first), ("second", second))
    }
    for name, path in heard.items():
        assert music_seconds(path) >= 1.0, f"{name}: hardly any music in {path}"
        assert speech_seconds(path) >= 0.5, f"{name}: no announcement in {path}"
    # What was said: position 1 is "you are next"; position 2 "you are caller number two in the queue".
    scores = {
        name: {
            p: prompt_match(path, sounds_dir / f"{p}.wav")
            for p in ("you-are-next", "you-are-caller-number", "number-2")
        }
        for name, path in heard.items()
    }
    assert scores["first"]["you-are-next"] >= 0.8, scores
    assert scores["second"]["you-are-caller-number"] >= 0.8, scores
    assert scores["second"]["number-2"] >= 0.8, scores
    assert scores["first"]["you-are-caller-number"] < 0.6, scores
    assert scores["second"]["you-are-next"] < 0.6, scores


def test_exit_key_sends_the_caller_to_exit_to(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    # bob is extension 1002, not skilled for the queue; the caller presses 1 to leave and reach him.
    server = acd_switch(
        [agent("alice", "1001", skills={"sales": 5}), agent("bob", "1002", skills={"billing": 5})],
        [queue("sales", "7001", skills={"sales": 5}, moh=str(music), exit_key="1", exit_to="1002")],
    )
    assert server.cli("agent", "logout", "alice").returncode == 0
    bob = agent_phone(phones, server, "bob", tone=agent_tones["bob"], auto_answer=True, answer_delay=0.3)
    caller = caller_phone(phones, server, "caller")
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    assert_hears(record_for(caller, Path(server.dir) / "waiting.wav", 1.0, call=call), MUSIC_HZ)
    bob.expect_no("incoming_call", within=0.1)
    caller.dtmf("1", call=call)  # RFC 4733 telephone-event
    ring = offered(bob, timeout=5)
    answered(bob, ring)
    assert_hears(record_for(caller, Path(server.dir) / "bob.wav", 1.0, call=call, settle=0.7), TONE_HZ["bob"])
    wait_agent(server, "bob", "direct_call")
    figures = queue_info(server, "sales")["figures"]
    assert figures["exited"] == 1 and figures["abandoned"] == 0, figures
    hangup_and_wait((caller, call))
    wait_no_calls(server)
    rows = db_wait(server, "select * from queue_events where kind = 'exit_key'", bool, "the exit_key row")
    assert rows[0]["detail"] == "1" and rows[0]["queue"] == "sales", rows


def test_max_wait_says_goodbye_and_join_empty_refuses(
    acd_switch: AcdFactory, phones: PhoneFactory, music: Path, sounds_dir: Path, tmp_path: Path
) -> None:
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5, "sales": 5})],
        [
            queue("billing", "7001", skills={"billing": 5}, moh=str(music), max_wait=2),
            queue("sales", "7002", skills={"sales": 5}, moh=str(music), join_empty=False),
        ],
    )
    assert server.cli("agent", "logout", "alice").returncode == 0  # nobody logged in
    patient = caller_phone(phones, server, "patient", record=tmp_path / "patient.wav")
    refused = caller_phone(phones, server, "refused", record=tmp_path / "refused.wav")
    waits = patient.call(server.user_uri("7001"))
    connected(patient, waits)
    tries = refused.call(server.user_uri("7002"))

    # join_empty false: answered, told there is nobody, hung up by the switch at once (no music).
    up = refused.expect("call_state", call=tries, state="CONFIRMED", timeout=5)
    down = ended(refused, tries, up["t"], timeout=6)
    assert any(e["event"] == "tsx_rx" and e.get("cseq") == "BYE" for e in refused.events), (
        "no BYE from the switch"
    )
    goodbye = Path(refused.expect("record_done")["path"])
    assert music_seconds(goodbye) < 0.2, "a refused caller heard music"
    assert prompt_match(goodbye, sounds_dir / "no-agents-goodbye.wav") >= 0.8
    assert down["t"] - up["t"] < 5.0

    # max_wait 2 s: music, then the goodbye, then BYE.
    start = patient.events[-1]["t"]
    end = ended(patient, waits, start, timeout=10)
    assert any(e["event"] == "tsx_rx" and e.get("cseq") == "BYE" for e in patient.events), (
        "no BYE from the switch"
    )
    heard = Path(patient.expect("record_done")["path"])
    assert music_seconds(heard) >= 1.0
    assert prompt_match(heard, sounds_dir / "max-wait-goodbye.wav") >= 0.8
    assert prompt_match(heard, sounds_dir / "no-agents-goodbye.wav") < 0.6
    assert end["t"] - up["t"] >= 1.8
    wait_no_calls(server)
    billing, sales = queue_info(server, "billing")["figures"], queue_info(server, "sales")["figures"]
    assert (billing["timed_out"], billing["abandoned"]) == (1, 0), billing
    assert (sales["refused"], sales["offered"]) == (1, 0), sales
    kinds = {(r["queue"], r["kind"], r["detail"]) for r in db_rows(server, "select * from queue_events")}
    assert ("billing", "timeout", "max_wait") in kinds, kinds
    assert ("sales", "exit_empty", "join_empty") in kinds, kinds


# ----------------------------------------------------------------------------------------------------------
# ring_all, wrap-up


def test_ring_all_rings_both_agents_the_first_answer_wins_the_other_gets_cancel(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    agents = [agent("alice", "1001", skills={"billing": 5}), agent("bob", "1002", skills={"billing": 5})]
    server = acd_switch(
        agents,
        [
            queue(
                "billing", "7001", skills={"billing": 3}, strategy="ring_all", ring_timeout=5, moh=str(music)
            )
        ],
    )
    alice = agent_phone(
        phones, server, "alice", tone=agent_tones["alice"], auto_answer=True, answer_delay=0.6
    )
    bob = agent_phone(phones, server, "bob", tone=agent_tones["bob"])  # rings, never answers
    wait_agent(server, "alice", "available")
    wait_agent(server, "bob", "available")
    caller = caller_phone(phones, server, "caller")
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    ring_a, ring_b = offered(alice), offered(bob)
    assert abs(ring_a["t"] - ring_b["t"]) < 0.3, "ring_all should ring both phones at once"
    answered(alice, ring_a)
    gone = ended(bob, ring_b["call"], ring_b["t"], timeout=3)
    assert gone["code"] == 487, gone
    cancels = [e for e in bob.events if e["event"] == "tsx_rx" and e["line"].startswith("CANCEL ")]
    assert len(cancels) == 1, [e["line"] for e in bob.events if e["event"] == "tsx_rx"]
    assert 'text="Call completed elsewhere"' in cancels[0]["msg"], cancels[0]["msg"]
    assert_hears(
        record_for(caller, Path(server.dir) / "talk.wav", 1.0, call=call, settle=0.7), TONE_HZ["alice"]
    )
    wait_agent(server, "alice", "on_call")
    wait_agent(server, "bob", "available")
    hangup_and_wait((caller, call))
    wait_no_calls(server)
    offers = db_rows(server, "select agent from queue_events where kind = 'offer' order by id")
    assert sorted(r["agent"] for r in offers) == ["alice", "bob"], offers
    assert db_rows(server, "select agent from queue_events where kind = 'connect'") == [{"agent": "alice"}]
    # bob's ring was withdrawn, not missed: no auto-pause count against him.
    assert agents_info(server)["bob"]["misses"] == 0


def test_wrap_up_holds_the_next_call_until_it_ends_or_the_agent_ends_it(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5})],
        [queue("billing", "7001", skills={"billing": 3}, wrap_up=2.5, moh=str(music))],
    )
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"], auto_answer=True)
    wait_agent(server, "alice", "available")
    one = caller_phone(phones, server, "one")
    two = caller_phone(phones, server, "two")

    first = one.call(server.user_uri("7001"))
    connected(one, first)
    answered(alice, offered(alice))
    second = two.call(server.user_uri("7001"))
    connected(two, second)
    one.hangup(call=first)
    done = ended(one, first, 0.0)
    state = wait_agent(server, "alice", "wrap_up")
    assert state["wrap_up_until"] is not None
    # The second caller waits out alice's 2.5 s wrap-up, then reaches her.
    ring = offered(alice, timeout=6)
    waited = ring["t"] - done["t"]
    assert 2.2 <= waited <= 4.0, f"alice was offered the next call {waited:.2f} s after the last one ended"
    answered(alice, ring)
    assert_hears(
        record_for(two, Path(server.dir) / "second.wav", 1.0, call=second, settle=0.7), TONE_HZ["alice"]
    )

    # Again, but alice ends her wrap-up with *15 at once: the next call comes without the 2.5 s wait.
    third = one.call(server.user_uri("7001"))
    connected(one, third)
    two.hangup(call=second)
    done = ended(two, second, 0.0)
    wait_agent(server, "alice", "wrap_up")
    alice.expect_no("incoming_call", within=0.3)
    code = alice.call(server.user_uri("*15"))
    ring = offered(alice, timeout=5)
    waited = ring["t"] - done["t"]
    assert waited < 2.2, (
        f"after *15 the next call came {waited:.2f} s after the last one ended (wrap-up 2.5 s)"
    )
    answered(alice, ring)
    hangup_and_wait((one, third))
    ended(alice, code, 0.0)
    wait_no_calls(server)
    rows = db_wait(
        server,
        "select * from queue_events where kind = 'wrap_up' order by id",
        lambda r: len(r) >= 2,
        "2 wrap-ups",
    )
    assert rows[0]["duration"] == pytest.approx(2.5, abs=0.3), rows[0]
    assert rows[1]["duration"] < 2.0, rows[1]


# ----------------------------------------------------------------------------------------------------------
# reload and restart


def test_reload_adds_a_queue_and_an_agent_without_dropping_a_queue_call(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5})],
        [queue("billing", "7001", skills={"billing": 3}, moh=str(music))],
    )
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"], auto_answer=True)
    wait_agent(server, "alice", "available")
    caller = caller_phone(phones, server, "caller")
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    answered(alice, offered(alice))

    config = yaml.safe_load(server.config_path.read_text())
    config["queues"].append(queue("support", "7002", skills={"support": 3}, moh=str(music)))
    config["agents"].append(agent("dave", "1004", skills={"support": 5}))
    server.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    reloaded = server.cli("reload")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    server.expect_log("reloaded", queues=2, agents=2)

    # The queue call goes on: still up, still alice's voice, alice still on it.
    assert_hears(record_for(caller, Path(server.dir) / "after-reload.wav", 1.0, call=call), TONE_HZ["alice"])
    assert agents_info(server)["alice"]["status"] == "on_call"
    assert {q["name"] for q in server.api("/api/queues")["queues"]} == {"billing", "support"}
    assert agents_info(server)["dave"]["status"] == "unreachable"  # logged in, no phone yet

    # The new agent registers and takes a call in the new queue.
    dave = agent_phone(phones, server, "dave", tone=agent_tones["dave"], auto_answer=True)
    wait_agent(server, "dave", "available")
    other = caller_phone(phones, server, "other")
    second = other.call(server.user_uri("7002"))
    connected(other, second)
    answered(dave, offered(dave))
    assert_hears(
        record_for(other, Path(server.dir) / "dave.wav", 1.0, call=second, settle=0.7), TONE_HZ["dave"]
    )

    # A second reload by SIGHUP (what `systemctl reload` sends) with both calls up: a third queue.
    config["queues"].append(queue("sales", "7003", skills={"sales": 3}))
    server.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.kill(server.pid, signal.SIGHUP)
    server.expect_log("reloaded", queues=3, agents=2)
    for phone, index in ((caller, call), (other, second)):
        phone.expect_no("call_state", within=0.3, call=index, state="DISCONNECTED")
    assert {c["state"] for c in server.api("/api/calls")["calls"]} == {"talking"}
    hangup_and_wait((caller, call), (other, second))
    wait_no_calls(server)
    figures = {q["name"]: q["figures"] for q in server.api("/api/queues")["queues"]}
    assert set(figures) == {"billing", "support", "sales"}, figures
    assert figures["billing"]["answered"] == 1 and figures["support"]["answered"] == 1, figures
    completed = db_wait(
        server,
        "select queue, agent from queue_events where kind like 'complete_%' order by id",
        lambda rows: len(rows) == 2,
        "both calls completed",
    )
    assert {(r["queue"], r["agent"]) for r in completed} == {("billing", "alice"), ("support", "dave")}


def test_agent_states_survive_a_restart(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path, tmp_path: Path
) -> None:
    agents = [agent("alice", "1001", skills={"billing": 5}), agent("bob", "1002", skills={"billing": 5})]
    server = acd_switch(agents, [queue("billing", "7001", skills={"billing": 3}, moh=str(music))])
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"], auto_answer=True)
    bob = agent_phone(phones, server, "bob", tone=agent_tones["bob"], auto_answer=True)
    wait_agent(server, "alice", "available")
    wait_agent(server, "bob", "available")
    # bob logs out from his phone (*12); alice is paused from the CLI.
    code = bob.call(server.user_uri("*12"))
    ended(bob, code, 0.0, timeout=8)
    wait_agent(server, "bob", "logged_out")
    assert server.cli("agent", "pause", "alice", "--reason", "training").returncode == 0
    wait_agent(server, "alice", "paused", pause_reason="training")
    db_wait(
        server,
        "select agent, new from agent_states order by id",
        lambda rows: {("bob", "logged_out"), ("alice", "paused")} <= {(r["agent"], r["new"]) for r in rows},
        "both changes stored",
    )

    server.restart()
    # The phones' registrations were restored too; the agents are back in the states they left.
    wait_agent(server, "bob", "logged_out")
    wait_agent(server, "alice", "paused", pause_reason="training")
    listing = {p["id"]: p for p in server.cli_json("agents")["agents"]}
    assert listing["bob"]["acd"]["status"] == "logged_out" and listing["bob"]["registrations"], listing["bob"]

    caller = caller_phone(phones, server, "caller")
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    alice.expect_no("incoming_call", within=1.0)
    bob.expect_no("incoming_call", within=0.1)
    assert server.cli("agent", "resume", "alice").returncode == 0
    answered(alice, offered(alice, timeout=3))
    bob.expect_no("incoming_call", within=0.3)
    hangup_and_wait((caller, call))
    wait_no_calls(server)


# ----------------------------------------------------------------------------------------------------------
# resources


def test_a_queue_caller_is_refused_at_once_when_rtp_ports_run_out(
    acd_switch: AcdFactory, phones: PhoneFactory, music: Path
) -> None:
    # Four RTP ports are two even/odd pairs: one queue call (caller leg + agent leg) takes both.
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5})],
        [queue("billing", "7001", skills={"billing": 3}, moh=str(music))],
        rtp_range_size=4,
    )
    caller = caller_phone(phones, server, "caller")
    first = caller.call(server.user_uri("7001"))
    connected(caller, first)
    second = caller.call(server.user_uri("7001"))
    # No port for the second caller: it must get a final answer (503) at once, not be left unanswered.
    refused = caller.expect("call_state", call=second, state="DISCONNECTED", timeout=3)
    assert refused["code"] == 503, refused
    caller.expect_no("call_state", within=0.5, call=first, state="DISCONNECTED")
    assert queue_info(server, "billing")["waiting"] == 1
    hangup_and_wait((caller, first))
    wait_no_calls(server)


# ----------------------------------------------------------------------------------------------------------
# more queue rules: a caller gone while ringing, a busy agent, overflow, relax, VIP, leave_when_empty


def test_caller_gone_while_ringing_and_a_busy_agent_are_not_missed_offers(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    agents = [agent("alice", "1001", skills={"billing": 9}), agent("bob", "1002", skills={"billing": 5})]
    server = acd_switch(
        agents,
        [
            queue(
                "billing",
                "7001",
                skills={"billing": 3},
                strategy="best_skill",
                ring_timeout=4,
                moh=str(music),
            )
        ],
    )
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"])
    bob = agent_phone(phones, server, "bob", tone=agent_tones["bob"], auto_answer=True)
    wait_agent(server, "alice", "available")
    wait_agent(server, "bob", "available")
    caller = caller_phone(phones, server, "caller")

    # The caller gives up while alice's phone rings: her ring is cancelled, it is no miss, the call is
    # abandoned.
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    ring = offered(alice)
    hangup_and_wait((caller, call))
    gone = ended(alice, ring["call"], ring["t"], timeout=3)
    assert gone["code"] == 487, gone
    state = wait_agent(server, "alice", "available")
    assert state["misses"] == 0, state
    wait_queue(server, "billing", lambda q: q["figures"]["abandoned"] == 1, "one abandoned call")
    bob.expect_no("incoming_call", within=0.1)

    # alice declines the next one (486): it goes to bob at once, long before her 4 s ring timeout.
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    ring = offered(alice)
    alice.reject(486, call=ring["call"])
    answer = offered(bob, timeout=2)
    assert answer["t"] - ring["t"] < 2.0
    answered(bob, answer)
    hangup_and_wait((caller, call))
    wait_no_calls(server)
    rows = db_wait(
        server,
        "select kind, agent from queue_events where kind in ('offer_rejected', 'ring_no_answer', 'abandon')",
        lambda r: len(r) >= 2,
        "the rejected offer and the abandon",
    )
    assert sorted((r["kind"], r["agent"]) for r in rows) == [("abandon", None), ("offer_rejected", "alice")]


def test_overflow_and_skill_relaxation_reach_other_agents_after_a_wait(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    agents = [
        agent("alice", "1001", skills={"tech": 3}),  # below the tech queue's 6, until it relaxes to 3
        agent("bob", "1002", skills={"english": 5}),  # serves the overflow queue only
    ]
    queues = [
        queue(
            "latvian", "7001", skills={"latvian": 5}, overflow={"after": 1.5, "to": "english"}, moh=str(music)
        ),
        queue("english", "7002", skills={"english": 3}, moh=str(music)),
        queue(
            "tech", "7003", skills={"tech": 6}, relax=[{"after": 1.5, "skills": {"tech": 3}}], moh=str(music)
        ),
    ]
    server = acd_switch(agents, queues)
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"], auto_answer=True)
    bob = agent_phone(phones, server, "bob", tone=agent_tones["bob"], auto_answer=True)
    wait_agent(server, "alice", "available")
    wait_agent(server, "bob", "available")
    one = caller_phone(phones, server, "one")
    two = caller_phone(phones, server, "two")
    to_latvian = one.call(server.user_uri("7001"))
    to_tech = two.call(server.user_uri("7003"))
    connected(one, to_latvian)
    connected(two, to_tech)
    start = max(e["t"] for e in (*one.events, *two.events) if e["event"] == "media_active")
    ring_bob, ring_alice = offered(bob, timeout=5), offered(alice, timeout=5)
    for ring in (ring_bob, ring_alice):
        assert ring["t"] - start >= 1.0, f"offered {ring['t'] - start:.2f} s after the call, before 1.5 s"
    answered(bob, ring_bob)
    answered(alice, ring_alice)
    assert_hears(
        record_for(one, Path(server.dir) / "one.wav", 1.0, call=to_latvian, settle=0.7), TONE_HZ["bob"]
    )
    assert_hears(
        record_for(two, Path(server.dir) / "two.wav", 1.0, call=to_tech, settle=0.7), TONE_HZ["alice"]
    )
    hangup_and_wait((one, to_latvian), (two, to_tech))
    wait_no_calls(server)
    figures = {q["name"]: q["figures"] for q in server.api("/api/queues")["queues"]}
    assert figures["latvian"]["overflowed"] == 1 and figures["english"]["answered"] == 1, figures
    assert figures["tech"]["answered"] == 1, figures
    kinds = {(r["queue"], r["kind"]) for r in db_rows(server, "select queue, kind from queue_events")}
    assert {("latvian", "overflow"), ("tech", "relax")} <= kinds, kinds


def test_a_vip_caller_is_served_before_an_earlier_caller(
    acd_switch: AcdFactory, phones: PhoneFactory, agent_tones: dict[str, Path], music: Path
) -> None:
    vip = "37120000001"
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5})],
        [queue("billing", "7001", skills={"billing": 3}, vip_numbers=[vip], moh=str(music))],
    )
    alice = agent_phone(phones, server, "alice", tone=agent_tones["alice"], auto_answer=True)
    wait_agent(server, "alice", "available")
    assert server.cli("agent", "pause", "alice").returncode == 0
    regular = phones("regular", server=server, register=False, id_uri="sip:37120000002@127.0.0.1")
    important = phones("important", server=server, register=False, id_uri=f"sip:{vip}@127.0.0.1")
    first = regular.call(server.user_uri("7001"))
    connected(regular, first)
    wait_queue(server, "billing", lambda q: q["waiting"] == 1, "the regular caller waiting")
    second = important.call(server.user_uri("7001"))
    connected(important, second)
    wait_queue(server, "billing", lambda q: q["waiting"] == 2, "both callers waiting")
    assert server.cli("agent", "resume", "alice").returncode == 0
    ring = offered(alice)
    assert vip in ring["remote_uri"], f"alice was offered {ring['remote_uri']}, not the VIP caller"
    answered(alice, ring)
    assert_hears(
        record_for(important, Path(server.dir) / "vip.wav", 1.0, call=second, settle=0.7), TONE_HZ["alice"]
    )
    assert queue_info(server, "billing")["waiting"] == 1
    hangup_and_wait((important, second), (regular, first))
    wait_no_calls(server)


def test_leave_when_empty_sends_waiting_callers_out_when_the_last_agent_logs_out(
    acd_switch: AcdFactory, phones: PhoneFactory, music: Path, sounds_dir: Path, tmp_path: Path
) -> None:
    server = acd_switch(
        [agent("alice", "1001", skills={"billing": 5})],
        [queue("billing", "7001", skills={"billing": 3}, leave_when_empty=True, moh=str(music))],
    )
    agent_phone(phones, server, "alice")
    wait_agent(server, "alice", "available")
    assert server.cli("agent", "pause", "alice").returncode == 0  # present, but taking no calls
    caller = caller_phone(phones, server, "caller", record=tmp_path / "caller.wav")
    call = caller.call(server.user_uri("7001"))
    connected(caller, call)
    caller.expect_no("call_state", within=1.0, state="DISCONNECTED")
    assert server.cli("agent", "logout", "alice").returncode == 0
    gone = ended(caller, call, 0.0, timeout=8)
    assert any(e["event"] == "tsx_rx" and e.get("cseq") == "BYE" for e in caller.events), gone
    heard = Path(caller.expect("record_done")["path"])
    assert music_seconds(heard) >= 0.5
    assert prompt_match(heard, sounds_dir / "no-agents-goodbye.wav") >= 0.8
    wait_no_calls(server)
    rows = db_wait(server, "select * from queue_events where kind = 'exit_empty'", bool, "the exit_empty row")
    assert rows[0]["detail"] == "leave_empty", rows
