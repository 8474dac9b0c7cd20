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
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordsActivities, SaveCallRecord
    from activities.telephony import DeliverUtterance, PlaceCall, TelephonyActivities
    from workflows.call_state import CallState
    from workflows.details import call_summary, current_details
    from workflows.messages import (
        CallInput,
        CallSnapshot,
        CallStatus,
        CallStatusUpdate,
        Decision,
        HangUp,
        Turn,
        UtterancePlayed,
    )
    from workflows.router import Router
    from workflows.router_messages import LLMTurnReport
    from workflows.script import Outcome
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


@workflow.defn
class CallWorkflow:
    @workflow.init
    def __init__(self, call: CallInput) -> None:
        self._call = call
        self._router = Router(call)
        self._now = CallState(call)
        self._turn_lock = asyncio.Lock()
        """Turns run one at a time: a turn awaits the router while signals change the call."""
        self._published: dict[str, str | None] = {}
        self._delivering: dict[str, Decision] = {}
        """What the workflow is asking the edge to say outside a turn (query `delivering`)."""

    @workflow.run
    async def run(self, call: CallInput) -> CallSnapshot:
        started_at = workflow.now()
        self._publish()
        try:
            await workflow.wait_condition(
                lambda: self._now.last_seq >= 0 or self._now.ended,
                timeout=call.timers.answer_timeout_s,
                timeout_summary="answer timeout",
            )
        except TimeoutError:
            self._end(CallStatus.NO_ANSWER, "not answered")
        await self._converse()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._save_record(started_at)
        if self._now.outcome is Outcome.CALL_BACK_LATER and self._now.status is CallStatus.ENDED:
            await self._follow_up()
            await self._save_record(started_at)
        return self.snapshot()

    async def _converse(self) -> None:
        """Wait on the caller and reprompt a silent one, until the call ends."""
        now = self._now
        while not now.ended:
            await self._await_event()
            if now.ended:
                break
            if now.end_utterance_id is not None:
                await self._await_goodbye()
            elif now.silence_armed:
                await self._await_caller()

    async def _await_event(self) -> None:
        now, seen = self._now, self._now.events
        try:
            await workflow.wait_condition(
                lambda: (
                    now.ended
                    or now.silence_armed
                    or now.end_utterance_id is not None
                    or now.events != seen
                ),
                timeout=IDLE_LIMIT,
                timeout_summary="idle call",
            )
        except TimeoutError:
            self._end(CallStatus.ENDED, "no activity on the call")

    async def _await_caller(self) -> None:
        now, clock = self._now, self._now.silence_clock
        try:
            await workflow.wait_condition(
                lambda: now.ended or not now.silence_armed or now.silence_clock != clock,
                timeout=self._call.timers.reprompt_after_s,
                timeout_summary="no-input reprompt",
            )
            return
        except TimeoutError:
            pass
        now.silence_armed = False
        now.silent_reprompts += 1
        attempt = now.silent_reprompts
        step = self._router.silence(now.state, now.slots, attempt)
        if not step.end_call:
            now.reprompts += 1
        label = "goodbye after silence" if step.end_call else f"reprompt {attempt}"
        decision = now.apply(step)
        self._publish()
        await self._deliver(decision, label)

    async def _await_goodbye(self) -> None:
        try:
            await workflow.wait_condition(
                lambda: self._now.ended, timeout=END_CALL_GRACE, timeout_summary="goodbye playing"
            )
        except TimeoutError:
            self._end(CallStatus.ENDED, "goodbye never reported as played")

    async def _deliver(self, decision: Decision, label: str) -> None:
        edge_url = self._now.internal_url or self._now.edge_url
        if edge_url is None:
            self._end(CallStatus.ENDED, "no media edge to speak through")
            return
        self._delivering[decision.utterance_id] = decision
        try:
            await workflow.execute_activity_method(
                TelephonyActivities.deliver_utterance,
                DeliverUtterance(call_id=self._call.call_id, edge_url=edge_url, decision=decision),
                start_to_close_timeout=DELIVER_TIMEOUT,
                retry_policy=DELIVER_RETRY,
                summary=f"say {label}",
            )
        except ActivityError as error:
            workflow.logger.warning("call %s: %s", self._call.call_id, error.cause or error)
            self._end(CallStatus.ENDED, "media edge lost the call")
        finally:
            self._delivering.pop(decision.utterance_id, None)

    async def _follow_up(self) -> None:
        call = self._call
        who = call.lead.name or call.lead.phone or "the caller"
        self._now.status = CallStatus.FOLLOW_UP_SCHEDULED
        self._publish()
        await workflow.sleep(call.timers.follow_up_delay_s, summary=f"follow-up call to {who}")
        child_input = call.follow_up()
        await workflow.start_child_workflow(
            CallWorkflow.run,
            child_input,
            id=child_input.call_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=initial_search_attributes(child_input),
            static_summary=call_summary(child_input),
        )
        self._now.follow_up_call_id = child_input.call_id
        self._publish()
        await workflow.execute_activity_method(
            TelephonyActivities.place_call,
            PlaceCall(call_id=child_input.call_id, to=call.lead.phone, edge_url=self._now.edge_url),
            start_to_close_timeout=PLACE_CALL_TIMEOUT,
            retry_policy=PLACE_CALL_RETRY,
            summary=f"dial {who}",
        )
        self._now.status = CallStatus.COMPLETED
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
        """One caller turn in, the agent's next utterance out: receive, route, apply, publish.

        Its only awaits are the router's local activities, so the turn stays one Update round
        trip. A hang-up that lands meanwhile wins: the turn is refused, not answered.
        """
        async with self._turn_lock:
            self._refuse_if_ended(turn)
            now = self._now
            now.hear(turn)
            if turn.kind == "start":
                step = self._router.opening(now.slots)
            elif turn.kind == "dtmf":
                step = self._router.keys(now.state, now.slots, turn.digits)
            else:
                step = await self._router.speech(now.state, now.slots, turn.text, now.transcript)
                self._refuse_if_ended(turn)
            decision = now.apply(step)
            self._publish()
            return decision

    def _refuse_if_ended(self, turn: Turn) -> None:
        """A turn of a call that ended while it waited (router, lock) gets no answer."""
        if self._now.ended and workflow.patched(ENDED_WHILE_ROUTING_PATCH):
            raise ApplicationError(
                f"call {self._call.call_id} ended ({self._now.end_reason}) while turn "
                f"{turn.seq} waited; not answered",
                type="CallEnded",
                non_retryable=True,
            )

    @turn.validator
    def validate_turn(self, turn: Turn) -> None:
        now = self._now
        refusal = turn.refusal(self._call.call_id, last_seq=now.last_seq, ended=now.ended)
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.update
    def llm_result(self, report: LLMTurnReport) -> Decision:
        """The edge's account of an LLM turn, checked by the script before the call moves.

        Off the critical path: the caller is already hearing the reply.
        """
        now = self._now
        now.events += 1
        assert now.pending_llm is not None
        step = self._router.settle_llm(now.pending_llm.state, now.pending_llm.slots, report.result)
        decision = now.settle_llm(step, report.result.latency_ms)
        self._publish()
        return decision

    @llm_result.validator
    def validate_llm_result(self, report: LLMTurnReport) -> None:
        pending = self._now.pending_llm
        if pending is None or pending.utterance_id != report.utterance_id:
            raise ValueError(
                f"call {self._call.call_id}: {report.utterance_id} is not the LLM turn in flight"
            )

    @workflow.signal
    def utterance_played(self, played: UtterancePlayed) -> None:
        """The edge finished (or was cut off while) playing an utterance."""
        self._now.played(played)
        self._publish()

    @workflow.signal
    def call_status(self, update: CallStatusUpdate) -> None:
        """Twilio's view of the call (status callback)."""
        now = self._now
        now.events += 1
        ends_as = update.ends_as(answered=now.last_seq >= 0)
        if ends_as is not None and not now.ended:
            self._end(ends_as, f"call {update.status.lower()}")

    @workflow.signal
    def hang_up(self, hang_up: HangUp) -> None:
        self._now.events += 1
        if not self._now.ended:
            self._end(CallStatus.ENDED, hang_up.reason)

    @workflow.query
    def snapshot(self) -> CallSnapshot:
        return self._now.snapshot()

    @workflow.query
    def delivering(self, utterance_id: str) -> Decision | None:
        """The decision with this id the workflow is delivering now, if any: outside a turn the
        edge speaks only this, so what is said is what the transcript records."""
        return self._delivering.get(utterance_id)

    def _end(self, status: CallStatus, reason: str) -> None:
        self._now.end(status, reason)
        self._publish()

    def _publish(self) -> None:
        """Mirror state into search attributes (only what changed) and the current details."""
        now = self._now
        wanted = call_search_attributes(now.status, now.state, now.outcome, self._call.script_name)
        updates = search_attribute_changes(self._published, wanted)
        if updates:
            workflow.upsert_search_attributes(updates)
            self._published = wanted
        workflow.set_current_details(
            current_details(
                now.status,
                now.state,
                now.outcome,
                now.transcript,
                end_reason=now.end_reason,
                follow_up_call_id=now.follow_up_call_id,
            )
        )
