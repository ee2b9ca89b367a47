from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import PhoneFactory, assert_hears, write_tone

pytestmark = pytest.mark.integration


def test_queue_call_music_then_agent(make_softswitch, phones: PhoneFactory, tones, tmp_path: Path) -> None:
    moh = write_tone(tmp_path / "moh.wav", 500, 4.0)
    agents = [{"id": "alice", "password": "pw-alice", "extension": "1001", "skills": {"billing": 5}}]
    server = make_softswitch(
        agents,
        extra_config={
            "queues": [
                {
                    "name": "billing",
                    "numbers": ["7001"],
                    "skills": {"billing": 3},
                    "moh": str(moh),
                    "ring_timeout": 10,
                    "wrap_up": 1,
                }
            ],
        },
    )
    caller = phones("caller", server=server, register=False, play=tones[700], record=tmp_path / "caller.wav")
    index = caller.call(server.user_uri("7001"))
    caller.expect("call_state", call=index, state="CONFIRMED")
    caller.expect("media_active")
    caller.expect_no("call_state", within=1.5, state="DISCONNECTED")
    music = caller.stop_record()
    assert_hears(music["path"], 500)
    alice = phones("alice", server=server, password="pw-alice", auto_answer=True, play=tones[1100])
    alice.expect("incoming_call", timeout=10)
    alice.expect("media_active")
    caller.record(tmp_path / "talk.wav")
    caller.expect_no("call_state", within=1.5, state="DISCONNECTED")
    talk = caller.stop_record()
    assert_hears(talk["path"], 1100, not_freq=500)
    caller.hangup()
    alice.expect("call_state", state="DISCONNECTED")
