"""Messages that cross the boundary between the media edge and a call's workflow.

They are pydantic models carried by Temporal's pydantic data converter, so a malformed
payload fails loudly at the boundary instead of deep inside a workflow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from workflows.expectations import ExpectedAnswer
from workflows.router_messages import LLMTurnRequest, RouterConfig
from workflows.script import DecisionTier, Outcome, Playbook, ScriptStep


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


_ENDED_TWILIO_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
_NOT_ANSWERED_TWILIO_STATUSES = frozenset({"busy", "no-answer", "failed", "canceled"})


class CallStatus(StrEnum):
    """Lifecycle of one call; mirrored into the `CallStatus` search attribute."""

    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"
    FOLLOW_UP_SCHEDULED = "follow_up_scheduled"
    NO_ANSWER = "no_answer"
    COMPLETED = "completed"
    DROPPED = "dropped"
    """The media edge holding the call died: the call ended when the edge was last seen alive."""


MAX_NAME_CHARS = 50
MAX_NAME_WORDS = 5
_PLAIN_NAME = re.compile(r"^(?:[^\W\d_]|[ .'’-])+$")


def plain_name(value: str) -> str:
    """`value` if it is a plain name (letters, spaces and . ' -; at most 50 characters and 5
    words), else "": a name from a query string or a CRM row is spoken and put into prompts."""
    name = " ".join(value.split())
    too_long = len(name) > MAX_NAME_CHARS or len(name.split()) > MAX_NAME_WORDS
    if too_long or not _PLAIN_NAME.match(name):
        return ""
    return name if any(char.isalpha() for char in name) else ""


class Lead(BaseModel):
    name: str = ""
    """Untrusted until checked: anything but a plain name is dropped (`plain_name`)."""
    phone: str = ""

    @field_validator("name", mode="after")
    @classmethod
    def _plain_name_only(cls, name: str) -> str:
        return plain_name(name)


class RunLimits(BaseModel):
    """When a long call continues as a new run, snapshotted in the call's input like the
    router's thresholds, so changing them never changes what a running call replays."""

    updates_per_run: int = Field(default=1000, ge=1, le=1500)
    """Temporal refuses an execution's 2,001st Update; a run hands over well before (or when
    the server suggests it, for a history grown large)."""
    transcript_lines: int = Field(default=40, ge=16)
    """The transcript lines a new run carries (enough for the LLM's context and the Web UI);
    older ones are in the call record, and summarised in `EarlierTranscript`."""


class CallTimers(BaseModel):
    """Durations the workflow waits on; from configuration so tests can use seconds."""

    reprompt_after_s: float = 8.0
    max_reprompts: int = 2
    follow_up_delay_s: float = 24 * 3600.0
    answer_timeout_s: float = 60.0
    edge_heartbeat_s: float = 3.0
    """Silence from the edge holding the call after which it may be dead (see `edge_hold`)."""
    edge_reattach_s: float = 5.0
    """How long a live edge has to pick the call up again before the call counts as dropped."""


class CallInput(BaseModel):
    """Everything a call workflow needs, snapshotted at start so replay never reads files."""

    call_id: str
    direction: Direction = Direction.INBOUND
    lead: Lead = Field(default_factory=Lead)
    script_name: str
    playbook: Playbook
    timers: CallTimers = Field(default_factory=CallTimers)
    follow_up_of: str | None = None
    edge_url: str | None = None
    """Base URL of the media edge serving this call; set when the media stream connects."""
    llm_enabled: bool = False
    """Set by whoever starts the call when an LLM is configured (the edge runs tier 2)."""
    router: RouterConfig = Field(default_factory=RouterConfig)
    """The router's thresholds for this call (see `RouterConfig`)."""
    limits: RunLimits = Field(default_factory=RunLimits)
    """When a long call moves to a new run (see `RunLimits`)."""
    carried: CarriedCall | None = None
    """Set on a continued run: the call so far, handed over by the run before."""
    campaign_id: str | None = None
    """The campaign that placed this call; it, not the call, makes the follow-up call."""

    @model_validator(mode="before")
    @classmethod
    def _knowledge_min_score_into_router(cls, data: Any) -> Any:
        """Histories from before `router` carry `knowledge_min_score` at the top level."""
        if isinstance(data, dict) and "knowledge_min_score" in data:
            data = dict(data)
            score = data.pop("knowledge_min_score")
            if "router" not in data:
                data["router"] = {"knowledge_min_score": score}
        return data

    def follow_up(self) -> CallInput:
        """The input of the follow-up call this call promised (an outbound call, same script)."""
        return self.model_copy(
            update={
                "call_id": f"{self.call_id}-followup",
                "direction": Direction.OUTBOUND,
                "follow_up_of": self.call_id,
                "edge_url": None,
                "carried": None,
            }
        )


