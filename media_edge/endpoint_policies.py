"""When has the caller finished? The endpointing policies the `Endpointer` consults.

Pure and clock-free: the `Endpointer` counts silence in 20 ms frames, numbers the pauses, and
hands each frame of an open segment to its policy as (pause number, silence so far). The Smart
Turn model's verdict is injected (`set_verdict`), so the same policy runs in the edge (verdict
from `media_edge.smart_turn.TurnDetector`, arriving a few frames later), in `slot eval turns`
(verdict from cached model outputs, delivered after the model's measured latency) and in tests
(made-up verdicts).

`ScriptAwarePolicy` wraps either: the script knows what the agent just asked, so a pause whose
speculative transcript is a complete answer to it (`workflows.expectations.judge_answer`, injected
through `set_answer` like the model's verdict) ends the turn at once, whatever the acoustic model
would say; an incomplete one ("my bill is around...") is left to the wrapped policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

EndReason = Literal["silence", "model", "max_silence", "script", "question"]


@dataclass(frozen=True)
class EndpointDecision:
    end_of_turn: bool = False
    reason: EndReason | None = None
    request_verdict: int | None = None
    """A pause number: run the turn model now on the segment's audio (asked once per pause)."""


CONTINUE = EndpointDecision()


class EndpointPolicy(Protocol):
    """Says whether the caller's turn is over, one frame of an open segment at a time."""

    def push(self, pause: int, silence_ms: int) -> EndpointDecision:
        """`pause`: number of the current (or last) pause, unique within the call;
        `silence_ms`: silence so far in this pause, 0 while the caller speaks."""
        ...

    def set_verdict(self, pause: int, probability: float) -> EndpointDecision:
        """The turn model's P(complete) for `pause`; may end the turn at once."""
        ...

    def reset(self) -> None:
        """The segment ended: forget the turn in progress."""
        ...


