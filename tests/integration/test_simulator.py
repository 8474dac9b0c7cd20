"""The phone simulator against real servers: its Twilio REST API over HTTP, and whole calls
against the real media edge, a real worker and a real Temporal dev server."""

from __future__ import annotations

import asyncio
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from temporalio.client import Client

from simulator.persona import load_persona
from simulator.phone import CallerTiming, CallEvent, SimulatedCall
from simulator.twilio_api import create_app as create_simulator_app
from slot.settings import REPO_ROOT, Settings
from tests.conftest import edge_ports, free_port
from tests.integration.edge_fixtures import edge_stack, serve
from workflows.call import CallWorkflow
from workflows.messages import CallSnapshot

ACCOUNT = "AC00000000000000000000000000000000"
CALLS = f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
PATIENT = CallerTiming(hangup_grace_ms=15_000)
"""The caller still waits for the agent to hang up first, but does not give up after 5 s: when
the cores are shared (xdist), a gap between the goodbye's phrases can end the caller's wait
before the goodbye is over, and its rest plus the hang-up can take longer than 5 s."""


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(data_dir=tmp_path, simulator_port=free_port())
    app = create_simulator_app(settings, auth_token="")
    async with serve(app, settings.simulator_port) as url:
        yield url


async def test_create_call_requires_to_from_and_url(simulator: str) -> None:
    async with httpx.AsyncClient(base_url=simulator, auth=(ACCOUNT, "token")) as http:
        cases = [
            ({"From": "+15550100000", "Url": "http://x/twilio/voice"}, 21201, "'To'"),
            ({"To": "+15550100001", "Url": "http://x/twilio/voice"}, 21213, "'From'"),
            ({"To": "+15550100001", "From": "+15550100000"}, 21205, "Url"),
            (
                {"To": "+1", "From": "+2", "Url": "http://x", "StatusCallbackEvent": "exploded"},
                21626,
                "StatusCallbackEvent",
            ),
        ]
        for form, code, words in cases:
            response = await http.post(CALLS, data=form)
            assert response.status_code == 400
            body = response.json()
            assert body["code"] == code and words in body["message"]
            assert body["status"] == 400
            assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


async def test_account_in_path_must_match_credentials(simulator: str) -> None:
    form = {"To": "+15550100001", "From": "+15550100000", "Url": "http://x/twilio/voice"}
    async with httpx.AsyncClient(base_url=simulator) as http:
        no_auth = await http.post(CALLS, data=form)
        other = await http.post(CALLS, data=form, auth=("AC" + "1" * 32, "token"))
        missing = await http.get(f"/2010-04-01/Accounts/{ACCOUNT}/Calls/CA{'0' * 32}.json")
    for response in (no_auth, other, missing):
        assert response.status_code == 401
        assert response.json()["code"] == 20003


async def test_auth_token_is_checked_when_configured(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, simulator_port=free_port())
    app = create_simulator_app(settings, auth_token="s3cret")
    form = {"To": "+15550100001", "From": "+15550100000", "Url": "http://x/twilio/voice"}
    async with serve(app, settings.simulator_port) as url, httpx.AsyncClient(base_url=url) as http:
        wrong = await http.post(CALLS, data=form, auth=(ACCOUNT, "guess"))
        assert wrong.status_code == 401 and wrong.json()["code"] == 20003


