"""SDP (RFC 8866, which obsoletes RFC 4566) and audio offer/answer (RFC 3264) for a media-anchoring B2BUA.

Parsing and serialising (`SessionDescription.parse(text)`, `str(sdp)`):
  * v, o, s, c, t (+ r), m and a lines are typed; every other line (i, u, e, p, b, z, k and type letters we
    do not know) is kept in order in `extra` and written back in the slot RFC 8866 §5 gives it, so an SDP
    that follows the RFC's line order round-trips byte for byte (modulo CRLF line ends).
  * Attributes are an ordered list of (name, value) pairs per section; helpers read rtpmap (§6.6), fmtp
    (§6.15), ptime (§6.4), rtcp (RFC 3605) and the direction attributes (§6.7).
  * Static payload types come from RFC 3551 Table 4 when no rtpmap names them.

Offer/answer (RFC 3264), for the two jobs a B2BUA has:
  * `anchor(sdp, address=, port=, origin=)`: forward the other side's offer or answer with our relay in
    c= and m=, codecs untouched. The old RFC 2543 hold (`c=0.0.0.0`) is turned into an explicit direction
    attribute (RFC 3264 §8.4) because our address replaces it; `a=rtcp` (our RTCP is port + 1, RFC 3605's
    default), `a=rtcp-mux`, ICE attributes (RFC 8839) and `a=ssrc` (RFC 5576: our relay may rewrite SSRCs)
    are dropped. Only the first active audio stream is relayed; other streams get port 0 (§8.2: disabled).
  * `answer_for` / `offer_for` / `negotiate`: the switch itself as an endpoint (music on hold, prompts,
    supervisor calls): one G.711 codec plus telephone-event (RFC 4733) at 8000 Hz, ptime 20.
  * `LocalOrigin`: our o= line; its version increases by one whenever what we send changes (§8, §5).
  * `direction()` (§6.1, §8.4), `common_codecs()`, `payload_type_map()`.

Left out: SRTP keying (a=crypto is passed through untouched, but the relay cannot rewrite SRTP headers),
ICE, BUNDLE, multiple audio streams, multicast semantics of c= (the TTL suffix is kept opaque).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

__all__ = [
    "Attribute",
    "Connection",
    "Direction",
    "LocalOrigin",
    "MediaDescription",
    "Negotiation",
    "NegotiationError",
    "Origin",
    "RtpCodec",
    "SdpParseError",
    "SessionDescription",
    "Timing",
    "anchor",
    "answer_for",
    "common_codecs",
    "direction",
    "negotiate",
    "offer_for",
    "payload_type_map",
    "rtcp_address",
    "rtp_address",
]

CRLF: Final = "\r\n"

#: RFC 3551 Table 4, the audio payload types a phone may use without an rtpmap line.
STATIC_PAYLOAD_TYPES: Final[dict[int, tuple[str, int, int | None]]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, None),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}

#: Attributes `anchor()` removes because they describe transport we replace (see module docstring).
DROPPED_BY_ANCHOR: Final = frozenset(
    {
        "rtcp",
        "rtcp-mux",
        "rtcp-mux-only",
        "candidate",
        "remote-candidates",
        "end-of-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "ice-pacing",
        "ssrc",
        "ssrc-group",
    }
)

# RFC 8866 §5: where the lines we keep untyped go, relative to the typed ones.
_SESSION_BEFORE_C: Final = frozenset("iuep")
_SESSION_AFTER_C: Final = frozenset("b")
_SESSION_AFTER_T: Final = frozenset("z")
_MEDIA_BEFORE_C: Final = frozenset("i")
_MEDIA_AFTER_C: Final = frozenset("b")


class SdpParseError(ValueError):
    """The SDP could not be parsed; `line` is the 1-based line number (None: the whole body)."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.line = line


class NegotiationError(ValueError):
    """No acceptable audio stream: the SIP layer answers 488 Not Acceptable Here."""


