"""The B2BUA (sip/b2bua.py) on a fake wire with time as data: a caller phone, the switch, callee phones.

Each phone is a real Endpoint + InviteLayer the test scripts; the switch is an Endpoint + B2bua with
`FakeHooks` (which record every media hook call and answer with bodies that name the hook) and a
`FakeAuthorizer`. See wire.py.
"""

from __future__ import annotations

import pytest
from wire import DOMAIN, SWITCH, TRUNK_HOST, Net, Phone, drop, sdp

from softswitch.sip.b2bua import (
    Call,
    CallAnswered,
    CallDtmf,
    CallEnded,
    CallIncoming,
    CallRinging,
    CallState,
    ConnectFailed,
    ForkFailed,
    MediaRefused,
    best_failure,
)
from softswitch.sip.invite import (
    Answered,
    Cancelled,
    Ended,
    Failed,
    Leg,
    LegState,
    ProvisionalReceived,
    ReinviteCompleted,
    ReinviteReceived,
    UpdateReceived,
)
from softswitch.sip.message import Request, Response

ALICE = "192.0.2.10"
OFFER = sdp("alice", host=ALICE, port=4000)
ANSWER = sdp("bob", host="198.51.100.2", port=5000)
HOLD = sdp("alice-hold", host=ALICE, port=4000, extra=("a=sendonly",))
HELD = sdp("bob-held", host="198.51.100.2", port=5000, extra=("a=recvonly",))
COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'


def party(*callees: str) -> tuple[Net, Phone, list[Phone]]:
    """A switch, Alice's phone, and one phone per callee name (bob at .2, bob2 at .3 ...)."""
    net = Net()
    alice = net.phone("alice", ALICE)
    return net, alice, [net.phone(name, f"198.51.100.{i + 2}") for i, name in enumerate(callees)]


def incoming(
    net: Net, caller: Phone, number: str = "1002", *, offer: bytes | None = OFFER, user: str | None = "alice"
) -> tuple[Leg, Call]:
    """`caller` dials `number`; returns its leg and the call the switch reported."""
    leg = caller.call(number, sdp=offer, user=user)
    net.pump()
    return leg, net.one(CallIncoming).call


def ring(net: Net, call: Call, callees: list[Phone], *, ring_timeout: float = 60.0) -> list[Leg]:
    """Connect `call` to every callee; returns each callee's incoming leg."""
    net.b2bua.connect(call, [p.target() for p in callees], now=net.now, ring_timeout=ring_timeout)
    net.pump()
    return [p.incoming() for p in callees]


def bridged(net: Net, caller: Phone, callee: Phone) -> tuple[Leg, Call, Leg]:
    """A call from `caller` answered by `callee`; every event queue emptied."""
    a_leg, call = incoming(net, caller)
    (b_leg,) = ring(net, call, [callee])
    callee.layer.accept(b_leg, ANSWER, now=net.now)
    net.pump()
    assert caller.one(Answered).leg is a_leg
    callee.take()
    net.one(CallAnswered)
    assert net.take() == []
    assert call.state is CallState.BRIDGED
    return a_leg, call, b_leg


def ended(net: Net, call: Call) -> CallEnded:
    """The call's one CallEnded (of every event the switch reported so far)."""
    found = [e for e in net.all_events if isinstance(e, CallEnded) and e.call is call]
    assert len(found) == 1, found
    return found[0]


def call_events(net: Net, call: Call) -> list[type]:
    return [type(e) for e in net.all_events if e.call is call]


def state(leg: Leg) -> LegState:
    """A leg's state, read through a call so the type checker does not narrow it for good."""
    return leg.state


