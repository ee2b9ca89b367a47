"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966).

Parsing, serialisation and the §19.1.4 comparison rules. Escaped characters are kept as sent in `user`,
parameters and headers (so serialisation is faithful) and compared in a normal form where escapes of
unreserved characters are decoded. IPv6 hosts are validated, stored without brackets and written with
them. A "?" before the "@" belongs to the user part unless what precedes it is a host (see
_headers_before). Any other scheme is kept whole as an `AbsoluteUri` (the core answers 416 where it
needs a SIP URI).
Not here: resolving a URI to a transport, address and port (RFC 3263) — that is the transport's job.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from softswitch.sip.errors import SipParseError

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "parse_uri"]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_HOST_RE = re.compile(
    r"(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
    r"|[A-Za-z0-9]++(?:[_\-]++[A-Za-z0-9]++)*+(?:\.[A-Za-z0-9]++(?:[_\-]++[A-Za-z0-9]++)*+)*+\.?)\Z",
    re.ASCII,
)
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+\Z")
# Characters that may never appear raw in a SIP URI (§25: no whitespace, no controls, no quotes or angles).
_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f<>\"]")
# Parameters whose presence in one URI but not the other makes two URIs different (§19.1.4).
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True)
class SipUri:
    """A `sip:` or `sips:` URI. Parameter names are kept lower-case; values as sent."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def aor(self) -> str:
        """The address-of-record form: scheme, user and host, lower-cased host, no port or params."""
        user = f"{unquote(self.user)}@" if self.user else ""
        return f"{self.scheme}:{user}{self.host.lower()}"

    def copy(self, **changes: object) -> SipUri:
        values = {
            "host": self.host,
            "user": self.user,
            "password": self.password,
            "port": self.port,
            "scheme": self.scheme,
            "params": dict(self.params),
            "headers": dict(self.headers),
        }
        values.update(changes)
        return SipUri(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host_port)
        if self.params:
            out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(out)

    def equivalent(self, other: object) -> bool:
        """URI equality as RFC 3261 §19.1.4 defines it (not Python `==`, which is structural)."""
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        # userinfo is compared case-sensitively, everything else case-insensitively; "characters other
        # than those in the reserved set are equivalent to their % HEX HEX encoding".
        if _norm(self.user) != _norm(other.user) or _norm(self.password) != _norm(other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = _norm_params(self.params)
        theirs = _norm_params(other.params)
        for name in _SIGNIFICANT_PARAMS:
            if (name in mine) != (name in theirs):
                return False
        for name, value in mine.items():
            if name in theirs and value != theirs[name]:
                return False
        mine_h = {(_norm(k) or "").lower(): _norm(v) for k, v in self.headers.items()}
        theirs_h = {(_norm(k) or "").lower(): _norm(v) for k, v in other.headers.items()}
        return mine_h == theirs_h

    @classmethod
    def parse(cls, text: str) -> SipUri:
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise SipParseError(f"not a SIP URI: {text!r}", status=416)
        return uri


_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# §25 reserved, plus "%" itself: "%2541" must stay "%2541", never become the escape "%41" (RFC 4475
# §3.1.1.3: unescaping is never recursive).
_RESERVED = frozenset(";/?:@&=+$,%")


def _unescape_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    if " " <= char <= "~" and char not in _RESERVED:
        return char
    return "%" + match.group(1).upper()


def _norm(value: str | None) -> str | None:
    """The §19.1.4 comparison form: escapes of non-reserved printable ASCII decoded, others upper-case.

    Unlike urllib's unquote, an escaped reserved character stays distinct from the raw one ("a%3Bb" is
    not "a;b"), and escapes that are not UTF-8 stay distinct from each other ("%FE" is not "%FF").
    """
    if value is None or "%" not in value:
        return value
    return _ESCAPE_RE.sub(_unescape_unreserved, value)


def _norm_params(params: dict[str, str | None]) -> dict[str, str]:
    return {(_norm(k) or "").lower(): (_norm(v) or "").lower() for k, v in params.items()}


@dataclass(slots=True)
class TelUri:
    """A `tel:` URI (RFC 3966): the number and its parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_params(self.params)}"

    @property
    def user(self) -> str:
        return self.number

    def equivalent(self, other: object) -> bool:
        if not isinstance(other, TelUri):
            return False
        strip = str.maketrans("", "", "-.()")
        return self.number.translate(strip) == other.number.translate(strip) and {
            k: (v or "").lower() for k, v in self.params.items()
        } == {k: (v or "").lower() for k, v in other.params.items()}


