"""The HTTP API over a real server socket, on Temporal's time-skipping test server with Slot's
worker (tests/integration/campaign_fixtures.py) and Slot's database on SQLite and on the
machine's PostgreSQL (tests/integration/databases.py; its run skips, saying so, when PostgreSQL
does not answer).

One campaign goes through the API from creation to cancel: a CSV with bad rows (kept good
rows, the bad ones named by line), a number put on the do-not-call list (never dialled), a
person on the line while the campaign is paused, resumed and cancelled (the agent's goodbye
ends the call), then the call read back with its transcript.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from activities.campaign import DoNotCallList
from activities.records import RecordsActivities, SaveCallRecord, make_engine
from slot.api.app import create_app
from slot.api.store import Store
from slot.database import upgrade
from slot.dev_secrets import API_TOKEN_FILE, use_dev_secrets
from slot.payload_codec import require_keyring
from slot.settings import Settings
from tests.integration.campaign_fixtures import CampaignRig, campaign_rig
from tests.integration.databases import BACKENDS, blank_database
from workflows.campaign import CampaignWorkflow
from workflows.messages import CallSnapshot, CallStatus, Direction, TranscriptEntry

pytestmark = pytest.mark.timeout(300)

TOKEN = "api-test-token-0123456789"
ALWAYS_OPEN = {"start": "00:00", "end": "23:59:59", "weekdays": list(range(7))}
LEADS_CSV = """lead_id,name,phone,time_zone
listed,Dana,+12125550401,America/New_York
held,Jordan,+1 (212) 555-0402,America/Chicago
malformed,Sam,555-1234,America/New_York
mars,Kim,+13105550404,Mars/Olympus
waiting,Lee,+12125550405,
again,Lee Twin,+1 212 555 0405,America/New_York
"""


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    for url in blank_database(request.param, tmp_path, "api"):
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@dataclass
class ApiRig:
    rig: CampaignRig
    http: httpx.AsyncClient
    settings: Settings


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[ApiRig]:
    async with campaign_rig(tmp_path, database_url) as rig:
        settings = rig.settings.model_copy(update={"task_queue": rig.task_queue})
        engine = make_engine(database_url)
        dnc = DoNotCallList(database_url)
        store = Store(engine, require_keyring(settings), dnc)
        app = create_app(settings, rig.client, store, TOKEN)
        listening = socket.create_server(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{listening.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        serving = asyncio.create_task(server.serve(sockets=[listening]))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
                yield ApiRig(rig, http, settings)
        finally:
            server.should_exit = True
            await serving
            dnc.close()
            engine.dispose()


async def test_a_campaign_through_the_api(api: ApiRig) -> None:
    http, line = api.http, api.rig.line
    async with httpx.AsyncClient(base_url=str(http.base_url)) as anonymous:
        refused = await anonymous.get("/campaigns")
        wrong = await anonymous.get("/campaigns", headers={"Authorization": "Bearer nope"})
        docs = await anonymous.get("/openapi.json")
    assert refused.status_code == 401 and wrong.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "/campaigns/{campaign_id}/leads" in docs.json()["paths"]

    options = {"window": ALWAYS_OPEN, "max_concurrent_calls": 1, "retries": {"max_attempts": 1}}
    new = {"campaign_id": "api-camp", "script_name": "solar_survey", **options}
    created = await http.post("/campaigns", json=new)
    assert created.status_code == 201, created.text
    assert (await http.post("/campaigns", json=new)).status_code == 409
    sneaky = await http.post("/campaigns", json={**new, "script_name": "../secrets"})
    assert sneaky.status_code == 422

    csv_headers = {"Content-Type": "text/csv"}
    uploaded = await http.post("/campaigns/api-camp/leads", content=LEADS_CSV, headers=csv_headers)
    assert uploaded.status_code == 422, uploaded.text
    detail = uploaded.json()["detail"]
    assert detail["added"] == 3 and detail["leads"] == 3
    assert {bad["line"]: bad["errors"] for bad in detail["rejected"]} == {
        4: ["phone '555-1234' is not an E.164 number (+ and 8 to 15 digits)"],
        5: ["time_zone: unknown time zone 'Mars/Olympus'"],
        7: ["phone '+1 212 555 0405' repeats line 6"],
    }
    assert "lines 4, 5, 7" in detail["message"]
    again = await http.post("/campaigns/api-camp/leads", content=LEADS_CSV, headers=csv_headers)
    assert again.json()["detail"]["added"] == 0, "a second upload adds no duplicates"
    assert (await http.get("/campaigns/api-camp")).json()["leads"] == 3
    no_phone = await http.post(
        "/campaigns/api-camp/leads", content="name\nX\n", headers=csv_headers
    )
    assert no_phone.status_code == 422 and "no 'phone' column" in no_phone.json()["detail"]

    assert (await http.post("/dnc", json={"phone": "+1 212-555-0401"})).json()["listed"]
    assert (await http.post("/dnc", json={"phone": "+12125550499"})).status_code == 201
    assert (await http.delete("/dnc/+12125550499")).status_code == 204
    assert not (await http.get("/dnc/+12125550499")).json()["listed"]

    assert (await http.post("/campaigns/api-camp/pause")).status_code == 409, "not started"
    line.behaviours = {"+12125550402": ["hold"]}
    assert (await http.post("/campaigns/api-camp/start")).status_code == 202
    assert (await http.post("/campaigns/api-camp/start")).status_code == 409
    await line.wait_for(lambda: len(line.held) == 1)
    assert (await http.post("/campaigns/api-camp/pause")).status_code == 202
    paused = (await http.get("/campaigns/api-camp/progress")).json()
    assert paused["paused"] and paused["in_flight"] == 1 and paused["skipped_dnc"] == 1
    await http.post("/campaigns/api-camp/resume")
    assert not (await http.get("/campaigns/api-camp/progress")).json()["paused"]
    goodbye = "We have to stop here, thank you. Goodbye!"
    cancelled = await http.post("/campaigns/api-camp/cancel", json={"goodbye": goodbye})
    assert cancelled.status_code == 202
    await api.rig.client.get_workflow_handle_for(CampaignWorkflow.run, "api-camp").result()

    progress = (await http.get("/campaigns/api-camp/progress")).json()
    assert progress["dialled"] == 1 and progress["leads_done"] == 3 and progress["cancelling"]
    assert [dial.to for dial in line.dials] == ["+12125550402"], "only the held lead was dialled"
    (call,) = (await http.get("/calls", params={"campaign_id": "api-camp"})).json()
    detail = (await http.get(f"/calls/{call['call_id']}")).json()
    lines = [(entry["speaker"], entry["text"]) for entry in detail["transcript"]]
    assert ("caller", "Yes, speaking.") in lines and lines[-1] == ("agent", goodbye)
    assert detail["status"] == "ended" and detail["recording_url"] is None


async def test_a_call_with_its_recording(api: ApiRig) -> None:
    settings = api.settings
    records = RecordsActivities(settings.database_url, require_keyring(settings))
    snapshot = CallSnapshot(
        call_id="call-CA0123456789abcdef",
        status=CallStatus.ENDED,
        state="goodbye",
        outcome=None,
        slots={},
        transcript=[TranscriptEntry(speaker="agent", text="Hi there!", seq=0)],
        reprompts=0,
    )
    started = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    save = SaveCallRecord(
        snapshot=snapshot,
        direction=Direction.INBOUND,
        script_name="solar_survey",
        started_at=started,
        ended_at=started,
    )
    await asyncio.to_thread(records.save_call_record, save)
    records.close()
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    with wave.open(str(settings.recordings_dir / "CA0123456789abcdef.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 800)

    call = (await api.http.get("/calls/call-CA0123456789abcdef")).json()
    assert call["transcript"][0]["text"] == "Hi there!"
    recording = await api.http.get(call["recording_url"])
    assert recording.status_code == 200 and recording.headers["content-type"] == "audio/wav"
    assert recording.content.startswith(b"RIFF")
    missing = await api.http.get("/calls/call-CAnothere")
    assert missing.status_code == 404 and "call-CAnothere" in missing.json()["detail"]


def test_slot_api_refuses_to_start_without_its_token(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SLOT_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "slot.cli", "api"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "api not started: SLOT_API_TOKEN is not set" in done.stderr
    settings = use_dev_secrets(Settings(data_dir=tmp_path))
    assert settings.api_token is not None
    kept = tmp_path / API_TOKEN_FILE
    assert kept.read_text().strip() == settings.api_token.get_secret_value()
    assert kept.stat().st_mode & 0o777 == 0o600
