"""Conference bridge (pjmedia's conference.h, reduced): slots, `connect(src, dst, level)`, one mix per tick.

Every port added to the `Mixer` is a slot. `connect(src, dst, level)` makes `dst` hear `src` at a linear
gain (1.0 unity, 0.5 about -6 dB, 0.0 mute; pjmedia's adj_level is the same idea in another unit). On each
media-clock tick the mixer pulls exactly one frame from every port somebody listens to, and gives every
listening port the sum of its sources, saturated to int16. A port never hears itself: `connect(p, p)` is
refused, so a conference of N is N*(N-1) links and nobody gets their own echo.

The mix is one matrix product (listeners x sources) per tick, so cost grows with the number of ports, not
with the number of links; a listener none of whose sources produced audio this tick gets no frame (its
stream sends nothing, which phones treat as silence).

`Supervision` wires the three supervisor modes on top of a call's `RelaySession` and the supervisor's:
  * listen: the supervisor hears caller + agent; the call itself is untouched (still relayed, no decode
    beyond the two taps);
  * whisper: the agent hears the supervisor too, so the agent's leg is fed by the mixer (caller + supervisor);
  * barge: the caller hears the supervisor too, so the caller's leg is fed by the mixer (agent + supervisor).
Audio that goes through the mixer is decoded, mixed and re-encoded: it gains 20-40 ms of buffering.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from softswitch.media.port import FRAME_SAMPLES, BufferPort, MediaPort
from softswitch.media.relay import Leg, RelaySession, Tap
from softswitch.media.stream import Send

__all__ = ["Mixer", "Supervision", "SupervisionMode"]

_INT16_MAX: Final = 32767
_INT16_MIN: Final = -32768


class Mixer:
    """A conference bridge of passive ports, ticked by the media clock.

    >>> a, b, c = BufferPort(), BufferPort(), BufferPort()
    >>> mixer = Mixer()
    >>> mixer.connect(a, c); mixer.connect(b, c)
    >>> a.put_frame(np.full(160, 1000, np.int16)); b.put_frame(np.full(160, 20000, np.int16))
    >>> _ = mixer.tick(now=0.0)
    >>> int(c.get_frame()[0])
    21000
    """

    def __init__(self) -> None:
        self._ports: list[MediaPort] = []
        self._slots: dict[int, int] = {}  # id(port) -> slot
        self._links: dict[tuple[int, int], float] = {}  # (src slot, dst slot) -> level
        self._plan: tuple[list[int], list[int], npt.NDArray[np.float32]] | None = None
        self.ticks = 0
        self.clipped_samples = 0

    def __len__(self) -> int:
        return len(self._ports)

    def slot(self, port: MediaPort) -> int:
        """The slot of `port`, adding it if needed."""
        key = id(port)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self._ports)
            self._ports.append(port)
            self._plan = None
        return slot

    def remove(self, port: MediaPort) -> None:
        """Take a port and all its links out of the bridge."""
        slot = self._slots.pop(id(port), None)
        if slot is None:
            return
        self._ports.pop(slot)
        self._links = {
            (s - (s > slot), d - (d > slot)): lvl for (s, d), lvl in self._links.items() if slot not in (s, d)
        }
        self._slots = {id(p): i for i, p in enumerate(self._ports)}
        self._plan = None

    def connect(self, src: MediaPort, dst: MediaPort, level: float = 1.0) -> None:
        """`dst` hears `src` at `level` (linear gain); connecting again changes the level."""
        if src is dst:
            raise ValueError("a port never hears itself")
        if level < 0:
            raise ValueError(f"level must be >= 0, got {level}")
        self._links[(self.slot(src), self.slot(dst))] = float(level)
        self._plan = None

    def disconnect(self, src: MediaPort, dst: MediaPort) -> None:
        s, d = self._slots.get(id(src)), self._slots.get(id(dst))
        if s is not None and d is not None and self._links.pop((s, d), None) is not None:
            self._plan = None

    def links(self) -> Iterable[tuple[MediaPort, MediaPort, float]]:
        return [(self._ports[s], self._ports[d], lvl) for (s, d), lvl in self._links.items()]

    def _build_plan(self) -> tuple[list[int], list[int], npt.NDArray[np.float32]]:
        sources = sorted({s for s, _ in self._links})
        sinks = sorted({d for _, d in self._links})
        col = {s: j for j, s in enumerate(sources)}
        row = {d: i for i, d in enumerate(sinks)}
        matrix = np.zeros((len(sinks), len(sources)), dtype=np.float32)
        for (s, d), lvl in self._links.items():
            matrix[row[d], col[s]] = lvl
        return sources, sinks, matrix

    def tick(self, *, now: float) -> list[Send]:
        """Pull one frame from each source with listeners, push each listener its mix. Sends nothing."""
        self.ticks += 1
        if self._plan is None:
            self._plan = self._build_plan()
        sources, sinks, matrix = self._plan
        if not sinks:
            return []
        frames = np.zeros((len(sources), FRAME_SAMPLES), dtype=np.float32)
        present = np.zeros(len(sources), dtype=bool)
        ports = self._ports
        for j, s in enumerate(sources):
            frame = ports[s].get_frame()
            if frame is not None:
                frames[j, : len(frame)] = frame[:FRAME_SAMPLES]
                present[j] = True
        if not present.any():
            return []
        heard = (matrix[:, present] != 0).any(axis=1)
        mix = matrix @ frames
        over = (mix > _INT16_MAX) | (mix < _INT16_MIN)
        if over.any():
            self.clipped_samples += int(np.count_nonzero(over[heard]))
            np.clip(mix, _INT16_MIN, _INT16_MAX, out=mix)
        out = np.rint(mix).astype(np.int16)
        for i, d in enumerate(sinks):
            if heard[i]:
                ports[d].put_frame(out[i])
        return []


class SupervisionMode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class Supervision:
    """A supervisor on a call: listen, whisper or barge, switchable while it lasts.

    `call` is the monitored call (leg A caller, leg B agent); `supervisor` is the supervisor's own call to
    the switch, whose `supervisor_leg` is the supervisor's phone. Register `mixer` with the media clock
    before the sessions (ticker phase MIX), and the sessions while `ticking`.
    """

    def __init__(
        self,
        mixer: Mixer,
        call: RelaySession,
        supervisor: RelaySession,
        *,
        supervisor_leg: Leg = Leg.A,
        mode: SupervisionMode = SupervisionMode.LISTEN,
    ) -> None:
        self.mixer = mixer
        self.call = call
        self.supervisor = supervisor
        self.supervisor_leg = supervisor_leg
        self.caller_in = BufferPort(prefill=2 * FRAME_SAMPLES)
        self.agent_in = BufferPort(prefill=2 * FRAME_SAMPLES)
        self.supervisor_in = BufferPort(prefill=2 * FRAME_SAMPLES)
        self.caller_out = BufferPort()
        self.agent_out = BufferPort()
        self.supervisor_out = BufferPort()
        self._taps: list[Tap] = [
            call.tap(Leg.A, into=self.caller_in),
            call.tap(Leg.B, into=self.agent_in),
            supervisor.tap(supervisor_leg, into=self.supervisor_in),
        ]
        supervisor.feed(supervisor_leg, self.supervisor_out)
        self.mode: SupervisionMode | None = None
        self.set_mode(mode)

    def set_mode(self, mode: SupervisionMode) -> None:
        m = self.mixer
        for src, dst in (
            (self.supervisor_in, self.agent_out),
            (self.caller_in, self.agent_out),
            (self.supervisor_in, self.caller_out),
            (self.agent_in, self.caller_out),
        ):
            m.disconnect(src, dst)
        m.connect(self.caller_in, self.supervisor_out)
        m.connect(self.agent_in, self.supervisor_out)
        if mode in (SupervisionMode.WHISPER, SupervisionMode.BARGE):
            m.connect(self.caller_in, self.agent_out)
            m.connect(self.supervisor_in, self.agent_out)
            self.call.feed(Leg.B, self.agent_out)
        else:
            self.call.feed(Leg.B, None)
            self.agent_out.clear()
        if mode is SupervisionMode.BARGE:
            m.connect(self.agent_in, self.caller_out)
            m.connect(self.supervisor_in, self.caller_out)
            self.call.feed(Leg.A, self.caller_out)
        else:
            self.call.feed(Leg.A, None)
            self.caller_out.clear()
        self.mode = mode

    def stop(self) -> None:
        """Back to a plain relayed call; the supervisor's leg hears nothing more from us."""
        self.call.feed(Leg.A, None)
        self.call.feed(Leg.B, None)
        self.supervisor.feed(self.supervisor_leg, None)
        for t in self._taps:
            t.close()
        for port in (
            self.caller_in,
            self.agent_in,
            self.supervisor_in,
            self.caller_out,
            self.agent_out,
            self.supervisor_out,
        ):
            self.mixer.remove(port)
        self.mode = None
