"""Call records: one SQL row per call, for reporting outside Temporal's history.

A record keeps what reporting needs in clear (ids, direction, script, status, state, outcome,
times) and the personal part sealed with Slot's payload keys: the transcript (the caller's
words, the lead's name in the agent's lines), which `slot replay script` re-runs once Temporal
no longer holds the call, and the slots (the lead's name, the caller's answers). The lead's
phone number is not kept. SQL here is blocking, so the activity is a plain function run on the
worker's thread pool.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Field, Session, SQLModel, create_engine
from temporalio import activity

from activities.sales_records import BookingRow
from slot.database import ensure_schema
from workflows.messages import CallSnapshot, Direction
from workflows.script import Outcome


class Sealer(Protocol):
    """Encrypts a personal field at rest (Slot's payload keyring); clear old values open as is."""

    def seal_text(self, text: str) -> str: ...

    def open_text(self, text: str) -> str: ...


class CallRecord(SQLModel, table=True):
    """`transcript_json` and `slots_json` are JSON sealed by a `Sealer`."""

    __tablename__ = "call_records"

    call_id: str = Field(primary_key=True)
    direction: str
    script_name: str
    status: str
    outcome: str | None = None
    state: str
    transcript_json: str
    slots_json: str
    follow_up_of: str | None = None
    follow_up_call_id: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    campaign_id: str | None = Field(default=None, index=True)


class SaveCallRecord(BaseModel):
    """What the workflow knows about a call at the moment it saves it."""

    snapshot: CallSnapshot
    direction: Direction
    script_name: str
    follow_up_of: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    campaign_id: str | None = None


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


def _sqlite_pragmas(connection: Any, _record: object) -> None:
    """Each SQLite connection synced at checkpoints rather than at every commit (as the Temporal
    dev server's store: a killed process loses nothing, only a power cut could lose the last
    records), and a writer waits for another rather than failing. The file's write-ahead-log mode
    is set once, with its schema (`slot.database.ensure_schema`)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class CheckedEngine:
    """Slot's database engine, opened on first use with its schema checked (an SQLite file
    upgraded), once however many activity threads ask at the same time."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def get(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = make_engine(self.database_url)
                ensure_schema(engine, self.database_url)
                self._engine = engine
            return self._engine

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


class RecordsActivities:
    """Owns the database engine; the schema is checked (an SQLite file upgraded) on first use."""

    def __init__(self, database_url: str, sealer: Sealer) -> None:
        self.database_url = database_url
        self.sealer = sealer
        self._database = CheckedEngine(database_url)

    @property
    def engine(self) -> Engine:
        return self._database.get()

    @activity.defn(name="save_call_record")
    def save_call_record(self, request: SaveCallRecord) -> None:
        """Insert or update the call's row; saving twice (a retry, a follow-up) is harmless.

        A long call saves itself before each new run, which carries only the transcript's last
        lines: the row keeps the lines before `snapshot.earlier_lines` and takes the rest from
        the snapshot, so it always holds the whole transcript."""
        snapshot = request.snapshot
        with Session(self.engine) as session:
            lines = [e.model_dump(mode="json") for e in snapshot.transcript]
            if snapshot.earlier_lines:
                lines = self._earlier_lines(session, snapshot) + lines
            session.merge(self._record(request, lines))
            if snapshot.outcome is Outcome.BOOKED:
                session.merge(self._booking(request))
            session.commit()

    def _earlier_lines(self, session: Session, snapshot: CallSnapshot) -> list[dict[str, object]]:
        saved = session.get(CallRecord, snapshot.call_id)
        earlier: list[dict[str, object]] = (
            json.loads(self.sealer.open_text(saved.transcript_json)) if saved else []
        )
        if len(earlier) < snapshot.earlier_lines:
            raise ValueError(
                f"call {snapshot.call_id}: its record holds {len(earlier)} transcript lines, "
                f"not the {snapshot.earlier_lines} said before this run"
            )
        return earlier[: snapshot.earlier_lines]

    def _record(self, request: SaveCallRecord, transcript: list[dict[str, object]]) -> CallRecord:
        snapshot = request.snapshot
        return CallRecord(
            call_id=snapshot.call_id,
            direction=request.direction.value,
            script_name=request.script_name,
            status=snapshot.status.value,
            outcome=snapshot.outcome.value if snapshot.outcome else None,
            state=snapshot.state,
            transcript_json=self.sealer.seal_text(json.dumps(transcript)),
            slots_json=self.sealer.seal_text(json.dumps(snapshot.slots)),
            follow_up_of=request.follow_up_of,
            follow_up_call_id=snapshot.follow_up_call_id,
            started_at=request.started_at,
            ended_at=request.ended_at,
            campaign_id=request.campaign_id,
        )

    def _booking(self, request: SaveCallRecord) -> BookingRow:
        return BookingRow(
            call_id=request.snapshot.call_id,
            campaign_id=request.campaign_id,
            script_name=request.script_name,
            slots_sealed=self.sealer.seal_text(json.dumps(request.snapshot.slots)),
            booked_at=request.ended_at or request.started_at,
        )

    def close(self) -> None:
        self._database.dispose()