class Direction(StrEnum):
    """RFC 8866 §6.7 direction attributes, always from the point of view of the SDP's author."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.of(sends=self.receives, receives=self.sends)


_DIRECTIONS: Final = frozenset(d.value for d in Direction)


@dataclass(slots=True)
class Origin:
    """o= (§5.2). `session_version` must increase whenever the author changes the session (RFC 3264 §8)."""

    username: str = "-"
    session_id: str = "0"
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    """c= (§5.7). `address` keeps a multicast /ttl/count suffix as written; `host` is without it."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, "IP6" if ":" in address else "IP4")

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """The RFC 2543 way of saying "do not send to me" (RFC 3264 §8.4)."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class Attribute:
    """a=name or a=name:value (§5.13)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(slots=True)
class Timing:
    """t= (§5.9) with the r= lines (§5.10) that follow it, kept as text."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RtpCodec:
    """One RTP payload format of an m= line: rtpmap (or the static table) plus its fmtp."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None

    def same_format(self, other: RtpCodec) -> bool:
        """Same encoding, clock rate and channel count (payload type numbers may differ)."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and (self.channels or 1) == (other.channels or 1)
        )

    @property
    def rtpmap(self) -> str:
        tail = f"/{self.channels}" if self.channels not in (None, 1) else ""
        return f"{self.payload_type} {self.name}/{self.clock_rate}{tail}"


class _Attributes:
    """Ordered attribute helpers shared by the session and media sections."""

    __slots__ = ()
    attributes: list[Attribute]

    def get(self, name: str) -> str | None:
        """Value of the first `name` attribute (None if absent or a flag)."""
        for a in self.attributes:
            if a.name == name:
                return a.value
        return None

    def get_all(self, name: str) -> list[str]:
        return [a.value or "" for a in self.attributes if a.name == name]

    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    def add(self, name: str, value: str | None = None) -> None:
        self.attributes.append(Attribute(name, value))

    def remove(self, *names: str) -> int:
        """Remove every attribute with one of `names`; returns how many went."""
        before = len(self.attributes)
        self.attributes[:] = [a for a in self.attributes if a.name not in names]
        return before - len(self.attributes)

    def set(self, name: str, value: str | None = None) -> None:
        """Replace the first `name` attribute (dropping later ones) or append one."""
        for i, a in enumerate(self.attributes):
            if a.name == name:
                self.attributes[i] = Attribute(name, value)
                self.attributes[i + 1 :] = [b for b in self.attributes[i + 1 :] if b.name != name]
                return
        self.add(name, value)

    @property
    def declared_direction(self) -> Direction | None:
        """The direction attribute of this section, if any (the last one wins)."""
        found = None
        for a in self.attributes:
            if a.name in _DIRECTIONS:
                found = Direction(a.name)
        return found

    def set_direction(self, value: Direction) -> None:
        """Write `value` as this section's only direction attribute, where the old one was if any."""
        for i, a in enumerate(self.attributes):
            if a.name in _DIRECTIONS:
                self.attributes[i] = Attribute(value.value)
                self.attributes[i + 1 :] = [b for b in self.attributes[i + 1 :] if b.name not in _DIRECTIONS]
                return
        self.add(value.value)


