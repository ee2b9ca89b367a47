"""SIP requests and responses (RFC 3261 §7, §8.2.6, §20).

`Headers` keeps every header as received — the name as written, the value as a string — in order, with a
lower-case lookup key (compact forms expanded). A parsed message also keeps its header lines' bytes, so
until its headers change it serialises byte for byte (spacing and folding included); after a change
every line is written as `Name: value`. Typed views of the headers every layer needs (Via, From, To,
Call-ID, CSeq, Contact, Max-Forwards, Expires, Content-Length) are cached until the headers change; the
parser fills them eagerly so a malformed message is refused before any transaction sees it.

`bytes(msg)` serialises (adding Content-Length when the headers have none); `request.reply(status)`
builds a response as §8.2.6.2 says; `request.set_received(host, port)` stamps the top Via (RFC 3581).
Strings that did not come from the parser must not hold lone surrogates other than the U+DC80-U+DCFF
that stand for undecodable bytes: `bytes(msg)` cannot write them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import (
    LIST_HEADERS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
    split_list,
)
from softswitch.sip.randomness import random_hex
from softswitch.sip.uri import Uri, parse_uri

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "Message",
    "Request",
    "Response",
    "new_branch",
    "new_call_id",
    "new_tag",
]

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 439: "First Hop Lacks Outbound Support",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie then 64 random bits (§8.1.1.7)."""
    return "z9hG4bK" + random_hex(8)


def new_tag() -> str:
    """A fresh From/To tag with at least 32 bits of randomness (§19.3)."""
    return random_hex(6)


def new_call_id(host: str) -> str:
    return f"{random_hex(12)}@{host}"


_SURR = "surrogateescape"


class Headers:
    """Ordered header fields: (key, name as written, value). Lookup is by `header_key(name)`."""

    __slots__ = ("_cache", "_items", "_raw")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = [(header_key(n), n, v) for n, v in items]
        self._cache: dict[str, Any] = {}
        # The header lines exactly as received (bytes, each line ending in CRLF), kept by the parser
        # so that unmodified headers serialise byte-for-byte; every mutation drops it.
        self._raw: bytes | None = None

    @classmethod
    def _from_keyed(cls, items: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = items
        headers._cache = {}
        headers._raw = None
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, or `default`."""
        key = header_key(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every header line's value for `name`, as written (not split at commas)."""
        key = header_key(name)
        return [value for k, _, value in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """All values of a header, list headers split at their commas (§7.3.1)."""
        key = header_key(name)
        lines = [value for k, _, value in self._items if k == key]
        if key not in LIST_HEADERS:
            return lines
        out: list[str] = []
        for line in lines:
            out.extend(split_list(line))
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._items]

    def keyed(self) -> list[tuple[str, str, str]]:
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    # -- mutation (every mutation drops the typed-value cache) -------------------------------------

    def add(self, name: str, value: str) -> None:
        self._items.append((header_key(name), canonical_name(name), value))
        self._cache.clear()
        self._raw = None

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (header_key(name), canonical_name(name), value))
        self._cache.clear()
        self._raw = None

    def set(self, name: str, value: str) -> None:
        """Replace every `name` line by one, where the first one was (or at the end)."""
        key = header_key(name)
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append((key, item[1], value))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((key, canonical_name(name), value))
        self._items = out
        self._cache.clear()
        self._raw = None

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._items = [item for item in self._items if item[0] != key]
        self._cache.clear()
        self._raw = None

    def replace_values(self, name: str, values: list[str]) -> None:
        """Replace all `name` lines by one line per value, at the position of the first."""
        key = header_key(name)
        first = next((i for i, item in enumerate(self._items) if item[0] == key), len(self._items))
        rest = [item for item in self._items if item[0] != key]
        first = sum(1 for item in self._items[:first] if item[0] != key)
        canon = canonical_name(name)
        rest[first:first] = [(key, canon, v) for v in values]
        self._items = rest
        self._cache.clear()
        self._raw = None

    def copy(self) -> Headers:
        headers = Headers._from_keyed(list(self._items))
        headers._raw = self._raw
        return headers


# callid = word [ "@" word ]; word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" /
# "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
# Lenient: any visible ASCII character (phones put '#', '$', '=' and more than one '@' in Call-IDs);
# no white space, controls or non-ASCII, which would make it a different Call-ID for someone else.
_CALL_ID_RE = re.compile(r"[\x21-\x7e]+")


def _call_id_value(value: str) -> str:
    """The Call-ID, validated (shared by `Message.call_id` and the parser's eager pass)."""
    value = value.strip(" \t")
    if _CALL_ID_RE.fullmatch(value) is None:
        raise SipParseError("malformed Call-ID", header="Call-ID")
    return value


def _int_value(name: str, value: str | None, limit: int) -> int | None:
    """A non-negative integer header (Max-Forwards, Expires, Content-Length), or None when absent."""
    if value is None:
        return None
    value = value.strip()
    # isascii(): str.isdigit() is also true for "²" and "٣", which int() rejects or misreads.
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > limit:
        raise SipParseError(f"malformed {name} header", header=name)
    return int(value)


