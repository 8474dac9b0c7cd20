"""The edge's hold on a call (`workflows.edge_hold`, `media_edge.call_hold`): the real workflow on
a real worker, the edge's real hold worker in this process, the edge's real `WorkflowLink`.

Killing a real edge process mid-call is in `test_end_to_end`; these cover the other ways a
hold ends, quickly: the edge closes the stream, no edge takes the call, an edge that does not
hold it (one restarted since) answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from activities.records import CallRecord, make_engine
from media_edge.call_hold import CallHolds, edge_worker
from media_edge.workflow_link import WorkflowLink
from slot.playbooks import load_playbook
from slot.settings import Settings
from slot.temporal import start_call_workflow
from worker import ACTIVITY_SLOTS, build_worker
from workflows.edge_hold import HOLD_ACTIVITY
from workflows.messages import CallInput, CallSnapshot, CallStatus, CallTimers, Turn

WAIT_S = 60.0
TIMERS = CallTimers(reprompt_after_s=600.0, edge_heartbeat_s=1.0, edge_reattach_s=2.0)
"""No reprompt gets in the way; a dead edge is found out within seconds."""


@dataclass
class Env:
    client: Client
    settings: Settings


@pytest.fixture
async def env(
    temporal_client: Client, temporal_settings: Settings, tmp_path: Path
) -> AsyncIterator[Env]:
    settings = temporal_settings.model_copy(
        update={
            "task_queue": f"calls-{uuid.uuid4().hex[:8]}",
            "database_url": f"sqlite:///{tmp_path}/records.db",
        }
    )
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with build_worker(temporal_client, settings, executor):
            yield Env(temporal_client, settings)


async def answered_call(
    env: Env, edge_queue: str, call_id: str | None = None
) -> WorkflowHandle[Any, CallSnapshot]:
    """A call whose edge (on `edge_queue`) has sent its start turn, as `CallSession` does."""
    call = CallInput(
        call_id=call_id or f"call-{uuid.uuid4().hex[:12]}",
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", env.settings.playbooks_dir),
        timers=TIMERS,
    )
    handle = await start_call_workflow(env.client, call, env.settings)
    log = logging.LoggerAdapter(logging.getLogger("test.edge"))
    await WorkflowLink(env.client, call.call_id, log).turn(
        Turn(seq=0, kind="start", edge_queue=edge_queue)
    )
    return handle


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def hold_events(handle: WorkflowHandle[Any, CallSnapshot]) -> list[EventType.ValueType]:
    """The history events of the call's hold: what it costs the call's history."""
    scheduled: set[int] = set()
    events = []
    async for event in handle.fetch_history_events():
        attributes = event.activity_task_scheduled_event_attributes
        if attributes.activity_type.name == HOLD_ACTIVITY:
            scheduled.add(event.event_id)
            events.append(event.event_type)
        for name in ("started", "completed", "failed", "timed_out", "cancel_requested"):
            attrs = getattr(event, f"activity_task_{name}_event_attributes")
            if attrs.scheduled_event_id in scheduled:
                events.append(event.event_type)
    return events


def saved_record(settings: Settings, call_id: str) -> CallRecord:
    with Session(make_engine(settings.database_url)) as session:
        record = session.get(CallRecord, call_id)
    assert record is not None, f"no call record for {call_id}"
    return record


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def test_the_edge_holds_the_call_until_its_stream_ends(env: Env) -> None:
    holds, queue = CallHolds(), f"edge-{uuid.uuid4().hex[:8]}"
    async with edge_worker(env.client, queue, holds):
        call_id = f"call-{uuid.uuid4().hex[:12]}"
        holds.open(call_id)
        handle = await answered_call(env, queue, call_id)
        await until(lambda: holds.attempts.get(call_id) == 1, "the edge to hold the call")
        assert (await handle.query("snapshot", result_type=CallSnapshot)).status is (
            CallStatus.IN_PROGRESS
        )
        holds.close(call_id, "media stream closed without stop")
        result = await asyncio.wait_for(handle.result(), WAIT_S)
    assert result.status is CallStatus.ENDED
    assert await hold_events(handle) == [
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    ], "one hold per call, three events in its history"


async def test_a_call_no_edge_takes_up_is_dropped(env: Env) -> None:
    handle = await answered_call(env, f"edge-gone-{uuid.uuid4().hex[:8]}")
    answered_at = datetime.now(UTC)
    result = await asyncio.wait_for(handle.result(), WAIT_S)
    assert result.status is CallStatus.DROPPED
    record = saved_record(env.settings, handle.id)
    assert record.status == "dropped"
    assert record.ended_at is not None
    assert utc(record.ended_at) <= answered_at, "ended when the edge was last known to hold it"


async def test_an_edge_that_does_not_hold_the_call_drops_it(env: Env) -> None:
    """An edge restarted on the same queue has no such call: the call died with its
    predecessor, and the workflow hears so without waiting for a timeout."""
    holds, queue = CallHolds(), f"edge-{uuid.uuid4().hex[:8]}"
    async with edge_worker(env.client, queue, holds):
        handle = await answered_call(env, queue)
        result = await asyncio.wait_for(handle.result(), WAIT_S)
    assert result.status is CallStatus.DROPPED
    description = await handle.describe()
    assert description.raw_description.pending_activities == []
