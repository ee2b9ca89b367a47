"""The sans-IO endpoint on literal times: bytes in, bytes and events out, no sockets."""

from __future__ import annotations

import hashlib

import pytest

from softswitch.sip.auth import DigestAuthenticator
from softswitch.sip.endpoint import (
    AuthFailed,
    BindingsExpired,
    BindingsRestored,
    Endpoint,
    EndpointConfig,
    MessageDropped,
    PersistBindings,
    ReachabilityChanged,
    SourceBanned,
)
from softswitch.sip.flow import Flow
from softswitch.sip.guard import Guard
from softswitch.sip.message import Response
from softswitch.sip.parser import parse_message
from softswitch.sip.registrar import RegistrarPolicy

REALM = "cc.example.com"
PHONE = Flow("udp", ("203.0.113.9", 41000), ("0.0.0.0", 5060))
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def lookup(user: str, algorithm: str) -> str | None:
    if user not in USERS or algorithm != "MD5":
        return None
    return md5(f"{user}:{REALM}:{USERS[user]}")


def make_endpoint(**config: object) -> Endpoint:
    settings: dict[str, object] = {
        "domain": REALM,
        "aliases": frozenset({"127.0.0.1"}),
        "registrar": RegistrarPolicy(min_expires=60, max_expires=3600, default_expires=600),
        "qualify_interval": 30.0,
        "qualify_timeout": 5.0,
        "advertise": {"udp": ("198.51.100.1", 5060)},
    }
    settings.update(config)
    cfg = EndpointConfig(**settings)  # type: ignore[arg-type]
    return Endpoint(
        cfg,
        authenticator=DigestAuthenticator(REALM, b"k" * 32, algorithms=("MD5",)),
        guard=Guard(failures=3, window=60.0, ban_time=600.0, throttle_after=100),
        credentials=lookup,
    )


def register_bytes(
    user: str = "alice",
    *,
    cseq: int = 1,
    branch: str = "z9hG4bK-r1",
    auth: str | None = None,
    expires: int = 300,
    domain: str = REALM,
) -> bytes:
    lines = [
        f"REGISTER sip:{domain} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.168.1.20:5060;branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag=ft",
        f"To: <sip:{user}@{domain}>",
        "Call-ID: call-1@phone",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@192.168.1.20:5060>",
        f"Expires: {expires}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(
    challenge: str, user: str, password: str, *, uri: str = f"sip:{REALM}", nc: str = "00000001"
) -> str:
    params = dict(part.strip().split("=", 1) for part in challenge.removeprefix("Digest ").split(","))
    nonce = params["nonce"].strip('"')
    ha1 = md5(f"{user}:{REALM}:{password}")
    ha2 = md5(f"REGISTER:{uri}")
    resp = md5(f"{ha1}:{nonce}:{nc}:cnonce1:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{resp}", algorithm=MD5, cnonce="cnonce1", qop=auth, nc={nc}'
    )


def responses(endpoint: Endpoint) -> list[Response]:
    out = []
    for data, flow in endpoint.outgoing():
        assert flow == PHONE
        message = parse_message(data)
        assert isinstance(message, Response)
        out.append(message)
    return out


def events(endpoint: Endpoint) -> list[object]:
    out = []
    while (event := endpoint.next_event()) is not None:
        out.append(event)
    return out


def challenge_then_register(
    endpoint: Endpoint, now: float = 10.0, user: str = "alice", password: str | None = None
) -> list[Response]:
    endpoint.receive(register_bytes(user), PHONE, now=now)
    (challenge,) = responses(endpoint)
    assert challenge.status == 401
    auth = answer(challenge.headers.get("www-authenticate") or "", user, password or USERS.get(user, "x"))
    endpoint.receive(register_bytes(user, cseq=2, branch="z9hG4bK-r2", auth=auth), PHONE, now=now + 0.1)
    return responses(endpoint)


def test_register_is_challenged_then_held_until_persisted() -> None:
    endpoint = make_endpoint()
    assert challenge_then_register(endpoint) == []  # the 200 waits for the store
    (persist,) = [e for e in events(endpoint) if isinstance(e, PersistBindings)]
    assert persist.aor == "sip:alice@cc.example.com" and persist.flow == PHONE
    assert persist.bindings[0].flow == PHONE
    endpoint.persisted(persist.token, ok=True, now=10.2)
    (ok,) = responses(endpoint)
    assert ok.status == 200
    assert ok.headers.get("contact") == "<sip:alice@192.168.1.20:5060>;expires=300"
    via = ok.via
    assert via.received == "203.0.113.9" and via.rport == "41000"


