"""Flows: the path a message came in on, so that we can answer and later reach a phone over it.

A flow is (transport, our local address, the peer's address as seen on the wire, and for TCP/TLS the
connection). RFC 3581 (`rport`/`received`) makes a UDP phone behind NAT reachable at its public
address and port; RFC 5626 §5 makes the same point for connections: send requests to a phone over the
very connection it registered on. The flow table maps connection ids to live connections at the edge;
this module only names them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RELIABLE_TRANSPORTS", "Flow"]

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a message came from, or where to send one.

    transport: "udp", "tcp" or "tls" (lower case).
    remote: the peer's (host, port) as seen on the wire (after NAT).
    local: our listener's (host, port) the message arrived on / should leave from.
    conn_id: for TCP/TLS, the edge's id of the connection (0 means "any connection to `remote`,
             open one if needed"); always 0 for UDP.
    """

    transport: str
    remote: tuple[str, int]
    local: tuple[str, int]
    conn_id: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    @property
    def via_transport(self) -> str:
        """The transport token for a Via header (`UDP`, `TCP`, `TLS`)."""
        return self.transport.upper()

    def __str__(self) -> str:
        host, port = self.remote
        host = f"[{host}]" if ":" in host else host
        suffix = f"#{self.conn_id}" if self.conn_id else ""
        return f"{self.transport}:{host}:{port}{suffix}"
