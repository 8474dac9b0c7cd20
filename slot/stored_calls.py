"""Stored calls for `slot replay script`: what each caller did and what the agent decided, read
from call histories (a folder of `slot replay export` files, or the running Temporal) and, for
calls Temporal no longer holds, from the SQL call records.

A history has everything a re-run needs: the call's input (lead, follow-up flag, router config)
from its first event, every caller turn from the accepted `turn` Updates (speech, DTMF) with the
decision each returned, the silence reprompts the workflow delivered itself, how an LLM turn
was settled (`llm_result`), whether the caller hung up, and the final outcome, so histories come
first. A call record has the transcript (caller turns with the agent line after each, the
reprompts as agent lines after agent lines) and the outcome, but not the call's input: the
lead's name comes from the recorded slots, the router config is the default, and the LLM's own
answers are not there (with `--llm` such turns show "LLM would answer").

A long call continues as new runs, each a history of its own: the runs of one call are joined
into one stored call (the first run's input, every run's turns in order).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError

from slot.database import SchemaBehind
from slot.payload_codec import (
    Keyring,
    PayloadDecryptor,
    PayloadKeyError,
    decryptor_of,
    keyring_of,
    require_keyring,
)
from slot.settings import Settings
from workflows.messages import CallInput, Direction, Lead, TranscriptEntry
from workflows.router_messages import LLMTurnResult
from workflows.script import Playbook

WORKFLOW_TYPE = "CallWorkflow"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_CALLER_ENDS = {"hang_up": "caller hung up", "call_status": "the line ended the call"}
_KEYS = re.compile(r"^\[keys (.+)\]$")


class StoredCallError(ValueError):
    """Input that cannot be read as calls; the message names the file or the problem."""


class RecordedDecision(BaseModel):
    """What the agent said for one turn, as the workflow returned it (after an LLM turn was
    settled, what it settled to)."""

    state: str
    text: str
    tier: str
    reason: str = ""
    end_call: bool = False
    outcome: str | None = None
    utterance_id: str = ""


TurnKind = Literal["start", "speech", "dtmf", "silence"]


class RecordedTurn(BaseModel):
    """One thing the caller did (spoke, pressed keys, stayed silent) and the agent's answer.

    `decision` is None when the workflow refused the turn (the call had ended) or never
    answered it; `llm_result` is what the edge's LLM said for a tier 2 turn.
    """

    seq: int
    kind: TurnKind
    text: str = ""
    digits: str = ""
    decision: RecordedDecision | None = None
    llm_result: LLMTurnResult | None = None

    def said(self) -> str:
        """The caller's side of the turn, as a person reads it."""
        if self.kind == "speech":
            return f'caller said "{self.text}"'
        if self.kind == "dtmf":
            return f"caller pressed {self.digits}"
        if self.kind == "silence":
            return "caller stayed silent"
        return "call connected"


@dataclass
class StoredCall:
    """One recorded call: its input, its turns in order, and how it ended."""

    call: CallInput
    source: str
    turns: list[RecordedTurn] = field(default_factory=list)
    outcome: str | None = None
    status: str | None = None
    ended_by_caller: str | None = None
    """Why the call ended from the caller's side (hang-up, line status), None if it did not."""
    run_id: str = ""
    continues: str | None = None
    """The run this one continues (a long call continues as new runs), None for a first run."""
    continued_by: str | None = None
    later_runs: list[str] = field(default_factory=list)
    """Where the later runs joined into this call came from."""

    @property
    def call_id(self) -> str:
        return self.call.call_id

    def join(self, later: StoredCall) -> None:
        """Add the run that continued this call: its turns, and how it ended."""
        self.turns += later.turns
        self.status, self.continued_by = later.status, later.continued_by
        self.ended_by_caller = self.ended_by_caller or later.ended_by_caller
        self.outcome = later.outcome if self.status is not None else _outcome_so_far(self)
        self.later_runs.append(later.source)


