"""The listener: frames in, caller events out to its hooks; stale speculative STT is cancelled.

Speech-to-text and the VAD are the provider seams (their real models are tested elsewhere):
here a VAD that reads the frame's loudness and an STT that waits until the test lets it answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import pytest

from media_edge.audio import FRAME_SAMPLES
from media_edge.listener import Listener, TurnEnded
from media_edge.providers import PCM, SpeechContext, Transcript
from media_edge.smart_turn import SmartTurnModel, TurnDetector
from slot.playbooks import load_playbook_file
from slot.settings import REPO_ROOT, Settings
from workflows.expectations import expected_answer

SPEECH = np.full(FRAME_SAMPLES, 1000, dtype=np.int16)
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class LoudnessVAD:
    window_samples = FRAME_SAMPLES

    def speech_probability(self, window: PCM) -> float:
        return 0.9 if np.abs(window).max() > 0 else 0.0

    def reset(self) -> None:
        pass


class HeldSTT:
    """Answers each transcription only when `release()` is called; records cancellations."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self._release = asyncio.Event()

    def release(self) -> None:
        self._release.set()

    async def transcribe(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        self.calls += 1
        self.started.set()
        try:
            await self._release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return Transcript(text=f"{len(audio)} samples")


class ScriptedSTT:
    """Hears `text` in every segment at once; records the context each call was given."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.contexts: list[SpeechContext | None] = []

    async def transcribe(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        self.contexts.append(context)
        return Transcript(text=self.text)


class Hooks:
    def __init__(self, agent: bool = False) -> None:
        self.agent = agent
        self.turns: list[TurnEnded] = []
        self.barge_ins: list[float] = []
        self.speech_starts: list[float] = []
        self.pauses: list[float] = []
        self.backchannels: list[int] = []
        self.errors: list[str] = []

    def agent_speaking(self) -> bool:
        return self.agent

    async def on_speech_started(self, at: float) -> None:
        self.speech_starts.append(at)

    async def on_agent_paused(self, at: float) -> None:
        self.pauses.append(at)

    async def on_barge_in(self, at: float) -> None:
        self.barge_ins.append(at)
        self.agent = False

    def on_backchannel(self, voiced_ms: int) -> None:
        self.backchannels.append(voiced_ms)

    def on_turn_ended(self, turn: TurnEnded) -> None:
        self.turns.append(turn)

    def on_error(self, reason: str) -> None:
        self.errors.append(reason)


class FixedTurnModel:
    """The turn model's seam: the same P(complete) for every pause."""

    def __init__(self, probability: float) -> None:
        self.probability = probability

    def predict(self, audio: PCM, sample_rate: int = 8000) -> float:
        return self.probability


def listener(
    hooks: Hooks,
    stt: HeldSTT | ScriptedSTT,
    tasks: list[asyncio.Task[Any]],
    turn_model: FixedTurnModel | None = None,
    **overrides: Any,
) -> Listener:
    settings = Settings(
        **{
            "endpointing": "silence",
            "endpoint_silence_ms": 600,
            "speculative_stt_after_ms": 200,
            "barge_in_min_speech_ms": 200,
            "barge_in_confirm_words": False,
            "barge_in_pause_after_ms": None,
            **overrides,
        }
    )

    def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        tasks.append(task)
        return task

    return Listener(
        settings=settings,
        vad=LoudnessVAD(),
        vad_executor=ThreadPoolExecutor(max_workers=1),
        stt=stt,
        turn_detector=(
            TurnDetector(cast(SmartTurnModel, turn_model)) if turn_model is not None else None
        ),
        hooks=hooks,
        spawn=spawn,
        call_id="call-test",
        log=logging.LoggerAdapter(logging.getLogger("test")),
    )


async def feed(listen: Listener, frame: PCM, count: int) -> None:
    for _ in range(count):
        await listen.on_frame(frame)


async def test_speech_after_a_pause_cancels_the_speculative_transcription() -> None:
    hooks, stt, tasks = Hooks(), HeldSTT(), list[asyncio.Task[Any]]()
    listen = listener(hooks, stt, tasks)
    await feed(listen, SPEECH, 30)
    await feed(listen, SILENCE, 15)  # 300 ms: a speculative transcription starts
    (speculative,) = tasks
    await asyncio.wait_for(stt.started.wait(), 5)
    await feed(listen, SPEECH, 10)  # the caller goes on: that transcription is stale
    await asyncio.wait_for(stt.cancelled.wait(), 5)
    await asyncio.wait([speculative])
    assert speculative.cancelled()
    await feed(listen, SILENCE, 30)
    (turn,) = hooks.turns
    assert turn.stt is tasks[-1] and turn.stt is not speculative
    stt.release()
    transcript, latency = await asyncio.wait_for(turn.transcript(), 5)
    # The turn's words are the speculative transcription made 200 ms into its final pause.
    assert transcript.text == f"{(30 + 15 + 10 + 10) * FRAME_SAMPLES} samples"
    assert {"endpointing", "stt"} <= set(latency) and "turn_model" not in latency
    assert stt.calls == 2


async def test_speech_over_the_agent_reports_a_barge_in_and_a_backchannel() -> None:
    hooks, stt, tasks = Hooks(agent=True), HeldSTT(), list[asyncio.Task[Any]]()
    listen = listener(hooks, stt, tasks)
    await feed(listen, SPEECH, 5)  # 100 ms "mm"
    await feed(listen, SILENCE, 40)
    assert hooks.backchannels == [100] and hooks.barge_ins == [] and hooks.turns == []
    await feed(listen, SPEECH, 15)
    assert len(hooks.barge_ins) == 1  # at 200 ms of speech over the agent
    await feed(listen, SILENCE, 30)
    (turn,) = hooks.turns
    stt.release()
    transcript, _ = await asyncio.wait_for(turn.transcript(), 5)
    assert transcript.text
    for task in tasks:
        task.cancel()


PLAYBOOK = load_playbook_file(REPO_ROOT / "playbooks" / "solar_survey.yaml")


async def settle(tasks: list[asyncio.Task[Any]]) -> None:
    """Let the spawned transcriptions (and their judgements) finish."""
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)


