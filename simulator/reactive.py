"""What a reactive caller says next: its reply to the topic the agent is asking about.

Pure policy, no audio and no clock (simulator.phone plays it): the agent's script state picks a
topic, asked the same topic again the caller uses its next phrasing (the last one repeats), a
topic the persona has no reply for is answered from `other`, and a state whose line ends the
call gets no reply at all (the caller waits for the hang-up). Like a person, the caller gives up
(hangs up) when asked the same thing more than `patience` times.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from simulator.persona import ReactivePersona, Reply, Topic
from simulator.topics import ScriptTopics


@dataclass(frozen=True)
class PlannedReply:
    """The reply chosen for an agent utterance in `state`; `phrasing` counts from 0."""

    state: str
    topic: Topic
    phrasing: int
    reply: Reply


PATIENCE = 5
"""Answers to one topic after which a caller asked it again hangs up."""
GIVE_UP = Reply(hang_up=True)


class ReactivePolicy:
    """One call's replies: remembers how often each topic was answered."""

    def __init__(
        self, persona: ReactivePersona, script: ScriptTopics, patience: int = PATIENCE
    ) -> None:
        self.persona = persona
        self.script = script
        self.patience = patience
        self.answered: Counter[Topic] = Counter()

    def ends_call(self, state: str) -> bool:
        return self.script.ends_call(state)

    def _topic(self, state: str) -> Topic | None:
        topic = self.script.topic(state)
        if topic in self.persona.answers:
            return topic
        return "other" if "other" in self.persona.answers else None

    def peek(self, state: str) -> PlannedReply | None:
        """The reply the caller would give now to the agent's line in `state` (None: nothing to
        say, because the line ends the call or the persona has no reply for it)."""
        if self.ends_call(state):
            return None
        topic = self._topic(state)
        if topic is None:
            return None
        replies = self.persona.answers[topic]
        if self.answered[topic] >= self.patience:
            return PlannedReply(state, topic, self.answered[topic], GIVE_UP)
        phrasing = min(self.answered[topic], len(replies) - 1)
        return PlannedReply(state, topic, phrasing, replies[phrasing])

    def take(self, state: str) -> PlannedReply | None:
        """`peek`, and count the topic as answered once more (the next ask gets the next one)."""
        planned = self.peek(state)
        if planned is not None:
            self.answered[planned.topic] += 1
        return planned