@dataclass(slots=True)
class MediaDescription(_Attributes):
    """One m= section (§5.14) with its c=, attributes and other lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_rtp(self) -> bool:
        return self.proto.upper().startswith("RTP/") or "/RTP/" in self.proto.upper()

    def rtpmaps(self) -> dict[int, RtpCodec]:
        out: dict[int, RtpCodec] = {}
        for value in self.get_all("rtpmap"):
            pt_text, _, spec = value.partition(" ")
            parts = spec.strip().split("/")
            try:
                pt = int(pt_text)
                rate = int(parts[1]) if len(parts) > 1 else 8000
                channels = int(parts[2]) if len(parts) > 2 and parts[2] else None
            except ValueError:
                continue  # a malformed rtpmap names nothing we could use; ignore it like other UAs do
            out[pt] = RtpCodec(pt, parts[0], rate, channels)
        return out

    def fmtps(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for value in self.get_all("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text.isdigit():
                out[int(pt_text)] = params.strip()
        return out

    def codecs(self) -> list[RtpCodec]:
        """The payload formats in m= order (the author's preference), named by rtpmap or RFC 3551."""
        if not self.is_rtp:
            return []
        maps = self.rtpmaps()
        fmtps = self.fmtps()
        out = []
        for fmt in self.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            codec = maps.get(pt)
            if codec is None and pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
                codec = RtpCodec(pt, name, rate, channels)
            if codec is None:
                continue  # dynamic type without rtpmap: unusable
            out.append(RtpCodec(pt, codec.name, codec.clock_rate, codec.channels, fmtps.get(pt)))
        return out

    @property
    def ptime(self) -> int | None:
        value = self.get("ptime")
        try:
            return int(float(value)) if value else None
        except ValueError:
            return None

    def rtcp_attribute(self) -> tuple[int, str | None] | None:
        """RFC 3605 a=rtcp:port [nettype addrtype address] as (port, address or None)."""
        value = self.get("rtcp")
        if not value:
            return None
        parts = value.split()
        if not parts[0].isdigit():
            return None
        return int(parts[0]), (parts[3] if len(parts) >= 4 else None)

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={' '.join([self.media, port, self.proto, *self.formats])}"]
        out += [f"{t}={v}" for t, v in self.extra if t in _MEDIA_BEFORE_C]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"{t}={v}" for t, v in self.extra if t in _MEDIA_AFTER_C]
        out += [f"{t}={v}" for t, v in self.extra if t not in _MEDIA_BEFORE_C and t not in _MEDIA_AFTER_C]
        out += [f"a={a}" for a in self.attributes]
        return out


@dataclass(slots=True)
class SessionDescription(_Attributes):
    """A whole SDP body.

    >>> sdp = SessionDescription.parse("v=0\\r\\no=- 1 1 IN IP4 192.0.2.1\\r\\ns=-\\r\\n"
    ...     "c=IN IP4 192.0.2.1\\r\\nt=0 0\\r\\nm=audio 4000 RTP/AVP 0\\r\\n")
    >>> rtp_address(sdp.media[0], sdp)
    ('192.0.2.1', 4000)
    """

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: Connection | None = None
    timing: list[Timing] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)
    version: int = 0

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        """Parse an SDP body; raises `SdpParseError` (a `ValueError`) naming the line."""
        if isinstance(text, bytes | bytearray):
            text = text.decode("utf-8", "replace")
        sdp = cls()
        seen_v = seen_o = False
        media: MediaDescription | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.rstrip()
            if not line:
                continue
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpParseError(f"not a type=value line: {line[:40]!r}", line=number)
            kind, value = line[0], line[2:]
            if not seen_v:
                if kind != "v":
                    raise SdpParseError("first line must be v=", line=number)
                if value.strip() != "0":
                    raise SdpParseError(f"unsupported SDP version {value!r}", line=number)
                seen_v = True
                continue
            if kind == "m":
                media = _parse_media(value, number)
                sdp.media.append(media)
            elif kind == "a":
                name, sep, attr_value = value.partition(":")
                (media or sdp).attributes.append(Attribute(name, attr_value if sep else None))
            elif kind == "c":
                conn = _parse_connection(value, number)
                if media is None:
                    sdp.connection = conn
                else:
                    media.connection = conn
            elif media is not None:
                media.extra.append((kind, value))
            elif kind == "o":
                sdp.origin = _parse_origin(value, number)
                seen_o = True
            elif kind == "s":
                sdp.session_name = value
            elif kind == "t":
                parts = value.split()
                if len(parts) != 2 or not all(p.isdigit() for p in parts):
                    raise SdpParseError(f"t= needs two integers, got {value!r}", line=number)
                sdp.timing.append(Timing(int(parts[0]), int(parts[1])))
            elif kind == "r" and sdp.timing:
                sdp.timing[-1].repeats.append(value)
            else:
                sdp.extra.append((kind, value))
        if not seen_v:
            raise SdpParseError("empty SDP: no v= line")
        if not seen_o:
            raise SdpParseError("missing o= line")
        return sdp

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        out += [f"{t}={v}" for t, v in self.extra if t in _SESSION_BEFORE_C]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"{t}={v}" for t, v in self.extra if t in _SESSION_AFTER_C]
        for t in self.timing:
            out.append(f"t={t.start} {t.stop}")
            out += [f"r={r}" for r in t.repeats]
        out += [f"{t}={v}" for t, v in self.extra if t in _SESSION_AFTER_T]
        placed = _SESSION_BEFORE_C | _SESSION_AFTER_C | _SESSION_AFTER_T
        out += [f"{t}={v}" for t, v in self.extra if t not in placed]
        out += [f"a={a}" for a in self.attributes]
        for m in self.media:
            out += m.lines()
        return out

    def __str__(self) -> str:
        return CRLF.join(self.lines()) + CRLF

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    def copy(self) -> SessionDescription:
        return copy.deepcopy(self)

    def first_audio(self) -> int | None:
        """Index of the first audio stream that is not disabled (port != 0), else None."""
        for i, m in enumerate(self.media):
            if m.media == "audio" and m.port != 0:
                return i
        return None


