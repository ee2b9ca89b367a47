"""Stream framing for SIP over TCP and TLS (RFC 3261 §18.3) with CRLF keep-alives (RFC 5626 §3.5.1).

A connection delivers bytes in arbitrary pieces; `StreamFramer.feed` turns them into items, in stream order:

* `Message` — exactly one SIP message: the header block up to and including the empty line, then as many
  body bytes as ``Content-Length`` (or its compact form ``l``, names case-insensitive, folded values
  unfolded) says. RFC 3261 §18.3: "In the case of message-oriented transports ... Content-Length MUST be
  used with stream-oriented transports", so a header block without it is a framing error. Several equal
  Content-Length values are accepted; differing ones are an error. Framing does not parse the start line
  or any other header: that is `sip/parser.py`'s job, on the bytes of one message.
* `KeepAlivePing` — a double CRLF between messages (RFC 5626 §3.5.1 "ping"); answer it with
  `encode_keepalive_response()` (a single CRLF, the "pong"). CRLFs before a start line are how RFC 3261
  §7.5 lets a stream begin ("MUST ignore any CRLF appearing before the start-line"); here each CRLF pair is
  reported as a ping, so a client that sends them gets its pongs and the message still frames.
* `KeepAlivePong` — a single CRLF between messages.
* `FramingError` — the stream cannot be framed any more (missing, negative, non-numeric or conflicting
  Content-Length; header block or message over its limit). The caller closes the connection; every later
  `feed` returns nothing.

Between messages a lone CRLF is only reported once the next bytes show it is not the first half of a ping,
so the items do not depend on where the reads were split. Work is linear in the bytes fed: the search for
the end of the header block resumes where the previous read stopped, and consumed bytes are dropped from
the front of one buffer (O(1) amortised for a ``bytearray``).

Limits, with precedents: ``max_message_size`` 65,535 bytes (the largest UDP datagram, and Kamailio's
default ``BUF_SIZE``); ``max_header_size`` 16 KiB (h11's ``DEFAULT_MAX_INCOMPLETE_EVENT_SIZE``). A peer
can therefore make us hold at most ``max_message_size`` bytes per connection.

Not here: WebSocket framing (RFC 7118 carries one message per WebSocket frame, no Content-Length needed),
and any answer to the peer on a framing error (the message could not be delimited, so there is nothing
reliable to answer; closing is what RFC 3261 §18.3 asks for an unframeable stream).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FramedItem",
    "FramingError",
    "KeepAlivePing",
    "KeepAlivePong",
    "Message",
    "StreamFramer",
    "encode_keepalive_response",
]

_CRLF = b"\r\n"
_PING = b"\r\n\r\n"
_PONG = b"\r\n"


@dataclass(frozen=True, slots=True)
class Message:
    """One complete SIP message's bytes, header block through the end of the body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """A double CRLF received between messages; the peer expects a single CRLF back."""

    def response(self) -> bytes:
        return encode_keepalive_response()


@dataclass(frozen=True, slots=True)
class KeepAlivePong:
    """A single CRLF received between messages: the answer to a ping we sent."""


@dataclass(frozen=True, slots=True)
class FramingError:
    """The stream can no longer be framed; close the connection."""

    reason: str


FramedItem = Message | KeepAlivePing | KeepAlivePong | FramingError


def encode_keepalive_response() -> bytes:
    """The pong for a received ping (RFC 5626 §3.5.1): one CRLF."""
    return _PONG


# A Content-Length header line in an unfolded header block (never the start line: it must follow "\n").
# RFC 3261 §7.3.1 allows whitespace between the name and the colon; §20.14 Content-Length = 1*DIGIT.
_CONTENT_LENGTH_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_FOLD_RE = re.compile(rb"\r\n[ \t]+")
_DIGITS_RE = re.compile(rb"[0-9]+")
_MAX_LENGTH_DIGITS = 12  # a longer number is over any limit; keeps int() away from huge inputs

_IDLE, _HEADERS, _BODY = 0, 1, 2


