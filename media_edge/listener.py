"""The caller's ear on one call: 20 ms frames in, typed caller events out.

Frames → VAD (Silero, off the event loop, windows regrouped by `FrameVAD`) → the `Endpointer`
with its policy and barge-in classifier (pure, clock-free; `slot eval turns` drives the very
same objects with a simulated clock) → what the endpointer asks for: the turn model at a pause,
the first STT words of speech over the agent, a speculative transcript once the caller pauses →
what the call needs to know, reported to a `ListenerHooks`: a turn ended (with its transcript
on the way), speech over the agent (pause it), a barge-in, a backchannel. Speculative
transcriptions that speech made stale are cancelled, not left running.

Script-aware endpointing: the call hands the listener what the agent's question expects
(`expect`); each speculative transcript is judged against it (`judge_answer`) and a complete
answer ends the turn at once, with that transcript (no second STT). Transcriptions are biased to
the question (`SpeechContext`) when `stt_script_context` is on.

With a streaming recognizer (`media_edge.stt_stream.CallStream`: Deepgram Nova-3 or Flux) every
frame is also streamed to it; its words take the place of the Whisper passes (at a pause, over
the agent) and its own end-of-turn signals (`UtteranceEnd` at a pause, Flux's `EndOfTurn`) end
the turn like the policy would.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from media_edge.audio import PHONE_RATE, SampleWindows
from media_edge.barge_in import BargeInClassifier
from media_edge.endpoint_policies import (
    EndpointPolicy,
    FixedSilencePolicy,
    ScriptAwarePolicy,
    SmartTurnConfig,
    SmartTurnPolicy,
)
from media_edge.endpointer import (
    Backchannel,
    BargeIn,
    EndOfTurn,
    Endpointer,
    EndpointerConfig,
    PauseAgent,
    SpeculativePause,
    SpeechResumed,
    SpeechStarted,
    TurnEvent,
    TurnModelWanted,
    WordsWanted,
)
from media_edge.events import ms_between
from media_edge.providers import (
    PCM,
    SpeechContext,
    SpeechToText,
    Transcript,
    VoiceActivityDetector,
)
from media_edge.smart_turn import TurnDetector
from media_edge.stt_stream import CallStream, StreamEndOfTurn, StreamEvent, StreamUtteranceEnd
from slot.settings import Settings
from workflows.expectations import AnswerReadings, ExpectedAnswer, judge_answer

Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


SHORT_ANSWER_WORDS = 2


def is_short_answer(text: str) -> bool:
    """One or two words ("Yes.", "Okay.", "Yeah, sure."): often the start of a longer answer
    ("Okay. [pause] Yeah, I own my place"), so the script waits longer before ending the turn."""
    return 0 < len(re.findall(r"[A-Za-z0-9']+", text)) <= SHORT_ANSWER_WORDS


def endpointer_config(settings: Settings) -> EndpointerConfig:
    return EndpointerConfig(
        threshold=settings.vad_threshold,
        speculative_after_ms=settings.speculative_stt_after_ms,
        barge_in_min_speech_ms=settings.barge_in_min_speech_ms,
        max_turn_ms=int(settings.max_turn_s * 1000),
        pause_agent_after_ms=settings.barge_in_pause_after_ms,
        backchannel_silence_ms=(
            settings.backchannel_resume_after_ms
            if settings.barge_in_pause_after_ms is not None
            else None
        ),
    )


def acoustic_policy(settings: Settings) -> EndpointPolicy:
    """When the caller sounds finished: Smart Turn, or a fixed silence; with Flux, Flux's
    `EndOfTurn`, with the longest silence as the backstop."""
    if settings.stt == "flux":
        return FixedSilencePolicy(settings.max_endpoint_silence_ms)
    if settings.endpointing == "smart_turn":
        return SmartTurnPolicy(
            SmartTurnConfig(
                threshold=settings.smart_turn_threshold,
                min_pause_ms=settings.smart_turn_min_pause_ms,
                max_silence_ms=settings.max_endpoint_silence_ms,
            )
        )
    return FixedSilencePolicy(settings.endpoint_silence_ms)


def endpoint_policy(settings: Settings) -> EndpointPolicy:
    """The acoustic policy, script-aware when `script_endpointing` is on."""
    policy = acoustic_policy(settings)
    if settings.script_endpointing:
        return ScriptAwarePolicy(
            policy,
            settings.script_endpoint_min_pause_ms,
            settings.unfinished_max_silence_ms,
            settings.script_short_answer_holds_model,
        )
    return policy


def uses_turn_model(policy: EndpointPolicy) -> bool:
    if isinstance(policy, ScriptAwarePolicy):
        return uses_turn_model(policy.inner)
    return isinstance(policy, SmartTurnPolicy)


def barge_in_classifier(settings: Settings) -> BargeInClassifier:
    return BargeInClassifier(
        min_interrupt_ms=settings.barge_in_min_speech_ms,
        max_backchannel_ms=max(
            settings.barge_in_max_backchannel_ms, settings.barge_in_min_speech_ms
        ),
        use_words=settings.barge_in_confirm_words,
        unclear_is_backchannel=settings.barge_in_unclear_is_backchannel,
    )


def build_endpointer(settings: Settings) -> Endpointer:
    """The edge's endpointer as the settings describe it."""
    return Endpointer(
        endpointer_config(settings), endpoint_policy(settings), barge_in_classifier(settings)
    )


