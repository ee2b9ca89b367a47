"""Bytes to `Request` / `Response` (RFC 3261 §7, §8.2.6.2 for the answers, §18.3 for datagram framing).

One pass over the header block, linear in its size: the start line, header lines (with §7.3.1 line
folding), then the core headers (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact)
parsed eagerly so a malformed message never reaches a transaction. Limits are the fields of
`ParserLimits`. Errors are `SipParseError`s carrying the status the edge should answer with and, for
requests, what it needs to answer (`exc.basis`, salvaged even when the header block itself is broken);
`error_response` builds that answer, with a reason phrase that says what was wrong.

Speed: a header block without folding (what every phone we know sends) is split by one regex pass and
a list comprehension; folded or malformed blocks take a per-line path that also names the bad line.
The typed values of the core headers are parsed here, once, and cached in the message's `Headers`,
which also keeps the received header bytes so an unmodified message serialises byte for byte.
Every pattern is linear on any input (tests/sip/test_torture.py measures 21 hostile shapes).

Not here: finding message boundaries in a TCP/TLS stream (sip/framing.py; a stream message must carry
Content-Length, §18.3), and the 416/420/415/483 answers that depend on what the core supports.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from softswitch.sip.errors import SipParseError
from softswitch.sip.grammar import REQUEST_LINE_RE, STATUS_LINE_RE, TOKEN, is_token
from softswitch.sip.headers import (
    COMPACT_FORMS,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
)
from softswitch.sip.message import (
    REASON_PHRASES,
    Headers,
    Request,
    Response,
    _call_id_value,
    _int_value,
)
from softswitch.sip.uri import SipUri, parse_uri

__all__ = ["DEFAULT_LIMITS", "ParserLimits", "error_response", "parse_message"]


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds on what one message may cost us.

    max_message_size: 65,535 bytes is the most a UDP datagram can carry; Kamailio's BUF_SIZE is the same.
    max_headers: Kamailio and PJSIP accept far fewer than 128 distinct headers in practice.
    max_line_length: 8 KiB matches common HTTP servers' header line limits (nginx large_client_header).

    Exceeding max_message_size, max_headers or max_line_length for a header is 513 Message Too Large
    ("the message length exceeded its capabilities", §21.5.13); a start line over max_line_length is
    414 Request-URI Too Long; a Content-Length over max_message_size is 413.
    """

    max_message_size: int = 65535
    max_headers: int = 128
    max_line_length: int = 8192


DEFAULT_LIMITS = ParserLimits()

_SURR = "surrogateescape"
# A control character not escaped by a quoted-pair ("\" CHAR, which may escape %x00-09 / %x0B-0C).
_CONTROL_RE = re.compile(rb"(?<!\\)[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
# RFC 3261 and the extensions whose methods a phone may send us (3262, 3265/6665, 3311, 3428, 3515,
# 3903, 6086). Any other method is unknown to us: see the CSeq check in _check_core.
_KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "OPTIONS", "BYE", "CANCEL", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
     "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)
_DISPLAY_NAMES = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}

# message-header = field-name HCOLON field-value CRLF; HCOLON = *( SP / HTAB ) ":" SWS (§25).
# One header line of an unfolded block, starting right after a CRLF (so a bare LF inside a line cannot
# fake a line start). The parser counts CRLFs and takes the per-line path unless every line matched.
_HEADER_LINE_RE = re.compile(r"(?<=\r\n)(" + TOKEN + r")[ \t]*:[ \t]*([^\r\n]*)\r\n")

# Lookup keys of header names as written ("Via", "v", "CSeq" ...), filled as names are seen; bounded so
# a peer inventing names cannot grow it without limit.
_KEYS: dict[str, str] = {}
_KEYS_MAX = 2048


def _key(name: str) -> str:
    key = name.lower()
    key = COMPACT_FORMS.get(key, key)
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[name] = key
    return key


