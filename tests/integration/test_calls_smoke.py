from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import PhoneFactory, assert_hears

pytestmark = pytest.mark.integration

AGENTS = [
    {"id": "alice", "password": "pw-alice", "extension": "1001"},
    {"id": "bob", "password": "pw-bob", "extension": "1002"},
]


def pair(server, phones, tones, tmp_path, **bob_opts):
    bob_defaults = {
        "server": server,
        "password": "pw-bob",
        "auto_answer": True,
        "answer_delay": 0.1,
        "play": tones[1100],
    }
    bob_defaults.update(bob_opts)
    return phones.many(
        [
            ("alice", {"server": server, "password": "pw-alice", "play": tones[700]}),
            ("bob", bob_defaults),
        ]
    )


def test_hold_and_resume(make_softswitch, phones: PhoneFactory, tones, tmp_path: Path) -> None:
    server = make_softswitch(AGENTS)
    alice, bob = pair(server, phones, tones, tmp_path)
    alice.call(server.user_uri("1002"))
    alice.expect("media_active")
    bob.expect("media_active")
    alice.hold()
    alice.expect("media_state", status="LOCAL_HOLD")
    bob.expect("media_state", status="REMOTE_HOLD")
    alice.unhold()
    alice.expect("media_active")
    bob.expect("media_active")
    bob.record(tmp_path / "after.wav")
    bob.expect_no("call_state", within=1.0, state="DISCONNECTED")
    done = bob.stop_record()
    assert_hears(done["path"], 700)


def test_cancel_while_ringing(make_softswitch, phones: PhoneFactory, tones, tmp_path: Path) -> None:
    server = make_softswitch(AGENTS)
    alice, bob = pair(server, phones, tones, tmp_path, auto_answer=False)
    index = alice.call(server.user_uri("1002"))
    bob.expect("incoming_call")
    alice.expect("call_state", call=index, state="EARLY")
    alice.hangup()
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == 487
    bob.expect("call_state", state="DISCONNECTED")


def test_decline(make_softswitch, phones: PhoneFactory, tones, tmp_path: Path) -> None:
    server = make_softswitch(AGENTS)
    alice, _bob = pair(server, phones, tones, tmp_path, answer_code=603)
    index = alice.call(server.user_uri("1002"))
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == 603


def test_dtmf_surfaces_at_switch(make_softswitch, phones: PhoneFactory, tones, tmp_path: Path) -> None:
    server = make_softswitch(AGENTS)
    alice, bob = pair(server, phones, tones, tmp_path)
    alice.call(server.user_uri("1002"))
    alice.expect("media_active")
    bob.expect("media_active")
    alice.dtmf("42#")
    digits = [server.expect_log("call_dtmf", timeout=5)["digit"] for _ in range(3)]
    assert digits == ["4", "2", "#"]


def test_agent_vanishes_rtp_timeout_ends_call_and_record_says_why(
    make_softswitch, phones: PhoneFactory, tones, tmp_path: Path
) -> None:
    import sqlite3

    server = make_softswitch(AGENTS, extra_config={"server": {"rtp_timeout": 2}})
    alice, bob = pair(server, phones, tones, tmp_path)
    index = alice.call(server.user_uri("1002"))
    alice.expect("media_active")
    bob.expect("media_active")
    bob.kill()
    ended = alice.expect("call_state", call=index, state="DISCONNECTED", timeout=10)
    assert ended
    server.expect_log("call_ended", timeout=5)
    server.stop()
    db = sqlite3.connect(server.db_path)
    (cause, by, detail, disposition) = db.execute(
        "select hangup_cause, hangup_by, detail, disposition from cdrs"
    ).fetchone()
    assert cause == "media_timeout" and by == "callee" and "RTP" in detail and disposition == "answered"
