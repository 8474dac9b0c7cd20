"""CallWorkflow against a real Temporal dev server and a real worker running in this process.

The edge and Twilio are played by small local HTTP servers that only receive requests (the
wire protocol's far end); every Slot component under test is the real one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pytest
from sqlmodel import Session, select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer, Worker

from activities.intent_classifier import IntentClassifierActivities
from activities.knowledge import shared_knowledge_base
from activities.records import CallRecord, make_engine
from activities.telephony import PlaceCall, TelephonyActivities
from slot.credentials import TWILIO_AUTH_TOKEN_ENV
from slot.payload_codec import require_keyring
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, Settings
from slot.temporal import start_call_workflow
from worker import ACTIVITY_SLOTS, build_worker, warm_up_router
from worker import activities as worker_activities
from workflows.call import CallWorkflow
from workflows.messages import (
    CallInput,
    CallSnapshot,
    CallStatus,
    CallStatusUpdate,
    CallTimers,
    Decision,
    Direction,
    HangUp,
    Lead,
    MachineDetection,
    Turn,
    UtterancePlayed,
)
from workflows.router_messages import (
    INTENT_CONFIDENCE_THRESHOLD,
    ClassifyRequest,
    IntentClassification,
    LLMTurnReport,
    LLMTurnResult,
    RouterConfig,
)
from workflows.script import DecisionTier, Outcome, VoicemailPolicy
from workflows.search_attributes import CALL_STATUS, OUTCOME, SCRIPT_NAME, SCRIPT_STATE

T = TypeVar("T")
WAIT_S = 30.0
TRANSFER_TO = "+15550109000"
CORPUS = REPO_ROOT / "tests" / "replay" / "histories"
"""The replay corpus (`slot replay check`); these tests replay the files that guard the router."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class WireRecorder:
    """A loopback HTTP server that records every request and answers with `reply`."""

    reply: Callable[[Request], tuple[int, dict[str, Any]]]
    requests: asyncio.Queue[Request] = field(default_factory=asyncio.Queue)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = Request("POST", self.path, dict(self.headers), self.rfile.read(length))
                status, body = recorder.reply(request)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                loop.call_soon_threadsafe(recorder.requests.put_nowait, request)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    async def next(self) -> Request:
        return await asyncio.wait_for(self.requests.get(), WAIT_S)


def edge_reply(request: Request) -> tuple[int, dict[str, Any]]:
    return 200, {"queued": request.json()["utterance_id"]}


def twilio_reply(request: Request) -> tuple[int, dict[str, Any]]:
    return 201, {"sid": "CA" + uuid.uuid4().hex, "status": "queued"}


@dataclass
class Env:
    client: Client
    settings: Settings
    edge: WireRecorder
    twilio: WireRecorder


@pytest.fixture
async def env(
    temporal_client: Client, temporal_settings: Settings, tmp_path: Path
) -> AsyncIterator[Env]:
    """A worker on its own task queue, with local stand-ins for the edge and for Twilio.

    The router is warmed up first, as `python worker.py` does: a cold embedding model can hold
    a local activity past the workflow task's heartbeat, and such a history does not replay
    (seen with the pre-redesign code too; Temporal SDK behaviour, not Slot's)."""
    edge = WireRecorder(edge_reply)
    twilio = WireRecorder(twilio_reply)
    edge.start()
    twilio.start()
    settings = temporal_settings.model_copy(
        update={
            "task_queue": f"calls-{uuid.uuid4().hex[:8]}",
            "twilio_api_base": twilio.url,
            "edge_public_url": edge.url,
            "database_url": f"sqlite:///{tmp_path}/records.db",
            "transfer_number": TRANSFER_TO,
        }
    )
    await asyncio.to_thread(warm_up_router, settings)
    try:
        with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
            async with build_worker(temporal_client, settings, executor):
                yield Env(temporal_client, settings, edge, twilio)
    finally:
        edge.stop()
        twilio.stop()


