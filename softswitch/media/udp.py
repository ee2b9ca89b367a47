"""RTP/RTCP sockets (asyncio edge): port allocation from `server.rtp_ports`, the socket pair of a leg, and the
glue that feeds a `RelaySession` and writes what it returns.

  * `RtpPortAllocator(low, high)`: even RTP ports (RFC 3550 §11: RTP on an even port, RTCP on the next odd
    one), handed out round-robin; a released port waits `quarantine` seconds before reuse so late packets
    of a finished call never reach the next one. Pure bookkeeping (takes `now`).
  * `MediaSockets`: every media socket of the process: `open(host, port, on_datagram)` binds a leg's pair
    (`MediaTransport`), one epoll set feeds every datagram to its callback, `write(sends)` performs
    `Send`s. This module and sip/transport.py are the only places that call `sendto`.
  * `RelayRunner`: one `RelaySession` on its sockets: datagram -> `on_packet(now=loop.time())` ->
    `write`, events to a callback, and one lazily re-armed timer at `next_deadline()`.

Overload policy: UDP is shed, never queued. A datagram is handled as soon as it is read; if the loop falls
behind, the kernel's socket buffer drops packets (counted by the kernel, visible as RTP loss), and sends the
kernel refuses are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

from softswitch.media.relay import Leg, RelayEvent, RelaySession
from softswitch.media.stream import Address, Send

__all__ = ["MediaSockets", "MediaTransport", "PortsExhausted", "RelayRunner", "RtpPortAllocator"]

log = logging.getLogger(__name__)

DEFAULT_QUARANTINE: Final = 10.0


class PortsExhausted(RuntimeError):
    """No RTP port pair is free: the call must be refused (503 / 488 at the SIP layer)."""


class RtpPortAllocator:
    """Even RTP ports in [low, high] with RTCP = port + 1 also in range; round-robin with quarantine.

    >>> ports = RtpPortAllocator(20000, 20005)
    >>> [ports.allocate(now=0.0) for _ in range(3)]
    [20000, 20002, 20004]
    """

    def __init__(self, low: int, high: int, *, quarantine: float = DEFAULT_QUARANTINE) -> None:
        first = low + (low % 2)
        if not 0 < first < high <= 65535:
            raise ValueError(f"RTP port range {low}-{high} holds no even/odd port pair")
        self.low, self.high = low, high
        self.quarantine = quarantine
        self._free: deque[int] = deque(range(first, high, 2))
        if not self._free:
            raise ValueError(f"RTP port range {low}-{high} holds no even/odd port pair")
        self._waiting: deque[tuple[float, int]] = deque()
        self._in_use: set[int] = set()

    @classmethod
    def from_range(cls, text: str, *, quarantine: float = DEFAULT_QUARANTINE) -> RtpPortAllocator:
        """From the config form "20000-29999"."""
        low, sep, high = text.partition("-")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"rtp_ports must look like 20000-29999, got {text!r}")
        return cls(int(low), int(high), quarantine=quarantine)

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._waiting) + len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free) + len(self._waiting)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def _thaw(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            self._free.append(self._waiting.popleft()[1])

    def allocate(self, *, now: float) -> int:
        """The next free even port; raises `PortsExhausted`."""
        self._thaw(now)
        if not self._free:
            raise PortsExhausted(
                f"all {self.capacity} RTP port pairs in {self.low}-{self.high} are in use or in quarantine"
            )
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int, *, now: float) -> None:
        """Give a port back; reusable after the quarantine. Releasing a port not in use is ignored."""
        if port in self._in_use:
            self._in_use.discard(port)
            self._waiting.append((now + self.quarantine, port))


_READ_BURST: Final = 64  # datagrams read per readiness callback before yielding to other sockets
_MAX_DATAGRAM: Final = 2048


def _bind_udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class MediaTransport:
    """The RTP and RTCP sockets of one leg, bound to `port` and `port + 1`; opened by `MediaSockets.open`."""

    def __init__(self, port: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        self.port = port
        self.rtp = rtp
        self.rtcp = rtcp


_Entry = tuple[socket.socket, Callable[[bytes, Address, bool], None], bool]


class MediaSockets:
    """Every bound media socket, by local port for sending and by file descriptor for receiving.

    Receiving: all media sockets sit in one epoll set whose descriptor is the only thing asyncio watches
    (`loop.add_reader`); when it is readable, `_poll` walks the ready sockets and drains up to
    `_READ_BURST` datagrams from each with plain non-blocking `recvfrom`. Compared with one asyncio datagram
    transport per socket this saves the event loop's per-event bookkeeping on every packet, which is most
    of a relay's cost after the relay logic itself. Where epoll does not exist, each socket gets its own
    `add_reader` (same behaviour, a little slower). Needs a selector-based loop (the default; uvloop too).

    Sending: `write(sends)` calls `sendto` directly. Overload policy: a send the kernel refuses (socket
    buffer full, unreachable) is dropped and counted in `send_errors`; UDP is never queued in user space.
    """

    def __init__(self) -> None:
        self._by_port: dict[int, socket.socket] = {}
        self._by_fd: dict[int, _Entry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoll: select.epoll | None = None
        self.sent = 0
        self.unroutable = 0
        self.send_errors = 0
        self.receive_errors = 0

    def _watch(self, sock: socket.socket, entry: _Entry) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            if hasattr(select, "epoll"):
                self._epoll = select.epoll()
                loop.add_reader(self._epoll.fileno(), self._poll)
        fd = sock.fileno()
        self._by_fd[fd] = entry
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            loop.add_reader(fd, self._drain, entry)

    def _unwatch(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd < 0 or self._by_fd.pop(fd, None) is None:
            return
        if self._epoll is not None:
            self._epoll.unregister(fd)
        elif self._loop is not None:
            self._loop.remove_reader(fd)

    def open(
        self, host: str, port: int, on_datagram: Callable[[bytes, Address, bool], None]
    ) -> MediaTransport:
        """Bind `port` and `port + 1` on `host`; raises `OSError` (e.g. a port another program holds)."""
        rtp = _bind_udp(host, port)
        try:
            rtcp = _bind_udp(host, port + 1)
        except OSError:
            rtp.close()
            raise
        transport = MediaTransport(port, rtp, rtcp)
        self._watch(rtp, (rtp, on_datagram, False))
        self._watch(rtcp, (rtcp, on_datagram, True))
        self._by_port[port] = rtp
        self._by_port[port + 1] = rtcp
        return transport

    def close(self, transport: MediaTransport) -> None:
        """Stop watching and close the leg's sockets (idempotent)."""
        for port, sock in ((transport.port, transport.rtp), (transport.port + 1, transport.rtcp)):
            if self._by_port.get(port) is sock:
                del self._by_port[port]
            self._unwatch(sock)
            sock.close()

    def shutdown(self) -> None:
        """Close the epoll set (after every transport is closed)."""
        if self._epoll is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None
            self._loop = None

    def _poll(self) -> None:
        assert self._epoll is not None
        by_fd = self._by_fd
        for fd, _ in self._epoll.poll(0):
            entry = by_fd.get(fd)
            if entry is not None:
                self._drain(entry)

    def _drain(self, entry: _Entry) -> None:
        sock, callback, rtcp = entry
        for _ in range(_READ_BURST):
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable after sending to a phone that left
                self.receive_errors += 1
                log.debug("x media socket error: %s", exc)
                continue
            callback(data, addr if len(addr) == 2 else (addr[0], addr[1]), rtcp)

    def write(self, sends: Iterable[Send]) -> None:
        by_port = self._by_port
        for s in sends:
            sock = by_port.get(s.local_port)
            if sock is None:
                self.unroutable += 1
                continue
            try:
                sock.sendto(s.data, s.dest)
            except OSError:
                self.send_errors += 1
                continue
            self.sent += 1