def join_runs(runs: Sequence[StoredCall]) -> list[StoredCall]:
    """One stored call per call: each first run with the runs that continued it, in order;
    StoredCallError for a later run whose earlier runs are not there."""
    by_run = {run.run_id: run for run in runs}
    known = set(by_run)
    calls = []
    for run in runs:
        if run.continues is not None:
            if run.continues not in known:
                raise StoredCallError(
                    f"{run.source}: a later run of call {run.call_id} without the run it "
                    "continues (replay a long call's runs together)"
                )
            continue
        while run.continued_by is not None and run.continued_by in by_run:
            run.join(by_run.pop(run.continued_by))
        calls.append(run)
    return calls


def call_from_history(history: WorkflowHistory, source: str) -> StoredCall:
    """Read one CallWorkflow history; StoredCallError when it is not one."""
    events = list(history.events)
    if not events or events[0].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        raise StoredCallError(f"{source}: not a workflow history (no start event)")
    started = events[0].workflow_execution_started_event_attributes
    if started.workflow_type.name != WORKFLOW_TYPE:
        raise StoredCallError(f"{source}: a {started.workflow_type.name}, not a {WORKFLOW_TYPE}")
    try:
        call = CallInput.model_validate(_first(started.input))
    except ValidationError as invalid:
        raise StoredCallError(f"{source}: the call's input does not validate: {invalid}") from None
    stored = StoredCall(
        call=call,
        source=source,
        run_id=started.original_execution_run_id,
        continues=started.continued_execution_run_id or None,
    )
    turns: dict[str, RecordedTurn] = {}
    """Update id -> the turn it carried; an `llm_result` update id -> the turn it settles."""
    for event in events[1:]:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes.accepted_request
            update_id, name = accepted.meta.update_id, accepted.input.name
            argument = _first(accepted.input.args) or {}
            if name == "turn":
                turn = RecordedTurn(
                    seq=argument.get("seq", len(stored.turns)),
                    kind=argument.get("kind", "speech"),
                    text=argument.get("text", ""),
                    digits=argument.get("digits", ""),
                )
                stored.turns.append(turn)
                turns[update_id] = turn
            elif name == "llm_result":
                settled = _settled_turn(stored.turns, argument.get("utterance_id"))
                if settled is not None:
                    settled.llm_result = LLMTurnResult.model_validate(argument.get("result", {}))
                    turns[update_id] = settled
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            completed = event.workflow_execution_update_completed_event_attributes
            answered = turns.get(completed.meta.update_id)
            if answered is not None and completed.outcome.HasField("success"):
                answered.decision = _decision(_first(completed.outcome.success))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name == "deliver_utterance":
                delivered = _first(scheduled.input) or {}
                stored.turns.append(
                    RecordedTurn(
                        seq=stored.turns[-1].seq if stored.turns else 0,
                        kind="silence",
                        decision=_decision(delivered.get("decision")),
                    )
                )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signaled = event.workflow_execution_signaled_event_attributes
            reason = _CALLER_ENDS.get(signaled.signal_name)
            if reason is not None and stored.ended_by_caller is None and _ends(signaled):
                stored.ended_by_caller = reason
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            continued = event.workflow_execution_continued_as_new_event_attributes
            stored.continued_by = continued.new_execution_run_id
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            snapshot = _first(event.workflow_execution_completed_event_attributes.result) or {}
            stored.outcome = snapshot.get("outcome")
            stored.status = snapshot.get("status")
    if stored.status is None and stored.continued_by is None:
        stored.outcome = _outcome_so_far(stored)
    return stored


def _ends(signaled: Any) -> bool:
    """A `hang_up` always ends the call; a line status only when it is a final one."""
    if signaled.signal_name == "hang_up":
        return True
    status = str((_first(signaled.input) or {}).get("status", "")).lower()
    return status in {"completed", "busy", "no-answer", "failed", "canceled"}


def _outcome_so_far(stored: StoredCall) -> str | None:
    """For a call still running (or cut short): the last outcome a decision set, or hung_up."""
    outcomes = [t.decision.outcome for t in stored.turns if t.decision and t.decision.outcome]
    if outcomes:
        return outcomes[-1]
    if stored.ended_by_caller == "caller hung up" and stored.turns:
        return "hung_up"
    return None


