"""One call's media anchor: two RTP legs joined by forward-on-receive (RFC 3550, RFC 7667 §3.2.1.2 "Media
Translator" without transcoding), with symmetric latching, continuity, DTMF, timeouts, counters and taps.

Sans-IO. The edge (udp.py) calls `on_packet(leg, data, source, now=, rtcp=)` for every datagram arriving on a
leg's RTP (or RTCP, port + 1) socket and writes the returned `Send`s; it arms one timer at
`next_deadline()` and calls `handle_timer(now=)`; `events()` drains what the layers above need to know.
Legs: A is the caller's side, B the agent's. A packet that arrives on A's port is sent from B's port to B's
phone, and vice versa. Nothing is decoded on that path unless someone attached a tap.

Symmetric latching (where we send a leg's media, and whose packets we accept)
-----------------------------------------------------------------------------
Phones behind NAT put private addresses in SDP, so a leg's destination is learned from the source of the
RTP it sends us ("symmetric RTP", RFC 4961) and every other source is refused. The rules:

1. Learning. Until a leg is latched, a packet is a candidate only if it is RTP v2 with a payload type the
   leg's SDP listed. A candidate from a *preferred* source latches at once; preferred means the exact SDP
   address, or the SDP host, or the host the leg's SIP signalling came from (`RemoteMedia.signalling_host`,
   the usual case behind NAT: RTP and SIP leave the same public address). Any other source latches after
   `probation` (default 4) consecutive packets with one SSRC and consecutive sequence numbers; candidates
   are tracked per source so an interleaving outsider cannot reset the phone's count. Until then the leg's
   packets are dropped (`dropped_learning`) and what we send it goes to its SDP address. The residual
   risk is the race at call start: without a preferred source, an outsider who knows the fresh port and
   sends `probation` well-formed packets before the phone does wins (Asterisk's learning has the same
   window). Passing `signalling_host` closes it for phones behind NAT, so callflow should always pass it.
2. Latched. Only the latched address is accepted; anything else is dropped and counted (`dropped_foreign`).
   The latched source may change SSRC, payload type or sequence numbering freely (re-INVITEs do that).
3. Re-latching happens in two cases only:
   a. Renegotiation: when `update()` brings an SDP whose address differs from the previous one, a window of
      `learn_window` seconds (default 3 s, rtpengine's learning delay) opens in which a preferred source for
      the *new* SDP latches at once.
   b. Takeover: once the latched source has been silent for `relatch_after` seconds (default 0.5 s), any
      source that passes probation latches. This survives NAT rebinding and a phone moving from Wi-Fi to
      LTE; an outsider cannot steal a stream the phone is still sending, and must send a well-formed stream
      for 80 ms after the phone fell silent to get it.
   RTCP latches separately: only after RTP is latched, and only from the latched RTP host.

Compared with the reference implementations: Asterisk's `strictrtp=yes` also drops other sources and learns
a new one after `probation` (default 4) packets with consecutive sequence numbers, but does so whenever the
remote address is set, i.e. after every re-INVITE; rtpengine's `endpoint-learning` is `delayed` (latch
after 3 s), `immediate`, or `heuristic` (prefer the SDP address, then the SDP host, then the port) and its
`strict-source` flag drops other sources. We combine rtpengine's heuristic preference (without its delay,
because agents want audio at once) with Asterisk's probation, and only let probation re-latch over silence.

Continuity: each leg's `StreamSender` (stream.py) keeps one SSRC and continuous sequence numbers and
timestamps toward that leg, across the other leg's re-INVITEs, music on hold and back. While nothing has
changed, packets go out byte for byte. RTCP is passed to the other leg's latched RTCP address; when the RTP
mapping in either direction is not the identity, SR/RR sender SSRCs, SR RTP timestamps, SDES/BYE SSRCs and
report-block SSRCs and highest sequence numbers are rewritten with the same mapping, so reports keep
describing the streams the receiver actually sees (packet/octet counts are left as the sender wrote them).

DTMF: RFC 4733 telephone-event packets are forwarded like any other and reported once per event as
`DtmfEvent` (dtmf.py dedupes the retransmitted end packets by SSRC and timestamp).

Timeouts (`MediaTimeout`): once `start()` says the call is up, a leg whose SDP direction is sendrecv must
send RTP at least every `rtp_timeout` seconds. A leg on hold in either direction (sendonly, recvonly,
inactive; phones on hold often send nothing) is exempt from that and is held to `hold_timeout` (default
3600 s, rtpengine's silent-timeout), for which RTCP counts as a sign of life too. Each silence is reported
once; a packet re-arms it.

Counters (`LegStats`, per leg = per direction leg -> other leg): packets, bytes, lost (sequence gaps, per
Appendix A.3), out of order, duplicates, interarrival jitter (Appendix A.8, from arrival `now` and RTP
timestamps; telephone-event packets excluded), forwarded and every drop by reason.

Taps: `tap(leg)` subscribes to decoded audio of what a leg sends (G.711 via the g711 tables). With no tap
attached the hot path pays one `is None` check. Frames carry a timestamp on a per-leg timeline that stays
continuous across SSRC changes, so a recorder inserts silence for gaps by timestamp.

Local audio: `feed(leg, port)` makes the leg hear a port (music on hold, a prompt, the mixer's output for a
monitored call) instead of the other leg; `tick(now=)` packetises it. Relaying to that leg resumes with
`feed(leg, None)`, seamlessly.

Left out: SRTP (headers are authenticated, so rewriting would break them), RTCP generation for our own
streams, jitter buffering on the relay path, transcoding, rtcp-mux negotiation (RTCP arriving on the RTP
port is recognised by RFC 5761 demux and treated as RTCP).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from softswitch.media.dtmf import DtmfDetector
from softswitch.media.g711 import Codec, codec_by_name
from softswitch.media.port import BufferPort, MediaPort
from softswitch.media.rtcp import (
    Bye,
    RawRtcp,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    parse_compound,
    serialize_compound,
)
from softswitch.media.rtp import RtpPacket
from softswitch.media.sdp import (
    Direction,
    Negotiation,
    RtpCodec,
    SessionDescription,
    direction,
    payload_type_map,
    rtcp_address,
    rtp_address,
)
from softswitch.media.stream import Address, OutboundStream, Send, StreamSender

__all__ = [
    "DtmfEvent",
    "Latched",
    "Leg",
    "LegStats",
    "MediaTimeout",
    "RelayEvent",
    "RelaySession",
    "RemoteMedia",
    "RtcpBye",
    "Tap",
    "TapFrame",
]

_AFTER_FIRST = struct.Struct("!BHII")  # M/PT, sequence number, timestamp, SSRC (from offset 1)
_MAX_DROPOUT: Final = 3000
_MAX_CANDIDATES: Final = 8
_DECODERS: Final = {name: codec_by_name(name).decode_table for name in ("PCMU", "PCMA")}


class Leg(StrEnum):
    """A: the caller's side. B: the agent's side."""

    A = "A"
    B = "B"

    @property
    def other(self) -> Leg:
        return Leg.B if self is Leg.A else Leg.A


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    """What one leg's latest SDP (offer or answer it sent us) says about its audio stream."""

    address: Address | None
    """Where it asked for RTP (None: on hold with c=0.0.0.0, or stream disabled)."""
    rtcp_address: Address | None = None
    codecs: tuple[RtpCodec, ...] = ()
    """Payload formats it listed; empty accepts any payload type."""
    direction: Direction = Direction.SENDRECV
    """Its direction, from its point of view."""
    signalling_host: str | None = None
    """The IP its SIP came from; RTP from this host latches at once (see module docstring)."""

    @classmethod
    def from_sdp(
        cls, sdp: SessionDescription, *, signalling_host: str | None = None, index: int | None = None
    ) -> RemoteMedia:
        """From the first active audio stream of `sdp` (or stream `index`)."""
        i = sdp.first_audio() if index is None else index
        if i is None:
            return cls(None, None, (), Direction.INACTIVE, signalling_host)
        m = sdp.media[i]
        return cls(
            rtp_address(m, sdp),
            rtcp_address(m, sdp),
            tuple(m.codecs()),
            direction(m, sdp),
            signalling_host,
        )


    @classmethod
    def from_negotiation(cls, agreed: Negotiation, *, signalling_host: str | None = None) -> RemoteMedia:
        """From what `sdp.negotiate()` agreed: only the chosen codec (and telephone-event) are expected,
        so local audio for this leg (`feed`) is encoded with exactly the codec the leg accepted."""
        codecs = (agreed.codec,) if agreed.dtmf is None else (agreed.codec, agreed.dtmf)
        return cls(agreed.remote, agreed.remote_rtcp, codecs, agreed.direction, signalling_host)


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latched:
    """A leg's media source (and so its destination) was learned or changed."""

    leg: Leg
    address: Address
    rtcp: bool
    previous: Address | None
    reason: str
    """"preferred" (SDP/signalling address), "probation", "renegotiated" (new SDP) or "takeover"."""


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A telephone-event (RFC 4733) the leg sent, once per key press."""

    leg: Leg
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """The leg sent nothing for `silent_for` seconds while it should have: its phone is probably gone."""

    leg: Leg
    silent_for: float
    on_hold: bool
    """True when the hold timeout fired (the leg was not sendrecv)."""

    @property
    def reason(self) -> str:
        kind = "RTCP or RTP (on hold)" if self.on_hold else "RTP"
        return f"no {kind} from leg {self.leg} for {self.silent_for:.1f} s"


@dataclass(frozen=True, slots=True)
class RtcpBye:
    """The leg's phone sent an RTCP BYE (it is leaving; SIP BYE usually follows)."""

    leg: Leg
    ssrcs: tuple[int, ...]
    reason: str | None


