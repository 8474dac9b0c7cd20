"""Long calls against a real Temporal dev server: a call continues as a new run before Temporal's
per-run limits (2,000 Updates), carrying its state and the transcript's last lines, with every
turn answered; the call record keeps the whole transcript.

Turns are Updates sent straight through a client, as the edge sends them (no audio), back to
back (the 2,500-turn call sends the `utterance_played` signal only for its goodbye: it is about
the Updates, and the signals would double its time).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.worker import Replayer, Worker

from activities.records import CallRecord, RecordsActivities, SaveCallRecord, make_engine
from slot.payload_codec import decryptor_of, require_keyring
from slot.settings import Settings
from slot.stored_calls import StoredCall, fetch_recent_calls
from slot.temporal import start_call_workflow
from tests.integration.test_call_workflow import (  # noqa: F401 (the `env` fixture)
    WAIT_S,
    Env,
    call_input,
    env,
    eventually,
    take_turn,
    walk_to_pitch,
)
from worker import ACTIVITY_SLOTS
from worker import activities as worker_activities
from workflows.call import CallWorkflow
from workflows.messages import CallInput, CallSnapshot, CallStatus, HangUp, RunLimits, Turn
from workflows.router_messages import LLMTurnReport, LLMTurnResult
from workflows.script import DecisionTier, Outcome

REPEAT = "Could you say that again?"
"""A built-in rule in every state: the agent says the state's line again, and the call stays."""


async def runs_of(client: Client, handle: WorkflowHandle[Any, CallSnapshot]) -> list[CallInput]:
    """The input of every run of the call, first to last, following the continue-as-new chain."""
    inputs: list[CallInput] = []
    run_id = handle.first_execution_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        history = decryptor_of(client.data_converter).decode_history(history)
        started = history.events[0].workflow_execution_started_event_attributes
        inputs.append(CallInput.model_validate_json(started.input.payloads[0].data))
        run_id = continued_to(history)
    return inputs


async def replay_every_run(client: Client, handle: WorkflowHandle[Any, CallSnapshot]) -> int:
    """Replay each run's history on today's code; how many runs there were."""
    replayer = Replayer(workflows=[CallWorkflow], data_converter=client.data_converter)
    run_id = handle.first_execution_run_id
    runs = 0
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        await replayer.replay_workflow(history)
        runs += 1
        run_id = continued_to(history)
    return runs


def continued_to(history: WorkflowHistory) -> str | None:
    last = history.events[-1]
    if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        return None
    return last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


def saved_record(database_url: str, call_id: str) -> CallRecord:
    with Session(make_engine(database_url)) as session:
        record = session.get(CallRecord, call_id)
    assert record is not None
    return record


def saved_transcript(settings: Settings, call_id: str) -> list[dict[str, Any]]:
    sealed = saved_record(settings.database_url, call_id).transcript_json
    return list(json.loads(require_keyring(settings).open_text(sealed)))


WALK = [
    ("Yes, speaking.", "homeowner"),
    ("Yes, I own my home.", "pitch"),
    ("Sure, that sounds good.", "qualify"),
    ("About 200 dollars a month.", "ask_day"),
    ("Tuesday works for me.", "ask_time"),
]
FINISH = [("In the morning, please.", "confirm"), ("Yes, that works.", "booked")]


