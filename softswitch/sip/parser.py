"""Bytes to `Request` / `Response` (RFC 3261 §7, §18.3 for datagram framing).

One pass over the header block, linear in its size: the start line, header lines (with §7.3.1 line
folding), then the mandatory headers parsed eagerly so a malformed message never reaches a transaction.
Limits are constructor arguments of `ParserLimits`. Errors are `SipParseError`s carrying the status the
edge should answer with and, for requests, what it needs to answer (`exc.basis`); `error_response`
builds that answer when the Via, From, To, Call-ID and CSeq it must copy are usable.
"""

from __future__ import annotations

from dataclasses import dataclass

from softswitch.sip.errors import SipParseError
from softswitch.sip.grammar import REQUEST_LINE_RE, STATUS_LINE_RE, is_token
from softswitch.sip.headers import header_key, parse_via_list
from softswitch.sip.message import Headers, Request, Response
from softswitch.sip.uri import parse_uri

__all__ = ["DEFAULT_LIMITS", "ParserLimits", "error_response", "parse_message"]


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds on what one message may cost us.

    max_message_size: 65,535 bytes is the most a UDP datagram can carry; Kamailio's BUF_SIZE is the same.
    max_headers: Kamailio and PJSIP accept far fewer than 128 distinct headers in practice.
    max_line_length: 8 KiB matches common HTTP servers' header line limits (nginx large_client_header).
    """

    max_message_size: int = 65535
    max_headers: int = 128
    max_line_length: int = 8192


DEFAULT_LIMITS = ParserLimits()

_SURR = "surrogateescape"
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_DISPLAY_NAMES = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}


def parse_message(data: bytes, *, limits: ParserLimits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one complete SIP message (a datagram, or one framed out of a stream)."""
    if len(data) > limits.max_message_size:
        raise SipParseError("message too large", status=513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # §7.5: ignore CRLFs before the start line
    end = data.find(b"\r\n\r\n")
    if end != -1:
        head = data[:end]
        body = data[end + 4 :]
        lines = head.decode("utf-8", _SURR).split("\r\n")
    else:
        # Lenient: bare-LF line ends (seen from hand-made test tools and some old phones).
        end = data.find(b"\n\n")
        if end == -1:
            raise _with_basis(data, SipParseError("no empty line after the headers (truncated message?)"))
        head = data[:end]
        body = data[end + 2 :]
        lines = [line.rstrip("\r") for line in head.decode("utf-8", _SURR).split("\n")]
    if not lines or not lines[0]:
        raise SipParseError("empty start line")
    start = lines[0]
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

    items = _header_items(lines, limits)

    if version.upper() != "SIP/2.0":
        raise _basis(SipParseError(f"unsupported version {version}", status=505), method, items)

    headers = Headers._from_keyed(items)
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
        msg = Request.__new__(Request)
        msg.method = method
        msg.uri = uri
        msg.headers = headers
        msg.body = b""

    try:
        _check_core(msg)
        length = msg.content_length
    except SipParseError as exc:
        raise _basis(exc, method, items) if not is_response else exc from None
    if length is not None:
        if length > len(body):
            short = SipParseError("body shorter than Content-Length", header="Content-Length")
            raise _basis(short, method, items) if not is_response else short
        if length < len(body):
            body = body[:length]  # §18.3: bytes past Content-Length in a datagram are discarded
    msg.body = bytes(body)
    return msg


def _header_items(lines: list[str], limits: ParserLimits) -> list[tuple[str, str, str]]:
    items: list[tuple[str, str, str]] = []
    max_line = limits.max_line_length
    for line in lines[1:]:
        if len(line) > max_line:
            raise SipParseError("header line too long")
        if line[:1] in (" ", "\t"):
            # §7.3.1 line folding: a continuation line joins the previous value with one SP.
            if not items:
                raise SipParseError("continuation line before any header")
            key, name, value = items[-1]
            items[-1] = (key, name, value + " " + line.strip())
            if len(items[-1][2]) > max_line:
                raise SipParseError("header line too long")
            continue
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError(f"malformed header line {line[:40]!r}")
        name = line[:colon].rstrip(" \t")
        if not is_token(name):
            raise SipParseError(f"malformed header name {name[:40]!r}")
        items.append((header_key(name), name, line[colon + 1 :].strip(" \t")))
        if len(items) > limits.max_headers:
            raise SipParseError("too many headers", status=513)
    return items


def _check_core(msg: Request | Response) -> None:
    headers = msg.headers
    for key in _REQUIRED:
        if key not in headers:
            raise SipParseError(f"missing {_DISPLAY_NAMES[key]} header", header=_DISPLAY_NAMES[key])
    msg.vias  # noqa: B018 - parse and cache the typed value; raises on malformed input
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.call_id  # noqa: B018
    cseq = msg.cseq
    if len(headers.get_all("from")) > 1 or len(headers.get_all("to")) > 1:
        raise SipParseError("more than one From or To header")
    if len(headers.get_all("call-id")) > 1 or len(headers.get_all("cseq")) > 1:
        raise SipParseError("more than one Call-ID or CSeq header")
    if isinstance(msg, Request):
        if cseq.method != msg.method:
            raise SipParseError("CSeq method does not match the request method", header="CSeq")
        msg.max_forwards  # noqa: B018


def _basis(exc: SipParseError, method: str, items: list[tuple[str, str, str]]) -> SipParseError:
    if method and exc.basis is None:
        exc.basis = (method, items)
    return exc


def _with_basis(data: bytes, exc: SipParseError) -> SipParseError:
    """For a truncated request, keep whatever complete header lines arrived so we can still answer."""
    try:
        text = data.decode("utf-8", _SURR)
        lines = text.replace("\r\n", "\n").split("\n")[:-1]  # the last line may be cut
        match = REQUEST_LINE_RE.fullmatch(lines[0]) if lines else None
        if match is None:
            return exc
        return _basis(exc, match.group(1), _header_items(lines, DEFAULT_LIMITS))
    except SipParseError:
        return exc


def error_response(exc: SipParseError, source: tuple[str, int] | None = None) -> Response | None:
    """The response the edge sends for a malformed request, or None when it cannot be answered.

    An answer needs a parseable top Via to be routed back, and the From, To, Call-ID and CSeq lines to
    copy (§8.2.6.2). ACKs are never answered. The reason phrase says what was wrong.
    """
    if exc.basis is None:
        return None
    method, items = exc.basis
    if method == "ACK":
        return None
    keys = {item[0] for item in items}
    if not all(key in keys for key in _REQUIRED):
        return None
    try:
        parse_via_list(next(v for k, _, v in items if k == "via"))
    except SipParseError:
        return None
    copied = [item for item in items if item[0] in _REQUIRED]
    if source is not None:
        # RFC 3581: the answer goes back where the request came from, so say so in the top Via.
        first = next(i for i, item in enumerate(copied) if item[0] == "via")
        vias = parse_via_list(copied[first][2])
        top = vias[0]
        if top.host != source[0] or "rport" in top.params:
            top.params["received"] = source[0]
        if "rport" in top.params:
            top.params["rport"] = str(source[1])
        copied[first] = ("via", "Via", ", ".join(str(v) for v in vias))
    phrase = f"Bad Request ({exc.reason})" if exc.status == 400 else None
    if phrase is not None:
        phrase = "".join(ch if ch.isprintable() else "?" for ch in phrase)[:120]
    response = Response(exc.status, phrase, Headers._from_keyed(copied))
    response.headers.add("Content-Length", "0")
    return response