def _settled_turn(turns: Sequence[RecordedTurn], utterance_id: Any) -> RecordedTurn | None:
    for turn in reversed(turns):
        if turn.decision is not None and turn.decision.utterance_id == utterance_id:
            return turn
    return None


def _decision(data: Any) -> RecordedDecision | None:
    if not isinstance(data, dict):
        return None
    try:
        return RecordedDecision.model_validate(data)
    except ValidationError:
        return None


def _first(payloads: Payloads) -> Any:
    """The first payload as JSON (Slot's data converter writes json/plain), None otherwise."""
    if not payloads.payloads:
        return None
    return _json(payloads.payloads[0])


def _json(payload: Payload) -> Any:
    if payload.metadata.get("encoding") != b"json/plain":
        return None
    return json.loads(payload.data)


# --- where stored calls come from -----------------------------------------------------------


@dataclass
class StoredCalls:
    """The calls to replay, where they came from, and any source that could not be read."""

    calls: list[StoredCall]
    source: str
    notes: list[str] = field(default_factory=list)


async def load_stored_calls(
    settings: Settings,
    playbook: Playbook,
    folder: Path | None,
    since: str | None,
    address: str | None,
) -> StoredCalls:
    """A folder of histories; or the calls of the last `since` from Temporal (their histories)
    and, for calls Temporal no longer holds, the call records. StoredCallError when neither
    source can be read."""
    if folder is not None:
        return StoredCalls(load_calls(folder, PayloadDecryptor(keyring_of(settings))), str(folder))
    assert since is not None
    try:
        keyring = require_keyring(settings)
    except PayloadKeyError as missing:
        raise StoredCallError(f"cannot read stored calls: {missing}") from None
    started_after = datetime.now(UTC) - parse_since(since)
    temporal = address or settings.temporal_address
    found = StoredCalls([], f"Temporal {temporal} and call records, calls since {since} ago")
    try:
        from slot.temporal import connect

        client = await connect(settings, address=address)
        found.calls = await fetch_recent_calls(client, started_after)
    except (RuntimeError, RPCError) as unreachable:  # RuntimeError: temporalio cannot connect
        found.notes.append(f"Temporal at {temporal} unreadable ({unreachable})")
    try:
        skip = {c.call_id for c in found.calls}
        from_records = calls_from_records(
            settings.database_url, started_after, playbook, skip, keyring
        )
    except SQLAlchemyError as unreadable:
        found.notes.append(f"call records unreadable ({type(unreadable).__name__})")
        from_records = []
    except SchemaBehind as behind:
        found.notes.append(f"call records unreadable ({behind})")
        from_records = []
    if len(found.notes) == 2:
        raise StoredCallError(f"cannot read stored calls: {'; '.join(found.notes)}")
    if from_records:
        found.notes.append(
            f"{len(from_records)} call{'' if len(from_records) == 1 else 's'} from the call "
            "records (no history in Temporal): default router config, no LLM answers"
        )
    found.calls += from_records
    return found


def history_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def load_calls(folder: Path, decryptor: PayloadDecryptor | None = None) -> list[StoredCall]:
    """Every call history (*.json) under `folder`, by file name; encrypted ones (`slot replay
    export` keeps them as Temporal stored them) are read with `decryptor`'s keys."""
    if not folder.is_dir():
        raise StoredCallError(f"{folder}: no such folder")
    decryptor = decryptor or PayloadDecryptor(None)
    calls = []
    for path in history_files(folder):
        try:
            history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
            history = decryptor.decode_history(history)
        except PayloadKeyError as locked:
            raise StoredCallError(f"{path}: {locked}") from None
        except (OSError, ValueError) as unreadable:
            raise StoredCallError(f"{path}: not a history file ({unreadable})") from None
        calls.append(call_from_history(history, str(path.relative_to(folder))))
    return join_runs(calls)


def parse_since(text: str) -> timedelta:
    """'1d', '12h', '30m', '2w' -> a duration; StoredCallError for anything else."""
    found = _SINCE.match(text)
    if found is None:
        raise StoredCallError(f"--since {text!r}: use a number and a unit (s, m, h, d, w), e.g. 1d")
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


