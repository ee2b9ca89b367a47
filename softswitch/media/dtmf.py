"""DTMF as RTP telephone-events (RFC 4733 §2): payload parse/serialise, once-per-event detection, generation.

Implemented:
  * §2.3 payload format (event, E bit, volume, duration) as `TelephoneEvent`; events 0-15 are the DTMF
    digits "0123456789*#ABCD" (§3.2), 16 is hook flash ("!").
  * `DtmfDetector`: one report per event. All packets of an event carry the event's start timestamp
    (§2.3.1), and the end packet is sent three times (§2.5.1.4), so an event is identified by
    (SSRC, RTP timestamp); an event whose end packets were all lost is reported when the next event (a new
    timestamp) starts, with the last duration seen.
  * `event_payloads()`: the packets a sender emits for one digit (start with marker, updates, 3 ends).

Left out: the other event codes of RFC 4734 (fax tones, line events), segmented long events (§2.5.2.3),
and packing several events into one packet (§2.4 redundancy).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

__all__ = ["DIGITS", "DtmfDetector", "TelephoneEvent", "event_payloads"]

DIGITS: Final = "0123456789*#ABCD"
FLASH: Final = 16
_PAYLOAD = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool = False
    volume: int = 10
    """Power level in -dBm0 (0..63); 10 is a common sender default."""
    duration: int = 0
    """Duration so far, in timestamp units of the telephone-event clock (8000 Hz with G.711)."""

    @property
    def digit(self) -> str:
        """The DTMF character ("0".."9", "*", "#", "A".."D"), "!" for hook flash, "?" otherwise."""
        if self.event < len(DIGITS):
            return DIGITS[self.event]
        return "!" if self.event == FLASH else "?"

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload is shorter than 4 bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    @classmethod
    def for_digit(
        cls, digit: str, *, end: bool = False, volume: int = 10, duration: int = 0
    ) -> TelephoneEvent:
        """The event for a DTMF character ("!" is hook flash); `ValueError` for anything else."""
        index = FLASH if digit == "!" else DIGITS.find(digit.upper())
        if len(digit) != 1 or index < 0:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        return cls(index, end, volume, duration)

    def serialize(self) -> bytes:
        return _PAYLOAD.pack(
            self.event & 0xFF, (0x80 if self.end else 0) | (self.volume & 0x3F), min(self.duration, 0xFFFF)
        )


class DtmfDetector:
    """Turns a stream of telephone-event packets into one (digit, duration_ms) per event.

    >>> det = DtmfDetector()
    >>> end = TelephoneEvent.for_digit("5", end=True, duration=800).serialize()
    >>> det.feed(ssrc=1, timestamp=160, payload=end), det.feed(ssrc=1, timestamp=160, payload=end)
    (('5', 100), None)
    """

    def __init__(self, *, clock_rate: int = 8000, remember: int = 16) -> None:
        self.clock_rate = clock_rate
        self._ended: deque[tuple[int, int]] = deque(maxlen=remember)
        self._pending: tuple[int, int, TelephoneEvent] | None = None

    def feed(self, *, ssrc: int, timestamp: int, payload: bytes) -> tuple[str, int] | None:
        """Feed one telephone-event payload; returns a finished event the first time it is seen.

        Raises `ValueError` for a payload shorter than 4 bytes.
        """
        key = (ssrc, timestamp)
        if key in self._ended:
            return None  # a retransmitted end packet, or an update arriving after the end
        event = TelephoneEvent.parse(payload)
        finished: tuple[str, int] | None = None
        pending = self._pending
        if pending is not None and (pending[0], pending[1]) != key:
            finished = self._finish(pending[0], pending[1], pending[2])  # its end packets were all lost
            self._pending = None
        if event.end:
            self._pending = None
            return self._finish(ssrc, timestamp, event)  # at most one of the two can be set here
        self._pending = (ssrc, timestamp, event)
        return finished

    def flush(self) -> tuple[str, int] | None:
        """Report an event whose end never arrived (call when the stream stops or changes)."""
        pending, self._pending = self._pending, None
        return None if pending is None else self._finish(*pending)

    def _finish(self, ssrc: int, timestamp: int, event: TelephoneEvent) -> tuple[str, int]:
        self._ended.append((ssrc, timestamp))
        return event.digit, event.duration * 1000 // self.clock_rate


def event_payloads(
    digit: str, *, duration: int = 1600, step: int = 160, volume: int = 10
) -> list[tuple[bytes, bool]]:
    """(payload, marker) for each packet of one event, to be sent every `step` samples, same timestamp.

    The first packet has the marker bit (§2.5.1.2), updates grow the duration, and the final packet is
    sent three times with the E bit (§2.5.1.4). Durations are in timestamp units.
    """
    packets: list[tuple[bytes, bool]] = []
    elapsed = step
    while elapsed < duration:
        packets.append(
            (TelephoneEvent.for_digit(digit, volume=volume, duration=elapsed).serialize(), not packets)
        )
        elapsed += step
    final = TelephoneEvent.for_digit(digit, end=True, volume=volume, duration=duration).serialize()
    packets += [(final, not packets)] + [(final, False)] * 2
    return packets
