"""What a campaign is and how it decides, as pure functions: calling windows in each lead's own
time zone, the backoff between attempts, what one call's end means for its lead, the counters.

The messages are pydantic models so an API can start, steer and read a campaign with the same
types the workflow uses; the workflow only adds timers, children and activities around them.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator

from workflows.messages import CallSnapshot, CallStatus, CallTimers
from workflows.script import Outcome, Playbook

WEEKDAYS_MON_FRI = [0, 1, 2, 3, 4]


class CampaignLead(BaseModel):
    """One person to call; `lead_id` is unique within the campaign and names its calls."""

    lead_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:@+-]{1,80}$")
    name: str = ""
    phone: str = Field(min_length=1)
    time_zone: str = "America/New_York"

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class CallingWindow(BaseModel):
    """When a lead may be called, in the lead's local time: [start, end) on `weekdays`
    (0 = Monday)."""

    start: time = time(8, 0)
    end: time = time(21, 0)
    weekdays: list[int] = Field(default_factory=lambda: list(WEEKDAYS_MON_FRI))

    @model_validator(mode="after")
    def _sane(self) -> CallingWindow:
        if self.start >= self.end:
            raise ValueError(f"calling window start {self.start} is not before end {self.end}")
        if not self.weekdays or any(day not in range(7) for day in self.weekdays):
            raise ValueError(f"weekdays must be 0 (Monday) to 6, got {self.weekdays}")
        return self

    def next_open(self, now: datetime, time_zone: str) -> datetime:
        """`now` if the window is open for a lead in `time_zone`, else when it next opens (UTC
        aware, like `now`)."""
        zone = ZoneInfo(time_zone)
        local = now.astimezone(zone)
        for days in range(8):
            day = local.date() + timedelta(days=days)
            if day.weekday() not in self.weekdays:
                continue
            opens = datetime.combine(day, self.start, tzinfo=zone)
            closes = datetime.combine(day, self.end, tzinfo=zone)
            if days == 0 and opens <= local < closes:
                return now
            if local < opens:
                return opens.astimezone(now.tzinfo)
        raise AssertionError("a window with a weekday opens within a week")

    def is_open(self, moment: datetime, time_zone: str) -> bool:
        return self.next_open(moment, time_zone) == moment


class AttemptResult(StrEnum):
    """What one call of a lead came to."""

    BOOKED = "booked"
    CALL_BACK = "call_back"
    DO_NOT_CALL = "do_not_call"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    VOICEMAIL = "voicemail"
    CANCELLED = "cancelled"


NOT_ANSWERED = frozenset(
    {AttemptResult.NO_ANSWER, AttemptResult.BUSY, AttemptResult.FAILED, AttemptResult.VOICEMAIL}
)


def attempt_result(snapshot: CallSnapshot) -> AttemptResult:
    """Read a finished call: the outcome if it was answered, else why it was not."""
    if snapshot.status is CallStatus.NO_ANSWER:
        reason = snapshot.end_reason
        if "voicemail" in reason:
            return AttemptResult.VOICEMAIL
        if "busy" in reason:
            return AttemptResult.BUSY
        if "failed" in reason:
            return AttemptResult.FAILED
        if "campaign" in reason:
            return AttemptResult.CANCELLED
        return AttemptResult.NO_ANSWER
    return {
        Outcome.BOOKED: AttemptResult.BOOKED,
        Outcome.CALL_BACK_LATER: AttemptResult.CALL_BACK,
        Outcome.DO_NOT_CALL: AttemptResult.DO_NOT_CALL,
        Outcome.VOICEMAIL: AttemptResult.VOICEMAIL,
    }.get(snapshot.outcome or Outcome.NO_RESPONSE, AttemptResult.ANSWERED)


class Retries(BaseModel):
    """Attempts for an unanswered lead: `max_attempts` calls in all, `first_delay_s` after the
    first, growing by `multiplier` up to `max_delay_s`."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    first_delay_s: float = Field(default=3600.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1.0)
    max_delay_s: float = Field(default=24 * 3600.0, gt=0)
    retry_on: list[AttemptResult] = Field(default_factory=lambda: sorted(NOT_ANSWERED))

    def delay_after(self, attempt: int) -> timedelta | None:
        """The wait before attempt `attempt + 1`, or None when `attempt` was the last."""
        if attempt >= self.max_attempts:
            return None
        seconds = self.first_delay_s * self.multiplier ** (attempt - 1)
        return timedelta(seconds=min(seconds, self.max_delay_s))


class LeadJob(BaseModel):
    """A call still to make for a lead: its attempt number, when it is due (None: now), and the
    call it follows up (a caller who asked to be called back)."""

    lead: CampaignLead
    attempt: int = 1
    due: datetime | None = None
    follow_up_of: str | None = None
    follow_ups: int = 0

    def call_id(self, campaign_id: str) -> str:
        kind = f"f{self.follow_ups}a" if self.follow_ups else "a"
        return f"{campaign_id}-{self.lead.lead_id}-{kind}{self.attempt}"


