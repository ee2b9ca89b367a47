"""Digest authentication: RFC vectors, parsing, nonce lifetime, nonce-count replay, anti-enumeration."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip import auth
from softswitch.sip.auth import (
    AuthOutcome,
    AuthParseError,
    Credentials,
    DigestAuthenticator,
    ha1,
    parse_credentials,
    response,
)

REALM = "cc.example.com"
SECRET = b"0123456789abcdef0123456789abcdef"
USERS = {"alice": "s3cret", "bob": "hunter2"}
_HASHLIB = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def h(algorithm: str, text: str) -> str:
    """Independent of the module: hashlib directly."""
    return hashlib.new(_HASHLIB[algorithm.removesuffix("-sess")], text.encode()).hexdigest()


def lookup_for(realm: str = REALM) -> Callable[[str, str], str | None]:
    def lookup(username: str, algorithm: str) -> str | None:
        password = USERS.get(username)
        if password is None:
            return None
        return h(algorithm, f"{username}:{realm}:{password}")

    return lookup


def counting_rng() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def nonce_of(challenge: str) -> str:
    match = re.search(r'nonce="([^"]+)"', challenge)
    assert match is not None
    return match.group(1)


def authorization(
    nonce: str,
    *,
    username: str = "alice",
    password: str = "s3cret",
    realm: str = REALM,
    method: str = "REGISTER",
    uri: str = "sip:cc.example.com",
    algorithm: str | None = "SHA-256",
    nc: int | None = 1,
    cnonce: str = "0a4f113b",
    opaque: str | None = None,
    qop: str | None = "auth",
) -> str:
    """An Authorization value computed the way a phone would, without the module's helpers."""
    alg = algorithm or "MD5"
    key = h(alg, f"{username}:{realm}:{password}")
    if alg.endswith("-sess"):
        key = h(alg, f"{key}:{nonce}:{cnonce}")
    ha2 = h(alg, f"{method}:{uri}")
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if qop is None:
        digest = h(alg, f"{key}:{nonce}:{ha2}")
    else:
        assert nc is not None
        digest = h(alg, f"{key}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")
        parts += [f"qop={qop}", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    parts.append(f'response="{digest}"')
    if algorithm is not None:
        parts.append(f"algorithm={algorithm}")
    if opaque is not None:
        parts.append(f'opaque="{opaque}"')
    return "Digest " + ", ".join(parts)


@pytest.fixture
def authenticator() -> DigestAuthenticator:
    return DigestAuthenticator(REALM, SECRET, rng=counting_rng())


def verify(a: DigestAuthenticator, value: str, *, now: float, method: str = "REGISTER") -> auth.AuthResult:
    return a.verify(method, parse_credentials(value), lookup=lookup_for(), now=now)


# --- known vectors ------------------------------------------------------------------------------------------

RFC2617_EXAMPLE = (
    'Digest username="Mufasa",\r\n'
    '                 realm="testrealm@host.com",\r\n'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '                 uri="/dir/index.html",\r\n'
    "                 qop=auth,\r\n"
    "                 nc=00000001,\r\n"
    '                 cnonce="0a4f113b",\r\n'
    '                 response="6629fae49393a05397450978507c4ef1",\r\n'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_section_3_5_md5_example() -> None:
    creds = parse_credentials(RFC2617_EXAMPLE)
    assert creds.username == "Mufasa"
    assert creds.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert stored == "939e7578ed9e3c518a452acee763bce9"
    assert (
        response(stored, "GET", creds.uri, creds.nonce, qop=creds.qop, nc=creds.nc, cnonce=creds.cnonce)
        == creds.response
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1_example(algorithm: str, expected: str) -> None:
    stored = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    got = response(
        stored,
        "GET",
        "/dir/index.html",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert got == expected


@pytest.mark.parametrize(
    "algorithm", ["MD5", "SHA-256", "SHA-512-256", "MD5-sess", "SHA-256-sess", "SHA-512-256-sess"]
)
def test_response_matches_independent_computation(algorithm: str) -> None:
    stored = h(algorithm, "carol:realm.example:pa:ss")
    assert ha1("carol", "realm.example", "pa:ss", algorithm) == stored
    key = stored
    if algorithm.endswith("-sess"):
        key = h(algorithm, f"{stored}:abc:xyz")
    expected = h(algorithm, f"{key}:abc:0000002a:xyz:auth:{h(algorithm, 'INVITE:sip:7001@x')}")
    assert (
        response(
            stored,
            "INVITE",
            "sip:7001@x",
            "abc",
            algorithm=algorithm,
            qop="auth",
            nc="0000002a",
            cnonce="xyz",
        )
        == expected
    )


def test_response_without_qop_is_rfc2069_form() -> None:
    stored = h("MD5", "a:r:p")
    assert response(stored, "REGISTER", "sip:r", "n1") == h(
        "MD5", f"{stored}:n1:{h('MD5', 'REGISTER:sip:r')}"
    )


def test_helpers_reject_unknown_algorithm_and_missing_inputs() -> None:
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        ha1("a", "r", "p", "SHA-1")
    with pytest.raises(ValueError, match="needs a cnonce"):
        response("00", "REGISTER", "sip:r", "n", algorithm="MD5-sess", qop="auth", nc="00000001")
    with pytest.raises(ValueError, match="qop needs nc and cnonce"):
        response("00", "REGISTER", "sip:r", "n", qop="auth")


# --- parsing ------------------------------------------------------------------------------------------------


def test_parse_any_order_case_insensitive_names_and_unknown_params_kept() -> None:
    creds = parse_credentials(
        'digest RESPONSE="ABCDEF", Nc=0000000A, QOP="auth", Algorithm="sha-256", CNonce="c", '
        'URI="sip:x", Nonce="n", Realm="r", UserName="u", X-Vendor="yes", foo=bar'
    )
    assert creds == Credentials(
        username="u",
        realm="r",
        nonce="n",
        uri="sip:x",
        response="ABCDEF",
        algorithm="sha-256",
        cnonce="c",
        qop="auth",
        nc="0000000A",
        other=(("X-Vendor", "yes"), ("foo", "bar")),
    )
    assert creds.param("x-vendor") == "yes"
    assert creds.param("missing") is None
    assert creds.scheme == "digest"


def test_parse_quoted_pairs_are_unescaped() -> None:
    creds = parse_credentials(
        r'Digest username="DOMAIN\\alice \"the\" agent", realm="r", nonce="n", uri="sip:x", response="00"'
    )
    assert creds.username == 'DOMAIN\\alice "the" agent'


def test_parse_tolerates_whitespace_around_equals_and_commas() -> None:
    creds = parse_credentials('Digest  username = "u" ,realm="r",nonce= "n" ,  uri ="sip:x",response="0"  ')
    assert (creds.username, creds.realm, creds.nonce, creds.uri) == ("u", "r", "n", "sip:x")


def test_parse_unicode_username() -> None:
    assert parse_credentials(
        'Digest username="jānis", realm="r", nonce="n", uri="u", response="0"'
    ).username == ("jānis")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must start with an authentication scheme"),
        ("Basic dXNlcjpwYXNz", "unsupported authentication scheme 'Basic'"),
        ("Digest", "expected parameter name"),
        ('Digest realm="r", nonce="n", uri="u", response="0"', "missing username parameter"),
        ('Digest username="u", nonce="n", uri="u", response="0"', "missing realm parameter"),
        ('Digest username="u", realm="r", uri="u", response="0"', "missing nonce parameter"),
        ('Digest username="u", realm="r", nonce="n", response="0"', "missing uri parameter"),
        ('Digest username="u", realm="r", nonce="n", uri="u"', "missing response parameter"),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="xyz"',
            "response must be hexadecimal",
        ),
        ('Digest username="u, realm="r", nonce="n"', "expected ',' between parameters"),
        ('Digest username="u', "unterminated or invalid quoted string for 'username'"),
        ('Digest username="u" realm="r"', "expected ',' between parameters"),
        ('Digest username="u", realm="r",', "expected parameter name"),
        ('Digest username="u",, realm="r"', "expected parameter name"),
        ('Digest username=, realm="r"', "parameter 'username' has no value"),
        ('Digest username="u", USERNAME="v", realm="r"', "parameter 'USERNAME' appears more than once"),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="00", qop=auth, nc=00000001',
            "qop given without cnonce",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="00", qop=auth, cnonce="c"',
            "qop given without nc",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="00", nc=1, qop=auth, cnonce="c"',
            "nc must be exactly 8 hexadecimal digits",
        ),
        (
            'Digest username*=UTF-8\'\'j%C4%81nis, realm="r", nonce="n", uri="u", response="00"',
            "username\\* \\(RFC 7616 extended notation\\) is not supported",
        ),
        ('Digest username="u\x00", realm="r"', "unterminated or invalid quoted string"),
    ],
)
def test_parse_errors_name_the_problem(value: str, reason: str) -> None:
    with pytest.raises(AuthParseError, match=reason):
        parse_credentials(value)


