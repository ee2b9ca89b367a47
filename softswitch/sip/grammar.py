r"""RFC 3261 §25 grammar as compiled regular expressions.

Each pattern sits under the ABNF it implements. Where we accept more than the RFC, a comment says so and
why: real phones send these things and refusing them would strand an agent.

Every pattern is compiled with re.ASCII: in a `str` pattern `\d` and `\s` would otherwise match any
Unicode digit or space ("٣", "²", U+2028), which SIP never allows and `int()` does not always accept.
"""

from __future__ import annotations

import re

__all__ = [
    "HOST_RE",
    "METHOD_RE",
    "PORT_RE",
    "REQUEST_LINE_RE",
    "STATUS_LINE_RE",
    "TOKEN_RE",
    "is_token",
]

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)

# Method = INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
# extension-method = token
METHOD_RE = re.compile(TOKEN)

# Request-Line = Method SP Request-URI SP SIP-Version CRLF
# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
# §7.1: "The SIP-Version string is case-insensitive, but implementations MUST send upper-case."
# Exactly one SP between the elements and none after the version: RFC 4475 §3.1.2.9 and §3.1.2.10
# allow rejecting extra spaces, and we do (the edge answers 400).
REQUEST_LINE_RE = re.compile(r"(" + TOKEN + r") (\S+) ([Ss][Ii][Pp]/\d+\.\d+)", re.ASCII)

# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
# Lenient: a missing SP before an empty reason phrase is accepted (seen from several PBXs).
STATUS_LINE_RE = re.compile(r"([Ss][Ii][Pp]/\d+\.\d+) (\d{3})(?: (.*))?", re.ASCII)

# hostname = *( domainlabel "." ) toplabel [ "." ]
# IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
# IPv6reference = "[" IPv6address "]"
# Lenient: underscores in host names (seen in container and SRV-derived names).
# Written as alphanumeric runs joined by runs of "-"/"_", possessively: the same language as
# alphanum *( alphanum / "-" ) alphanum per label, without backtracking through a long label.
HOSTNAME = r"[A-Za-z0-9]++(?:[_\-]++[A-Za-z0-9]++)*+(?:\.[A-Za-z0-9]++(?:[_\-]++[A-Za-z0-9]++)*+)*+\.?"
IPV4 = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
IPV6REF = r"\[[0-9A-Fa-f:.]+\]"
HOST_RE = re.compile(r"(?:" + IPV6REF + "|" + IPV4 + "|" + HOSTNAME + r")", re.ASCII)
PORT_RE = re.compile(r"\d{1,5}", re.ASCII)

_TOKEN_FULL = re.compile(TOKEN + r"\Z")


def is_token(text: str) -> bool:
    """True when `text` is a non-empty RFC 3261 token."""
    return _TOKEN_FULL.match(text) is not None