# ---------------------------------------------------------------------------------------------------------
# a basic call
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_basic_call_180_200_ack_both_legs_and_bye_ends_the_other_leg(hangs_up: str) -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call = incoming(net, alice)
    assert (call.dialed, call.caller_number, call.caller_user, call.trunk) == ("1002", "alice", "alice", None)
    assert call.caller_name == "Alice" and call.state is CallState.INCOMING
    assert net.responses("switch", "alice", 100) and net.requests("switch", "bob", "INVITE") == []

    (b_leg,) = ring(net, call, [bob])
    assert net.hooks.calls == [("offer_for_b", None, OFFER)]
    assert b_leg.remote_sdp == net.hooks.made["offer_for_b"][0]
    assert call.state is CallState.CONNECTING

    bob.layer.provisional(b_leg, 180, now=net.now)
    net.pump()
    ringing = alice.one(ProvisionalReceived)
    assert (ringing.status, ringing.sdp) == (180, None)
    event = net.one(CallRinging)
    assert (event.status, event.early_media) == (180, False)

    bob.layer.accept(b_leg, ANSWER, now=net.now)
    net.pump()
    answered = net.one(CallAnswered)
    assert (answered.target.label, answered.sdp) == ("bob", ANSWER)
    assert net.hooks.calls[-1] == ("answer_for_a", None, ANSWER)
    assert alice.one(Answered).sdp == net.hooks.made["answer_for_a"][0]
    assert bob.take() and state(a_leg) is LegState.CONFIRMED and state(b_leg) is LegState.CONFIRMED
    assert len(net.requests("alice", "switch", "ACK")) == 1  # the caller ACKs our 2xx
    assert len(net.requests("switch", "bob", "ACK")) == 1  # we ACK the callee's
    assert call.state is CallState.BRIDGED and call.leg_b is not None and call.a_answered
    assert net.take() == []

    hanger, other, leg = (alice, bob, a_leg) if hangs_up == "caller" else (bob, alice, b_leg)
    hanger.layer.bye(leg, now=net.now)
    net.pump()
    assert hanger.one(Ended).by == "local"
    gone = other.one(Ended)
    assert (gone.by, gone.reason) == ("remote", "bye")
    end = ended(net, call)
    assert (end.cause, end.by, end.status) == ("bye", hangs_up, None)
    assert net.b2bua.calls == {}
    assert len(net.requests("switch", other.name, "BYE")) == 1
    net.quiet()
    assert call_events(net, call).count(CallEnded) == 1


def test_each_leg_is_its_own_dialog_nothing_of_leg_a_leaks_into_leg_b() -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call, b_leg = bridged(net, alice, bob)
    (invite_a,) = net.requests("alice", "switch", "INVITE")
    (invite_b,) = net.requests("switch", "bob", "INVITE")
    (ok_a,) = net.responses("switch", "alice", 200)
    (ok_b,) = net.responses("bob", "switch", 200)

    assert invite_b.call_id != invite_a.call_id
    assert invite_b.from_.tag not in (invite_a.from_.tag, ok_a.to.tag)
    assert ok_a.to.tag not in (ok_b.to.tag, invite_b.from_.tag)
    assert str(invite_b.contacts[0].uri) == f"sip:softswitch@{SWITCH[0]}:{SWITCH[1]}"
    assert str(ok_a.contacts[0].uri) == f"sip:softswitch@{SWITCH[0]}:{SWITCH[1]}"
    assert invite_b.via.host == SWITCH[0] and len(invite_b.vias) == 1
    assert str(invite_b.uri) == bob.contact and invite_b.from_.display == "Alice"
    assert str(invite_b.from_.uri) == f"sip:alice@{DOMAIN}"
    # Leg A's identifiers (Call-ID, tags, its phone's address and branch) appear nowhere on leg B.
    secrets = [invite_a.call_id, invite_a.from_.tag, ok_a.to.tag, invite_a.via.branch, ALICE]
    assert all(secrets)
    for src, dst, message in net.log:
        if "bob" in (src, dst):
            data = bytes(message).decode()
            assert not [s for s in secrets if s and s in data], (src, dst, message)
    assert invite_b.body == net.hooks.made["offer_for_b"][0] and invite_b.body != OFFER

    # In-dialog requests stay in their own dialog too: bob's BYE reaches alice in leg A's dialog.
    bob.layer.bye(b_leg, now=net.now)
    net.pump()
    (bye,) = net.requests("switch", "alice", "BYE")
    assert bye.call_id == a_leg.call_id and bye.from_.tag == ok_a.to.tag and bye.to.tag == a_leg.local_tag
    assert ended(net, call).by == "callee"
    net.quiet()