def call_input(
    settings: Settings, timers: CallTimers | None = None, phone: str = "+15550001111"
) -> CallInput:
    return CallInput(
        call_id=f"call-{uuid.uuid4().hex[:12]}",
        direction=Direction.INBOUND,
        lead=Lead(name="Jordan", phone=phone),
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
        timers=timers or CallTimers(),
    )


async def take_turn(
    handle: WorkflowHandle[Any, CallSnapshot], turn: Turn, *, played: bool = True
) -> Decision:
    """What the edge does for one turn: the Update, then the signal that it was spoken."""
    decision = await handle.execute_update(
        CallWorkflow.turn, turn, id=f"{handle.id}-turn-{turn.seq}"
    )
    if played:
        await handle.signal(
            CallWorkflow.utterance_played,
            UtterancePlayed(
                utterance_id=decision.utterance_id, heard_text=decision.text, played_ms=1
            ),
        )
    return decision


async def assert_replays(client: Client, handle: WorkflowHandle[Any, CallSnapshot]) -> None:
    """The recorded history replays on today's code: what a worker restart depends on."""
    history = await handle.fetch_history()
    await Replayer(workflows=[CallWorkflow], data_converter=client.data_converter).replay_workflow(
        history
    )


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll an eventually consistent view (visibility) until it answers, with a deadline."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_call_walks_to_booked(env: Env) -> None:
    call = call_input(env.settings)
    handle = await start_call_workflow(env.client, call, env.settings)
    greeting = await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    assert greeting.state == "greeting"
    assert "Jordan" in greeting.text
    caller = [
        ("Yes, speaking.", "homeowner"),
        ("Yes, I own my home.", "pitch"),
        ("Sure, that sounds good.", "qualify"),
        ("About 200 dollars a month.", "ask_day"),
        ("Tuesday works for me.", "ask_time"),
        ("In the morning, please.", "confirm"),
        ("Yes, that works.", "booked"),
    ]
    for seq, (text, state) in enumerate(caller, start=1):
        decision = await take_turn(handle, Turn(seq=seq, kind="speech", text=text))
        assert decision.state == state, (text, decision.reason)
        assert decision.utterance_id == f"{call.call_id}-u{seq + 1}"
    assert decision.end_call and decision.outcome is Outcome.BOOKED

    result = await handle.result()
    assert result.status is CallStatus.ENDED
    assert result.outcome is Outcome.BOOKED
    assert result.slots["survey_day"] == "Tuesday"

    snapshot = await handle.query(CallWorkflow.snapshot)
    said_by_caller = [e.text for e in snapshot.transcript if e.speaker == "caller"]
    assert said_by_caller == [text for text, _ in caller]
    agent = [e for e in snapshot.transcript if e.speaker == "agent"]
    assert len(agent) == len(caller) + 1
    assert all(e.heard_text == e.text for e in agent)

    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(CALL_STATUS) == "ended"
    assert attributes.get(OUTCOME) == "booked"
    assert attributes.get(SCRIPT_STATE) == "booked"
    assert attributes.get(SCRIPT_NAME) == "solar_survey"
    summary = await description.static_summary()
    assert summary == "Inbound call from Jordan +15550001111 · solar_survey"
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "state `booked`" in metadata.current_details
    assert "**Caller:** Yes, that works." in metadata.current_details

    query = (
        f'WorkflowId = "{call.call_id}" AND CallStatus = "ended" AND Outcome = "booked" '
        'AND ScriptName = "solar_survey"'
    )

    async def listed() -> list[str]:
        return [w.id async for w in env.client.list_workflows(query)]

    assert await eventually(listed, "the call in the visibility list") == [call.call_id]

    await assert_replays(env.client, handle)

    with Session(make_engine(env.settings.database_url)) as session:
        record = session.exec(select(CallRecord).where(CallRecord.call_id == call.call_id)).one()
    assert (record.status, record.outcome, record.direction) == ("ended", "booked", "inbound")
    keyring = require_keyring(env.settings)
    assert len(json.loads(keyring.open_text(record.transcript_json))) == len(snapshot.transcript)


