"""CallWorkflow: one durable workflow per phone call: receive a turn, ask the router, apply the
decision, publish.

The edge drives it with the Update `turn` (one per caller turn) and reports what happened on the
line with signals. The router (`workflows.router`) decides; the Web UI text is in
`workflows.details`. The workflow's own timers cover what the edge cannot: a silent caller
(reprompt, then goodbye) and a follow-up call days later. A long call continues as a new run
before Temporal's per-run limits (2,000 Updates, a history the server finds too long): it saves
its record, then hands its state and the transcript's last lines to the next run.
The edge's hold on the call (`workflows.edge_hold`) tells it within seconds when the edge died
with the call.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.campaign import CampaignActivities
    from activities.records import RecordsActivities, SaveCallRecord
    from activities.telephony import (
        DeliverUtterance,
        EndCall,
        PlaceCall,
        TelephonyActivities,
        TransferCall,
    )
    from workflows.call_state import CallState, reversible_goodbye
    from workflows.campaign_plan import DncAdd
    from workflows.details import call_summary, current_details
    from workflows.edge_delivery import EDGE_DELIVERY_PATCH, speak_on_edge
    from workflows.edge_hold import EdgeHold
    from workflows.line_control import (
        LINE_OUTCOMES_PATCH,
        TRANSFER_PATCH,
        handoff_summary,
        leaves_message,
        voicemail_step,
    )
    from workflows.messages import (
        AnsweredUpdate,
        CallInput,
        CallSnapshot,
        CallStatus,
        CallStatusUpdate,
        Decision,
        Handoff,
        HangUp,
        MachineDetection,
        Turn,
        UtterancePlayed,
        WrapUp,
    )
    from workflows.router import Router
    from workflows.router_messages import LLMTurnReport
    from workflows.script import DecisionTier, Outcome, ScriptStep
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
CONTINUE_AS_NEW_PATCH = "continue-as-new-v1"
"""A long call continues as a new run (calls recorded before run on toward Temporal's limits)."""
DNC_PATCH = "do-not-call-list-v1"
"""A caller who asks not to be called again goes on the do-not-call list at once."""
TURN_CONTINUATION_PATCH = "turn-continuation-v1"
"""A turn that continues the last one (`Turn.continues`) is decided in the state before it."""
ENDING_CONTINUATION_PATCH = "ending-continuation-v1"
"""A goodbye the caller talks over to finish their sentence (`REVERSIBLE_ENDINGS`) is undone by
that continuation like any other premature decision, until it has been heard whole."""
CONTINUATION_WAIT = timedelta(seconds=15)
"""After the edge takes a goodbye back, how long the call waits for the caller's continuation
before it ends as the goodbye said (the caller's words are normally seconds away)."""
DNC_TIMEOUT = timedelta(seconds=30)
LINE_CONTROL_TIMEOUT = timedelta(seconds=10)
LINE_CONTROL_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=500))
"""Transfer and hang-up on a live call: the edge holds the line for seconds, not minutes."""


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
        self._edge = EdgeHold(call.call_id, call.timers)
        self._dnc: workflow.ActivityHandle[None] | None = None
        self._wrap_up: WrapUp | None = None
        self._delivering: dict[str, Decision] = {}
        """What the workflow is asking the edge to say outside a turn (query `delivering`)."""
        self._machine: MachineDetection | None = None
        """Twilio heard an answering machine: the playbook's voicemail policy applies."""
        self._machine_handled = False

    @workflow.run
    async def run(self, call: CallInput) -> CallSnapshot:
        started_at = call.carried.started_at if call.carried else workflow.now()
        self._publish()
        try:
            await workflow.wait_condition(
                lambda: self._now.last_seq >= 0 or self._now.ended,
                timeout=call.timers.answer_timeout_s,
                timeout_summary="answer timeout",
            )
        except TimeoutError:
            self._record_unanswered(Outcome.NO_ANSWER)
            self._end(CallStatus.NO_ANSWER, "not answered")
        if self._now.edge_queue and not self._now.ended:
            self._edge.start(self._now.edge_queue, self._edge_lost, self._edge_released)
        await self._converse(started_at)
        if self._now.handing_over and self._now.end_reason == "agent ended the call":
            await self._transfer()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._dnc is not None:
            await self._dnc
        self._edge.release()
        await self._save_record(started_at)
        follow_up = self._now.outcome is Outcome.CALL_BACK_LATER and not call.campaign_id
        if follow_up and self._now.status is CallStatus.ENDED:
            await self._follow_up()
            await self._save_record(started_at)
        return self.snapshot()

    async def _converse(self, started_at: datetime) -> None:
        """Wait on the caller and reprompt a silent one, until the call ends."""
        now = self._now
        while not now.ended:
            if self._run_is_full():
                await self._continue_as_new(started_at)
            await self._await_event()
            if now.ended:
                break
            if self._machine_pending():
                await self._on_machine()
            elif self._wrap_up is not None and now.end_utterance_id is None:
                await self._say_goodbye(self._wrap_up)
            elif now.end_utterance_id is not None:
                await self._await_goodbye()
            elif now.silence_armed:
                await self._await_caller()

    def _run_is_full(self) -> bool:
        full = self._now.updates >= self._call.limits.updates_per_run
        full = full or workflow.info().is_continue_as_new_suggested()
        return full and workflow.patched(CONTINUE_AS_NEW_PATCH)

    async def _continue_as_new(self, started_at: datetime) -> None:
        """Save the record, then hand the call to a new run, between turns: an Update that
        arrives meanwhile (sent to the workflow id) is answered here or by the next run."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._now.ended:
            return
        await self._save_record(started_at, "save call record before a new run")
        saved = len(self._now.transcript)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._now.ended:
            return
        keep = self._call.limits.transcript_lines
        carried = self._now.carry(started_at, saved, keep)
        self._edge.release()
        workflow.continue_as_new(self._call.model_copy(update={"carried": carried}))

    async def _await_event(self) -> None:
        now, seen = self._now, self._now.events
        try:
            await workflow.wait_condition(
                lambda: (
                    now.ended
                    or now.silence_armed
                    or now.end_utterance_id is not None
                    or now.events != seen
                    or self._machine_pending()
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
                lambda: (
                    now.ended
                    or not now.silence_armed
                    or now.silence_clock != clock
                    or self._wrap_up is not None
                    or self._machine_pending()
                ),
                timeout=self._call.timers.reprompt_after_s,
                timeout_summary="no-input reprompt",
            )
            return
        except TimeoutError:
            pass
        now.silence_armed = False
        now.silent_reprompts += 1
        attempt = now.silent_reprompts
        said = [e.text for e in now.transcript if e.speaker == "agent"]
        last_line = said[-1] if said else now.earlier.last_line
        step = self._router.silence(now.state, now.slots, attempt, last_line)
        if not step.end_call:
            now.reprompts += 1
        label = "goodbye after silence" if step.end_call else f"reprompt {attempt}"
        decision = now.apply(step)
        self._publish()
        await self._deliver(decision, label)

    def _machine_pending(self) -> bool:
        return self._machine is not None and not self._machine_handled

    async def _on_machine(self) -> None:
        """An answering machine took the call: leave the playbook's message after the beep
        (cutting off whatever the agent was saying to the greeting), or hang up."""
        amd = self._machine
        assert amd is not None
        self._machine_handled = True
        now = self._now
        if leaves_message(self._call.playbook) and (now.internal_url or now.edge_url):
            step = voicemail_step(self._call.playbook, now.slots, amd.answered_by)
            decision = now.apply(step).model_copy(update={"cut_in": True})
            self._publish()
            await self._deliver(decision, "voicemail message")
            return
        now.outcome = Outcome.VOICEMAIL
        self._end(CallStatus.NO_ANSWER, f"call reached voicemail ({amd.answered_by})")
        await self._end_line("answering machine")

    async def _end_line(self, reason: str) -> None:
        """Hang up the live call through Twilio (nothing to do without its CallSid)."""
        call_sid = self._now.call_sid
        if not call_sid:
            return
        try:
            await workflow.execute_activity_method(
                TelephonyActivities.end_call,
                EndCall(call_id=self._call.call_id, call_sid=call_sid, reason=reason),
                start_to_close_timeout=LINE_CONTROL_TIMEOUT,
                retry_policy=LINE_CONTROL_RETRY,
                summary=f"hang up ({reason})",
            )
        except ActivityError as error:
            workflow.logger.warning("call %s: %s", self._call.call_id, error.cause or error)

    async def _transfer(self) -> None:
        """The transfer line was played: Twilio connects the caller to the person (`<Dial>`),
        and the summary they get is recorded with the call."""
        now = self._now
        assert now.call_sid is not None
        summary = handoff_summary(self._call.playbook, now.state, now.slots, now.transcript)
        try:
            done = await workflow.execute_activity_method(
                TelephonyActivities.transfer_call,
                TransferCall(call_id=self._call.call_id, call_sid=now.call_sid, summary=summary),
                start_to_close_timeout=LINE_CONTROL_TIMEOUT,
                retry_policy=LINE_CONTROL_RETRY,
                summary="transfer to a person",
            )
        except ActivityError as error:
            reason = str(error.cause or error)
            workflow.logger.warning("call %s: transfer failed: %s", self._call.call_id, reason)
            now.handoff = Handoff(summary=summary, transferred=False, error=reason)
            now.end_reason = "transfer failed"
        else:
            now.handoff = Handoff(to=done.to, summary=summary, transferred=True)
            now.end_reason = "transferred to a person"
        self._publish()

    def _record_unanswered(self, outcome: Outcome) -> None:
        """Why nobody answered, as the call's outcome (calls recorded before keep none)."""
        if self._now.outcome is None and workflow.patched(LINE_OUTCOMES_PATCH):
            self._now.outcome = outcome

    async def _say_goodbye(self, wrap: WrapUp) -> None:
        step = ScriptStep(
            state=self._now.state,
            text=wrap.goodbye,
            tier=DecisionTier.RULE,
            reason=wrap.reason,
            end_call=True,
        )
        decision = self._now.apply(step)
        self._publish()
        await self._deliver(decision, "goodbye")

    async def _await_goodbye(self) -> None:
        """The goodbye is heard and the call ends; or the edge takes it back for the caller's
        continuation (`CallState.goodbye_withdrawn`), which may undo it (`rewind`)."""
        now, taken_back = self._now, self._now.goodbyes_taken_back
        try:
            await workflow.wait_condition(
                lambda: now.ended or now.goodbye_withdrawn or now.goodbyes_taken_back != taken_back,
                timeout=END_CALL_GRACE,
                timeout_summary="goodbye playing",
            )
        except TimeoutError:
            self._end(CallStatus.ENDED, "goodbye never reported as played")
            return
        if now.ended or now.goodbyes_taken_back != taken_back:
            return
        try:
            await workflow.wait_condition(
                lambda: now.ended or now.goodbyes_taken_back != taken_back,
                timeout=CONTINUATION_WAIT,
                timeout_summary="caller going on over the goodbye",
            )
        except TimeoutError:
            self._end(CallStatus.ENDED, "goodbye taken back, but no continuation came")

    async def _deliver(self, decision: Decision, label: str) -> None:
        """Have the edge holding the call speak `decision`: through its task queue (see
        `workflows.edge_delivery`), or for older calls by HTTP to its internal listener."""
        now = self._now
        queue = now.edge_queue
        edge_url = now.internal_url or now.edge_url
        by_queue = queue is not None and workflow.patched(EDGE_DELIVERY_PATCH)
        if not by_queue and edge_url is None:
            self._end(CallStatus.ENDED, "no media edge to speak through")
            return
        self._delivering[decision.utterance_id] = decision
        try:
            if by_queue:
                assert queue is not None
                await speak_on_edge(self._call.call_id, queue, decision, self._call.timers, label)
            else:
                assert edge_url is not None
                await workflow.execute_activity_method(
                    TelephonyActivities.deliver_utterance,
                    DeliverUtterance(
                        call_id=self._call.call_id, edge_url=edge_url, decision=decision
                    ),
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

    async def _save_record(self, started_at: datetime, summary: str = "save call record") -> None:
        await workflow.execute_activity_method(
            RecordsActivities.save_call_record,
            SaveCallRecord(
                snapshot=self.snapshot(),
                direction=self._call.direction,
                script_name=self._call.script_name,
                follow_up_of=self._call.follow_up_of,
                campaign_id=self._call.campaign_id,
                started_at=started_at,
                ended_at=self._now.ended_at or (workflow.now() if self._now.ended else None),
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            summary=summary,
        )

    @workflow.update
    async def turn(self, turn: Turn) -> Decision:
        """One caller turn in, the agent's next utterance out: receive, route, apply, publish.

        A turn that continues the last one (the edge ended it too early) is decided in the state
        before the last decision, which is undone (`CallState.rewind`), unless that decision had
        effects beyond the call's state (`call_state.undoable`).

        Its only awaits are the router's local activities, so the turn stays one Update round
        trip. A hang-up that lands meanwhile wins: the turn is refused, not answered.
        """
        update_id = _update_id()
        if (again := self._now.answered_before(update_id)) is not None:
            return again
        async with self._turn_lock:
            self._refuse_if_ended(turn)
            self._refuse_if_machine(turn)
            now = self._now
            rewound = now.can_rewind(turn) and workflow.patched(TURN_CONTINUATION_PATCH)
            if rewound:
                now.rewind()
            now.hear(turn)
            if turn.kind == "start":
                step = self._router.opening(now.slots)
            elif turn.kind == "dtmf":
                step = self._router.keys(now.state, now.slots, turn.digits)
            else:
                transcript = now.routed_transcript() if rewound else now.transcript
                step = await self._router.speech(
                    now.state, now.slots, turn.text, transcript, now.earlier
                )
                self._refuse_if_ended(turn)
                self._refuse_if_machine(turn)
            if turn.kind == "speech":
                decision = now.apply_turn(step, turn.seq, goodbyes=self._goodbye_undoable(step))
            else:
                decision = now.apply(step)
            if self._hands_over(decision):
                decision = decision.model_copy(update={"hand_over": True})
                self._now.handing_over = True
            now.answered = AnsweredUpdate(update_id=update_id, decision=decision)
            self._publish()
            self._add_to_dnc(decision)
            return decision

    @staticmethod
    def _goodbye_undoable(step: ScriptStep) -> bool:
        return reversible_goodbye(step) and workflow.patched(ENDING_CONTINUATION_PATCH)

    def _add_to_dnc(self, decision: Decision) -> None:
        phone = self._call.lead.phone
        if decision.outcome is not Outcome.DO_NOT_CALL or not phone or self._dnc is not None:
            return
        if workflow.patched(DNC_PATCH):
            self._dnc = workflow.start_activity_method(
                CampaignActivities.add_do_not_call,
                DncAdd(
                    phone=phone, reason="caller asked not to be called", call_id=self._call.call_id
                ),
                start_to_close_timeout=DNC_TIMEOUT,
                summary="add to do-not-call list",
            )

    def _hands_over(self, decision: Decision) -> bool:
        """A transfer line on a live call Twilio can move: the edge keeps the line open."""
        transfer = decision.outcome is Outcome.TRANSFER and decision.end_call
        return transfer and bool(self._now.call_sid) and workflow.patched(TRANSFER_PATCH)

    def _refuse_if_machine(self, turn: Turn) -> None:
        """Words from an answering machine (its greeting) get no answer once it is known."""
        if self._machine is not None and turn.kind != "start":
            raise ApplicationError(
                f"call {self._call.call_id} reached an answering machine "
                f"({self._machine.answered_by}); turn {turn.seq} not answered",
                type="AnsweringMachine",
                non_retryable=True,
            )

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
        if now.answered_before(_update_id()) is not None:
            return
        refusal = turn.refusal(self._call.call_id, last_seq=now.last_seq, ended=now.ended)
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.update
    def llm_result(self, report: LLMTurnReport) -> Decision:
        """The edge's account of an LLM turn, checked by the script before the call moves.

        Off the critical path: the caller is already hearing the reply.
        """
        now = self._now
        if (again := now.answered_before(_update_id())) is not None:
            return again
        now.events += 1
        assert now.pending_llm is not None
        step = self._router.settle_llm(now.pending_llm.state, now.pending_llm.slots, report.result)
        decision = now.settle_llm(step, report.result.latency_ms)
        if self._hands_over(decision):
            decision = decision.model_copy(update={"hand_over": True})
            self._now.handing_over = True
        now.answered = AnsweredUpdate(update_id=_update_id(), decision=decision)
        self._publish()
        return decision

    @llm_result.validator
    def validate_llm_result(self, report: LLMTurnReport) -> None:
        if self._now.answered_before(_update_id()) is not None:
            return
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
        if update.call_sid and not now.call_sid:
            now.call_sid = update.call_sid
        if update.answered_by:
            now.answered_by = update.answered_by
        ends_as = update.ends_as(answered=now.last_seq >= 0)
        if ends_as is not None and not now.ended:
            if ends_as is CallStatus.NO_ANSWER:
                self._record_unanswered(update.unanswered_outcome())
            self._end(ends_as, update.reason())

    @workflow.signal
    def machine_detection(self, amd: MachineDetection) -> None:
        """Twilio's asynchronous answering-machine detection: a machine gets the playbook's
        voicemail policy (`_on_machine`); a person, nothing."""
        now = self._now
        now.events += 1
        now.answered_by = amd.answered_by
        if amd.call_sid and not now.call_sid:
            now.call_sid = amd.call_sid
        if amd.machine and not now.ended and self._machine is None:
            self._machine = amd

    @workflow.signal
    def hang_up(self, hang_up: HangUp) -> None:
        self._now.events += 1
        if not self._now.ended:
            self._end(CallStatus.ENDED, hang_up.reason)

    def _edge_lost(self, reason: str, last_alive: datetime) -> None:
        if not self._now.ended:
            self._end(CallStatus.DROPPED, reason, at=last_alive)

    def _edge_released(self, reason: str) -> None:
        """The edge closed the stream; its hang-up signal normally said so first."""
        if not self._now.ended:
            self._end(CallStatus.ENDED, reason)

    @workflow.signal
    def wrap_up(self, wrap: WrapUp) -> None:
        """End the call politely: a goodbye if someone is on the line, else stop ringing."""
        now = self._now
        now.events += 1
        if now.ended or self._wrap_up is not None:
            return
        if now.last_seq < 0 or now.edge_url is None:
            self._end(CallStatus.NO_ANSWER if now.last_seq < 0 else CallStatus.ENDED, wrap.reason)
        else:
            self._wrap_up = wrap

    @workflow.query
    def snapshot(self) -> CallSnapshot:
        return self._now.snapshot()

    @workflow.query
    def delivering(self, utterance_id: str) -> Decision | None:
        """The decision with this id the workflow is delivering now, if any: outside a turn the
        edge speaks only this, so what is said is what the transcript records."""
        return self._delivering.get(utterance_id)

    def _end(self, status: CallStatus, reason: str, at: datetime | None = None) -> None:
        self._now.end(status, reason, at)
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
                earlier_lines=now.earlier.lines,
                handoff=now.handoff,
            )
        )


def _update_id() -> str:
    info = workflow.current_update_info()
    return info.id if info is not None else ""
