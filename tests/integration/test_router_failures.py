"""The router's local activities failing inside a real call workflow: the next tier answers and
the caller's turn is kept. The knowledge base is a Qdrant server that does not answer, as when
it is down; the worker, the classifier and the workflow are the real ones."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import Client

from media_edge.workflow_link import WorkflowLink
from slot.playbooks import load_playbook
from slot.settings import Settings
from slot.temporal import start_call_workflow
from tests.conftest import free_port
from worker import ACTIVITY_SLOTS, build_worker
from workflows.call import CallWorkflow
from workflows.messages import CallInput, CallTimers, HangUp, Turn


async def test_a_knowledge_base_that_fails_does_not_lose_the_callers_turn(
    temporal_client: Client,
    temporal_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLOT_QDRANT_URL", f"http://127.0.0.1:{free_port()}")
    settings = temporal_settings.model_copy(
        update={"task_queue": f"kb-down-{uuid.uuid4().hex[:8]}", "data_dir": tmp_path}
    )
    call = CallInput(
        call_id=f"call-kb-down-{uuid.uuid4().hex[:8]}",
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
        timers=CallTimers(reprompt_after_s=600.0),
    )
    log = logging.LoggerAdapter(logging.getLogger("test.edge"))
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with build_worker(temporal_client, settings, executor):
            handle = await start_call_workflow(temporal_client, call, settings)
            link = WorkflowLink(temporal_client, call.call_id, log)
            await link.turn(Turn(seq=0, kind="start"))
            await link.turn(Turn(seq=1, kind="speech", text="Yes, this is Jordan."))
            question = "Quick question, how long is the warranty on the panels?"
            decision = await link.turn(Turn(seq=2, kind="speech", text=question))
            await handle.signal(CallWorkflow.hang_up, HangUp(reason="test over"))
            result = await handle.result()
    assert "knowledge base unavailable" in decision.reason, decision.reason
    assert [e.text for e in result.transcript if e.speaker == "caller"][-1] == question