async def test_unanswered_call_has_twilio_shape_and_status(simulator: str) -> None:
    """No persona for the number and no default: the call is placed but nobody answers."""
    form = {"To": "+15550109999", "From": "+15550100000", "Url": "http://127.0.0.1:9/voice"}
    async with httpx.AsyncClient(base_url=simulator, auth=(ACCOUNT, "token")) as http:
        created = await http.post(CALLS, data=form)
        assert created.status_code == 201
        call = created.json()
        assert call["sid"].startswith("CA") and len(call["sid"]) == 34
        assert call["status"] == "queued"
        assert (call["to"], call["from"], call["direction"]) == (
            "+15550109999",
            "+15550100000",
            "outbound-api",
        )
        assert call["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call['sid']}.json"
        assert call["date_created"].endswith("+0000")
        ended = await http.get(f"/sim/calls/{call['sid']}", params={"wait_s": 30})
        assert ended.json()["status"] == "no-answer"
        fetched = await http.get(call["uri"])
        assert fetched.json()["status"] == "no-answer"
        unknown = await http.get(f"/2010-04-01/Accounts/{ACCOUNT}/Calls/CA{'0' * 32}.json")
        assert unknown.status_code == 404 and unknown.json()["code"] == 20404


async def test_registered_lines_are_busy_fail_or_reach_voicemail(simulator: str) -> None:
    """`/sim/lines`: no person answers; the status callback says why, as Twilio's does (with
    `AnsweredBy` for the machine), to the URL the call was placed with."""
    callbacks: dict[str, dict[str, str]] = {}
    receiver = FastAPI()

    @receiver.post("/status")
    async def status(request: Request) -> dict[str, str]:
        form = {key: str(value) for key, value in (await request.form()).items()}
        callbacks[form["To"]] = form
        return {}

    lines = {"+15550108001": "busy", "+15550108002": "voicemail", "+15550108003": "failed"}
    async with (
        serve(receiver, free_port()) as receiver_url,
        httpx.AsyncClient(base_url=simulator, auth=(ACCOUNT, "token")) as http,
    ):
        refused = await http.post("/sim/lines", json={"phone": "+1555", "answer": "maybe"})
        assert refused.status_code == 422
        for phone, answer in lines.items():
            registered = await http.post("/sim/lines", json={"phone": phone, "answer": answer})
            assert registered.status_code == 200
        for phone in lines:
            form = {"To": phone, "From": "+15550100000", "Url": "http://127.0.0.1:9/voice"}
            form["StatusCallback"] = f"{receiver_url}/status?call_id=c-{phone}"
            call = (await http.post(CALLS, data=form)).json()
            ended = await http.get(f"/sim/calls/{call['sid']}", params={"wait_s": 30})
            assert ended.json()["status"] == {"voicemail": "completed"}.get(
                lines[phone], lines[phone]
            )
    assert callbacks["+15550108001"]["CallStatus"] == "busy"
    assert "AnsweredBy" not in callbacks["+15550108001"]
    assert callbacks["+15550108002"]["CallStatus"] == "completed"
    assert callbacks["+15550108002"]["AnsweredBy"] == "machine_end_beep"
    assert callbacks["+15550108003"]["CallStatus"] == "failed"


async def test_bad_persona_is_rejected_with_the_reason(simulator: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: X\nphone: '+1'\nlines:\n  - sai: hi\n", encoding="utf-8")
    async with httpx.AsyncClient(base_url=simulator) as http:
        registered = await http.post(
            "/sim/personas", json={"phone": "+1", "persona_path": str(broken)}
        )
        started = await http.post("/sim/calls", json={"persona_path": str(broken)})
    for response in (registered, started):
        assert response.status_code == 400
        assert "lines[0].sai" in response.json()["error"]


# ---- whole calls against the real edge --------------------------------------------------------


@pytest.fixture(scope="module")
async def stack(
    temporal_client: Client, temporal_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """A real worker and a real media edge on loopback, sharing the session's Temporal server."""
    settings = temporal_settings.model_copy(
        update={
            **edge_ports(),
            "task_queue": f"simulator-{uuid.uuid4().hex[:8]}",
            "simulator_port": free_port(),
            "data_dir": tmp_path_factory.mktemp("simulator-calls"),
            "reprompt_after_s": 6.0,
        }
    )
    async with edge_stack(temporal_client, settings):
        yield settings


async def snapshot(client: Client, call_id: str) -> CallSnapshot:
    result: CallSnapshot = await client.get_workflow_handle(call_id).query(CallWorkflow.snapshot)
    return result


async def test_inbound_call_books_with_a_barge_in(
    stack: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    persona = load_persona(REPO_ROOT / "personas" / "booked_caller.yaml")
    events: asyncio.Queue[CallEvent] = asyncio.Queue()
    call = SimulatedCall(
        stack.edge_url,
        persona,
        params={"script": "solar_survey", "lead_name": persona.name},
        status_callback=f"{stack.edge_url}/twilio/status",
        recording_path=tmp_path / "call.wav",
        timing=PATIENT,
        events=events,
    )
    result = await call.run()

    assert result.error is None, result.error
    assert result.protocol_errors == []
    assert result.status == "completed"
    assert result.notes == []
    assert result.hung_up_by == "agent" and result.close_code == 1000
    assert [line.text for line in result.lines_spoken] == persona.spoken_lines
    assert result.clears_received >= 1
    assert any(segment.cleared for segment in result.agent_segments)
    assert any(name.endswith(":end") for name in result.marks_echoed)

    kinds = []
    while not events.empty():
        kinds.append(events.get_nowait().kind)
    assert kinds[0] == "ringing" and kinds[-1] == "call_ended"
    assert {"caller_line", "agent_audio_started", "clear_received"} <= set(kinds)

    assert result.recording_path is not None
    with wave.open(str(result.recording_path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        assert wav.getnframes() == result.duration_ms * 8

    final = await snapshot(temporal_client, f"call-{result.call_sid}")
    assert final.outcome is not None and final.outcome.value == persona.expect_outcome
    heard_interrupted = [e for e in final.transcript if e.speaker == "agent" and e.interrupted]
    assert heard_interrupted


async def test_outbound_call_placed_through_the_rest_api(stack: Settings, tmp_path: Path) -> None:
    """A call placed like Slot's telephony activity places it, answered by a persona."""
    persona_path = tmp_path / "short.yaml"
    persona_path.write_text(
        'name: Sam\nphone: "+15550100042"\nlines:\n  - say: Yes, this is Sam.\n',
        encoding="utf-8",
    )
    settings = stack.model_copy(update={"simulator_port": free_port(), "data_dir": tmp_path})
    assert settings.twilio_auth_token is not None
    token = settings.twilio_auth_token.get_secret_value()
    app = create_simulator_app(settings, auth_token=token)
    form: dict[str, Any] = {
        "To": "+15550100042",
        "From": settings.agent_phone_number,
        "Url": f"{settings.edge_url}/twilio/voice?script=solar_survey&lead_name=Sam",
        "StatusCallback": f"{settings.edge_url}/twilio/status",
        "StatusCallbackEvent": ["initiated", "answered", "completed"],
    }
    async with (
        serve(app, settings.simulator_port) as url,
        httpx.AsyncClient(base_url=url, auth=(ACCOUNT, token), timeout=200) as http,
    ):
        registered = await http.post(
            "/sim/personas", json={"phone": "+15550100042", "persona_path": str(persona_path)}
        )
        assert registered.status_code == 200
        created = await http.post(CALLS, data=form)
        assert created.status_code == 201, created.text
        sid = created.json()["sid"]
        ended = (await http.get(f"/sim/calls/{sid}", params={"wait_s": 180})).json()
        fetched = (await http.get(f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json")).json()

    assert ended["status"] == "completed", ended
    assert ended["result"]["lines_spoken"] == ["Yes, this is Sam."]
    assert ended["result"]["marks_echoed"] > 0
    assert ended["recording"] == str(tmp_path / "recordings" / f"{sid}.wav")
    assert await asyncio.to_thread(Path(ended["recording"]).exists)
    assert fetched["status"] == "completed" and fetched["duration"] is not None
