"""Call records keep what reporting needs in clear and the personal part sealed: no caller word,
lead name or phone number readable in the database, yet `slot replay script` reads them back."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from activities.records import RecordsActivities, SaveCallRecord
from slot.payload_codec import Keyring
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT
from slot.stored_calls import calls_from_records
from workflows.messages import CallSnapshot, CallStatus, Direction, TranscriptEntry
from workflows.script import Outcome

CALLER_WORDS = "Call me on 555 867 5309, I live at 12 Elm Street"
PERSONAL = ("Jordan Quinlan", "867 5309", "Elm Street", "+15558675309", "Thursday")


def snapshot() -> CallSnapshot:
    return CallSnapshot(
        call_id="call-records-1",
        status=CallStatus.ENDED,
        state="booked",
        outcome=Outcome.BOOKED,
        slots={"lead_name": "Jordan Quinlan", "survey_day": "Thursday"},
        transcript=[
            TranscriptEntry(speaker="agent", text="Hi, is this Jordan Quinlan?", state="greeting"),
            TranscriptEntry(speaker="caller", text=CALLER_WORDS, seq=1),
        ],
        reprompts=0,
    )


def test_a_record_keeps_reporting_fields_in_clear_and_personal_ones_sealed(
    tmp_path: Path,
) -> None:
    keyring = Keyring.parse(Keyring.new_entry("k1"))
    database = tmp_path / "records.db"
    records = RecordsActivities(f"sqlite:///{database}", keyring)
    started = datetime.now(UTC)
    records.save_call_record(
        SaveCallRecord(
            snapshot=snapshot(),
            direction=Direction.INBOUND,
            script_name="solar_survey",
            started_at=started,
            ended_at=started,
        )
    )
    records.close()

    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        row = dict(db.execute("SELECT * FROM call_records").fetchone())
    assert (row["status"], row["outcome"], row["state"]) == ("ended", "booked", "booked")
    assert (row["direction"], row["script_name"]) == ("inbound", "solar_survey")
    stored = " ".join(str(value) for value in row.values())
    raw = database.read_bytes()
    for personal in PERSONAL:
        assert personal not in stored, personal
        assert personal.encode() not in raw, personal

    playbook = load_playbook("solar_survey", REPO_ROOT / "playbooks")
    (call,) = calls_from_records(f"sqlite:///{database}", started, playbook, set(), keyring)
    assert call.call.lead.name == "Jordan Quinlan"
    assert call.call.lead.phone == ""
    assert [t.text for t in call.turns if t.kind == "speech"] == [CALLER_WORDS]
    assert call.outcome == "booked"