async def test_turn_validator_rejects_stale_gapped_and_malformed_turns(env: Env) -> None:
    call = call_input(env.settings)
    handle = await start_call_workflow(env.client, call, env.settings)

    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(CallWorkflow.turn, Turn(seq=0, kind="speech", text="hello"))
    assert "only turn 0 may be kind 'start'" in str(error.value.cause)

    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    first = Turn(seq=1, kind="speech", text="Yes, speaking.")
    decision = await take_turn(handle, first)
    again = await handle.execute_update(CallWorkflow.turn, first, id=f"{handle.id}-turn-1")
    assert again == decision

    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(CallWorkflow.turn, first, id="another-update-id")
    assert "stale turn 1" in str(error.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(CallWorkflow.turn, Turn(seq=3, kind="speech", text="Yes."))
    assert "skips ahead: expected 2" in str(error.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(CallWorkflow.turn, Turn(seq=2, kind="speech", text="  "))
    assert "has no text" in str(error.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as error:
        malformed = {"seq": "two", "kind": "speech"}
        await handle.execute_update(CallWorkflow.turn, malformed)  # type: ignore[arg-type]
    decoding = error.value.cause
    assert isinstance(decoding, ApplicationError)
    assert "Failed decoding arguments" in str(decoding)
    assert "seq" in str(decoding.cause)

    snapshot = await handle.query(CallWorkflow.snapshot)
    assert [e.seq for e in snapshot.transcript if e.speaker == "caller"] == [1]
    assert len(snapshot.transcript) == 3

    await handle.signal(CallWorkflow.hang_up, HangUp())
    result = await handle.result()
    assert (result.status, result.outcome) == (CallStatus.ENDED, Outcome.HUNG_UP)
    with pytest.raises(RPCError, match="already completed"):
        await handle.execute_update(CallWorkflow.turn, Turn(seq=2, kind="speech", text="Hi"))


async def test_silent_caller_gets_two_reprompts_then_goodbye(env: Env) -> None:
    """The workflow's own lines go to the edge's internal listener (not the public URL Twilio
    reaches), with the internal bearer token, and each is in the call's transcript."""
    call = call_input(env.settings, CallTimers(reprompt_after_s=0.5, max_reprompts=2))
    handle = await start_call_workflow(env.client, call, env.settings)
    start = Turn(seq=0, kind="start", edge_url="http://public.invalid", internal_url=env.edge.url)
    await take_turn(handle, start)

    assert env.settings.internal_token is not None
    bearer = f"Bearer {env.settings.internal_token.get_secret_value()}"
    spoken: list[Decision] = []
    while not (spoken and spoken[-1].end_call):
        request = await env.edge.next()
        assert request.path == f"/calls/{call.call_id}/say"
        assert request.headers["Authorization"] == bearer
        decision = Decision.model_validate(request.json())
        spoken.append(decision)
        await handle.signal(
            CallWorkflow.utterance_played,
            UtterancePlayed(
                utterance_id=decision.utterance_id, heard_text=decision.text, played_ms=1
            ),
        )
    assert len(spoken) == 3
    assert [d.end_call for d in spoken] == [False, False, True]
    assert spoken[0].text != spoken[1].text, "the second reprompt is worded differently"
    assert spoken[-1].outcome is Outcome.NO_RESPONSE

    result = await handle.result()
    assert (result.status, result.outcome, result.reprompts) == (
        CallStatus.ENDED,
        Outcome.NO_RESPONSE,
        2,
    )
    recorded = [(e.utterance_id, e.text) for e in result.transcript if e.speaker == "agent"]
    assert recorded[1:] == [(d.utterance_id, d.text) for d in spoken]


async def test_call_back_later_places_a_follow_up_call(env: Env) -> None:
    call = call_input(env.settings, CallTimers(follow_up_delay_s=1.0, answer_timeout_s=600))
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    decision = await take_turn(
        handle,
        Turn(seq=1, kind="speech", text="Sorry, I'm busy right now. Can you call me back later?"),
    )
    assert decision.outcome is Outcome.CALL_BACK_LATER and decision.end_call

    result = await handle.result()
    child_id = f"{call.call_id}-followup"
    assert result.status is CallStatus.COMPLETED
    assert result.follow_up_call_id == child_id

    request = await env.twilio.next()
    sid = env.settings.twilio_account_sid
    assert request.path == f"/2010-04-01/Accounts/{sid}/Calls.json"
    form = request.form()
    assert form["To"] == call.lead.phone
    assert form["From"] == env.settings.agent_phone_number
    assert form["Url"] == f"{env.edge.url}/twilio/voice?call_id={child_id}"
    assert form["StatusCallback"] == f"{env.edge.url}/twilio/status?call_id={child_id}"
    assert (form["MachineDetection"], form["AsyncAmd"]) == ("DetectMessageEnd", "true")
    assert form["AsyncAmdStatusCallback"] == f"{env.edge.url}/twilio/amd?call_id={child_id}"
    assert request.headers["User-Agent"].startswith("twilio-python/"), "placed by the SDK"
    credentials = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
    assert credentials.startswith(f"{sid}:")

    child = env.client.get_workflow_handle_for(CallWorkflow.run, child_id)
    description = await child.describe()
    assert description.parent_id == call.call_id
    assert description.typed_search_attributes.get(SCRIPT_STATE) == "follow_up"
    snapshot = await child.query(CallWorkflow.snapshot)
    assert snapshot.status is CallStatus.RINGING

    greeting = await take_turn(child, Turn(seq=0, kind="start", edge_url=env.edge.url))
    assert greeting.state == "follow_up"
    await child.signal(CallWorkflow.hang_up, HangUp())
    assert (await child.result()).status is CallStatus.ENDED
    await assert_replays(env.client, handle)


async def test_keys_pressed_are_a_turn_that_can_transfer_the_call(env: Env) -> None:
    """DTMF reaches the workflow as a `turn` of kind "dtmf" (the edge sends no other way)."""
    call = call_input(env.settings)
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    decision = await take_turn(handle, Turn(seq=1, kind="dtmf", digits="0"))
    assert (decision.state, decision.outcome, decision.end_call, decision.tier) == (
        "transfer",
        Outcome.TRANSFER,
        True,
        DecisionTier.RULE,
    )
    result = await handle.result()
    assert (result.status, result.outcome) == (CallStatus.ENDED, Outcome.TRANSFER)
    assert [e.text for e in result.transcript if e.speaker == "caller"] == ["[keys 0]"]
    assert env.edge.requests.empty(), "the answer went back as the Update's result"
    await assert_replays(env.client, handle)


async def test_a_transfer_is_handed_over_once_its_line_is_played(env: Env) -> None:
    """The transfer line keeps the line open (`hand_over`); once it is played the workflow
    `<Dial>`s the configured number through the SDK and records the handoff."""
    call = call_input(env.settings)
    handle = await start_call_workflow(env.client, call, env.settings)
    start = Turn(seq=0, kind="start", edge_url=env.edge.url, call_sid="CA" + "2" * 32)
    await take_turn(handle, start)
    decision = await take_turn(handle, Turn(seq=1, kind="dtmf", digits="0"))
    assert decision.outcome is Outcome.TRANSFER and decision.hand_over
    result = await handle.result()
    request = await env.twilio.next()
    assert request.path.endswith(f"/Calls/{'CA' + '2' * 32}.json")
    assert f"<Dial>{TRANSFER_TO}</Dial>" in request.form()["Twiml"]
    assert result.handoff is not None and result.handoff.transferred
    assert (result.handoff.to, result.end_reason) == (TRANSFER_TO, "transferred to a person")
    assert result.handoff.summary.startswith("Sunny Solar call with Jordan, who asked for a person")
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert f"Transfer to {TRANSFER_TO}\n> {result.handoff.summary}" in metadata.current_details
    await assert_replays(env.client, handle)


async def test_an_answering_machine_gets_the_playbooks_voicemail_policy(env: Env) -> None:
    """Leave a message: the line cuts in, and the machine's words are no longer answered.
    Hang up: Twilio is told to end the call."""
    call = call_input(env.settings).model_copy(update={"direction": Direction.OUTBOUND})
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url, call_sid="CA1"))
    amd = MachineDetection(answered_by="machine_end_beep", call_sid="CA1")
    await handle.signal(CallWorkflow.machine_detection, amd)
    said = Decision.model_validate((await env.edge.next()).json())
    assert said.cut_in and said.end_call and said.outcome is Outcome.VOICEMAIL
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await take_turn(handle, Turn(seq=1, kind="speech", text="Please leave a message."))
    assert "answering machine" in str(refused.value.cause)
    played = UtterancePlayed(utterance_id=said.utterance_id, heard_text=said.text, played_ms=1)
    await handle.signal(CallWorkflow.utterance_played, played)
    result = await handle.result()
    assert (result.outcome, result.answered_by) == (Outcome.VOICEMAIL, "machine_end_beep")
    await assert_replays(env.client, handle)

    hang_up = call.playbook.model_copy(update={"voicemail": VoicemailPolicy(action="hang_up")})
    call = call_input(env.settings).model_copy(
        update={"direction": Direction.OUTBOUND, "playbook": hang_up}
    )
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url, call_sid="CA3"))
    await handle.signal(CallWorkflow.machine_detection, amd.model_copy(update={"call_sid": ""}))
    result = await handle.result()
    assert (result.status, result.outcome) == (CallStatus.NO_ANSWER, Outcome.VOICEMAIL)
    request = await env.twilio.next()
    assert request.path.endswith("/Calls/CA3.json") and request.form()["Status"] == "completed"
    await assert_replays(env.client, handle)