def test_183_with_sdp_goes_to_the_caller_through_answer_for_a() -> None:
    net, alice, (bob,) = party("bob")
    _a_leg, call = incoming(net, alice)
    (b_leg,) = ring(net, call, [bob])
    early = sdp("bob-early", host="198.51.100.2", port=5000)
    bob.layer.provisional(b_leg, 183, sdp=early, now=net.now)
    net.pump()
    assert net.hooks.calls[-1] == ("answer_for_a", None, early)
    progress = alice.one(ProvisionalReceived)
    assert (progress.status, progress.sdp) == (183, net.hooks.made["answer_for_a"][0])
    event = net.one(CallRinging)
    assert (event.status, event.early_media) == (183, True)
    bob.layer.accept(b_leg, None, now=net.now)  # the 200 repeats the 183's answer
    net.pump()
    assert net.hooks.calls[-1] == ("answer_for_a", None, early)
    assert alice.one(Answered).sdp == net.hooks.made["answer_for_a"][1]
    assert net.one(CallAnswered).sdp == early


# ---------------------------------------------------------------------------------------------------------
# forks
# ---------------------------------------------------------------------------------------------------------


def test_forks_both_ring_the_first_200_wins_and_the_other_gets_cancel_with_a_reason() -> None:
    net, alice, (bob1, bob2) = party("bob1", "bob2")
    a_leg, call = incoming(net, alice)
    leg1, leg2 = ring(net, call, [bob1, bob2])
    assert leg1.call_id != leg2.call_id
    assert len(net.hooks.made["offer_for_b"]) == 1 and leg1.remote_sdp == leg2.remote_sdp
    for phone, leg in ((bob1, leg1), (bob2, leg2)):
        phone.layer.provisional(leg, 180, now=net.now)
    net.pump()
    assert len(net.responses("switch", "alice", 180)) == 1  # the caller hears one ringing
    assert net.one(CallRinging).status == 180
    alice.take()

    bob2.layer.accept(leg2, ANSWER, now=net.now)
    net.pump()
    answered = net.one(CallAnswered)
    assert answered.target.label == "bob2" and call.leg_b is not None
    assert call.target is not None and call.target.label == "bob2"
    (cancel,) = net.requests("switch", "bob1", "CANCEL")
    assert cancel.headers.get("reason") == COMPLETED_ELSEWHERE
    assert bob1.one(Cancelled).leg is leg1
    assert net.requests("switch", "bob2", "CANCEL") == []
    assert alice.one(Answered).leg is a_leg
    assert net.of(ForkFailed) == [] and net.take() == []

    alice.layer.bye(a_leg, now=net.now)
    net.pump()
    assert bob2.take()[-1] == Ended(leg2, "remote", "bye")
    assert ended(net, call).by == "caller"
    net.quiet()


def test_a_late_200_from_the_losing_fork_is_acked_and_byed() -> None:
    net, alice, (bob1, bob2) = party("bob1", "bob2")
    a_leg, call = incoming(net, alice)
    leg1, leg2 = ring(net, call, [bob1, bob2])
    for phone, leg in ((bob1, leg1), (bob2, leg2)):
        phone.layer.provisional(leg, 180, now=net.now)
    net.pump()
    net.one(CallRinging)
    # Both answer before either hears from the switch; bob1's 200 is delivered first.
    bob1.layer.accept(leg1, ANSWER, now=net.now)
    bob2.layer.accept(leg2, ANSWER, now=net.now)
    net.pump()
    assert net.one(CallAnswered).target.label == "bob1"
    assert len(net.responses("switch", "alice", 200)) == 1
    assert alice.take()[-1] == Answered(a_leg, net.hooks.made["answer_for_a"][0])
    assert net.hooks.names().count("answer_for_a") == 1  # the loser's answer is never anchored
    assert len(net.requests("switch", "bob2", "CANCEL")) == 1
    assert len(net.requests("switch", "bob2", "ACK")) == 1
    (bye,) = net.requests("switch", "bob2", "BYE")
    assert bye.to.tag == leg2.local_tag
    assert bob2.take()[-1] == Ended(leg2, "remote", "bye")
    assert call.leg_b is not None and call.state is CallState.BRIDGED
    assert state(leg1) is LegState.CONFIRMED
    assert net.take() == []

    bob1.layer.bye(leg1, now=net.now)
    net.pump()
    assert (ended(net, call).cause, ended(net, call).by) == ("bye", "callee")
    net.quiet()


