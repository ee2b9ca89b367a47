"""Plain records the cores hand to the store, so the store never imports the SIP core or the ACD engine.

Times here are wall-clock UNIX epoch seconds (they must mean the same thing after a restart); the cores
keep monotonic times and convert at the edge (`app.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AgentStateRecord", "BindingRow", "CallRecord", "LegRecord", "QueueEventRecord"]


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
    created_at: float | None = None  # when the binding was first registered (epoch); None: now


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call through the switch (a CDR). Times are wall-clock epoch seconds."""

    call_id: str  # our id (the one `softswitch calls` shows)
    sip_call_id: str  # the caller leg's Call-ID
    caller: str  # the caller's number or user
    caller_name: str | None
    caller_user: str | None  # the authenticated agent/supervisor who called, if any
    trunk: str | None
    called: str  # the number dialled
    route: str | None  # "user:alice", "queue:billing-lv", ...
    agent: str | None  # who answered (agent or supervisor id)
    queue: str | None
    started_at: float
    answered_at: float | None
    ended_at: float
    disposition: str  # answered | no_answer | busy | declined | cancelled | failed | rejected
    hangup_cause: str  # bye, cancelled, media_timeout, ...
    hangup_by: str  # caller | callee | switch
    status: int | None  # the final SIP status the caller got when the call was not answered
    codec: str | None
    detail: str | None = None  # a sentence saying why, for media timeouts and failures


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One leg of a call: the caller's, or one attempt to reach a callee. Packet counts per direction:
    rx = what the switch received from this leg's phone, tx = what it sent to it."""

    call_id: str
    leg: str  # "a" (caller) or "b" (callee); failed fork attempts are "b" rows too
    peer: str  # caller number / agent id
    sip_call_id: str
    remote: str  # the phone's address as seen (after NAT)
    transport: str
    started_at: float
    answered_at: float | None
    ended_at: float
    status: int | None  # final SIP status of the leg's INVITE
    codec: str | None
    rx_packets: int = 0
    rx_lost: int = 0
    rx_jitter_ms: float = 0.0
    tx_packets: int = 0


@dataclass(frozen=True, slots=True)
class QueueEventRecord:
    """One row of the queue event table (the ACD's `QueueEvent`, like Asterisk's queue_log), wall time."""

    at: float  # UNIX epoch seconds
    kind: str  # enter, offer, ring_no_answer, connect, complete_agent, complete_caller, abandon, ...
    queue: str | None = None
    call: str | None = None
    agent: str | None = None
    position: int | None = None  # 1 = next in line
    wait: float | None = None  # seconds waited in this queue at the time of the event
    duration: float | None = None  # ring, talk or wrap-up time, by kind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AgentStateRecord:
    """One row of the agent state log (the ACD's `AgentStateChanged`), wall time; states by their value."""

    at: float  # UNIX epoch seconds
    agent: str
    old: str  # logged_out, available, offered, on_call, direct_call, wrap_up, paused, unreachable
    new: str
    reason: str = ""  # for paused: the pause reason code
