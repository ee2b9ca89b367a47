"""SIP digest authentication, server side (RFC 3261 §22, RFC 8760, RFC 7616 and RFC 2617 semantics).

What is here:

* `parse_credentials` reads an ``Authorization`` / ``Proxy-Authorization`` header *value* (RFC 3261 §25
  ``credentials``): quoted strings with backslash escapes, tokens, parameters in any order, parameter names
  case-insensitive, unknown parameters kept. It is more lenient than the ABNF where phones are: any parameter
  may be quoted or not (``algorithm="MD5"``, ``qop="auth"``, ``nc="00000001"`` are all seen in the wild).
* `DigestAuthenticator` mints challenges and verifies credentials with ``now`` passed in (sans-IO):

  - one ``WWW-Authenticate`` value per configured algorithm, most preferred (SHA-256) first, as RFC 8760's
    "UAS Behavior" asks, each with ``qop="auth"`` (RFC 3261 §22.4 item 8: "servers MUST always send a qop
    parameter"), the same fresh nonce and an ``opaque``;
  - **stateless nonces**: ``base64url(timestamp ‖ random ‖ HMAC-SHA-256(secret, realm ‖ timestamp ‖
    random)[:16])``. Any nonce we minted is verifiable from the secret alone and expires after
    ``nonce_ttl``; an expired nonce with a *correct* digest is answered ``STALE`` (RFC 7616 §3.3: stale only
    when the digest was valid), an expired nonce with a wrong digest is ``BAD_RESPONSE``;
  - nonce-count replay protection (RFC 7616 §3.4 ``nc``): per nonce the highest ``nc`` accepted is kept; an
    equal or lower one is ``REPLAY``. Entries are created only after a *correct* digest, so unauthenticated
    traffic cannot grow the table; they are dropped when the nonce expires, and the table is capped at
    ``max_nonce_count_window`` nonces. When the cap forces an eviction of a live nonce, every untracked
    nonce minted at or before the evicted one is answered ``STALE`` from then on (a low-water mark), so an
    eviction costs an honest client one re-challenge and never re-opens a replay window;
  - **no username enumeration**: an unknown user is checked against a random dummy HA1 of the same length,
    doing the same hashing and comparison as for a known user with a wrong password; only the outcome enum
    (for logs) differs, never ``ok``, never the challenge that follows.

* `ha1` and `response` compute RFC 7616 §3.4.1–§3.4.3 values for MD5, SHA-256 and SHA-512-256 and their
  ``-sess`` variants (``-sess`` costs one extra hash, so it is supported when configured, not offered by
  default).

Policy decided here (each is a reviewable choice, not an accident):

* ``qop`` is **required** (``require_qop=True``): without ``qop`` there is no ``nc`` and so no replay
  protection, and every client we challenge received ``qop="auth"`` and "MUST send the qop parameter in any
  resulting authorization header field" (RFC 3261 §22.4 item 8). RFC 3261 lets servers accept RFC 2069-style
  credentials; pass ``require_qop=False`` for such a phone, knowing that a captured request can then be
  replayed until its nonce expires.
* Only ``qop=auth``: ``auth-int`` is never offered, so credentials using it are ``MALFORMED``.
* ``opaque`` is derived from the secret and the realm; if the client returns one that differs it is
  ``BAD_NONCE`` (it did not come from our challenge). A client that omits ``opaque`` is tolerated.

Not here: the client side (answering a trunk's challenge), ``auth-int`` (RFC 7616 §3.4.3 with body hash),
``userhash`` and the ``username*`` extended notation (RFC 7616 §3.4.4; RFC 8760 does not use them in SIP),
``Authentication-Info`` (RFC 7616 §3.5), and the check that the digest ``uri`` equals the Request-URI
(RFC 3261 §22.4 item 4 leaves the comparison to the server; the caller has the request, this module does
not).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import heapq
import hmac
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from softswitch.sip.randomness import random_bytes

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthOutcome",
    "AuthParseError",
    "AuthResult",
    "Credentials",
    "DigestAuthenticator",
    "canonical_algorithm",
    "ha1",
    "parse_credentials",
    "response",
]

# --- algorithms ---------------------------------------------------------------------------------------------

#: RFC 7616 §6.1 registry names → hashlib names. ``-sess`` variants hash with their base algorithm.
_HASHES: dict[str, str] = {
    "MD5": "md5",
    "SHA-256": "sha256",
    "SHA-512-256": "sha512_256",
}
SUPPORTED_ALGORITHMS: tuple[str, ...] = (
    "SHA-512-256",
    "SHA-256",
    "MD5",
    "SHA-512-256-sess",
    "SHA-256-sess",
    "MD5-sess",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in SUPPORTED_ALGORITHMS}
_DIGEST_HEX_LENGTH: dict[str, int] = {name: hashlib.new(h).digest_size * 2 for name, h in _HASHES.items()}


def canonical_algorithm(name: str | None) -> str | None:
    """The registry spelling of an algorithm name (case-insensitive), ``"MD5"`` for ``None`` (RFC 2617
    §3.2.1: "If this is not present it is assumed to be MD5"), or ``None`` if we do not support it."""
    if name is None:
        return "MD5"
    return _CANONICAL.get(name.lower())


def _base(algorithm: str) -> str:
    return algorithm[:-5] if algorithm.endswith("-sess") else algorithm


def _hash(algorithm: str, data: str) -> str:
    return hashlib.new(_HASHES[_base(algorithm)], data.encode("utf-8")).hexdigest()


def _checked(algorithm: str) -> str:
    canonical = canonical_algorithm(algorithm)
    if canonical is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return canonical


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username ":" realm ":" password)`` in lower-case hex (RFC 7616 §3.4.2), the value to store
    instead of a password. For a ``-sess`` algorithm this is the *stored* HA1 of its base algorithm; the
    session key is derived in `response`."""
    return _hash(_checked(algorithm), f"{username}:{realm}:{password}")


