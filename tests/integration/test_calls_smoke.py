from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import PhoneFactory, assert_hears

pytestmark = pytest.mark.integration

AGENTS = [
    {"id": "alice", "password": "pw-alice", "extension": "1001"},
    {"id": "bob", "password": "pw-bob", "extension": "1002"},
]


def test_call_by_extension_each_side_hears_the_other(
    make_softswitch, phones: PhoneFactory, tones, tmp_path: Path
) -> None:
    server = make_softswitch(AGENTS)
    alice, bob = phones.many(
        [
            (
                "alice",
                {"server": server, "password": "pw-alice", "play": tones[700], "record": tmp_path / "a.wav"},
            ),
            (
                "bob",
                {
                    "server": server,
                    "password": "pw-bob",
                    "auto_answer": True,
                    "answer_delay": 0.1,
                    "play": tones[1100],
                    "record": tmp_path / "b.wav",
                },
            ),
        ]
    )
    index = alice.call(server.user_uri("1002"))
    bob.expect("incoming_call")
    alice.expect("call_state", call=index, state="CONFIRMED")
    alice.expect("media_active")
    bob.expect("media_active")
    alice.expect_no("call_state", within=1.5, state="DISCONNECTED")
    alice.hangup()
    bob.expect("call_state", state="DISCONNECTED")
    assert_hears(Path(alice.expect("record_done")["path"]), 1100, not_freq=700)
    assert_hears(Path(bob.expect("record_done")["path"]), 700, not_freq=1100)