def parse_message(data: bytes, *, limits: ParserLimits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one complete SIP message (a datagram, or one framed out of a stream).

    Raises `SipParseError`; for a request, `exc.basis` then holds what `error_response` needs whenever
    a request line and the core header lines can be made out, even if the header block itself is
    what was malformed.
    """
    try:
        return _parse(data, limits)
    except SipParseError as exc:
        if exc.basis is None:
            exc.basis = _salvage(data, limits)
        raise


def _parse(data: bytes, limits: ParserLimits) -> Request | Response:
    if len(data) > limits.max_message_size:
        raise SipParseError("message too large", status=513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # §7.5: ignore CRLFs before the start line
    end = data.find(b"\r\n\r\n")
    lines: list[str] | None = None
    if end != -1:
        text = data[: end + 2].decode("utf-8", _SURR)  # the header block, each line ending in CRLF
        body = data[end + 4 :]
        first = text.find("\r\n")
        start = text[:first]
    else:
        # Lenient: bare-LF line ends (seen from hand-made test tools and some old phones).
        end = data.find(b"\n\n")
        if end == -1:
            raise SipParseError("no empty line after the headers (truncated message?)")
        body = data[end + 2 :]
        lines = [line.rstrip("\r") for line in data[:end].decode("utf-8", _SURR).split("\n")]
        start = lines[0]
        text = ""
        first = 0
    if not start:
        raise SipParseError("empty start line")
    if len(start) > limits.max_line_length:
        raise SipParseError("start line too long", status=414 if not start.startswith("SIP/") else 400)

    is_response = start[:4].upper() == "SIP/"
    method = ""
    if is_response:
        match = STATUS_LINE_RE.fullmatch(start)
        if match is None:
            raise SipParseError("malformed status line")
        version = match.group(1)
    else:
        match = REQUEST_LINE_RE.fullmatch(start)
        if match is None:
            raise SipParseError("malformed request line")
        method, uri_text, version = match.groups()

    crlf = lines is None
    items = _fast_items(text, first + 2, limits) if crlf else None
    if items is None:
        if lines is None:
            lines = text[:-2].split("\r\n")
        items = _header_items(lines, limits)

    if version.upper() != "SIP/2.0":
        raise _basis(SipParseError(f"unsupported version {version}", status=505), method, items)

    headers = Headers._from_keyed(items)
    if crlf:
        headers._raw = data[data.find(b"\r\n") + 2 : end + 2]  # serialised as is until modified
    msg: Request | Response
    if is_response:
        status = int(match.group(2))
        if status < 100 or status > 699:
            raise SipParseError("status code out of range")
        msg = Response(status, match.group(3) or "", headers, b"")
    else:
        try:
            uri = parse_uri(uri_text)
        except SipParseError as exc:
            raise _basis(SipParseError(f"malformed Request-URI: {exc.reason}"), method, items) from None
        if isinstance(uri, SipUri) and uri.headers:
            # §19.1.1 Table 1: headers are not allowed in a Request-URI. RFC 4475 §3.1.2.11 lets us
            # either refuse or drop them; dropping would change what the request asks for.
            raise _basis(SipParseError("Request-URI carries URI headers"), method, items)
        msg = Request.__new__(Request)
        msg.method = method
        msg.uri = uri
        msg.headers = headers
        msg.body = b""

    try:
        length = _check_core(msg, items, method)
    except SipParseError as exc:
        raise _basis(exc, method, items) if not is_response else exc from None
    if length is not None:
        if length > limits.max_message_size:
            big = SipParseError("Content-Length exceeds the message size limit", status=413)
            raise _basis(big, method, items) if not is_response else big
        if length > len(body):
            short = SipParseError("body shorter than Content-Length", header="Content-Length")
            raise _basis(short, method, items) if not is_response else short
        if length < len(body):
            body = body[:length]  # §18.3: bytes past Content-Length in a datagram are discarded
    # TEXT-UTF8 (§25.1) has no control characters but HTAB; a NUL or an ESC in a header is an attack or
    # a broken peer, never a phone we must be lenient with. Checked last, so a more precise error wins.
    bad = _CONTROL_RE.search(data, 0, end)
    if bad is not None:
        error = SipParseError(f"control character 0x{bad.group()[0]:02x} in the headers")
        raise _basis(error, method, items) if not is_response else error
    msg.body = bytes(body)
    return msg


def _fast_items(text: str, pos: int, limits: ParserLimits) -> list[tuple[str, str, str]] | None:
    """The header items of an unfolded, well-formed CRLF block, or None to take the per-line path."""
    if len(text) - pos > limits.max_line_length and any(
        len(line) > limits.max_line_length for line in text.split("\r\n")
    ):
        return None
    pairs = _HEADER_LINE_RE.findall(text, pos)
    if len(pairs) != text.count("\r\n", pos) or len(pairs) > limits.max_headers:
        return None  # folding, a malformed line, a bare LF or too many headers: let the slow path say
    keys = _KEYS
    return [(keys.get(name) or _key(name), name, value.rstrip(" \t")) for name, value in pairs]


def _header_items(lines: list[str], limits: ParserLimits) -> list[tuple[str, str, str]]:
    """The per-line path: folding (§7.3.1) and a precise error for the first bad line."""
    items: list[tuple[str, str, str]] = []
    folded: list[str] = []  # continuation pieces of items[-1], joined once (no quadratic +=)
    folded_len = 0
    max_line = limits.max_line_length
    for line in lines[1:]:
        if len(line) > max_line:
            raise SipParseError("header line too long", status=513)
        if line[:1] in (" ", "\t"):
            # §7.3.1 line folding: a continuation line joins the previous value with one SP.
            if not items:
                raise SipParseError("continuation line before any header")
            if not folded:
                folded.append(items[-1][2])
                folded_len = len(items[-1][2])
            piece = line.strip(" \t")
            folded.append(piece)
            folded_len += 1 + len(piece)
            if folded_len > max_line:
                raise SipParseError("header line too long", status=513)
            continue
        if folded:
            key, name, _ = items[-1]
            items[-1] = (key, name, " ".join(folded).strip(" \t"))
            folded = []
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError(f"malformed header line {line[:40]!r}")
        name = line[:colon].rstrip(" \t")
        if not is_token(name):
            raise SipParseError(f"malformed header name {name[:40]!r}")
        items.append((header_key(name), name, line[colon + 1 :].strip(" \t")))
        if len(items) > limits.max_headers:
            raise SipParseError("too many headers", status=513)
    if folded:
        key, name, _ = items[-1]
        items[-1] = (key, name, " ".join(folded).strip(" \t"))
    return items


def _check_core(msg: Request | Response, items: list[tuple[str, str, str]], method: str) -> int | None:
    """Parse the headers every layer needs into the message's typed-value cache; return Content-Length."""
    vias: list[str] = []
    contacts: list[str] = []
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for key, _, value in items:
        if key == "via":
            vias.append(value)
        elif key == "contact":
            contacts.append(value)
        elif key not in first:
            first[key] = value
        else:
            counts[key] = counts.get(key, 1) + 1
    missing = [_DISPLAY_NAMES[k] for k in _REQUIRED if k not in first and (k != "via" or not vias)]
    if missing:
        names = ", ".join(missing)
        raise SipParseError(f"missing {names} header{'s' if len(missing) > 1 else ''}", header=missing[0])
    cache = msg.headers._cache
    parsed = []
    for line in vias:
        parsed.extend(parse_via_list(line))
    cache["via"] = parsed
    cache["from"] = parse_name_addr(first["from"], header="From")
    cache["to"] = parse_name_addr(first["to"], header="To")
    cache["call-id"] = _call_id_value(first["call-id"])
    cseq = cache["cseq"] = parse_cseq(first["cseq"])
    for key in ("from", "to", "call-id", "cseq"):
        if key in counts:  # RFC 4475 §3.3.8
            raise SipParseError(f"more than one {_DISPLAY_NAMES[key]} header", header=_DISPLAY_NAMES[key])
    if method:
        if cseq.method != method:
            # RFC 4475 §3.1.2.18: for a method nobody knows, 501 is "better future-proof" than 400.
            status = 400 if method in _KNOWN_METHODS else 501
            raise SipParseError(
                "CSeq method does not match the request method", status=status, header="CSeq"
            )
        cache["max-forwards"] = _int_value("Max-Forwards", first.get("max-forwards"), 255)
    if contacts and not (len(contacts) == 1 and contacts[0].strip() == "*"):
        # Style 9.5: Contact is eager too, so a registrar or dialog never meets a malformed one.
        # `Contact: *` alone (§10.2.2) has no typed value; Message.contacts answers [] for it.
        bindings = []
        for line in contacts:
            if line.strip() == "*":
                raise SipParseError("Contact: * mixed with other contacts", header="Contact")
            bindings.extend(parse_name_addr_list(line, header="Contact"))
        cache["contact"] = bindings
    if "content-length" in counts:
        # RFC 4475 §3.3.9: conflicting lengths are a framing error; we refuse even equal duplicates
        # rather than guess which one a proxy on the path would believe.
        raise SipParseError("more than one Content-Length header", header="Content-Length")
    length = cache["content-length"] = _int_value(
        "Content-Length", first.get("content-length"), 2**31 - 1
    )
    return length


def _basis(exc: SipParseError, method: str, items: list[tuple[str, str, str]]) -> SipParseError:
    if method and exc.basis is None:
        exc.basis = (method, items)
    return exc


# The core header lines (and their continuation lines) anywhere in a header block, for _salvage.
_SALVAGE_RE = re.compile(
    r"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t]+[^\r\n]*)*)",
    re.IGNORECASE | re.MULTILINE | re.ASCII,
)
_FOLD_RE = re.compile(r"\r?\n[ \t]+")


def _salvage(data: bytes, limits: ParserLimits) -> tuple[str, list[tuple[str, str, str]]] | None:
    """What error_response needs from a request that failed before its headers were itemised.

    Lenient and linear: a request line that starts with a method token, then every Via, From, To,
    Call-ID and CSeq line of the header block (folded lines unfolded; a line cut off at the end of a
    truncated message left out). Responses and unrecognisable start lines give None.
    """
    text = data[: limits.max_message_size].lstrip(b"\r\n").decode("utf-8", _SURR)
    end = text.find("\r\n\r\n")
    if end == -1:
        end = text.find("\n\n")
    text = text[:end] if end != -1 else text[: text.rfind("\n") + 1]
    newline = text.find("\n")
    start = text if newline == -1 else text[:newline]
    method, space, _ = start.partition(" ")
    if not space or not is_token(method) or method[:4].upper() == "SIP/":
        return None
    items = [
        (header_key(name), name, _FOLD_RE.sub(" ", value).strip(" \t"))
        for name, value in _SALVAGE_RE.findall(text, max(newline, 0))
    ]
    return method, items


# sent-protocol and something host-like: enough of a Via to echo back when parse_via_list refuses the
# rest of it (RFC 4475 §3.1.2.1 sends "SIP/2.0/UDP 192.0.2.15;;,;,," and expects a 400).
_VIA_HEAD_RE = re.compile(r"[ \t]*SIP[ \t]*/[ \t]*[0-9.]+[ \t]*/[ \t]*" + TOKEN + r"[ \t]+[^\s;,]+", re.ASCII)
_TAG_PARAM_RE = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)
_NOT_PRINTABLE_ASCII_RE = re.compile(r"[^\x20-\x7e]")


