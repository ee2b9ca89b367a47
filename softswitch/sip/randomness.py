"""Cryptographically random identifiers without a system call each.

Tags, branches and Call-IDs must be "cryptographically random with at least 32 bits of randomness"
(RFC 3261 §19.3, §8.1.1.7), and digest nonces carry random bytes too. `os.urandom` per identifier is a
system call that releases the GIL; on a busy switch the event loop then waits for the store writer thread
to hand it back. `RandomPool` reads the kernel's CSPRNG in 64 KiB blocks and hands out slices: the same
randomness, one system call per few thousand identifiers.
"""

from __future__ import annotations

import os

__all__ = ["RandomPool", "random_bytes", "random_hex"]


class RandomPool:
    """Slices of blocks from `os.urandom`. Not thread-safe: use it from the event loop thread."""

    def __init__(self, block: int = 65536) -> None:
        self._block = block
        self._buffer = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        if n > self._block:
            return os.urandom(n)
        pos = self._pos
        if pos + n > len(self._buffer):
            self._buffer = os.urandom(self._block)
            pos = 0
        self._pos = pos + n
        return self._buffer[pos : pos + n]


_POOL = RandomPool()


def random_bytes(n: int) -> bytes:
    return _POOL.take(n)


def random_hex(nbytes: int) -> str:
    return _POOL.take(nbytes).hex()
