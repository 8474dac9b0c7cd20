"""The API's reads and writes in Slot's database: campaigns and their leads, call records, the
do-not-call list. Blocking SQL, so the routes call it on a worker thread. Personal fields (a
lead's name and phone, a call's transcript and slots) are sealed and opened with the payload
keys here, and nowhere else in the API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from activities.campaign import DncEntry, DoNotCallList, normal_phone
from activities.records import CallRecord, Sealer
from activities.sales_records import CampaignRow, LeadRow
from workflows.campaign_plan import CampaignLead
from workflows.messages import TranscriptEntry


class CallSummary(BaseModel):
    call_id: str
    campaign_id: str | None
    direction: str
    script_name: str
    status: str
    state: str
    outcome: str | None
    started_at: datetime
    ended_at: datetime | None


class CallDetail(CallSummary):
    transcript: list[TranscriptEntry]
    slots: dict[str, str]
    follow_up_of: str | None
    follow_up_call_id: str | None
    recording_url: str | None


class Store:
    """One engine for the API process; `sealer` is Slot's keyring."""

    def __init__(self, engine: Engine, sealer: Sealer, dnc: DoNotCallList) -> None:
        self.engine = engine
        self.sealer = sealer
        self.dnc = dnc

    def _session(self) -> Session:
        """Rows stay readable after the session (the API answers with them)."""
        return Session(self.engine, expire_on_commit=False)

    def campaign(self, campaign_id: str) -> CampaignRow | None:
        with self._session() as session:
            return session.get(CampaignRow, campaign_id)

    def campaigns(self) -> list[CampaignRow]:
        with self._session() as session:
            query = select(CampaignRow).order_by(col(CampaignRow.created_at).desc())
            return list(session.exec(query))

    def add_campaign(self, row: CampaignRow) -> bool:
        """False if a campaign with that id exists already."""
        with self._session() as session:
            if session.get(CampaignRow, row.campaign_id) is not None:
                return False
            session.add(row)
            session.commit()
            return True

    def mark_started(self, campaign_id: str) -> None:
        with self._session() as session:
            row = session.get(CampaignRow, campaign_id)
            assert row is not None
            row.status = "started"
            row.started_at = datetime.now(UTC)
            session.add(row)
            session.commit()

    def leads(self, campaign_id: str) -> list[CampaignLead]:
        with self._session() as session:
            query = select(LeadRow).where(LeadRow.campaign_id == campaign_id)
            rows = session.exec(query.order_by(col(LeadRow.id))).all()
        return [
            CampaignLead(
                lead_id=row.lead_id,
                name=self.sealer.open_text(row.name_sealed),
                phone=self.sealer.open_text(row.phone_sealed),
                time_zone=row.time_zone,
            )
            for row in rows
        ]

    def lead_count(self, campaign_id: str) -> int:
        with self._session() as session:
            query = select(func.count()).select_from(LeadRow)
            return session.exec(query.where(LeadRow.campaign_id == campaign_id)).one()

    def add_leads(self, campaign_id: str, leads: list[CampaignLead]) -> None:
        now = datetime.now(UTC)
        with self._session() as session:
            for lead in leads:
                session.add(
                    LeadRow(
                        campaign_id=campaign_id,
                        lead_id=lead.lead_id,
                        name_sealed=self.sealer.seal_text(lead.name),
                        phone_sealed=self.sealer.seal_text(normal_phone(lead.phone)),
                        time_zone=lead.time_zone,
                        added_at=now,
                    )
                )
            session.commit()

    def calls(self, campaign_id: str | None, limit: int) -> list[CallSummary]:
        with self._session() as session:
            query = select(CallRecord)
            if campaign_id is not None:
                query = query.where(CallRecord.campaign_id == campaign_id)
            query = query.order_by(col(CallRecord.started_at).desc()).limit(limit)
            return [
                CallSummary.model_validate(row, from_attributes=True) for row in session.exec(query)
            ]

    def call(self, call_id: str, recording_url: str | None) -> CallDetail | None:
        with self._session() as session:
            row = session.get(CallRecord, call_id)
        if row is None:
            return None
        transcript = json.loads(self.sealer.open_text(row.transcript_json))
        return CallDetail(
            **CallSummary.model_validate(row, from_attributes=True).model_dump(),
            transcript=[TranscriptEntry.model_validate(entry) for entry in transcript],
            slots=json.loads(self.sealer.open_text(row.slots_json)),
            follow_up_of=row.follow_up_of,
            follow_up_call_id=row.follow_up_call_id,
            recording_url=recording_url,
        )

    def dnc_entry(self, phone: str) -> DncEntry | None:
        with self._session() as session:
            return session.get(DncEntry, normal_phone(phone))