class CampaignProgress(BaseModel):
    """The campaign's counters (the `progress` query): leads, dials and how they ended."""

    leads: int = 0
    leads_done: int = 0
    dialled: int = 0
    answered: int = 0
    booked: int = 0
    call_backs: int = 0
    do_not_call: int = 0
    no_answer: int = 0
    busy: int = 0
    failed: int = 0
    voicemail: int = 0
    cancelled: int = 0
    skipped_dnc: int = 0
    retries_scheduled: int = 0
    follow_ups_scheduled: int = 0
    in_flight: int = 0
    waiting: int = 0
    paused: bool = False
    cancelling: bool = False
    runs: int = 1

    def count(self, result: AttemptResult) -> None:
        field = {
            AttemptResult.BOOKED: "booked",
            AttemptResult.CALL_BACK: "call_backs",
            AttemptResult.DO_NOT_CALL: "do_not_call",
            AttemptResult.NO_ANSWER: "no_answer",
            AttemptResult.BUSY: "busy",
            AttemptResult.FAILED: "failed",
            AttemptResult.VOICEMAIL: "voicemail",
            AttemptResult.CANCELLED: "cancelled",
        }.get(result)
        if result not in NOT_ANSWERED and result is not AttemptResult.CANCELLED:
            self.answered += 1
        if field is not None:
            setattr(self, field, getattr(self, field) + 1)

    def details(self, campaign_id: str, script_name: str) -> str:
        """The campaign's current details in the Web UI."""
        state = "cancelling" if self.cancelling else "paused" if self.paused else "running"
        return "\n".join(
            [
                f"**Campaign {campaign_id}** · {script_name} · {state} · run {self.runs}",
                "",
                f"- leads {self.leads_done}/{self.leads} done, {self.waiting} waiting, "
                f"{self.in_flight} on the phone",
                f"- dialled {self.dialled}, answered {self.answered}, booked {self.booked}, "
                f"call backs {self.call_backs}, do-not-call {self.do_not_call}",
                f"- no answer {self.no_answer}, busy {self.busy}, failed {self.failed}, "
                f"voicemail {self.voicemail}, skipped (DNC) {self.skipped_dnc}",
            ]
        )


class StoredLeads(BaseModel):
    """Where a campaign whose leads live in the database (the `leads` table) has read to: the
    last row id read (`after`), how many it has read of `count`, and whether none are left.
    Only this cursor travels in the workflow input, so a campaign's size is not capped by
    Temporal's 2 MB payload limit."""

    count: int = Field(ge=0)
    after: int = 0
    read: int = 0
    exhausted: bool = False
    page_size: int = Field(default=200, ge=1, le=1000)

    @property
    def unread(self) -> int:
        return 0 if self.exhausted else max(self.count - self.read, 0)


class NextLeads(BaseModel):
    """A page of a campaign's stored leads: up to `limit` rows after row id `after`."""

    campaign_id: str
    after: int
    limit: int


class LeadPage(BaseModel):
    """Leads in row order, opened; `last` is the last row's id (the next page's `after`)."""

    leads: list[CampaignLead]
    last: int


class CampaignCarry(BaseModel):
    """What a campaign hands its next run (continue-as-new): the calls still to make (leads
    not yet started come from `CampaignInput.leads`, then `CampaignInput.stored`) and the
    counters."""

    queue: list[LeadJob] = Field(default_factory=list)
    progress: CampaignProgress = Field(default_factory=CampaignProgress)


class CampaignInput(BaseModel):
    """A campaign as an API starts it; snapshotted in the workflow's input."""

    campaign_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:@+-]{1,80}$")
    script_name: str
    playbook: Playbook
    leads: list[CampaignLead] = Field(default_factory=list)
    """Leads inline: a small campaign, or the rest of a page read from the database."""
    stored: StoredLeads | None = None
    """The leads table holds (more of) the campaign's leads, read a page at a time."""
    window: CallingWindow = Field(default_factory=CallingWindow)
    calls_per_second: float = Field(default=1.0, gt=0)
    max_concurrent_calls: int = Field(default=5, ge=1)
    retries: Retries = Field(default_factory=Retries)
    max_follow_ups: int = Field(default=1, ge=0)
    timers: CallTimers = Field(default_factory=CallTimers)
    dials_per_run: int = Field(default=500, ge=1)
    """Dials before the campaign continues as new (or sooner, when the server suggests it)."""
    carried: CampaignCarry | None = None

    @model_validator(mode="after")
    def _unique_leads(self) -> CampaignInput:
        seen: set[str] = set()
        for lead in self.leads:
            if lead.lead_id in seen:
                raise ValueError(f"lead id {lead.lead_id!r} appears twice")
            seen.add(lead.lead_id)
        return self


class PauseCampaign(BaseModel):
    reason: str = "paused"


class CancelCampaign(BaseModel):
    reason: str = "campaign cancelled"
    goodbye: str = "I'm sorry, I have to end our call here. Thank you for your time, goodbye!"


class ReserveDial(BaseModel):
    """A request for the next shared dialling slot, on the workflow's clock."""

    at: datetime
    calls_per_second: float


CampaignEventKind = Literal[
    "started", "dialled", "ended", "paused", "resumed", "cancelling", "finished"
]


class CampaignEvent(BaseModel):
    """One change in a campaign, for its live stream (`slot watch --campaign`): a dial, how a
    call ended, a pause; each carries the counters as they stand after it."""

    kind: CampaignEventKind
    campaign_id: str
    progress: CampaignProgress
    call_id: str | None = None
    lead_id: str | None = None
    attempt: int | None = None
    result: AttemptResult | None = None


class PublishCampaignEvents(BaseModel):
    campaign_id: str
    events: list[CampaignEvent]


class DncCheck(BaseModel):
    phone: str


class DncAdd(BaseModel):
    phone: str
    reason: str
    call_id: str | None = None