@dataclass
class FixedSilencePolicy:
    """The turn ends after `silence_ms` of silence, whatever was said (no turn model)."""

    silence_ms: int = 600

    def push(self, pause: int, silence_ms: int) -> EndpointDecision:
        if silence_ms >= self.silence_ms:
            return EndpointDecision(end_of_turn=True, reason="silence")
        return CONTINUE

    def set_verdict(self, pause: int, probability: float) -> EndpointDecision:
        return CONTINUE

    def reset(self) -> None:
        pass


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

    `push` returns `request_verdict=pause` once per pause that reaches `min_pause_ms`; the
    model's answer comes back through `set_verdict`, which ends the turn if that pause is still
    going and the caller sounds finished. Verdicts for a pause that is over are ignored.
    """

    config: SmartTurnConfig = field(default_factory=SmartTurnConfig)
    _pause: int | None = field(default=None, repr=False)
    """The pause going on now (None while the caller speaks)."""
    _requested: int | None = field(default=None, repr=False)

    def push(self, pause: int, silence_ms: int) -> EndpointDecision:
        if silence_ms <= 0:
            self._pause = None
            return CONTINUE
        self._pause = pause
        if silence_ms >= self.config.max_silence_ms:
            return self._end("max_silence")
        if silence_ms >= self.config.min_pause_ms and self._requested != pause:
            self._requested = pause
            return EndpointDecision(request_verdict=pause)
        return CONTINUE

    def set_verdict(self, pause: int, probability: float) -> EndpointDecision:
        if pause == self._pause and probability >= self.config.threshold:
            return self._end("model")
        return CONTINUE

    def _end(self, reason: EndReason) -> EndpointDecision:
        self.reset()
        return EndpointDecision(end_of_turn=True, reason=reason)

    def reset(self) -> None:
        self._pause = None


@dataclass
class ScriptAwarePolicy:
    """An acoustic policy (`inner`) plus the script's judgement of each pause's transcript.

    `set_answer(pause, complete)` gives the judgement of the speculative transcript of `pause`:
    complete ends the turn (reason "script") as soon as that pause has lasted `min_pause_ms`
    (at once if it already has); incomplete changes nothing. Judgements of a pause that is over
    are ignored, as are the model's.

    With `unfinished_max_silence_ms`, a transcript that stops where a sentence cannot ("um",
    "it's around", "Well,") holds the turn: the model's verdict for that pause is ignored and
    the silence may last this long before the turn ends. Since the pause's transcript decides,
    a model verdict that comes before it (`speculating` says one is on its way) waits for it;
    the turn needs that transcript anyway, so the wait costs nothing.

    With `short_answer_holds_model`, a pause whose transcript is a short answer (`set_answer`'s
    `min_pause_ms`: "Yes.", "Yeah.") is not ended by the model before that pause either: callers
    go on after one or two words ("Yes, [pause] this is Keiko") and Smart Turn finds "Yes."
    complete.
    """

    inner: EndpointPolicy
    min_pause_ms: int = 0
    """Silence a complete answer must be followed by before it ends the turn."""
    unfinished_max_silence_ms: int | None = None
    """Silence after an unfinished-sounding transcript before the turn ends (None: no hold)."""
    short_answer_holds_model: bool = False
    _pause: int | None = field(default=None, repr=False)
    _silence_ms: int = field(default=0, repr=False)
    _complete: int | None = field(default=None, repr=False)
    """The pause judged a complete answer, waiting for its minimum pause."""
    _wait_ms: int = field(default=0, repr=False)
    _waiting_reason: EndReason = field(default="script", repr=False)
    _floor: tuple[int, int] | None = field(default=None, repr=False)
    """(pause, silence): the pause's transcript is a short answer; no verdict ends it sooner."""
    _judging: int | None = field(default=None, repr=False)
    """The pause whose transcript is being judged (a model verdict for it waits)."""
    _model_done: int | None = field(default=None, repr=False)
    """The pause the model judged finished while its transcript was still being judged."""
    _held: int | None = field(default=None, repr=False)
    """The pause whose transcript sounds unfinished."""

    def push(self, pause: int, silence_ms: int) -> EndpointDecision:
        self._pause = pause if silence_ms > 0 else None
        self._silence_ms = silence_ms
        decision = self.inner.push(pause, silence_ms)
        if self._held == pause and self.unfinished_max_silence_ms is not None:
            if silence_ms >= self.unfinished_max_silence_ms:
                return self._end("max_silence")
            return CONTINUE if decision.end_of_turn else decision
        if decision.end_of_turn:
            self.reset()
            return decision
        if self._complete == pause and silence_ms >= self._wait_ms:
            return self._end(self._waiting_reason)
        return decision

    def speculating(self, pause: int) -> None:
        """A transcript of `pause` is on its way to `set_answer`."""
        if self.unfinished_max_silence_ms is not None:
            self._judging = pause

    def set_verdict(self, pause: int, probability: float) -> EndpointDecision:
        if pause == self._held:
            return CONTINUE
        decision = self.inner.set_verdict(pause, probability)
        if decision.end_of_turn and pause == self._judging:
            self._model_done = pause
            return CONTINUE
        if decision.end_of_turn and self._held_by_floor(pause):
            return CONTINUE
        if decision.end_of_turn:
            self.reset()
        return decision

    def _held_by_floor(self, pause: int) -> bool:
        """The model ended `pause` before its short answer's floor: wait for the floor."""
        if self._floor is None or self._floor[0] != pause or self._silence_ms >= self._floor[1]:
            return False
        if self._complete != pause:
            self._complete, self._wait_ms, self._waiting_reason = pause, self._floor[1], "model"
        return True

    def set_answer(
        self,
        pause: int,
        complete: bool,
        min_pause_ms: int | None = None,
        *,
        unfinished: bool = False,
        reason: EndReason = "script",
    ) -> EndpointDecision:
        """The script's judgement of the transcript of `pause` (complete answer or not, or
        sounding unfinished); `min_pause_ms` overrides the policy's wait for this answer (a bare
        "Yes." waits longer); `reason` names what a complete one ends the turn as ("question":
        the caller asked something)."""
        if pause != self._pause:
            return CONTINUE
        self._judging = None
        if unfinished and self.unfinished_max_silence_ms is not None:
            self._held, self._model_done = pause, None
            return CONTINUE
        if complete:
            wait = self.min_pause_ms if min_pause_ms is None else min_pause_ms
            if self._silence_ms >= wait:
                return self._end(reason)
            self._complete, self._wait_ms, self._waiting_reason = pause, wait, reason
        if min_pause_ms is not None and self.short_answer_holds_model:
            self._floor = (pause, min_pause_ms)
        if self._model_done == pause:
            if self._held_by_floor(pause):
                return CONTINUE
            return self._end("model")
        return CONTINUE

    def _end(self, reason: EndReason = "script") -> EndpointDecision:
        self.reset()
        return EndpointDecision(end_of_turn=True, reason=reason)

    def reset(self) -> None:
        self._pause = None
        self._silence_ms = 0
        self._complete = None
        self._wait_ms = 0
        self._waiting_reason = "script"
        self._floor = None
        self._judging = None
        self._model_done = None
        self._held = None
        self.inner.reset()
