"""When has the caller finished, and is speech over the agent an interruption? Pure policies.

No clocks, threads or models here: the caller feeds each VAD frame's time and speech flag, and
gets back a decision. The Smart Turn model's verdict is injected (`SmartTurnPolicy.set_verdict`),
so the same policy runs in the edge (verdict from `media_edge.smart_turn.TurnDetector`, arriving
a few frames later) and in the evaluation (verdict computed inline), and is tested with
made-up verdicts.

The policies also implement the spine endpointer's `is_end_of_turn(silence_ms, voiced_ms)`, so
they can be handed to `media_edge.turns.Endpointer(config, policy=...)` as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

EndReason = Literal["silence", "model", "max_silence"]


@dataclass(frozen=True)
class EndpointDecision:
    end_of_turn: bool = False
    reason: EndReason | None = None
    request_verdict: int | None = None
    """A pause id: run the turn model now on the turn's audio up to this frame (asked once)."""


CONTINUE = EndpointDecision()


class EndpointPolicy(Protocol):
    """Fed every VAD frame of the caller's audio; says whether the caller's turn is over."""

    def push(self, now: float, speech: bool) -> EndpointDecision:
        """`now`: the frame's end time (s, any monotonic clock); `speech`: VAD says voiced."""
        ...

    def reset(self) -> None:
        """Forget the turn in progress (call after an end of turn the edge forced itself)."""
        ...


@dataclass
class _PauseTracker:
    """Turn and pause bookkeeping shared by the policies."""

    in_turn: bool = False
    last_voiced_at: float = 0.0
    pause_id: int = 0
    in_pause: bool = False

    def push(self, now: float, speech: bool) -> float | None:
        """Silence so far in ms, or None when the frame is speech or no turn is open."""
        if speech:
            self.in_turn = True
            self.in_pause = False
            self.last_voiced_at = now
            return None
        if not self.in_turn:
            return None
        if not self.in_pause:
            self.in_pause = True
            self.pause_id += 1
        return round((now - self.last_voiced_at) * 1000.0, 3)

    def end(self) -> None:
        self.in_turn = False
        self.in_pause = False


@dataclass
class FixedSilencePolicy:
    """The spine's rule: the turn ends after `silence_ms` of silence, whatever was said."""

    silence_ms: int = 600
    _pauses: _PauseTracker = field(default_factory=_PauseTracker, repr=False)

    def push(self, now: float, speech: bool) -> EndpointDecision:
        silence = self._pauses.push(now, speech)
        if silence is not None and silence >= self.silence_ms:
            self._pauses.end()
            return EndpointDecision(end_of_turn=True, reason="silence")
        return CONTINUE

    def reset(self) -> None:
        self._pauses.end()

    def is_end_of_turn(self, silence_ms: int, voiced_ms: int) -> bool:
        return silence_ms >= self.silence_ms


@dataclass(frozen=True)
class SmartTurnConfig:
    threshold: float = 0.95
    """P(complete) at or above which the turn ends at once (defaults: `slot eval turns`)."""
    min_pause_ms: int = 200
    """Silence before the model is asked (once per pause)."""
    max_silence_ms: int = 1500
    """Silence after which the turn ends whatever the model said (or if it has not answered)."""


