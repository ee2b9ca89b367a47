"""Plain records the cores hand to the store, so the store never imports the SIP core or the ACD engine.

Times here are wall-clock UNIX epoch seconds (they must mean the same thing after a restart); the cores
keep monotonic times and convert at the edge (`app.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BindingRow"]


@dataclass(frozen=True, slots=True)
class BindingRow:
    """One registered contact of an address of record (RFC 3261 §10.3; RFC 5626 instance/reg-id)."""

    aor: str  # sip:alice@cc.example.com
    contact: str  # the Contact URI as the phone sent it
    expires_at: float  # UNIX epoch seconds
    call_id: str
    cseq: int
    transport: str  # udp | tcp | tls | ws | wss: the flow the REGISTER came over
    source_host: str  # where it came from (after NAT): how we reach the phone
    source_port: int
    local_host: str  # our socket it arrived on
    local_port: int
    q: float = 1.0
    instance_id: str | None = None  # +sip.instance (RFC 5626 §4.1)
    reg_id: int | None = None  # reg-id (RFC 5626 §4.2)
    user_agent: str | None = None
    path: tuple[str, ...] = ()  # Path header values (RFC 3327), in order