async def test_a_call_continues_as_new_with_its_state_and_every_turn_answered(
    env: Env,  # noqa: F811
) -> None:
    limits = RunLimits(updates_per_run=4, transcript_lines=16)
    call = call_input(env.settings).model_copy(update={"limits": limits})
    started = datetime.now(UTC)
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    said = [*WALK, *[(REPEAT, "ask_time")] * 20, *FINISH]
    for seq, (text, state) in enumerate(said, start=1):
        decision = await take_turn(handle, Turn(seq=seq, kind="speech", text=text))
        assert (decision.state, decision.utterance_id) == (state, f"{call.call_id}-u{seq + 1}")
        if text == REPEAT:
            assert decision.text == "Would Tuesday morning or afternoon be better?"
    result = await handle.result()
    assert (result.status, result.outcome) == (CallStatus.ENDED, Outcome.BOOKED)
    assert result.slots["survey_day"] == "Tuesday" and result.slots["survey_time"] == "morning"

    runs = await runs_of(env.client, handle)
    # 29 Updates at 4 a run: how many runs depends on how many Updates land while a full run
    # saves its record (they are answered there, by design), so only a chain is certain
    assert len(runs) >= 3
    for number, run in enumerate(runs[1:], start=2):
        assert run.carried is not None and run.carried.run == number
        assert len(run.carried.transcript) <= limits.transcript_lines
    last = runs[-1].carried
    assert last is not None and last.earlier.lines > len(said)
    record = saved_record(env.settings.database_url, call.call_id)
    assert record.started_at == last.started_at
    assert record.ended_at is not None and record.ended_at > record.started_at
    assert (record.status, record.outcome) == ("ended", "booked")
    assert result.earlier_lines + len(result.transcript) == 1 + 2 * len(said)
    transcript = saved_transcript(env.settings, call.call_id)
    assert len(transcript) == 1 + 2 * len(said)
    assert [(e["seq"], e["text"]) for e in transcript if e["speaker"] == "caller"] == [
        (seq, text) for seq, (text, _) in enumerate(said, start=1)
    ]
    agent = [e for e in transcript if e["speaker"] == "agent"]
    assert [e["utterance_id"] for e in agent] == [
        f"{call.call_id}-u{n}" for n in range(1, len(said) + 2)
    ]
    assert all(e["heard_text"] == e["text"] for e in agent)
    await replay_every_run(env.client, handle)

    async def stored() -> list[StoredCall]:
        calls = await fetch_recent_calls(env.client, started - timedelta(minutes=1))
        found = [c for c in calls if c.call_id == call.call_id]
        return found if found and found[0].status is not None else []

    (whole,) = await eventually(stored, "the call's runs in the visibility list")
    assert [t.seq for t in whole.turns] == list(range(len(said) + 1))
    assert (whole.outcome, len(whole.later_runs)) == ("booked", len(runs) - 1)


LONG_CALL_TURNS = 2_500


@pytest.mark.timeout(900)
async def test_a_2500_turn_call_answers_every_turn_over_several_runs_and_records_them_all(
    env: Env,  # noqa: F811
) -> None:
    call = call_input(env.settings)
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    repeats = LONG_CALL_TURNS - len(WALK) - len(FINISH)
    said = [*WALK, *[(REPEAT, "ask_time")] * repeats, *FINISH]
    for seq, (text, state) in enumerate(said, start=1):
        turn = Turn(seq=seq, kind="speech", text=text)
        decision = await take_turn(handle, turn, played=seq == len(said))
        assert (decision.state, decision.utterance_id) == (state, f"{call.call_id}-u{seq + 1}")
    result = await handle.result()
    assert (result.status, result.outcome) == (CallStatus.ENDED, Outcome.BOOKED)

    runs = await runs_of(env.client, handle)
    assert len(runs) >= LONG_CALL_TURNS // call.limits.updates_per_run + 1
    carried = [run.carried for run in runs[1:] if run.carried is not None]
    assert len(carried) == len(runs) - 1
    assert all(len(c.transcript) <= call.limits.transcript_lines for c in carried)
    transcript = saved_transcript(env.settings, call.call_id)
    assert len(transcript) == 1 + 2 * LONG_CALL_TURNS
    assert [(e["seq"], e["text"]) for e in transcript if e["speaker"] == "caller"] == [
        (seq, text) for seq, (text, _) in enumerate(said, start=1)
    ]
    assert [e["utterance_id"] for e in transcript if e["speaker"] == "agent"] == [
        f"{call.call_id}-u{n}" for n in range(1, LONG_CALL_TURNS + 2)
    ]
    assert await replay_every_run(env.client, handle) == len(runs)


async def next_run(handle: WorkflowHandle[Any, CallSnapshot]) -> str:
    """Wait until the call runs on a run after its first one; that run's id."""

    async def continued() -> str | None:
        run_id = (await handle.describe()).run_id
        return run_id if run_id != handle.first_execution_run_id else None

    return await eventually(continued, "the call continued as a new run")


async def test_a_turn_retried_onto_the_next_run_gets_the_answer_it_had(
    env: Env,  # noqa: F811
) -> None:
    """The edge retries an Update whose answer it did not receive with the same id; if the run
    that answered it has handed over meanwhile, the retry reaches the next run."""
    limits = RunLimits(updates_per_run=2)
    call = call_input(env.settings).model_copy(update={"limits": limits})
    handle = await start_call_workflow(env.client, call, env.settings)
    await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
    first = Turn(seq=1, kind="speech", text="Yes, speaking.")
    answer = await take_turn(handle, first, played=False)
    await next_run(handle)

    again = await handle.execute_update(CallWorkflow.turn, first, id=f"{handle.id}-turn-1")
    assert again == answer
    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(CallWorkflow.turn, first, id="another-update-id")
    assert "stale turn 1" in str(error.value.cause)
    decision = await take_turn(handle, Turn(seq=2, kind="speech", text="Yes, I own my home."))
    assert (decision.state, decision.utterance_id) == ("pitch", f"{call.call_id}-u3")
    await handle.signal(CallWorkflow.hang_up, HangUp())
    result = await handle.result()
    assert [e.seq for e in result.transcript if e.speaker == "caller"] == [1, 2]
    await replay_every_run(env.client, handle)