def test_cancel_from_the_caller_cancels_every_fork_and_gets_487() -> None:
    net, alice, (bob1, bob2) = party("bob1", "bob2")
    a_leg, call = incoming(net, alice)
    leg1, leg2 = ring(net, call, [bob1, bob2])
    bob1.layer.provisional(leg1, 180, now=net.now)
    net.pump()
    alice.take()
    alice.layer.cancel(a_leg, now=net.now)
    net.pump()
    assert alice.one(Failed).status == 487
    assert bob1.one(Cancelled).leg is leg1 and bob2.one(Cancelled).leg is leg2
    end = ended(net, call)
    assert (end.cause, end.by, end.status) == ("cancelled", "caller", 487)
    assert net.b2bua.calls == {} and call.state is CallState.ENDED
    net.quiet()
    assert [t for t in call_events(net, call) if t is not CallRinging] == [CallIncoming, CallEnded]


def test_ring_timeout_fails_the_connect_while_the_caller_waits_then_reject_sends_480() -> None:
    net, alice, (bob,) = party("bob")
    net.now = 10.0
    a_leg, call = incoming(net, alice)
    (b_leg,) = ring(net, call, [bob], ring_timeout=25.0)
    bob.layer.provisional(b_leg, 180, now=net.now)
    net.run_until(34.9)
    assert net.of(ConnectFailed) == []
    net.run_until(35.0)
    failed = net.one(ConnectFailed)
    assert (failed.status, failed.statuses, failed.reason) == (480, (480,), "no answer")
    assert net.one(ForkFailed).status == 480
    assert bob.take()[-1] == Cancelled(b_leg)
    assert state(a_leg) is LegState.EARLY and alice.take() == [ProvisionalReceived(a_leg, 180, None)]
    assert call.state is CallState.INCOMING and call.id in net.b2bua.calls

    net.b2bua.reject(call, failed.status, now=net.now)
    net.pump()
    assert alice.one(Failed).status == 480
    end = ended(net, call)
    assert (end.cause, end.by, end.status) == ("rejected", "switch", 480)
    net.quiet()


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((486, 603, 480), 603),  # a 6xx beats everything
        ((600, 486), 600),
        ((480, 486, 404), 486),  # then busy
        ((480, 404), 404),  # then the lowest other status
        ((500, 488, 480), 488),
        ((408, 503), 480),  # timeouts and dead flows say "unavailable"
        ((487,), 480),
    ],
)
def test_all_forks_fail_the_most_telling_status_wins(statuses: tuple[int, ...], expected: int) -> None:
    net, alice, callees = party(*(f"bob{i}" for i in range(len(statuses))))
    _a_leg, call = incoming(net, alice)
    legs = ring(net, call, callees)
    for phone, leg, status in zip(callees, legs, statuses, strict=True):
        phone.layer.reject(leg, status, now=net.now)
        net.pump()
    failed = net.one(ConnectFailed)
    assert (failed.status, failed.statuses) == (expected, statuses)
    assert [e.status for e in net.of(ForkFailed)] == list(statuses)
    assert sorted(call.fork_results.values()) == sorted(statuses)
    net.b2bua.reject(call, failed.status, now=net.now)
    net.pump()
    assert alice.take()[-1].status == expected  # type: ignore[union-attr]
    net.quiet()


def test_best_failure_table() -> None:
    assert best_failure([]) == 480
    assert best_failure([604, 600]) == 600
    assert best_failure([603, 600]) == 603
    assert best_failure([486, 480, 408]) == 486
    assert best_failure([404, 403]) == 403
    assert best_failure([503, 408, 480, 487]) == 480