RelayEvent = Latched | DtmfEvent | MediaTimeout | RtcpBye


# --- counters -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LegStats:
    """Counters for what one leg sends us (and what became of it)."""

    packets: int = 0
    bytes: int = 0
    rtcp_packets: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    jitter: float = 0.0
    """RFC 3550 A.8 interarrival jitter, in timestamp units."""
    clock_rate: int = 8000
    forwarded: int = 0
    rtcp_forwarded: int = 0
    dropped_invalid: int = 0
    dropped_learning: int = 0
    dropped_foreign: int = 0
    dropped_stale: int = 0
    dropped_no_destination: int = 0
    dropped_direction: int = 0
    """Not forwarded because the other leg does not want to receive (it is holding us)."""
    not_forwarded_local: int = 0
    """Not forwarded because the other leg hears local audio (music on hold, mixer)."""
    unexpected_payload_type: int = 0
    tap_undecodable: int = 0
    dtmf_events: int = 0
    # sequence bookkeeping (RFC 3550 A.1/A.3), per source, folded into `_lost_before` on source change
    _base_seq: int = 0
    _max_seq: int = 0
    _cycles: int = 0
    _received: int = 0
    _lost_before: int = 0

    @property
    def lost(self) -> int:
        """Packets lost: expected (from sequence numbers) minus received, over all sources so far."""
        if not self._received:
            return self._lost_before
        return self._lost_before + (self._cycles + self._max_seq - self._base_seq + 1) - self._received

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate


