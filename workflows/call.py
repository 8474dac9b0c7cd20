"""CallWorkflow: one durable workflow per phone call: receive a turn, ask the router, apply the
decision, publish.

The edge drives it with the Update `turn` (one per caller turn) and reports what happened on the
line with signals. The router (`workflows.router`) decides; the Web UI text is in
`workflows.details`. The workflow's own timers cover what the edge cannot: a silent caller
(reprompt, then goodbye) and a follow-up call days later. A call's history is small, so
continue-as-new is not needed (`is_continue_as_new_suggested()` is the hook if calls grow long).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordsActivities, SaveCallRecord
    from activities.telephony import DeliverUtterance, PlaceCall, TelephonyActivities
    from workflows.details import call_summary, current_details
    from workflows.messages import (
        CallInput,
        CallSnapshot,
        CallStatus,
        CallStatusUpdate,
        Decision,
        HangUp,
        TranscriptEntry,
        Turn,
        UtterancePlayed,
    )
    from workflows.router import Router
    from workflows.router_messages import LLMTurnReport
    from workflows.script import Outcome, ScriptStep, opening_state
    from workflows.search_attributes import (
        call_search_attributes,
        initial_search_attributes,
        search_attribute_changes,
    )

END_CALL_GRACE = timedelta(minutes=2)
"""How long a goodbye may take to play before the workflow ends the call anyway."""
IDLE_LIMIT = timedelta(minutes=30)
"""A call with no event at all for this long is treated as dropped."""
DELIVER_TIMEOUT = timedelta(seconds=5)
DELIVER_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=200))
RECORD_TIMEOUT = timedelta(seconds=30)
PLACE_CALL_TIMEOUT = timedelta(seconds=30)
PLACE_CALL_RETRY = RetryPolicy(
    maximum_attempts=5,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
)
ENDED_WHILE_ROUTING_PATCH = "ended-while-routing-v1"
"""A turn whose call ended (hang-up, status) while the router awaited is refused, not applied."""


@dataclass
class PendingLLMTurn:
    """A turn handed to the edge's LLM; settled by the Update `llm_result`."""

    utterance_id: str
    state: str
    slots: dict[str, str]


