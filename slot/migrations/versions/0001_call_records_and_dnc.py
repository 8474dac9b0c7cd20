"""Call records and the do-not-call list, as `create_all` made them before migrations.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TEXT = AutoString
WHEN = UTCDateTime


def upgrade() -> None:
    op.create_table(
        "call_records",
        sa.Column("call_id", TEXT(), nullable=False),
        sa.Column("direction", TEXT(), nullable=False),
        sa.Column("script_name", TEXT(), nullable=False),
        sa.Column("status", TEXT(), nullable=False),
        sa.Column("outcome", TEXT(), nullable=True),
        sa.Column("state", TEXT(), nullable=False),
        sa.Column("transcript_json", TEXT(), nullable=False),
        sa.Column("slots_json", TEXT(), nullable=False),
        sa.Column("follow_up_of", TEXT(), nullable=True),
        sa.Column("follow_up_call_id", TEXT(), nullable=True),
        sa.Column("started_at", WHEN(), nullable=False),
        sa.Column("ended_at", WHEN(), nullable=True),
        sa.PrimaryKeyConstraint("call_id"),
    )
    op.create_table(
        "dnc",
        sa.Column("phone", TEXT(), nullable=False),
        sa.Column("reason", TEXT(), nullable=False),
        sa.Column("call_id", TEXT(), nullable=True),
        sa.Column("added_at", WHEN(), nullable=False),
        sa.PrimaryKeyConstraint("phone"),
    )


def downgrade() -> None:
    op.drop_table("dnc")
    op.drop_table("call_records")