def test_parse_error_is_a_value_error() -> None:
    assert issubclass(AuthParseError, ValueError)


_PIECES = st.sampled_from(
    [
        "Digest",
        " ",
        ",",
        "=",
        '"',
        "\\",
        "username",
        "realm",
        "qop",
        "nc",
        "auth",
        "00000001",
        "\r\n",
        "\t",
        "é",
        "x",
    ]
)


@given(st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=30).map("".join)))
def test_parse_any_text_returns_credentials_or_raises_auth_parse_error(value: str) -> None:
    try:
        creds = parse_credentials(value)
    except AuthParseError:
        return
    assert isinstance(creds, Credentials)


# --- challenges ---------------------------------------------------------------------------------------------

CHALLENGE_RE = re.compile(
    r'Digest realm="cc\.example\.com", nonce="[A-Za-z0-9_-]{43}", opaque="[0-9a-f]{32}", '
    r'algorithm=(SHA-256|MD5), qop="auth"(, stale=true)?'
)


def test_challenge_one_value_per_algorithm_sha256_first(authenticator: DigestAuthenticator) -> None:
    values = authenticator.challenge(now=10.0)
    assert [CHALLENGE_RE.fullmatch(v).group(1) for v in values] == ["SHA-256", "MD5"]  # type: ignore[union-attr]
    assert all("stale" not in v for v in values)
    assert nonce_of(values[0]) == nonce_of(values[1])


