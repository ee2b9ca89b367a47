"""The asyncio edge on real loopback sockets: port allocation, relaying, NAT latching, RTCP, timeouts, MoH."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from softswitch.media.player import LoopingPlayer
from softswitch.media.relay import Latched, Leg, MediaTimeout, RelayEvent, RelaySession, RemoteMedia
from softswitch.media.rtcp import ReceiverReport, parse_compound
from softswitch.media.rtp import RtpPacket
from softswitch.media.sdp import RtpCodec
from softswitch.media.ticker import Phase, Ticker
from softswitch.media.udp import MediaSockets, PortsExhausted, RelayRunner, RtpPortAllocator

HOST = "127.0.0.1"
PCMU_ONLY = (RtpCodec(0, "PCMU", 8000),)
TIMEOUT = 5.0


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 20))


class Phone(asyncio.DatagramProtocol):
    """A UDP socket that queues what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, dest)

    async def expect(self) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.received.get(), TIMEOUT)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def phone() -> Phone:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(Phone, local_addr=(HOST, 0))
    return proto


def rtp(seq: int, ssrc: int, payload: bytes = b"\xff" * 160) -> bytes:
    return RtpPacket(0, seq, seq * 160, ssrc, payload).serialize()


# --- the allocator (pure) -------------------------------------------------------------------------


def test_allocator_hands_out_even_ports_with_rtcp_in_range() -> None:
    ports = RtpPortAllocator(20001, 20008)
    got = [ports.allocate(now=0.0) for _ in range(3)]
    assert got == [20002, 20004, 20006]  # 20008 has no 20009 inside the range
    with pytest.raises(PortsExhausted, match="all 3 RTP port pairs in 20001-20008"):
        ports.allocate(now=0.0)
    assert ports.in_use == 3 and ports.available == 0


def test_allocator_quarantines_released_ports_and_rotates() -> None:
    ports = RtpPortAllocator(20000, 20007, quarantine=10.0)
    a = ports.allocate(now=0.0)
    ports.release(a, now=1.0)
    ports.release(a, now=1.0)  # twice: ignored
    assert [ports.allocate(now=2.0) for _ in range(3)] == [20002, 20004, 20006]
    with pytest.raises(PortsExhausted):
        ports.allocate(now=10.9)  # 20000 is still in quarantine
    assert ports.allocate(now=11.0) == 20000


def test_allocator_from_config_text() -> None:
    assert RtpPortAllocator.from_range("20000-29999").capacity == 5000
    for bad in ("20000", "a-b", "30000-20000", "20000-20000"):
        with pytest.raises(ValueError):
            RtpPortAllocator.from_range(bad)


# --- relaying on loopback -------------------------------------------------------------------------