def response(
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    *,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1) for the given stored HA1.

    With ``qop="auth"``: ``H(HA1:nonce:nc:cnonce:auth:HA2)``; without qop (RFC 2069 compatibility):
    ``H(HA1:nonce:HA2)``; ``HA2 = H(method:uri)``. For ``-sess`` algorithms HA1 becomes
    ``H(HA1:nonce:cnonce)`` first (RFC 7616 §3.4.2).
    """
    algorithm = _checked(algorithm)
    key = ha1.lower()
    if algorithm.endswith("-sess"):
        if cnonce is None:
            raise ValueError(f"{algorithm} needs a cnonce")
        key = _hash(algorithm, f"{key}:{nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hash(algorithm, f"{key}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return _hash(algorithm, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- credentials parsing (RFC 3261 §25 credentials / digest-response) ---------------------------------------


class AuthParseError(ValueError):
    """An ``Authorization`` value we cannot read; the message is the reason for the 400."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A parsed ``Digest`` credentials value. Values are unquoted and unescaped."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    qop: str | None = None
    nc: str | None = None
    opaque: str | None = None
    #: Parameters we do not interpret, as ``(name as sent, value)`` in the order received.
    other: tuple[tuple[str, str], ...] = ()
    scheme: str = field(default="Digest", compare=False)

    def param(self, name: str) -> str | None:
        """An unknown parameter's value by case-insensitive name, or None."""
        lowered = name.lower()
        for key, value in self.other:
            if key.lower() == lowered:
                return value
        return None


# RFC 3261 §25: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# LWS = [*WSP CRLF] 1*WSP; SWS = [LWS]. Header values usually arrive unfolded; accept folds anyway.
_SWS = r"(?:[ \t]*\r?\n)?[ \t]*"
_SCHEME_RE = re.compile(rf"{_SWS}({_TOKEN})(?:(?:[ \t]*\r?\n)?[ \t]+|\Z)")
_NAME_RE = re.compile(rf"{_SWS}({_TOKEN}){_SWS}={_SWS}")
_TOKEN_RE = re.compile(_TOKEN)
# quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE;
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII; quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_QUOTED = r'"((?:[ \t\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"'
_QUOTED_RE = re.compile(_QUOTED)
# One whole parameter and what follows it: auth-param = token EQUAL (token / quoted-string), then COMMA or
# the end. The fast path; on a mismatch `_explain` walks the same grammar step by step to name the error.
_PARAM_RE = re.compile(rf"{_SWS}({_TOKEN}){_SWS}={_SWS}(?:{_QUOTED}|({_TOKEN})){_SWS}(,|\Z)")
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_COMMA_RE = re.compile(rf"{_SWS},")
_END_RE = re.compile(rf"{_SWS}\Z")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")

