"""Reads a campaign's stored leads a page at a time, so a campaign's workflow input holds a
cursor instead of every lead (Temporal caps a payload at 2 MB: about 10,000 leads inline).

The leads table seals each lead's name and phone; they are opened here, on the worker, and
travel to the workflow encrypted by the payload codec like any other input. Blocking SQL, so
the activity is a plain function run on the worker's thread pool.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from activities.records import CheckedEngine, Sealer
from activities.sales_records import LeadRow
from workflows.campaign_plan import CampaignLead, LeadPage, NextLeads


class LeadPages:
    """The `leads` table of Slot's database; the schema is checked on first use."""

    def __init__(self, database_url: str, sealer: Sealer) -> None:
        self.database_url = database_url
        self.sealer = sealer
        self._database = CheckedEngine(database_url)

    @property
    def engine(self) -> Engine:
        return self._database.get()

    @activity.defn(name="next_leads")
    def next_leads(self, request: NextLeads) -> LeadPage:
        """Up to `limit` leads of the campaign after row id `after`, in upload order."""
        query = (
            select(LeadRow)
            .where(LeadRow.campaign_id == request.campaign_id, col(LeadRow.id) > request.after)
            .order_by(col(LeadRow.id))
            .limit(request.limit)
        )
        with Session(self.engine) as session:
            rows = session.exec(query).all()
        leads = [
            CampaignLead(
                lead_id=row.lead_id,
                name=self.sealer.open_text(row.name_sealed),
                phone=self.sealer.open_text(row.phone_sealed),
                time_zone=row.time_zone,
            )
            for row in rows
        ]
        last = rows[-1].id if rows else request.after
        assert last is not None
        return LeadPage(leads=leads, last=last)

    def close(self) -> None:
        self._database.dispose()