class Message:
    """What requests and responses share: headers, body, and typed views of the core headers."""

    __slots__ = ("body", "headers")

    headers: Headers
    body: bytes

    def _typed(self, key: str, build: Any) -> Any:
        cache = self.headers._cache
        if key in cache:
            return cache[key]
        value = build()
        cache[key] = value
        return value

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header", header=name)
        return value

    @property
    def vias(self) -> list[Via]:
        def build() -> list[Via]:
            lines = self.headers.get_all("via")
            if not lines:
                raise SipParseError("missing Via header", header="Via")
            out: list[Via] = []
            for line in lines:
                out.extend(parse_via_list(line))
            return out

        return self._typed("via", build)  # type: ignore[no-any-return]

    @property
    def via(self) -> Via:
        """The top Via."""
        return self.vias[0]

    @property
    def from_(self) -> NameAddr:
        return self._typed("from", lambda: parse_name_addr(self._required("From"), header="From"))  # type: ignore[no-any-return]

    @property
    def to(self) -> NameAddr:
        return self._typed("to", lambda: parse_name_addr(self._required("To"), header="To"))  # type: ignore[no-any-return]

    @property
    def call_id(self) -> str:
        return self._typed("call-id", lambda: _call_id_value(self._required("Call-ID")))  # type: ignore[no-any-return]

    @property
    def cseq(self) -> CSeq:
        return self._typed("cseq", lambda: parse_cseq(self._required("CSeq")))  # type: ignore[no-any-return]

    @property
    def contact_star(self) -> bool:
        """True for `Contact: *` (§10.2.2)."""
        return [v.strip() for v in self.headers.get_all("contact")] == ["*"]

    @property
    def contacts(self) -> list[NameAddr]:
        def build() -> list[NameAddr]:
            out: list[NameAddr] = []
            for line in self.headers.get_all("contact"):
                if line.strip() == "*":
                    raise SipParseError("Contact: * mixed with other contacts", header="Contact")
                out.extend(parse_name_addr_list(line, header="Contact"))
            return out

        if self.contact_star:
            return []
        return self._typed("contact", build)  # type: ignore[no-any-return]

    def _int_header(self, name: str, limit: int) -> int | None:
        return self._typed(  # type: ignore[no-any-return]
            header_key(name), lambda: _int_value(name, self.headers.get(name), limit)
        )

    @property
    def max_forwards(self) -> int | None:
        return self._int_header("Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        return self._int_header("Expires", 2**32 - 1)

    @property
    def content_length(self) -> int | None:
        return self._int_header("Content-Length", 2**31 - 1)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("content-type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        if content_type is not None:
            self.headers.set("Content-Type", content_type)
        elif not body:
            self.headers.remove("Content-Type")
        self.headers.set("Content-Length", str(len(body)))

    def _serialize(self, start_line: str) -> bytes:
        headers = self.headers
        if headers._raw is not None:
            # Parsed and unmodified: the header lines as received, folding and spacing included.
            if any(key == "content-length" for key, _, _ in headers._items):
                tail = b"\r\n"
            else:
                tail = f"Content-Length: {len(self.body)}\r\n\r\n".encode()
            return start_line.encode("utf-8", _SURR) + b"\r\n" + headers._raw + tail + self.body
        parts = [start_line, "\r\n"]
        has_length = False
        for key, name, value in self.headers._items:
            if key == "content-length":
                has_length = True
            parts.append(name)
            parts.append(": ")
            parts.append(value)
            parts.append("\r\n")
        if not has_length:
            parts.append(f"Content-Length: {len(self.body)}\r\n")
        parts.append("\r\n")
        return "".join(parts).encode("utf-8", _SURR) + self.body


class Request(Message):
    """A SIP request. `uri` is the parsed Request-URI."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: Uri | str, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        self.method = method
        self.uri: Uri = parse_uri(uri) if isinstance(uri, str) else uri
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} SIP/2.0")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (
            self.method == other.method
            and str(self.uri) == str(other.uri)
            and self.headers == other.headers
            and self.body == other.body
        )

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"

    def reply(
        self,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Response:
        """Build a response to this request as RFC 3261 §8.2.6.2 says.

        Via (all, in order, as received — including any received/rport we set), From, Call-ID and CSeq
        are copied; To is copied and gets `to_tag` if it has no tag yet and the status is above 100.
        """
        out: list[tuple[str, str, str]] = []
        for key, name, value in self.headers._items:
            if key in ("via", "from", "call-id", "cseq"):
                out.append((key, name, value))
            elif key == "to":
                if to_tag and status > 100 and self.to.tag is None:
                    value = f"{value};tag={to_tag}"
                out.append((key, name, value))
        response = Response(status, reason, Headers._from_keyed(out))
        for name, value in headers:
            response.headers.add(name, value)
        if body or content_type:
            response.set_body(body, content_type)
        else:
            response.headers.add("Content-Length", "0")
        return response

    def set_received(self, host: str, port: int) -> None:
        """Stamp the top Via with `received` (if the host differs) and fill `rport` (RFC 3581 §4)."""
        vias = self.vias
        top = vias[0]
        changed = False
        if top.host != host:
            top.params["received"] = host
            changed = True
        if "rport" in top.params:
            top.params["rport"] = str(port)
            if "received" not in top.params:
                top.params["received"] = host  # RFC 3581 §4: received is always added with rport
            changed = True
        if not changed:
            return
        # Rewrite only the first Via line, keeping its name as written and any further values on it;
        # the typed values of the other headers stay cached (the registrar reads them next).
        headers = self.headers
        items = headers._items
        index = next(i for i, item in enumerate(items) if item[0] == "via")
        _, name, value = items[index]
        rest = split_list(value)[1:] if "," in value else []
        items[index] = ("via", name, ", ".join([str(top), *rest]))
        headers._raw = None
        headers._cache["via"] = vias


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str | None = None, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        self.status = status
        self.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def __bytes__(self) -> bytes:
        return self._serialize(f"SIP/2.0 {self.status} {self.reason}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status == other.status
            and self.reason == other.reason
            and self.headers == other.headers
            and self.body == other.body
        )

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