def test_challenge_stale_flag(authenticator: DigestAuthenticator) -> None:
    values = authenticator.challenge(now=10.0, stale=True)
    assert all(v.endswith(", stale=true") for v in values)


def test_challenge_nonces_are_fresh_and_ours(authenticator: DigestAuthenticator) -> None:
    first = nonce_of(authenticator.challenge(now=10.0)[0])
    second = nonce_of(authenticator.challenge(now=10.0)[0])
    assert first != second
    assert authenticator.nonce_minted_at(first) == 10.0
    assert DigestAuthenticator(REALM, b"another secret, 16+ bytes").nonce_minted_at(first) is None


def test_challenge_realm_is_quoted_with_escapes() -> None:
    a = DigestAuthenticator('odd "realm"\\', SECRET, algorithms=("MD5",))
    assert a.challenge(now=0.0)[0].startswith('Digest realm="odd \\"realm\\"\\\\", ')


def test_challenge_roundtrips_through_a_client(authenticator: DigestAuthenticator) -> None:
    value = authenticator.challenge(now=5.0)[0]
    opaque = re.search(r'opaque="([^"]+)"', value).group(1)  # type: ignore[union-attr]
    header = authorization(nonce_of(value), opaque=opaque)
    assert verify(authenticator, header, now=6.0).outcome is AuthOutcome.OK


# --- verify -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5", "sha-256", "md5", None])
def test_verify_accepts_correct_credentials(
    authenticator: DigestAuthenticator, algorithm: str | None
) -> None:
    nonce = authenticator.mint_nonce(now=100.0)
    alg = algorithm.upper() if algorithm else None
    value = authorization(nonce, algorithm=alg)
    if algorithm is not None:
        value = value.replace(f"algorithm={alg}", f"algorithm={algorithm}")
    result = verify(authenticator, value, now=101.0)
    assert result == auth.AuthResult(ok=True, username="alice", outcome=AuthOutcome.OK)


