"""Free loopback ports for one test.

Every helper process in the integration tests gets its own ports, chosen by asking the kernel for an
ephemeral port (bind to port 0) and releasing it just before the process binds it. There is a short race
between the release and the process's bind; callers that start a server retry with fresh ports when the
server reports that the address is in use (see `ManagedProcess` users). Clients (pjsua2, sipp's local
side) bind port 0 themselves where they can, so they never race.
"""

from __future__ import annotations

import socket

__all__ = ["free_port", "free_port_pair", "free_udp_range"]

LOOPBACK = "127.0.0.1"


def _bound(kind: int, port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        return None
    return sock


def free_port(kind: str = "udp+tcp") -> int:
    """Return a loopback port that is free for `kind`: "udp", "tcp" or "udp+tcp" (free for both).

    SIP servers listen on the same number for UDP and TCP, so the default asks for both.
    """
    if kind not in ("udp", "tcp", "udp+tcp"):
        raise ValueError(f"kind must be udp, tcp or udp+tcp, not {kind!r}")
    first = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    for _ in range(200):
        probe = _bound(first, 0)
        if probe is None:
            continue
        port = probe.getsockname()[1]
        if kind != "udp+tcp":
            probe.close()
            return port
        other = _bound(socket.SOCK_STREAM, port)
        probe.close()
        if other is not None:
            other.close()
            return port
    raise RuntimeError(f"no free loopback port for {kind} after 200 tries")


def free_port_pair() -> int:
    """Return an even UDP port `p` such that `p` and `p + 1` are both free (RTP + RTCP)."""
    for _ in range(200):
        port = free_port("udp")
        even = port - (port % 2)
        a = _bound(socket.SOCK_DGRAM, even)
        b = _bound(socket.SOCK_DGRAM, even + 1) if a is not None else None
        for sock in (a, b):
            if sock is not None:
                sock.close()
        if a is not None and b is not None:
            return even
    raise RuntimeError("no free even/odd UDP port pair on loopback after 200 tries")


def free_udp_range(size: int, *, low: int = 10000, high: int = 30000) -> tuple[int, int]:
    """Return `(first, last)` of `size` consecutive UDP ports in [low, high) that are free now.

    Used for a server's `rtp_ports`. The range sits below Linux's ephemeral range (32768-60999), so the
    kernel does not hand these ports to the clients in the same test. The starting point is random, so
    concurrent tests rarely pick the same range; a port taken later by someone else is skipped by the
    server's own allocator.
    """
    import random

    if size < 2 or size > high - low:
        raise ValueError(f"size must be in 2..{high - low}, not {size}")
    rng = random.Random()
    for _ in range(50):
        first = rng.randrange(low, high - size) & ~1
        held: list[socket.socket] = []
        ok = True
        for port in range(first, first + size):
            sock = _bound(socket.SOCK_DGRAM, port)
            if sock is None:
                ok = False
                break
            held.append(sock)
        for sock in held:
            sock.close()
        if ok:
            return first, first + size - 1
    raise RuntimeError(f"no free UDP range of {size} ports in {low}..{high} after 50 tries")