async def test_outbound_call_never_answered_is_no_answer(env: Env) -> None:
    call = call_input(env.settings, CallTimers(answer_timeout_s=0.5)).model_copy(
        update={"direction": Direction.OUTBOUND}
    )
    handle = await start_call_workflow(env.client, call, env.settings)
    result = await handle.result()
    assert (result.status, result.outcome) == (CallStatus.NO_ANSWER, Outcome.NO_ANSWER)
    assert result.transcript == []

    busy = call_input(env.settings).model_copy(update={"direction": Direction.OUTBOUND})
    handle = await start_call_workflow(env.client, busy, env.settings)
    await handle.signal(CallWorkflow.call_status, CallStatusUpdate(status="busy", call_sid="CA1"))
    result = await handle.result()
    assert (result.status, result.outcome) == (CallStatus.NO_ANSWER, Outcome.BUSY)


async def test_real_twilio_without_auth_token_is_a_clear_non_retryable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TWILIO_AUTH_TOKEN_ENV, raising=False)
    telephony = TelephonyActivities(Settings(twilio_api_base="https://api.twilio.com"))
    with pytest.raises(ApplicationError) as error:
        await ActivityEnvironment().run(
            telephony.place_call, PlaceCall(call_id="call-x", to="+15550001111")
        )
    assert TWILIO_AUTH_TOKEN_ENV in str(error.value)
    assert error.value.non_retryable