def test_verify_accepts_upper_case_hex_response(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    value = authorization(nonce)
    digest = re.search(r'response="([0-9a-f]+)"', value).group(1)  # type: ignore[union-attr]
    assert verify(authenticator, value.replace(digest, digest.upper()), now=1.0).ok


def test_verify_wrong_password(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    result = verify(authenticator, authorization(nonce, password="guess"), now=1.0)
    assert result == auth.AuthResult(ok=False, username="alice", outcome=AuthOutcome.BAD_RESPONSE)


def test_verify_wrong_method_or_uri_is_bad_response(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce), now=1.0, method="INVITE").outcome is (
        AuthOutcome.BAD_RESPONSE
    )


def test_nonce_goes_stale_after_ttl(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=1000.0)
    assert verify(authenticator, authorization(nonce, nc=1), now=1299.999).outcome is AuthOutcome.OK
    assert verify(authenticator, authorization(nonce, nc=2), now=1300.0).outcome is AuthOutcome.STALE
    assert verify(authenticator, authorization(nonce, nc=3), now=5000.0).outcome is AuthOutcome.STALE


def test_expired_nonce_with_wrong_password_is_not_stale(authenticator: DigestAuthenticator) -> None:
    # RFC 7616 §3.3: stale=true only when the digest itself was valid.
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce, password="x"), now=400.0).outcome is (
        AuthOutcome.BAD_RESPONSE
    )


def test_custom_ttl() -> None:
    a = DigestAuthenticator(REALM, SECRET, nonce_ttl=30.0)
    nonce = a.mint_nonce(now=0.0)
    assert verify(a, authorization(nonce, nc=1), now=29.0).ok
    assert verify(a, authorization(nonce, nc=2), now=30.0).outcome is AuthOutcome.STALE


def test_same_nonce_count_is_a_replay(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    value = authorization(nonce, nc=1)
    assert verify(authenticator, value, now=1.0).ok
    assert verify(authenticator, value, now=2.0).outcome is AuthOutcome.REPLAY


def test_increasing_nonce_count_is_accepted_lower_is_rejected(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce, nc=1), now=1.0).ok
    assert verify(authenticator, authorization(nonce, nc=2), now=2.0).ok
    assert verify(authenticator, authorization(nonce, nc=7), now=3.0).ok  # gaps are fine
    assert verify(authenticator, authorization(nonce, nc=5), now=4.0).outcome is AuthOutcome.REPLAY
    assert verify(authenticator, authorization(nonce, nc=7), now=5.0).outcome is AuthOutcome.REPLAY
    assert verify(authenticator, authorization(nonce, nc=8), now=6.0).ok


def test_replay_needs_a_correct_digest_first(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce, nc=3), now=1.0).ok
    assert verify(authenticator, authorization(nonce, nc=1, password="x"), now=2.0).outcome is (
        AuthOutcome.BAD_RESPONSE
    )


def test_nonce_counts_are_per_nonce(authenticator: DigestAuthenticator) -> None:
    first = authenticator.mint_nonce(now=0.0)
    second = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(first, nc=1), now=1.0).ok
    assert verify(authenticator, authorization(second, nc=1), now=1.0).ok


