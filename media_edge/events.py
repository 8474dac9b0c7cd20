"""Live events of each call on this edge, with a bounded replay for late subscribers.

Event schema (JSON objects, `type` first):
- call_started {call_id, stream_sid}
- caller_turn {seq, text, latency_ms}
- agent_utterance {utterance_id, text, state, tier, reason, latency_ms}
- barge_in {utterance_id, heard_text, played_ms}
- utterance_played {utterance_id, interrupted}
- call_ended {reason}
- error {reason}
Subscribers get the replay first, then live events, and the stream ends after `call_ended`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any

Event = dict[str, Any]


class CallEvents:
    """One call's event stream."""

    def __init__(self, call_id: str, replay: int = 500) -> None:
        self.call_id = call_id
        self.history: deque[Event] = deque(maxlen=replay)
        self.ended = False
        self._subscribers: set[asyncio.Queue[Event | None]] = set()

    def publish(self, event: Event) -> None:
        if self.ended:
            return
        self.history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)
        if event.get("type") == "call_ended":
            self.ended = True
            for queue in self._subscribers:
                queue.put_nowait(None)

    async def subscribe(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
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

    def __init__(self, max_calls: int = 1000, replay: int = 500) -> None:
        self._calls: OrderedDict[str, CallEvents] = OrderedDict()
        self._max_calls = max_calls
        self._replay = replay

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

    def publish(self, call_id: str, event: Event) -> None:
        self.call(call_id).publish(event)

    def start_call(self, call_id: str) -> CallEvents:
        """The stream for a call whose media just connected (a fresh one if the last ended)."""
        events = self.call(call_id)
        if events.ended:
            events = CallEvents(call_id, self._replay)
            self._calls[call_id] = events
        return events
