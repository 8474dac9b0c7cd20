"""Whole calls through every real part: Temporal dev server, worker and edge processes, the phone
simulator speaking real synthesized audio over a real WebSocket.

These are slow (real-time audio); each call is one test so a failure says which behaviour broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session
from temporalio.client import Client, WorkflowExecutionStatus

from activities.records import CallRecord, make_engine
from media_edge.events import CallEnded, CallerTurn, CallEvent, parse_event
from simulator.persona import load_persona
from simulator.phone import CallResult, SimulatedCall
from simulator.protocol import new_sid
from slot.devstack import Stack, settings_env
from slot.settings import REPO_ROOT, Settings
from tests.conftest import edge_ports, free_port
from tests.integration.edge_fixtures import STARTUP_S, edge_events
from workflows.call import CallWorkflow
from workflows.messages import CallSnapshot, CallStatus
from workflows.script import Outcome

PERSONAS = REPO_ROOT / "personas"


def stack_settings(base: Settings, data_dir: Path, **overrides: Any) -> Settings:
    """A stack of its own on the test process's Temporal: its own ports, data and task queue
    (a worker of another stack still up on the same queue would take this one's tasks)."""
    values: dict[str, Any] = {
        "temporal_address": base.temporal_address,
        "task_queue": f"slot-calls-{uuid.uuid4().hex[:8]}",
        "data_dir": data_dir,
        **edge_ports(),
        "simulator_port": free_port(),
        "reprompt_after_s": 8.0,
        "follow_up_delay_s": 2.0,
        "payload_keys": base.payload_keys,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
async def stack(
    temporal_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    settings = stack_settings(temporal_settings, tmp_path_factory.mktemp("stack"))
    running = Stack(settings, headless=True)
    await running.start(timeout_s=STARTUP_S)
    try:
        yield running
    finally:
        await running.stop()


async def wait_for(
    condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.2
) -> Any:
    """Poll an async condition until it holds, or fail saying what we waited on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def snapshot(client: Client, workflow_id: str) -> CallSnapshot:
    result: CallSnapshot = await client.get_workflow_handle(workflow_id).query(
        CallWorkflow.snapshot
    )
    return result


async def collect_edge_events(settings: Settings, call_id: str, sink: list[CallEvent]) -> None:
    async with edge_events(settings, call_id) as socket:
        async for raw in socket:
            event = parse_event(raw)
            sink.append(event)
            if isinstance(event, CallEnded):
                return


async def place_inbound_call(
    settings: Settings, persona_file: str, events: list[CallEvent]
) -> tuple[str, asyncio.Task[CallResult]]:
    """Start a simulated inbound call; `events` fills with the edge's live events for it.

    The returned task finishes once the call is over and every edge event has arrived.
    """
    persona = load_persona(PERSONAS / persona_file)
    call_sid = new_sid("CA")
    call_id = f"call-{call_sid}"
    call = SimulatedCall(
        settings.edge_url,
        persona,
        call_sid=call_sid,
        account_sid=settings.twilio_account_sid,
        status_callback=f"{settings.edge_url}/twilio/status",
        recording_path=settings.data_dir / "recordings" / f"{call_sid}.wav",
    )

    async def run() -> CallResult:
        collector = asyncio.create_task(collect_edge_events(settings, call_id, events))
        result = await call.run()
        await asyncio.wait_for(collector, timeout=30)
        return result

    return call_id, asyncio.create_task(run())


def caller_turns(snap: CallSnapshot) -> list[tuple[int | None, str]]:
    return [(e.seq, e.text) for e in snap.transcript if e.speaker == "caller"]


async def two_caller_turns(client: Client, call_id: str) -> None:
    async def taken() -> bool:
        try:
            return len(caller_turns(await snapshot(client, call_id))) >= 2
        except Exception:
            return False

    await wait_for(taken, timeout_s=90, what="two caller turns in the workflow")


async def edge_held_since(client: Client, call_id: str, since: datetime) -> bool:
    """The edge's last heartbeat of the call's hold is later than `since`."""
    described = await client.get_workflow_handle(call_id).describe()
    return any(
        pending.activity_type.name == "hold_call"
        and pending.HasField("last_heartbeat_time")
        and pending.last_heartbeat_time.ToDatetime(tzinfo=UTC) > since
        for pending in described.raw_description.pending_activities
    )


async def test_worker_killed_mid_call_loses_nothing(stack: Stack, temporal_client: Client) -> None:
    """The worker stays down past the edge's liveness window (heartbeat timeout plus the time
    to take the call up again) before it comes back: the call is still the edge's, not
    dropped, and goes on to its end."""
    settings = stack.settings
    events: list[CallEvent] = []
    call_id, call = await place_inbound_call(settings, "booked_caller.yaml", events)
    await two_caller_turns(temporal_client, call_id)
    stack.processes["worker"].kill()
    window = timedelta(seconds=settings.edge_heartbeat_s + settings.edge_reattach_s)
    past_window = datetime.now(UTC) + window
    await wait_for(
        lambda: edge_held_since(temporal_client, call_id, past_window),
        timeout_s=60,
        what="the edge holding the call past its liveness window with the worker down",
    )
    await stack.restart_worker()

    result = await asyncio.wait_for(call, timeout=240)
    assert result.error is None
    final = await snapshot(temporal_client, call_id)
    assert final.status is CallStatus.ENDED
    assert final.outcome == Outcome.BOOKED

    turns = caller_turns(final)
    seqs = [seq for seq, _ in turns]
    assert seqs == list(range(1, len(turns) + 1)), f"turn sequence has gaps or repeats: {seqs}"
    sent = [(e.seq, e.text) for e in events if isinstance(e, CallerTurn)]
    assert turns == sent, "the workflow's transcript must hold every turn the edge sent, once"


async def test_edge_killed_mid_call_ends_the_call_as_dropped_when_last_alive(
    stack: Stack, temporal_client: Client
) -> None:
    settings = stack.settings
    call_id, call = await place_inbound_call(settings, "booked_caller.yaml", [])
    await two_caller_turns(temporal_client, call_id)
    stack.processes["edge"].kill()
    killed_at = datetime.now(UTC)
    try:
        handle = temporal_client.get_workflow_handle(call_id, result_type=CallSnapshot)
        result = await asyncio.wait_for(handle.result(), timeout=60)
        assert result.status is CallStatus.DROPPED
        with Session(make_engine(settings.database_url)) as session:
            record = session.get(CallRecord, call_id)
        assert record is not None and record.ended_at is not None
        assert record.status == "dropped"
        started, ended = (
            t.replace(tzinfo=t.tzinfo or UTC) for t in (record.started_at, record.ended_at)
        )
        assert started < ended <= killed_at, "the call ended when the edge was last seen alive"
    finally:
        call.cancel()
        with contextlib.suppress(BaseException):
            await call
        await stack.restart("edge", timeout_s=STARTUP_S)


async def test_call_back_later_places_a_follow_up_call_that_books(
    stack: Stack, temporal_client: Client
) -> None:
    settings = stack.settings
    answerer = PERSONAS / "followup_answerer.yaml"
    phone = load_persona(answerer).phone
    async with httpx.AsyncClient(base_url=settings.twilio_base) as http:
        response = await http.post(
            "/sim/personas", json={"phone": phone, "persona_path": str(answerer)}
        )
        assert response.status_code < 300, response.text

    events: list[CallEvent] = []
    call_id, call = await place_inbound_call(settings, "callback_caller.yaml", events)
    result = await asyncio.wait_for(call, timeout=180)
    assert result.error is None

    first = temporal_client.get_workflow_handle(call_id, result_type=CallSnapshot)
    first_result = await asyncio.wait_for(first.result(), timeout=120)
    assert first_result.outcome == Outcome.CALL_BACK_LATER
    assert first_result.follow_up_call_id is not None

    follow_up = temporal_client.get_workflow_handle(
        first_result.follow_up_call_id, result_type=CallSnapshot
    )
    follow_up_result = await asyncio.wait_for(follow_up.result(), timeout=180)
    assert follow_up_result.outcome == Outcome.BOOKED
    description = await follow_up.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert description.parent_id == call_id


async def test_silent_caller_is_reprompted_then_politely_released(
    stack: Stack, temporal_client: Client
) -> None:
    events: list[CallEvent] = []
    call_id, call = await place_inbound_call(stack.settings, "silent_caller.yaml", events)
    result = await asyncio.wait_for(call, timeout=180)
    assert result.error is None
    assert result.hung_up_by == "agent"
    final = await snapshot(temporal_client, call_id)
    assert final.outcome == Outcome.NO_RESPONSE
    assert final.reprompts == 2
    assert caller_turns(final) == []
    agent_lines = [e for e in final.transcript if e.speaker == "agent"]
    assert len(agent_lines) == 4, "greeting, two reprompts, goodbye"


def test_demo_command_reaches_booked_and_reports_every_stage(
    temporal_settings: Settings, tmp_path: Path
) -> None:
    """`slot demo --report` as a user runs it: starts the stack, calls, stops what it started."""
    settings = stack_settings(temporal_settings, tmp_path / "data")
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-m", "slot.cli", "demo", "--report", str(report_path)],
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "outcome" in completed.stdout and "booked" in completed.stdout

    report = json.loads(report_path.read_text())
    assert report["outcome"] == "booked"
    assert report["workflow_id"].startswith("call-CA")
    assert report["ui_url"].endswith(f"/workflows/{report['workflow_id']}")
    caller = [t for t in report["turns"] if t["speaker"] == "caller"]
    agent = [t for t in report["turns"] if t["speaker"] == "agent"]
    assert len(caller) >= 5
    assert report["barge_ins"] >= 1
    interrupted = [t for t in agent if t.get("interrupted")]
    assert interrupted, "the persona interrupts the agent once"
    # One interruption per interrupted line, in order; the persona's planned one (its first)
    # heard some words. A later one can come from a caller still talking after the agent began
    # its reply (a premature endpoint), which heard nothing: the report says so too.
    heard = report["heard"]
    heard_all = heard if isinstance(heard, list) else [heard]
    assert 1 <= len(heard_all) <= len(interrupted) and all(isinstance(h, str) for h in heard_all)
    first = heard_all[0]
    assert first and interrupted[0]["text"].startswith(first.rstrip(".… ")), (first, interrupted)
    replies = agent[1:]
    for turn in replies:
        stages = turn["latency_ms"]
        for stage in ("endpointing", "stt", "decision", "tts_first_audio", "send", "total"):
            assert stage in stages, (stage, turn)
        assert stages["total"] >= stages["endpointing"]

    with wave.open(report["recording"]) as recording:
        assert recording.getnchannels() == 2
        assert recording.getframerate() == 8000
        assert recording.getnframes() > 8000 * 10