def test_stop_connecting_leaves_the_caller_untouched() -> None:
    net, alice, (bob, carol) = party("bob", "carol")
    a_leg, call = incoming(net, alice)
    (b_leg,) = ring(net, call, [bob], ring_timeout=20.0)
    bob.layer.provisional(b_leg, 180, now=net.now)
    net.pump()
    alice.take()
    net.take()
    net.b2bua.stop_connecting(call, now=net.now)
    net.pump()
    assert bob.one(Cancelled).leg is b_leg
    assert alice.take() == [] and state(a_leg) is LegState.EARLY
    assert net.take() == [] and call.state is CallState.INCOMING and call.forks == {}
    net.run_until(40.0)  # the old ring deadline passes without a word
    assert net.take() == [] and alice.take() == []
    assert net.responses("switch", "alice", 487) == []

    (c_leg,) = ring(net, call, [carol])  # the layer above tries someone else
    carol.layer.accept(c_leg, ANSWER, now=net.now)
    net.pump()
    assert net.one(CallAnswered).target.label == "carol"
    assert isinstance(alice.take()[-1], Answered)


# ---------------------------------------------------------------------------------------------------------
# re-INVITE, UPDATE, INFO
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("asker", ["a", "b"])
def test_reinvite_passes_through_the_hooks_and_the_answer_reaches_the_asker(asker: str) -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call, b_leg = bridged(net, alice, bob)
    (asking, asking_leg), (asked, asked_leg) = ((alice, a_leg), (bob, b_leg))
    if asker == "b":
        (asking, asking_leg), (asked, asked_leg) = (asked, asked_leg), (asking, asking_leg)
    asked_side = "b" if asker == "a" else "a"
    net.hooks.calls.clear()

    asking.layer.reinvite(asking_leg, HOLD, now=net.now)
    net.pump()
    assert net.hooks.calls == [("offer_for_other", asker, HOLD)]
    received = asked.one(ReinviteReceived)
    assert received.leg is asked_leg and received.sdp == net.hooks.made["offer_for_other"][0]
    assert asking.take() == []  # still waiting
    asked.layer.answer_reinvite(asked_leg, sdp=HELD, now=net.now)
    net.pump()
    assert net.hooks.calls[-1] == ("answer_for_other", asked_side, HELD)
    done = asking.one(ReinviteCompleted)
    assert (done.status, done.sdp) == (200, net.hooks.made["answer_for_other"][0])
    assert call.passing is None and not a_leg.negotiating and not b_leg.negotiating
    assert net.take() == []
    assert call.state is CallState.BRIDGED


def test_a_refused_reinvite_is_refused_to_the_asker_with_the_same_status() -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call, b_leg = bridged(net, alice, bob)
    alice.layer.reinvite(a_leg, HOLD, now=net.now)
    net.pump()
    bob.take()
    bob.layer.answer_reinvite(b_leg, status=488, now=net.now)
    net.pump()
    assert alice.one(ReinviteCompleted).status == 488
    assert "answer_for_other" not in net.hooks.names() and call.passing is None


def test_reinvite_while_the_other_leg_is_negotiating_gets_491() -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call, _b_leg = bridged(net, alice, bob)
    assert net.b2bua.reoffer(call, "b", sdp("resume", host=SWITCH[0]), now=net.now)
    net.pump()
    bob.one(ReinviteReceived)  # bob takes its time to answer the switch's offer
    net.hooks.calls.clear()
    alice.layer.reinvite(a_leg, HOLD, now=net.now)
    net.pump()
    assert len(net.responses("switch", "alice", 491)) == 1
    assert net.hooks.calls == [] and bob.take() == []
    assert call.passing is None


