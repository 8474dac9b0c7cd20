"""`slot replay`: the recorded corpus replays on today's CallWorkflow, a reordered workflow is
caught with the diverging event named, `export` writes histories that `check` accepts, and the
corpus still covers every outcome and router tier it was recorded for.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client

with workflow.unsafe.imports_passed_through():
    from activities.telephony import PlaceCall, TelephonyActivities
    from slot.payload_codec import require_keyring
    from slot.playbooks import load_playbook
    from slot.replay import CORPUS_DIR, check, history_files
    from slot.settings import REPO_ROOT, Settings
    from slot.temporal import start_call_workflow
    from worker import ACTIVITY_SLOTS, build_worker
    from workflows.call import CallWorkflow
    from workflows.messages import CallInput, CallSnapshot, HangUp, Lead, Turn


@workflow.defn(name="CallWorkflow")
class TimerFirstCallWorkflow(CallWorkflow):
    """Starts a timer before anything else: a command the recorded code never issued."""

    @workflow.run
    async def run(self, call: CallInput) -> CallSnapshot:
        await workflow.sleep(timedelta(milliseconds=1))
        return await super().run(call)


@workflow.defn(name="CallWorkflow")
class DialFirstCallWorkflow(CallWorkflow):
    """Dials the follow-up call before scheduling it: the recorded commands in another order."""

    @workflow.run
    async def run(self, call: CallInput) -> CallSnapshot:
        return await super().run(call)

    async def _follow_up(self) -> None:
        call = self._call
        await workflow.execute_activity_method(
            TelephonyActivities.place_call,
            PlaceCall(call_id=f"{call.call_id}-followup", to=call.lead.phone),
            start_to_close_timeout=timedelta(seconds=30),
        )
        await super()._follow_up()


def run_slot(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slot.cli", *argv],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_passes_on_the_recorded_corpus() -> None:
    completed = run_slot("replay", "check")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    files = history_files(CORPUS_DIR)
    for path in files:
        assert f"ok       {path.relative_to(CORPUS_DIR)}" in lines, completed.stdout
    assert f"{len(files)} histories replay on the current code" in completed.stdout


@pytest.mark.parametrize(
    ("variant", "history"),
    [(TimerFirstCallWorkflow, "booked.json"), (DialFirstCallWorkflow, "call_back_later.json")],
    ids=["extra-timer", "reordered-dial"],
)
async def test_check_fails_naming_the_event_when_commands_change_without_a_patch(
    variant: type, history: str, tmp_path: Path
) -> None:
    for method in ("run", "_follow_up"):
        assert method in vars(CallWorkflow), f"the variants override CallWorkflow.{method}"
    for name in (history, "do_not_call.json"):
        shutil.copy(CORPUS_DIR / name, tmp_path / name)
    out = io.StringIO()
    assert await check(tmp_path, out, workflows=[CallWorkflow]) == 0, out.getvalue()

    out = io.StringIO()
    status = await check(tmp_path, out, workflows=[variant])
    report = out.getvalue()
    assert status == 1, report
    assert f"diverged {history}" in report
    first = report.splitlines()[-1]
    assert f"first: {tmp_path / history} (workflow {Path(history).stem}) at event " in first
    assert "[TMPRL1100] Nondeterminism error" in first, first
    named = re.search(r"at event (\d+) \((\w+)\)", first)
    assert named is not None, first
    events = json.loads((tmp_path / history).read_text())["events"]
    event = events[int(named.group(1)) - 1]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", named.group(2)).upper()
    assert event["eventType"] == f"EVENT_TYPE_{snake}", (event["eventType"], first)


async def test_check_of_an_empty_folder_fails(tmp_path: Path) -> None:
    out = io.StringIO()
    assert await check(tmp_path, out) == 2
    assert "no histories" in out.getvalue()


async def test_export_keeps_histories_encrypted_and_check_reads_them_with_the_keys(
    temporal_client: Client, temporal_settings: Settings, tmp_path: Path
) -> None:
    settings = temporal_settings.model_copy(
        update={
            "task_queue": f"replay-{uuid.uuid4().hex[:8]}",
            "database_url": f"sqlite:///{tmp_path}/records.db",
        }
    )
    call = CallInput(
        call_id=f"call-export-{uuid.uuid4().hex[:8]}",
        lead=Lead(name="Jordan", phone="+15550001111"),
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
    )
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with build_worker(temporal_client, settings, executor):
            handle = await start_call_workflow(temporal_client, call, settings)
            await handle.execute_update(CallWorkflow.turn, Turn(seq=0, kind="start"))
            await handle.execute_update(
                CallWorkflow.turn, Turn(seq=1, kind="speech", text="Yes, speaking.")
            )
            await handle.signal(CallWorkflow.hang_up, HangUp())
            await handle.result()

    out = tmp_path / "exported"
    assert settings.payload_keys is not None
    keys = {"SLOT_PAYLOAD_KEYS": settings.payload_keys.get_secret_value()}
    completed = run_slot(
        "replay",
        "export",
        call.call_id,
        "--out",
        str(out),
        "--address",
        settings.temporal_address,
        env=keys,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    written = out / f"{call.call_id}.json"
    assert completed.stdout.split() == [str(written)]
    events = json.loads(written.read_text())["events"]
    assert events[0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    exported = written.read_text()
    for personal in ("Jordan", "+15550001111", "Yes, speaking."):
        assert personal not in exported
        assert base64.b64encode(personal.encode()).decode()[:8] not in exported

    report = io.StringIO()
    assert await check(out, report, keyring=require_keyring(settings)) == 0, report.getvalue()
    assert f"ok       {call.call_id}.json" in report.getvalue().splitlines()

    completed = run_slot("replay", "check", str(out), env=keys)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = io.StringIO()
    assert await check(out, report) == 1
    assert f"unreadable {call.call_id}.json" in report.getvalue()
    assert "SLOT_PAYLOAD_KEYS is not set" in report.getvalue().splitlines()[-1]


# --- what the corpus must keep covering ---------------------------------------------------------


def attributes(event: dict[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventAttributes")), {})


def payload(value: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(value["payloads"][0]["data"]))


def facts(path: Path) -> set[str]:
    """What one history shows: its outcome, the tiers that decided, and how the edge spoke."""
    found: set[str] = set()
    for event in json.loads(path.read_text())["events"]:
        kind = event["eventType"].removeprefix("EVENT_TYPE_")
        details = attributes(event)
        if kind == "WORKFLOW_EXECUTION_STARTED" and payload(details["input"]).get("carried"):
            found.add("continues the call of an earlier run")
        elif kind == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW":
            found.add("continued as new")
        elif kind == "WORKFLOW_EXECUTION_SIGNALED":
            found.add(f"signal {details['signalName']}")
        elif kind == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            found.add(f"update {details['acceptedRequest']['input']['name']}")
        elif kind == "ACTIVITY_TASK_SCHEDULED":
            found.add(f"activity {details['activityType']['name']}")
        elif kind == "START_CHILD_WORKFLOW_EXECUTION_INITIATED":
            found.add("starts follow-up call")
        elif kind == "WORKFLOW_EXECUTION_COMPLETED":
            snapshot = payload(details["result"])
            found.add(f"status {snapshot['status']}")
            found.add(f"outcome {snapshot['outcome']}")
            if snapshot["reprompts"]:
                found.add("reprompted")
            found |= transcript_facts(snapshot["transcript"])
    return found


def transcript_facts(transcript: list[dict[str, Any]]) -> set[str]:
    found = set()
    agent = [e for e in transcript if e["speaker"] == "agent"]
    if agent and agent[0].get("state") == "follow_up":
        found.add("is follow-up call")
    for before, entry in pairwise(agent):
        if entry.get("tier") == "llm" and entry.get("state") != before.get("state"):
            found.add("LLM transition accepted")
    for entry in transcript:
        if entry.get("withdrawn"):
            found.add(f"withdrawn {entry['speaker']} line")
        if entry["speaker"] == "caller":
            if entry["text"].startswith("[keys") and entry.get("seq") is not None:
                found.add("dtmf turn")
            continue
        tier = entry.get("tier")
        reason = entry.get("reason") or ""
        found.add(f"tier {tier}")
        if entry.get("interrupted") and entry.get("heard_text"):
            found.add(f"barge-in on tier {tier}")
        if tier == "llm" and "rejected transition" in reason:
            found.add("forbidden LLM transition refused by the workflow")
        elif tier == "llm" and "allowed next state" in reason:
            found.add("forbidden LLM transition replaced by the safe line")
        elif tier == "llm" and not entry.get("interrupted") and entry.get("citations"):
            found.add("LLM answer accepted")
        if "no LLM configured" in reason and tier != "knowledge":
            found.add("nothing answers without an LLM")
    return found


REQUIRED: dict[str, set[str]] = {
    "booked.json": {"outcome booked", "tier classifier", "tier script"},
    "not_interested.json": {"outcome not_interested"},
    "call_back_later.json": {"outcome call_back_later", "starts follow-up call"},
    "call_back_later-followup.json": {"is follow-up call", "outcome booked"},
    "do_not_call.json": {"outcome do_not_call", "tier rule"},
    "transfer.json": {"outcome transfer"},
    "silent_caller_released.json": {"outcome no_response", "reprompted"},
    "silent_then_answers.json": {"reprompted", "outcome hung_up"},
    "dtmf.json": {"dtmf turn", "outcome transfer"},
    "barge_in.json": {"barge-in on tier classifier", "signal utterance_played"},
    "knowledge_answer.json": {"tier knowledge"},
    "token_match_then_nothing_answers.json": {"tier intent", "nothing answers without an LLM"},
    "llm_turn_accepted.json": {
        "update llm_result",
        "LLM answer accepted",
        "LLM transition accepted",
    },
    "llm_forbidden_transition.json": {
        "update llm_result",
        "forbidden LLM transition refused by the workflow",
        "forbidden LLM transition replaced by the safe line",
    },
    "llm_turn_cut_off_by_barge_in.json": {"update llm_result", "barge-in on tier llm"},
    "outbound_no_answer.json": {"status no_answer"},
    "edge_booked_with_barge_in.json": {
        "outcome booked",
        "tier knowledge",
        "barge-in on tier classifier",
        "update turn",
        "signal call_status",
    },
    "pre_router_call.json": set(),
    "understood_in_own_words.json": {"outcome booked", "tier script", "tier fallback"},
    "continued_as_new-run1.json": {"continued as new", "update turn"},
    "continued_as_new-run2.json": {"continues the call of an earlier run", "continued as new"},
    "continued_as_new-run3.json": {"continues the call of an earlier run", "outcome booked"},
    "edge_hold_released.json": {"activity hold_call", "status ended"},
    "edge_dropped.json": {"activity hold_call", "status dropped"},
    "transfer_handed_over.json": {"outcome transfer", "activity transfer_call"},
    "voicemail_left.json": {
        "signal machine_detection",
        "activity deliver_utterance",
        "outcome voicemail",
    },
    "voicemail_hung_up.json": {
        "signal machine_detection",
        "activity end_call",
        "status no_answer",
        "outcome voicemail",
    },
    "outbound_busy.json": {"signal call_status", "status no_answer", "outcome busy"},
    "reprompt_by_edge_queue.json": {"activity speak_on_edge", "reprompted", "outcome no_response"},
    "turn_continued.json": {"withdrawn caller line", "withdrawn agent line", "outcome booked"},
}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_corpus_covers_each_scenario(name: str) -> None:
    path = CORPUS_DIR / name
    assert path.exists(), f"{name} is missing from the replay corpus"
    missing = REQUIRED[name] - facts(path)
    assert not missing, f"{name} no longer shows {sorted(missing)}"


def test_corpus_never_uses_the_dtmf_signal() -> None:
    """Keys come as turns, as the edge sends them; the `dtmf` signal is to be removed."""
    for path in history_files(CORPUS_DIR):
        assert "signal dtmf" not in facts(path), path.name
