"""Live events of each call on this edge, with a bounded replay for late subscribers.

Each event is a pydantic model with a literal `type` (a discriminated union, `CallEvent`), sent
over `/calls/{id}/events` as JSON; consumers (`slot demo`, `slot dev`, the tests) read them back
with `parse_event`. Subscribers get the replay first, then live events, and the stream ends
after `call_ended`. With Redis (`slot.live_events`) every event is also appended, in order and
off the audio path, to the call's Redis Stream, for `slot watch` on any machine.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from slot.live_events import LiveEvents, call_stream

MAX_UNWRITTEN = 10_000
"""Events waiting for their stream before new ones are dropped (a Redis outage)."""


def ms_between(later: float, earlier: float) -> float:
    """A latency stage in ms (as events report them) between two monotonic times."""
    return round(max(0.0, later - earlier) * 1000.0, 1)


class CallStarted(BaseModel):
    type: Literal["call_started"] = "call_started"
    call_id: str
    stream_sid: str


class CallerTurn(BaseModel):
    """A caller turn, transcribed, on its way to the workflow."""

    type: Literal["caller_turn"] = "caller_turn"
    seq: int
    text: str
    latency_ms: dict[str, float] = Field(default_factory=dict)
    end_reason: str | None = None
    """What ended the turn: "script" (a complete answer to the question), "question" (the
    caller asked one), "model" (Smart Turn), "silence", "max_silence", "max_length",
    "utterance_end" (Deepgram's gap after the last word) or "provider" (Flux's end of turn)."""
    turn_model_p: float | None = None
    """Smart Turn's P(complete) at the pause that ended the turn, when it was asked."""
    stt: str | None = None
    """Who transcribed the turn: "whisper", "deepgram" or "flux"."""
    stt_fallback: str | None = None
    """Why the call's streaming recognizer did not (it was down, refused, or late), when the
    embedded Whisper transcribed the turn instead."""
    continues: int | None = None
    """The turn this one continues (`text` holds both): the caller went on talking after the
    edge ended that turn, and the agent's reply to it was withdrawn."""


class AgentUtterance(BaseModel):
    """The first audio of an agent utterance left for the caller."""

    type: Literal["agent_utterance"] = "agent_utterance"
    utterance_id: str
    text: str
    streaming: bool = False
    """A tier-2 reply: `text` is its first phrase, the whole reply follows as `llm_result`."""
    state: str
    tier: str
    reason: str
    latency_ms: dict[str, float] = Field(default_factory=dict)
    tts: str | None = None
    """Who synthesized the first audio: "piper", "espeak", "cartesia" or "aura"."""
    tts_fallback: str | None = None
    """Why the call's streaming voice did not (down, refused, dropped, late), when Piper
    spoke the utterance (or its rest) instead; final on `utterance_done`."""


class LLMResult(BaseModel):
    """A streamed reply, complete, as the workflow recorded it."""

    type: Literal["llm_result"] = "llm_result"
    utterance_id: str
    text: str
    state: str
    reason: str
    used_fallback: bool
    cancelled: bool
    model: str
    citations: list[str] = Field(default_factory=list)
    latency_ms: dict[str, float] = Field(default_factory=dict)


class BargeIn(BaseModel):
    type: Literal["barge_in"] = "barge_in"
    utterance_id: str
    heard_text: str
    played_ms: int


class AgentPaused(BaseModel):
    """Caller speech started over the agent: its audio was stopped (`clear`) and kept, until
    the speech turns out to be a backchannel (`agent_resumed`) or an interruption (`barge_in`)."""

    type: Literal["agent_paused"] = "agent_paused"
    utterance_id: str
    heard_text: str
    played_ms: int


class AgentResumed(BaseModel):
    """The speech that paused the agent was a backchannel: it plays on from `played_ms`."""

    type: Literal["agent_resumed"] = "agent_resumed"
    utterance_id: str
    played_ms: int


class Backchannel(BaseModel):
    """Short caller speech over the agent that did not interrupt it."""

    type: Literal["backchannel"] = "backchannel"
    utterance_id: str | None
    voiced_ms: int