def test_reinvite_before_the_other_leg_acked_our_2xx_gets_491() -> None:
    """The callee re-INVITEs while the caller's ACK for our 200 is still on its way: leg A is negotiating,
    so §14.2 says 491 — the switch must not answer in the caller's place (answer_locally is for a leg
    alone)."""
    net, alice, (bob,) = party("bob")
    _a_leg, call = incoming(net, alice)
    (b_leg,) = ring(net, call, [bob])
    net.filters.append(drop("alice", "switch", method="ACK", times=1))
    bob.layer.accept(b_leg, ANSWER, now=net.now)
    net.pump()
    assert call.state is CallState.BRIDGED and call.leg_a.negotiating
    bob.take()
    net.hooks.calls.clear()
    bob.layer.reinvite(b_leg, HELD, now=net.now)
    net.pump()
    assert net.hooks.calls == []
    assert len(net.responses("switch", "bob", 491)) == 1
    net.run_until(net.now + 10.0)  # the 2xx retransmission brings the ACK; bob's retry goes through
    assert net.hooks.names() == ["offer_for_other"]
    assert alice.take()[-1].sdp == net.hooks.made["offer_for_other"][0]  # type: ignore[union-attr]


def test_reinvite_on_a_caller_alone_is_answered_locally() -> None:
    net, alice, _ = party()
    a_leg, call = incoming(net, alice, "5000", user=None)
    local = sdp("moh", host=SWITCH[0], port=40000)
    net.b2bua.answer(call, local, now=net.now)
    net.pump()
    assert alice.one(Answered).sdp == local and call.state is CallState.ANSWERED
    alice.layer.reinvite(a_leg, HOLD, now=net.now)
    net.pump()
    assert net.hooks.calls == [("answer_locally", "a", HOLD)]
    done = alice.one(ReinviteCompleted)
    assert (done.status, done.sdp) == (200, net.hooks.made["answer_locally"][0])
    alice.layer.update(a_leg, OFFER, now=net.now)
    net.pump()
    assert net.hooks.calls[-1] == ("answer_locally", "a", OFFER)
    assert alice.one(ReinviteCompleted).method == "UPDATE"


def test_update_passes_through_the_hooks() -> None:
    net, alice, (bob,) = party("bob")
    a_leg, _call, b_leg = bridged(net, alice, bob)
    net.hooks.calls.clear()
    bob.layer.update(b_leg, HELD, now=net.now)
    net.pump()
    assert net.hooks.calls == [("offer_for_other", "b", HELD)]
    received = alice.one(UpdateReceived)
    assert received.sdp == net.hooks.made["offer_for_other"][0]
    alice.layer.answer_update(a_leg, sdp=HOLD, now=net.now)
    net.pump()
    assert net.hooks.calls[-1] == ("answer_for_other", "a", HOLD)
    done = bob.one(ReinviteCompleted)
    assert (done.status, done.sdp, done.method) == (200, net.hooks.made["answer_for_other"][0], "UPDATE")
    assert net.requests("switch", "alice", "UPDATE") and net.requests("switch", "alice", "INVITE") == []