def test_failed_persist_answers_500_and_not_200() -> None:
    endpoint = make_endpoint()
    challenge_then_register(endpoint)
    (persist,) = [e for e in events(endpoint) if isinstance(e, PersistBindings)]
    endpoint.persisted(persist.token, ok=False, now=10.2)
    (resp,) = responses(endpoint)
    assert resp.status == 500 and resp.headers.get("retry-after") == "5"
    assert endpoint.location.bindings("sip:alice@cc.example.com", now=10.3) == []  # no tentative binding


def test_a_failed_unregister_leaves_the_binding_in_place() -> None:
    """RFC 3261 §10.3: a failed update removes every tentative change, so a retry is not a no-op."""
    endpoint = make_endpoint()
    challenge_then_register(endpoint)
    (persist,) = [e for e in events(endpoint) if isinstance(e, PersistBindings)]
    endpoint.persisted(persist.token, ok=True, now=10.2)
    responses(endpoint)
    aor = "sip:alice@cc.example.com"
    (kept,) = endpoint.location.bindings(aor, now=20.0)
    endpoint.receive(register_bytes(cseq=3, branch="z9hG4bK-r3", expires=0), PHONE, now=20.0)
    (challenge,) = responses(endpoint)
    auth = answer(challenge.headers.get("www-authenticate") or "", "alice", "alice-pw", nc="00000002")
    endpoint.receive(register_bytes(cseq=4, branch="z9hG4bK-r4", auth=auth, expires=0), PHONE, now=20.1)
    (remove,) = [e for e in events(endpoint) if isinstance(e, PersistBindings)]
    assert remove.bindings == ()
    endpoint.persisted(remove.token, ok=False, now=20.2)
    (resp,) = responses(endpoint)
    assert resp.status == 500
    assert endpoint.location.bindings(aor, now=20.3) == [kept]
    (restored,) = [e for e in events(endpoint) if isinstance(e, BindingsRestored)]
    assert restored.aor == aor and restored.bindings == (kept,)


def test_retransmitted_register_gets_same_answer_without_reauth_or_store() -> None:
    endpoint = make_endpoint()
    endpoint.receive(register_bytes(), PHONE, now=1.0)
    (challenge,) = responses(endpoint)
    auth = answer(challenge.headers.get("www-authenticate") or "", "alice", "alice-pw")
    request = register_bytes(cseq=2, branch="z9hG4bK-r2", auth=auth)
    endpoint.receive(request, PHONE, now=1.1)
    (persist,) = [e for e in events(endpoint) if isinstance(e, PersistBindings)]
    endpoint.receive(request, PHONE, now=1.2)  # retransmission while the store works: absorbed
    assert responses(endpoint) == [] and events(endpoint) == []
    endpoint.persisted(persist.token, ok=True, now=1.3)
    [first] = endpoint.outgoing()
    endpoint.receive(request, PHONE, now=1.6)  # retransmission after the 200: same bytes again
    [again] = endpoint.outgoing()
    assert again == first
    assert events(endpoint) == []  # no second authentication, no second write


def test_wrong_password_and_unknown_user_are_indistinguishable() -> None:
    answers = []
    for user, password in (("alice", "wrong"), ("mallory", "whatever")):
        endpoint = make_endpoint()
        endpoint.receive(register_bytes(user), PHONE, now=1.0)
        (challenge,) = responses(endpoint)
        header = challenge.headers.get("www-authenticate") or ""
        auth = answer(header, user, password)
        endpoint.receive(register_bytes(user, cseq=2, branch="z9hG4bK-r2", auth=auth), PHONE, now=1.1)
        (final,) = responses(endpoint)
        shape = header.replace(header.split('nonce="')[1].split('"')[0], "N")
        answers.append((challenge.status, shape, final.status, final.reason))
        assert any(isinstance(e, AuthFailed) for e in events(endpoint))
    assert answers[0] == answers[1]
    assert answers[0][2] == 403


def test_repeated_failures_ban_the_source_and_it_is_then_ignored() -> None:
    endpoint = make_endpoint()
    for i in range(3):
        endpoint.receive(register_bytes(branch=f"z9hG4bK-a{i}"), PHONE, now=1.0 + i)
        (challenge,) = responses(endpoint)
        auth = answer(challenge.headers.get("www-authenticate") or "", "alice", "nope")
        endpoint.receive(register_bytes(cseq=2, branch=f"z9hG4bK-b{i}", auth=auth), PHONE, now=1.1 + i)
        assert [r.status for r in responses(endpoint)] == [403]
    assert any(isinstance(e, SourceBanned) for e in events(endpoint))
    endpoint.receive(register_bytes(branch="z9hG4bK-c"), PHONE, now=5.0)
    assert responses(endpoint) == []  # banned: silence
    assert endpoint.counters["banned_source"] == 1