# --- taps -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TapFrame:
    """Decoded audio of one packet a leg sent."""

    leg: Leg
    timestamp: int
    """On the leg's continuous timeline (8000 Hz for G.711); a jump means a gap to fill with silence."""
    samples: npt.NDArray[np.int16]
    arrival: float


class Tap:
    """A subscription to the decoded audio a leg sends (what aiortc calls `MediaRelay.subscribe`).

    Frames queue in `frames` (bounded: the oldest is dropped and counted in `dropped` when full) unless the
    tap was created with `into=`, in which case samples go straight into that port (e.g. a mixer input).

    >>> session = RelaySession(a_port=20000, b_port=20002)
    >>> tap = session.tap(Leg.A)
    >>> tap.drain()
    []
    """

    def __init__(self, session: RelaySession, leg: Leg, *, maxlen: int, into: BufferPort | None) -> None:
        self.leg = leg
        self.frames: deque[TapFrame] = deque()
        self.maxlen = maxlen
        self.into = into
        self.dropped = 0
        self._session: RelaySession | None = session

    def _push(self, frame: TapFrame) -> None:
        if self.into is not None:
            self.into.put_frame(frame.samples)
            return
        if len(self.frames) >= self.maxlen:
            self.frames.popleft()
            self.dropped += 1
        self.frames.append(frame)

    def drain(self) -> list[TapFrame]:
        """All queued frames, oldest first."""
        out = list(self.frames)
        self.frames.clear()
        return out

    def close(self) -> None:
        """Detach from the session (idempotent)."""
        if self._session is not None:
            self._session._untap(self)
            self._session = None


