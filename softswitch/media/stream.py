"""The RTP stream a peer receives from us, whatever feeds it (RFC 3550 §5.1, §8; RFC 7667 §3.2.1.2).

A B2BUA that anchors media changes the source of what a phone hears: the other phone, then music on hold,
then another phone after a transfer, then the other phone again after a re-INVITE that changed its SSRC.
A phone must not see those seams, so `StreamSender` keeps, per destination:
  * one SSRC for the life of the stream;
  * sequence numbers that continue by one across every change of source;
  * timestamps that continue by the wall-clock time elapsed (at least one packet's worth), so the
    receiver's jitter buffer and playout stay sane;
  * the marker bit set on the first packet after a seam (RFC 3551 §4.1: start of a talkspurt).

Relayed packets keep their own sequence/timestamp spacing: we add per-source offsets (`relay()`), and
while the offsets are zero and the SSRC is the source's own, the bytes are forwarded untouched (the
common case costs no copy). A source restart inside one SSRC (a jump of more than 3,000 sequence numbers
forward or 100 back, RFC 3550 Appendix A.1's MAX_DROPOUT / MAX_MISORDER) is a seam too. A late packet from
the source we just switched away from (within `STALE_WINDOW` of the switch, or not newer than the last one
we forwarded from it) is dropped rather than allowed to flip the offsets back; after that, that source
coming back is an ordinary seam.

`OutboundStream` is the sans-IO packetiser for audio we make ourselves (music on hold, prompts, tones,
mixer output): `tick(now=)` pulls one frame from a port, encodes it and returns the `Send` to perform.
Left out: sending RTCP SR for our own streams (counters are kept for it: `packets_sent`, `octets_sent`).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Final

from softswitch.media.g711 import Codec
from softswitch.media.port import EncodedSource, MediaPort
from softswitch.media.rtp import rewrite_header, seq_diff, seq_newer, ts_newer

__all__ = ["Address", "OutboundStream", "Send", "StreamSender"]

Address = tuple[str, int]

MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
STALE_WINDOW: Final = 0.25  # seconds after a switch during which the previous source's packets are late
_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class Send:
    """One datagram for the edge to write: from our socket bound to `local_port`, to `dest`."""

    local_port: int
    data: bytes
    dest: Address


class StreamSender:
    """Sequence, timestamp and SSRC of the stream one destination receives from us.

    With `ssrc=None` the sender adopts the first relayed source's SSRC, sequence numbers and timestamps,
    so a plain relay forwards packets untouched until the first seam.

    >>> s = StreamSender(rng=random.Random(1))
    >>> pkt = bytes.fromhex("8000000a00000640000000aa") + b"\\xff" * 160
    >>> s.relay(pkt, ssrc=0xAA, seq=10, ts=1600, now=0.0) is pkt
    True
    """

    def __init__(
        self,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        clock_rate: int = 8000,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self._seq_base = sequence
        self._ts_base = timestamp
        self._started = False
        # the last packet we sent (the newest by sequence number)
        self.last_seq = 0
        self.last_ts = 0
        self._last_time = 0.0
        self._last_step = clock_rate // 50  # timestamp units per packet; 20 ms until we learn better
        # the relayed source currently mapped, and how
        self.source_ssrc: int | None = None
        self._stale_ssrc: int | None = None
        self._stale_last_seq = 0
        self._stale_until = 0.0
        self._src_last_seq = 0
        self._src_last_ts = 0
        self.seq_offset = 0
        self.ts_offset = 0
        self._identity = False
        self._rebase = False
        self._marker_pending = False
        self.packets_sent = 0
        self.octets_sent = 0
        self.seams = 0
        self.stale_dropped = 0

    @property
    def identity(self) -> bool:
        """True while relayed packets go out unchanged (same SSRC, zero offsets)."""
        return self._identity

    def mark_discontinuity(self) -> None:
        """Make the next packet (relayed or local) start a new segment: rebased and marked."""
        self._rebase = True

    # --- relayed packets ---------------------------------------------------------------------------

    def relay(self, data: bytes, *, ssrc: int, seq: int, ts: int, now: float) -> bytes | None:
        """The bytes to forward for relayed RTP packet `data` (whose header fields are given), or None to
        drop it (a late packet from the previous source)."""
        if ssrc != self.source_ssrc or self._rebase:
            if ssrc == self._stale_ssrc and not self._rebase and (
                now < self._stale_until or not seq_newer(seq, self._stale_last_seq)
            ):
                self.stale_dropped += 1
                return None
            self._switch_source(ssrc, seq, ts, now)
        else:
            jump = seq_diff(seq, self._src_last_seq)
            if jump > MAX_DROPOUT or jump < -MAX_MISORDER:
                self._switch_source(ssrc, seq, ts, now)  # the source restarted its numbering
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        if seq_newer(seq, self._src_last_seq):
            step = (ts - self._src_last_ts) & 0xFFFFFFFF
            if 0 < step <= self.clock_rate * 0.12 and seq == (self._src_last_seq + 1) & 0xFFFF:
                self._last_step = step  # packetisation of this source (up to 120 ms)
            self._src_last_seq = seq
            self._src_last_ts = ts
        if seq_newer(out_seq, self.last_seq):
            self.last_seq = out_seq
        if ts_newer(out_ts, self.last_ts):  # telephone-events repeat their start timestamp: keep the newest
            self.last_ts = out_ts
            self._last_time = now
        self.packets_sent += 1
        self.octets_sent += len(data) - 12
        if self._marker_pending:
            self._marker_pending = False
            return rewrite_header(data, seq=out_seq, ts=out_ts, ssrc=self.ssrc or 0, marker=True)
        if self._identity:
            return data
        return rewrite_header(data, seq=out_seq, ts=out_ts, ssrc=self.ssrc or 0)

    def _switch_source(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        if self.source_ssrc is not None and self.source_ssrc != ssrc:
            self._stale_ssrc = self.source_ssrc
            self._stale_last_seq = self._src_last_seq
            self._stale_until = now + STALE_WINDOW
        if not self._started:
            self._started = True
            if self.ssrc is None:
                self.ssrc = ssrc
            out_seq = seq if self._seq_base is None else self._seq_base
            out_ts = ts if self._ts_base is None else self._ts_base
        else:
            out_seq = (self.last_seq + 1) & 0xFFFF
            out_ts = (self.last_ts + self._advance(now)) & 0xFFFFFFFF
            self._marker_pending = True
            self.seams += 1
        self.seq_offset = (out_seq - seq) & 0xFFFF
        self.ts_offset = (out_ts - ts) & 0xFFFFFFFF
        self.source_ssrc = ssrc
        self._src_last_seq = (seq - 1) & 0xFFFF
        self._src_last_ts = ts
        self._rebase = False
        self._identity = self.seq_offset == 0 and self.ts_offset == 0 and self.ssrc == ssrc
        self.last_seq = (out_seq - 1) & 0xFFFF  # so the first packet counts as newest
        self.last_ts = (out_ts - 1) & 0xFFFFFFFF

    def _advance(self, now: float) -> int:
        """Timestamp units between our last packet and one sent at `now`: whole packets of wall time."""
        step = self._last_step
        elapsed = (now - self._last_time) * self.clock_rate
        if elapsed < 1.5 * step:
            return step
        return round(elapsed / step) * step

    # --- packets we make ---------------------------------------------------------------------------

    def local(
        self, payload: bytes, *, payload_type: int, samples: int, now: float, marker: bool = False
    ) -> bytes:
        """A new RTP packet carrying `payload` (`samples` timestamp units long), continuing the stream."""
        if not self._started:
            self._started = True
            if self.ssrc is None:
                self.ssrc = self._rng.getrandbits(32)
            seq = self._seq_base if self._seq_base is not None else self._rng.getrandbits(16)
            ts = self._ts_base if self._ts_base is not None else self._rng.getrandbits(32)
            marker = True
        else:
            seq = (self.last_seq + 1) & 0xFFFF
            advance = self._advance(now)
            ts = (self.last_ts + advance) & 0xFFFFFFFF
            if self.source_ssrc is not None or self._rebase or self._marker_pending:
                marker = True  # a seam: we were relaying someone else
                self.seams += 1
            elif advance > self._last_step:
                marker = True  # first packet after a silence (RFC 3551 §4.1)
        self._stale_ssrc = None  # whoever is relayed next, even the previous source, is welcome
        self.source_ssrc = None  # the next relayed packet is a seam
        self._identity = False
        self._rebase = False
        self._marker_pending = False
        self._last_step = samples
        self.last_seq = seq
        self.last_ts = ts
        self._last_time = now
        self.packets_sent += 1
        self.octets_sent += len(payload)
        header = _HEADER.pack(0x80, (0x80 if marker else 0) | (payload_type & 0x7F), seq, ts, self.ssrc or 0)
        return header + payload


class OutboundStream:
    """Packetises 20 ms frames from a port into RTP for one destination (sans-IO).

    >>> from softswitch.media.g711 import PCMU
    >>> from softswitch.media.player import LoopingPlayer
    >>> import numpy as np
    >>> out = OutboundStream(LoopingPlayer(np.zeros(800, np.int16)), codec=PCMU, local_port=20000,
    ...                      dest=("192.0.2.7", 4000))
    >>> [len(s.data) for s in out.tick(now=0.0)]
    [172]
    """

    def __init__(
        self,
        source: MediaPort | None,
        *,
        codec: Codec,
        local_port: int,
        dest: Address | None,
        payload_type: int | None = None,
        sender: StreamSender | None = None,
    ) -> None:
        self.codec = codec
        pt = codec.payload_type if payload_type is None else payload_type
        if pt is None:
            raise ValueError(f"codec {codec.name} has no static payload type; pass payload_type")
        self.payload_type = pt
        self.local_port = local_port
        self.dest = dest
        self.sender = sender or StreamSender(clock_rate=codec.clock_rate)
        self.frames_sent = 0
        self.source = source

    @property
    def source(self) -> MediaPort | None:
        return self._source

    @source.setter
    def source(self, port: MediaPort | None) -> None:
        """Change what this stream plays; the RTP stream itself continues (same SSRC, no seam)."""
        self._source = port
        self._encoded = port.get_payload if isinstance(port, EncodedSource) else None

    @property
    def done(self) -> bool:
        """True when the source says it has finished (a prompt played to its end)."""
        return bool(getattr(self._source, "done", False))

    def tick(self, *, now: float) -> list[Send]:
        """One 20 ms tick: pull a frame, packetise it, return what to send (nothing for silence)."""
        if self._source is None or self.dest is None:
            return []
        if self._encoded is not None:
            payload = self._encoded(self.codec.name)
            if payload is None:
                return []
        else:
            frame = self._source.get_frame()
            if frame is None:
                return []
            payload = self.codec.encode(frame)
        samples = self.codec.clock_rate // 50  # one 20 ms frame in timestamp units
        data = self.sender.local(payload, payload_type=self.payload_type, samples=samples, now=now)
        self.frames_sent += 1
        return [Send(self.local_port, data, self.dest)]