async def fetch_recent_calls(client: Client, since: datetime) -> list[StoredCall]:
    """The CallWorkflow executions started at or after `since`, oldest first, with histories."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND StartTime >= '{since.isoformat()}'"
    ids = [(w.id, w.run_id, w.start_time) async for w in client.list_workflows(query)]
    decryptor = decryptor_of(client.data_converter)
    calls = []
    for workflow_id, run_id, _ in sorted(ids, key=lambda found: found[2]):
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = decryptor.decode_history(await handle.fetch_history())
        stored = call_from_history(history, f"temporal:{workflow_id}")
        if stored.continues is not None:
            continue
        while stored.continued_by is not None:
            later = client.get_workflow_handle(workflow_id, run_id=stored.continued_by)
            later_history = decryptor.decode_history(await later.fetch_history())
            stored.join(call_from_history(later_history, stored.source))
        calls.append(stored)
    return calls


def calls_from_records(
    database_url: str, since: datetime, playbook: Playbook, skip: set[str], keyring: Keyring
) -> list[StoredCall]:
    """The call records of calls started at or after `since`, except the `skip` ids, oldest
    first, their sealed fields opened with `keyring`. Records do not snapshot the playbook:
    the input is rebuilt around `playbook`."""
    from sqlmodel import Session, col, select

    from activities.records import CallRecord, make_engine
    from slot.database import ensure_schema

    engine = make_engine(database_url)
    try:
        ensure_schema(engine, database_url)
        with Session(engine) as session:
            query = select(CallRecord).where(col(CallRecord.started_at) >= since.astimezone(UTC))
            records = session.exec(query.order_by(col(CallRecord.started_at))).all()
    finally:
        engine.dispose()
    return [
        call_from_record(record, playbook, keyring)
        for record in records
        if record.call_id not in skip
    ]


def call_from_record(record: Any, playbook: Playbook, keyring: Keyring) -> StoredCall:
    """One `CallRecord` row as a stored call (see the module's note on what records lack)."""
    source = f"records:{record.call_id}"
    try:
        transcript = json.loads(keyring.open_text(record.transcript_json))
        entries = [TranscriptEntry.model_validate(e) for e in transcript]
        slots = json.loads(keyring.open_text(record.slots_json))
        call = CallInput(
            call_id=record.call_id,
            direction=Direction(record.direction),
            lead=Lead(name=str(slots.get("lead_name", ""))),
            script_name=record.script_name,
            playbook=playbook,
            follow_up_of=record.follow_up_of,
        )
    except (ValueError, ValidationError) as invalid:
        raise StoredCallError(f"{source}: unreadable call record ({invalid})") from None
    stored = StoredCall(
        call=call,
        source=source,
        outcome=record.outcome,
        status=record.status,
        ended_by_caller="caller hung up" if record.outcome == "hung_up" else None,
    )
    waiting: RecordedTurn | None = RecordedTurn(seq=0, kind="start")
    """The caller's turn the next agent line answers; None: the next one is a reprompt."""
    for entry in entries:
        if entry.speaker == "caller":
            keys = _KEYS.match(entry.text)
            waiting = RecordedTurn(
                seq=entry.seq if entry.seq is not None else len(stored.turns),
                kind="dtmf" if keys else "speech",
                text="" if keys else entry.text,
                digits=keys.group(1) if keys else "",
            )
            stored.turns.append(waiting)
            continue
        decision = RecordedDecision(
            state=entry.state or "",
            text=entry.text,
            tier=entry.tier.value if entry.tier else "",
            reason=entry.reason or "",
            utterance_id=entry.utterance_id or "",
        )
        if waiting is None:
            seq = stored.turns[-1].seq if stored.turns else 0
            stored.turns.append(RecordedTurn(seq=seq, kind="silence", decision=decision))
        else:
            waiting.decision = decision
            if waiting.kind == "start":
                stored.turns.insert(0, waiting)
            waiting = None
    return stored