@dataclass(slots=True)
class AbsoluteUri:
    """Any other absolute URI (`urn:`, `http:`, `mailto:` ...), kept whole."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def equivalent(self, other: object) -> bool:
        return isinstance(other, AbsoluteUri) and str(self).lower() == str(other).lower()


Uri = SipUri | TelUri | AbsoluteUri


def _parse_params(text: str, source: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text.split(";"):
        if not item:
            raise SipParseError(f"empty URI parameter in {source!r}")
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError(f"URI parameter without a name in {source!r}")
        params[name.lower()] = value if eq else None
    return params


def parse_uri(text: str) -> Uri:
    """Parse a URI. Raises `SipParseError` (status 400) for a malformed SIP/SIPS/tel URI."""
    text = text.strip()
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"URI without a scheme: {text!r}")
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest, text)
    if not _SCHEME_RE.match(scheme):
        raise SipParseError(f"invalid URI scheme in {text!r}")
    if scheme == "tel":
        if not rest or _FORBIDDEN_RE.search(rest):
            raise SipParseError(f"malformed tel URI: {text!r}")
        number, _, params = rest.partition(";")
        if not number:
            raise SipParseError(f"tel URI without a number: {text!r}")
        return TelUri(number=number, params=_parse_params(params, text))
    if not rest or _FORBIDDEN_RE.search(rest):
        raise SipParseError(f"malformed URI: {text!r}")
    return AbsoluteUri(scheme=scheme, rest=rest)


# The common shape of a SIP URI, in one match: [user[:password]@]host[:port][;params], with no "?"
# headers, no IPv6 reference and no ";" or "?" in the user part. Anything else (or a match whose port
# is over 65535) takes the general path below, which gives the same result or names the error.
_SIP_FAST_RE = re.compile(
    r'(?:([^\x00-\x20\x7f<>"@:;?]+)(?::([^\x00-\x20\x7f<>"@;?]*))?@)?'
    r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
    r"|[A-Za-z0-9]++(?:[_\-]++[A-Za-z0-9]++)*+(?:\.[A-Za-z0-9]++(?:[_\-]++[A-Za-z0-9]++)*+)*+\.?)"
    r"(?::(\d{1,5}))?"
    r'((?:;[^\x00-\x20\x7f<>"@;?=]+(?:=[^\x00-\x20\x7f<>"@;?]*)?)*)',
    re.ASCII,
)


def _parse_sip(scheme: str, rest: str, source: str) -> SipUri:
    fast = _SIP_FAST_RE.fullmatch(rest)
    if fast is not None:
        user, password, host, port_text, params_text = fast.groups()
        port = None if port_text is None else int(port_text)
        if port is None or port <= 65535:
            params = _parse_params(params_text[1:], source) if params_text else {}
            return SipUri(host, user, password, port, scheme, params, {})
    if not rest or _FORBIDDEN_RE.search(rest):
        raise SipParseError(f"malformed SIP URI: {source!r}")
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at != -1 and not _headers_before(rest, at, source):
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not user:
            raise SipParseError(f"empty user part in {source!r}")
        password = pw if colon else None
    headers: dict[str, str] = {}
    question = rest.find("?")
    if question != -1:
        for item in rest[question + 1 :].split("&"):
            if not item:
                continue
            name, _, value = item.partition("=")
            headers[name] = value
        rest = rest[:question]
    semi = rest.find(";")
    hostport, params_text = (rest, "") if semi == -1 else (rest[:semi], rest[semi + 1 :])
    host, port = _hostport(hostport, source)
    return SipUri(
        host=host,
        user=user,
        password=password,
        port=port,
        scheme=scheme,
        params=_parse_params(params_text, source),
        headers=headers,
    )


def _headers_before(rest: str, at: int, source: str) -> bool:
    """Whether a "?" before the "@" at `at` starts the URI headers rather than sitting in the user part.

    §25 allows "?" in a user part (user-unreserved; RFC 4475 §3.1.1.2 sends
    `sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,...@example.com`), while "@" is
    legal nowhere but after the userinfo. Some phones nevertheless leave "@" unescaped in a header
    value (`sip:bob@b.example?Replaces=abc@10.0.0.1...` in Refer-To is the usual one), so when the text
    before the "?" is a valid host[:port][;params] we read the "?" as the start of the headers.
    """
    question = rest.find("?", 0, at)
    if question == -1:
        return False
    try:
        _hostport(rest[:question].partition(";")[0], source)
    except SipParseError:
        return False
    return True


def _hostport(hostport: str, source: str) -> tuple[str, int | None]:
    port: int | None = None
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise SipParseError(f"unterminated IPv6 reference in {source!r}")
        host = hostport[1:close]
        tail = hostport[close + 1 :]
        if not is_ipv6(host):
            raise SipParseError(f"malformed IPv6 address in {source!r}")
        if tail:
            if not tail.startswith(":"):
                raise SipParseError(f"garbage after IPv6 reference in {source!r}")
            port = _port(tail[1:], source)
    else:
        host, colon, port_text = hostport.partition(":")
        if colon:
            port = _port(port_text, source)
        if not host or not _HOST_RE.match(host):
            raise SipParseError(f"malformed host in {source!r}")
    return host, port


def is_ipv6(text: str) -> bool:
    """True for an IPv6 address as §25 IPv6address allows (hex groups, "::", a dotted IPv4 tail)."""
    if not _IPV6_RE.match(text) or ":" not in text:  # also keeps zone ids ("%eth0") out
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _port(text: str, source: str) -> int:
    # isascii(): str.isdigit() is also true for "²" and "٣", which int() rejects or misreads.
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise SipParseError(f"invalid port in {source!r}")
    return int(text)