def error_response(exc: SipParseError, source: tuple[str, int] | None = None) -> Response | None:
    """The response the edge sends for a malformed request, or None when it cannot be answered.

    An answer needs a top Via to be routed back, and the From, To, Call-ID and CSeq lines to copy
    (§8.2.6.2); with those missing the answer would itself be malformed. ACKs are never answered.
    The reason phrase is the standard one followed by what was wrong, in printable ASCII:
    `400 Bad Request (malformed CSeq '1x REGISTER')`. Every Via line is copied; of the other four,
    the first of each. A To without a tag gets one derived from the request (§8.2.6.2; the same for
    a retransmission, as §8.2.7 asks of a stateless answer). With `source` (the address the request
    came from) the top Via gets `received`/`rport` (RFC 3581 §4) when it can be parsed.
    """
    if exc.basis is None:
        return None
    method, items = exc.basis
    if method == "ACK":
        return None
    vias = [value for key, _, value in items if key == "via"]
    first: dict[str, str] = {}
    for key, _, value in items:
        if key in _REQUIRED and key != "via":
            first.setdefault(key, value)
    if not vias or len(first) < len(_REQUIRED) - 1:
        return None
    try:
        top_line = parse_via_list(vias[0])
    except SipParseError:
        if not _VIA_HEAD_RE.match(vias[0]):
            return None
        top_line = None
    if source is not None and top_line is not None:
        # RFC 3581: the answer goes back where the request came from, so say so in the top Via.
        top = top_line[0]
        if top.host != source[0] or "rport" in top.params:
            top.params["received"] = source[0]
        if "rport" in top.params:
            top.params["rport"] = str(source[1])
        vias[0] = ", ".join(str(v) for v in top_line)
    to = first["to"]
    try:
        has_tag = parse_name_addr(to).tag is not None
    except SipParseError:
        has_tag = _TAG_PARAM_RE.search(to) is not None  # a malformed To: echo it, tag it if we can tell
    if not has_tag:
        to = f"{to};tag={_stateless_tag(first, vias[0])}"
    copied = [("via", "Via", value) for value in vias]
    copied += [
        ("from", "From", first["from"]),
        ("to", "To", to),
        ("call-id", "Call-ID", first["call-id"]),
        ("cseq", "CSeq", first["cseq"]),
        ("content-length", "Content-Length", "0"),
    ]
    phrase = f"{REASON_PHRASES.get(exc.status, 'Error')} ({exc.reason})"
    phrase = _NOT_PRINTABLE_ASCII_RE.sub("?", phrase[:120])
    return Response(exc.status, phrase, Headers._from_keyed(copied))


def _stateless_tag(first: dict[str, str], top_via: str) -> str:
    """A To tag that is the same for every retransmission of one request (§8.2.7)."""
    seed = "\n".join((first["from"], first["call-id"], first["cseq"], top_via))
    return hashlib.blake2s(seed.encode("utf-8", _SURR), digest_size=6).hexdigest()