TurnKind = Literal["start", "speech", "dtmf"]


class Turn(BaseModel):
    """One caller turn sent by the edge as the Update `turn`.

    `seq` increases by one per turn of a call; the validator rejects stale or repeated ones,
    so a retried update after a worker crash never lands twice.
    """

    seq: int = Field(ge=0)
    kind: TurnKind
    text: str = ""
    digits: str = ""
    edge_url: str | None = None
    edge_queue: str | None = None
    """The edge's own task queue, where the workflow learns that the edge still holds the call."""
    internal_url: str | None = None
    """The edge's internal listener: where the workflow delivers what it says outside a turn."""
    call_sid: str | None = None
    """Twilio's CallSid (from the stream's `start`): the live call the workflow controls."""
    continues: int | None = None
    """The seq of the caller turn this one continues: the caller went on talking just after the
    edge ended that turn, so `text` holds both turns' words and the call decides them in the
    state it was in before that turn's decision (`CallState.rewind_for`)."""

    def refusal(self, call_id: str, *, last_seq: int, ended: bool) -> str | None:
        """Why the call must refuse this turn (the Update validator's rule), or None."""
        if ended:
            return f"call {call_id} has ended; turn {self.seq} refused"
        if self.seq <= last_seq:
            return f"stale turn {self.seq} for call {call_id}: turn {last_seq} already answered"
        if self.seq != last_seq + 1:
            return f"turn {self.seq} for call {call_id} skips ahead: expected {last_seq + 1}"
        if (self.kind == "start") != (self.seq == 0):
            return f"turn {self.seq} of call {call_id}: only turn 0 may be kind 'start'"
        if self.kind == "speech" and not self.text.strip():
            return f"speech turn {self.seq} of call {call_id} has no text"
        if self.kind == "dtmf" and not self.digits:
            return f"dtmf turn {self.seq} of call {call_id} has no digits"
        return None


class Decision(BaseModel):
    """What the agent says next, and why."""

    utterance_id: str
    text: str
    state: str
    end_call: bool = False
    outcome: Outcome | None = None
    tier: DecisionTier
    reason: str
    cacheable: bool = True
    """Fixed script lines are cacheable audio; generated text is not."""
    latency_ms: dict[str, float] = Field(default_factory=dict)
    """Time the router spent inside the workflow: `classify`, `retrieve` (local activities)."""
    citations: list[str] = Field(default_factory=list)
    """Knowledge-base passages the text is based on."""
    expect: ExpectedAnswer | None = None
    """What the caller's answer to this line looks like, so the edge can judge a pause itself
    (script-aware endpointing); None after the call's last line."""
    llm_request: LLMTurnRequest | None = None
    """Tier 2: the edge streams the LLM's reply for this request instead of speaking `text`
    (which is then the safe line, for an edge that cannot), and reports it with `llm_result`."""
    hand_over: bool = False
    """The last line before a transfer: the edge keeps the line open once it is played, for
    Twilio to take the call to the person (`<Dial>`), instead of hanging up."""
    cut_in: bool = False
    """Spoken at once, cutting off what the agent is saying (a voicemail after the beep)."""

    @classmethod
    def of(
        cls, step: ScriptStep, utterance_id: str, expect: ExpectedAnswer | None = None
    ) -> Decision:
        """The utterance for a step; generated text (knowledge, LLM) is not cacheable audio."""
        return cls(
            utterance_id=utterance_id,
            text=step.text,
            state=step.state,
            end_call=step.end_call,
            outcome=step.outcome,
            tier=step.tier,
            reason=step.reason,
            cacheable=step.tier not in (DecisionTier.KNOWLEDGE, DecisionTier.LLM),
            latency_ms=dict(step.latency_ms),
            citations=list(step.citations),
            llm_request=step.llm_request,
            expect=expect,
        )