def _parse_origin(value: str, number: int) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpParseError(f"o= needs 6 fields, got {len(parts)}", line=number)
    try:
        version = int(parts[2])
    except ValueError:
        raise SdpParseError(f"o= session version is not a number: {parts[2]!r}", line=number) from None
    return Origin(parts[0], parts[1], version, parts[3], parts[4], parts[5])


def _parse_connection(value: str, number: int) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError(f"c= needs 3 fields, got {len(parts)}", line=number)
    return Connection(parts[2], parts[1], parts[0])


def _parse_media(value: str, number: int) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError(f"m= needs media, port and proto, got {value!r}", line=number)
    port_text, _, count_text = parts[1].partition("/")
    try:
        port = int(port_text)
        count = int(count_text) if count_text else None
    except ValueError:
        raise SdpParseError(f"m= port is not a number: {parts[1]!r}", line=number) from None
    if not 0 <= port <= 65535:
        raise SdpParseError(f"m= port {port} out of range", line=number)
    return MediaDescription(parts[0], port, parts[2], parts[3:], count)


# --- reading an SDP ----------------------------------------------------------------------------------


def _connection(media: MediaDescription, session: SessionDescription | None) -> Connection | None:
    if media.connection is not None:
        return media.connection
    return session.connection if session is not None else None


def direction(media: MediaDescription, session: SessionDescription | None = None) -> Direction:
    """The effective direction of a stream, from its author's point of view.

    Media-level attribute, else session-level attribute, else sendrecv (§6.7). A disabled stream
    (port 0) is inactive. The RFC 2543 hold, c=0.0.0.0 (RFC 3264 §8.4), means "do not send to me", so it
    removes the receive half (sendrecv -> sendonly, recvonly -> inactive).
    """
    if media.port == 0:
        return Direction.INACTIVE
    found = media.declared_direction
    if found is None and session is not None:
        found = session.declared_direction
    result = found or Direction.SENDRECV
    conn = _connection(media, session)
    if conn is not None and conn.is_hold:
        result = Direction.of(sends=result.sends, receives=False)
    return result


def rtp_address(media: MediaDescription, session: SessionDescription | None = None) -> tuple[str, int] | None:
    """Where the author wants RTP for this stream, or None (disabled, or on hold via 0.0.0.0)."""
    conn = _connection(media, session)
    if media.port == 0 or conn is None or conn.is_hold:
        return None
    return conn.host, media.port


def rtcp_address(
    media: MediaDescription, session: SessionDescription | None = None
) -> tuple[str, int] | None:
    """Where the author wants RTCP: a=rtcp (RFC 3605) if present, else RTP port + 1 (RFC 3550 §11)."""
    rtp = rtp_address(media, session)
    if rtp is None:
        return None
    explicit = media.rtcp_attribute()
    if explicit is not None:
        port, host = explicit
        return (host or rtp[0]), port
    return rtp[0], rtp[1] + 1


def _codec_list(x: MediaDescription | Sequence[RtpCodec]) -> Sequence[RtpCodec]:
    return x.codecs() if isinstance(x, MediaDescription) else x


