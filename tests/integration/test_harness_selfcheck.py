"""The harness proves itself against Kamailio, a SIP server we did not write.

If these pass, a failing integration test of our switch points at the switch, not at the tools: pjsua2
phones register with digest over UDP and TCP, call each other through a proxy and hear each other's tones
(checked by FFT), DTMF arrives by RFC 2833 and SIP INFO, hold and unhold re-INVITEs work and audio comes
back, wrong passwords are refused, sipp registers 200 users from an injection file, and the sipp call
scenarios (answer, cancel) complete. A few tests check the failure paths of the harness itself: a missed
expectation reports what was seen and the peer's log.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.integration.harness import (
    Kamailio,
    PhoneFactory,
    SoftswitchServer,
    assert_hears,
    assert_silent,
    band_energy_ratio,
    dominant_frequency,
    free_port,
    rms,
    write_tone,
)
from tests.integration.harness.kamailio import TEST_USERS
from tests.integration.harness.rawsip import exchange, options_request
from tests.integration.harness.sipp import run_sipp, start_sipp, write_users_file
from tests.sipp import garbage

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


# -- audio helpers (no processes) ----------------------------------------------------------------------------


def test_audio_helpers_find_a_tone_and_reject_the_wrong_one(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "t.wav", 700, 1.0)
    assert abs(dominant_frequency(path) - 700) < 2
    assert band_energy_ratio(path, None, 680, 720) > 0.95
    assert 0.34 < rms(path) < 0.36  # a 0.5-amplitude sine
    assert_hears(path, 700, not_freq=1100)
    with pytest.raises(AssertionError, match=r"expected to hear 1100 Hz: dominant frequency 70\d"):
        assert_hears(path, 1100)


def test_audio_helpers_ignore_leading_silence_and_see_a_mixture(tmp_path: Path) -> None:
    rate = 8000
    t = np.arange(rate) / rate
    mixture = 0.3 * np.sin(2 * np.pi * 700 * t) + 0.3 * np.sin(2 * np.pi * 1100 * t)
    with_gap = np.concatenate([np.zeros(rate), mixture])
    assert (
        abs(dominant_frequency(with_gap, rate) - 700) < 3
        or abs(dominant_frequency(with_gap, rate) - 1100) < 3
    )
    assert 0.4 < band_energy_ratio(with_gap, rate, 660, 740) < 0.6
    silent = tmp_path / "silence.wav"
    import soundfile

    soundfile.write(str(silent), np.zeros(rate, dtype=np.float32), rate, subtype="PCM_16")
    assert_silent(silent)
    with pytest.raises(AssertionError, match="nearly\\) silent"):
        assert_hears(silent, 700)


# -- pjsua2 phones through Kamailio --------------------------------------------------------------------------


def test_phones_register_with_digest_over_udp_and_tcp_and_refresh(
    kamailio: Kamailio, phones: PhoneFactory
) -> None:
    alice, bob = phones.many(
        [
            ("alice", {"server": kamailio, "password": "pw-alice"}),
            ("bob", {"server": kamailio, "password": "pw-bob", "transport": "tcp"}),
        ],
        wait_registered=False,
    )
    assert alice.wait_registered()["expiration"] == 300
    assert bob.wait_registered()["expiration"] == 300
    assert bob.contact.endswith(";transport=tcp")
    refreshed = bob.register(expiry=120)
    assert refreshed["code"] == 200 and refreshed["expiration"] == 120
    gone = alice.unregister()
    assert gone["code"] == 200 and gone["expiration"] == 0
    # Unregistered alice is no longer reachable through the registrar.
    index = bob.call(kamailio.user_uri("alice", "tcp"))
    failed = bob.expect("call_state", call=index, state="DISCONNECTED")
    assert failed["code"] == 404, failed


def test_wrong_password_is_refused(kamailio: Kamailio, phones: PhoneFactory) -> None:
    mallory = phones("alice", server=kamailio, password="not-the-password", wait_registered=False)
    refused = mallory.expect("reg_state", code=lambda code: code in (401, 403))
    assert not refused["active"]


def test_call_through_kamailio_each_side_hears_the_other(
    kamailio: Kamailio, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    alice, bob = phones.many(
        [
            (
                "alice",
                {
                    "server": kamailio,
                    "password": "pw-alice",
                    "play": tones[700],
                    "record": tmp_path / "a.wav",
                },
            ),
            (
                "bob",
                {
                    "server": kamailio,
                    "password": "pw-bob",
                    "transport": "tcp",
                    "auto_answer": True,
                    "answer_delay": 0.1,
                    "play": tones[1100],
                    "record": tmp_path / "b.wav",
                },
            ),
        ]
    )
    index = alice.call(kamailio.user_uri("bob"))
    invite = bob.expect("incoming_call")["invite"]
    assert f"Record-Route: <sip:127.0.0.1:{kamailio.port}" in invite  # it went through the proxy
    assert alice.expect("call_state", call=index, state="EARLY")["code"] == 180
    alice.expect("call_state", call=index, state="CONFIRMED")
    bob.expect("call_state", state="CONFIRMED")
    alice.expect("media_active")
    bob.expect("media_active")
    # Let 1.5 s of audio flow; the call must stay up meanwhile.
    alice.expect_no("call_state", within=1.5, state="DISCONNECTED")
    alice.hangup()
    assert bob.expect("call_state", state="DISCONNECTED")["code"] == 200
    alice_heard = Path(alice.expect("record_done")["path"])
    bob_heard = Path(bob.expect("record_done")["path"])
    assert_hears(alice_heard, 1100, not_freq=700)
    assert_hears(bob_heard, 700, not_freq=1100)


def test_dtmf_arrives_by_rfc2833_and_by_sip_info(kamailio: Kamailio, phones: PhoneFactory) -> None:
    alice, bob = phones.many(
        [
            ("alice", {"server": kamailio, "password": "pw-alice"}),
            ("bob", {"server": kamailio, "password": "pw-bob", "auto_answer": True}),
        ]
    )
    alice.call(kamailio.user_uri("bob"))
    alice.expect("media_active")
    bob.expect("media_active")
    alice.dtmf("19#")
    got = [bob.expect("dtmf", method="rfc2833")["digit"] for _ in range(3)]
    assert got == ["1", "9", "#"]
    # One INFO at a time: Kamailio's parallel UDP workers may reorder two back-to-back INFOs, and a
    # phone rightly refuses the one with the lower CSeq once the higher has arrived (RFC 3261 12.2.2).
    got = []
    for digit in "*5":
        alice.dtmf(digit, method="info")
        got.append(bob.expect("dtmf", method="info")["digit"])
    assert got == ["*", "5"]
    assert any(e["event"] == "tsx_rx" and e["cseq"] == "INFO" for e in bob.events)
    bob.expect_no("dtmf", within=0.4)  # no digit reported twice


def test_hold_and_unhold_and_audio_comes_back(
    kamailio: Kamailio, phones: PhoneFactory, tones: dict[int, Path], tmp_path: Path
) -> None:
    alice, bob = phones.many(
        [
            ("alice", {"server": kamailio, "password": "pw-alice", "play": tones[700]}),
            ("bob", {"server": kamailio, "password": "pw-bob", "auto_answer": True}),
        ]
    )
    alice.call(kamailio.user_uri("bob"))
    alice.expect("media_active")
    bob.expect("media_active")
    alice.hold()
    alice.expect("media_state", status="LOCAL_HOLD")
    bob.expect("media_state", status="REMOTE_HOLD")
    alice.unhold()
    alice.expect("media_active")
    bob.expect("media_active")
    # The re-INVITE recreated the stream: what bob receives after unhold must be alice's tone again.
    bob.record(tmp_path / "after-unhold.wav")
    bob.expect_no("call_state", within=1.0, state="DISCONNECTED")
    done = bob.stop_record()
    assert_hears(done["path"], 700)


def test_busy_callee_and_unknown_user(kamailio: Kamailio, phones: PhoneFactory) -> None:
    alice, _bob = phones.many(
        [
            ("alice", {"server": kamailio, "password": "pw-alice"}),
            ("bob", {"server": kamailio, "password": "pw-bob", "auto_answer": True, "answer_code": 486}),
        ]
    )
    index = alice.call(kamailio.user_uri("bob"))
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == 486
    index = alice.call(kamailio.user_uri("nobody"))
    assert alice.expect("call_state", call=index, state="DISCONNECTED")["code"] == 404


def test_baresip_and_pjsua2_hear_each_other_through_kamailio(
    kamailio: Kamailio,
    phones: PhoneFactory,
    baresips,
    tones: dict[int, Path],
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    bob = baresips(
        "bob", server=kamailio, password="pw-bob", transport="tcp", auto_answer=True, source=tones[1100]
    )
    alice = phones("alice", server=kamailio, password="pw-alice", play=tones[700], record=tmp_path / "a.wav")
    index = alice.call(kamailio.user_uri("bob"))
    alice.expect("call_state", call=index, state="CONFIRMED")
    assert bob.expect("CALL_ESTABLISHED")["peeruri"] == "sip:alice@127.0.0.1"
    alice.expect_no("call_state", within=1.2, state="DISCONNECTED")
    alice.hangup()
    bob.expect("CALL_CLOSED")
    assert_hears(alice.expect("record_done")["path"], 1100, not_freq=700)
    assert_hears(bob.recording("dec"), 700, not_freq=1100)
    # And the other way round: baresip dials, pjsua2 answers.
    alice.set_auto_answer(True)
    bob.dial(kamailio.user_uri("alice", "tcp"))
    alice.expect("call_state", state="CONFIRMED")
    bob.expect("CALL_ESTABLISHED")
    bob.hangup()
    assert alice.expect("call_state", state="DISCONNECTED")["code"] == 200


# -- failure reporting of the harness itself ----------------------------------------------------------------


def test_a_missed_expectation_names_what_was_seen_and_shows_the_sip_log(
    kamailio: Kamailio, phones: PhoneFactory
) -> None:
    alice = phones("alice", server=kamailio, password="pw-alice")
    with pytest.raises(AssertionError) as caught:
        alice.expect("incoming_call", timeout=0.3, remote_uri="sip:nobody@example.com")
    report = str(caught.value)
    assert "expected incoming_call with remote_uri='sip:nobody@example.com' within 0.3 s; timed out" in report
    assert '"event": "reg_state"' in report  # the events that did arrive
    assert "REGISTER sip:127.0.0.1" in report  # the tail of the pjsip log: the last SIP messages


def test_a_driver_that_dies_fails_fast_with_its_exit_code(kamailio: Kamailio, phones: PhoneFactory) -> None:
    alice = phones("alice", server=kamailio, password="pw-alice")
    alice.kill()
    with pytest.raises(AssertionError, match="the driver exited"):
        alice.expect("incoming_call", timeout=30)


# -- sipp ---------------------------------------------------------------------------------------------------


def test_sipp_registers_200_users_from_an_injection_file(make_kamailio, sipp_dir: Path) -> None:  # type: ignore[no-untyped-def]
    users = {f"user{i:03d}": f"secret-{i}" for i in range(200)}
    kam = make_kamailio(users=users)
    inf = write_users_file(sipp_dir / "users.csv", users, kam.domain)
    result = run_sipp("reg_auth", kam.address, directory=sipp_dir, inf=inf, calls=200, rate=400)
    result.assert_ok(successful=200)
    assert result.latency(2)["count"] == 200.0  # one REGISTER->200 response time per user


def test_sipp_wrong_passwords_are_refused(kamailio: Kamailio, sipp_dir: Path) -> None:
    inf = write_users_file(sipp_dir / "bad.csv", TEST_USERS, kamailio.domain, password_override="wrong")
    refused = run_sipp("reg_auth_expect_fail", kamailio.address, directory=sipp_dir, inf=inf, calls=5)
    refused.assert_ok(successful=5)
    # And the scenario that expects success does fail on them (the runner reports it).
    accepted = run_sipp("reg_auth", kamailio.address, directory=sipp_dir, inf=inf, calls=1)
    assert accepted.returncode == 1 and accepted.failed == 1, accepted.describe()
    assert "401" in accepted.errors


def test_sipp_options_over_udp_and_tcp(kamailio: Kamailio, sipp_dir: Path) -> None:
    for transport in ("udp", "tcp"):
        result = run_sipp("options", kamailio.address, directory=sipp_dir, calls=3, transport=transport)
        result.assert_ok(successful=3)


def test_sipp_caller_reaches_a_registered_sipp_callee_through_kamailio(make_kamailio, sipp_dir: Path) -> None:  # type: ignore[no-untyped-def]
    kam = make_kamailio(invite_auth=False)  # uac_basic is a trunk-style caller without credentials
    # Register the callee's address first (reg_auth's Contact is sipp's own ip:port), then answer there.
    inf = write_users_file(sipp_dir / "svc.csv", {"svc": TEST_USERS["svc"]}, kam.domain)
    uas_port = free_port("udp+tcp")
    run_sipp("reg_auth", kam.address, directory=sipp_dir, inf=inf, calls=1, local_port=uas_port).assert_ok()
    uas = start_sipp(
        "uas_answer", None, directory=sipp_dir, calls=2, local_port=uas_port, extra_args=["-d", "50"]
    )
    uas.wait_listening()
    uac = run_sipp(
        "uac_basic",
        kam.address,
        directory=sipp_dir,
        service="svc",
        calls=2,
        rate=20,
        extra_args=["-d", "100"],
    )
    uac.assert_ok(successful=2)
    uas.wait(10).assert_ok(successful=2)


def test_sipp_cancel_while_a_pjsua2_phone_rings(make_kamailio, phones: PhoneFactory, sipp_dir: Path) -> None:  # type: ignore[no-untyped-def]
    kam = make_kamailio(invite_auth=False)
    bob = phones("bob", server=kam, password="pw-bob")  # rings (180) and never answers
    result = run_sipp(
        "uac_cancel", kam.address, directory=sipp_dir, service="bob", calls=1, extra_args=["-d", "200"]
    )
    result.assert_ok(successful=1)
    assert bob.expect("call_state", state="DISCONNECTED")["code"] == 487


def test_garbage_payloads_get_an_acceptable_answer_and_kamailio_survives(kamailio: Kamailio) -> None:
    seen = {}
    for item in garbage.PAYLOADS.values():
        for transport in item.transports:
            try:
                reply = garbage.send(item, "127.0.0.1", kamailio.port, transport=transport, timeout=0.2)
            except ConnectionError:
                continue
            seen[(item.name, transport)] = reply.codes[0] if reply.codes else "drop"
    assert seen[("no_cseq", "udp")] in garbage.PAYLOADS["no_cseq"].acceptable
    assert seen[("empty", "udp")] == "drop"
    probe = exchange(options_request("127.0.0.1", kamailio.port), "127.0.0.1", kamailio.port)
    assert probe.codes == [200], seen


# -- our switch: config, certificates, and (once it can start) a real start -------------------------------


def test_softswitch_config_has_free_ports_sqlite_and_a_verifiable_certificate(tmp_path: Path) -> None:
    server = SoftswitchServer(
        tmp_path,
        agents=[{"id": "alice", "password": "pw-alice", "extension": "1001"}, "bob"],
        extra_config={"server": {"registrar": {"min_expires": 10}}},
    )
    path = server.write_config()
    config = yaml.safe_load(path.read_text())
    ports = {server.udp_port, server.tcp_port, server.tls_port, server.control_port}
    assert len(ports) == 4 and 0 not in ports
    assert config["server"]["listen"] == [
        f"udp://127.0.0.1:{server.udp_port}",
        f"tcp://127.0.0.1:{server.tcp_port}",
        f"tls://127.0.0.1:{server.tls_port}",
    ]
    assert config["server"]["database"] == f"sqlite:///{tmp_path / 'softswitch' / 'softswitch.db'}"
    assert config["server"]["registrar"] == {"min_expires": 10}  # extra_config merged in
    assert config["agents"][1] == {"id": "bob", "password": "pw-bob"}
    assert config["agents"][0]["extension"] == "1001"  # stays a string in YAML
    low, high = server.rtp_ports
    assert high - low + 1 == 200 and low % 2 == 0 and high < 32768

    # The certificate verifies against the test CA for 127.0.0.1 (what a verifying phone checks).
    assert server.ca_file is not None and server.cert_file is not None and server.key_file is not None
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server.cert_file, server.key_file)
    client_ctx = ssl.create_default_context(cafile=str(server.ca_file))
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        errors: list[BaseException] = []

        def serve_one() -> None:
            try:
                conn, _ = listener.accept()
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except BaseException as exc:  # reported by the assert below
                errors.append(exc)

        thread = threading.Thread(target=serve_one)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.recv(2) == b"ok"
        thread.join(5)
        assert not errors


def test_softswitch_config_passes_the_switch_own_validation(tmp_path: Path) -> None:
    try:
        from softswitch.config.load import load_settings
    except ImportError as exc:  # the loader belongs to another area and may not be there yet
        pytest.skip(f"softswitch.config.load is not importable yet: {exc}")
    server = SoftswitchServer(tmp_path, agents=["alice", "bob"])
    settings = load_settings(server.write_config())
    assert str(settings.server.domain) == "127.0.0.1"


def _switch_can_start() -> str | None:
    probe = subprocess.run(
        [sys.executable, "-c", "import softswitch.app"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return None if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1]


def test_softswitch_serve_starts_registers_phones_and_restarts(make_softswitch, phones: PhoneFactory) -> None:  # type: ignore[no-untyped-def]
    problem = _switch_can_start()
    if problem is not None:
        pytest.skip(f"softswitch.app cannot be imported yet ({problem})")
    server = make_softswitch(agents=["alice", "bob"])
    alice = phones("alice", server=server, password="pw-alice")
    bob = phones(
        "bob", server=server, password="pw-bob", transport="tls", ca_file=server.ca_file, verify_server=True
    )
    assert alice.events and bob.events
    ports = (server.udp_port, server.tcp_port, server.tls_port)
    server.restart()
    assert (server.udp_port, server.tcp_port, server.tls_port) == ports
    assert alice.register()["code"] == 200