def test_relay_between_two_phones_with_nat_latching_and_rtcp() -> None:
    async def main() -> None:
        caller, agent = await phone(), await phone()
        events: list[RelayEvent] = []
        session = RelaySession(a_port=None, b_port=None)
        sockets = MediaSockets()
        runner = RelayRunner(session, sockets, on_event=events.append)
        allocator = RtpPortAllocator(42000, 42199)
        a_port = await runner.bind(Leg.A, host=HOST, allocator=allocator)
        b_port = await runner.bind(Leg.B, host=HOST, allocator=allocator)
        try:
            session.update(Leg.A, RemoteMedia(caller.address, None, PCMU_ONLY), now=0.0)
            # the agent's SDP names a private address that goes nowhere; its SIP came from 127.0.0.1
            private = RemoteMedia(("10.9.9.9", 4000), None, PCMU_ONLY, signalling_host=HOST)
            session.update(Leg.B, private, now=0.0)

            agent.send(rtp(1, 0xB), (HOST, b_port))  # the agent talks first: latched to its real socket
            caller.send(rtp(1, 0xA), (HOST, a_port))
            data, src = await agent.expect()
            assert RtpPacket.parse(data).ssrc == 0xA and src == (HOST, b_port)
            agent.send(rtp(2, 0xB), (HOST, b_port))
            for seq in (1, 2):  # the caller's SDP address is right, so it heard the agent from packet 1
                data, src = await caller.expect()
                got = RtpPacket.parse(data)
                assert (got.ssrc, got.sequence_number, src) == (0xB, seq, (HOST, a_port))
            assert Latched(Leg.B, agent.address, False, None, "preferred") in events

            # RTCP: both phones use one socket for RTP and RTCP (the caller says so with a=rtcp); the
            # agent's RTCP address behind NAT is learned from its first RTCP packet
            caller_rtcp = RemoteMedia(caller.address, caller.address, PCMU_ONLY)
            session.update(Leg.A, caller_rtcp, now=0.0)
            agent.send(ReceiverReport(0xB).serialize(), (HOST, b_port + 1))
            data, src = await caller.expect()
            assert parse_compound(data) == [ReceiverReport(0xB)] and src == (HOST, a_port + 1)
            caller.send(ReceiverReport(0xA).serialize(), (HOST, a_port + 1))
            data, src = await agent.expect()
            assert parse_compound(data) == [ReceiverReport(0xA)] and src == (HOST, b_port + 1)
            assert session.latched_rtcp(Leg.B) == agent.address
            assert sockets.unroutable == 0
        finally:
            runner.close()
            sockets.shutdown()
            caller.close()
            agent.close()
        assert allocator.in_use == 0

    run(main)


def test_media_timeout_reaches_the_event_callback() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()
        events: list[RelayEvent] = []

        def on_event(event: RelayEvent) -> None:
            events.append(event)
            if isinstance(event, MediaTimeout):
                fired.set()

        caller = await phone()
        session = RelaySession(a_port=None, b_port=None, rtp_timeout=0.2)
        sockets = MediaSockets()
        runner = RelayRunner(session, sockets, on_event=on_event)
        port = await runner.bind(Leg.A, host=HOST, allocator=RtpPortAllocator(42200, 42299))
        try:
            session.update(Leg.A, RemoteMedia(caller.address, None, PCMU_ONLY), now=loop.time())
            session.start(now=loop.time())
            runner.poke()
            caller.send(rtp(1, 0xA), (HOST, port))  # one packet, then the caller's phone vanishes
            await asyncio.wait_for(fired.wait(), TIMEOUT)
            (timeout,) = [e for e in events if isinstance(e, MediaTimeout)]
            assert timeout.leg is Leg.A and timeout.silent_for >= 0.2
        finally:
            runner.close()
            sockets.shutdown()
            caller.close()

    run(main)


def test_music_on_hold_through_the_ticker() -> None:
    async def main() -> None:
        caller = await phone()
        sockets = MediaSockets()
        session = RelaySession(a_port=None, b_port=None)
        runner = RelayRunner(session, sockets, on_event=lambda e: None)
        await runner.bind(Leg.A, host=HOST, allocator=RtpPortAllocator(42300, 42399))
        ticker = Ticker(sockets.write)
        try:
            session.update(Leg.A, RemoteMedia(caller.address, None, PCMU_ONLY), now=0.0)
            session.feed(Leg.A, LoopingPlayer(np.zeros(800, np.int16)))
            ticker.add(session, phase=Phase.SEND)
            ticker.start()
            packets = [RtpPacket.parse((await caller.expect())[0]) for _ in range(5)]
            assert [p.sequence_number - packets[0].sequence_number for p in packets] == [0, 1, 2, 3, 4]
            steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(packets)]
            # 160 per tick; a tick the clock had to skip (event loop stalled > 100 ms by a busy machine)
            # shows as a whole extra frame, never as a fraction of one
            assert all(step > 0 and step % 160 == 0 for step in steps)
            assert sum(steps) <= 160 * (4 + ticker.skipped_ticks)
            assert {len(p.payload) for p in packets} == {160}
        finally:
            ticker.stop()
            runner.close()
            sockets.shutdown()
            caller.close()

    run(main)