class _Timeline:
    """Maps (SSRC, RTP timestamp) of what a leg sends to one continuous timeline for taps."""

    __slots__ = ("clock_rate", "last_time", "last_ts", "offset", "source", "step")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.source: int | None = None
        self.offset = 0
        self.last_ts = 0
        self.last_time = 0.0
        self.step = clock_rate // 50

    def map(self, ssrc: int, ts: int, samples: int, now: float) -> int:
        if ssrc != self.source:
            if self.source is not None:
                elapsed = round((now - self.last_time) * self.clock_rate)
                self.offset = (self.last_ts + max(self.step, elapsed) - ts) & 0xFFFFFFFF
            self.source = ssrc
            out = (ts + self.offset) & 0xFFFFFFFF
            self.last_ts, self.last_time, self.step = out, now, samples
            return out
        out = (ts + self.offset) & 0xFFFFFFFF
        ahead = ((out - self.last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if ahead > 10 * self.clock_rate or ahead < -10 * self.clock_rate:  # the source restarted its clock
            elapsed = round((now - self.last_time) * self.clock_rate)
            self.offset = (self.last_ts + max(self.step, elapsed) - ts) & 0xFFFFFFFF
            out = (ts + self.offset) & 0xFFFFFFFF
            ahead = 1
        if ahead > 0:
            self.last_ts, self.last_time, self.step = out, now, samples
        return out


# --- one leg --------------------------------------------------------------------------------------


class _LegState:
    """Everything the session knows about one leg (internal; read it through the session)."""

    __slots__ = (
        "candidates",
        "clock_rate",
        "decoders",
        "dtmf",
        "dtmf_pt",
        "expected_pts",
        "feed",
        "j_last_now",
        "j_last_ts",
        "last_any_rx",
        "last_rx",
        "latched",
        "latched_rtcp",
        "learn_until",
        "local_port",
        "name",
        "pt_map",
        "remote",
        "rx_ssrc",
        "sender",
        "stats",
        "taps",
        "timed_out",
        "timeline",
    )

    def __init__(self, name: Leg, local_port: int | None) -> None:
        self.name = name
        self.local_port = local_port
        self.remote: RemoteMedia | None = None
        self.expected_pts: frozenset[int] | None = None
        self.dtmf_pt = -1
        self.clock_rate = 8000
        self.decoders: dict[int, npt.NDArray[np.int16]] = {0: _DECODERS["PCMU"], 8: _DECODERS["PCMA"]}
        self.pt_map: dict[int, int] | None = None  # our payload type -> the other leg's, when they differ
        self.latched: Address | None = None
        self.latched_rtcp: Address | None = None
        self.candidates: dict[Address, list[int]] = {}  # source -> [ssrc, next seq, count]
        self.learn_until = 0.0
        self.last_rx = 0.0
        self.last_any_rx = 0.0
        self.timed_out = False
        self.rx_ssrc: int | None = None
        self.j_last_now = 0.0
        self.j_last_ts = 0
        self.stats = LegStats()
        self.sender = StreamSender()  # what this leg receives from us
        self.feed: OutboundStream | None = None
        self.taps: list[Tap] | None = None
        self.timeline = _Timeline(8000)
        self.dtmf = DtmfDetector()

    @property
    def receives(self) -> bool:
        return self.remote is None or self.remote.direction.receives

    def destination(self) -> Address | None:
        if self.latched is not None:
            return self.latched
        return None if self.remote is None else self.remote.address

    def rtcp_destination(self) -> Address | None:
        if self.latched_rtcp is not None:
            return self.latched_rtcp
        remote = self.remote
        if self.latched is None or (remote is not None and self.latched == remote.address):
            return None if remote is None else remote.rtcp_address
        return self.latched[0], self.latched[1] + 1  # behind NAT: guess the mapping of port + 1

    def preferred(self, source: Address) -> bool:
        remote = self.remote
        if remote is None:
            return False
        if remote.address is not None and (source == remote.address or source[0] == remote.address[0]):
            return True
        return remote.signalling_host is not None and source[0] == remote.signalling_host


# --- the session ----------------------------------------------------------------------------------


class RelaySession:
    """The media anchor of one call: leg A (caller side) and leg B (agent side).

    >>> s = RelaySession(a_port=20000, b_port=20002)
    >>> s.update(Leg.A, RemoteMedia(("198.51.100.1", 4000)), now=0.0)
    >>> s.update(Leg.B, RemoteMedia(("198.51.100.2", 5000)), now=0.0)
    >>> pkt = bytes.fromhex("80000001000000a0000000aa") + b"\\xff" * 160
    >>> [(x.local_port, x.dest) for x in s.on_packet(Leg.A, pkt, ("198.51.100.1", 4000), now=0.0)]
    [(20002, ('198.51.100.2', 5000))]
    """

    def __init__(
        self,
        *,
        a_port: int | None,
        b_port: int | None = None,
        rtp_timeout: float = 30.0,
        hold_timeout: float | None = 3600.0,
        probation: int = 4,
        relatch_after: float = 0.5,
        learn_window: float = 3.0,
    ) -> None:
        self._a = _LegState(Leg.A, a_port)
        self._b = _LegState(Leg.B, b_port)
        self.rtp_timeout = rtp_timeout
        self.hold_timeout = hold_timeout
        self.probation = probation
        self.relatch_after = relatch_after
        self.learn_window = learn_window
        self._started = False
        self._events: list[RelayEvent] = []

    # --- control (from callflow) -------------------------------------------------------------------

    def _leg(self, leg: Leg) -> _LegState:
        return self._a if leg is Leg.A else self._b

    def local_port(self, leg: Leg) -> int | None:
        return self._leg(leg).local_port

    def set_local_port(self, leg: Leg, port: int) -> None:
        """Give a leg its RTP port (RTCP is port + 1) when it was created without one."""
        self._leg(leg).local_port = port

    def update(self, leg: Leg, remote: RemoteMedia, *, now: float) -> None:
        """The leg sent an SDP (offer or answer): take its address, codecs and direction.

        A new address opens the re-learning window (rule 3a); a changed direction restarts the leg's
        inactivity clock.
        """
        L = self._leg(leg)
        old = L.remote
        L.remote = remote
        pts = frozenset(c.payload_type for c in remote.codecs)
        L.expected_pts = pts or None
        L.dtmf_pt = next((c.payload_type for c in remote.codecs if c.name.lower() == "telephone-event"), -1)
        audio = next((c for c in remote.codecs if c.name.lower() not in ("telephone-event", "cn")), None)
        L.clock_rate = audio.clock_rate if audio is not None else 8000
        L.stats.clock_rate = L.clock_rate
        L.sender.clock_rate = L.clock_rate
        L.timeline.clock_rate = L.clock_rate
        L.decoders = {pt: t for pt, t in ((0, _DECODERS["PCMU"]), (8, _DECODERS["PCMA"])) if pt not in pts}
        for c in remote.codecs:
            table = _DECODERS.get(c.name.upper())
            if table is not None and c.clock_rate == 8000:
                L.decoders[c.payload_type] = table
            else:
                L.decoders.pop(c.payload_type, None)
        if L.latched is not None and (old is None or old.address != remote.address):
            L.learn_until = now + self.learn_window
        if old is None or old.direction != remote.direction:
            L.last_rx = L.last_any_rx = now
            L.timed_out = False
        self._update_pt_maps()

    def _update_pt_maps(self) -> None:
        a, b = self._a, self._b
        if a.remote is None or b.remote is None:
            a.pt_map = b.pt_map = None
            return
        a.pt_map = payload_type_map(a.remote.codecs, b.remote.codecs) or None
        b.pt_map = payload_type_map(b.remote.codecs, a.remote.codecs) or None

    def start(self, *, now: float) -> None:
        """The call is up: inactivity timeouts apply from now."""
        self._started = True
        for L in (self._a, self._b):
            L.last_rx = L.last_any_rx = now
            L.timed_out = False

    def feed(
        self,
        leg: Leg,
        source: MediaPort | None,
        *,
        codec: Codec | None = None,
        payload_type: int | None = None,
    ) -> None:
        """Make `leg` hear `source` (packetised by `tick()`) instead of the other leg; None resumes relaying.

        The codec defaults to the first G.711 codec in the leg's SDP, with the leg's payload type number;
        it is fixed when local audio starts (feeding another port only swaps the source; to change codec,
        `feed(leg, None)` first). The stream the leg receives keeps its SSRC and numbering either way.
        """
        L = self._leg(leg)
        if source is None:
            L.feed = None
            return
        if codec is None:
            for c in (L.remote.codecs if L.remote else ()):
                if c.name.upper() in _DECODERS and c.clock_rate == 8000:
                    codec, payload_type = codec_by_name(c.name), c.payload_type
                    break
            else:
                if L.remote is not None and L.remote.codecs:
                    raise ValueError(f"leg {leg} negotiated no G.711 codec to play audio with")
                codec = codec_by_name("PCMU")
        if L.feed is None:
            L.feed = OutboundStream(
                source,
                codec=codec,
                local_port=L.local_port or 0,
                dest=None,
                payload_type=payload_type,
                sender=L.sender,
            )
        else:
            L.feed.source = source

    @property
    def ticking(self) -> bool:
        """True while some leg hears local audio, i.e. the media clock must tick this session."""
        return self._a.feed is not None or self._b.feed is not None

    def tick(self, *, now: float) -> list[Send]:
        """One 20 ms media-clock tick: packetise local audio for legs that have a `feed`."""
        out: list[Send] = []
        for L in (self._a, self._b):
            stream = L.feed
            if stream is None or L.local_port is None or not L.receives:
                continue
            stream.dest = L.destination()
            stream.local_port = L.local_port
            out += stream.tick(now=now)
        return out

    def tap(self, leg: Leg, *, maxlen: int = 250, into: BufferPort | None = None) -> Tap:
        """Subscribe to the decoded audio `leg` sends; `close()` the tap to stop paying for it."""
        L = self._leg(leg)
        t = Tap(self, leg, maxlen=maxlen, into=into)
        if L.taps is None:
            L.taps = []
        L.taps.append(t)
        return t

    def audio_port(self, leg: Leg, *, max_frames: int = 5, prefill_frames: int = 2) -> BufferPort:
        """A port that yields what `leg` says as 20 ms frames (for the mixer); backed by a tap.

        `prefill_frames` of audio are buffered before the first frame (and after an underrun) to absorb
        network jitter; `max_frames` bounds the latency (older audio is dropped).
        """
        port = BufferPort(max_samples=max_frames * 160, prefill=prefill_frames * 160)
        self.tap(leg, into=port)
        return port

    def _untap(self, tap: Tap) -> None:
        L = self._leg(tap.leg)
        if L.taps is not None and tap in L.taps:
            L.taps.remove(tap)
            if not L.taps:
                L.taps = None

    def close(self) -> None:
        """Detach taps and local audio; the session forwards nothing afterwards."""
        for L in (self._a, self._b):
            for t in list(L.taps or ()):
                t.close()
            L.feed = None
            L.local_port = None

    # --- queries -----------------------------------------------------------------------------------

    def stats(self, leg: Leg) -> LegStats:
        """Counters for what `leg` sends (the leg -> other leg direction)."""
        return self._leg(leg).stats

    def latched(self, leg: Leg) -> Address | None:
        return self._leg(leg).latched

    def latched_rtcp(self, leg: Leg) -> Address | None:
        return self._leg(leg).latched_rtcp

    def sender(self, leg: Leg) -> StreamSender:
        """The stream `leg` receives from us (SSRC, last sequence number and timestamp)."""
        return self._leg(leg).sender

    @property
    def has_events(self) -> bool:
        """True when `events()` would return something (cheap; for the edge's per-packet check)."""
        return bool(self._events)

    def events(self) -> list[RelayEvent]:
        """Drain the events produced since the last call."""
        out, self._events = self._events, []
        return out

    # --- the hot path ------------------------------------------------------------------------------

    def on_packet(
        self, leg: Leg, data: bytes, source: Address, *, now: float, rtcp: bool = False
    ) -> list[Send]:
        """A datagram arrived on `leg`'s RTP socket (or its RTCP socket with `rtcp=True`)."""
        L = self._a if leg is Leg.A else self._b
        if rtcp or (len(data) > 1 and 192 <= data[1] <= 223):
            return self._on_rtcp(L, data, source, now)
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            L.stats.dropped_invalid += 1
            return []
        second, seq, ts, ssrc = _AFTER_FIRST.unpack_from(data, 1)
        pt = second & 0x7F
        if source != L.latched and not self._admit(L, source, pt, seq, ssrc, now):
            return []
        st = L.stats
        st.packets += 1
        st.bytes += len(data)
        L.last_rx = L.last_any_rx = now
        L.timed_out = False

        # reception statistics (RFC 3550 A.1, A.3, A.8)
        if ssrc != L.rx_ssrc:
            self._new_source(L, ssrc, seq, ts, now)
        else:
            d = (seq - st._max_seq) & 0xFFFF
            if d == 0:
                st.duplicates += 1
            elif d < 0x8000:
                if d > _MAX_DROPOUT:
                    self._new_source(L, ssrc, seq, ts, now)
                elif seq < st._max_seq:
                    st._cycles += 0x10000
                st._max_seq = seq
            else:
                st.out_of_order += 1
            if pt != L.dtmf_pt:
                dts = ((ts - L.j_last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                dev = (now - L.j_last_now) * L.clock_rate - dts
                st.jitter += ((dev if dev >= 0 else -dev) - st.jitter) * 0.0625
                L.j_last_now = now
                L.j_last_ts = ts
        st._received += 1

        expected = L.expected_pts
        if pt == L.dtmf_pt:
            self._dtmf(L, data, ssrc, ts)
        elif expected is not None and pt not in expected:
            st.unexpected_payload_type += 1
        elif L.taps is not None:
            self._tap(L, data, pt, ssrc, ts, now)

        O = self._b if L is self._a else self._a
        if O.feed is not None:
            st.not_forwarded_local += 1
            return []
        dest = O.latched
        if dest is None:
            dest = O.destination()
        port = O.local_port
        if dest is None or port is None:
            st.dropped_no_destination += 1
            return []
        if O.remote is not None and not O.remote.direction.receives:
            st.dropped_direction += 1
            return []
        out = O.sender.relay(data, ssrc=ssrc, seq=seq, ts=ts, now=now)
        if out is None:
            st.dropped_stale += 1
            return []
        pt_map = L.pt_map
        if pt_map is not None and pt in pt_map:
            patched = bytearray(out)
            patched[1] = (patched[1] & 0x80) | pt_map[pt]
            out = bytes(patched)
        st.forwarded += 1
        return [Send(port, out, dest)]

    def _new_source(self, L: _LegState, ssrc: int, seq: int, ts: int, now: float) -> None:
        st = L.stats
        if st._received:
            st._lost_before = st.lost
        st._base_seq = st._max_seq = seq
        st._cycles = 0
        st._received = 0
        L.rx_ssrc = ssrc
        L.j_last_now = now
        L.j_last_ts = ts
        if L.dtmf_pt >= 0:
            self._report_dtmf(L, L.dtmf.flush())

    # --- latching ----------------------------------------------------------------------------------

    def _admit(self, L: _LegState, source: Address, pt: int, seq: int, ssrc: int, now: float) -> bool:
        """Rules 1-3 of the module docstring for a packet not from the latched address."""
        valid = L.expected_pts is None or pt in L.expected_pts
        if L.latched is None:
            if not valid:
                L.stats.dropped_learning += 1
                return False
            if L.preferred(source):
                self._latch(L, source, now, "preferred")
                return True
            if self._probation_passed(L, source, ssrc, seq):
                self._latch(L, source, now, "probation")
                return True
            L.stats.dropped_learning += 1
            return False
        if valid:
            if now < L.learn_until and L.preferred(source):
                self._latch(L, source, now, "renegotiated")
                return True
            if now - L.last_rx >= self.relatch_after and self._probation_passed(L, source, ssrc, seq):
                self._latch(L, source, now, "takeover")
                return True
        L.stats.dropped_foreign += 1
        return False

    def _probation_passed(self, L: _LegState, source: Address, ssrc: int, seq: int) -> bool:
        cand = L.candidates.get(source)
        if cand is not None and cand[0] == ssrc and cand[1] == seq:
            cand[1] = (seq + 1) & 0xFFFF
            cand[2] += 1
        else:
            if cand is None and len(L.candidates) >= _MAX_CANDIDATES:
                del L.candidates[next(iter(L.candidates))]
            cand = L.candidates[source] = [ssrc, (seq + 1) & 0xFFFF, 1]
        return cand[2] >= self.probation

    def _latch(self, L: _LegState, source: Address, now: float, reason: str) -> None:
        previous = L.latched
        L.latched = source
        L.candidates.clear()
        L.learn_until = 0.0
        L.last_rx = now
        if previous is not None and previous[0] != source[0]:
            L.latched_rtcp = None  # the phone moved: learn its RTCP address again
        self._events.append(Latched(L.name, source, False, previous, reason))

    # --- RTCP --------------------------------------------------------------------------------------

    def _on_rtcp(self, L: _LegState, data: bytes, source: Address, now: float) -> list[Send]:
        try:
            packets = parse_compound(data)
        except ValueError:
            L.stats.dropped_invalid += 1
            return []
        if source != L.latched_rtcp:
            if L.latched is None or source[0] != L.latched[0]:
                L.stats.dropped_foreign += 1
                return []
            sender_ssrc = _sender_ssrc(packets)
            if sender_ssrc is not None and L.rx_ssrc is not None and sender_ssrc != L.rx_ssrc:
                L.stats.dropped_foreign += 1
                return []
            previous = L.latched_rtcp
            L.latched_rtcp = source
            self._events.append(Latched(L.name, source, True, previous, "preferred"))
        L.stats.rtcp_packets += 1
        L.last_any_rx = now
        for p in packets:
            if isinstance(p, Bye):
                self._events.append(RtcpBye(L.name, tuple(p.sources), p.reason))
        O = self._b if L is self._a else self._a
        if O.feed is not None or O.local_port is None:
            return []
        dest = O.rtcp_destination()
        if dest is None:
            return []
        if not (O.sender.identity and L.sender.identity) and (
            O.sender.source_ssrc is not None or L.sender.source_ssrc is not None
        ):
            data = serialize_compound([_map_rtcp(p, O.sender, L.sender) for p in packets])
        L.stats.rtcp_forwarded += 1
        return [Send(O.local_port + 1, data, dest)]

    # --- DTMF and taps -----------------------------------------------------------------------------

    def _dtmf(self, L: _LegState, data: bytes, ssrc: int, ts: int) -> None:
        try:
            payload = RtpPacket.parse(data).payload
            self._report_dtmf(L, L.dtmf.feed(ssrc=ssrc, timestamp=ts, payload=payload))
        except ValueError:
            L.stats.dropped_invalid += 1

    def _report_dtmf(self, L: _LegState, found: tuple[str, int] | None) -> None:
        if found is not None:
            L.stats.dtmf_events += 1
            self._events.append(DtmfEvent(L.name, found[0], found[1]))

    def _tap(self, L: _LegState, data: bytes, pt: int, ssrc: int, ts: int, now: float) -> None:
        table = L.decoders.get(pt)
        if table is None:
            L.stats.tap_undecodable += 1
            return
        if data[0] & 0x3F == 0:  # no padding, extension or CSRCs: the payload starts at 12
            codes = np.frombuffer(data, dtype=np.uint8, offset=12)
        else:
            try:
                codes = np.frombuffer(RtpPacket.parse(data).payload, dtype=np.uint8)
            except ValueError:
                return
        samples = table[codes]
        frame = TapFrame(L.name, L.timeline.map(ssrc, ts, len(samples), now), samples, now)
        for t in L.taps or ():
            t._push(frame)

    # --- timers ------------------------------------------------------------------------------------

    def _deadline(self, L: _LegState) -> tuple[float, bool] | None:
        if L.timed_out or L.remote is None or L.local_port is None:
            return None
        if L.remote.direction is Direction.SENDRECV:
            return L.last_rx + self.rtp_timeout, False
        if self.hold_timeout is None:
            return None
        return L.last_any_rx + self.hold_timeout, True

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next run (None: no timeout armed)."""
        if not self._started:
            return None
        found = [d[0] for d in (self._deadline(self._a), self._deadline(self._b)) if d is not None]
        return min(found) if found else None

    def handle_timer(self, *, now: float) -> None:
        """Report `MediaTimeout` for every leg whose deadline has passed (once per silence)."""
        if not self._started:
            return
        for L in (self._a, self._b):
            due = self._deadline(L)
            if due is not None and due[0] <= now:
                since = L.last_any_rx if due[1] else L.last_rx
                L.timed_out = True
                self._events.append(MediaTimeout(L.name, now - since, due[1]))


def _sender_ssrc(packets: list[RtcpPacket]) -> int | None:
    first = packets[0] if packets else None
    if isinstance(first, SenderReport | ReceiverReport):
        return first.ssrc
    return None


def _map_rtcp(p: RtcpPacket, toward: StreamSender, back: StreamSender) -> RtcpPacket:
    """Rewrite one RTCP packet from leg X for leg Y.

    `toward` is Y's sender (it carries X's stream to Y: X's SSRC -> our SSRC, plus offsets); `back` is X's
    sender (it carried Y's stream to X, which X's report blocks describe: our SSRC -> Y's SSRC).
    """

    def ssrc_out(ssrc: int) -> int:
        if toward.source_ssrc is not None and ssrc == toward.source_ssrc and toward.ssrc is not None:
            return toward.ssrc
        return ssrc

    def blocks(reports: list[ReportBlock]) -> list[ReportBlock]:
        out = []
        for b in reports:
            if back.ssrc is not None and b.ssrc == back.ssrc and back.source_ssrc is not None:
                low = (b.highest_sequence - back.seq_offset) & 0xFFFF
                b = ReportBlock(
                    back.source_ssrc,
                    b.fraction_lost,
                    b.packets_lost,
                    (b.highest_sequence & 0xFFFF0000) | low,
                    b.jitter,
                    b.lsr,
                    b.dlsr,
                )
            out.append(b)
        return out

    if isinstance(p, SenderReport):
        ts = p.rtp_timestamp
        if toward.source_ssrc is not None and p.ssrc == toward.source_ssrc:
            ts = (ts + toward.ts_offset) & 0xFFFFFFFF
        ssrc, reports = ssrc_out(p.ssrc), blocks(p.reports)
        return SenderReport(ssrc, p.ntp_timestamp, ts, p.packet_count, p.octet_count, reports, p.extension)
    if isinstance(p, ReceiverReport):
        return ReceiverReport(ssrc_out(p.ssrc), blocks(p.reports), p.extension)
    if isinstance(p, SourceDescription):
        return SourceDescription([SdesChunk(ssrc_out(c.ssrc), list(c.items)) for c in p.chunks])
    if isinstance(p, Bye):
        return Bye([ssrc_out(s) for s in p.sources], p.reason)
    assert isinstance(p, RawRtcp)
    return p