async def test_an_llm_report_retried_onto_the_next_run_gets_the_answer_it_had(
    env: Env,  # noqa: F811
) -> None:
    limits = RunLimits(updates_per_run=5)
    call = call_input(env.settings).model_copy(update={"limits": limits, "llm_enabled": True})
    handle = await start_call_workflow(env.client, call, env.settings)
    await walk_to_pitch(handle, env.edge.url)
    question = Turn(seq=3, kind="speech", text="What kind of roof do you need for the panels?")
    decision = await take_turn(handle, question, played=False)
    assert decision.tier is DecisionTier.LLM
    report = LLMTurnReport(
        utterance_id=decision.utterance_id,
        result=LLMTurnResult(next_state="qualify", say="Any roof works. Your bill?", model="L"),
    )
    update_id = f"{decision.utterance_id}-llm"
    settled = await handle.execute_update(CallWorkflow.llm_result, report, id=update_id)
    assert settled.state == "qualify"
    await next_run(handle)

    again = await handle.execute_update(CallWorkflow.llm_result, report, id=update_id)
    assert again == settled
    snapshot = await handle.query(CallWorkflow.snapshot)
    assert snapshot.state == "qualify"
    await handle.signal(CallWorkflow.hang_up, HangUp())
    await handle.result()
    await replay_every_run(env.client, handle)


class RecordGate:
    """The real records activity behind a gate the test opens: it holds a call's hand-over to
    its next run (which saves the record first) while the test sends a turn (synchronisation,
    not a stand-in)."""

    def __init__(self, settings: Settings) -> None:
        self.real = RecordsActivities(settings.database_url, require_keyring(settings))
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    @activity.defn(name="save_call_record")
    async def save_call_record(self, request: SaveCallRecord) -> None:
        self.entered.set()
        await self.open.wait()
        await asyncio.to_thread(self.real.save_call_record, request)


async def test_a_turn_sent_while_the_call_hands_over_is_answered_and_carried(
    env: Env,  # noqa: F811
) -> None:
    gate = RecordGate(env.settings)
    queue = f"gated-{uuid.uuid4().hex[:8]}"
    settings = env.settings.model_copy(update={"task_queue": queue})
    real = [a for a in worker_activities(settings) if a.__name__ != "save_call_record"]
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[CallWorkflow],
            activities=[*real, gate.save_call_record],
            activity_executor=executor,
        ):
            limits = RunLimits(updates_per_run=2)
            call = call_input(settings).model_copy(update={"limits": limits})
            handle = await start_call_workflow(env.client, call, settings)
            await take_turn(handle, Turn(seq=0, kind="start", edge_url=env.edge.url))
            await take_turn(handle, Turn(seq=1, kind="speech", text="Yes, speaking."))
            await asyncio.wait_for(gate.entered.wait(), WAIT_S)

            during = Turn(seq=2, kind="speech", text="Yes, I own my home.")
            decision = await take_turn(handle, during)
            assert (decision.state, decision.utterance_id) == ("pitch", f"{call.call_id}-u3")
            assert (await handle.describe()).run_id == handle.first_execution_run_id
            gate.open.set()
            await next_run(handle)

            runs = await runs_of(env.client, handle)
            carried = runs[1].carried
            assert carried is not None and carried.last_seq == 2 and carried.state == "pitch"
            assert carried.transcript[-2].text == during.text
            after = await take_turn(
                handle, Turn(seq=3, kind="speech", text="Sure, that sounds good.")
            )
            assert (after.state, after.utterance_id) == ("qualify", f"{call.call_id}-u4")
            await handle.signal(CallWorkflow.hang_up, HangUp())
            await handle.result()
            await replay_every_run(env.client, handle)
    caller = [e["seq"] for e in saved_transcript(settings, call.call_id) if e["seq"]]
    assert caller == [1, 2, 3]