def test_malformed_request_gets_400_naming_the_problem() -> None:
    endpoint = make_endpoint()
    bad = register_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: seventy")
    endpoint.receive(bad, PHONE, now=1.0)
    (resp,) = responses(endpoint)
    assert resp.status == 400 and "Max-Forwards" in resp.reason
    assert resp.via.received == "203.0.113.9"
    (dropped,) = events(endpoint)
    assert isinstance(dropped, MessageDropped) and dropped.reason == "parse_error"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff garbage",
        b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",
        b"REGISTER sip:x SIP/2.0\r\nVia: ",
    ],
)
def test_unanswerable_garbage_is_dropped_silently(data: bytes) -> None:
    endpoint = make_endpoint()
    endpoint.receive(data, PHONE, now=1.0)
    assert endpoint.outgoing() == []
    assert all(isinstance(e, MessageDropped) for e in events(endpoint))


def options_bytes(domain: str = REALM, method: str = "OPTIONS") -> bytes:
    return (
        f"{method} sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-o1\r\n"
        f"From: <sip:x@{domain}>;tag=1\r\nTo: <sip:{domain}>\r\nCall-ID: o1\r\nCSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_options_lists_capabilities() -> None:
    endpoint = make_endpoint()
    endpoint.receive(options_bytes(), PHONE, now=1.0)
    (resp,) = responses(endpoint)
    assert resp.status == 200
    assert "REGISTER" in (resp.headers.get("allow") or "")
    assert resp.headers.get("accept") == "application/sdp"
    assert "supported" in resp.headers


def test_unsupported_method_gets_405_with_allow() -> None:
    endpoint = make_endpoint()
    endpoint.receive(options_bytes(method="SUBSCRIBE"), PHONE, now=1.0)
    (resp,) = responses(endpoint)
    assert resp.status == 405 and "OPTIONS" in (resp.headers.get("allow") or "")


def test_foreign_domain_is_refused() -> None:
    endpoint = make_endpoint()
    endpoint.receive(register_bytes(domain="evil.example.org"), PHONE, now=1.0)
    (resp,) = responses(endpoint)
    assert resp.status == 403 and "domain" in resp.reason
    endpoint.receive(options_bytes(domain="evil.example.org"), PHONE, now=1.0)
    (resp,) = responses(endpoint)
    assert resp.status == 403


def test_unknown_required_extension_gets_420() -> None:
    endpoint = make_endpoint()
    data = register_bytes().replace(b"Expires: 300", b"Expires: 300\r\nRequire: foo-ext")
    endpoint.receive(data, PHONE, now=1.0)
    (resp,) = responses(endpoint)
    assert resp.status == 420 and resp.headers.get("unsupported") == "foo-ext"


def registered(endpoint: Endpoint, now: float = 10.0) -> None:
    challenge_then_register(endpoint, now=now)
    (persist,) = [e for e in events(endpoint) if isinstance(e, PersistBindings)]
    endpoint.persisted(persist.token, ok=True, now=now + 0.2)
    responses(endpoint)


def test_qualify_pings_over_the_registered_flow_and_tracks_reachability() -> None:
    endpoint = make_endpoint()
    registered(endpoint)
    due = endpoint.next_deadline()
    assert due is not None and due <= 12.2
    endpoint.handle_timer(now=due)
    [(data, flow)] = endpoint.outgoing()
    assert flow == PHONE
    options = parse_message(data)
    assert options.method == "OPTIONS" and str(options.uri) == "sip:alice@192.168.1.20:5060"
    assert options.via.host == "198.51.100.1" and "rport" in options.via.params
    reply = options.reply(200, to_tag="x")
    endpoint.receive(bytes(reply), PHONE, now=due + 0.05)
    (change,) = [e for e in events(endpoint) if isinstance(e, ReachabilityChanged)]
    assert change.reachable and change.rtt == pytest.approx(0.05)
    # next ping is lost: unreachable after qualify_timeout
    endpoint.handle_timer(now=due + 30.0)
    endpoint.outgoing()
    endpoint.handle_timer(now=due + 35.0)
    (change,) = [e for e in events(endpoint) if isinstance(e, ReachabilityChanged)]
    assert not change.reachable


def test_binding_expiry_is_reported_for_the_store() -> None:
    endpoint = make_endpoint(qualify_interval=0.0)
    registered(endpoint)
    endpoint.handle_timer(now=10.1 + 300)
    (expired,) = [e for e in events(endpoint) if isinstance(e, BindingsExpired)]
    assert expired.aor == "sip:alice@cc.example.com" and expired.bindings == ()
