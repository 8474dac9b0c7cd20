"""`slot replay script --since 1d` reads yesterday's calls from a running Temporal: a real call
made by the real worker is listed, its history fetched and re-decided with an edited playbook;
when Temporal no longer has it, the same call comes from its call record, with the same diff.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client

from media_edge.llm import BamlLanguageModel
from simulator.llm_server import OpenAIProtocolServer, Reply
from slot.llm.config import LLMSettings
from slot.payload_codec import require_keyring
from slot.playbooks import load_playbook
from slot.replay import CORPUS_DIR
from slot.replay_script import main
from slot.settings import Settings
from slot.stored_calls import calls_from_records, load_calls
from slot.temporal import start_call_workflow
from tests.conftest import free_port
from worker import ACTIVITY_SLOTS, build_worker
from workflows.call import CallWorkflow
from workflows.messages import CallInput, HangUp, Lead, Turn

NEW_PITCH = "Panels could halve your bill, and the survey costs nothing. Shall we book one?"
VISIBLE_WITHIN_S = 30.0


async def visible(client: Client, workflow_id: str) -> None:
    """Wait until the closed call shows in Temporal's list (visibility is eventually consistent)."""
    query = f"WorkflowId = '{workflow_id}' AND ExecutionStatus = 'Completed'"
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    while True:
        if [w async for w in client.list_workflows(query)]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{workflow_id} never showed in Temporal's list")
        await asyncio.sleep(0.2)


async def test_since_replays_the_calls_temporal_ran(
    temporal_client: Client, temporal_settings: Settings, tmp_path: Path
) -> None:
    settings = temporal_settings.model_copy(
        update={
            "task_queue": f"replay-script-{uuid.uuid4().hex[:8]}",
            "database_url": f"sqlite:///{tmp_path}/records.db",
        }
    )
    playbook = load_playbook("solar_survey", settings.playbooks_dir)
    call = CallInput(
        call_id=f"call-replay-script-{uuid.uuid4().hex[:8]}",
        lead=Lead(name="Jordan", phone="+15550001111"),
        script_name="solar_survey",
        playbook=playbook,
    )
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with build_worker(temporal_client, settings, executor):
            handle = await start_call_workflow(temporal_client, call, settings)
            await handle.execute_update(CallWorkflow.turn, Turn(seq=0, kind="start"))
            homeowner = await handle.execute_update(
                CallWorkflow.turn, Turn(seq=1, kind="speech", text="Yes, speaking.")
            )
            pitch = await handle.execute_update(
                CallWorkflow.turn, Turn(seq=2, kind="speech", text="Yes, I own my home.")
            )
            await handle.signal(CallWorkflow.hang_up, HangUp())
            await handle.result()
    assert (homeowner.state, pitch.state) == ("homeowner", "pitch")
    await visible(temporal_client, call.call_id)

    edited = playbook.model_dump(mode="json")
    edited["states"]["pitch"]["say"] = NEW_PITCH
    path = tmp_path / "solar_survey.yaml"
    path.write_text(yaml.safe_dump(edited, sort_keys=False))
    status, text, result = await replay_since(settings, path, settings.temporal_address)
    assert status == 0, text
    assert result["notes"] == []
    replayed = next(c for c in result["calls"] if c["call_id"] == call.call_id)
    assert replayed["source"] == f"temporal:{call.call_id}"
    assert [t["changed"] for t in replayed["turns"]] == [False, False, True]
    assert replayed["turns"][2]["was"]["text"] == pitch.text
    assert replayed["turns"][2]["now"]["text"] == NEW_PITCH
    assert replayed["outcome"] == {"was": "hung_up", "now": "hung_up"}
    assert f"call {call.call_id} (temporal:{call.call_id})" in text
    assert f'    now pitch "{NEW_PITCH}" ({pitch.tier.value})' in text

    nobody = f"127.0.0.1:{free_port()}"
    status, text, result = await replay_since(settings, path, nobody)
    assert status == 0, text
    assert result["notes"][0].startswith(f"Temporal at {nobody} unreadable")
    assert result["notes"][1].startswith("1 call from the call records (no history")
    from_record = next(c for c in result["calls"] if c["call_id"] == call.call_id)
    assert from_record["source"] == f"records:{call.call_id}"
    assert [t["kind"] for t in from_record["turns"]] == ["start", "speech", "speech"]
    assert from_record["turns"] == replayed["turns"]
    assert from_record["outcome"] == replayed["outcome"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    keyring = require_keyring(settings)
    assert calls_from_records(settings.database_url, later, playbook, set(), keyring) == []


async def replay_since(
    settings: Settings, playbook: Path, address: str
) -> tuple[int, str, dict[str, Any]]:
    """`slot replay script PLAYBOOK --since 1d` (in a thread: it runs its own event loop)."""
    out, json_out = io.StringIO(), playbook.parent / "result.json"
    json_out.unlink(missing_ok=True)
    status = await asyncio.to_thread(
        main,
        settings,
        playbook=str(playbook),
        router_config=None,
        calls=None,
        since="1d",
        json_out=json_out,
        llm=False,
        address=address,
        out=out,
    )
    result = json.loads(json_out.read_text()) if json_out.exists() else {}
    return status, out.getvalue(), result


WARRANTY = "Twenty-five years on the panels. Shall we book your free survey?"


async def test_llm_answers_tier_2_turns_through_the_edges_adapter(tmp_path: Path) -> None:
    """With an LLM configured, `--llm` asks it for the turns past tier 1 (here a local server
    speaking OpenAI's protocol), and the changed script checks its answer."""
    calls = tmp_path / "calls"
    calls.mkdir()
    name = "knowledge_answer.json"
    (calls / name).write_bytes((CORPUS_DIR / name).read_bytes())
    (stored,) = load_calls(calls)
    path = tmp_path / "solar_survey.yaml"
    path.write_text(yaml.safe_dump(stored.call.playbook.model_dump(mode="json"), sort_keys=False))
    settings = Settings(data_dir=tmp_path / "data")
    async with OpenAIProtocolServer() as server:
        answer = {"next_state": "pitch", "say": WARRANTY, "end_call": False, "cited_ids": []}
        server.set_default(Reply.json({**answer, "slots": {}}))
        model = BamlLanguageModel.from_settings(
            LLMSettings(base_url=server.base_url, model="test-model", api_key="test-key")
        )
        assert model is not None
        out, json_out = io.StringIO(), tmp_path / "result.json"
        status = await asyncio.to_thread(
            main,
            settings,
            playbook=str(path),
            router_config=None,
            calls=calls,
            since=None,
            json_out=json_out,
            llm=True,
            out=out,
            model=model,
        )
        asked = [json.dumps(body) for body in server.requests]
    text = out.getvalue()
    assert status == 0, text
    result = json.loads(json_out.read_text())
    assert result["notes"] == [f"--llm: tier 2 turns asked {model.description}"]
    (call,) = result["calls"]
    question = call["turns"][3]
    assert question["text"] == "How long is the warranty?"
    assert question["was"]["tier"] == "knowledge"
    assert question["now"]["tier"] == "llm"
    assert (question["now"]["state"], question["now"]["text"]) == ("pitch", WARRANTY)
    assert question["now"]["reason"].startswith("LLM now; ")
    assert len(asked) == 1 and "How long is the warranty?" in asked[0]
    assert f'    now pitch "{WARRANTY}" (llm)' in text
