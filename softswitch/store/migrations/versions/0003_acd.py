"""The ACD's logs: queue events (like Asterisk's queue_log) and agent state changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("call", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("wait", sa.Float(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_events")),
    )
    op.create_index("ix_queue_events_at", "queue_events", ["at"])
    op.create_index("ix_queue_events_queue_at", "queue_events", ["queue", "at"])
    op.create_index("ix_queue_events_call", "queue_events", ["call"])
    op.create_table(
        "agent_states",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("old", sa.String(16), nullable=False),
        sa.Column("new", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_states")),
    )
    op.create_index("ix_agent_states_at", "agent_states", ["at"])
    op.create_index("ix_agent_states_agent_at", "agent_states", ["agent", "at"])


def downgrade() -> None:
    op.drop_index("ix_agent_states_agent_at", table_name="agent_states")
    op.drop_index("ix_agent_states_at", table_name="agent_states")
    op.drop_table("agent_states")
    op.drop_index("ix_queue_events_call", table_name="queue_events")
    op.drop_index("ix_queue_events_queue_at", table_name="queue_events")
    op.drop_index("ix_queue_events_at", table_name="queue_events")
    op.drop_table("queue_events")