@workflow.defn
class CallWorkflow:
    @workflow.init
    def __init__(self, call: CallInput) -> None:
        self._call = call
        self._router = Router(call)
        self._turn_lock = asyncio.Lock()
        """Turns run one at a time: a turn awaits the router while signals change the call."""
        self._status = CallStatus.RINGING
        self._state = opening_state(call.playbook, follow_up=bool(call.follow_up_of))
        self._slots: dict[str, str] = {}
        if call.lead.name:
            self._slots["lead_name"] = call.lead.name
        self._outcome: Outcome | None = None
        self._transcript: list[TranscriptEntry] = []
        self._last_seq = -1
        self._utterances = 0
        self._last_utterance_id: str | None = None
        self._end_utterance_id: str | None = None
        self._edge_url = call.edge_url
        self._ended = False
        self._end_reason = ""
        self._silence_clock = 0
        """Bumped when an utterance finished playing and the caller's silence starts to count."""
        self._silence_armed = False
        self._silent_reprompts = 0
        self._reprompts = 0
        self._events = 0
        self._follow_up_call_id: str | None = None
        self._published: dict[str, str | None] = {}
        self._pending_llm: PendingLLMTurn | None = None

    @workflow.run
    async def run(self, call: CallInput) -> CallSnapshot:
        started_at = workflow.now()
        self._publish()
        try:
            await workflow.wait_condition(
                lambda: self._last_seq >= 0 or self._ended,
                timeout=call.timers.answer_timeout_s,
                timeout_summary="answer timeout",
            )
        except TimeoutError:
            self._end(CallStatus.NO_ANSWER, "not answered")
        await self._converse()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._save_record(started_at)
        if self._outcome is Outcome.CALL_BACK_LATER and self._status is CallStatus.ENDED:
            await self._follow_up()
            await self._save_record(started_at)
        return self.snapshot()

    async def _converse(self) -> None:
        """Wait on the caller and reprompt a silent one, until the call ends."""
        while not self._ended:
            await self._await_event()
            if self._ended:
                break
            if self._end_utterance_id is not None:
                await self._await_goodbye()
            elif self._silence_armed:
                await self._await_caller()

    async def _await_event(self) -> None:
        seen = self._events
        try:
            await workflow.wait_condition(
                lambda: (
                    self._ended
                    or self._silence_armed
                    or self._end_utterance_id is not None
                    or self._events != seen
                ),
                timeout=IDLE_LIMIT,
                timeout_summary="idle call",
            )
        except TimeoutError:
            self._end(CallStatus.ENDED, "no activity on the call")

    async def _await_caller(self) -> None:
        clock = self._silence_clock
        try:
            await workflow.wait_condition(
                lambda: self._ended or not self._silence_armed or self._silence_clock != clock,
                timeout=self._call.timers.reprompt_after_s,
                timeout_summary="no-input reprompt",
            )
            return
        except TimeoutError:
            pass
        self._silence_armed = False
        self._silent_reprompts += 1
        attempt = self._silent_reprompts
        step = self._router.silence(self._state, self._slots, attempt)
        if not step.end_call:
            self._reprompts += 1
        label = "goodbye after silence" if step.end_call else f"reprompt {attempt}"
        await self._deliver(self._apply(step), label)

    async def _await_goodbye(self) -> None:
        try:
            await workflow.wait_condition(
                lambda: self._ended, timeout=END_CALL_GRACE, timeout_summary="goodbye playing"
            )
        except TimeoutError:
            self._end(CallStatus.ENDED, "goodbye never reported as played")

    async def _deliver(self, decision: Decision, label: str) -> None:
        if self._edge_url is None:
            self._end(CallStatus.ENDED, "no media edge to speak through")
            return
        try:
            await workflow.execute_activity_method(
                TelephonyActivities.deliver_utterance,
                DeliverUtterance(
                    call_id=self._call.call_id, edge_url=self._edge_url, decision=decision
                ),
                start_to_close_timeout=DELIVER_TIMEOUT,
                retry_policy=DELIVER_RETRY,
                summary=f"say {label}",
            )
        except ActivityError as error:
            workflow.logger.warning("call %s: %s", self._call.call_id, error.cause or error)
            self._end(CallStatus.ENDED, "media edge lost the call")

    async def _follow_up(self) -> None:
        call = self._call
        who = call.lead.name or call.lead.phone or "the caller"
        self._status = CallStatus.FOLLOW_UP_SCHEDULED
        self._publish()
        await workflow.sleep(call.timers.follow_up_delay_s, summary=f"follow-up call to {who}")
        child_input = call.follow_up()
        child_id = child_input.call_id
        await workflow.start_child_workflow(
            CallWorkflow.run,
            child_input,
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=initial_search_attributes(child_input),
            static_summary=call_summary(child_input),
        )
        self._follow_up_call_id = child_id
        self._publish()
        await workflow.execute_activity_method(
            TelephonyActivities.place_call,
            PlaceCall(call_id=child_id, to=call.lead.phone, edge_url=self._edge_url),
            start_to_close_timeout=PLACE_CALL_TIMEOUT,
            retry_policy=PLACE_CALL_RETRY,
            summary=f"dial {who}",
        )
        self._status = CallStatus.COMPLETED
        self._publish()

    async def _save_record(self, started_at: datetime) -> None:
        await workflow.execute_activity_method(
            RecordsActivities.save_call_record,
            SaveCallRecord(
                snapshot=self.snapshot(),
                direction=self._call.direction,
                script_name=self._call.script_name,
                follow_up_of=self._call.follow_up_of,
                started_at=started_at,
                ended_at=workflow.now(),
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            summary="save call record",
        )

    @workflow.update
    async def turn(self, turn: Turn) -> Decision:
        """One caller turn in, the agent's next utterance out, decided by the router.

        Its only awaits are the router's local activities, so the turn stays one Update round
        trip. A hang-up that lands meanwhile wins: the turn is refused, not answered.
        """
        async with self._turn_lock:
            self._refuse_if_ended(turn)
            self._events += 1
            self._last_seq = turn.seq
            self._silence_armed = False
            if turn.edge_url:
                self._edge_url = turn.edge_url
            if turn.kind == "start":
                self._status = CallStatus.IN_PROGRESS
                return self._apply(self._router.opening(self._slots))
            self._silent_reprompts = 0
            self._pending_llm = None
            if turn.kind == "dtmf":
                self._caller_said(f"[keys {turn.digits}]", turn.seq)
                return self._apply(self._router.keys(self._state, self._slots, turn.digits))
            self._caller_said(turn.text, turn.seq)
            step = await self._router.speech(self._state, self._slots, turn.text, self._transcript)
            self._refuse_if_ended(turn)
            return self._apply(step)

    def _refuse_if_ended(self, turn: Turn) -> None:
        """A turn of a call that ended while it waited (router, lock) gets no answer."""
        if self._ended and workflow.patched(ENDED_WHILE_ROUTING_PATCH):
            raise ApplicationError(
                f"call {self._call.call_id} ended ({self._end_reason}) while turn {turn.seq} "
                "waited; not answered",
                type="CallEnded",
                non_retryable=True,
            )

    @workflow.update
    def llm_result(self, report: LLMTurnReport) -> Decision:
        """The edge's account of an LLM turn: the script checks it again before the call moves.

        A transition the state does not allow is rejected (the call stays where it was); a
        reply cut off by barge-in keeps the call in its state too, since the caller did not
        hear where it was going. Off the critical path: the caller is already hearing it.
        """
        self._events += 1
        pending = self._pending_llm
        assert pending is not None
        self._pending_llm = None
        result = report.result
        step = self._router.settle_llm(pending.state, pending.slots, result)
        entry = next(
            e for e in reversed(self._transcript) if e.utterance_id == pending.utterance_id
        )
        decision = entry.settle(step, result.latency_ms)
        if self._state == pending.state:
            self._state = step.state
            self._slots.update(step.slots)
            if step.outcome is not None:
                self._outcome = step.outcome
            if step.end_call:
                self._end_utterance_id = pending.utterance_id
                if entry.heard_text is not None:
                    self._end(CallStatus.ENDED, "agent ended the call")
        self._publish()
        return decision

    @llm_result.validator
    def validate_llm_result(self, report: LLMTurnReport) -> None:
        pending = self._pending_llm
        if pending is None or pending.utterance_id != report.utterance_id:
            raise ValueError(
                f"call {self._call.call_id}: {report.utterance_id} is not the LLM turn in flight"
            )

    @turn.validator
    def validate_turn(self, turn: Turn) -> None:
        refusal = turn.refusal(self._call.call_id, last_seq=self._last_seq, ended=self._ended)
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.signal
    def utterance_played(self, played: UtterancePlayed) -> None:
        """The edge finished (or was cut off while) playing an utterance."""
        self._events += 1
        for entry in reversed(self._transcript):
            if entry.utterance_id == played.utterance_id:
                entry.interrupted = played.interrupted
                entry.heard_text = played.heard_text
                entry.latency_ms = {**entry.latency_ms, **played.latency_ms}
                break
        if played.utterance_id == self._end_utterance_id:
            self._end(CallStatus.ENDED, "agent ended the call")
        elif played.utterance_id == self._last_utterance_id and not played.interrupted:
            self._silence_clock += 1
            self._silence_armed = True
        self._show_details()

    @workflow.signal
    def call_status(self, update: CallStatusUpdate) -> None:
        """Twilio's view of the call (status callback)."""
        self._events += 1
        ends_as = update.ends_as(answered=self._last_seq >= 0)
        if ends_as is not None and not self._ended:
            self._end(ends_as, f"call {update.status.lower()}")

    @workflow.signal
    def hang_up(self, hang_up: HangUp) -> None:
        self._events += 1
        if not self._ended:
            self._end(CallStatus.ENDED, hang_up.reason)

    @workflow.query
    def snapshot(self) -> CallSnapshot:
        return CallSnapshot(
            call_id=self._call.call_id,
            status=self._status,
            state=self._state,
            outcome=self._outcome,
            slots=dict(self._slots),
            transcript=list(self._transcript),
            reprompts=self._reprompts,
            follow_up_call_id=self._follow_up_call_id,
        )

    def _caller_said(self, text: str, seq: int | None) -> None:
        self._transcript.append(TranscriptEntry(speaker="caller", text=text, seq=seq))

    def _apply(self, step: ScriptStep) -> Decision:
        """Move the call as the step says and turn it into the utterance the edge speaks."""
        self._utterances += 1
        utterance_id = f"{self._call.call_id}-u{self._utterances}"
        self._state = step.state
        self._slots.update(step.slots)
        if step.outcome is not None:
            self._outcome = step.outcome
        self._last_utterance_id = utterance_id
        if step.end_call:
            self._end_utterance_id = utterance_id
        decision = Decision.of(step, utterance_id)
        self._transcript.append(TranscriptEntry.agent(step, utterance_id))
        self._publish()
        if step.llm_request is not None:
            self._pending_llm = PendingLLMTurn(utterance_id, self._state, dict(self._slots))
        return decision

    def _end(self, status: CallStatus, reason: str) -> None:
        self._ended = True
        self._end_reason = reason
        self._silence_armed = False
        self._status = status
        if self._outcome is None and status is CallStatus.ENDED and self._last_seq >= 0:
            self._outcome = Outcome.HUNG_UP
        self._publish()

    def _publish(self) -> None:
        """Mirror state into search attributes (only what changed) and the current details."""
        call = self._call
        wanted = call_search_attributes(self._status, self._state, self._outcome, call.script_name)
        updates = search_attribute_changes(self._published, wanted)
        if updates:
            workflow.upsert_search_attributes(updates)
            self._published = wanted
        self._show_details()

    def _show_details(self) -> None:
        workflow.set_current_details(
            current_details(
                self._status,
                self._state,
                self._outcome,
                self._transcript,
                end_reason=self._end_reason,
                follow_up_call_id=self._follow_up_call_id,
            )
        )