QUIET_PROBABILITY = 0.1
QUIET_RESET_MS = 1000


class FrameVAD:
    """Speech probability of each 20 ms frame: frames regrouped into the VAD's windows, a frame
    carrying the probability of the last window it completed (else the previous frame's).

    After `QUIET_RESET_MS` of quiet the VAD's recurrent state is reset. Run on over a whole
    call, Silero's state can go deaf: in a dev call, a minute and five turns in, "Tuesdays
    work." scored 0.09 where a fresh state scores 0.99, and the caller's next three answers
    were never heard (a reset after each second of quiet gave 0.81, 0.76 and 0.96)."""

    def __init__(self, vad: VoiceActivityDetector) -> None:
        self._vad = vad
        self._windows = SampleWindows(vad.window_samples)
        self.probability = 0.0
        self._quiet_windows = 0
        self._reset_after = max(1, QUIET_RESET_MS * PHONE_RATE // 1000 // vad.window_samples)
        self.resets = 0

    def push(self, pcm: PCM) -> float:
        return self.score(self.windows(pcm))

    def windows(self, pcm: PCM) -> list[PCM]:
        """The VAD windows this frame completes (none for most frames); cheap, no model."""
        return self._windows.push(pcm)

    def score(self, windows: list[PCM]) -> float:
        """Run the model on completed windows (blocking) and return the frame's probability."""
        for window in windows:
            self.probability = self._vad.speech_probability(window)
            quiet = self.probability < QUIET_PROBABILITY
            self._quiet_windows = self._quiet_windows + 1 if quiet else 0
            if self._quiet_windows >= self._reset_after:
                self._vad.reset()
                self._quiet_windows = 0
                self.resets += 1
        return self.probability


@dataclass
class TurnEnded:
    """The caller finished a turn; its transcript may still be on its way."""

    stt: asyncio.Task[tuple[Transcript, float]] = field(repr=False)
    last_voiced_at: float
    pause_at: float
    """When the pause that ended the turn was found (the model was asked, the speculative
    transcript was started, or silence ran out)."""
    endpoint_at: float
    """When the turn was declared over: the model's verdict, the script's, or the silence's."""
    model_asked: bool
    uses_turn_model: bool
    reason: str = "silence"
    turn_model_p: float | None = None
    """Smart Turn's P(complete) for the pause that ended the turn, when it was asked."""

    async def transcript(self) -> tuple[Transcript, dict[str, float]]:
        """The words, and the latency stages up to them, adding up to the time from the last
        voiced frame to the words: endpointing, turn model, STT; for a turn the script ended,
        the speculative STT then its judgement (`script_judge`)."""
        transcript, finished_at = await self.stt
        latency = {"endpointing": ms_between(self.pause_at, self.last_voiced_at)}
        if self.uses_turn_model:
            latency["turn_model"] = (
                ms_between(self.endpoint_at, self.pause_at) if self.model_asked else 0.0
            )
        if self.reason in ("script", "question"):
            latency["stt"] = ms_between(finished_at, self.pause_at)
            latency["script_judge"] = ms_between(self.endpoint_at, finished_at)
        else:
            latency["stt"] = ms_between(finished_at, self.endpoint_at)
        return transcript, latency


class ListenerHooks(Protocol):
    """What the listener tells its call about, and asks it."""

    def agent_speaking(self) -> bool: ...

    async def on_speech_started(self, at: float) -> None:
        """Caller speech started (`at`: its first voiced frame): it may continue the last turn."""
        ...

    async def on_agent_paused(self, at: float) -> None:
        """Caller speech started over the agent: stop its audio now, keep the rest."""
        ...

    def on_backchannel(self, voiced_ms: int) -> None:
        """The speech over the agent was a backchannel: the agent plays on."""
        ...

    async def on_barge_in(self, at: float) -> None:
        """The caller talks over the agent and means it: silence the agent now."""
        ...

    def on_turn_ended(self, turn: TurnEnded) -> None: ...

    def on_error(self, reason: str) -> None:
        """Something failed that costs one turn, not the call (e.g. speech-to-text)."""
        ...


class Listener:
    """One call's listening: feed it frames with `on_frame`."""

    def __init__(
        self,
        *,
        settings: Settings,
        vad: VoiceActivityDetector,
        vad_executor: Executor,
        stt: SpeechToText,
        turn_detector: TurnDetector | None,
        hooks: ListenerHooks,
        spawn: Spawn,
        call_id: str,
        log: logging.LoggerAdapter[logging.Logger],
        stream: CallStream | None = None,
    ) -> None:
        self.endpointer = build_endpointer(settings)
        self.uses_turn_model = uses_turn_model(self.endpointer.policy)
        if self.uses_turn_model and turn_detector is None:
            raise RuntimeError("endpointing is smart_turn but the edge has no turn detector")
        self._vad = FrameVAD(vad)
        self._vad_executor = vad_executor
        self._stt: SpeechToText = stream if stream is not None else stt
        self._stream = stream
        if stream is not None:
            stream.listen(self._on_stream_event)
        self._turn_detector = turn_detector
        self._hooks = hooks
        self._spawn = spawn
        self._call_id = call_id
        self._log_transcripts = settings.log_transcripts
        self._script_context = settings.stt_script_context
        self._second_look = settings.stt_second_look
        self._short_answer_pause_ms = settings.script_short_answer_min_pause_ms
        self._question_ends_turn = settings.script_question_ends_turn
        self.log = log
        self.expect: ExpectedAnswer | None = None
        """What an answer to the agent's current question looks like (None: no script)."""
        self._speculative: asyncio.Task[tuple[Transcript, float]] | None = None
        self._speculated_at: dict[int, float] = {}
        """When the speculative transcript of each pause of the open segment was started."""
        self._model_asked_at: dict[int, float] = {}
        """When the turn model was asked about each pause of the open segment."""
        self._verdicts: dict[int, float] = {}
        """The turn model's P(complete) for each pause of the open segment it has judged."""

    async def on_frame(self, pcm: PCM, mulaw: bytes = b"") -> None:
        """One 20 ms frame: `pcm` for the VAD, `mulaw` (as Twilio sent it) for a stream."""
        now = time.monotonic()
        windows = self._vad.windows(pcm)
        probability = self._vad.probability
        if windows:
            probability = await asyncio.get_running_loop().run_in_executor(
                self._vad_executor, self._vad.score, windows
            )
        agent_speaking = self._hooks.agent_speaking()
        if self._stream is not None and mulaw:
            audible = probability >= self.endpointer.config.threshold or self.endpointer.in_segment
            self._stream.push(mulaw, agent_speaking=agent_speaking, caller_audible=audible)
        events = self.endpointer.push(pcm, probability, now, agent_speaking)
        await self._handle(events)

    def _on_stream_event(self, event: StreamEvent) -> None:
        """The recognizer's own end-of-turn signals end the open turn as the policy would."""
        events: list[TurnEvent] = []
        now = time.monotonic()
        if isinstance(event, StreamUtteranceEnd):
            events = self.endpointer.end_now("utterance_end", now, self._hooks.agent_speaking())
        elif isinstance(event, StreamEndOfTurn):
            events = self.endpointer.end_now(
                "provider", now, self._hooks.agent_speaking(), paused=False
            )
        if events:
            self._spawn(self._handle(events))

    async def _handle(self, events: list[TurnEvent]) -> None:
        for event in events:
            if isinstance(event, SpeculativePause):
                self._supersede_speculative()
                self._speculated_at[event.pause] = event.at
                self._speculative = self._spawn(self._speculate(event))
            elif isinstance(event, SpeechStarted):
                self._supersede_speculative()
                await self._hooks.on_speech_started(event.at)
            elif isinstance(event, SpeechResumed):
                self._supersede_speculative()
            elif isinstance(event, TurnModelWanted):
                self._ask_turn_model(event)
            elif isinstance(event, PauseAgent):
                await self._hooks.on_agent_paused(event.at)
            elif isinstance(event, BargeIn):
                await self._hooks.on_barge_in(event.at)
            elif isinstance(event, WordsWanted):
                self._spawn(self._first_words(event))
            elif isinstance(event, EndOfTurn):
                self._end_of_turn(event)
            elif isinstance(event, Backchannel):
                self._supersede_speculative()
                self._model_asked_at.clear()
                self._speculated_at.clear()
                self._verdicts.clear()
                self.log.debug("backchannel of %d ms over the agent ignored", event.voiced_ms)
                self._hooks.on_backchannel(event.voiced_ms)

    def _supersede_speculative(self) -> None:
        if self._speculative is not None:
            self._speculative.cancel()
            self._speculative = None

    def _ask_turn_model(self, wanted: TurnModelWanted) -> None:
        """Run Smart Turn once on this pause (last 8 s of the segment), off the event loop."""
        if not self.endpointer.paused or self.endpointer.pause != wanted.pause:
            return
        self._model_asked_at[wanted.pause] = wanted.at
        key = (self._call_id, self.endpointer.segment, wanted.pause)
        self._spawn(self._turn_verdict(wanted, key))

    async def _turn_verdict(self, wanted: TurnModelWanted, key: Hashable) -> None:
        detector = self._turn_detector
        assert detector is not None
        try:
            probability = await detector.probability(key, wanted.audio)
        except Exception as error:
            self.log.error("turn model failed (the pause waits for max silence): %r", error)
            return
        self._verdicts[wanted.pause] = probability
        events = self.endpointer.set_verdict(
            wanted.pause, probability, time.monotonic(), self._hooks.agent_speaking()
        )
        await self._handle(events)

    def _end_of_turn(self, event: EndOfTurn) -> None:
        stt = self._speculative or self._spawn(self._transcribe(event.audio, self._context()))
        self._speculative = None
        pause_at = event.endpoint_at
        asked_at = self._model_asked_at.get(self.endpointer.pause)
        model_asked = event.reason == "model" and asked_at is not None
        if model_asked and asked_at is not None:
            pause_at = asked_at
        speculated_at = self._speculated_at.get(self.endpointer.pause)
        if event.reason in ("script", "question") and speculated_at is not None:
            pause_at = speculated_at
        verdict = self._verdicts.get(self.endpointer.pause)
        self._model_asked_at.clear()
        self._speculated_at.clear()
        self._verdicts.clear()
        self._hooks.on_turn_ended(
            TurnEnded(
                stt=stt,
                last_voiced_at=event.last_voiced_at,
                pause_at=pause_at,
                endpoint_at=event.endpoint_at,
                model_asked=model_asked,
                uses_turn_model=self.uses_turn_model,
                reason=event.reason,
                turn_model_p=verdict,
            )
        )

    def _context(self) -> SpeechContext | None:
        """What biases the transcription of an answer: the question and the answer's words."""
        expect = self.expect
        if not self._script_context or expect is None:
            return None
        return SpeechContext(
            prompt=expect.question,
            hotwords=tuple(expect.vocabulary()),
            readings=AnswerReadings(expect) if self._second_look else None,
        )

    async def _speculate(self, pause: SpeculativePause) -> tuple[Transcript, float]:
        """The transcript of the turn so far; if it completely answers the question, the turn
        ends now (the endpointer is told; this very transcript becomes the turn's)."""
        expect = self.expect
        transcript, finished_at = await self._transcribe(pause.audio, self._context())
        if isinstance(self.endpointer.policy, ScriptAwarePolicy):
            judgement = judge_answer(expect, transcript.text)
            if self._log_transcripts:
                self.log.info("pause %d judged %s", pause.pause, judgement.reason)
            asked = self._question_ends_turn and judgement.question
            events = self.endpointer.set_answer(
                pause.pause,
                judgement.complete or asked,
                time.monotonic(),
                self._hooks.agent_speaking(),
                self._short_answer_pause_ms if is_short_answer(transcript.text) else None,
                unfinished=judgement.unfinished,
                reason="question" if asked else "script",
            )
            await self._handle(events)
        return transcript, finished_at

    async def _first_words(self, wanted: WordsWanted) -> None:
        """Caller speech over the agent: its first words tell a backchannel from an interruption."""
        if self._stream is not None:
            transcript = await self._stream.first_words(wanted.audio, PHONE_RATE)
        else:
            transcript, _ = await self._transcribe(wanted.audio)
        if self._log_transcripts:
            self.log.info("first words over the agent: %s", transcript.text)
        answers = judge_answer(self.expect, transcript.text).complete
        self.endpointer.set_words(wanted.segment, transcript.text, answers=answers)
        await self._handle(
            self.endpointer.check_barge_in(time.monotonic(), self._hooks.agent_speaking())
        )

    async def _transcribe(
        self, audio: PCM, context: SpeechContext | None = None
    ) -> tuple[Transcript, float]:
        """A failed transcription loses one turn, never the call."""
        try:
            transcript = await self._stt.transcribe(audio, PHONE_RATE, context)
        except Exception as error:
            self.log.error("speech-to-text failed: %r", error, exc_info=error)
            self._hooks.on_error(f"speech-to-text failed: {error}")
            transcript = Transcript(text="")
        if transcript.first_reading is not None and self._log_transcripts:
            self.log.info("read %r as %r (second look)", transcript.first_reading, transcript.text)
        return transcript, time.monotonic()
