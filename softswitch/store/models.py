"""SQLAlchemy 2 models: the durable tables.

Each table has a migration in `migrations/versions/`; a new table means a new model here and a new
revision there (`alembic revision` with `script_location = softswitch/store/migrations`, or written by
hand like the first one). Times are floats in UNIX epoch seconds throughout; ids are integers.
The store takes plain records (`records.py`) and never imports the cores.
"""

from __future__ import annotations

from sqlalchemy import JSON, Float, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["AgentStateRow", "Base", "Binding", "Cdr", "CdrLeg", "Meta", "QueueEventRow"]

# Stable constraint names, so later migrations can refer to (and SQLite batch mode can rebuild) them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Meta(Base):
    """Small key/value facts about this database (for example when it was created)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Binding(Base):
    """A registered contact: the durable copy of the location service (RFC 3261 §10.3)."""

    __tablename__ = "bindings"
    __table_args__ = (Index("ix_bindings_aor", "aor"), Index("ix_bindings_expires_at", "expires_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aor: Mapped[str] = mapped_column(String(255))
    contact: Mapped[str] = mapped_column(Text)
    instance_id: Mapped[str | None] = mapped_column(Text)
    reg_id: Mapped[int | None] = mapped_column(Integer)
    q: Mapped[float] = mapped_column(Float, default=1.0)
    expires_at: Mapped[float] = mapped_column(Float)
    call_id: Mapped[str] = mapped_column(Text)
    cseq: Mapped[int] = mapped_column(Integer)
    user_agent: Mapped[str | None] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(8))
    source_host: Mapped[str] = mapped_column(String(255))
    source_port: Mapped[int] = mapped_column(Integer)
    local_host: Mapped[str] = mapped_column(String(255))
    local_port: Mapped[int] = mapped_column(Integer)
    path: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Cdr(Base):
    """A call detail record: one row per call (records.CallRecord)."""

    __tablename__ = "cdrs"
    __table_args__ = (
        Index("ix_cdrs_started_at", "started_at"),
        Index("ix_cdrs_agent", "agent"),
        Index("ix_cdrs_queue", "queue"),
    )

    call_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(Text)
    caller: Mapped[str] = mapped_column(String(255))
    caller_name: Mapped[str | None] = mapped_column(Text)
    caller_user: Mapped[str | None] = mapped_column(String(64))
    trunk: Mapped[str | None] = mapped_column(String(64))
    called: Mapped[str] = mapped_column(String(255))
    route: Mapped[str | None] = mapped_column(String(128))
    agent: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    disposition: Mapped[str] = mapped_column(String(16))
    hangup_cause: Mapped[str] = mapped_column(String(64))
    hangup_by: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    codec: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class CdrLeg(Base):
    """One leg of a call: the caller's, or one attempt to reach a callee (records.LegRecord)."""

    __tablename__ = "cdr_legs"
    __table_args__ = (Index("ix_cdr_legs_call_id", "call_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(32))
    leg: Mapped[str] = mapped_column(String(1))
    peer: Mapped[str] = mapped_column(String(255))
    sip_call_id: Mapped[str] = mapped_column(Text)
    remote: Mapped[str] = mapped_column(String(300))
    transport: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    status: Mapped[int | None] = mapped_column(Integer)
    codec: Mapped[str | None] = mapped_column(String(32))
    rx_packets: Mapped[int] = mapped_column(Integer, default=0)
    rx_lost: Mapped[int] = mapped_column(Integer, default=0)
    rx_jitter_ms: Mapped[float] = mapped_column(Float, default=0.0)
    tx_packets: Mapped[int] = mapped_column(Integer, default=0)


class QueueEventRow(Base):
    """One queue event (records.QueueEventRecord): the ACD's queue_log. `id` keeps the order of events
    written at the same instant (enter, offer and connect can share a timestamp)."""

    __tablename__ = "queue_events"
    __table_args__ = (
        Index("ix_queue_events_at", "at"),
        Index("ix_queue_events_queue_at", "queue", "at"),
        Index("ix_queue_events_call", "call"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str | None] = mapped_column(String(64))
    call: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int | None] = mapped_column(Integer)
    wait: Mapped[float | None] = mapped_column(Float)
    duration: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")


class AgentStateRow(Base):
    """One agent state change (records.AgentStateRecord): the agent state log."""

    __tablename__ = "agent_states"
    __table_args__ = (
        Index("ix_agent_states_at", "at"),
        Index("ix_agent_states_agent_at", "agent", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    agent: Mapped[str] = mapped_column(String(64))
    old: Mapped[str] = mapped_column(String(16))
    new: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