def common_codecs(
    a: MediaDescription | Sequence[RtpCodec], b: MediaDescription | Sequence[RtpCodec]
) -> list[RtpCodec]:
    """The codecs of `a` (in `a`'s order, with `a`'s payload types) that `b` also lists."""
    theirs = _codec_list(b)
    return [c for c in _codec_list(a) if any(c.same_format(o) for o in theirs)]


def payload_type_map(
    src: MediaDescription | Sequence[RtpCodec], dst: MediaDescription | Sequence[RtpCodec]
) -> dict[int, int]:
    """Payload types that name the same format on both sides but with different numbers: src -> dst.

    Empty in the usual case (RFC 3264 §6.1: an answer SHOULD reuse the offer's numbers).
    """
    out: dict[int, int] = {}
    theirs = _codec_list(dst)
    for c in _codec_list(src):
        for o in theirs:
            if c.same_format(o):
                if o.payload_type != c.payload_type:
                    out[c.payload_type] = o.payload_type
                break
    return out


# --- our own o= line --------------------------------------------------------------------------------


class LocalOrigin:
    """The o= line of one side of a call as we present it.

    RFC 3264 §8: a new offer that changes the session carries the previous version + 1; an SDP identical to
    the previous one (a session refresh) keeps the version. `stamp()` does both.

    >>> origin = LocalOrigin(session_id=42, address="203.0.113.1")
    """

    def __init__(
        self, *, session_id: int, address: str, username: str = "softswitch", version: int = 1
    ) -> None:
        self.session_id = session_id
        self.address = address
        self.username = username
        self.version = version
        self._last_body: str | None = None

    def stamp(self, sdp: SessionDescription) -> SessionDescription:
        """Set `sdp.origin` to ours (in place) and return `sdp`."""
        body = CRLF.join(line for line in sdp.lines() if not line.startswith("o="))
        if self._last_body is not None and body != self._last_body:
            self.version += 1
        self._last_body = body
        sdp.origin = Origin(
            self.username,
            str(self.session_id),
            self.version,
            "IN",
            "IP6" if ":" in self.address else "IP4",
            self.address,
        )
        return sdp


# --- the B2BUA's rewrite ----------------------------------------------------------------------------


def anchor(sdp: SessionDescription, *, address: str, port: int, origin: LocalOrigin) -> SessionDescription:
    """A copy of `sdp` (an offer or answer from one leg) to send to the other leg, pointing at our relay.

    * c= (session level) becomes `address`; media-level c= lines go.
    * The first active audio stream gets `port`; every other stream is disabled (port 0) because the relay
      carries one audio stream. A disabled stream stays disabled.
    * Directions are kept; c=0.0.0.0 hold becomes an explicit a=sendonly / a=inactive.
    * Codecs, fmtp, ptime, crypto and unknown attributes are untouched; see `DROPPED_BY_ANCHOR`.
    * o= comes from `origin` (version bumped when the result differs from the last one stamped).
    """
    out = sdp.copy()
    audio = sdp.first_audio()
    for i, m in enumerate(out.media):
        effective = direction(sdp.media[i], sdp)
        declared = sdp.media[i].declared_direction or sdp.declared_direction or Direction.SENDRECV
        m.connection = None
        m.remove(*DROPPED_BY_ANCHOR)
        if i == audio:
            m.port = port
            m.port_count = None
            if effective != declared:
                m.set_direction(effective)
        elif m.port != 0:
            m.port = 0
    out.remove(*DROPPED_BY_ANCHOR)
    out.connection = Connection.for_address(address)
    return origin.stamp(out)


# --- the switch as an endpoint ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Negotiation:
    """What was agreed for the audio stream of an SDP we received (an offer we answer, or an answer)."""

    media_index: int
    codec: RtpCodec
    """The audio codec, with the remote side's payload type number."""
    dtmf: RtpCodec | None
    """telephone-event at the codec's clock rate, if both sides want it."""
    direction: Direction
    """The remote side's direction, from its point of view."""
    remote: tuple[str, int] | None
    """Where to send RTP (None while on hold / disabled)."""
    remote_rtcp: tuple[str, int] | None


