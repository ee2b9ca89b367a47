"""Typed SIP header values (RFC 3261 §20, grammar of §25) and the helpers to parse them.

Via (§20.42), name-addr headers (From, To, Contact, Route, Record-Route, Reply-To: §20.10, §20.20),
CSeq (§20.16), header parameters, quoted strings, and the splitting of comma-separated list headers
(§7.3.1) that respects quoted strings and angle brackets. Names: the compact-form table (§7.3.3) and the
canonical spelling we write. Common shapes go through one regex match; the general code handles, and
names the fault in, everything else.
Not here: the digest Authorization/WWW-Authenticate parameters (sip/auth.py), and typed values of
headers no layer reads (Date, Retry-After, Warning ...), which stay strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from softswitch.sip.errors import SipParseError
from softswitch.sip.uri import _SIP_FAST_RE, SipUri, Uri, is_ipv6, parse_uri
from softswitch.sip.uri import _parse_params as _parse_uri_params

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "CSeq",
    "NameAddr",
    "Via",
    "canonical_name",
    "header_key",
    "parse_cseq",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_via_list",
    "quote",
    "split_list",
    "unquote_string",
]

# §7.3.3 and the IANA registry: compact form -> full name (lower case).
COMPACT_FORMS: dict[str, str] = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
}

# How we spell header names we write (lower-case key -> canonical).
_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
        "Content-Type", "Content-Encoding", "Content-Disposition", "Content-Language", "Expires",
        "Min-Expires", "Allow", "Accept", "Accept-Encoding", "Accept-Language", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Route", "Record-Route", "User-Agent", "Server", "Date",
        "WWW-Authenticate", "Authorization", "Proxy-Authenticate", "Proxy-Authorization",
        "Authentication-Info", "Retry-After", "Warning", "Subject", "Event", "Allow-Events",
        "Refer-To", "Referred-By", "Session-Expires", "Min-SE", "RSeq", "RAck", "Path",
        "Service-Route", "Timestamp", "Organization", "Priority", "Reply-To", "In-Reply-To",
        "Call-Info", "Alert-Info", "Error-Info", "MIME-Version", "Reason", "P-Asserted-Identity",
        "Privacy", "Accept-Contact", "Reject-Contact", "Request-Disposition", "Identity",
        "Subscription-State", "Replaces", "Flow-Timer",
    )
}

# Headers whose values may be combined with commas (§7.3.1); the others (Authorization, Date ...) not.
LIST_HEADERS: frozenset[str] = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require",
        "unsupported", "accept", "accept-encoding", "accept-language", "allow-events",
        "content-encoding", "content-language", "in-reply-to", "path", "service-route", "warning",
        "error-info", "alert-info", "call-info", "reply-to", "p-asserted-identity", "privacy",
    }
)


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact forms expanded."""
    key = name.lower()
    return COMPACT_FORMS.get(key, key)


def canonical_name(name: str) -> str:
    """How we write a header name: `call-id` -> `Call-ID`, `v` -> `Via`, unknown ones as given."""
    key = header_key(name)
    return _CANONICAL.get(key, name)


# ---------------------------------------------------------------------------------------------------
# quoted strings, lists and parameters
# ---------------------------------------------------------------------------------------------------

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# Runs of qdtext are matched possessively (`++`, `*+`, Python 3.11): with a plain `+` inside `*` an
# unterminated quoted string backtracks exponentially ('"aaaa...' of 22 characters took 180 ms).
_QUOTED_STRING = r'"(?:[^"\\]++|\\.)*+"'
_QUOTED_RE = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.DOTALL)
# quoted-pair = "\" (any character): split() keeps the escaped characters and drops the backslashes,
# without the per-match cost of a substitution template.
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
# generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string
# Lenient: names and unquoted values may hold any visible character but ; = , and " (non-token
# characters turn up in tags and vendor parameters); controls and non-SP/HTAB white space may not.
_PARAM_RE = re.compile(
    r'[ \t]*;[ \t]*([^\x00-\x20\x7f;=,"]+)[ \t]*'
    r'(?:=[ \t]*(' + _QUOTED_STRING + r'|[^\x00-\x20\x7f;,"]*))?[ \t]*',
    re.DOTALL,
)


def unquote_string(text: str) -> str:
    """The content of a quoted-string with quoted-pairs resolved (`"a\\"b"` -> `a"b`)."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return "".join(_UNESCAPE_RE.split(inner)) if "\\" in inner else inner
    return text


def quote(text: str) -> str:
    """A quoted-string for `text`, escaping backslash and double quote."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# One list element: runs of ordinary characters, quoted strings and <...> sections, up to a comma
