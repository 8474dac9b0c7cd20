"""Whole-call measures on the caller's side: from what the simulated caller said and heard.

Times are the simulator's media clock (ms from stream start), the only clock the caller has:
- response latency: end of the caller's words -> the first agent audio frame heard after them;
- premature cut-off: agent audio starts while the caller still had words to say in its turn
  (during a mid-sentence pause, say);
- barge-in reaction: the caller's interrupting words start -> `clear` received;
- fallback rate and the longest run of fallbacks, identical agent lines in a row (from the
  edge's `agent_utterance` events: tier and text; a line withdrawn before any of it played,
  as a turn's continuation withdraws one, was never heard and is not counted; a line said again
  after the caller cut it off is a restart, and one said again because the caller asked to hear
  it again is an answer; only one said again otherwise, after it played whole, counts);
- after a backchannel, whether the agent's utterance was played to its end (`utterance_played`
  not interrupted, possibly after a pause and resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from media_edge.events import AgentUtterance, BargeIn, UtteranceDone
from media_edge.events import CallEvent as EdgeEvent
from simulator.phone import AgentSegment, SpokenLine
from workflows.script import REPEAT_REASON

FALLBACK_TIER = "fallback"


@dataclass
class CallMetrics:
    """One call's counts and samples; sets of calls are summed with `combine`."""

    caller_turns: int = 0
    response_latency_ms: list[int] = field(default_factory=list)
    unanswered_turns: int = 0
    """Caller turns the agent did not answer before the caller spoke again or the call ended."""
    premature_cutoffs: int = 0
    barge_in_reaction_ms: list[int] = field(default_factory=list)
    barge_ins_unanswered: int = 0
    """Interruptions the agent talked through (no `clear` before its audio ended)."""
    agent_turns: int = 0
    fallback_turns: int = 0
    longest_fallback_run: int = 0
    identical_in_a_row: int = 0
    """Agent lines that repeat the line just before them word for word."""
    backchannels: int = 0
    backchannels_completed: int = 0

    def combine(self, other: CallMetrics) -> CallMetrics:
        return CallMetrics(
            caller_turns=self.caller_turns + other.caller_turns,
            response_latency_ms=self.response_latency_ms + other.response_latency_ms,
            unanswered_turns=self.unanswered_turns + other.unanswered_turns,
            premature_cutoffs=self.premature_cutoffs + other.premature_cutoffs,
            barge_in_reaction_ms=self.barge_in_reaction_ms + other.barge_in_reaction_ms,
            barge_ins_unanswered=self.barge_ins_unanswered + other.barge_ins_unanswered,
            agent_turns=self.agent_turns + other.agent_turns,
            fallback_turns=self.fallback_turns + other.fallback_turns,
            longest_fallback_run=max(self.longest_fallback_run, other.longest_fallback_run),
            identical_in_a_row=self.identical_in_a_row + other.identical_in_a_row,
            backchannels=self.backchannels + other.backchannels,
            backchannels_completed=self.backchannels_completed + other.backchannels_completed,
        )

    def summary(self) -> dict[str, float | int | None]:
        """The figures the report shows (shares in %, times in ms; None when nothing to measure)."""
        return {
            "caller_turns": self.caller_turns,
            "latency_p50_ms": percentile(self.response_latency_ms, 50),
            "latency_p90_ms": percentile(self.response_latency_ms, 90),
            "unanswered_turns": self.unanswered_turns,
            "premature_cutoff_pct": share(self.premature_cutoffs, self.caller_turns),
            "barge_in_p50_ms": percentile(self.barge_in_reaction_ms, 50),
            "barge_in_p90_ms": percentile(self.barge_in_reaction_ms, 90),
            "barge_ins": len(self.barge_in_reaction_ms) + self.barge_ins_unanswered,
            "barge_ins_unanswered": self.barge_ins_unanswered,
            "agent_turns": self.agent_turns,
            "fallback_pct": share(self.fallback_turns, self.agent_turns),
            "longest_fallback_run": self.longest_fallback_run,
            "identical_in_a_row": self.identical_in_a_row,
            "backchannels": self.backchannels,
            "backchannel_completed_pct": share(self.backchannels_completed, self.backchannels),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def share(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _words(line: SpokenLine) -> tuple[int, int]:
    start = line.voiced_start_ms if line.voiced_start_ms is not None else line.start_ms
    end = line.voiced_end_ms if line.voiced_end_ms is not None else line.end_ms
    return start, end


def call_metrics(
    lines: Sequence[SpokenLine],
    segments: Sequence[AgentSegment],
    clears_ms: Sequence[int],
    events: Sequence[EdgeEvent],
) -> CallMetrics:
    """The measures of one call from the caller's lines, the agent audio it heard (segments),
    the `clear`s it received and the edge's events, all on the media clock."""
    metrics = CallMetrics()
    turns = [line for line in lines if not line.backchannel]
    starts = sorted(segment.start_ms for segment in segments)
    metrics.caller_turns = len(turns)
    for index, turn in enumerate(turns):
        words_start, words_end = _words(turn)
        next_turn = _words(turns[index + 1])[0] if index + 1 < len(turns) else None
        if any(words_start < start < words_end for start in starts):
            metrics.premature_cutoffs += 1
        reply = next((s for s in starts if s >= words_end), None)
        if reply is None or (next_turn is not None and reply >= next_turn):
            metrics.unanswered_turns += 1
        else:
            metrics.response_latency_ms.append(reply - words_end)
        if turn.interrupting:
            _barge_in(metrics, words_start, segments, clears_ms)
    done = [e for e in events if isinstance(e, UtteranceDone)]
    unheard = {e.utterance_id for e in done if not e.heard}
    cut_off = {e.utterance_id for e in done if e.interrupted}
    _agent_lines(
        metrics,
        [e for e in events if isinstance(e, AgentUtterance) and e.utterance_id not in unheard],
        cut_off,
    )
    _backchannels(metrics, [line for line in lines if line.backchannel], events)
    return metrics


def _barge_in(
    metrics: CallMetrics, words_start: int, segments: Sequence[AgentSegment], clears: Sequence[int]
) -> None:
    """An interruption counts if agent audio was playing when the caller's words began."""
    talking = next((s for s in segments if s.start_ms <= words_start < s.end_ms), None)
    if talking is None:
        return
    clear = next((c for c in clears if words_start <= c <= talking.end_ms), None)
    if clear is None:
        metrics.barge_ins_unanswered += 1
    else:
        metrics.barge_in_reaction_ms.append(clear - words_start)


def _agent_lines(
    metrics: CallMetrics, utterances: Sequence[AgentUtterance], cut_off: set[str]
) -> None:
    """Fallback turns and runs; a line said again right after the caller heard it to its end
    (a line cut off by the caller and said again whole is a restart, not a loop; one the caller
    asked to hear again, "what did you say?", is what they asked for)."""
    metrics.agent_turns = len(utterances)
    run = 0
    previous: str | None = None
    for utterance in utterances:
        if utterance.tier == FALLBACK_TIER:
            metrics.fallback_turns += 1
            run += 1
            metrics.longest_fallback_run = max(metrics.longest_fallback_run, run)
        else:
            run = 0
        asked_again = utterance.reason.startswith(REPEAT_REASON)
        if previous is not None and utterance.text.strip() == previous and not asked_again:
            metrics.identical_in_a_row += 1
        previous = None if utterance.utterance_id in cut_off else utterance.text.strip()


def _backchannels(
    metrics: CallMetrics, backchannels: Sequence[SpokenLine], events: Sequence[EdgeEvent]
) -> None:
    """Completed: the utterance talked over was played to its end and never barged in on."""
    played = {e.utterance_id for e in events if isinstance(e, UtteranceDone) and not e.interrupted}
    cut = {e.utterance_id for e in events if isinstance(e, BargeIn)}
    for line in backchannels:
        metrics.backchannels += 1
        if line.utterance_id in played and line.utterance_id not in cut:
            metrics.backchannels_completed += 1