def negotiate(
    sdp: SessionDescription,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    *,
    dtmf: bool = True,
) -> Negotiation:
    """Pick the audio codec for the first active RTP/AVP audio stream of `sdp`.

    The first codec in the remote's order that we support wins (the offerer's preference, RFC 3264 §6.1).
    Raises `NegotiationError` when no stream qualifies.
    """
    wanted = {name.upper() for name in supported}
    for i, m in enumerate(sdp.media):
        if m.media != "audio" or m.port == 0 or m.proto.upper() != "RTP/AVP":
            continue
        codecs = m.codecs()
        chosen = next((c for c in codecs if c.name.upper() in wanted), None)
        if chosen is None:
            continue
        event = None
        if dtmf:
            event = next(
                (
                    c
                    for c in codecs
                    if c.name.lower() == "telephone-event" and c.clock_rate == chosen.clock_rate
                ),
                None,
            )
        return Negotiation(i, chosen, event, direction(m, sdp), rtp_address(m, sdp), rtcp_address(m, sdp))
    raise NegotiationError(f"no RTP/AVP audio stream with any of {', '.join(supported)}")


def _endpoint_media(
    port: int,
    codecs: Iterable[RtpCodec],
    direction_: Direction,
    ptime: int | None,
) -> MediaDescription:
    codecs = list(codecs)
    media = MediaDescription("audio", port, "RTP/AVP", [str(c.payload_type) for c in codecs])
    for c in codecs:
        media.add("rtpmap", c.rtpmap)
        if c.fmtp:
            media.add("fmtp", f"{c.payload_type} {c.fmtp}")
    if ptime:
        media.add("ptime", str(ptime))
    media.add(direction_.value)
    return media


def _endpoint_session(address: str, origin: LocalOrigin, media: list[MediaDescription]) -> SessionDescription:
    sdp = SessionDescription(
        session_name="softswitch",
        connection=Connection.for_address(address),
        timing=[Timing(0, 0)],
        media=media,
    )
    return origin.stamp(sdp)


def offer_for(
    *,
    address: str,
    port: int,
    origin: LocalOrigin,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    direction: Direction = Direction.SENDRECV,
    ptime: int = 20,
) -> SessionDescription:
    """An offer from the switch itself (e.g. calling a supervisor's phone): G.711 + telephone-event 101."""
    offered = []
    for name in codecs:
        for pt, (static_name, rate, _channels) in STATIC_PAYLOAD_TYPES.items():
            if static_name == name.upper():
                offered.append(RtpCodec(pt, static_name, rate))
                break
        else:
            raise ValueError(f"offer_for only offers static payload types, not {name!r}")
    if dtmf:
        offered.append(RtpCodec(101, "telephone-event", 8000, None, "0-16"))
    return _endpoint_session(address, origin, [_endpoint_media(port, offered, direction, ptime)])


def answer_for(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    origin: LocalOrigin,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    direction: Direction = Direction.SENDRECV,
    ptime: int = 20,
) -> SessionDescription:
    """The switch's own answer (music on hold, prompts) to `offer`.

    One audio stream is accepted with one codec (so phones need not lock the codec with an UPDATE) and
    telephone-event if offered; the offer's payload type numbers are reused (§6.1). The answer's direction
    is `direction` narrowed by the offer's (§6.1: sendonly is answered recvonly, inactive with inactive).
    Every other stream is rejected with port 0 and the offer's formats (§6). Raises `NegotiationError`.
    """
    agreed = negotiate(offer, codecs, dtmf=dtmf)
    media: list[MediaDescription] = []
    for i, m in enumerate(offer.media):
        if i != agreed.media_index:
            media.append(MediaDescription(m.media, 0, m.proto, list(m.formats) or ["0"]))
            continue
        answer_dir = Direction.of(
            sends=direction.sends and agreed.direction.receives,
            receives=direction.receives and agreed.direction.sends,
        )
        chosen = [agreed.codec] if agreed.dtmf is None else [agreed.codec, agreed.dtmf]
        media.append(_endpoint_media(port, chosen, answer_dir, ptime))
    return _endpoint_session(address, origin, media)