# outside both (§7.3.1). A '<' without its '>' takes the rest of the value, as commas inside an
# unclosed URI are not separators. Each alternative starts with a different character, so there is
# no backtracking between them: linear in the length of the value.
_ELEMENT_RE = re.compile(r'(?:[^,"<]++|' + _QUOTED_STRING + r'|<[^>]*+(?:>|\Z))*+', re.DOTALL)


def split_list(value: str) -> list[str]:
    """Split a list header's value at commas outside quoted strings and angle brackets (§7.3.1)."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    items: list[str] = []
    pos = 0
    end = len(value)
    match = _ELEMENT_RE.match
    while True:
        stop = match(value, pos).end()  # type: ignore[union-attr]
        if stop != end and value[stop] != ",":  # only an unterminated quoted string stops it there
            raise SipParseError("unterminated quoted string")
        item = value[pos:stop].strip()
        if not item:
            raise SipParseError("empty element in a comma-separated list")
        items.append(item)
        if stop == end:
            return items
        pos = stop + 1


# Characters that send parse_params to its general path: white space, quotes, commas, controls.
_PARAMS_SLOW_RE = re.compile(r'[\x00-\x20\x7f,"]')


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;name=value;flag` header parameters. Names lower-cased; quoted values kept quoted."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    if text[0] == ";" and _PARAMS_SLOW_RE.search(text) is None:
        # Fast path, same result as _PARAM_RE when there is no white space, quote or comma to handle.
        for item in text[1:].split(";"):
            name, eq, value = item.partition("=")
            if not name:
                break  # ";;" or ";=x": let the general path below name the error
            params[name.lower()] = value if eq else None
        else:
            return params
        params = {}
    pos = 0
    end = len(text.rstrip(" \t"))
    while pos < end:
        match = _PARAM_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise SipParseError(f"malformed parameter near {text[pos:pos + 20]!r}")
        params[match.group(1).lower()] = match.group(2)
        pos = match.end()
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# ---------------------------------------------------------------------------------------------------
# Via (§20.42)
# ---------------------------------------------------------------------------------------------------

# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
# sent-by = host [ COLON port ]
_VIA_RE = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9.]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?:\s*:\s*(\d{1,5}))?\s*",
    re.ASCII,
)


@dataclass(slots=True)
class Via:
    """One Via value. `params` keeps order; `rport` is None (absent), "" (empty flag) or the port."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sent_by(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_format_params(self.params)}"


def parse_via(text: str) -> Via:
    match = _VIA_RE.match(text)
    if match is None:
        raise SipParseError(f"malformed Via {text.strip()[:60]!r}", header="Via")
    name, version, transport, host, port = match.groups()
    if name.upper() != "SIP":
        raise SipParseError(f"unsupported Via protocol {name}/{version}", header="Via")
    if host.startswith("["):
        host = host[1:-1]
        if not is_ipv6(host):
            raise SipParseError(f"malformed IPv6 address in Via {host[:60]!r}", header="Via")
    try:
        params = parse_params(text[match.end() :])
    except SipParseError as exc:
        raise SipParseError(f"malformed Via parameters: {exc.reason}", header="Via") from None
    port_number = int(port) if port else None
    if port_number is not None and port_number > 65535:
        raise SipParseError("Via port out of range", header="Via")
    branch = params.get("branch")
    if "branch" in params and not branch:
        raise SipParseError("empty Via branch", header="Via")
    return Via(
        transport=transport.upper(), host=host, port=port_number, params=params,
        protocol=f"{name.upper()}/{version}",
    )


def parse_via_list(value: str) -> list[Via]:
    try:
        items = split_list(value)
    except SipParseError as exc:
        raise SipParseError(f"malformed Via: {exc.reason}", header="Via") from None
    if not items:
        raise SipParseError("empty Via header", header="Via")
    return [parse_via(item) for item in items]


# ---------------------------------------------------------------------------------------------------
# name-addr / addr-spec (§20.10, §20.20, §20.39, §25: from-spec, contact-param, rec-route)
# ---------------------------------------------------------------------------------------------------

_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~ \t\x80-\U0010ffff]*")


@dataclass(slots=True)
class NameAddr:
    """`"Display" <uri>;params` or a bare addr-spec. `uri` is parsed; header params in `params`."""

    uri: Uri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise SipParseError(f"not a SIP URI: {self.uri}", status=416)
        return self.uri

    def with_tag(self, tag: str) -> NameAddr:
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(uri=self.uri, display=self.display, params=params)

    def __str__(self) -> str:
        display = "" if self.display is None else quote(self.display) + " "
        return f"{display}<{self.uri}>{_format_params(self.params)}"


