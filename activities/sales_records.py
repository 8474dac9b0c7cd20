"""What a sales team reads back besides the calls: campaigns, their leads, and bookings.

A campaign row is what the API was asked to run (its options as JSON, the workflow holds the
live state); its leads are the rows an upload kept, the lead's name and phone sealed with the
payload keys like the call records' personal fields. A booking is written with the call record
of a call that ended booked, so "what did we book this week" is one query.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class CampaignRow(SQLModel, table=True):
    """`status`: `draft` until started, then `started` (the workflow has the rest)."""

    __tablename__ = "campaigns"

    campaign_id: str = Field(primary_key=True)
    script_name: str
    status: str
    options_json: str
    created_at: datetime
    started_at: datetime | None = None


class LeadRow(SQLModel, table=True):
    """One lead of a campaign; `name_sealed` and `phone_sealed` are sealed by a `Sealer`."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("campaign_id", "lead_id"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.campaign_id", index=True)
    lead_id: str
    name_sealed: str
    phone_sealed: str
    time_zone: str
    added_at: datetime


class BookingRow(SQLModel, table=True):
    """A call that ended booked; `slots_sealed` holds what was agreed (sealed)."""

    __tablename__ = "bookings"

    call_id: str = Field(primary_key=True)
    campaign_id: str | None = Field(default=None, index=True)
    script_name: str
    slots_sealed: str
    booked_at: datetime
