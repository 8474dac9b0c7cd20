"""Campaigns, leads and bookings; call records name their campaign.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("call_id", AutoString(), nullable=False),
        sa.Column("campaign_id", AutoString(), nullable=True),
        sa.Column("script_name", AutoString(), nullable=False),
        sa.Column("slots_sealed", AutoString(), nullable=False),
        sa.Column("booked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("call_id"),
    )
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bookings_campaign_id"), ["campaign_id"], unique=False)

    op.create_table(
        "campaigns",
        sa.Column("campaign_id", AutoString(), nullable=False),
        sa.Column("script_name", AutoString(), nullable=False),
        sa.Column("status", AutoString(), nullable=False),
        sa.Column("options_json", AutoString(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("campaign_id"),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", AutoString(), nullable=False),
        sa.Column("lead_id", AutoString(), nullable=False),
        sa.Column("name_sealed", AutoString(), nullable=False),
        sa.Column("phone_sealed", AutoString(), nullable=False),
        sa.Column("time_zone", AutoString(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.campaign_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "lead_id"),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_leads_campaign_id"), ["campaign_id"], unique=False)

    with op.batch_alter_table("call_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("campaign_id", AutoString(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_call_records_campaign_id"), ["campaign_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("call_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_records_campaign_id"))
        batch_op.drop_column("campaign_id")

    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leads_campaign_id"))

    op.drop_table("leads")
    op.drop_table("campaigns")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bookings_campaign_id"))

    op.drop_table("bookings")
