"""The asyncio edge of the SIP stack: sockets, connections and the endpoint's one timer (style 9.1, 9.14).

UDP, TCP and TLS listeners (IPv4 and IPv6) feed bytes to the sans-IO `Endpoint`; after every input this
module writes `endpoint.outgoing()`, hands `endpoint.next_event()`s to the application and re-arms a single
`loop.call_at(endpoint.next_deadline())`. Stream connections are framed by `framing.StreamFramer`
(Content-Length, RFC 5626 CRLF keep-alives answered with one CRLF), closed after `idle_timeout` seconds
without traffic, and kept in a flow table so the switch can reach a phone over the very connection it
registered on.

Overload policy: UDP input is processed as it arrives; when the endpoint falls behind, the kernel's
socket buffer sheds datagrams (the phones retransmit). A stream connection whose peer stops reading is
closed once its write buffer passes `max_write_buffer` bytes, so one slow peer cannot eat memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from softswitch.sip.endpoint import Endpoint, EndpointEvent, MessageDropped, SourceBanned
from softswitch.sip.flow import Flow
from softswitch.sip.framing import FramingError, KeepAlivePing, Message, StreamFramer
from softswitch.sip.guard import Verdict

__all__ = ["ListenAddress", "SipTransport"]

log = logging.getLogger("softswitch.sip.transport")


@dataclass(frozen=True, slots=True)
class ListenAddress:
    transport: str  # udp | tcp | tls
    host: str
    port: int


def _addr(sockaddr: Any) -> tuple[str, int]:
    return (sockaddr[0], sockaddr[1])


class _Udp:
    """A UDP listener read in batches: one wake-up drains every datagram waiting (up to `BATCH`), and the
    endpoint's output is written once per batch. asyncio's datagram transport reads one datagram per
    loop iteration, which at thousands of REGISTERs a second costs more than parsing them."""

    BATCH = 256

    def __init__(self, edge: SipTransport, sock: socket.socket, local: tuple[str, int]) -> None:
        self.edge = edge
        self.sock = sock
        self.local = local
        self.send_errors = 0

    def readable(self) -> None:
        edge = self.edge
        sock = self.sock
        local = self.local
        now = edge.loop.time()
        for _ in range(self.BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP port unreachable and friends: not ours to handle
                log.debug("- udp error on %s: %s", local, exc)
                continue
            if len(data) <= 4 and not data.strip(b"\r\n\x00 "):
                continue  # a CRLF keep-alive on UDP: the datagram itself kept the NAT pinhole open
            edge.received(data, Flow("udp", (addr[0], addr[1]), local), now, pump=False)
        edge.pump()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            # The socket buffer is full: shed it like the network would (the peer retransmits).
            self.send_errors += 1
        except OSError as exc:
            self.send_errors += 1
            log.debug("x udp send to %s failed: %s", addr, exc)

    def close(self) -> None:
        self.edge.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _Stream(asyncio.Protocol):
    def __init__(self, edge: SipTransport, kind: str, local: tuple[str, int]) -> None:
        self.edge = edge
        self.kind = kind
        self.local = local
        self.conn_id = next(edge._conn_ids)
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.framer = StreamFramer(max_message_size=edge.max_message_size)
        self.last_activity = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        local = _addr(sock) if sock else self.local
        self.flow = Flow(self.kind, _addr(peer), self.local if self.local[1] else local, self.conn_id)
        self.last_activity = self.edge.loop.time()
        guard = self.edge.endpoint.guard
        if guard.check(self.flow.remote[0], now=self.last_activity) is Verdict.BANNED:
            log.info("x %s connection from banned source %s refused", self.kind, self.flow.remote[0])
            transport.abort()  # type: ignore[attr-defined]
            self.flow = None
            return
        self.edge._connections[self.conn_id] = self
        self.edge._by_remote.setdefault((self.kind, self.flow.remote), self.conn_id)
        log.debug("- %s connection %s open", self.kind, self.flow)

    def data_received(self, data: bytes) -> None:
        now = self.edge.loop.time()
        self.last_activity = now
        assert self.flow is not None and self.transport is not None
        for item in self.framer.feed(data):
            if isinstance(item, Message):
                self.edge.received(item.data, self.flow, now)
            elif isinstance(item, KeepAlivePing):
                self.transport.write(b"\r\n")
            elif isinstance(item, FramingError):
                log.info("x %s framing error, closing: %s", self.flow, item.reason)
                self.edge.endpoint.counters["framing_error"] = (
                    self.edge.endpoint.counters.get("framing_error", 0) + 1
                )
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        edge = self.edge
        edge._connections.pop(self.conn_id, None)
        if self.flow is not None:
            key = (self.kind, self.flow.remote)
            if edge._by_remote.get(key) == self.conn_id:
                del edge._by_remote[key]
            edge.endpoint.connection_lost(self.flow, now=edge.loop.time())
            edge.pump()


class SipTransport:
    """Listeners and connections around one `Endpoint`."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        on_event: Callable[[EndpointEvent], None],
        tls_context: ssl.SSLContext | None = None,
        idle_timeout: float = 600.0,
        max_message_size: int = 65535,
        max_write_buffer: int = 1 << 20,
        on_pump: Callable[[], None] | None = None,
        timed: list[Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.tls_context = tls_context
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        self.max_write_buffer = max_write_buffer
        self.on_pump = on_pump
        # Other sans-IO cores driven by the same one timer (the call flow and its ACD engine): each has
        # next_deadline() and handle_timer(now=).
        self.timed = list(timed or [])
        self.loop = asyncio.get_running_loop()
        self._udp: dict[tuple[str, int], _Udp] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: dict[int, _Stream] = {}
        self._by_remote: dict[tuple[str, tuple[str, int]], int] = {}
        self._conn_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.bound: list[ListenAddress] = []

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, listen: list[ListenAddress]) -> None:
        for spec in listen:
            if spec.transport == "udp":
                family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    with contextlib.suppress(OSError):  # bigger bursts before the kernel sheds them
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                    sock.bind((spec.host, spec.port))
                    sock.setblocking(False)
                except OSError:
                    sock.close()
                    raise
                local = (spec.host, sock.getsockname()[1])
                proto = _Udp(self, sock, local)
                self.loop.add_reader(sock.fileno(), proto.readable)
                self._udp[local] = proto
                self.bound.append(ListenAddress("udp", spec.host, local[1]))
            elif spec.transport in ("tcp", "tls"):
                context = self.tls_context if spec.transport == "tls" else None
                if spec.transport == "tls" and context is None:
                    raise ValueError("a tls listener needs a certificate and key (server.tls)")
                holder: dict[str, tuple[str, int]] = {"local": (spec.host, spec.port)}

                def factory(kind: str = spec.transport, holder: dict = holder) -> _Stream:  # type: ignore[type-arg]
                    return _Stream(self, kind, holder["local"])

                server = await self.loop.create_server(
                    factory, host=spec.host, port=spec.port, ssl=context, reuse_address=True
                )
                port = server.sockets[0].getsockname()[1]
                holder["local"] = (spec.host, port)
                self._servers.append(server)
                self.bound.append(ListenAddress(spec.transport, spec.host, port))
            else:
                raise ValueError(f"unknown transport {spec.transport!r}")
        self._schedule_sweep()

    async def stop_listening(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def close(self) -> None:
        await self.stop_listening()
        self.pump()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for proto in self._udp.values():
            proto.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()

    # -- the pump ----------------------------------------------------------------------------------------

    def received(self, data: bytes, flow: Flow, now: float, *, pump: bool = True) -> None:
        try:
            self.endpoint.receive(data, flow, now=now)
        except Exception:  # a bug must not take the switch down with it: log, count, go on
            log.exception("x internal error handling a message from %s", flow)
            self.endpoint.counters["internal_error"] = self.endpoint.counters.get("internal_error", 0) + 1
        if pump:
            self.pump()

    def pump(self) -> None:
        """Write what the endpoint wants written, hand its events up, re-arm the timer."""
        endpoint = self.endpoint
        self._upper()
        for data, flow in endpoint.outgoing():
            self.send(data, flow)
        while (event := endpoint.next_event()) is not None:
            match event:
                case SourceBanned(source=source):
                    self.drop_source(source)
                case MessageDropped(flow=flow, reason="banned_source"):
                    self.drop_source(flow.remote[0])
            try:
                self.on_event(event)
            except Exception:
                log.exception("x error handling endpoint event %r", event)
        self._upper()
        for data, flow in endpoint.outgoing():  # events may have produced output
            self.send(data, flow)
        self._arm()

    def _upper(self) -> None:
        if self.on_pump is not None:
            try:
                self.on_pump()
            except Exception:
                log.exception("x error in the layers above the endpoint")

    def _arm(self) -> None:
        deadline = self.endpoint.next_deadline()
        for core in self.timed:
            other = core.next_deadline()
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        try:
            self.endpoint.handle_timer(now=now)
        except Exception:
            log.exception("x internal error in endpoint timers")
        for core in self.timed:
            try:
                core.handle_timer(now=now)
            except Exception:
                log.exception("x internal error in %s timers", type(core).__name__)
        self.pump()

    # -- sending ------------------------------------------------------------------------------------------

    def send(self, data: bytes, flow: Flow) -> None:
        if flow.transport == "udp":
            proto = self._udp.get(flow.local) or next(iter(self._udp.values()), None)
            if proto is None:
                log.info("x no udp listener for %s", flow)
                return
            proto.sendto(data, flow.remote)
            return
        conn = self._connections.get(flow.conn_id) if flow.conn_id else None
        if conn is None:
            conn_id = self._by_remote.get((flow.transport, flow.remote))
            conn = self._connections.get(conn_id) if conn_id else None
        if conn is None or conn.transport is None or conn.transport.is_closing():
            # Phones behind NAT cannot be connected to; they reconnect and re-register themselves.
            log.info("x no open %s connection to %s:%s", flow.transport, *flow.remote)
            self.loop.call_soon(self._connection_missing, flow)
            return
        if conn.transport.get_write_buffer_size() > self.max_write_buffer:
            log.info("x %s is not reading; closing", conn.flow)
            conn.transport.abort()
            return
        conn.transport.write(data)

    def _connection_missing(self, flow: Flow) -> None:
        self.endpoint.connection_lost(flow, now=self.loop.time())
        self.pump()

    # -- idle connections ------------------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        interval = max(1.0, min(30.0, self.idle_timeout / 10))
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self._connections.values()):
            if conn.transport is not None and now - conn.last_activity > self.idle_timeout:
                log.info("- closing idle %s connection %s", conn.kind, conn.flow)
                if conn.transport.is_closing():
                    # the last sweep's close still waits to flush to a peer that reads nothing
                    conn.transport.abort()
                else:
                    conn.transport.close()
        self._schedule_sweep()

    def drop_source(self, host: str) -> None:
        """Close every stream connection from `host` (a banned source: guard.py)."""
        for conn in list(self._connections.values()):
            if conn.flow is not None and conn.flow.remote[0] == host and conn.transport is not None:
                log.info("- closing %s connection %s of a banned source", conn.kind, conn.flow)
                conn.transport.abort()

    def connection_count(self) -> int:
        return len(self._connections)