async def script_turn(text: str, question: str, state: str) -> tuple[Hooks, ScriptedSTT]:
    """Two seconds of speech, then a pause of 400 ms judged against the question; the acoustic
    policy alone would wait 1.5 s."""
    hooks, stt, tasks = Hooks(), ScriptedSTT(text), list[asyncio.Task[Any]]()
    listen = listener(hooks, stt, tasks, endpoint_silence_ms=1500, script_endpointing=True)
    listen.expect = expected_answer(PLAYBOOK, state, question)
    await feed(listen, SPEECH, 100)
    await feed(listen, SILENCE, 15)  # transcribed at 200 ms, judged complete or not
    await settle(tasks)
    await feed(listen, SILENCE, 10)  # 500 ms: past the minimum pause after a complete answer
    return hooks, stt


async def test_a_one_word_answer_waits_longer_before_it_ends_the_turn() -> None:
    hooks, stt, tasks = Hooks(), ScriptedSTT("Okay."), list[asyncio.Task[Any]]()
    listen = listener(hooks, stt, tasks, endpoint_silence_ms=1500, script_endpointing=True)
    listen.expect = expected_answer(PLAYBOOK, "pitch", "Would you like a free survey?")
    await feed(listen, SPEECH, 100)
    await feed(listen, SILENCE, 15)
    await settle(tasks)
    await feed(listen, SILENCE, 15)  # 600 ms: "Okay." may go on ("Okay. Yeah, I own it")
    assert hooks.turns == []
    await feed(listen, SILENCE, 6)  # 720 ms: past the short answer's minimum pause
    (turn,) = hooks.turns
    assert turn.reason == "script"


async def test_a_complete_answer_ends_the_turn_at_the_pause_with_its_transcript() -> None:
    hooks, stt = await script_turn("Yeah, we own it.", "Do you own your home?", "homeowner")
    (turn,) = hooks.turns
    assert turn.reason == "script"
    transcript, latency = await turn.transcript()
    assert transcript.text == "Yeah, we own it."
    assert len(stt.contexts) == 1  # the speculative transcript is the turn's: no second STT
    assert {"endpointing", "stt", "script_judge"} <= set(latency)
    context = stt.contexts[0]
    assert context is not None and context.prompt == "Do you own your home?"


