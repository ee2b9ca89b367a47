"""The SIP layer's error family (style 9.6).

`SipParseError` carries the answer: a status code for the edge to send (when enough of a request parsed
to answer it) and the header that was wrong. `LocalProtocolError` is our own misuse of an API and should
fail the test that caused it; `RemoteProtocolError` is a well-formed message that breaks a protocol rule.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "SipParseError"]


class SipParseError(ValueError):
    """A message that could not be parsed.

    `status` is the response the edge should give (400, 413, 414, 416, 420, 505, 513 ...) when the
    request could be answered; `header` names the offending header (None for the start line or framing).
    `basis` holds, when available, what the edge needs to answer: ``(method, raw header items)``.
    """

    def __init__(self, reason: str, *, status: int = 400, header: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.header = header
        self.basis: tuple[str, list[tuple[str, str, str]]] | None = None


class LocalProtocolError(Exception):
    """We asked a protocol object to do something the protocol does not allow."""


class RemoteProtocolError(Exception):
    """A peer sent a parseable message that breaks a protocol rule."""