def test_failed_attempts_do_not_consume_nonce_counts(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert not verify(authenticator, authorization(nonce, nc=5, password="x"), now=1.0).ok
    assert authenticator.tracked_nonces == 0
    assert verify(authenticator, authorization(nonce, nc=1), now=2.0).ok


def test_nonce_from_another_secret_is_rejected(authenticator: DigestAuthenticator) -> None:
    foreign = DigestAuthenticator(REALM, b"a different secret of 32 bytes!!").mint_nonce(now=0.0)
    assert verify(authenticator, authorization(foreign), now=1.0).outcome is AuthOutcome.BAD_NONCE


def test_nonce_from_another_realm_same_secret_is_rejected() -> None:
    other = DigestAuthenticator("other.example.com", SECRET).mint_nonce(now=0.0)
    a = DigestAuthenticator(REALM, SECRET)
    assert verify(a, authorization(other), now=1.0).outcome is AuthOutcome.BAD_NONCE


@pytest.mark.parametrize("nonce", ["", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "é" * 43, "A" * 43, "A" * 44])
def test_garbage_nonce_is_rejected(authenticator: DigestAuthenticator, nonce: str) -> None:
    assert verify(authenticator, authorization(nonce), now=1.0).outcome is AuthOutcome.BAD_NONCE


def test_tampered_nonce_timestamp_is_rejected(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    tampered = ("B" if nonce[0] != "B" else "C") + nonce[1:]
    assert verify(authenticator, authorization(tampered), now=1.0).outcome is AuthOutcome.BAD_NONCE


def test_nonce_from_the_future_is_stale(authenticator: DigestAuthenticator) -> None:
    """Ours but stamped ahead of the clock: minted before the host rebooted. The phone gets a fresh
    challenge (stale) when its digest is right, and the failure it deserves when it is not."""
    nonce = authenticator.mint_nonce(now=100.0)
    assert verify(authenticator, authorization(nonce), now=98.0).outcome is AuthOutcome.STALE
    wrong = authorization(nonce, password="not-it")
    assert verify(authenticator, wrong, now=98.0).outcome is AuthOutcome.BAD_RESPONSE
    assert verify(authenticator, authorization(nonce), now=99.5).ok  # within the 1 s skew


def test_after_a_restart_nonces_of_the_previous_run_are_stale_not_replayable() -> None:
    before = DigestAuthenticator(REALM, SECRET, rng=counting_rng())
    old_nonce = before.mint_nonce(now=10.0)
    captured = authorization(old_nonce, nc=1)
    assert verify(before, captured, now=11.0).ok
    after = DigestAuthenticator(REALM, SECRET, rng=counting_rng(), started_at=50.0)  # same secret, new run
    assert verify(after, captured, now=60.0).outcome is AuthOutcome.STALE  # the replay is not taken
    fresh = after.mint_nonce(now=51.0)
    assert verify(after, authorization(fresh, nc=1), now=52.0).ok


def test_wrong_opaque_is_rejected_missing_opaque_tolerated(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce, opaque="deadbeef"), now=1.0).outcome is (
        AuthOutcome.BAD_NONCE
    )
    assert verify(authenticator, authorization(nonce, opaque=authenticator.opaque, nc=1), now=1.0).ok
    assert verify(authenticator, authorization(nonce, opaque=None, nc=2), now=1.0).ok


def test_wrong_realm(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    result = verify(authenticator, authorization(nonce, realm="evil.example.com"), now=1.0)
    assert result == auth.AuthResult(ok=False, username="alice", outcome=AuthOutcome.WRONG_REALM)


def test_unsupported_algorithm(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce, algorithm="SHA-512-256"), now=1.0).outcome is (
        AuthOutcome.UNSUPPORTED_ALGORITHM
    )
    value = authorization(nonce).replace("algorithm=SHA-256", "algorithm=SHA-1")
    assert verify(authenticator, value, now=1.0).outcome is AuthOutcome.UNSUPPORTED_ALGORITHM


def test_md5_absent_from_config_refuses_implicit_md5() -> None:
    a = DigestAuthenticator(REALM, SECRET, algorithms=("SHA-256",))
    nonce = a.mint_nonce(now=0.0)
    assert (
        verify(a, authorization(nonce, algorithm=None), now=1.0).outcome is AuthOutcome.UNSUPPORTED_ALGORITHM
    )
    assert len(a.challenge(now=0.0)) == 1


@pytest.mark.parametrize("algorithm", ["SHA-512-256", "SHA-256-sess", "MD5-sess", "SHA-512-256-sess"])
def test_optional_algorithms_when_configured(algorithm: str) -> None:
    a = DigestAuthenticator(REALM, SECRET, algorithms=(algorithm,))
    assert f"algorithm={algorithm}," in a.challenge(now=0.0)[0]
    nonce = a.mint_nonce(now=0.0)
    assert verify(a, authorization(nonce, algorithm=algorithm), now=1.0).ok
    assert verify(a, authorization(nonce, algorithm=algorithm, password="x", nc=2), now=1.0).outcome is (
        AuthOutcome.BAD_RESPONSE
    )


def test_qop_is_required_by_default(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce, qop=None), now=1.0).outcome is AuthOutcome.MALFORMED


