"""The campaign's activities: the shared dialling pace and the do-not-call list.

Pacing is one token bucket for every campaign and worker, behind `DialLimiter` so the
in-process bucket can give way to a shared one (Redis) without touching the workflow. The
limiter answers on the workflow's clock: it hands out the next free slot and the workflow waits
for it with a durable timer, so no activity sleeps and a time-skipping test skips the wait.
Each campaign's changes go to its live stream (`slot.live_events`: Redis Streams, or in-process)
for `slot watch --campaign`.
The do-not-call list is the records database's `dnc` table (SQLModel); SQL here is blocking, so
those activities are plain functions run on the worker's thread pool.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel
from temporalio import activity

from activities.records import CheckedEngine
from slot.live_events import LiveEvents, LocalLiveEvents, campaign_stream
from workflows.campaign_plan import DncAdd, DncCheck, PublishCampaignEvents, ReserveDial


class DialLimiter(Protocol):
    """Hands out dialling slots at no more than a rate, across everyone sharing it."""

    def reserve(self, at: datetime, calls_per_second: float) -> datetime: ...


class LocalDialLimiter:
    """The in-process limiter: slots `1 / rate` apart, never earlier than asked."""

    def __init__(self) -> None:
        self._next: datetime | None = None
        self._lock = threading.Lock()

    def reserve(self, at: datetime, calls_per_second: float) -> datetime:
        with self._lock:
            slot = at if self._next is None or self._next < at else self._next
            self._next = slot + timedelta(seconds=1.0 / calls_per_second)
            return slot


class DncEntry(SQLModel, table=True):
    """A number never to be called again; `phone` is kept as dialled, digits and a leading +."""

    __tablename__ = "dnc"

    phone: str = Field(primary_key=True)
    reason: str
    call_id: str | None = None
    added_at: datetime


def normal_phone(phone: str) -> str:
    """The form the DNC list keys numbers by: `+15551234567` for `+1 (555) 123-4567`."""
    digits = re.sub(r"[^\d]", "", phone)
    return f"+{digits}" if phone.strip().startswith("+") else digits


class DoNotCallList:
    """The `dnc` table; the schema is checked (an SQLite file upgraded) on first use."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._database = CheckedEngine(database_url)

    @property
    def engine(self) -> Engine:
        return self._database.get()

    def contains(self, phone: str) -> bool:
        with Session(self.engine) as session:
            return session.get(DncEntry, normal_phone(phone)) is not None

    def add(self, phone: str, reason: str, call_id: str | None = None) -> None:
        """Add (or keep) a number; adding it twice is harmless."""
        with Session(self.engine) as session:
            key = normal_phone(phone)
            if session.get(DncEntry, key) is None:
                added_at = datetime.now(UTC)
                session.add(DncEntry(phone=key, reason=reason, call_id=call_id, added_at=added_at))
                session.commit()

    def remove(self, phone: str) -> None:
        with Session(self.engine) as session:
            entry = session.get(DncEntry, normal_phone(phone))
            if entry is not None:
                session.delete(entry)
                session.commit()

    def close(self) -> None:
        self._database.dispose()


class CampaignActivities:
    """Bound to the worker's limiter and DNC list, so tests and the worker pass their own."""

    def __init__(
        self, limiter: DialLimiter, dnc: DoNotCallList, streams: LiveEvents | None = None
    ) -> None:
        self.limiter = limiter
        self.dnc = dnc
        self.streams = streams or LocalLiveEvents()

    @activity.defn(name="reserve_dial")
    def reserve_dial(self, request: ReserveDial) -> datetime:
        """The moment the campaign may dial (no earlier than `request.at`)."""
        return self.limiter.reserve(request.at, request.calls_per_second)

    @activity.defn(name="is_do_not_call")
    def is_do_not_call(self, request: DncCheck) -> bool:
        return self.dnc.contains(request.phone)

    @activity.defn(name="add_do_not_call")
    def add_do_not_call(self, request: DncAdd) -> None:
        self.dnc.add(request.phone, request.reason, request.call_id)

    @activity.defn(name="publish_campaign_events")
    async def publish_campaign_events(self, request: PublishCampaignEvents) -> None:
        """Append the campaign's changes to its live stream, in order (never raises)."""
        stream = campaign_stream(request.campaign_id)
        for event in request.events:
            await self.streams.append(stream, event.model_dump(mode="json"))