class UtteranceDone(BaseModel):
    """An agent utterance finished playing, or was cut off."""

    type: Literal["utterance_played"] = "utterance_played"
    utterance_id: str
    interrupted: bool
    tts_fallback: str | None = None
    """Why Piper spoke this utterance or part of it (the streaming voice failed), if it did."""
    heard: bool = True
    """False: withdrawn before any of it played (the caller's turn went on, `Turn.continues`)."""


class CallEnded(BaseModel):
    type: Literal["call_ended"] = "call_ended"
    reason: str


class EdgeError(BaseModel):
    type: Literal["error"] = "error"
    reason: str


CallEvent = Annotated[
    CallStarted
    | CallerTurn
    | AgentUtterance
    | LLMResult
    | BargeIn
    | AgentPaused
    | AgentResumed
    | Backchannel
    | UtteranceDone
    | CallEnded
    | EdgeError,
    Field(discriminator="type"),
]
EVENT: TypeAdapter[CallEvent] = TypeAdapter(CallEvent)


def parse_event(data: str | bytes | dict[str, object]) -> CallEvent:
    """One event as a consumer received it (JSON text or a decoded object)."""
    if isinstance(data, dict):
        return EVENT.validate_python(data)
    return EVENT.validate_json(data)


class CallEvents:
    """One call's event stream."""

    def __init__(self, call_id: str, replay: int = 500) -> None:
        self.call_id = call_id
        self.history: deque[CallEvent] = deque(maxlen=replay)
        self.ended = False
        self._subscribers: set[asyncio.Queue[CallEvent | None]] = set()

    def publish(self, event: CallEvent) -> bool:
        """Hand `event` to the subscribers; False (and dropped) once the call has ended."""
        if self.ended:
            return False
        self.history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)
        if isinstance(event, CallEnded):
            self.ended = True
            for queue in self._subscribers:
                queue.put_nowait(None)
        return True

    async def subscribe(self) -> AsyncIterator[CallEvent]:
        queue: asyncio.Queue[CallEvent | None] = asyncio.Queue()
        replay = list(self.history)
        ended = self.ended
        if not ended:
            self._subscribers.add(queue)
        try:
            for event in replay:
                yield event
            if ended:
                return
            while (event_or_end := await queue.get()) is not None:
                yield event_or_end
        finally:
            self._subscribers.discard(queue)


class EventHub:
    """Event streams of recent calls, by call id; the oldest are forgotten first."""

    def __init__(
        self, max_calls: int = 1000, replay: int = 500, streams: LiveEvents | None = None
    ) -> None:
        self._calls: OrderedDict[str, CallEvents] = OrderedDict()
        self._max_calls = max_calls
        self._replay = replay
        self._streams = streams
        self._outbox: asyncio.Queue[tuple[str, CallEvent]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def call(self, call_id: str) -> CallEvents:
        events = self._calls.get(call_id)
        if events is None:
            events = CallEvents(call_id, self._replay)
            self._calls[call_id] = events
            while len(self._calls) > self._max_calls:
                self._calls.popitem(last=False)
        else:
            self._calls.move_to_end(call_id)
        return events

    def publish(self, call_id: str, event: CallEvent) -> None:
        if self.call(call_id).publish(event) and self._streams is not None:
            if self._outbox.qsize() >= MAX_UNWRITTEN:
                return  # the streams are down or slow: the live view loses it, the call goes on
            self._outbox.put_nowait((call_id, event))
            if self._writer is None or self._writer.done():
                self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Append queued events to their calls' streams, one at a time so order is kept."""
        assert self._streams is not None
        while not self._outbox.empty():
            call_id, event = self._outbox.get_nowait()
            await self._streams.append(call_stream(call_id), event.model_dump(mode="json"))
            self._outbox.task_done()

    async def flush(self) -> None:
        """Until every event published so far is in its stream (at shutdown, in tests)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def close(self) -> None:
        """Write what is queued, then let go of the streams."""
        if self._streams is not None:
            await self.flush()
            await self._streams.close()

    def start_call(self, call_id: str) -> CallEvents:
        """The stream for a call whose media just connected (a fresh one if the last ended)."""
        events = self.call(call_id)
        if events.ended:
            events = CallEvents(call_id, self._replay)
            self._calls[call_id] = events
        return events
