"""Registrar (RFC 3261 §10.3) decisions on literal times, without sockets or transactions."""

from __future__ import annotations

import pytest

from softswitch.sip.flow import Flow
from softswitch.sip.location import LocationTable
from softswitch.sip.parser import parse_message
from softswitch.sip.registrar import Refusal, Registrar, RegistrarPolicy

FLOW = Flow("udp", ("198.51.100.7", 40123), ("0.0.0.0", 5060))
OTHER_FLOW = Flow("udp", ("198.51.100.7", 40999), ("0.0.0.0", 5060))


def register(
    contacts: list[str] | None = None,
    *,
    user: str = "alice",
    expires: int | None = None,
    call_id: str = "reg-1@phone",
    cseq: int = 1,
    to_user: str | None = None,
):
    lines = [
        "REGISTER sip:cc.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-1;rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@cc.example.com>;tag=f1",
        f"To: <sip:{to_user or user}@cc.example.com>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: TestPhone/1.0",
    ]
    for contact in contacts or []:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines.append("Content-Length: 0")
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(
        LocationTable(),
        RegistrarPolicy(min_expires=60, max_expires=3600, default_expires=600, max_contacts=3),
        domain="cc.example.com",
    )


def do(registrar: Registrar, request, *, flow: Flow = FLOW, now: float = 100.0):
    return registrar.register(request, flow, user="alice", to_tag="tt", now=now, wall=1_700_000_000.0)


def test_new_binding_remembers_flow_and_lists_contacts(registrar: Registrar) -> None:
    outcome = do(registrar, register(["<sip:alice@192.168.1.20:5060>"], expires=300))
    assert outcome.changed and outcome.response.status == 200
    (binding,) = outcome.bindings
    assert binding.flow == FLOW and binding.expires_at == 400.0
    assert binding.user_agent == "TestPhone/1.0"
    assert outcome.response.headers.get_all("contact") == ["<sip:alice@192.168.1.20:5060>;expires=300"]
    assert outcome.response.to.tag == "tt"
    assert "date" in outcome.response.headers


def test_contact_expires_param_wins_over_header_and_default_applies(registrar: Registrar) -> None:
    outcome = do(registrar, register(["<sip:a@10.0.0.1>;expires=120", "<sip:a@10.0.0.2>"], expires=900))
    expiries = sorted(b.expires_at - 100.0 for b in outcome.bindings)
    assert expiries == [120.0, 900.0]
    outcome = do(registrar, register(["<sip:a@10.0.0.3>"], cseq=2), now=110.0)
    assert any(b.expires_at == 110.0 + 600 for b in outcome.bindings)  # default_expires


def test_interval_too_brief_gets_423_with_min_expires(registrar: Registrar) -> None:
    outcome = do(registrar, register(["<sip:alice@10.0.0.1>"], expires=10))
    assert outcome.refusal is Refusal.INTERVAL_TOO_BRIEF
    assert outcome.response.status == 423
    assert outcome.response.headers.get("min-expires") == "60"
    assert not outcome.changed and len(registrar.location) == 0


def test_expiry_above_max_is_clamped(registrar: Registrar) -> None:
    outcome = do(registrar, register(["<sip:alice@10.0.0.1>"], expires=99999))
    assert outcome.bindings[0].expires_at == 100.0 + 3600


def test_refresh_updates_and_zero_removes(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300))
    outcome = do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300, cseq=2), now=200.0)
    assert [b.expires_at for b in outcome.bindings] == [500.0]
    outcome = do(registrar, register(["<sip:alice@10.0.0.1>;expires=0"], cseq=3), now=210.0)
    assert outcome.changed and outcome.bindings == ()
    assert "contact" not in outcome.response.headers


def test_star_with_expires_zero_removes_everything(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"], expires=300))
    outcome = do(registrar, register(["*"], expires=0, call_id="other@x", cseq=1), now=120.0)
    assert outcome.changed and outcome.bindings == () and len(registrar.location) == 0


def test_star_needs_expires_zero(registrar: Registrar) -> None:
    outcome = do(registrar, register(["*"], expires=60))
    assert outcome.refusal is Refusal.STAR_NEEDS_EXPIRES_0 and outcome.response.status == 400


def test_query_without_contact_lists_bindings_without_change(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300))
    outcome = do(registrar, register([], cseq=2), now=150.0)
    assert not outcome.changed
    assert outcome.response.headers.get_all("contact") == ["<sip:alice@10.0.0.1>;expires=250"]


def test_out_of_order_cseq_changes_nothing(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300, cseq=5))
    outcome = do(registrar, register(["<sip:alice@10.0.0.1>"], expires=0, cseq=4), now=120.0)
    assert outcome.response.status == 200 and not outcome.changed
    assert len(registrar.location) == 1