async def local_activities(handle: WorkflowHandle[Any, CallSnapshot]) -> list[str]:
    """Activity types of the local activities recorded in the call's history, in order."""
    names = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attributes = event.marker_recorded_event_attributes
            if attributes.marker_name == "core_local_activity":
                data = json.loads(attributes.details["data"].payloads[0].data)
                names.append(data["activity_type"])
    return names


async def walk_to_pitch(handle: WorkflowHandle[Any, CallSnapshot], edge_url: str) -> None:
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=edge_url))
    await take_turn(handle, Turn(seq=1, kind="speech", text="Yes, speaking."))
    decision = await take_turn(handle, Turn(seq=2, kind="speech", text="Yes, I own my home."))
    assert decision.state == "pitch"


async def test_classifier_decides_what_the_token_matcher_cannot(env: Env) -> None:
    call = call_input(env.settings)
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    decision = await take_turn(handle, Turn(seq=1, kind="speech", text="That'd be me."))
    assert decision.state == "homeowner"
    assert decision.tier is DecisionTier.CLASSIFIER
    assert "classifier intent 'confirm_identity' confidence" in decision.reason
    assert "classify" in decision.latency_ms
    assert await local_activities(handle) == ["classify_intent"]

    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "classifier: classifier intent 'confirm_identity'" in metadata.current_details
    await handle.signal(CallWorkflow.hang_up, HangUp())
    await handle.result()
    await assert_replays(env.client, handle)