@pytest.mark.parametrize("on", [True, False])
async def test_a_question_of_the_callers_ends_the_turn_like_a_complete_answer(on: bool) -> None:
    """ "How long would they be here for?" answers nothing the script asked, but the caller
    has handed the turn over: it ends at the complete answer's pause, reported as a question.
    With the setting off it waits for the acoustic policy (1.5 s here)."""
    hooks, stt = Hooks(), ScriptedSTT("How long would they be here for?")
    tasks: list[asyncio.Task[Any]] = []
    listen = listener(
        hooks,
        stt,
        tasks,
        endpoint_silence_ms=1500,
        script_endpointing=True,
        script_question_ends_turn=on,
    )
    listen.expect = expected_answer(PLAYBOOK, "pitch", "Would you like a free survey?")
    await feed(listen, SPEECH, 100)
    await feed(listen, SILENCE, 15)
    await settle(tasks)
    await feed(listen, SILENCE, 10)  # 500 ms of silence
    if not on:
        assert hooks.turns == []
        return
    (turn,) = hooks.turns
    assert turn.reason == "question"
    transcript, latency = await turn.transcript()
    assert transcript.text == "How long would they be here for?"
    assert len(stt.contexts) == 1 and {"stt", "script_judge"} <= set(latency)


@pytest.mark.parametrize(("probability", "reason"), [(0.97, "model"), (0.3, "max_silence")])
async def test_a_turn_reports_the_turn_models_verdict_on_its_last_pause(
    probability: float, reason: str
) -> None:
    hooks, stt, tasks = Hooks(), ScriptedSTT("I think that works."), list[asyncio.Task[Any]]()
    listen = listener(
        hooks,
        stt,
        tasks,
        FixedTurnModel(probability),
        endpointing="smart_turn",
        smart_turn_threshold=0.95,
        max_endpoint_silence_ms=1000,
    )
    await feed(listen, SPEECH, 50)
    await feed(listen, SILENCE, 12)  # the model is asked at 200 ms
    await settle(tasks)
    await feed(listen, SILENCE, 45)
    (turn,) = hooks.turns
    assert turn.reason == reason and turn.turn_model_p == probability


async def test_an_unfinished_answer_waits() -> None:
    hooks, _ = await script_turn(
        "My bill is around", "About how much is your monthly bill?", "qualify"
    )
    assert hooks.turns == []


async def test_a_turn_without_a_script_waits_for_the_silence() -> None:
    hooks, stt, tasks = Hooks(), ScriptedSTT("Yeah, we own it."), list[asyncio.Task[Any]]()
    listen = listener(hooks, stt, tasks, endpoint_silence_ms=1500, script_endpointing=True)
    await feed(listen, SPEECH, 100)
    await feed(listen, SILENCE, 15)
    await settle(tasks)
    assert hooks.turns == [] and stt.contexts == [None]


async def context_at_ask_day(heard: str, **overrides: Any) -> SpeechContext | None:
    """The context the listener gives its STT for one answer to the weekday question."""
    hooks, stt, tasks = Hooks(), ScriptedSTT(heard), list[asyncio.Task[Any]]()
    listen = listener(hooks, stt, tasks, **overrides)
    listen.expect = expected_answer(PLAYBOOK, "ask_day", "Which weekday works best?")
    await feed(listen, SPEECH, 50)
    await feed(listen, SILENCE, 40)
    await settle(tasks)
    (context,) = stt.contexts
    return context


async def test_transcription_is_biased_to_the_question_when_switched_on() -> None:
    for switched_on in (True, False):
        context = await context_at_ask_day("Wednesday.", stt_script_context=switched_on)
        if switched_on:
            assert context is not None and context.prompt == "Which weekday works best?"
            assert "Wednesday" in context.hotwords
        else:
            assert context is None


async def test_the_script_judges_the_stts_readings_when_the_second_look_is_on() -> None:
    """The STT is given the state's judge of its readings, which takes a misheard day for
    nothing and the day for an answer, only with `stt_second_look`."""
    for switched_on in (True, False):
        context = await context_at_ask_day("Doomed then.", stt_second_look=switched_on)
        assert context is not None
        if switched_on:
            assert context.readings is not None
            assert not context.readings.settled("Doomed then.")
            assert context.readings.answers("Tuesday.")
        else:
            assert context.readings is None


async def test_speech_over_the_agent_pauses_it_then_a_backchannel_resumes_it() -> None:
    hooks, stt, tasks = Hooks(agent=True), ScriptedSTT("Mm-hmm."), list[asyncio.Task[Any]]()
    listen = listener(
        hooks, stt, tasks, barge_in_pause_after_ms=100, backchannel_resume_after_ms=300
    )
    await feed(listen, SPEECH, 8)
    assert len(hooks.pauses) == 1  # paused at onset, 100 ms in
    await feed(listen, SILENCE, 15)
    assert hooks.backchannels == [160] and hooks.barge_ins == [] and hooks.turns == []
    for task in tasks:
        task.cancel()