class StreamFramer:
    """Splits one TCP/TLS connection's byte stream into SIP messages and keep-alives."""

    def __init__(self, *, max_message_size: int = 65535, max_header_size: int = 16384) -> None:
        if max_header_size < 4 or max_message_size < 4:
            raise ValueError("max_header_size and max_message_size must be at least 4 bytes")
        self.max_message_size = max_message_size
        # A header block can never be longer than the whole message may be.
        self.max_header_size = min(max_header_size, max_message_size)
        self._buf = bytearray()
        self._pos = 0  # first byte not yet consumed
        self._state = _IDLE
        self._start = 0  # start of the message being framed
        self._scan = 0  # where to resume searching for the end of the header block
        self._end = 0  # end of the message once its Content-Length is known
        self._failed: FramingError | None = None

    @property
    def failed(self) -> FramingError | None:
        """The error that ended framing, if any."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in an item."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[FramedItem]:
        """Add received bytes; return every item they complete, in order."""
        if self._failed is not None:
            return []
        buf = self._buf
        buf += data
        items: list[FramedItem] = []
        while True:
            if self._state == _IDLE:
                pos = self._pos
                remaining = len(buf) - pos
                if remaining == 0:
                    break
                if buf[pos] == 0x0D:  # "\r": maybe a keep-alive
                    head = bytes(buf[pos : pos + 4])
                    if head == _PING:
                        items.append(KeepAlivePing())
                        self._pos = pos + 4
                        continue
                    if _PING.startswith(head):  # "\r", "\r\n" or "\r\n\r": wait to see which
                        break
                    if head.startswith(_CRLF):
                        items.append(KeepAlivePong())
                        self._pos = pos + 2
                        continue
                self._state = _HEADERS
                self._start = self._scan = pos
            if self._state == _HEADERS:
                index = buf.find(_PING, self._scan)
                if index < 0:
                    # Even if the next byte completed the empty line, the block would be too long.
                    if len(buf) - self._start >= self.max_header_size:
                        return self._fail(items, self._header_limit_reason())
                    self._scan = max(self._start, len(buf) - 3)
                    break
                header_end = index + 4
                if header_end - self._start > self.max_header_size:
                    return self._fail(items, self._header_limit_reason())
                length_or_reason = _content_length(bytes(buf[self._start : header_end]))
                if isinstance(length_or_reason, str):
                    return self._fail(items, length_or_reason)
                if header_end - self._start + length_or_reason > self.max_message_size:
                    return self._fail(
                        items,
                        f"message of {header_end - self._start + length_or_reason} bytes exceeds the "
                        f"{self.max_message_size}-byte limit",
                    )
                self._end = header_end + length_or_reason
                self._state = _BODY
            if self._state == _BODY:
                if len(buf) < self._end:
                    break
                items.append(Message(bytes(buf[self._start : self._end])))
                self._pos = self._end
                self._state = _IDLE
        self._compact()
        return items

    def _header_limit_reason(self) -> str:
        return f"header block exceeds the {self.max_header_size}-byte limit"

    def _fail(self, items: list[FramedItem], reason: str) -> list[FramedItem]:
        self._failed = FramingError(reason)
        self._buf = bytearray()
        self._pos = self._start = self._scan = self._end = 0
        items.append(self._failed)
        return items

    def _compact(self) -> None:
        shift = self._pos
        if shift == 0:
            return
        del self._buf[:shift]
        self._pos = 0
        self._start = max(0, self._start - shift)
        self._scan = max(0, self._scan - shift)
        self._end = max(0, self._end - shift)


def _content_length(block: bytes) -> int | str:
    """The Content-Length of a header block ending in CRLF CRLF, or the reason it has none usable."""
    values = _CONTENT_LENGTH_RE.findall(_FOLD_RE.sub(b" ", block))
    if not values:
        return "missing Content-Length (required on stream transports, RFC 3261 §18.3)"
    lengths: set[int] = set()
    for raw in values:
        value = raw.strip(b" \t")
        if value.startswith(b"-") and _DIGITS_RE.fullmatch(value[1:]):
            return f"negative Content-Length {value.decode('ascii')}"
        if not _DIGITS_RE.fullmatch(value):
            return f"non-numeric Content-Length {value[:40]!r}"
        if len(value.lstrip(b"0")) > _MAX_LENGTH_DIGITS:
            return f"Content-Length of {len(value)} digits is over any limit"
        lengths.add(int(value))
    if len(lengths) > 1:
        return f"conflicting Content-Length values {sorted(lengths)}"
    return lengths.pop()