async def test_question_without_llm_is_answered_from_the_knowledge_base(env: Env) -> None:
    kb = shared_knowledge_base(env.settings)
    await asyncio.to_thread(kb.ingest, [REPO_ROOT / "knowledge" / "solar_survey"])
    call = call_input(env.settings)
    assert not call.llm_enabled
    handle = await start_call_workflow(env.client, call, env.settings)
    await walk_to_pitch(handle, env.edge.url)

    answer = await take_turn(handle, Turn(seq=3, kind="speech", text="How long is the warranty?"))
    assert answer.tier is DecisionTier.KNOWLEDGE
    assert answer.state == "pitch" and not answer.end_call and not answer.cacheable
    assert answer.text.startswith("Our panels carry a 25-year performance warranty")
    assert "inverter" not in answer.text, "one sentence of the passage, then the question"
    assert answer.text.endswith("Would you like us to book you a free solar survey?")
    assert answer.citations == ["solar_survey/warranty.md#0"]
    assert "knowledge base (no LLM configured)" in answer.reason
    assert {"classify", "retrieve"} <= set(answer.latency_ms)
    assert answer.llm_request is None

    booked = await take_turn(handle, Turn(seq=4, kind="speech", text="Sure, that sounds good."))
    assert booked.state == "qualify"
    snapshot = await handle.query(CallWorkflow.snapshot)
    entry = next(e for e in snapshot.transcript if e.utterance_id == answer.utterance_id)
    assert entry.citations == ["solar_survey/warranty.md#0"]
    assert entry.tier is DecisionTier.KNOWLEDGE
    assert "retrieve_passages" in await local_activities(handle)
    await handle.signal(CallWorkflow.hang_up, HangUp())
    await handle.result()
    await assert_replays(env.client, handle)


async def test_llm_turn_is_checked_by_the_workflow_before_the_call_moves(env: Env) -> None:
    call = call_input(env.settings).model_copy(update={"llm_enabled": True})
    handle = await start_call_workflow(env.client, call, env.settings)
    await walk_to_pitch(handle, env.edge.url)

    question = Turn(seq=3, kind="speech", text="What kind of roof do you need for the panels?")
    decision = await take_turn(handle, question, played=False)
    assert decision.tier is DecisionTier.LLM and decision.state == "pitch"
    request = decision.llm_request
    assert request is not None and request.state == "pitch"
    assert request.utterance == question.text
    allowed = {t.state for t in request.allowed}
    assert {"pitch", "qualify", "cost", "not_interested", "transfer"} <= allowed
    assert "booked" not in allowed
    assert decision.text == request.fallback_line
    assert [line.text for line in request.transcript][:2] == [
        "Hi, this is Sam from Sunny Solar. Am I speaking with Jordan?",
        "Yes, speaking.",
    ]

    forbidden = LLMTurnResult(
        next_state="booked", say="You're all booked, goodbye!", end_call=True, model="Local"
    )
    final = await handle.execute_update(
        CallWorkflow.llm_result,
        LLMTurnReport(utterance_id=decision.utterance_id, result=forbidden),
        id=f"{decision.utterance_id}-llm",
    )
    assert final.state == "pitch" and not final.end_call and final.outcome is None
    assert "rejected transition to 'booked'" in final.reason
    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(
            CallWorkflow.llm_result,
            LLMTurnReport(utterance_id=decision.utterance_id, result=forbidden),
            id="another-llm-report",
        )
    assert "is not the LLM turn in flight" in str(error.value.cause)
    await handle.signal(
        CallWorkflow.utterance_played,
        UtterancePlayed(utterance_id=decision.utterance_id, heard_text=final.text, played_ms=1),
    )

    second = await take_turn(
        handle, Turn(seq=4, kind="speech", text="Do I need to be home for it?"), played=False
    )
    assert second.tier is DecisionTier.LLM
    said = "You'd need to be home for about an hour. What's your monthly power bill?"
    final = await handle.execute_update(
        CallWorkflow.llm_result,
        LLMTurnReport(
            utterance_id=second.utterance_id,
            result=LLMTurnResult(
                next_state="qualify",
                say=said,
                cited_ids=["solar_survey/installation.md#1"],
                model="Local",
                latency_ms={"llm_first_token": 100.0},
            ),
        ),
    )
    assert final.state == "qualify" and final.text == said
    snapshot = await handle.query(CallWorkflow.snapshot)
    assert snapshot.state == "qualify"
    entry = next(e for e in snapshot.transcript if e.utterance_id == second.utterance_id)
    assert (entry.text, entry.tier, entry.citations) == (
        said,
        DecisionTier.LLM,
        ["solar_survey/installation.md#1"],
    )
    assert entry.latency_ms["llm_first_token"] == 100.0
    await handle.signal(CallWorkflow.hang_up, HangUp())
    await handle.result()
    await assert_replays(env.client, handle)