class RelayRunner:
    """Runs one `RelaySession` on real sockets.

    >>> async def demo():
    ...     session = RelaySession(a_port=None, b_port=None)
    ...     sockets = MediaSockets()
    ...     runner = RelayRunner(session, sockets, on_event=print)
    ...     await runner.bind(Leg.A, host="127.0.0.1", allocator=RtpPortAllocator(41000, 41099))
    ...     runner.close(); sockets.shutdown()
    >>> asyncio.run(demo())
    """

    def __init__(
        self,
        session: RelaySession,
        sockets: MediaSockets,
        *,
        on_event: Callable[[RelayEvent], None],
    ) -> None:
        self.session = session
        self.sockets = sockets
        self.on_event = on_event
        self._transports: dict[Leg, MediaTransport] = {}
        self._allocator: RtpPortAllocator | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def bind(self, leg: Leg, *, host: str, allocator: RtpPortAllocator, attempts: int = 20) -> int:
        """Allocate and bind the leg's port pair, skipping ports another program holds; returns the port."""
        return self.bind_now(leg, host=host, allocator=allocator, attempts=attempts)

    def bind_now(
        self,
        leg: Leg,
        *,
        host: str,
        allocator: RtpPortAllocator,
        attempts: int = 20,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> int:
        """`bind` without awaiting: binding a UDP socket never blocks, so signalling code that must answer
        in the same step (an SDP needs the port) can call this directly."""
        self._loop = loop or asyncio.get_running_loop()
        self._allocator = allocator
        last_error: OSError | None = None

        def on_datagram(data: bytes, source: Address, rtcp: bool) -> None:
            self._datagram(leg, data, source, rtcp)

        for _ in range(attempts):
            port = allocator.allocate(now=self._loop.time())
            try:
                transport = self.sockets.open(host, port, on_datagram)
            except OSError as exc:  # taken by someone else: leave it in quarantine and try the next one
                last_error = exc
                allocator.release(port, now=self._loop.time())
                continue
            self._transports[leg] = transport
            self.session.set_local_port(leg, port)
            return port
        raise PortsExhausted(f"no bindable RTP port pair after {attempts} attempts: {last_error}")

    def _datagram(self, leg: Leg, data: bytes, source: Address, rtcp: bool) -> None:
        loop = self._loop
        assert loop is not None
        sends = self.session.on_packet(leg, data, source, now=loop.time(), rtcp=rtcp)
        if sends:
            self.sockets.write(sends)
        if self.session.has_events:
            self._dispatch()

    def _dispatch(self) -> None:
        for event in self.session.events():
            try:
                self.on_event(event)
            except Exception:
                log.exception("x relay event handler failed on %r", event)

    def poke(self) -> None:
        """Re-arm the timer after the session was told something (start, update); cheap, call freely."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        deadline = self.session.next_deadline()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = None
        # asyncio may run a timer up to one clock-resolution early; it is due all the same
        self.session.handle_timer(now=max(loop.time(), self._timer_at))
        self._dispatch()
        self.poke()  # packets may have moved the deadline later: sleep until then

    def close(self) -> None:
        """Unbind, release the ports, stop the timer, close the session."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._loop.time() if self._loop is not None else 0.0
        for transport in self._transports.values():
            self.sockets.close(transport)
            if self._allocator is not None:
                self._allocator.release(transport.port, now=now)
        self._transports.clear()
        self.session.close()
