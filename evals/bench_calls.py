"""`slot bench`'s calls: simulated callers that also time what they receive.

A `BenchCall` is the phone simulator's reactive call (`simulator.phone.SimulatedCall`) with two
additions for the bench: it stamps each agent media frame with the monotonic time it arrived
(for send jitter, cut into utterances at their `:end` mark or a `clear`), and it notes when its
stream started, so the media clock can be put next to the bench's own clock (fault times). Per
turn figures come from the edge's `agent_utterance` events (`latency_ms`, `evals.bench_turns`);
answered and unanswered turns from what the caller heard (`evals.call_metrics`' rule).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.bench_turns import TurnSample, turn_sample
from evals.edge_flood import LATE_JITTER_MS, GoodCall
from media_edge.events import AgentUtterance, CallerTurn
from simulator.caller_audio import CallerAudio
from simulator.persona import ReactivePersona
from simulator.phone import CallerTiming, CallResult, EventKind, SimulatedCall, edge_access
from simulator.protocol import FRAME_MS, new_sid
from simulator.reactive import ReactivePolicy
from simulator.topics import ScriptTopics
from slot.settings import Settings

MAX_CALL_MS = 180_000
"""The bench caller books in about a minute; one still going after 3 minutes is stuck."""
RETRY_AFTER_S = 1.0


class BenchCall(SimulatedCall):
    """A reactive simulated call that records when each agent frame arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream_started_at: float | None = None
        """Monotonic time of media tick 0 (the stream's start), within a frame."""
        self.bursts: list[list[float]] = []
        """Arrival times of the agent's frames, one list per utterance played."""
        self._burst: list[float] | None = None

    def _emit(self, kind: EventKind, text: str = "") -> None:
        if kind == "stream_started":
            self.stream_started_at = time.monotonic()
        super()._emit(kind, text)

    async def _handle(self, raw: str | bytes) -> None:
        if isinstance(raw, str):
            head = raw[:24]
            if '"media"' in head:
                if self._burst is None:
                    self._burst = []
                    self.bursts.append(self._burst)
                self._burst.append(time.monotonic())
            elif '"clear"' in head or ('"mark"' in head and ':end"' in raw):
                self._burst = None
        await super()._handle(raw)


@dataclass
class CallSample:
    """One bench call's figures, in plain values (JSON-ready)."""

    call_id: str
    started_at: float
    ended_at: float
    turns: list[TurnSample] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)
    """Every Update round trip of the call (the start turn's too)."""
    jitter_ms: list[float] = field(default_factory=list)
    frames: int = 0
    late_frames: int = 0
    caller_turns: list[tuple[float, float | None]] = field(default_factory=list)
    """(monotonic time the caller's words ended, ms until the agent's audio, None if never)."""
    transcribed_by: list[str] = field(default_factory=list)
    """Per caller turn, who transcribed it: the call's STT, or the fallback and why."""
    spoken_by: list[str] = field(default_factory=list)
    """Per agent utterance, who spoke it: the call's TTS, or the fallback and why."""
    error: str | None = None
    hung_up_by: str = ""
    streamed: bool = False
    """The media stream started (False: the call never got through, e.g. the edge was down)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallSample:
        """A sample another process wrote with `dataclasses.asdict`."""
        fields = dict(data)
        fields["turns"] = [TurnSample(**turn) for turn in data["turns"]]
        fields["caller_turns"] = [(end, reply) for end, reply in data["caller_turns"]]
        return cls(**fields)

    @property
    def lost_turns(self) -> list[float]:
        """When the caller's unanswered turns ended (monotonic)."""
        return [end for end, reply in self.caller_turns if reply is None]


def caller_turns(result: CallResult, origin: float) -> list[tuple[float, float | None]]:
    """Each caller turn: when its words ended (monotonic) and how long until agent audio began,
    None when the agent never answered before the next turn or the end (as call_metrics counts)."""
    turns = [line for line in result.lines_spoken if not line.backchannel]
    starts = sorted(segment.start_ms for segment in result.agent_segments)
    out: list[tuple[float, float | None]] = []
    for index, line in enumerate(turns):
        words_end = line.voiced_end_ms if line.voiced_end_ms is not None else line.end_ms
        following = turns[index + 1] if index + 1 < len(turns) else None
        next_start = None
        if following is not None:
            next_start = following.voiced_start_ms or following.start_ms
        reply = next((s for s in starts if s >= words_end), None)
        answered = reply is not None and (next_start is None or reply < next_start)
        at = origin + words_end / 1000.0
        out.append((at, float(reply - words_end) if answered and reply is not None else None))
    return out