def test_rfc2069_credentials_when_allowed() -> None:
    a = DigestAuthenticator(REALM, SECRET, require_qop=False)
    nonce = a.mint_nonce(now=0.0)
    assert verify(a, authorization(nonce, qop=None), now=1.0).ok
    assert (
        verify(a, authorization(nonce, qop=None, password="x"), now=1.0).outcome is AuthOutcome.BAD_RESPONSE
    )
    assert a.tracked_nonces == 0


def test_qop_auth_int_is_not_offered_so_refused(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert (
        verify(authenticator, authorization(nonce, qop="auth-int"), now=1.0).outcome is AuthOutcome.MALFORMED
    )


def test_nonce_count_zero_is_malformed(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    assert verify(authenticator, authorization(nonce, nc=0), now=1.0).outcome is AuthOutcome.MALFORMED


def test_sess_without_cnonce_is_malformed() -> None:
    a = DigestAuthenticator(REALM, SECRET, algorithms=("MD5-sess",), require_qop=False)
    nonce = a.mint_nonce(now=0.0)
    value = (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="sip:x", response="{"0" * 32}", '
        "algorithm=MD5-sess"
    )
    assert verify(a, value, now=1.0).outcome is AuthOutcome.MALFORMED


# --- anti-enumeration ---------------------------------------------------------------------------------------


def test_unknown_user_looks_like_bad_password(
    authenticator: DigestAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, str]] = []
    real = auth.response

    def spy(key: str, *args: object, **kwargs: object) -> str:
        calls.append((len(key), str(kwargs["algorithm"])))
        return real(key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth, "response", spy)
    looked_up: list[tuple[str, str]] = []

    def lookup(username: str, algorithm: str) -> str | None:
        looked_up.append((username, algorithm))
        return lookup_for()(username, algorithm)

    nonce = authenticator.mint_nonce(now=0.0)
    unknown = authenticator.verify(
        "REGISTER", parse_credentials(authorization(nonce, username="mallory")), lookup=lookup, now=1.0
    )
    wrong = authenticator.verify(
        "REGISTER", parse_credentials(authorization(nonce, password="guess")), lookup=lookup, now=1.0
    )
    assert (unknown.ok, wrong.ok) == (False, False)
    assert (unknown.outcome, wrong.outcome) == (AuthOutcome.UNKNOWN_USER, AuthOutcome.BAD_RESPONSE)
    # The same work: one lookup and one response computation with a key of the same size each.
    assert looked_up == [("mallory", "SHA-256"), ("alice", "SHA-256")]
    assert calls == [(64, "SHA-256"), (64, "SHA-256")]
    # And the same answer on the wire: the challenges that follow differ only in their nonce.
    after_unknown = [v.replace(nonce_of(v), "N") for v in authenticator.challenge(now=1.0)]
    after_wrong = [v.replace(nonce_of(v), "N") for v in authenticator.challenge(now=1.0)]
    assert after_unknown == after_wrong
    assert all(CHALLENGE_RE.fullmatch(v.replace("N", "A" * 43)) for v in after_unknown)


def test_unknown_user_even_with_a_digest_for_some_password(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    result = verify(authenticator, authorization(nonce, username="nobody", password=""), now=1.0)
    assert result == auth.AuthResult(ok=False, username="nobody", outcome=AuthOutcome.UNKNOWN_USER)


def test_malformed_digest_length_is_judged_before_lookup(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    looked_up: list[str] = []

    def lookup(username: str, algorithm: str) -> str | None:
        looked_up.append(username)
        return lookup_for()(username, algorithm)

    for username in ("alice", "mallory"):
        value = authorization(nonce, username=username, algorithm="MD5").replace(
            "algorithm=MD5", "algorithm=SHA-256"
        )
        result = authenticator.verify("REGISTER", parse_credentials(value), lookup=lookup, now=1.0)
        assert result.outcome is AuthOutcome.MALFORMED
    assert looked_up == []


def test_corrupt_stored_ha1_counts_as_unknown_user(authenticator: DigestAuthenticator) -> None:
    nonce = authenticator.mint_nonce(now=0.0)
    result = authenticator.verify(
        "REGISTER", parse_credentials(authorization(nonce)), lookup=lambda u, a: "not hex", now=1.0
    )
    assert result.outcome is AuthOutcome.UNKNOWN_USER


# --- nonce-count table bounds ---------------------------------------------------------------------------


def test_nonce_counts_forgotten_when_nonces_expire(authenticator: DigestAuthenticator) -> None:
    for t in (0.0, 10.0, 20.0):
        assert verify(authenticator, authorization(authenticator.mint_nonce(now=t)), now=t + 1).ok
    assert authenticator.tracked_nonces == 3
    assert authenticator.next_deadline() == 300.0
    authenticator.expire(now=305.0)
    assert authenticator.tracked_nonces == 2
    assert authenticator.next_deadline() == 310.0
    authenticator.expire(now=320.0)
    assert authenticator.tracked_nonces == 0
    assert authenticator.next_deadline() is None


def test_verify_purges_expired_entries_lazily(authenticator: DigestAuthenticator) -> None:
    assert verify(authenticator, authorization(authenticator.mint_nonce(now=0.0)), now=1.0).ok
    assert verify(authenticator, authorization(authenticator.mint_nonce(now=400.0)), now=401.0).ok
    assert authenticator.tracked_nonces == 1


def test_table_cap_evicts_oldest_and_never_reopens_a_replay() -> None:
    a = DigestAuthenticator(REALM, SECRET, max_nonce_count_window=2, rng=counting_rng())
    n0, n1, n2, n_late, n3 = (a.mint_nonce(now=t) for t in (0.5, 1.0, 2.0, 2.5, 3.0))
    assert verify(a, authorization(n1), now=5.0).ok
    assert verify(a, authorization(n2), now=5.0).ok
    assert verify(a, authorization(n3), now=5.0).ok  # evicts n1
    assert a.tracked_nonces == 2
    # n1 is no longer tracked; replaying it is answered STALE (fresh nonce needed), not OK.
    assert verify(a, authorization(n1), now=6.0).outcome is AuthOutcome.STALE
    # An untracked nonce minted before the evicted one is STALE too; still-tracked ones keep working.
    assert verify(a, authorization(n0), now=6.0).outcome is AuthOutcome.STALE
    assert verify(a, authorization(n2, nc=2), now=6.0).ok
    # Nonces minted after the evicted one are unaffected, used before or not.
    assert verify(a, authorization(n_late), now=6.0).ok  # evicts n2 (minted 2.0)
    assert verify(a, authorization(n2, nc=3), now=6.0).outcome is AuthOutcome.STALE
    assert verify(a, authorization(a.mint_nonce(now=7.0)), now=7.0).ok
    # Once everything the mark covered has expired, the mark is dropped.
    a.expire(now=302.0)
    assert verify(a, authorization(a.mint_nonce(now=302.0)), now=302.0).ok


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        DigestAuthenticator(REALM, b"short")
    with pytest.raises(ValueError, match="nonce_ttl"):
        DigestAuthenticator(REALM, SECRET, nonce_ttl=0)
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        DigestAuthenticator(REALM, SECRET, algorithms=("SHA-1",))
    with pytest.raises(ValueError, match="listed twice"):
        DigestAuthenticator(REALM, SECRET, algorithms=("MD5", "md5"))
    with pytest.raises(ValueError, match="at least one"):
        DigestAuthenticator(REALM, SECRET, algorithms=())
    with pytest.raises(ValueError, match="max_nonce_count_window"):
        DigestAuthenticator(REALM, SECRET, max_nonce_count_window=0)