class UtterancePlayed(BaseModel):
    """Signal from the edge after an agent utterance finished or was cut off by barge-in."""

    utterance_id: str
    interrupted: bool = False
    heard_text: str
    played_ms: int
    latency_ms: dict[str, float] = Field(default_factory=dict)
    withdrawn: bool = False
    """Cut off (or never played) because the caller went on with the turn it answered: the
    edge sends that turn's continuation next (`Turn.continues`)."""


class CallStatusUpdate(BaseModel):
    """Twilio-style call status (`ringing`, `in-progress`, `completed`, `busy`, `no-answer`...)."""

    status: str
    call_sid: str = ""
    answered_by: str = ""
    """Twilio's answering machine detection (`human`, `machine_start`, ...), when enabled."""

    def reason(self) -> str:
        if self.answered_by.startswith("machine"):
            return "call reached voicemail"
        return f"call {self.status.lower()}"

    def ends_as(self, *, answered: bool) -> CallStatus | None:
        """The call's end this status means (not answered, or ended), or None if it goes on."""
        status = self.status.lower()
        if self.answered_by.startswith("machine") and not answered:
            return CallStatus.NO_ANSWER
        if status not in _ENDED_TWILIO_STATUSES:
            return None
        if status in _NOT_ANSWERED_TWILIO_STATUSES and not answered:
            return CallStatus.NO_ANSWER
        return CallStatus.ENDED

    def unanswered_outcome(self) -> Outcome:
        """The outcome of a call that ends with this status before anyone answered."""
        if self.answered_by.startswith("machine") or self.answered_by == "fax":
            return Outcome.VOICEMAIL
        return Outcome.BUSY if self.status.lower() == "busy" else Outcome.NO_ANSWER


MACHINE_RESULTS = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)


class MachineDetection(BaseModel):
    """Twilio's asynchronous answering-machine detection result (`AsyncAmdStatusCallback`)."""

    answered_by: str
    """human, machine_start, machine_end_beep, machine_end_silence, machine_end_other, fax,
    unknown."""
    call_sid: str = ""
    detection_ms: int | None = None

    @property
    def machine(self) -> bool:
        return self.answered_by in MACHINE_RESULTS


class Handoff(BaseModel):
    """A call transferred to a person: where to, the summary the person gets, and whether
    Twilio took the call."""

    to: str = ""
    summary: str
    transferred: bool
    error: str = ""


class HangUp(BaseModel):
    reason: str = "caller hung up"


class WrapUp(BaseModel):
    """Ask a call to end politely (its campaign was cancelled): say `goodbye` if answered."""

    reason: str
    goodbye: str


class TranscriptEntry(BaseModel):
    speaker: Literal["agent", "caller"]
    text: str
    seq: int | None = None
    utterance_id: str | None = None
    state: str | None = None
    tier: DecisionTier | None = None
    reason: str | None = None
    interrupted: bool = False
    heard_text: str | None = None
    latency_ms: dict[str, float] = Field(default_factory=dict)
    citations: list[str] = Field(default_factory=list)
    """Ids of the knowledge-base passages this agent line used."""
    withdrawn: bool = False
    """Undone by the caller's continuation: this caller line was cut short, or this agent line
    answered only its first part. Kept for the record; the router no longer reads it."""

    @classmethod
    def agent(cls, step: ScriptStep, utterance_id: str) -> TranscriptEntry:
        return cls(
            speaker="agent",
            text=step.text,
            utterance_id=utterance_id,
            state=step.state,
            tier=step.tier,
            reason=step.reason,
            latency_ms=dict(step.latency_ms),
            citations=list(step.citations),
        )

    def settle(self, step: ScriptStep, latency_ms: dict[str, float]) -> Decision:
        """Amend an LLM turn's line with its checked result; the final decision for the edge."""
        self.text = step.text or self.text
        self.state = step.state
        self.reason = f"{self.reason}; {step.reason}" if self.reason else step.reason
        self.citations = list(step.citations)
        self.latency_ms = {**self.latency_ms, **latency_ms}
        assert self.utterance_id is not None
        return Decision(
            utterance_id=self.utterance_id,
            text=self.text,
            state=step.state,
            end_call=step.end_call,
            outcome=step.outcome,
            tier=DecisionTier.LLM,
            reason=self.reason,
            cacheable=False,
            citations=self.citations,
        )