def sample_of(
    call: BenchCall, result: CallResult, started_at: float, ended_at: float
) -> CallSample:
    origin = call.stream_started_at or started_at
    sample = CallSample(
        call_id=f"call-{result.call_sid}",
        started_at=started_at,
        ended_at=ended_at,
        error=result.error,
        hung_up_by=result.hung_up_by,
        caller_turns=caller_turns(result, origin),
        streamed=call.stream_started_at is not None,
    )
    for _, event in result.edge_events:
        if isinstance(event, CallerTurn):
            fallback = f" (fallback: {event.stt_fallback})" if event.stt_fallback else ""
            sample.transcribed_by.append(f"{event.stt}{fallback}")
        if isinstance(event, AgentUtterance):
            fallback = f" (fallback: {event.tts_fallback})" if event.tts_fallback else ""
            sample.spoken_by.append(f"{event.tts}{fallback}")
            if "decision" in event.latency_ms:
                sample.update_ms.append(event.latency_ms["decision"])
            turn = turn_sample(event.latency_ms)
            if turn is not None:
                sample.turns.append(turn)
    for burst in call.bursts:
        jitter = GoodCall(sample.call_id, arrivals=burst).jitter_ms()
        sample.jitter_ms += jitter
        sample.frames += len(burst)
        sample.late_frames += sum(1 for j in jitter if j > LATE_JITTER_MS)
    return sample


@dataclass(frozen=True)
class CallPlan:
    """What every bench call shares: the stack's settings, the caller and its audio."""

    settings: Settings
    persona: ReactivePersona
    audio: CallerAudio
    topics: ScriptTopics

    async def call(self) -> CallSample:
        """One call, from the voice webhook to the hang-up, measured; never raises."""
        settings = self.settings
        call_sid = new_sid("CA")
        call = BenchCall(
            settings.edge_url,
            self.persona,
            **edge_access(settings),
            call_sid=call_sid,
            account_sid=settings.twilio_account_sid,
            agent_number=settings.agent_phone_number,
            params={"script": self.topics.playbook.name, "lead_name": self.persona.name},
            policy=ReactivePolicy(self.persona, self.topics),
            caller_audio=self.audio,
            timing=CallerTiming(max_call_ms=MAX_CALL_MS),
        )
        started_at = time.monotonic()
        try:
            result = await call.run()
        except Exception as failure:  # a measurement: one broken call must not end the bench
            return CallSample(
                call_id=f"call-{call_sid}",
                started_at=started_at,
                ended_at=time.monotonic(),
                error=f"{type(failure).__name__}: {failure}",
            )
        return sample_of(call, result, started_at, time.monotonic())


async def run_calls(plan: CallPlan, starts: Sequence[float], began: float) -> list[CallSample]:
    """One call per entry of `starts` (s after monotonic time `began`), all at once: a real
    ramp, not a herd."""

    async def one(start_s: float) -> CallSample:
        await asyncio.sleep(max(0.0, began + start_s - time.monotonic()))
        return await plan.call()

    return list(await asyncio.gather(*(one(start_s) for start_s in starts)))


async def run_slots(
    plan: CallPlan, starts: Sequence[float], began: float, stop: asyncio.Event
) -> list[CallSample]:
    """One caller per entry of `starts` (s after monotonic time `began`), each placing calls
    back to back until `stop` is set (the call in progress then plays out)."""

    async def slot(start_s: float) -> list[CallSample]:
        await asyncio.sleep(max(0.0, began + start_s - time.monotonic()))
        done: list[CallSample] = []
        while not stop.is_set():
            done.append(await plan.call())
            if done[-1].error:  # the edge is down: call again once it may be back
                await asyncio.sleep(RETRY_AFTER_S)
        return done

    per_slot = await asyncio.gather(*(slot(start_s) for start_s in starts))
    return [sample for samples in per_slot for sample in samples]


class LoopLag:
    """How late the bench's own event loop wakes up: late frames it reports while this is high
    are (partly) the simulator's, not the edge's."""

    def __init__(self) -> None:
        self.lag_ms: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        period = FRAME_MS / 1000.0
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(period)
            self.lag_ms.append((loop.time() - before - period) * 1000.0)