@dataclass
class SmartTurnPolicy:
    """VAD + Smart Turn: at a pause, ask the model once; complete ends the turn now, incomplete
    waits for more speech up to `max_silence_ms`.

    Protocol per frame: `push` returns `request_verdict=pause_id` once per pause that reaches
    `min_pause_ms`; run the model on the turn's audio up to that frame, then `set_verdict`
    (pause id, probability). The verdict is acted on at the next `push`, or at once through
    `verdict_ends_turn` if the edge wants to end the turn between frames.
    """

    config: SmartTurnConfig = field(default_factory=SmartTurnConfig)
    _pauses: _PauseTracker = field(default_factory=_PauseTracker, repr=False)
    _requested: int = field(default=0, repr=False)
    _verdicts: dict[int, float] = field(default_factory=dict, repr=False)
    _compat_silence_ms: int = field(default=0, repr=False)
    pending_request: int | None = field(default=None, repr=False)
    """Pause id asked for through `is_end_of_turn`, not yet taken by `take_request`."""

    @property
    def pause_id(self) -> int:
        """The current (or last) pause's id; ids grow by one per pause within this policy."""
        return self._pauses.pause_id

    def set_verdict(self, pause_id: int, probability: float) -> None:
        """The model's P(complete) for `pause_id`; stale pauses (speech resumed) are ignored."""
        if pause_id == self._pauses.pause_id and self._pauses.in_pause:
            self._verdicts = {pause_id: probability}

    def verdict_ends_turn(self, pause_id: int) -> bool:
        """Whether the verdict set for `pause_id` ends the turn, if that pause is still going."""
        probability = self._verdicts.get(pause_id)
        return (
            probability is not None
            and pause_id == self._pauses.pause_id
            and self._pauses.in_pause
            and probability >= self.config.threshold
        )

    def _decide(self, silence_ms: float) -> EndpointDecision:
        pause = self._pauses.pause_id
        if self.verdict_ends_turn(pause):
            return self._end("model")
        if silence_ms >= self.config.max_silence_ms:
            return self._end("max_silence")
        if silence_ms >= self.config.min_pause_ms and self._requested != pause:
            self._requested = pause
            return EndpointDecision(request_verdict=pause)
        return CONTINUE

    def _end(self, reason: EndReason) -> EndpointDecision:
        self._pauses.end()
        self._verdicts.clear()
        self.pending_request = None
        return EndpointDecision(end_of_turn=True, reason=reason)

    def push(self, now: float, speech: bool) -> EndpointDecision:
        silence = self._pauses.push(now, speech)
        if silence is None:
            return CONTINUE
        return self._decide(silence)

    def reset(self) -> None:
        self._pauses.end()
        self._verdicts.clear()
        self._compat_silence_ms = 0
        self.pending_request = None

    def is_end_of_turn(self, silence_ms: int, voiced_ms: int) -> bool:
        """The spine `Endpointer`'s policy hook: it calls this on each silent frame of a segment.

        A pause starts whenever `silence_ms` does not grow. A verdict request is left in
        `pending_request` for the session to `take_request` after each `Endpointer.push`.
        """
        if silence_ms <= self._compat_silence_ms or not self._pauses.in_pause:
            self._pauses.in_turn = True
            self._pauses.in_pause = True
            self._pauses.pause_id += 1
        self._compat_silence_ms = silence_ms
        decision = self._decide(float(silence_ms))
        if decision.request_verdict is not None:
            self.pending_request = decision.request_verdict
        if decision.end_of_turn:
            self._compat_silence_ms = 0
        return decision.end_of_turn

    def take_request(self) -> int | None:
        """The pause id whose verdict `is_end_of_turn` asked for, once."""
        request, self.pending_request = self.pending_request, None
        return request


BargeInVerdict = Literal["interrupt", "backchannel", "undecided"]

BACKCHANNEL_WORDS = frozenset(
    {
        "uh-huh", "uh", "huh", "uhhuh", "mm-hmm", "mmhmm", "mhm", "mm", "hmm", "hm", "um",
        "yeah", "yea", "yep", "yes", "ya", "right", "okay", "ok", "sure", "alright", "all",
        "got", "it", "i", "see", "oh", "ah", "cool", "great", "nice", "fine", "good",
        "exactly", "true", "indeed", "totally", "wow",
    }
)  # fmt: skip
"""Words that, alone, acknowledge rather than take the floor ("uh-huh", "yeah right", "I see")."""

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def is_backchannel_text(text: str) -> bool:
    """True when every word of the first STT words is an acknowledgement (or there are none)."""
    words = _WORD.findall(text.lower())
    return all(word in BACKCHANNEL_WORDS for word in words)


@dataclass(frozen=True)
class BargeInClassifier:
    """Tells an interruption from a backchannel while the agent is speaking.

    By duration: caller speech shorter than `min_interrupt_ms` (of voiced time) never
    interrupts: "uh-huh", "yeah", a cough. With `use_words`, speech past that length is held
    "undecided" until its first STT words arrive: all acknowledgements ("okay, yeah") or
    nothing recognisable (a cough) is a backchannel, anything else interrupts. Speech that goes
    on past `max_backchannel_ms` interrupts whatever the words, so a slow STT cannot keep a
    real interruption waiting for long.
    """

    min_interrupt_ms: int = 500
    """Default chosen by `slot eval turns` (with `use_words`)."""
    max_backchannel_ms: int = 1200
    use_words: bool = True

    def wants_words(self, voiced_ms: float) -> bool:
        """Whether to transcribe the caller's speech so far now (its first words decide)."""
        return self.use_words and self.min_interrupt_ms <= voiced_ms < self.max_backchannel_ms

    def classify(
        self, voiced_ms: float, words: str | None = None, *, ended: bool = False
    ) -> BargeInVerdict:
        """Verdict on the caller's speech so far over the agent.

        `voiced_ms`: voiced time since this caller speech started; `words`: its first words once
        STT has them; `ended`: the caller has stopped (the segment closed). "undecided" means
        keep the agent talking and ask again at the next frame.
        """
        if voiced_ms >= self.max_backchannel_ms:
            return "interrupt"
        if voiced_ms < self.min_interrupt_ms:
            return "backchannel" if ended else "undecided"
        if not self.use_words:
            return "interrupt"
        if words is None:
            return "backchannel" if ended else "undecided"
        return "backchannel" if is_backchannel_text(words) else "interrupt"
