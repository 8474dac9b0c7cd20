"""The edge's link to Temporal across outages: a worker killed while a turn is in flight, the
Temporal server killed during calls. Real processes are killed with SIGKILL; the worker, the
workflow, the edge's `WorkflowLink` and its call holds are the real ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from media_edge.call_hold import CallHolds, edge_worker
from media_edge.workflow_link import Retry, Signal, WorkflowLink
from slot.devstack import settings_env
from slot.payload_codec import Keyring
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, Settings
from slot.temporal import TemporalDevServer, connect, start_call_workflow
from tests.conftest import free_port
from worker import ACTIVITY_SLOTS, build_worker, warm_up_router
from workflows.call import CallWorkflow
from workflows.edge_hold import HOLD_ACTIVITY
from workflows.messages import (
    CallInput,
    CallSnapshot,
    CallStatus,
    CallTimers,
    Decision,
    HangUp,
    Turn,
    UtterancePlayed,
)

WAIT_S = 90.0
TIMERS = CallTimers(reprompt_after_s=600.0, edge_heartbeat_s=1.0, edge_reattach_s=10.0)
"""No reprompt gets in the way; heartbeats are missed within a second of an outage."""


def new_call(settings: Settings) -> CallInput:
    return CallInput(
        call_id=f"call-{uuid.uuid4().hex[:12]}",
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
        timers=TIMERS,
    )


def link_for(client: Client, call_id: str, retry: Retry | None = None) -> WorkflowLink:
    log = logging.LoggerAdapter(logging.getLogger("test.edge"))
    return WorkflowLink(client, call_id, log, retry or Retry())


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def held_since(handle: WorkflowHandle[Any, CallSnapshot], moment: datetime) -> None:
    """Return once the edge's hold on the call has heartbeated since `moment`: the attempt that
    missed heartbeats during an outage was retried (the server timed it out first), or its
    heartbeats got through again before the server looked (a race the restart decides)."""
    while True:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            beat = pending.last_heartbeat_time.ToDatetime(UTC)
            if pending.activity_type.name == HOLD_ACTIVITY and beat >= moment:
                return
        await asyncio.sleep(0.2)


async def history_events(
    handle: WorkflowHandle[Any, CallSnapshot], event_type: EventType.ValueType
) -> list[Any]:
    return [e async for e in handle.fetch_history_events() if e.event_type == event_type]


def caller_turns(snapshot: CallSnapshot) -> list[tuple[int | None, str]]:
    return [(e.seq, e.text) for e in snapshot.transcript if e.speaker == "caller"]


@pytest.fixture
def calls_settings(temporal_settings: Settings, tmp_path: Path) -> Settings:
    return temporal_settings.model_copy(
        update={
            "task_queue": f"calls-{uuid.uuid4().hex[:8]}",
            "database_url": f"sqlite:///{tmp_path}/records.db",
        }
    )


@dataclass
class HeldWorker:
    process: asyncio.subprocess.Process
    marker: Path
    """Written when the worker starts classifying a turn: from then on it holds that turn."""

    async def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.kill()
        await self.process.wait()


@pytest.fixture
async def held_worker(calls_settings: Settings, tmp_path: Path) -> AsyncIterator[HeldWorker]:
    """A worker process (`tests.integration.held_worker`) whose classifier holds every turn."""
    marker = tmp_path / "classifying"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.held_worker",
        calls_settings.temporal_address,
        calls_settings.task_queue,
        str(marker),
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(calls_settings)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    held = HeldWorker(process, marker)
    try:
        line = await asyncio.wait_for(process.stdout.readline(), WAIT_S)
        assert line.strip() == b"polling", "the held worker did not start"
        yield held
    finally:
        if process.returncode is None:
            await held.kill()


async def test_a_turn_in_flight_when_the_worker_is_killed_is_answered_once(
    temporal_client: Client,
    calls_settings: Settings,
    held_worker: HeldWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, client = calls_settings, temporal_client
    call = new_call(settings)
    handle = await start_call_workflow(client, call, settings)
    link = link_for(client, call.call_id, Retry(update_rpc_timeout_s=2.0))
    await link.turn(Turn(seq=0, kind="start"))
    turn = asyncio.create_task(link.turn(Turn(seq=1, kind="speech", text="That'd be me.")))
    await until(held_worker.marker.exists, "the worker to start classifying turn 1")
    await held_worker.kill()
    await asyncio.to_thread(warm_up_router, settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with build_worker(client, settings, executor):
            decision: Decision = await asyncio.wait_for(turn, WAIT_S)
            assert decision.state == "homeowner", decision
            retried = "turn 1: update timed out; retrying"
            assert retried in caplog.text, "the turn's Update was retried with its id"
            await link.turn(Turn(seq=2, kind="speech", text="Yes, I own my home."))
            await link.hang_up("caller hung up")
            result = await asyncio.wait_for(handle.result(), WAIT_S)

    assert caller_turns(result) == [(1, "That'd be me."), (2, "Yes, I own my home.")]
    accepted = await history_events(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    ids = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
        for e in accepted
    ]
    assert ids.count(f"{call.call_id}-turn-1") == 1, ids


def retries(caplog: pytest.LogCaptureFixture, signal: str) -> int:
    """How often the edge has retried `signal` so far (its link logs each retry)."""
    prefix = f"signal {signal}: "
    return sum(
        r.getMessage().startswith(prefix) and "retrying" in r.getMessage() for r in caplog.records
    )


async def played(link: WorkflowLink, decision: Decision) -> None:
    await link.send_utterance_played(
        UtterancePlayed(
            utterance_id=decision.utterance_id, heard_text=decision.text, played_ms=3000
        )
    )


async def test_signals_sent_while_temporal_is_down_arrive_after_it_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Call A's greeting is reported played during the outage, call B hangs up during it (a
    lost hang-up would leave B dangling). After the restart both arrive, and neither call
    counts as dropped: the edge holds A again after the missed heartbeats."""
    caplog.set_level(logging.WARNING, logger="test.edge")
    server = TemporalDevServer(
        address=f"127.0.0.1:{free_port()}", db_path=tmp_path / "temporal.db", headless=True
    )
    await server.start()
    try:
        settings = Settings(
            temporal_address=server.address,
            data_dir=tmp_path / "data",
            task_queue=f"calls-{uuid.uuid4().hex[:8]}",
            payload_keys=SecretStr(Keyring.new_entry("outage")),
        )
        client = await connect(settings)
        holds, queue = CallHolds(), f"edge-{uuid.uuid4().hex[:8]}"
        with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
            async with (
                build_worker(client, settings, executor),
                edge_worker(client, queue, holds),
            ):
                handles, links, greetings = [], [], []
                for _ in range(2):
                    call = new_call(settings)
                    holds.open(call.call_id)
                    handles.append(await start_call_workflow(client, call, settings))
                    links.append(link_for(client, call.call_id))
                    greetings.append(
                        await links[-1].turn(Turn(seq=0, kind="start", edge_queue=queue))
                    )
                a, b = handles
                await until(
                    lambda: holds.attempts.get(a.id) == 1 and holds.attempts.get(b.id) == 1,
                    "the edge to hold both calls",
                )

                assert server.process is not None
                server.process.kill()
                await asyncio.to_thread(server.process.wait)
                a_played = asyncio.create_task(played(links[0], greetings[0]))

                async def b_hangs_up() -> None:
                    """As `CallSession._finish`: the hang-up, then the hold is released."""
                    await links[1].hang_up("caller hung up")
                    holds.close(b.id, "caller hung up")

                b_ended = asyncio.create_task(b_hangs_up())
                await until(
                    lambda: (
                        retries(caplog, "utterance_played") >= 4 and retries(caplog, "hang_up") >= 4
                    ),
                    "both signals to fail for longer than a heartbeat timeout",
                )
                await server.start()
                restarted_at = datetime.now(UTC)
                await asyncio.wait_for(asyncio.gather(a_played, b_ended), WAIT_S)

                b_result = await asyncio.wait_for(b.result(), WAIT_S)
                assert b_result.status is CallStatus.ENDED, "B's hang-up arrived"
                await asyncio.wait_for(held_since(a, restarted_at), WAIT_S)
                a_now = await a.query(CallWorkflow.snapshot)
                assert a_now.status is CallStatus.IN_PROGRESS, "A is not dropped"
                greeting = a_now.transcript[0]
                assert greeting.heard_text == greetings[0].text, "A's played signal arrived"
                await links[0].hang_up("caller hung up")
                holds.close(a.id, "caller hung up")
                assert (await asyncio.wait_for(a.result(), WAIT_S)).status is CallStatus.ENDED
        signalled = await history_events(a, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
        assert len(signalled) == 2, "utterance_played and hang_up, once each"
    finally:
        await server.stop()


async def test_a_signal_retried_after_it_landed_is_recorded_once(
    temporal_client: Client, calls_settings: Settings
) -> None:
    """An attempt whose answer was lost may have landed: the retry carries its request id."""
    call = new_call(calls_settings)
    handle = await start_call_workflow(temporal_client, call, calls_settings)
    signal = Signal(temporal_client, call.call_id, CallWorkflow.hang_up, HangUp())
    await signal.send_once()
    await signal.send_once()
    signalled = await history_events(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    assert len(signalled) == 1
    await handle.terminate("test over")
