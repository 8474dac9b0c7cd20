"""The endpointer: from per-frame speech probabilities to caller turns and barge-ins.

Pure and clock-free: the caller passes each 20 ms frame with its speech probability and a
monotonic time, and gets back the events that frame caused. Silence and speech are counted in
frames, so jitter in frame arrival does not change where a turn ends. The edge's listener
drives it with real time, `slot eval turns` with a simulated clock: one implementation.

When a turn is over is an `EndpointPolicy` (`media_edge.endpoint_policies`): a fixed silence,
or Smart Turn, whose verdict the endpointer asks for with a `TurnModelWanted` event and takes
back through `set_verdict`. Whether speech over the agent interrupts it is a
`BargeInClassifier` (`media_edge.barge_in`): by duration, optionally confirmed by the first STT
words, asked for with a `WordsWanted` event and handed back through `set_words`.

With a `ScriptAwarePolicy`, the listener judges each pause's speculative transcript against the
question being answered and hands the judgement back through `set_answer`.

Barge-in reacts at speech onset: caller speech over the agent that reaches
`pause_agent_after_ms` asks for the agent to be paused (`PauseAgent`: `clear`, the unplayed audio
kept). The classifier then decides: an interruption is a `BargeIn` (the agent is cut off as
before); speech that ends as a backchannel ("mm-hmm", a cough) is a `Backchannel` once
`backchannel_silence_ms` of silence follows it, and the agent resumes where it stopped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from media_edge.audio import FRAME_MS
from media_edge.barge_in import BargeInClassifier
from media_edge.endpoint_policies import EndpointPolicy, FixedSilencePolicy, ScriptAwarePolicy
from media_edge.providers import PCM


@dataclass(frozen=True)
class SpeechStarted:
    at: float


@dataclass(frozen=True)
class SpeculativePause:
    """The caller paused long enough that an early transcript is likely to be the final one;
    its judgement against the script comes back with `Endpointer.set_answer(pause, ...)`."""

    audio: PCM = field(repr=False)
    last_voiced_at: float
    at: float
    pause: int = 0


@dataclass(frozen=True)
class PauseAgent:
    """Caller speech has started over the agent: stop its audio now and keep the rest, until a
    `BargeIn` (cut it off) or a `Backchannel` (resume it) says what the speech was."""

    at: float
    speech_started_at: float


@dataclass(frozen=True)
class SpeechResumed:
    at: float


@dataclass(frozen=True)
class BargeIn:
    """The caller has been talking over the agent for long enough to mean it."""

    at: float
    speech_started_at: float


@dataclass(frozen=True)
class WordsWanted:
    """Caller speech over the agent is long enough that its first words decide: transcribe
    `audio` and hand the text back with `Endpointer.set_words(segment, text)`."""

    audio: PCM = field(repr=False)
    segment: int
    at: float


@dataclass(frozen=True)
class TurnModelWanted:
    """The caller has paused long enough to ask the turn model: run it on `audio` and hand the
    probability back with `Endpointer.set_verdict(pause, probability, ...)`."""

    audio: PCM = field(repr=False)
    pause: int
    at: float


EndReason = Literal[
    "silence",
    "model",
    "max_silence",
    "script",
    "question",
    "max_length",
    "utterance_end",
    "provider",
]


@dataclass(frozen=True)
class EndOfTurn:
    audio: PCM = field(repr=False)
    """The segment's audio from pre-roll before the first voiced frame to the endpoint."""
    last_voiced_at: float
    endpoint_at: float
    reason: EndReason
    barged_in: bool


@dataclass(frozen=True)
class Backchannel:
    """Short speech over the agent that never became a barge-in ("uh-huh"): not a turn."""

    at: float
    voiced_ms: int


TurnEvent = (
    SpeechStarted
    | SpeculativePause
    | SpeechResumed
    | PauseAgent
    | BargeIn
    | WordsWanted
    | TurnModelWanted
    | EndOfTurn
    | Backchannel
)


@dataclass(frozen=True)
class EndpointerConfig:
    threshold: float = 0.5
    hysteresis: float = 0.15
    """A voiced stream turns silent only below `threshold - hysteresis`."""
    min_speech_ms: int = 60
    """Voiced time needed to open a segment, so clicks and pops are not turns."""
    pre_roll_ms: int = 200
    speculative_after_ms: int = 200
    barge_in_min_speech_ms: int = 200
    """Duration-only barge-in rule, used when no `BargeInClassifier` is given."""
    max_turn_ms: int = 30_000
    pause_agent_after_ms: int | None = None
    """Voiced time over the agent after which it is paused (None: never paused, only cut off)."""
    backchannel_silence_ms: int | None = None
    """Silence after speech over the agent that ends it as a backchannel, when the classifier
    says it was one (None: the endpoint policy ends it, like any turn)."""


