"""Messages that cross the boundary between the media edge and a call's workflow.

They are pydantic models carried by Temporal's pydantic data converter, so a malformed
payload fails loudly at the boundary instead of deep inside a workflow.
"""

from __future__ import annotations

import re
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


class CallTimers(BaseModel):
    """Durations the workflow waits on; from configuration so tests can use seconds."""

    reprompt_after_s: float = 8.0
    max_reprompts: int = 2
    follow_up_delay_s: float = 24 * 3600.0
    answer_timeout_s: float = 60.0


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
    internal_url: str | None = None
    """The edge's internal listener: where the workflow delivers what it says outside a turn."""

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


class CallStatusUpdate(BaseModel):
    """Twilio-style call status (`ringing`, `in-progress`, `completed`, `busy`, `no-answer`...)."""

    status: str
    call_sid: str = ""

    def ends_as(self, *, answered: bool) -> CallStatus | None:
        """The call's end this status means (not answered, or ended), or None if it goes on."""
        status = self.status.lower()
        if status not in _ENDED_TWILIO_STATUSES:
            return None
        if status in _NOT_ANSWERED_TWILIO_STATUSES and not answered:
            return CallStatus.NO_ANSWER
        return CallStatus.ENDED


class HangUp(BaseModel):
    reason: str = "caller hung up"


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