class CallSnapshot(BaseModel):
    """Answer to the `snapshot` query: what a person inspecting a call wants to see."""

    call_id: str
    status: CallStatus
    state: str
    outcome: Outcome | None
    slots: dict[str, str]
    transcript: list[TranscriptEntry]
    reprompts: int
    follow_up_call_id: str | None = None
    end_reason: str = ""
    earlier_lines: int = 0
    """Lines of a long call said before `transcript`, moved into the call record by earlier
    runs (`transcript` continues from line `earlier_lines`)."""
    answered_by: str = ""
    """Twilio's answering-machine detection result, when it ran (outbound calls)."""
    handoff: Handoff | None = None
    """Set when the call was transferred to a person."""


class EarlierTranscript(BaseModel):
    """The transcript lines a long call moved into its call record, summarised to what the
    call still needs from them: how many, the states the agent asked (the script skips a
    question already asked), its last line, and its misses in a row in the last state."""

    lines: int = 0
    asked: list[str] = Field(default_factory=list)
    last_line: str = ""
    last_state: str | None = None
    last_state_misses: int = 0
    """Fallback lines among the agent's last lines in a row in `last_state`."""

    def fold(self, moved: Sequence[TranscriptEntry]) -> EarlierTranscript:
        """This summary with `moved`, the lines that followed it, added."""
        asked = set(self.asked)
        last_line, last_state, misses = self.last_line, self.last_state, self.last_state_misses
        for entry in moved:
            if entry.speaker != "agent":
                continue
            if entry.state:
                asked.add(entry.state)
            if entry.state != last_state:
                last_state, misses = entry.state, 0
            if entry.tier is DecisionTier.FALLBACK:
                misses += 1
            last_line = entry.text
        return EarlierTranscript(
            lines=self.lines + len(moved),
            asked=sorted(asked),
            last_line=last_line,
            last_state=last_state,
            last_state_misses=misses,
        )


class PendingLLMTurn(BaseModel):
    """A turn handed to the edge's LLM; settled by the Update `llm_result`."""

    utterance_id: str
    state: str
    slots: dict[str, str]


class AnsweredUpdate(BaseModel):
    """A run's last answered Update (`turn`, `llm_result`): the edge's retry of it (same Update
    id) that reaches the next run gets the same answer there, not a refusal as stale."""

    update_id: str
    decision: Decision


class CarriedCall(BaseModel):
    """A live call handed to its next run (continue-as-new): all its state, and of its
    transcript the last lines only (the rest is in the call record)."""

    run: int
    """The number of the run that starts from this (the first run is 1)."""
    started_at: datetime
    status: CallStatus
    state: str
    slots: dict[str, str]
    outcome: Outcome | None = None
    transcript: list[TranscriptEntry]
    earlier: EarlierTranscript
    last_seq: int
    utterances: int
    last_utterance_id: str | None = None
    end_utterance_id: str | None = None
    edge_url: str | None = None
    edge_queue: str | None = None
    """The edge's own task queue: the next run holds the call there again."""
    internal_url: str | None = None
    """The edge's internal listener, for a call delivered to by HTTP (see `edge_delivery`)."""
    silence_clock: int = 0
    silence_armed: bool = False
    silent_reprompts: int = 0
    reprompts: int = 0
    events: int = 0
    pending_llm: PendingLLMTurn | None = None
    answered: AnsweredUpdate | None = None
    call_sid: str | None = None
    answered_by: str = ""
    handing_over: bool = False


CallInput.model_rebuild()