@pytest.mark.parametrize(
    ("who", "content_type", "body", "digit"),
    [
        ("a", "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("b", "application/dtmf-relay", b"Signal= #\r\n", "#"),
        ("a", "application/dtmf", b"d", "D"),
        ("b", "application/dtmf", b"12", None),
        ("a", "text/plain", b"5", None),
    ],
)
def test_info_dtmf_becomes_call_dtmf(who: str, content_type: str, body: bytes, digit: str | None) -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call, b_leg = bridged(net, alice, bob)
    phone, leg = (alice, a_leg) if who == "a" else (bob, b_leg)
    phone.layer.info(leg, content_type, body, now=net.now)
    net.pump()
    (ok,) = net.responses("switch", phone.name, 200, "INFO")
    assert ok.status == 200
    expected = [] if digit is None else [CallDtmf(call, who, digit)]  # type: ignore[arg-type]
    assert net.take() == expected


# ---------------------------------------------------------------------------------------------------------
# media refused
# ---------------------------------------------------------------------------------------------------------


def test_an_offer_the_hooks_refuse_gets_488_to_the_caller() -> None:
    net, alice, (bob,) = party("bob")
    net.hooks.refuse["offer_for_b"] = MediaRefused("no audio stream")
    _a_leg, call = incoming(net, alice)
    net.b2bua.connect(call, [bob.target()], now=net.now, ring_timeout=60.0)
    net.pump()
    assert alice.one(Failed).status == 488
    assert net.requests("switch", "bob", "INVITE") == []
    end = ended(net, call)
    assert (end.cause, end.by, end.status) == ("media_refused", "switch", 488)
    net.quiet()


def test_an_answer_the_hooks_refuse_byes_the_callee_and_fails_the_connect_488() -> None:
    net, alice, (bob,) = party("bob")
    net.hooks.refuse["answer_for_a"] = MediaRefused("no common codec")
    a_leg, call = incoming(net, alice)
    (b_leg,) = ring(net, call, [bob])
    bob.layer.accept(b_leg, ANSWER, now=net.now)
    net.pump()
    failed = net.one(ConnectFailed)
    assert (failed.status, failed.statuses) == (488, (488,))
    assert bob.take()[-1] == Ended(b_leg, "remote", "bye")
    assert state(a_leg) is LegState.PROCEEDING and alice.take() == []
    net.b2bua.reject(call, 488, now=net.now)
    net.pump()
    assert alice.one(Failed).status == 488
    net.quiet()


def test_a_reinvite_the_hooks_refuse_gets_488_and_the_call_goes_on() -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call, _b_leg = bridged(net, alice, bob)
    net.hooks.refuse["offer_for_other"] = MediaRefused("no audio stream")
    alice.layer.reinvite(a_leg, HOLD, now=net.now)
    net.pump()
    assert alice.one(ReinviteCompleted).status == 488
    assert bob.take() == [] and call.state is CallState.BRIDGED and net.take() == []


# ---------------------------------------------------------------------------------------------------------
# who may call
# ---------------------------------------------------------------------------------------------------------


def test_an_extension_without_credentials_is_challenged_then_accepted() -> None:
    net, alice, _ = party()
    first = alice.call("1002", sdp=OFFER)
    net.pump()
    failed = alice.one(Failed)
    assert failed.status == 401 and failed.response is not None
    assert "nonce=" in (failed.response.headers.get("www-authenticate") or "")
    assert net.take() == [] and net.b2bua.calls == {}
    second = alice.call("1002", sdp=OFFER, user="alice", call_id=first.call_id)
    net.pump()
    call = net.one(CallIncoming).call
    assert call.caller_user == "alice" and call.leg_a.call_id == second.call_id
    assert net.authorizer.checked == ["", "alice"]


def test_wrong_credentials_get_the_authorizers_403() -> None:
    net, alice, _ = party()
    alice.call("1002", sdp=OFFER, user="mallory")
    net.pump()
    assert alice.one(Failed).status == 403
    assert net.take() == []
    net.quiet()


def test_trunk_calls_skip_authentication() -> None:
    net, _alice, _ = party()
    trunk = net.phone("carrier", TRUNK_HOST)
    trunk.call("+15550100", sdp=OFFER, host=SWITCH[0])  # a trunk dials our address, not our domain
    net.pump()
    call = net.one(CallIncoming).call
    assert (call.trunk, call.caller_user, call.dialed) == ("carrier", None, "+15550100")
    assert net.authorizer.checked == []


@pytest.mark.parametrize("user", [None, "alice", "mallory"])
def test_public_numbers_skip_authentication_unless_credentials_come(user: str | None) -> None:
    net, alice, _ = party()
    alice.call("5000", sdp=OFFER, user=user)
    net.pump()
    assert net.authorizer.checked == ([] if user is None else [user])
    if user == "mallory":
        assert alice.one(Failed).status == 403 and net.take() == []
        return
    call = net.one(CallIncoming).call
    assert call.caller_user == user and call.dialed == "5000"


def test_max_forwards_zero_gets_483() -> None:
    net, alice, _ = party()

    def no_hops(src: str, dst: str, message: Request | Response) -> Request | Response:
        if isinstance(message, Request) and message.method == "INVITE":
            message.headers.set("Max-Forwards", "0")
        return message

    net.filters.append(no_hops)
    alice.call("1002", sdp=OFFER, user="alice")
    net.pump()
    assert alice.one(Failed).status == 483
    assert net.take() == [] and net.authorizer.checked == []
    net.quiet()


# ---------------------------------------------------------------------------------------------------------
# peers that go quiet
# ---------------------------------------------------------------------------------------------------------


def test_a_callee_that_rings_forever_ends_cleanly_at_the_ring_timeout() -> None:
    net, alice, (bob,) = party("bob")
    _a_leg, call = incoming(net, alice)
    (b_leg,) = ring(net, call, [bob], ring_timeout=120.0)
    bob.layer.provisional(b_leg, 180, now=net.now)
    net.run_until(119.0)  # Timer B does not run once the INVITE is proceeding
    assert net.of(ConnectFailed) == []
    net.run_until(120.0)
    net.b2bua.reject(call, net.one(ConnectFailed).status, now=net.now)
    net.quiet()
    assert ended(net, call).status == 480


def test_a_callee_that_never_answers_at_all_fails_at_timer_b() -> None:
    net, alice, (bob,) = party("bob")
    net.filters.append(drop("switch", "bob"))
    _a_leg, call = incoming(net, alice)
    net.b2bua.connect(call, [bob.target()], now=net.now, ring_timeout=60.0)
    net.run_until(31.9)
    assert net.of(ConnectFailed) == []
    net.run_until(32.0)  # Timer B = 64*T1
    failed = net.one(ConnectFailed)
    assert (failed.status, failed.statuses) == (480, (408,))
    net.b2bua.reject(call, failed.status, now=net.now)
    net.quiet()
    assert ended(net, call).cause == "rejected"


def test_a_caller_that_never_acks_ends_both_legs() -> None:
    net, alice, (bob,) = party("bob")
    net.filters.append(drop("alice", "switch", method="ACK"))
    a_leg, call = incoming(net, alice)
    (b_leg,) = ring(net, call, [bob])
    bob.layer.accept(b_leg, ANSWER, now=net.now)
    net.run_until(31.9)
    assert [type(e) for e in net.take()] == [CallAnswered]
    net.run_until(32.0)  # 64*T1 without an ACK
    end = ended(net, call)
    assert (end.cause, end.by) == ("ack_timeout", "switch")
    assert bob.take()[-1] == Ended(b_leg, "remote", "bye")
    net.quiet()
    assert state(a_leg) is LegState.TERMINATED


# ---------------------------------------------------------------------------------------------------------
# the caller answered by the switch first (a queue), bridged later
# ---------------------------------------------------------------------------------------------------------


def test_answer_then_connect_bridges_without_a_second_200_to_the_caller() -> None:
    net, alice, (agent,) = party("agent")
    _a_leg, call = incoming(net, alice, "5000", user=None)
    local = sdp("moh", host=SWITCH[0], port=40000)
    net.b2bua.answer(call, local, now=net.now)
    net.pump()
    assert alice.one(Answered).sdp == local
    net.now = 30.0
    (b_leg,) = ring(net, call, [agent], ring_timeout=15.0)
    agent.layer.provisional(b_leg, 180, now=net.now)
    net.pump()
    assert alice.take() == [] and net.responses("switch", "alice", 180) == []
    assert net.one(CallRinging).status == 180
    agent.layer.accept(b_leg, ANSWER, now=net.now)
    net.pump()
    answered = net.one(CallAnswered)
    assert (answered.target.label, answered.sdp) == ("agent", ANSWER)
    assert len(net.responses("switch", "alice", 200)) == 1 and alice.take() == []
    assert "answer_for_a" not in net.hooks.names()
    assert (call.state, call.answered_at) == (CallState.BRIDGED, 30.0)
    net.run_until(60.0)  # the ring deadline has no say any more
    assert net.take() == []
    agent.layer.bye(b_leg, now=net.now)
    net.pump()
    assert alice.one(Ended).by == "remote"
    assert ended(net, call).by == "callee"
    net.quiet()
