"""Does caller speech continue the turn the edge just ended? A pure rule, no clocks.

A mid-sentence pause ("Pretty much any weekday… okay, say Wednesday") can outlast the
endpointer: the edge ends the turn, the workflow decides, the agent starts its reply, and the
rest of the sentence arrives over it, to be decided in the new state and misread. Speech that
starts before the reply's first audio, or soon after it, is that turn going on: the session
withdraws the reply (as barge-in cuts the agent off) and sends both turns' words as one turn
(`Turn.continues`), which the workflow decides in the state before the reply's decision.

A goodbye the caller may still talk their way out of (not interested, call back later, wrong
person: `REVERSIBLE_ENDINGS`) is withdrawn like any reply, without ending the call. A reply
that asked not to be called, booked, handed over or streams an LLM's words is not withdrawn
(the workflow would not undo it): speech over it is a normal next turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.expectations import ExpectedAnswer
from workflows.messages import Decision
from workflows.script import REVERSIBLE_ENDINGS

AFTER_REPLY_MS = 800
"""Speech starting this long into the agent's reply still continues the caller's turn.

The dev personas pause mid-sentence for 700-1200 ms, and a reply starts at the earliest about
400 ms after the caller's last word, so a resumed sentence starts at most about 800 ms into
it; the dev personas' deliberate interruptions start 900 ms or more into a reply
(`interrupt_after_ms`), and must stay interruptions, not be joined to the turn before."""


@dataclass
class EndedTurn:
    """A speech turn the edge sent, and what the workflow answered it with."""

    ended_at: float
    """When the edge declared the turn over."""
    expect_before: ExpectedAnswer | None
    """What the question the turn answered expected (restored if the turn goes on)."""
    seq: int = -1
    text: str = ""
    """The turn's words and seq, once transcribed and sent."""
    reply: Decision | None = None
    """The workflow's answer, once it is back."""
    withdrawn: bool = False
    """The caller went on talking: the reply is not (or no longer) spoken."""


def undoable_reply(decision: Decision) -> bool:
    """The reply the workflow may still undo (as `workflows.call_state.undoable` decides, with
    the goodbyes of `REVERSIBLE_ENDINGS`)."""
    if decision.hand_over or decision.llm_request is not None:
        return False
    if decision.end_call:
        return decision.outcome in REVERSIBLE_ENDINGS
    return decision.outcome is None


@dataclass(frozen=True)
class ContinuationRule:
    after_reply_ms: int = AFTER_REPLY_MS

    def continues(
        self, turn: EndedTurn, speech_started_at: float, reply_started_at: float | None
    ) -> bool:
        """Whether speech that started at `speech_started_at` continues `turn`, whose reply's
        first audio left at `reply_started_at` (None: not yet, or no reply yet)."""
        if turn.withdrawn or speech_started_at < turn.ended_at:
            return False
        if turn.reply is not None and not undoable_reply(turn.reply):
            return False
        if reply_started_at is None:
            return True
        return (speech_started_at - reply_started_at) * 1000 <= self.after_reply_ms

    @staticmethod
    def joined(turn: EndedTurn, words: str) -> str:
        """The continued turn's words: the first part's, then the new ones (if any)."""
        return f"{turn.text} {words}".strip() if words else turn.text
