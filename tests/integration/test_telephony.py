"""Telephony end to end on the phone simulator: calls placed and controlled through the official
twilio SDK (the simulator serves Twilio's REST API), answering-machine detection, a transfer to a
person and keys pressed on the phone, each a whole call through the real edge, a real worker, a
real Temporal dev server and the real Media Streams WebSocket.

The callers are short (one or two lines) so the three calls cost about a minute together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.telephony import (
    TRANSFER_NUMBER_ENV,
    PlaceCall,
    TelephonyActivities,
    TransferCall,
)
from simulator.phone import CallResult
from simulator.twilio_api import TwilioSimulator
from simulator.twilio_api import create_app as create_simulator_app
from slot.playbooks import load_playbook
from slot.settings import Settings
from slot.temporal import start_call_workflow
from tests.conftest import edge_ports, free_port
from tests.integration.edge_fixtures import edge_stack, serve
from workflows import script
from workflows.messages import CallInput, CallSnapshot, CallStatus, Direction, Lead
from workflows.script import DecisionTier, Outcome

TRANSFER_TO = "+15550109000"
CALL_S = 180.0


@dataclass
class Line:
    settings: Settings
    simulator: TwilioSimulator
    url: str
    client: Client


@pytest.fixture(scope="module")
async def line(
    temporal_client: Client, temporal_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Line]:
    """The simulator (Twilio's API and its callers), a real worker and a real edge."""
    settings = temporal_settings.model_copy(
        update={
            **edge_ports(),
            "task_queue": f"telephony-{uuid.uuid4().hex[:8]}",
            "simulator_port": free_port(),
            "data_dir": tmp_path_factory.mktemp("telephony"),
            "transfer_number": TRANSFER_TO,
            "reprompt_after_s": 6.0,
        }
    )
    assert settings.twilio_auth_token is not None
    app = create_simulator_app(settings, auth_token=settings.twilio_auth_token.get_secret_value())
    async with (
        serve(app, settings.simulator_port) as url,
        edge_stack(temporal_client, settings),
    ):
        yield Line(settings, app.state.simulator, url, temporal_client)


async def persona(line: Line, tmp_path: Path, text: str) -> Path:
    """A persona file, answering calls to its number on the simulator."""
    path = tmp_path / "persona.yaml"
    path.write_text(text, encoding="utf-8")
    phone = text.split('phone: "', 1)[1].split('"', 1)[0]
    async with httpx.AsyncClient(base_url=line.url) as http:
        registered = await http.post(
            "/sim/personas", json={"phone": phone, "persona_path": str(path)}
        )
    assert registered.status_code == 200, registered.text
    return path


async def dial(
    line: Line, call_id: str, name: str, phone: str
) -> tuple[WorkflowHandle[Any, CallSnapshot], str]:
    """An outbound call as a campaign places it: its workflow first, then the SDK dials."""
    settings = line.settings
    call = CallInput(
        call_id=call_id,
        direction=Direction.OUTBOUND,
        lead=Lead(name=name, phone=phone),
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
        timers=settings.call_timers(),
    )
    handle = await start_call_workflow(line.client, call, settings)
    placed = await ActivityEnvironment().run(
        TelephonyActivities(settings).place_call, PlaceCall(call_id=call_id, to=phone)
    )
    assert placed.call_sid.startswith("CA") and placed.status == "queued"
    return handle, placed.call_sid


async def finished(line: Line, sid: str) -> CallResult:
    call = line.simulator.calls[sid]
    await asyncio.wait_for(call.done.wait(), CALL_S)
    assert call.result is not None, call.error
    assert call.result.error is None and call.result.protocol_errors == []
    return call.result


async def test_answering_machine_gets_the_voicemail_line_after_the_beep(
    line: Line, tmp_path: Path
) -> None:
    await persona(
        line,
        tmp_path,
        'name: Pat\nphone: "+15550107001"\nmachine:\n'
        "  greeting: Hi, this is Pat. Leave a message after the tone.\n  record_ms: 30000\n",
    )
    handle, sid = await dial(line, "call-amd-machine", "Pat", "+15550107001")
    result = await finished(line, sid)
    snapshot: CallSnapshot = await asyncio.wait_for(handle.result(), CALL_S)

    assert (snapshot.outcome, snapshot.answered_by) == (Outcome.VOICEMAIL, "machine_end_beep")
    playbook = load_playbook("solar_survey", line.settings.playbooks_dir)
    assert playbook.voicemail is not None and playbook.voicemail.message
    message = script.render(playbook, playbook.voicemail.message, {"lead_name": "Pat"})
    last = snapshot.transcript[-1]
    assert (last.speaker, last.state, last.tier) == ("agent", "voicemail", DecisionTier.RULE)
    assert last.text == message and not last.interrupted and last.heard_text == message

    assert result.answered_by == "machine_end_beep" and result.beep_end_ms is not None
    after_beep = [s for s in result.agent_segments if s.start_ms >= result.beep_end_ms]
    assert after_beep and not after_beep[-1].cleared, "the message played out after the beep"
    assert result.hung_up_by == "agent", "the agent hung up once its message was left"


async def test_transfer_dials_the_person_with_the_calls_summary(line: Line, tmp_path: Path) -> None:
    await persona(
        line,
        tmp_path,
        'name: Sam\nphone: "+15550107002"\nlines:\n'
        "  - say: Yes, this is Sam.\n  - say: Can I talk to a real person?\n",
    )
    handle, sid = await dial(line, "call-transfer-spoken", "Sam", "+15550107002")
    result = await finished(line, sid)
    snapshot: CallSnapshot = await asyncio.wait_for(handle.result(), CALL_S)

    assert snapshot.outcome is Outcome.TRANSFER and snapshot.status is CallStatus.ENDED
    assert snapshot.answered_by == "human"
    assert snapshot.handoff is not None and snapshot.handoff.transferred
    assert snapshot.handoff.to == TRANSFER_TO
    assert "Sam" in snapshot.handoff.summary and "asked for a person" in snapshot.handoff.summary
    assert snapshot.end_reason == "transferred to a person"
    last = snapshot.transcript[-1]
    assert last.state == "transfer" and not last.interrupted, "the line was said before the move"

    assert result.transferred_to == TRANSFER_TO
    assert result.hung_up_by == "api", "Twilio ended the stream for the <Dial>, not the agent"


async def test_keys_pressed_reach_the_workflow_as_a_turn(line: Line, tmp_path: Path) -> None:
    path = await persona(
        line,
        tmp_path,
        'name: Dee\nphone: "+15550107003"\nlines:\n  - say: Yes, speaking.\n  - press: "0"\n',
    )
    async with httpx.AsyncClient(base_url=line.url) as http:
        started = await http.post(
            "/sim/calls",
            json={"persona_path": str(path), "script": "solar_survey", "lead_name": "Dee"},
        )
    assert started.status_code == 201, started.text
    sid = started.json()["sid"]
    result = await finished(line, sid)
    handle = line.client.get_workflow_handle(f"call-{sid}", result_type=CallSnapshot)
    snapshot = await asyncio.wait_for(handle.result(), CALL_S)

    assert result.keys_pressed == ["0"]
    keys = [i for i, e in enumerate(snapshot.transcript) if e.text == "[keys 0]"]
    assert len(keys) == 1 and snapshot.transcript[keys[0]].speaker == "caller"
    reply = snapshot.transcript[keys[0] + 1]
    assert reply.tier is DecisionTier.RULE and reply.reason == "rule dtmf: '0' -> transfer"
    assert snapshot.outcome is Outcome.TRANSFER
    assert result.transferred_to == TRANSFER_TO


async def test_twilio_refusals_are_final_and_name_what_is_wrong(line: Line) -> None:
    """A wrong token and an unknown call are Twilio's 4xx (not retried); a transfer with no
    number configured names the variable."""
    wrong = line.settings.model_copy(update={"twilio_auth_token": SecretStr("not-the-token")})
    run = ActivityEnvironment().run
    with pytest.raises(ApplicationError) as refused:
        await run(TelephonyActivities(wrong).place_call, PlaceCall(call_id="c1", to="+15550100001"))
    assert refused.value.non_retryable and "20003" in str(refused.value)

    gone = TransferCall(call_id="c2", call_sid="CA" + "0" * 32, summary="")
    with pytest.raises(ApplicationError) as unknown:
        await run(TelephonyActivities(line.settings).transfer_call, gone)
    assert unknown.value.non_retryable and "404" in str(unknown.value)

    unset = line.settings.model_copy(update={"transfer_number": None})
    with pytest.raises(ApplicationError) as missing:
        await run(TelephonyActivities(unset).transfer_call, gone)
    assert missing.value.non_retryable and TRANSFER_NUMBER_ENV in str(missing.value)
