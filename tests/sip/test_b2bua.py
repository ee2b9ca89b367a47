"""The B2BUA (sip/b2bua.py) on a fake wire with time as data: a caller phone, the switch, callee phones.

Each phone is a real Endpoint + InviteLayer the test scripts; the switch is an Endpoint + B2bua with
`FakeHooks` (which record every media hook call and answer with bodies that name the hook) and a
`FakeAuthorizer`. See wire.py.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from wire import DOMAIN, SWITCH, TRUNK_HOST, Net, Phone, drop, sdp

from softswitch.sip.b2bua import (
    NO_RESPONSE_TIMEOUT,
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
    InviteReceived,
    Leg,
    LegState,
    ProvisionalReceived,
    ReinviteCancelled,
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


class LastChoice(random.Random):
    """An rng whose `randint` always picks the upper bound (the longest §14.1 retry delay)."""

    def randint(self, a: int, b: int) -> int:
        return b


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


def test_a_delayed_offer_from_the_caller_is_answered_in_its_ack() -> None:
    net, alice, (bob,) = party("bob")
    a_leg, call = incoming(net, alice, offer=None)
    (b_leg,) = ring(net, call, [bob])
    assert net.hooks.calls == [("offer_for_b", None, None)]  # the hooks make an offer of their own
    bob.layer.accept(b_leg, ANSWER, now=net.now)
    net.pump()
    offer = alice.one(Answered).sdp
    assert offer == net.hooks.made["answer_for_a"][0]  # for the caller, our 2xx carries an offer
    alice.layer.ack(a_leg, HOLD, now=net.now)
    net.pump()
    assert net.hooks.calls[-1] == ("acked_by_a", "a", HOLD)
    assert call.state is CallState.BRIDGED and not call.leg_a.negotiating


def test_a_delayed_offer_passed_through_gets_the_callers_answer_to_the_callee() -> None:
    net, alice, (bob,) = party("bob")
    net.hooks.none.add("offer_for_b")
    a_leg, call = incoming(net, alice, offer=None)
    (b_leg,) = ring(net, call, [bob])
    assert b_leg.remote_sdp is None
    bob.layer.accept(b_leg, ANSWER, now=net.now)  # bob's 200 carries the offer
    net.pump()
    assert net.hooks.calls[-1] == ("answer_for_a", None, ANSWER)
    alice.layer.ack(a_leg, HOLD, now=net.now)
    net.run_until(5.0)
    assert ("acked_by_a", "a", HOLD) in net.hooks.calls
    acks = net.requests("switch", "bob", "ACK")
    assert len(acks) == 1 and acks[0].body == net.hooks.made["acked_by_a"][0]
    net.run_until(40.0)  # past 64*T1: bob would have given up on an unacknowledged 2xx
    assert call.state is CallState.BRIDGED
    assert not b_leg.negotiating and not call.leg_b.negotiating
    assert len(net.requests("switch", "bob", "ACK")) == 1
    assert net.requests("switch", "bob", "BYE") == [] and net.requests("bob", "switch", "BYE") == []


def test_a_passed_through_delayed_offer_the_caller_never_answers_ends_the_call() -> None:
    net, alice, (bob,) = party("bob")
    net.hooks.none.add("offer_for_b")
    a_leg, call = incoming(net, alice, offer=None)
    (b_leg,) = ring(net, call, [bob])
    bob.layer.accept(b_leg, ANSWER, now=net.now)
    net.pump()
    alice.layer.ack(a_leg, None, now=net.now)  # an ACK without the answer it owes (RFC 3264 §4)
    net.run_until(5.0)
    assert len(net.requests("switch", "bob", "ACK")) == 1  # bob's 2xx is acknowledged all the same
    assert call.state is CallState.ENDED and call.end_cause == "media_refused"
    assert len(net.requests("switch", "bob", "BYE")) == 1 and len(net.requests("switch", "alice", "BYE")) == 1


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


@pytest.mark.parametrize("add", [False, True])
def test_the_first_connect_sets_the_ring_deadline_even_with_add(add: bool) -> None:
    """`add=True` on a call with no fork out (the ACD's first offer) rings for `ring_timeout`, not until
    the routing safety net's deadline."""
    net, alice, (bob, carol) = party("bob", "carol")
    _a_leg, call = incoming(net, alice)
    net.now = 1.0
    net.b2bua.connect(call, [bob.target()], now=net.now, ring_timeout=10.0, add=add)
    net.run_until(5.0)
    net.b2bua.connect(call, [carol.target()], now=net.now, ring_timeout=3.0, add=True)  # earlier: ignored
    net.run_until(10.9)
    assert net.of(ConnectFailed) == []
    net.run_until(11.0)
    assert net.one(ConnectFailed).statuses == (480,)
    assert [e.target.label for e in net.of(ForkFailed)] == ["bob", "carol"]


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
    bob.layer.rng = LastChoice()  # bob retries after 491 at the end of §14.1's window: 2 s
    bob.layer.reinvite(b_leg, HELD, now=net.now)
    net.pump()
    assert net.hooks.calls == []
    assert len(net.responses("switch", "bob", 491)) == 1
    net.run_until(net.now + 10.0)  # the 2xx retransmission at 0.5 s brings the ACK; bob's retry goes through
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


def test_a_callee_that_never_answers_at_all_is_given_up_after_the_no_response_timeout() -> None:
    """Not even a 100 Trying: the phone is gone. The switch does not wait for Timer B (32 s)."""
    net, alice, (bob,) = party("bob")
    net.filters.append(drop("switch", "bob"))
    _a_leg, call = incoming(net, alice)
    start = net.now
    net.b2bua.connect(call, [bob.target()], now=net.now, ring_timeout=60.0)
    net.run_until(start + NO_RESPONSE_TIMEOUT - 0.1)
    assert net.of(ConnectFailed) == []
    net.run_until(start + NO_RESPONSE_TIMEOUT)
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


# ---------------------------------------------------------------------------------------------------------
# property: any interleaving of caller, callee and switch actions and timers ends with nothing left
# ---------------------------------------------------------------------------------------------------------


class Op(NamedTuple):
    """One random step: `kind`, on the `index`th call or leg, with a choice `pick` and a `number`."""

    kind: str
    index: int = 0
    pick: int = 0
    number: float = 0


def op(kind: str, **fields: st.SearchStrategy[object]) -> st.SearchStrategy[Op]:
    return st.fixed_dictionaries(fields).map(lambda values: Op(kind, **values))  # type: ignore[arg-type]


INDEX = st.sampled_from([0, 0, 1, 2])
PICK = st.integers(0, 5)
ROUTE_KINDS = ["connect", "connect", "answer", "answer_connect", "add", "reject", "hangup", "stop", "reoffer"]
PHONE_ACTIONS = ["bye", "reinvite", "update", "respond", "respond", "info", "ack"]
BRIDGE = op("bridge", pick=PICK, number=st.sampled_from([3.0, 40.0]))
STEPS = st.one_of(
    op("call", pick=PICK),
    BRIDGE,
    op("route", index=INDEX, pick=st.integers(0, len(ROUTE_KINDS) - 1), number=st.sampled_from([3.0, 40.0])),
    op("ring", index=INDEX, number=st.sampled_from([180, 183])),
    op("answer", index=INDEX),
    op("answer", index=INDEX),
    op("refuse", index=INDEX, number=st.sampled_from([404, 480, 486, 603])),
    op("cancel", index=INDEX),
    op("phone", index=st.integers(0, 5), pick=st.integers(0, len(PHONE_ACTIONS) - 1), number=PICK),
    op("phone", index=st.integers(0, 5), pick=st.integers(0, len(PHONE_ACTIONS) - 1), number=PICK),
    op("lose", pick=st.integers(0, 7), number=st.integers(1, 3)),
    op("pump"),
    op("advance", number=st.sampled_from([0.3, 1.0, 2.5, 5.0, 40.0])),
    op("advance", number=st.sampled_from([0.3, 1.0, 2.5, 5.0, 40.0])),
)
SCRIPTS = st.tuples(op("call", pick=PICK) | BRIDGE, st.lists(STEPS, min_size=10, max_size=50)).map(
    lambda parts: [parts[0], *parts[1]]
)


UNANSWERED = (LegState.INCOMING, LegState.EARLY)


class Scenario:
    """Two callers, two callees and the switch on one wire, driven by random steps. It checks as it goes
    that a call reports nothing after its one CallEnded and that `b2bua.calls` holds exactly the calls
    still going; `finish` hangs up whatever is live and checks that nothing is left."""

    def __init__(self) -> None:
        self.net = net = Net()
        self.callers = [net.phone("alice", ALICE), net.phone("carol", "192.0.2.11")]
        self.callees = [net.phone("bob1", "198.51.100.2"), net.phone("bob2", "198.51.100.3")]
        self.calls: list[Call] = []
        self.ended: dict[str, int] = {}
        self.answered: set[str] = set()
        self.callee_legs: list[tuple[Phone, Leg]] = []
        self.phone_legs: list[tuple[Phone, Leg]] = []  # every leg of every phone, in order of appearance
        self.pending: dict[int, str] = {}  # id(phone leg) -> the method of its unanswered offer
        self.losing = [0, ("alice", "switch")]
        net.filters.append(self._lossy)

    def _lossy(self, src: str, dst: str, message: Request | Response) -> Request | Response | None:
        if self.losing[0] and (src, dst) == self.losing[1]:
            self.losing[0] = int(self.losing[0]) - 1
            return None
        return message

    def collect(self) -> None:
        net = self.net
        for event in net.take():
            call = event.call
            if isinstance(event, CallIncoming):
                self.calls.append(call)
                continue
            assert self.ended.get(call.id, 0) == 0, f"{event} after the call ended"
            if isinstance(event, CallEnded):
                self.ended[call.id] = 1
                assert call.state is CallState.ENDED
            elif isinstance(event, CallAnswered):
                assert call.id not in self.answered, f"{event} twice"
                self.answered.add(call.id)
                assert call.leg_b is not None and call.a_answered
        live = {c.id for c in self.calls if c.id not in self.ended}
        assert set(net.b2bua.calls) == live
        for phone in (*self.callers, *self.callees):
            for happened in phone.take():
                leg = happened.leg
                if isinstance(happened, InviteReceived):
                    self.callee_legs.append((phone, leg))
                    self.phone_legs.append((phone, leg))
                elif isinstance(happened, ReinviteReceived):
                    self.pending[id(leg)] = "INVITE"
                elif isinstance(happened, UpdateReceived):
                    self.pending[id(leg)] = "UPDATE"
                elif isinstance(happened, Ended | Failed | Cancelled | ReinviteCancelled):
                    self.pending.pop(id(leg), None)

    def apply(self, step: Op) -> None:
        net = self.net
        now = net.now
        b2bua = net.b2bua
        kind = step.kind
        if kind == "bridge" and len(self.calls) < 3:
            # A call routed at once, rung (180 or 183 with SDP, or not at all) and, unless `pick` is 5,
            # answered by the first callee it rings (if no message is lost on the way).
            self.apply(step._replace(kind="call"))
            if len(self.calls) > len(self.ended) and self.calls[-1].state is CallState.INCOMING:
                self.apply(Op("route", 0, 0, step.number + step.pick % 3))
                if step.pick in (2, 3, 4, 5):
                    self.apply(Op("ring", 0, 0, 183 if step.pick == 4 else 180))
                if step.pick != 5:
                    self.apply(Op("answer", 0))
            return
        if kind == "call" and len(self.calls) < 3:
            phone = self.callers[step.pick % 2]
            public = step.pick >= 4
            offer = None if step.pick in (1, 5) else OFFER
            leg = phone.call("5000" if public else "1002", sdp=offer, user=None if public else phone.name)
            self.phone_legs.append((phone, leg))
        elif kind == "route" and step.index < len(live := [c for c in self.calls if c.id not in self.ended]):
            call = live[-1 - step.index]
            what = ROUTE_KINDS[step.pick]
            targets = [[p.target()] for p in self.callees] + [[p.target() for p in self.callees]]
            chosen = targets[int(step.number) % 3]
            if what in ("connect", "answer_connect") and call.state in (
                CallState.INCOMING,
                CallState.ANSWERED,
            ):
                if what == "answer_connect":
                    b2bua.answer(call, sdp("moh", host=SWITCH[0]), now=now)
                b2bua.connect(call, chosen, now=now, ring_timeout=step.number)
            elif what == "add" and call.state is CallState.CONNECTING:
                b2bua.connect(call, chosen[:1], now=now, ring_timeout=step.number, add=True)
            elif what == "answer":
                b2bua.answer(call, sdp("moh", host=SWITCH[0]), now=now)
            elif what == "reject":
                b2bua.reject(call, 486, now=now)
            elif what == "hangup":
                b2bua.hangup(call, now=now)
            elif what == "stop":
                b2bua.stop_connecting(call, now=now)
            elif what == "reoffer":
                b2bua.reoffer(call, "a" if step.number < 10 else "b", sdp("resume", host=SWITCH[0]), now=now)
        elif kind in ("ring", "answer", "refuse"):
            # The callee legs still ringing, the newest first.
            ringing = [(p, leg) for p, leg in reversed(self.callee_legs) if leg.state in UNANSWERED]
            if step.index < len(ringing):
                phone, leg = ringing[step.index]
                if kind == "ring":
                    early = ANSWER if step.number == 183 else None
                    phone.layer.provisional(leg, int(step.number), sdp=early, now=now)
                elif kind == "answer":
                    phone.layer.accept(leg, ANSWER, now=now)
                else:
                    phone.layer.reject(leg, int(step.number), now=now)
        elif kind == "cancel":
            callers = [(p, leg) for p, leg in self.phone_legs if leg.role == "uac"]
            if step.index < len(callers):
                phone, leg = callers[step.index]
                phone.layer.cancel(leg, now=now)
        elif kind == "phone" and step.index < len(self.phone_legs):
            self._phone_action(*self.phone_legs[step.index], PHONE_ACTIONS[step.pick], int(step.number))
        elif kind == "lose":
            parties = ["alice", "carol", "bob1", "bob2"]
            party_name = parties[step.pick % 4]
            self.losing[:] = [
                int(step.number),
                ("switch", party_name) if step.pick < 4 else (party_name, "switch"),
            ]
        elif kind == "pump":
            net.pump()
        elif kind == "advance":
            net.run_until(now + step.number)
        net.pump()
        self.collect()

    def _phone_action(self, phone: Phone, leg: Leg, action: str, number: int) -> None:
        layer = phone.layer
        now = self.net.now
        over = leg.state in (LegState.TERMINATING, LegState.TERMINATED)
        if action == "bye" and (
            over or not (leg.role == "uas" and leg.state in (LegState.INCOMING, LegState.EARLY))
        ):
            layer.bye(leg, now=now)
        elif action == "reinvite" and (over or (leg.state is LegState.CONFIRMED and not leg.negotiating)):
            layer.reinvite(leg, HOLD if number % 2 else None, now=now)
        elif action == "update" and (over or (leg.state is LegState.CONFIRMED and not leg.negotiating)):
            layer.update(leg, HOLD, now=now)
        elif action == "respond":
            method = self.pending.pop(id(leg), None)
            status = 488 if number == 5 else 200
            if method == "INVITE":
                layer.answer_reinvite(leg, sdp=HELD, status=status, now=now)
            elif method == "UPDATE":
                layer.answer_update(leg, sdp=HELD, status=status, now=now)
        elif action == "info" and (over or leg.state is LegState.CONFIRMED):
            layer.info(leg, "application/dtmf-relay", f"Signal={number}\r\n".encode(), now=now)
        elif action == "ack" and leg._ack_pending is not None:
            layer.ack(leg, HELD, now=now)

    def finish(self) -> None:
        """Stop losing messages and let the timers run; then the switch hangs up every call it still
        has, and that alone must end every phone's leg. Then every timer fires and nothing is left."""
        net = self.net
        self.losing[0] = 0
        for _ in range(3):
            net.run_until(net.now + 40.0)  # longer than any transaction timer (64*T1)
            self.collect()
            for call in list(net.b2bua.calls.values()):
                net.b2bua.hangup(call, now=net.now)
            net.pump()
            self.collect()
        assert net.b2bua.calls == {}
        live = [(p.name, leg) for p in (*self.callers, *self.callees) for leg in p.layer.legs()]
        assert live == [], "phone legs the switch left behind"
        net.quiet()
        self.collect()
        for call in self.calls:
            assert self.ended.get(call.id) == 1, call
            assert call.state is CallState.ENDED
        assert not [e for e in net.all_events if isinstance(e, CallEnded) and e.call not in self.calls]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=SCRIPTS)
def test_any_interleaving_ends_with_no_call_leg_or_transaction_left(steps: list[Op]) -> None:
    note(repr(steps))
    scenario = Scenario()
    for step in steps:
        scenario.apply(step)
    scenario.finish()