# The common shape in one match: an optional quoted display name, <sip:...> in the shape uri.py's fast
# path takes, and parameters without white space or quotes. Anything else takes the general path.
_NAME_ADDR_FAST_RE = re.compile(
    r'(?:"((?:[^"\\]++|\\.)*+)"[ \t]*)?<(sips?):'
    + _SIP_FAST_RE.pattern
    + r'>((?:;[^\x00-\x20\x7f;=,"]+(?:=[^\x00-\x20\x7f;,"]*)?)*)',
    re.ASCII,
)


def _fast_name_addr(match: re.Match[str]) -> NameAddr | None:
    quoted, scheme, user, password, host, port_text, uri_params, params_text = match.groups()
    port = None if port_text is None else int(port_text)
    if port is not None and port > 65535:
        return None
    if quoted is not None and "\\" in quoted:
        quoted = "".join(_UNESCAPE_RE.split(quoted))
    params: dict[str, str | None] = {}
    if params_text:
        for item in params_text[1:].split(";"):
            name, eq, value = item.partition("=")
            params[name.lower()] = value if eq else None
    uri_param_dict = _parse_uri_params(uri_params[1:], "") if uri_params else {}
    return NameAddr(SipUri(host, user, password, port, scheme, uri_param_dict, {}), quoted, params)


def parse_name_addr(text: str, *, header: str | None = None) -> NameAddr:
    """Parse a From/To/Contact/Route element. Raises SipParseError naming `header`."""
    text = text.strip()
    fast = _NAME_ADDR_FAST_RE.fullmatch(text)
    if fast is not None:
        addr = _fast_name_addr(fast)
        if addr is not None:
            return addr
    display: str | None = None
    try:
        if text.startswith('"'):
            match = _QUOTED_RE.match(text)
            if match is None:
                raise SipParseError("unterminated display name")
            display = unquote_string(match.group(0))
            rest = text[match.end() :].lstrip()
            if not rest.startswith("<"):
                raise SipParseError("display name without <URI>")
            text = rest
        lt = text.find("<")
        if lt != -1:
            if lt > 0:
                name = text[:lt].strip()
                if not _DISPLAY_TOKENS_RE.fullmatch(name):
                    raise SipParseError("invalid display name")
                display = name or None
            gt = text.find(">", lt)
            if gt == -1:
                raise SipParseError("missing '>'")
            uri = parse_uri(text[lt + 1 : gt])
            params = parse_params(text[gt + 1 :])
        else:
            # addr-spec: parameters after the URI are header parameters (§20.10), and the URI itself
            # cannot carry ';' params or '?' headers without angle brackets.
            semi = text.find(";")
            uri_text, params_text = (text, "") if semi == -1 else (text[:semi], text[semi:])
            if not uri_text or " " in uri_text.strip():
                raise SipParseError("malformed addr-spec")
            if "?" in uri_text:
                # §20.10: a URI with a comma, question mark or semicolon MUST be in angle brackets.
                # RFC 4475 §3.1.2.13 allows inferring them; we refuse, as a registrar storing the
                # binding would otherwise keep a Contact other elements read differently.
                raise SipParseError("URI with headers must be enclosed in <>")
            uri = parse_uri(uri_text)
            params = parse_params(params_text)
    except SipParseError as exc:
        raise SipParseError(
            f"malformed {header or 'address'}: {exc.reason}", status=exc.status, header=header
        ) from None
    return NameAddr(uri=uri, display=display, params=params)


def parse_name_addr_list(value: str, *, header: str | None = None) -> list[NameAddr]:
    try:
        items = split_list(value)
    except SipParseError as exc:
        raise SipParseError(f"malformed {header}: {exc.reason}", header=header) from None
    return [parse_name_addr(item, header=header) for item in items]


# ---------------------------------------------------------------------------------------------------
# CSeq (§20.16)
# ---------------------------------------------------------------------------------------------------

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
_CSEQ_RE = re.compile(r"\s*(\d+)\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*\Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    match = _CSEQ_RE.match(text)
    if match is None:
        raise SipParseError(f"malformed CSeq {text.strip()[:40]!r}", header="CSeq")
    digits = match.group(1)
    # §8.1.1.5: "MUST be expressible as a 32-bit unsigned integer and MUST be less than 2**31".
    # Length first: int() refuses strings of more than 4,300 digits with a ValueError.
    if len(digits) > 10 or int(digits) >= 2**31:
        raise SipParseError("CSeq number out of range", header="CSeq")
    seq = int(digits)
    return CSeq(seq, match.group(2))