class Endpointer:
    def __init__(
        self,
        config: EndpointerConfig,
        policy: EndpointPolicy | None = None,
        barge_in: BargeInClassifier | None = None,
    ) -> None:
        self.config = config
        self.policy: EndpointPolicy = policy or FixedSilencePolicy()
        self.barge_in = barge_in or BargeInClassifier(
            min_interrupt_ms=config.barge_in_min_speech_ms,
            max_backchannel_ms=config.barge_in_min_speech_ms,
            use_words=False,
        )
        self._pre_roll: deque[PCM] = deque(maxlen=config.pre_roll_ms // FRAME_MS)
        self._voiced = False
        self.segment = 0
        """Number of the current (or last) segment: async answers name the segment they are for."""
        self.pause = 0
        """Number of the current (or last) pause within the segments, growing by one per pause."""
        self._reset_segment()

    def _reset_segment(self) -> None:
        self.in_segment = False
        self._pending: list[PCM] = []
        self._pending_voiced = 0
        self._pending_started_at = 0.0
        self._segment: list[PCM] = []
        self._started_at = 0.0
        self._voiced_ms = 0
        self._silence_ms = 0
        self._last_voiced_at = 0.0
        self._speculated = False
        self._barged_in = False
        self._paused_agent = False
        self._overlap_ms = 0
        self._words: str | None = None
        self._words_answer = False
        self._words_wanted = False
        self.policy.reset()

    @property
    def paused(self) -> bool:
        """A segment is open and its caller is silent right now."""
        return self.in_segment and self._silence_ms > 0

    def audio(self) -> PCM:
        """The open segment's audio so far, from its pre-roll (empty when no segment is open)."""
        return self._audio()

    def _is_voiced(self, probability: float) -> bool:
        if probability >= self.config.threshold:
            self._voiced = True
        elif probability < self.config.threshold - self.config.hysteresis:
            self._voiced = False
        return self._voiced

    def push(
        self, frame: PCM, probability: float, now: float, agent_speaking: bool
    ) -> list[TurnEvent]:
        """Feed one 20 ms frame; returns the events it caused, in order."""
        voiced = self._is_voiced(probability)
        if not self.in_segment:
            return self._push_idle(frame, voiced, now, agent_speaking)
        return self._push_segment(frame, voiced, now, agent_speaking)

    def _push_idle(
        self, frame: PCM, voiced: bool, now: float, agent_speaking: bool
    ) -> list[TurnEvent]:
        if not voiced:
            self._pre_roll.extend(self._pending)
            self._pending = []
            self._pending_voiced = 0
            self._pre_roll.append(frame)
            return []
        if not self._pending:
            self._pending_started_at = now
        self._pending.append(frame)
        self._pending_voiced += FRAME_MS
        if self._pending_voiced < self.config.min_speech_ms:
            return []
        self.in_segment = True
        self.segment += 1
        self._segment = [*self._pre_roll, *self._pending]
        self._pre_roll.clear()
        self._started_at = self._pending_started_at
        self._voiced_ms = self._pending_voiced
        self._overlap_ms = self._pending_voiced if agent_speaking else 0
        self._pending = []
        self._last_voiced_at = now
        events: list[TurnEvent] = [SpeechStarted(at=self._started_at)]
        events.extend(self._check_barge_in(now, agent_speaking))
        return events

    def _push_segment(
        self, frame: PCM, voiced: bool, now: float, agent_speaking: bool
    ) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        self._segment.append(frame)
        if voiced:
            if self._speculated:
                events.append(SpeechResumed(at=now))
            self._speculated = False
            self._silence_ms = 0
            self._voiced_ms += FRAME_MS
            self._last_voiced_at = now
            if agent_speaking:
                self._overlap_ms += FRAME_MS
            events.extend(self._check_barge_in(now, agent_speaking))
        else:
            if self._silence_ms == 0:
                self.pause += 1
            self._silence_ms += FRAME_MS
            if not self._speculated and self._silence_ms >= self.config.speculative_after_ms:
                self._speculated = True
                if isinstance(self.policy, ScriptAwarePolicy):
                    self.policy.speculating(self.pause)
                events.append(
                    SpeculativePause(
                        audio=self._audio(),
                        last_voiced_at=self._last_voiced_at,
                        at=now,
                        pause=self.pause,
                    )
                )
            if self._is_backchannel_over(agent_speaking):
                events.append(self._end(now, "silence", agent_speaking))
                return events
        decision = self.policy.push(self.pause, self._silence_ms)
        if decision.end_of_turn:
            assert decision.reason is not None
            events.append(self._end(now, decision.reason, agent_speaking))
            return events
        if decision.request_verdict is not None:
            events.append(TurnModelWanted(audio=self._audio(), pause=self.pause, at=now))
        if len(self._segment) * FRAME_MS >= self.config.max_turn_ms:
            events.append(self._end(now, "max_length", agent_speaking))
        return events

    def _is_backchannel_over(self, agent_speaking: bool) -> bool:
        """Speech over the agent has been followed by enough silence, and was a backchannel
        (words that were asked for have arrived and say so)."""
        limit = self.config.backchannel_silence_ms
        if limit is None or self._silence_ms < limit:
            return False
        if not agent_speaking or self._barged_in or self._overlap_ms == 0:
            return False
        if self._words_wanted and self._words is None:
            return False
        verdict = self.barge_in.classify(
            self._overlap_ms, self._words, ended=True, answers=self._words_answer
        )
        return verdict == "backchannel"

    def _check_barge_in(self, now: float, agent_speaking: bool) -> list[TurnEvent]:
        if not agent_speaking or self._barged_in or not self.in_segment:
            return []
        events: list[TurnEvent] = []
        pause_after = self.config.pause_agent_after_ms
        if not self._paused_agent and pause_after is not None and self._overlap_ms >= pause_after:
            self._paused_agent = True
            events.append(PauseAgent(at=now, speech_started_at=self._started_at))
        verdict = self.barge_in.classify(self._overlap_ms, self._words, answers=self._words_answer)
        if verdict == "interrupt":
            self._barged_in = True
            events.append(BargeIn(at=now, speech_started_at=self._started_at))
        elif not self._words_wanted and self.barge_in.wants_words(self._overlap_ms):
            self._words_wanted = True
            events.append(WordsWanted(audio=self._audio(), segment=self.segment, at=now))
        return events

    def set_words(self, segment: int, text: str, *, answers: bool = False) -> None:
        """The first STT words of `segment`'s speech (asked for by `WordsWanted`); `answers`:
        the script understands them as an answer to its question."""
        if segment == self.segment and self.in_segment:
            self._words = text
            self._words_answer = answers

    def set_verdict(
        self, pause: int, probability: float, now: float, agent_speaking: bool = False
    ) -> list[TurnEvent]:
        """The turn model's answer for `pause` (asked for by `TurnModelWanted`): ends the turn
        now if that pause is still going and the policy says the caller has finished."""
        if not self.paused or pause != self.pause:
            return []
        decision = self.policy.set_verdict(pause, probability)
        if not decision.end_of_turn:
            return []
        assert decision.reason is not None
        return [self._end(now, decision.reason, agent_speaking)]

    def set_answer(
        self,
        pause: int,
        complete: bool,
        now: float,
        agent_speaking: bool = False,
        min_pause_ms: int | None = None,
        *,
        unfinished: bool = False,
        reason: Literal["script", "question"] = "script",
    ) -> list[TurnEvent]:
        """The script's judgement of `pause`'s speculative transcript (asked for by
        `SpeculativePause`): a complete answer ends the turn if that pause is still going and
        the policy is script-aware (`ScriptAwarePolicy`), after `min_pause_ms` if given; one
        that sounds `unfinished` holds it (the policy says for how long). `reason` is what the
        end is reported as: "question" when the caller asked one rather than answered."""
        if not isinstance(self.policy, ScriptAwarePolicy):
            return []
        if not self.paused or pause != self.pause:
            return []
        decision = self.policy.set_answer(
            pause, complete, min_pause_ms, unfinished=unfinished, reason=reason
        )
        if not decision.end_of_turn:
            return []
        assert decision.reason is not None
        return [self._end(now, decision.reason, agent_speaking)]

    def end_now(
        self, reason: EndReason, now: float, agent_speaking: bool = False, *, paused: bool = True
    ) -> list[TurnEvent]:
        """A streaming recognizer says the turn is over (Deepgram's `UtteranceEnd`, Flux's
        `EndOfTurn`): end the open segment now; only during a pause when `paused`."""
        if not self.in_segment or (paused and not self.paused):
            return []
        return [self._end(now, reason, agent_speaking)]

    def check_barge_in(self, now: float, agent_speaking: bool) -> list[TurnEvent]:
        """Classify the speech over the agent again, between frames (e.g. its words arrived);
        a backchannel already followed by enough silence ends here."""
        events = self._check_barge_in(now, agent_speaking)
        if self.paused and self._is_backchannel_over(agent_speaking):
            events.append(self._end(now, "silence", agent_speaking))
        return events

    def _audio(self) -> PCM:
        return np.concatenate(self._segment) if self._segment else np.zeros(0, dtype=np.int16)

    def _end(self, now: float, reason: EndReason, agent_speaking: bool) -> EndOfTurn | Backchannel:
        event: EndOfTurn | Backchannel
        if agent_speaking and not self._barged_in and self._overlap_ms > 0:
            event = Backchannel(at=now, voiced_ms=self._voiced_ms)
        else:
            event = EndOfTurn(
                audio=self._audio(),
                last_voiced_at=self._last_voiced_at,
                endpoint_at=now,
                reason=reason,
                barged_in=self._barged_in,
            )
        self._reset_segment()
        return event
