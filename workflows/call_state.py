"""What one call knows (script state, slots, outcome, transcript, lifecycle) and how events change
it: pure, with no Temporal calls, so the workflow's handlers stay "receive, route, apply, publish".

The workflow publishes (search attributes, current details) after every change; nothing here
reads a clock or awaits. A long call's state is carried to its next run (`carry`, and back from
`CallInput.carried`) with the transcript's last lines and a summary of the earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from workflows.expectations import expected_answer
from workflows.messages import (
    AnsweredUpdate,
    CallInput,
    CallSnapshot,
    CallStatus,
    CarriedCall,
    Decision,
    EarlierTranscript,
    Handoff,
    PendingLLMTurn,
    TranscriptEntry,
    Turn,
    UtterancePlayed,
)
from workflows.script import REVERSIBLE_ENDINGS, Outcome, ScriptStep, opening_state


@dataclass(frozen=True)
class BeforeDecision:
    """Where the call stood before the decision on caller turn `seq` (spoken as
    `utterance_id`): what a continuation of that turn goes back to."""

    seq: int
    utterance_id: str
    state: str
    slots: dict[str, str] = field(default_factory=dict)
    outcome: Outcome | None = None
    goodbye: bool = False
    """The decision was a goodbye (`REVERSIBLE_ENDINGS`): undoing it keeps the call going."""


def undoable(step: ScriptStep, *, goodbyes: bool = False) -> bool:
    """Whether a continuation may undo this step: a move and a question; with `goodbyes`
    (patch `ending-continuation-v1`) also a goodbye whose outcome is in `REVERSIBLE_ENDINGS`.
    Any other step with effects outside the call's state (another outcome, a transfer, an LLM
    reply streaming) stands, and the continuation is then a normal turn."""
    if step.llm_request is not None:
        return False
    if step.end_call and goodbyes:
        return step.outcome in REVERSIBLE_ENDINGS
    return not step.end_call and step.outcome is None


def reversible_goodbye(step: ScriptStep) -> bool:
    return step.end_call and step.outcome in REVERSIBLE_ENDINGS and step.llm_request is None


class CallState:
    def __init__(self, call: CallInput) -> None:
        self.call_id = call.call_id
        self.playbook = call.playbook
        self.status = CallStatus.RINGING
        self.state = opening_state(call.playbook, follow_up=bool(call.follow_up_of))
        self.slots: dict[str, str] = {}
        if call.lead.name:
            self.slots["lead_name"] = call.lead.name
        self.outcome: Outcome | None = None
        self.transcript: list[TranscriptEntry] = []
        self.last_seq = -1
        self.utterances = 0
        self.last_utterance_id: str | None = None
        self.end_utterance_id: str | None = None
        self.edge_url = call.edge_url
        self.edge_queue: str | None = None
        self.internal_url: str | None = None
        self.ended = False
        self.end_reason = ""
        self.ended_at: datetime | None = None
        """When the call really ended, if not when the workflow learnt it (a dead edge)."""
        self.silence_clock = 0
        """Bumped when an utterance finished playing and the caller's silence starts to count."""
        self.silence_armed = False
        self.silent_reprompts = 0
        self.reprompts = 0
        self.events = 0
        """Bumped by every turn and signal: the idle timer restarts on any of them."""
        self.follow_up_call_id: str | None = None
        self.pending_llm: PendingLLMTurn | None = None
        self.run = 1
        self.updates = 0
        """Updates this run accepted: Temporal allows 2,000 per run, so a long call moves on."""
        self.earlier = EarlierTranscript()
        self.answered: AnsweredUpdate | None = None
        self.carried_answer: AnsweredUpdate | None = None
        """The last Update the run before answered (see `AnsweredUpdate`)."""
        self.call_sid: str | None = None
        """Twilio's id of the live call (from the stream's start or a status callback)."""
        self.answered_by = ""
        self.handoff: Handoff | None = None
        self.handing_over = False
        """The transfer line was decided: once it is played, the call goes to a person."""
        self.before_decision: BeforeDecision | None = None
        self.goodbye_withdrawn = False
        """The edge took the goodbye back for a continuation that has not arrived yet."""
        self.goodbyes_taken_back = 0
        """Goodbyes a continuation undid (the workflow stops waiting for them to be heard)."""
        """Where the call stood before the last decision, while a continuation may undo it
        (not carried to a next run: there a continuation is a normal turn)."""
        if call.carried is not None:
            self._resume(call.carried)

    def _resume(self, carried: CarriedCall) -> None:
        self.run = carried.run
        self.status = carried.status
        self.state = carried.state
        self.slots = dict(carried.slots)
        self.outcome = carried.outcome
        self.transcript = list(carried.transcript)
        self.earlier = carried.earlier
        self.last_seq = carried.last_seq
        self.utterances = carried.utterances
        self.last_utterance_id = carried.last_utterance_id
        self.end_utterance_id = carried.end_utterance_id
        self.edge_url = carried.edge_url
        self.edge_queue = carried.edge_queue
        self.internal_url = carried.internal_url
        self.silence_clock = carried.silence_clock
        self.silence_armed = carried.silence_armed
        self.silent_reprompts = carried.silent_reprompts
        self.reprompts = carried.reprompts
        self.events = carried.events
        self.pending_llm = carried.pending_llm
        self.carried_answer = carried.answered
        self.call_sid = carried.call_sid
        self.answered_by = carried.answered_by
        self.handing_over = carried.handing_over

    def carry(self, started_at: datetime, saved_lines: int, keep_lines: int) -> CarriedCall:
        """The call for its next run: the transcript's last `keep_lines` (and any line not among
        the first `saved_lines`, which the call record holds), the older ones summarised."""
        cut = min(saved_lines, max(0, len(self.transcript) - keep_lines))
        return CarriedCall(
            run=self.run + 1,
            started_at=started_at,
            status=self.status,
            state=self.state,
            slots=dict(self.slots),
            outcome=self.outcome,
            transcript=self.transcript[cut:],
            earlier=self.earlier.fold(self.transcript[:cut]),
            last_seq=self.last_seq,
            utterances=self.utterances,
            last_utterance_id=self.last_utterance_id,
            end_utterance_id=self.end_utterance_id,
            edge_url=self.edge_url,
            edge_queue=self.edge_queue,
            internal_url=self.internal_url,
            silence_clock=self.silence_clock,
            silence_armed=self.silence_armed,
            silent_reprompts=self.silent_reprompts,
            reprompts=self.reprompts,
            events=self.events,
            pending_llm=self.pending_llm,
            answered=self.answered,
            call_sid=self.call_sid,
            answered_by=self.answered_by,
            handing_over=self.handing_over,
        )

    def answered_before(self, update_id: str) -> Decision | None:
        """The answer the run before gave this Update, when it is the edge's retry of it."""
        carried = self.carried_answer
        return carried.decision if carried and carried.update_id == update_id else None

    def hear(self, turn: Turn) -> None:
        """A turn arrived: the caller is not silent, and what they said joins the transcript."""
        self.events += 1
        self.updates += 1
        self.last_seq = turn.seq
        self.silence_armed = False
        if turn.edge_url:
            self.edge_url = turn.edge_url
        if turn.edge_queue:
            self.edge_queue = turn.edge_queue
        if turn.internal_url:
            self.internal_url = turn.internal_url
        if turn.call_sid:
            self.call_sid = turn.call_sid
        if turn.kind == "start":
            self.status = CallStatus.IN_PROGRESS
            return
        self.silent_reprompts = 0
        self.pending_llm = None
        text = f"[keys {turn.digits}]" if turn.kind == "dtmf" else turn.text
        self.transcript.append(TranscriptEntry(speaker="caller", text=text, seq=turn.seq))

    def apply_turn(self, step: ScriptStep, seq: int, *, goodbyes: bool = False) -> Decision:
        """`apply` a caller turn's step, keeping where the call stood before it if it is
        `undoable` (`goodbyes`: a reversible goodbye is too)."""
        before = BeforeDecision(seq, "", self.state, dict(self.slots), self.outcome)
        decision = self.apply(step)
        if undoable(step, goodbyes=goodbyes):
            self.before_decision = BeforeDecision(
                seq,
                decision.utterance_id,
                before.state,
                before.slots,
                before.outcome,
                goodbye=step.end_call,
            )
        return decision

    def can_rewind(self, turn: Turn) -> bool:
        """`turn` continues the caller turn whose decision is still the last thing decided and
        can be undone."""
        before = self.before_decision
        return (
            before is not None
            and turn.kind == "speech"
            and turn.continues == before.seq
            and self.last_seq == before.seq
            and self.last_utterance_id == before.utterance_id
        )

    def rewind(self) -> None:
        """Undo the last decision for its turn's continuation: the state, slots and outcome go
        back to before it; the cut-short caller line and the line that answered it are kept
        for the record, marked withdrawn."""
        before = self.before_decision
        assert before is not None
        self.before_decision = None
        self.state = before.state
        self.slots = dict(before.slots)
        self.outcome = before.outcome
        if before.goodbye:
            self.end_utterance_id = None
            self.goodbye_withdrawn = False
            self.goodbyes_taken_back += 1
        for entry in self.transcript:
            if entry.utterance_id == before.utterance_id or (
                entry.speaker == "caller" and entry.seq == before.seq
            ):
                entry.withdrawn = True

    def routed_transcript(self) -> list[TranscriptEntry]:
        """The transcript the router reads: without withdrawn lines."""
        return [entry for entry in self.transcript if not entry.withdrawn]

    def apply(self, step: ScriptStep) -> Decision:
        """Move the call as the step says; the utterance the edge speaks for it."""
        self.before_decision = None
        self.utterances += 1
        utterance_id = f"{self.call_id}-u{self.utterances}"
        self.state = step.state
        self.slots.update(step.slots)
        if step.outcome is not None:
            self.outcome = step.outcome
        self.last_utterance_id = utterance_id
        if step.end_call:
            self.end_utterance_id = utterance_id
        self.transcript.append(TranscriptEntry.agent(step, utterance_id))
        if step.llm_request is not None:
            self.pending_llm = PendingLLMTurn(
                utterance_id=utterance_id, state=self.state, slots=dict(self.slots)
            )
        expect = (
            None
            if step.end_call
            else expected_answer(self.playbook, step.state, step.text, self.slots)
        )
        return Decision.of(step, utterance_id, expect)

    def settle_llm(self, step: ScriptStep, latency_ms: dict[str, float]) -> Decision:
        """The checked result of the LLM turn in flight; the call moves only if it has not moved
        since (a later turn wins), and ends at once if the goodbye was already heard."""
        pending = self.pending_llm
        assert pending is not None
        self.pending_llm = None
        self.updates += 1
        entry = next(e for e in reversed(self.transcript) if e.utterance_id == pending.utterance_id)
        decision = entry.settle(step, latency_ms)
        if self.state == pending.state:
            self.state = step.state
            self.slots.update(step.slots)
            if step.outcome is not None:
                self.outcome = step.outcome
            if step.end_call:
                self.end_utterance_id = pending.utterance_id
                if entry.heard_text is not None:
                    self.end(CallStatus.ENDED, "agent ended the call")
        return decision

    def played(self, played: UtterancePlayed) -> None:
        """An utterance finished or was cut off: what was heard; the goodbye ends the call, the
        last line starts the caller's silence."""
        self.events += 1
        for entry in reversed(self.transcript):
            if entry.utterance_id == played.utterance_id:
                entry.interrupted = played.interrupted
                entry.heard_text = played.heard_text
                entry.latency_ms = {**entry.latency_ms, **played.latency_ms}
                break
        if played.utterance_id == self.end_utterance_id and self._goodbye_taken_back(played):
            self.goodbye_withdrawn = True
        elif played.utterance_id == self.end_utterance_id:
            self.end(CallStatus.ENDED, "agent ended the call")
        elif played.utterance_id == self.last_utterance_id and not played.interrupted:
            self.silence_clock += 1
            self.silence_armed = True

    def _goodbye_taken_back(self, played: UtterancePlayed) -> bool:
        """The edge withdrew the goodbye for the caller's continuation of the turn it answered,
        and that decision can still be undone: the call goes on until the continuation comes."""
        before = self.before_decision
        return (
            played.withdrawn
            and before is not None
            and before.goodbye
            and before.utterance_id == played.utterance_id
        )

    def end(self, status: CallStatus, reason: str, at: datetime | None = None) -> None:
        self.ended = True
        self.end_reason = reason
        self.ended_at = at
        self.silence_armed = False
        self.status = status
        if self.outcome is None and status is CallStatus.ENDED and self.last_seq >= 0:
            self.outcome = Outcome.HUNG_UP

    def snapshot(self) -> CallSnapshot:
        return CallSnapshot(
            call_id=self.call_id,
            status=self.status,
            state=self.state,
            outcome=self.outcome,
            slots=dict(self.slots),
            transcript=list(self.transcript),
            reprompts=self.reprompts,
            follow_up_call_id=self.follow_up_call_id,
            earlier_lines=self.earlier.lines,
            end_reason=self.end_reason,
            answered_by=self.answered_by,
            handoff=self.handoff,
        )