def test_registering_someone_else_is_forbidden(registrar: Registrar) -> None:
    outcome = do(registrar, register(["<sip:x@10.0.0.1>"], to_user="bob"))
    assert outcome.refusal is Refusal.NOT_YOUR_AOR and outcome.response.status == 403


def test_instance_id_identifies_the_binding_across_address_changes(registrar: Registrar) -> None:
    inst = '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    do(registrar, register([f"<sip:alice@10.0.0.1>;+sip.instance={inst};reg-id=1"], expires=300))
    outcome = do(
        registrar,
        register([f"<sip:alice@10.0.0.9>;+sip.instance={inst};reg-id=1"], expires=300, cseq=2),
        flow=OTHER_FLOW,
        now=130.0,
    )
    (binding,) = outcome.bindings
    assert binding.contact == "sip:alice@10.0.0.9" and binding.flow == OTHER_FLOW


def test_refresh_from_new_nat_port_moves_the_registration_to_the_new_flow(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@192.168.1.20>"], expires=300))
    outcome = do(registrar, register(["<sip:alice@192.168.1.20>"], expires=300, cseq=2), flow=OTHER_FLOW)
    assert [b.flow for b in outcome.bindings] == [OTHER_FLOW]


def test_max_contacts_evicts_the_oldest(registrar: Registrar) -> None:
    for i in range(4):
        do(registrar, register([f"<sip:alice@10.0.0.{i}>"], expires=300, call_id=f"c{i}"), now=100.0 + i)
    contacts = sorted(b.contact for b in registrar.location.bindings("sip:alice@cc.example.com", now=104.0))
    assert contacts == ["sip:alice@10.0.0.1", "sip:alice@10.0.0.2", "sip:alice@10.0.0.3"]


def test_malformed_contact_expires_is_a_400_naming_contact(registrar: Registrar) -> None:
    outcome = do(registrar, register(["<sip:alice@10.0.0.1>;expires=soon"]))
    assert outcome.response.status == 400 and "Contact" in outcome.response.reason


def test_location_expires_bindings_at_their_deadline(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300))
    location = registrar.location
    assert location.next_deadline() == 400.0
    assert location.expire(now=399.9) == []
    assert location.expire(now=400.0) == ["sip:alice@cc.example.com"]
    assert len(location) == 0 and location.next_deadline() is None


def test_refresh_moves_the_expiry_deadline(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300))
    do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300, cseq=2), now=350.0)
    location = registrar.location
    assert location.expire(now=400.0) == []  # the stale heap entry is skipped
    assert location.next_deadline() == 650.0


def test_frequent_refreshes_keep_the_expiry_heap_bounded_and_expiry_right(registrar: Registrar) -> None:
    # A NAT'd phone refreshing every 60 s against an hour's expiry must not grow memory with every refresh.
    # A binding that is not refreshed holds the heap's top, so stale entries cannot just surface and go.
    location = registrar.location
    do(registrar, register(["<sip:alice@10.0.0.9>"], expires=3600), now=100.0)  # until 3700
    contacts = ["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"]  # max_contacts is 3
    refreshes = 55
    for n in range(refreshes):
        now = 101.0 + 60.0 * n
        outcome = do(registrar, register(contacts, expires=3600, cseq=n + 2), now=now)
        assert outcome.response.status == 200
        assert location.next_deadline() == 3700.0  # the switch asks after every change
    last = 101.0 + 60.0 * (refreshes - 1)
    assert len(location) == 3
    assert len(location._heap) <= 2 * 3 + 64 < 2 * refreshes
    assert location.expire(now=3700.0) == ["sip:alice@cc.example.com"]
    assert len(location) == 2 and location.next_deadline() == last + 3600
    assert location.expire(now=last + 3599.9) == []
    assert location.expire(now=last + 3600) == ["sip:alice@cc.example.com"]
    assert len(location) == 0 and location.next_deadline() is None


def test_an_unchanged_binding_in_a_partial_refresh_keeps_its_own_deadline(registrar: Registrar) -> None:
    do(registrar, register(["<sip:alice@10.0.0.1>"], expires=300))  # expires at 400
    do(registrar, register(["<sip:alice@10.0.0.2>"], expires=600, cseq=2), now=200.0)  # expires at 800
    location = registrar.location
    assert len(location) == 2 and location.next_deadline() == 400.0
    assert location.expire(now=400.0) == ["sip:alice@cc.example.com"]
    assert [b.contact for b in location.bindings("sip:alice@cc.example.com", now=400.0)] == [
        "sip:alice@10.0.0.2"
    ]
    assert len(location) == 1 and location.next_deadline() == 800.0
