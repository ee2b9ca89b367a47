"""A fake wire for calls through the switch: phones on one side and the other, the B2BUA in the middle.

Every party is a real sans-IO `Endpoint`. A `Phone` is an Endpoint with an `InviteLayer` as its usage, a
simple user agent the test scripts (accept, ring, reject, re-INVITE ...). The `Net`'s switch is an Endpoint
with a `B2bua` as its usage, given the `MediaHooks`, authorizer and routing callbacks the test chooses
(`FakeHooks` and `FakeAuthorizer` below, or callflow.py's real ones). `Net.pump` delivers every datagram
each side queued, as bytes parsed again on arrival, after showing it to the filters (which may lose or
rewrite it), and collects the phones' leg events and the switch's call events. Time is data: timers fire
only in `Net.run_until`, at the deadlines the endpoints name.

The h11 `ConnectionPair` / aioquic `client_and_server()` idea of style 9.17, for three or more parties.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from softswitch.sip.auth import DigestAuthenticator
from softswitch.sip.b2bua import B2bua, Call, CallEvent, MediaHooks, MediaRefused, Side, Target
from softswitch.sip.endpoint import AuthCheck, Endpoint, EndpointConfig
from softswitch.sip.flow import Flow
from softswitch.sip.guard import Guard
from softswitch.sip.invite import InviteLayer, InviteReceived, Leg, LegEvent
from softswitch.sip.location import Binding
from softswitch.sip.message import Request, Response
from softswitch.sip.parser import parse_message
from softswitch.sip.timers import TimerValues
from softswitch.sip.transaction import ServerTransaction

__all__ = [
    "DOMAIN",
    "SWITCH",
    "FakeAuthorizer",
    "FakeHooks",
    "Net",
    "Phone",
    "drop",
    "sdp",
]

DOMAIN = "switch.example"
SWITCH = ("203.0.113.1", 5060)
TRUNK_HOST = "192.0.2.200"

E = TypeVar("E")
Message = Request | Response
#: (from, to, message) -> the message to deliver (maybe rewritten), or None to lose it.
Filter = Callable[[str, str, Message], Message | None]


def sdp(label: str, *, host: str = "192.0.2.1", port: int = 4000, extra: Iterable[str] = ()) -> bytes:
    """A small session description whose s= line names where it came from (so tests can tell bodies apart)."""
    lines = [
        "v=0",
        f"o={label.split()[0]} 1 1 IN IP4 {host}",
        f"s={label}",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _endpoint(domain: str, host: str, timers: TimerValues) -> Endpoint:
    config = EndpointConfig(domain=domain, aliases=frozenset({host}), timers=timers, qualify_interval=0.0)
    return Endpoint(
        config,
        authenticator=DigestAuthenticator(domain, b"k" * 32, algorithms=("MD5",)),
        guard=Guard(),
        credentials=lambda user, algorithm: None,
    )


@dataclass
class Phone:
    """A SIP phone: an Endpoint with an InviteLayer, scripted by the test."""

    net: Net
    name: str
    address: tuple[str, int]
    endpoint: Endpoint
    layer: InviteLayer
    events: list[LegEvent] = field(default_factory=list)

    @property
    def flow(self) -> Flow:
        """The phone's flow to the switch."""
        return Flow("udp", SWITCH, self.address)

    @property
    def switch_flow(self) -> Flow:
        """The switch's flow to the phone (where the REGISTER would have come from)."""
        return Flow("udp", self.address, SWITCH)

    @property
    def contact(self) -> str:
        return f"sip:{self.name}@{self.address[0]}:{self.address[1]}"

    def target(self, label: str | None = None) -> Target:
        """How the switch reaches this phone (its registered contact and flow)."""
        return Target(self.contact, self.switch_flow, self.name if label is None else label)

    def binding(self, aor: str, *, expires_at: float = 3600.0) -> Binding:
        return Binding(aor, self.contact, expires_at, self.switch_flow, f"reg-{self.name}", 1, key=self.name)

    def call(
        self,
        number: str,
        *,
        sdp: bytes | None,
        user: str | None = None,
        call_id: str | None = None,
        host: str = DOMAIN,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Leg:
        """Send an INVITE for `number` to the switch (with digest credentials for `user`, if given)."""
        extra = list(headers)
        if user is not None:
            extra.append(("Authorization", credentials(user, f"sip:{number}@{host}")))
        return self.layer.invite(
            request_uri=f"sip:{number}@{host}",
            flow=self.flow,
            from_uri=f"sip:{self.name}@{self.name}.example",
            from_display=self.name.title(),
            to_uri=f"sip:{number}@{host}",
            sdp=sdp,
            now=self.net.now,
            headers=extra,
            call_id=call_id,
        )

    def take(self) -> list[LegEvent]:
        out, self.events = self.events, []
        return out

    def one(self, kind: type[E]) -> E:
        """The one event in the queue, which must be a `kind`."""
        events = self.take()
        assert len(events) == 1 and isinstance(events[0], kind), (self.name, events)
        return events[0]

    def incoming(self) -> Leg:
        """The leg of the one INVITE that arrived (the only event in the queue)."""
        return self.one(InviteReceived).leg


def credentials(user: str, uri: str) -> str:
    return f'Digest username="{user}", realm="{DOMAIN}", nonce="n0", uri="{uri}", response="{"0" * 32}"'


@dataclass
class FakeAuthorizer:
    """Accepts the users in `users` (by the Authorization username), challenges requests without
    credentials (401), and refuses everyone else (403). `checked` counts the calls."""

    users: set[str] = field(default_factory=lambda: {"alice", "bob", "carol"})
    checked: list[str] = field(default_factory=list)

    def check_auth(self, tx: ServerTransaction, *, now: float) -> AuthCheck:
        value = tx.request.headers.get("authorization")
        if value is None:
            self.checked.append("")
            challenge = f'Digest realm="{DOMAIN}", nonce="n0", algorithm=MD5, qop="auth"'
            return AuthCheck(None, 401, None, (("WWW-Authenticate", challenge),))
        user = value.split('username="', 1)[1].split('"', 1)[0]
        self.checked.append(user)
        if user in self.users:
            return AuthCheck(user)
        return AuthCheck(None, 403, "Forbidden")


@dataclass
class FakeHooks:
    """Records every hook call as (name, side, sdp in) and answers with `sdp("<name> <n>")`, a body that
    says which hook made it. `refuse[name]` makes that hook raise the MediaRefused given; the hooks named
    in `none` return None (a delayed offer passed through)."""

    calls: list[tuple[str, Side | None, bytes | None]] = field(default_factory=list)
    made: dict[str, list[bytes]] = field(default_factory=dict)
    refuse: dict[str, MediaRefused] = field(default_factory=dict)
    none: set[str] = field(default_factory=set)

    def _hook(self, name: str, side: Side | None, body: bytes | None) -> bytes | None:
        self.calls.append((name, side, body))
        if name in self.refuse:
            raise self.refuse[name]
        if name in self.none:
            return None
        made = self.made.setdefault(name, [])
        out = sdp(f"{name} {len(made) + 1}", host=SWITCH[0], port=40000)
        made.append(out)
        return out

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def offer_for_b(self, call: Call, sdp: bytes | None, *, now: float) -> bytes | None:
        return self._hook("offer_for_b", None, sdp)

    def answer_for_a(self, call: Call, fork: Leg, sdp: bytes | None, *, now: float) -> bytes | None:
        return self._hook("answer_for_a", None, sdp)

    def acked_by_a(self, call: Call, sdp: bytes, *, now: float) -> bytes | None:
        return self._hook("acked_by_a", "a", sdp)

    def offer_for_other(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        return self._hook("offer_for_other", side, sdp)

    def answer_for_other(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        return self._hook("answer_for_other", side, sdp)

    def answer_locally(self, call: Call, side: Side, sdp: bytes | None, *, now: float) -> bytes | None:
        return self._hook("answer_locally", side, sdp)


class Net:
    """The switch and its phones on a fake network (see the module docstring).

    `on_event`, when given, sees every call event of the B2BUA as it is collected (callflow's `handle`);
    the events are kept in `events` either way.
    """

    def __init__(
        self,
        *,
        hooks: MediaHooks | None = None,
        authorizer: Any = None,
        trunk_for: Callable[[str], str | None] | None = None,
        public_number: Callable[[str], bool] = lambda number: number.startswith("5"),
        on_event: Callable[[CallEvent, float], None] | None = None,
        timers: TimerValues | None = None,
    ) -> None:
        self.timers = timers or TimerValues()
        self.now = 0.0
        self.hooks = hooks if hooks is not None else FakeHooks()
        self.authorizer = authorizer if authorizer is not None else FakeAuthorizer()
        self.endpoint = _endpoint(DOMAIN, SWITCH[0], self.timers)
        self.b2bua = B2bua(
            self.endpoint,
            timers=self.timers,
            hooks=self.hooks,
            authorizer=self.authorizer,
            trunk_for=trunk_for or (lambda host: "carrier" if host == TRUNK_HOST else None),
            domain=DOMAIN,
            public_number=public_number,
        )
        self.b2bua.invites.rng = random.Random(1)  # the §14.1 retry delays, the same on every run
        self.endpoint.usage = self.b2bua
        self.on_event = on_event
        self.phones: dict[tuple[str, int], Phone] = {}
        self.events: list[CallEvent] = []
        self.all_events: list[CallEvent] = []
        self.filters: list[Filter] = []
        self.log: list[tuple[str, str, Message]] = []
        self.lost: list[tuple[str, str, Message]] = []

    def phone(self, name: str, host: str, port: int = 5060) -> Phone:
        endpoint = _endpoint(f"{name}.example", host, self.timers)
        layer = InviteLayer(endpoint, timers=self.timers, rng=random.Random(name))
        endpoint.usage = layer
        phone = Phone(self, name, (host, port), endpoint, layer)
        self.phones[phone.address] = phone
        return phone

    # -- delivery ----------------------------------------------------------------------------------------

    def _deliver(self, src: str, dst: str, data: bytes) -> Message | None:
        message: Message | None = parse_message(data)
        for keep in self.filters:
            assert message is not None
            message = keep(src, dst, message)
            if message is None:
                self.lost.append((src, dst, parse_message(data)))
                return None
        assert message is not None
        self.log.append((src, dst, message))
        return message

    def pump(self) -> None:
        """Deliver everything every party queued until nothing moves; collect the events."""
        moved = True
        while moved:
            moved = False
            for data, flow in self.endpoint.outgoing():
                moved = True
                assert flow.local == SWITCH, flow
                phone = self.phones[flow.remote]
                message = self._deliver("switch", phone.name, data)
                if message is not None:
                    phone.endpoint.receive(bytes(message), phone.flow, now=self.now)
            for phone in list(self.phones.values()):
                for data, flow in phone.endpoint.outgoing():
                    moved = True
                    assert flow == phone.flow, (phone.name, flow)
                    message = self._deliver(phone.name, "switch", data)
                    if message is not None:
                        self.endpoint.receive(bytes(message), phone.switch_flow, now=self.now)
            moved = self._collect() or moved

    def _collect(self) -> bool:
        seen = False
        for phone in self.phones.values():
            while (leg_event := phone.layer.next_event()) is not None:
                phone.events.append(leg_event)
                seen = True
        while (event := self.b2bua.next_event()) is not None:
            seen = True
            self.events.append(event)
            self.all_events.append(event)
            if self.on_event is not None:
                self.on_event(event, self.now)
        return seen

    def deadline(self) -> float | None:
        endpoints = [self.endpoint, *(p.endpoint for p in self.phones.values())]
        found = [d for e in endpoints if (d := e.next_deadline()) is not None]
        return min(found) if found else None

    def run_until(self, until: float) -> None:
        """Fire every timer due up to `until`, in order, delivering what each sends; then set the time."""
        self.pump()
        while (due := self.deadline()) is not None and due <= until:
            self.now = max(self.now, due)
            for endpoint in (self.endpoint, *(p.endpoint for p in self.phones.values())):
                endpoint.handle_timer(now=self.now)
            self.pump()
        self.now = max(self.now, until)

    def run_out(self, limit: float = 3600.0) -> None:
        """Fire every timer there is; they must all end before `limit`."""
        while (due := self.deadline()) is not None:
            assert due < limit, "timers that never end"
            self.run_until(due)

    def quiet(self) -> None:
        """After every timer: no call, no leg, no timer and no transaction anywhere."""
        self.run_out()
        assert self.b2bua.calls == {}
        assert self.b2bua.invites.legs() == ()
        assert self.b2bua.next_deadline() is None
        assert len(self.endpoint.transactions) == 0
        for phone in self.phones.values():
            assert phone.layer.legs() == (), phone.name
            assert len(phone.endpoint.transactions) == 0, phone.name
            assert phone.endpoint.next_deadline() is None, phone.name

    # -- looking at what happened ------------------------------------------------------------------------

    def take(self) -> list[CallEvent]:
        out, self.events = self.events, []
        return out

    def of(self, kind: type[E]) -> list[E]:
        """The queued call events of one kind (the others stay queued)."""
        found = [e for e in self.events if isinstance(e, kind)]
        self.events = [e for e in self.events if not isinstance(e, kind)]
        return found

    def one(self, kind: type[E]) -> E:
        """The one queued call event of `kind` (there must be exactly one; the others stay queued)."""
        found = self.of(kind)
        assert len(found) == 1, (kind.__name__, found, self.events)
        return found[0]

    def requests(self, src: str, dst: str, method: str) -> list[Request]:
        return [
            m
            for s, d, m in self.log
            if (s, d) == (src, dst) and isinstance(m, Request) and m.method == method
        ]

    def responses(self, src: str, dst: str, status: int, method: str = "INVITE") -> list[Response]:
        return [
            m
            for s, d, m in self.log
            if (s, d) == (src, dst)
            and isinstance(m, Response)
            and m.status == status
            and m.cseq.method == method
        ]


def drop(
    src: str,
    dst: str,
    *,
    method: str | None = None,
    status: int | None = None,
    times: int | None = None,
) -> Filter:
    """A filter that loses the matching messages from `src` to `dst` (the first `times`, or all; with
    neither `method` nor `status`, every message)."""
    left = [times]

    def keep(s: str, d: str, message: Message) -> Message | None:
        if (s, d) != (src, dst):
            return message
        if method is not None or status is not None:
            if isinstance(message, Request):
                hit = message.method == method
            else:
                hit = message.status == status
            if not hit:
                return message
        if left[0] is not None:
            if left[0] == 0:
                return message
            left[0] -= 1
        return None

    return keep