_KNOWN = frozenset(
    ("username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "qop", "nc", "opaque")
)
_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def parse_credentials(value: str) -> Credentials:
    """Parse a ``Digest`` credentials header value; raise `AuthParseError` naming what is wrong."""
    match = _SCHEME_RE.match(value)
    if match is None:
        raise AuthParseError("credentials must start with an authentication scheme")
    scheme = match.group(1)
    if scheme.lower() != "digest":
        raise AuthParseError(f"unsupported authentication scheme {scheme!r} (only Digest)")
    pos = match.end()
    known: dict[str, str] = {}
    other: list[tuple[str, str]] = []
    seen: set[str] = set()
    while True:
        param = _PARAM_RE.match(value, pos)
        if param is None:
            _explain(value, pos)
        name, quoted, token, separator = param.groups()
        if quoted is None:
            param_value = token
        elif "\\" in quoted:
            param_value = _UNESCAPE_RE.sub(r"\1", quoted)
        else:
            param_value = quoted
        lowered = name.lower()
        if lowered in seen:
            raise AuthParseError(f"parameter {name!r} appears more than once")
        seen.add(lowered)
        if lowered in _KNOWN:
            known[lowered] = param_value
        else:
            other.append((name, param_value))
        pos = param.end()
        if not separator:
            break
    return _build(known, tuple(other), scheme)


def _explain(value: str, pos: int) -> NoReturn:
    """Raise the precise reason why the parameter at `pos` does not match `_PARAM_RE`."""
    name_match = _NAME_RE.match(value, pos)
    if name_match is None:
        raise AuthParseError(f"expected parameter name '=' at offset {pos}")
    name = name_match.group(1)
    pos = name_match.end()
    quoted = _QUOTED_RE.match(value, pos)
    if quoted is not None:
        pos = quoted.end()
    else:
        if pos < len(value) and value[pos] == '"':
            raise AuthParseError(f"unterminated or invalid quoted string for {name!r}")
        token = _TOKEN_RE.match(value, pos)
        if token is None:
            raise AuthParseError(f"parameter {name!r} has no value")
        pos = token.end()
    if _END_RE.match(value, pos) is None and _COMMA_RE.match(value, pos) is None:
        raise AuthParseError(f"expected ',' between parameters at offset {pos}")
    raise AuthParseError(f"malformed parameter at offset {pos}")  # pragma: no cover - grammars agree


def _build(known: dict[str, str], other: tuple[tuple[str, str], ...], scheme: str) -> Credentials:
    for name in _REQUIRED:
        if name not in known:
            if name == "username" and any(key.lower() == "username*" for key, _ in other):
                raise AuthParseError("username* (RFC 7616 extended notation) is not supported")
            raise AuthParseError(f"missing {name} parameter")
    if not _HEX_RE.fullmatch(known["response"]):
        raise AuthParseError("response must be hexadecimal")
    qop = known.get("qop")
    nc = known.get("nc")
    cnonce = known.get("cnonce")
    if nc is not None and not _NC_RE.fullmatch(nc):
        raise AuthParseError("nc must be exactly 8 hexadecimal digits")
    if qop is not None:
        # RFC 2617 §3.2.2: cnonce and nc "MUST be specified if a qop directive is sent".
        if cnonce is None:
            raise AuthParseError("qop given without cnonce")
        if nc is None:
            raise AuthParseError("qop given without nc")
    return Credentials(
        username=known["username"],
        realm=known["realm"],
        nonce=known["nonce"],
        uri=known["uri"],
        response=known["response"],
        algorithm=known.get("algorithm"),
        cnonce=cnonce,
        qop=qop,
        nc=nc,
        opaque=known.get("opaque"),
        other=other,
        scheme=scheme,
    )


# --- verification -------------------------------------------------------------------------------------------


class AuthOutcome(enum.Enum):
    """Why `DigestAuthenticator.verify` decided as it did. For logs and metrics: callers answer
    ``UNKNOWN_USER`` and ``BAD_RESPONSE`` identically (403), so the wire never tells them apart."""

    OK = "ok"
    #: Digest correct but the nonce expired (or was pushed out of the nc table): re-challenge, stale=true.
    STALE = "stale"
    BAD_RESPONSE = "bad_response"
    UNKNOWN_USER = "unknown_user"
    #: Digest correct, nonce-count not above the highest seen for this nonce: a replayed request, or an
    #: honest phone's requests sharing a nonce that arrived out of order. Re-challenge (stale=true).
    REPLAY = "replay"
    WRONG_REALM = "wrong_realm"
    #: Nonce (or opaque) not minted by us with this secret and realm, or stamped in the future.
    BAD_NONCE = "bad_nonce"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    #: Well-formed header, unacceptable content: qop missing or not "auth", nc of zero, wrong digest length.
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    username: str
    outcome: AuthOutcome


_NONCE_DOMAIN = b"softswitch digest nonce v1\x00"
_OPAQUE_DOMAIN = b"softswitch digest opaque v1\x00"
_NONCE_STAMP = struct.Struct(">q")  # milliseconds of `now`, signed 64-bit
_NONCE_RANDOM = 8
_NONCE_MAC = 16
_NONCE_BYTES = _NONCE_STAMP.size + _NONCE_RANDOM + _NONCE_MAC  # 32 bytes → 43 base64url characters
#: Accepted clock difference for a nonce stamped slightly after `now` (several workers, one secret).
_FUTURE_SKEW = 1.0


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DigestAuthenticator:
    """Challenges and verifies digest credentials for one realm.

    ``secret`` keys the nonce HMAC (at least 16 bytes; share it between processes that must accept each
    other's nonces). ``algorithms`` is the preference order of the challenges. ``max_nonce_count_window``
    caps the nonce-count table: each entry costs about 280 bytes (measured with tracemalloc: a 43-character
    nonce string, two tuples, a dict slot and a heap slot), so the default 65,536 bounds it near 18 MiB;
    live entries are the nonces used successfully within the last ``nonce_ttl`` seconds, in practice about
    one per active phone.
    ``rng`` returns n random bytes; tests pass a deterministic one.

    ``lookup(username, algorithm)`` given to `verify` returns the stored HA1 hex for the *base* algorithm
    (``"MD5"`` for ``MD5-sess``), or None for an unknown user.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_ttl: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        max_nonce_count_window: int = 65536,
        require_qop: bool = True,
        rng: Callable[[int], bytes] = random_bytes,
        started_at: float | None = None,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("digest nonce secret must be at least 16 bytes")
        if nonce_ttl <= 0:
            raise ValueError("nonce_ttl must be positive")
        if max_nonce_count_window < 1:
            raise ValueError("max_nonce_count_window must be at least 1")
        if not algorithms:
            raise ValueError("at least one digest algorithm is needed")
        canonical = tuple(_checked(name) for name in algorithms)
        if len(set(canonical)) != len(canonical):
            raise ValueError("digest algorithms listed twice")
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        self.algorithms = canonical
        self.max_nonce_count_window = max_nonce_count_window
        self.require_qop = require_qop
        self._secret = secret
        self._rng = rng
        self._realm_bytes = realm.encode("utf-8") + b"\x00"
        self.opaque = hmac.new(secret, _OPAQUE_DOMAIN + self._realm_bytes, hashlib.sha256).hexdigest()[:32]
        # Dummy HA1 per base algorithm for unknown users: random, right length, never matchable.
        self._dummy_ha1 = {
            _base(name): hashlib.new(_HASHES[_base(name)], rng(32)).hexdigest() for name in canonical
        }
        # nonce -> highest nc accepted; heap of (expires_at, minted_at, nonce) to expire them in order.
        self._nc: dict[str, int] = {}
        self._nc_heap: list[tuple[float, float, str]] = []
        # Untracked nonces minted at or before this time are answered STALE (see module docstring). With
        # `started_at` (a restart with the same secret), nonces of the previous run start out that way: their
        # nonce counts are gone, so a request captured before the restart must not pass as fresh.
        self._evicted_minted_at: float | None = started_at

    # -- nonces --

    def _mac(self, stamp_and_random: bytes) -> bytes:
        digest = hmac.new(self._secret, _NONCE_DOMAIN + self._realm_bytes + stamp_and_random, hashlib.sha256)
        return digest.digest()[:_NONCE_MAC]

    def mint_nonce(self, *, now: float) -> str:
        """A fresh nonce stamped with ``now``."""
        body = _NONCE_STAMP.pack(round(now * 1000)) + self._rng(_NONCE_RANDOM)
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode("ascii")

    def nonce_minted_at(self, nonce: str) -> float | None:
        """The ``now`` a nonce was minted at, or None if it is not one of ours."""
        if len(nonce) != 43:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except ValueError:
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        body, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        return _NONCE_STAMP.unpack_from(body)[0] / 1000.0

    # -- challenge --

    def challenge(self, *, now: float, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` (or ``Proxy-Authenticate``) values, most preferred algorithm first."""
        nonce = self.mint_nonce(now=now)
        tail = ", stale=true" if stale else ""
        return [
            f'Digest realm={_quote(self.realm)}, nonce="{nonce}", opaque="{self.opaque}", '
            f'algorithm={algorithm}, qop="auth"{tail}'
            for algorithm in self.algorithms
        ]

    # -- verify --

    def verify(
        self,
        method: str,
        credentials: Credentials,
        *,
        lookup: Callable[[str, str], str | None],
        now: float,
    ) -> AuthResult:
        """Check credentials for a request with ``method``. Never raises for anything the peer sent."""
        username = credentials.username

        def result(outcome: AuthOutcome) -> AuthResult:
            return AuthResult(ok=outcome is AuthOutcome.OK, username=username, outcome=outcome)

        if credentials.realm != self.realm:
            return result(AuthOutcome.WRONG_REALM)
        algorithm = canonical_algorithm(credentials.algorithm)
        if algorithm is None or algorithm not in self.algorithms:
            return result(AuthOutcome.UNSUPPORTED_ALGORITHM)
        qop = credentials.qop
        if qop is None:
            if self.require_qop:
                return result(AuthOutcome.MALFORMED)
        elif qop.lower() != "auth":
            return result(AuthOutcome.MALFORMED)
        nc_value = 0
        if qop is not None:
            assert credentials.nc is not None  # parse_credentials guarantees nc and cnonce with qop
            nc_value = int(credentials.nc, 16)
            if nc_value == 0:
                return result(AuthOutcome.MALFORMED)
        if algorithm.endswith("-sess") and credentials.cnonce is None:
            return result(AuthOutcome.MALFORMED)
        # Checked before the user is looked up, so a malformed digest says nothing about the user.
        if len(credentials.response) != _DIGEST_HEX_LENGTH[_base(algorithm)]:
            return result(AuthOutcome.MALFORMED)
        minted_at = self.nonce_minted_at(credentials.nonce)
        if minted_at is None:
            return result(AuthOutcome.BAD_NONCE)
        # Ours, yet stamped ahead of the clock: minted before the host rebooted (the clock restarted).
        from_before_reboot = minted_at > now + _FUTURE_SKEW
        if credentials.opaque is not None and not hmac.compare_digest(credentials.opaque, self.opaque):
            return result(AuthOutcome.BAD_NONCE)

        # Same work for a known and an unknown user from here on.
        stored = lookup(username, _base(algorithm))
        known = stored is not None and _HEX_RE.fullmatch(stored) is not None
        key = stored if known and stored is not None else self._dummy_ha1[_base(algorithm)]
        expected = response(
            key,
            method,
            credentials.uri,
            credentials.nonce,
            algorithm=algorithm,
            qop=credentials.qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
        )
        given = credentials.response.lower()
        matches = hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))
        if not known:
            return result(AuthOutcome.UNKNOWN_USER)
        if not matches:
            return result(AuthOutcome.BAD_RESPONSE)

        expires_at = minted_at + self.nonce_ttl
        if now >= expires_at or from_before_reboot:
            return result(AuthOutcome.STALE)
        self._purge(now)
        highest = self._nc.get(credentials.nonce)
        if highest is None:
            if self._evicted_minted_at is not None and minted_at <= self._evicted_minted_at:
                return result(AuthOutcome.STALE)
            if qop is None:
                # RFC 2069 style: no nc to track; accepted only with require_qop=False (see docstring).
                return result(AuthOutcome.OK)
            self._remember(credentials.nonce, nc_value, minted_at, expires_at)
            return result(AuthOutcome.OK)
        if qop is None or nc_value <= highest:
            return result(AuthOutcome.REPLAY)
        self._nc[credentials.nonce] = nc_value
        return result(AuthOutcome.OK)

    # -- nonce-count table --

    def _remember(self, nonce: str, nc_value: int, minted_at: float, expires_at: float) -> None:
        while len(self._nc) >= self.max_nonce_count_window:
            _, evicted_minted_at, evicted = heapq.heappop(self._nc_heap)
            if self._nc.pop(evicted, None) is not None:
                if self._evicted_minted_at is None or evicted_minted_at > self._evicted_minted_at:
                    self._evicted_minted_at = evicted_minted_at
        self._nc[nonce] = nc_value
        heapq.heappush(self._nc_heap, (expires_at, minted_at, nonce))

    def _purge(self, now: float) -> None:
        heap = self._nc_heap
        while heap and heap[0][0] <= now:
            _, _, nonce = heapq.heappop(heap)
            self._nc.pop(nonce, None)
        if self._evicted_minted_at is not None and self._evicted_minted_at + self.nonce_ttl <= now:
            self._evicted_minted_at = None  # everything it covered has expired anyway

    def expire(self, *, now: float) -> None:
        """Forget nonce-counts of expired nonces (also done lazily by `verify`)."""
        self._purge(now)

    def next_deadline(self) -> float | None:
        """When the earliest tracked nonce expires, or None."""
        return self._nc_heap[0][0] if self._nc_heap else None

    @property
    def tracked_nonces(self) -> int:
        """How many nonces have a remembered nonce-count."""
        return len(self._nc)
