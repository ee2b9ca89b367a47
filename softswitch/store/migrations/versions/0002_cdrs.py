"""Call detail records: one row per call and one per leg.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cdrs",
        sa.Column("call_id", sa.String(32), nullable=False),
        sa.Column("sip_call_id", sa.Text(), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("caller_name", sa.Text(), nullable=True),
        sa.Column("caller_user", sa.String(64), nullable=True),
        sa.Column("trunk", sa.String(64), nullable=True),
        sa.Column("called", sa.String(255), nullable=False),
        sa.Column("route", sa.String(128), nullable=True),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("hangup_cause", sa.String(64), nullable=False),
        sa.Column("hangup_by", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("codec", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_cdrs")),
    )
    op.create_index("ix_cdrs_started_at", "cdrs", ["started_at"])
    op.create_index("ix_cdrs_agent", "cdrs", ["agent"])
    op.create_index("ix_cdrs_queue", "cdrs", ["queue"])
    op.create_table(
        "cdr_legs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(32), nullable=False),
        sa.Column("leg", sa.String(1), nullable=False),
        sa.Column("peer", sa.String(255), nullable=False),
        sa.Column("sip_call_id", sa.Text(), nullable=False),
        sa.Column("remote", sa.String(300), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("codec", sa.String(32), nullable=True),
        sa.Column("rx_packets", sa.Integer(), nullable=False),
        sa.Column("rx_lost", sa.Integer(), nullable=False),
        sa.Column("rx_jitter_ms", sa.Float(), nullable=False),
        sa.Column("tx_packets", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdr_legs")),
    )
    op.create_index("ix_cdr_legs_call_id", "cdr_legs", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_cdr_legs_call_id", table_name="cdr_legs")
    op.drop_table("cdr_legs")
    op.drop_index("ix_cdrs_queue", table_name="cdrs")
    op.drop_index("ix_cdrs_agent", table_name="cdrs")
    op.drop_index("ix_cdrs_started_at", table_name="cdrs")
    op.drop_table("cdrs")
