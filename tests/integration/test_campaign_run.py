"""`slot campaign run` as a user runs it, on a small list against a real dev stack it starts:
the simulator's callers by number (two personas, a line nobody answers, a busy one, a voicemail),
every lead ends in a final state, and the summary's numbers are those of the call records."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from activities.campaign import DoNotCallList
from activities.records import CallRecord, make_engine
from slot.devstack import settings_env
from slot.settings import REPO_ROOT, Settings
from tests.conftest import free_port
from tests.integration.test_end_to_end import stack_settings

pytestmark = pytest.mark.timeout(420)

LEADS = """lead_id,name,phone,time_zone,simulator
ben,Ben Ortiz,+15550140002,America/Chicago,personas/campaign/not_interested.yaml
gus,Gus Hale,+15550140007,Pacific/Honolulu,personas/campaign/stop_calling.yaml
dev,Dev Patel,+15550140004,America/Los_Angeles,no-answer
eli,Eli Grant,+15550140005,Europe/London,busy
fay,Fay Moore,+15550140006,Asia/Tokyo,voicemail
bad,No Zone,+15550140009,Mars/Olympus_Mons,busy
"""


def _count(summary: str, label: str) -> int:
    match = re.search(rf"\b{label} (\d+)", summary)
    assert match, f"{label!r} not in the summary:\n{summary}"
    return int(match.group(1))


def test_campaign_run_ends_every_lead_and_its_summary_matches_the_records(
    temporal_settings: Settings, tmp_path: Path
) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text(LEADS)
    settings = stack_settings(
        temporal_settings,
        tmp_path / "data",
        codec_port=free_port(),
        temporal_ui_port=free_port(),
        answer_timeout_s=60.0,
    )
    argv = ["campaign", "run", str(leads), "--script", "solar_survey", "--id", "camp-run"]
    argv += ["--days", "all", "--hours", "00:00-24:00", "--attempts", "2", "--retry-after", "2"]
    completed = subprocess.run(
        [sys.executable, "-m", "slot.cli", *argv],
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(settings), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "line 7: time_zone: Value error, unknown time zone 'Mars/Olympus_Mons'" in output
    assert "5 of 5 leads may be called now" in output
    summary = output.split("summary of camp-run", 1)[1]

    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        records = list(session.exec(select(CallRecord)))
    engine.dispose()
    by_lead: dict[str, list[CallRecord]] = {}
    for record in records:
        by_lead.setdefault(record.call_id.split("-")[2], []).append(record)

    assert sorted(by_lead) == ["ben", "dev", "eli", "fay", "gus"]
    assert all(r.status in ("ended", "completed", "no_answer") for r in records), records
    assert _count(summary, "leads") == _count(summary, "done") == 5
    assert _count(summary, "calls") == len(records) == 8, "three unanswered leads called twice"
    answered = [r for r in records if r.status != "no_answer"]
    assert _count(summary, "answered") == len(answered) == 2
    assert {r.outcome for r in answered} == {"not_interested", "do_not_call"}, output
    assert _count(summary, "do-not-call") == 1
    unanswered = sum(_count(summary, label) for label in ("no answer", "busy", "voicemail"))
    assert unanswered == len(records) - len(answered) == 6
    assert (_count(summary, "no answer"), _count(summary, "busy")) == (2, 2)
    assert _count(summary, "voicemail") == 2
    expected = {
        "ben": "not_interested",
        "gus": "do_not_call",
        "dev": "no_answer, no_answer",
        "eli": "busy, busy",
        "fay": "voicemail, voicemail",
    }
    for lead, said in expected.items():
        assert re.search(rf"^\s+{lead}\s+\S+\s+{said}$", summary, re.M), (lead, summary)
    assert DoNotCallList(settings.database_url).contains("+15550140007")