async def test_a_call_recorded_before_the_router_still_replays() -> None:
    """History of a call taken by the pre-router workflow (no `router-v1` marker): today's code
    must replay it on the old path, or a worker upgrade would break calls in flight."""
    path = CORPUS / "pre_router_call.json"
    history = WorkflowHistory.from_json("call-pre-router", path.read_text())
    await Replayer(
        workflows=[CallWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


TASK_HEARTBEAT_TIMEOUT = timedelta(seconds=2)
"""A workflow task stays open while its local activities run and is heartbeaten at 80 % of
this; a signal that arrived meanwhile is delivered with the next task, so the workflow sees
the hang-up while the turn still awaits the classifier."""


async def task_started_after_signal(handle: WorkflowHandle[Any, CallSnapshot], name: str) -> bool:
    """Whether a workflow task carrying the signal `name` has reached the worker."""
    signaled = False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signaled = (
                signaled or event.workflow_execution_signaled_event_attributes.signal_name == name
            )
        elif signaled and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            return True
    return False


class ClassifierGate:
    """The real `classify_intent` activity behind a gate the test opens: it lets the test hold a
    turn inside the router while it sends a signal (synchronisation, not a stand-in)."""

    def __init__(self) -> None:
        self.real = IntentClassifierActivities()
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.open.set()

    @activity.defn(name="classify_intent")
    async def classify_intent(self, request: ClassifyRequest) -> IntentClassification:
        self.entered.set()
        await self.open.wait()
        return await asyncio.to_thread(self.real.classify_intent, request)


async def test_hang_up_while_a_turn_is_routed_ends_the_call_and_the_turn_is_not_answered(
    env: Env,
) -> None:
    gate = ClassifierGate()
    queue = f"gated-{uuid.uuid4().hex[:8]}"
    settings = env.settings.model_copy(update={"task_queue": queue})
    real = [a for a in worker_activities(settings) if a.__name__ != "classify_intent"]
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[CallWorkflow],
            activities=[*real, gate.classify_intent],
            activity_executor=executor,
        ):
            call = call_input(settings)
            await asyncio.to_thread(gate.real.classifier.prepare, call.playbook)
            handle = await env.client.start_workflow(
                CallWorkflow.run,
                call,
                id=call.call_id,
                task_queue=queue,
                task_timeout=TASK_HEARTBEAT_TIMEOUT,
            )
            await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
            gate.open.clear()
            words = Turn(seq=1, kind="speech", text="Hmm, who did you say you were?")
            turn = asyncio.create_task(
                handle.execute_update(CallWorkflow.turn, words, id=f"{handle.id}-turn-1")
            )
            await asyncio.wait_for(gate.entered.wait(), WAIT_S)
            await handle.signal(CallWorkflow.hang_up, HangUp())
            await eventually(
                lambda: task_started_after_signal(handle, CallWorkflow.hang_up.__name__),
                "the hang-up delivered",
            )
            gate.open.set()
            with pytest.raises(WorkflowUpdateFailedError) as error:
                await turn
            assert "while turn 1 waited; not answered" in str(error.value.cause)
            result = await handle.result()
            await assert_replays(env.client, handle)

    assert (result.status, result.outcome, result.state) == (
        CallStatus.ENDED,
        Outcome.HUNG_UP,
        "greeting",
    )
    assert [(e.speaker, e.text) for e in result.transcript][1:] == [("caller", words.text)]
    assert env.edge.requests.empty(), "nothing was said after the hang-up"
    with Session(make_engine(settings.database_url)) as session:
        record = session.exec(select(CallRecord).where(CallRecord.call_id == call.call_id)).one()
    assert record.outcome == Outcome.HUNG_UP.value


RETUNED = {
    "intent_confidence_threshold": 1.01,
    "understanding_intent_threshold": 1.01,
    "token_confident_score": 1.01,
    "match_threshold": 0.99,
    "knowledge_min_score": 0.0,
    "passages_per_turn": 1,
}
"""A retune under which every turn of the recorded call would take another tier."""


@contextmanager
def retuned_router_defaults(values: dict[str, float]) -> Iterator[None]:
    """Change the router's defaults as a code change would: the model's field defaults and every
    module-level constant they come from, wherever workflow or activity code imported it."""
    constants = {
        "intent_confidence_threshold": "INTENT_CONFIDENCE_THRESHOLD",
        "understanding_intent_threshold": "UNDERSTANDING_INTENT_THRESHOLD",
        "token_confident_score": "TOKEN_CONFIDENT_SCORE",
        "match_threshold": "MATCH_THRESHOLD",
        "knowledge_min_score": "KNOWLEDGE_MIN_SCORE",
        "passages_per_turn": "PASSAGES_PER_TURN",
    }
    with pytest.MonkeyPatch.context() as patch:
        for field_name, value in values.items():
            patch.setattr(RouterConfig.model_fields[field_name], "default", value)
            for name, module in list(sys.modules.items()):
                if name.startswith(("workflows.", "activities.")) and hasattr(
                    module, constants[field_name]
                ):
                    patch.setattr(module, constants[field_name], value)
        RouterConfig.model_rebuild(force=True)
        try:
            yield
        finally:
            patch.undo()
            RouterConfig.model_rebuild(force=True)


async def test_a_call_replays_after_the_router_is_retuned(env: Env) -> None:
    """The router's thresholds are in the call's input: a retune after the call started (new
    defaults, new constants) changes nothing in what its history replays."""
    call = call_input(env.settings)
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    decision = await take_turn(handle, Turn(seq=1, kind="speech", text="That'd be me."))
    assert decision.tier is DecisionTier.CLASSIFIER and decision.state == "homeowner"
    await handle.signal(CallWorkflow.hang_up, HangUp())
    await handle.result()
    history = await handle.fetch_history()

    with retuned_router_defaults(RETUNED):
        assert RouterConfig().intent_confidence_threshold == RETUNED["intent_confidence_threshold"]
        await Replayer(
            workflows=[CallWorkflow], data_converter=env.client.data_converter
        ).replay_workflow(history)
    assert RouterConfig().intent_confidence_threshold == INTENT_CONFIDENCE_THRESHOLD


async def test_calls_recorded_before_the_router_split_still_replay() -> None:
    """Histories recorded with the workflow before the router moved out of it (tiers, knowledge
    base, LLM turn, DTMF, reprompts, follow-up): their input has no `RouterConfig`."""
    folder = CORPUS / "before_router_split"
    paths = sorted(folder.glob("*.json"))
    assert paths
    replayer = Replayer(workflows=[CallWorkflow], data_converter=pydantic_data_converter)
    for path in paths:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer.replay_workflow(history)


async def test_a_turn_refused_after_a_hang_up_replays() -> None:
    """History of the patched path (`ended-while-routing-v1`): a hang-up landed while turn 1 was
    in the classifier, and the turn was refused."""
    path = CORPUS / "hang_up_while_routing.json"
    history = WorkflowHistory.from_json("call-hang-up-while-routing", path.read_text())
    await Replayer(
        workflows=[CallWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)
