"""Call records (activities/records.py) on SQLite, as `slot dev` keeps them, and on PostgreSQL,
as production does (docker-compose.yml).

PostgreSQL is the machine's own server, a fresh schema per test (tests/integration/databases.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from activities.records import (
    CallRecord,
    CheckedEngine,
    RecordsActivities,
    SaveCallRecord,
    make_engine,
)
from activities.sales_records import BookingRow
from slot.database import upgrade
from slot.payload_codec import Keyring
from slot.playbooks import load_playbook
from slot.settings import get_settings
from slot.stored_calls import calls_from_records
from tests.integration.databases import BACKENDS, blank_database
from workflows.messages import (
    CallSnapshot,
    CallStatus,
    Direction,
    TranscriptEntry,
)
from workflows.script import Outcome

KEYRING = Keyring.parse(Keyring.new_entry("records-test"))
"""Records seal their personal fields; the tests read them back with the same keys."""


@pytest.fixture(params=BACKENDS)
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for call records, on each backend in turn, migrated as `slot db upgrade`
    does (a server database is never migrated by the worker itself)."""
    for url in blank_database(request.param, tmp_path, "records"):
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


def snapshot(call_id: str, status: CallStatus, outcome: Outcome | None) -> CallSnapshot:
    return CallSnapshot(
        call_id=call_id,
        status=status,
        state="booked" if outcome else "qualify",
        outcome=outcome,
        slots={"lead_name": "Jordan", "monthly_bill": "150"},
        transcript=[
            TranscriptEntry(speaker="agent", text="Hi, is this Jordan?", seq=0),
            TranscriptEntry(speaker="caller", text="Yes, speaking. Café au lait?", seq=1),
        ],
        reprompts=0,
    )


def save(
    records: RecordsActivities,
    call_id: str,
    started_at: datetime,
    *,
    ended_at: datetime | None = None,
    outcome: Outcome | None = None,
) -> None:
    status = CallStatus.COMPLETED if ended_at else CallStatus.IN_PROGRESS
    records.save_call_record(
        SaveCallRecord(
            snapshot=snapshot(call_id, status, outcome),
            direction=Direction.INBOUND,
            script_name="solar_survey",
            started_at=started_at,
            ended_at=ended_at,
        )
    )


def read(records_url: str, call_id: str) -> list[CallRecord]:
    records = RecordsActivities(records_url, KEYRING)
    try:
        with Session(records.engine) as session:
            return list(session.exec(select(CallRecord).where(CallRecord.call_id == call_id)))
    finally:
        records.close()


def test_a_record_is_saved_then_updated_in_its_one_row(records_url: str) -> None:
    records = RecordsActivities(records_url, KEYRING)
    started = datetime(2026, 3, 2, 14, 30, 5, 250000, tzinfo=UTC)
    ended = started + timedelta(minutes=3, seconds=12)
    try:
        save(records, "call-records-1", started)
        save(records, "call-records-1", started, ended_at=ended, outcome=Outcome.BOOKED)
        save(records, "call-records-1", started, ended_at=ended, outcome=Outcome.BOOKED)
    finally:
        records.close()

    (row,) = read(records_url, "call-records-1")
    assert row.status == CallStatus.COMPLETED.value and row.outcome == "booked"
    assert row.started_at == started, "the call's start is not the instant saved"
    assert row.ended_at == ended
    assert [entry["text"] for entry in json.loads(KEYRING.open_text(row.transcript_json))][1] == (
        "Yes, speaking. Café au lait?"
    )
    assert json.loads(KEYRING.open_text(row.slots_json))["monthly_bill"] == "150"
    records = RecordsActivities(records_url, KEYRING)
    try:
        with Session(records.engine) as session:
            (booking,) = session.exec(select(BookingRow)).all()
    finally:
        records.close()
    assert booking.call_id == "call-records-1" and booking.booked_at == ended
    assert json.loads(KEYRING.open_text(booking.slots_sealed))["monthly_bill"] == "150"


def test_stored_calls_are_read_back_from_the_records_since_a_moment(records_url: str) -> None:
    records = RecordsActivities(records_url, KEYRING)
    morning = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    try:
        save(records, "call-early", morning, ended_at=morning + timedelta(minutes=2))
        save(records, "call-late", morning + timedelta(hours=3), outcome=Outcome.BOOKED)
    finally:
        records.close()
    playbook = load_playbook("solar_survey", get_settings().playbooks_dir)

    since = morning + timedelta(hours=1)
    found = calls_from_records(records_url, since, playbook, skip=set(), keyring=KEYRING)
    assert [call.call_id for call in found] == ["call-late"]
    assert found[0].outcome == "booked"
    assert [turn.text for turn in found[0].turns if turn.kind == "speech"] == [
        "Yes, speaking. Café au lait?"
    ]
    everything = calls_from_records(
        records_url, morning, playbook, skip={"call-late"}, keyring=KEYRING
    )
    assert [call.call_id for call in everything] == ["call-early"]


def test_an_sqlite_records_file_is_opened_in_wal_mode_and_synced_at_checkpoints(
    tmp_path: Path,
) -> None:
    """As a worker opens it: the schema checked (which puts a new file in WAL mode), then each
    connection's own settings."""
    url = f"sqlite:///{tmp_path / 'slot.db'}"
    engine = CheckedEngine(url).get()
    with engine.connect() as connection:
        pragmas = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    engine.dispose()
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000}
