"""The endpointer on synthetic probability sequences whose answers are known frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from media_edge.barge_in import BargeInClassifier
from media_edge.endpoint_policies import (
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

CONFIG = EndpointerConfig(
    threshold=0.5,
    hysteresis=0.15,
    min_speech_ms=60,
    pre_roll_ms=200,
    speculative_after_ms=200,
    barge_in_min_speech_ms=200,
    max_turn_ms=30_000,
)


class Run:
    """Feeds frames numbered from 0; frame i holds the value i and arrives at i * 20 ms."""

    def __init__(self, config: EndpointerConfig = CONFIG, endpoint_ms: int = 600) -> None:
        self.endpointer = Endpointer(config, FixedSilencePolicy(endpoint_ms))
        self.index = 0
        self.events: list[tuple[int, TurnEvent]] = []

    def feed(self, probability: float, count: int = 1, agent: bool = False) -> None:
        for _ in range(count):
            frame = np.full(160, self.index, dtype=np.int16)
            for event in self.endpointer.push(frame, probability, self.index * 0.02, agent):
                self.events.append((self.index, event))
            self.index += 1

    def of(self, kind: type) -> list[tuple[int, TurnEvent]]:
        return [(i, e) for i, e in self.events if isinstance(e, kind)]


def frame_ids(audio: np.ndarray) -> list[int]:
    return [int(v) for v in audio[::160]]


def test_a_simple_turn() -> None:
    run = Run()
    run.feed(0.0, 20)  # frames 0-19 silence
    run.feed(0.9, 50)  # frames 20-69 speech
    run.feed(0.0, 40)  # frames 70-109 silence
    kinds = [type(e) for _, e in run.events]
    assert kinds == [SpeechStarted, SpeculativePause, EndOfTurn]
    ((i_start, started),) = run.of(SpeechStarted)
    assert i_start == 22 and isinstance(started, SpeechStarted)
    assert started.at == 20 * 0.02  # confirmed after 60 ms, dated at onset
    ((i_spec, spec),) = run.of(SpeculativePause)
    assert i_spec == 79  # 10 silent frames = 200 ms
    ((i_end, end),) = run.of(EndOfTurn)
    assert i_end == 99  # 30 silent frames = 600 ms
    assert isinstance(end, EndOfTurn) and isinstance(spec, SpeculativePause)
    assert end.last_voiced_at == 69 * 0.02
    assert end.endpoint_at == 99 * 0.02
    assert end.reason == "silence" and not end.barged_in
    # 200 ms of pre-roll (frames 10-19), then everything up to the endpoint.
    assert frame_ids(end.audio) == list(range(10, 100))
    assert frame_ids(spec.audio) == list(range(10, 80))


def test_a_short_pause_resumes_the_same_turn() -> None:
    run = Run()
    run.feed(0.9, 30)
    run.feed(0.0, 15)  # 300 ms: speculative pause, not an endpoint
    run.feed(0.9, 20)
    run.feed(0.0, 30)
    kinds = [type(e) for _, e in run.events]
    assert kinds == [SpeechStarted, SpeculativePause, SpeechResumed, SpeculativePause, EndOfTurn]
    ((_, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn)
    assert frame_ids(end.audio) == list(range(0, 95))


def test_clicks_shorter_than_min_speech_are_not_turns() -> None:
    run = Run()
    for _ in range(10):
        run.feed(0.0, 10)
        run.feed(0.9, 2)  # 40 ms blips
    run.feed(0.0, 50)
    assert run.events == []


def test_hysteresis_keeps_speech_through_a_dip() -> None:
    run = Run()
    run.feed(0.9, 20)
    run.feed(0.4, 40)  # between threshold-hysteresis and threshold: still speech
    run.feed(0.3, 29)  # below 0.35: silence, but not yet 600 ms
    assert run.of(EndOfTurn) == []
    run.feed(0.3, 1)
    ((i_end, end),) = run.of(EndOfTurn)
    assert i_end == 89 and isinstance(end, EndOfTurn)
    assert end.last_voiced_at == 59 * 0.02


def test_a_silent_stream_that_starts_between_thresholds_stays_silent() -> None:
    run = Run()
    run.feed(0.45, 100)
    assert run.events == []


def test_barge_in_after_enough_speech_over_the_agent() -> None:
    run = Run()
    run.feed(0.0, 10, agent=True)
    run.feed(0.9, 30, agent=True)  # frames 10-39
    ((i_barge, barge),) = run.of(BargeIn)
    assert i_barge == 19  # 10 voiced frames = 200 ms
    assert isinstance(barge, BargeIn) and barge.speech_started_at == 10 * 0.02
    run.feed(0.0, 30, agent=False)  # agent silenced by the clear
    ((_, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn) and end.barged_in
    assert frame_ids(end.audio)[0] == 0  # pre-roll kept: nothing the caller said is lost
    assert len(run.of(BargeIn)) == 1


def test_no_barge_in_when_the_agent_is_silent() -> None:
    run = Run()
    run.feed(0.9, 50, agent=False)
    run.feed(0.0, 30)
    assert run.of(BargeIn) == []
    assert len(run.of(EndOfTurn)) == 1


def test_a_backchannel_over_the_agent_is_not_a_turn() -> None:
    run = Run()
    run.feed(0.0, 10, agent=True)
    run.feed(0.9, 6, agent=True)  # 120 ms "uh-huh"
    run.feed(0.0, 30, agent=True)
    assert run.of(BargeIn) == [] and run.of(EndOfTurn) == []
    ((_, back),) = run.of(Backchannel)
    assert isinstance(back, Backchannel) and back.voiced_ms == 120


def test_speech_that_ends_before_the_agent_starts_is_a_turn() -> None:
    run = Run()
    run.feed(0.9, 20)
    run.feed(0.0, 30, agent=True)  # agent begins during the caller's trailing silence
    assert len(run.of(EndOfTurn)) == 1


def test_max_turn_length_cuts_a_turn_that_never_pauses() -> None:
    config = EndpointerConfig(max_turn_ms=1000, pre_roll_ms=0)
    run = Run(config)
    run.feed(0.9, 120)
    ends = run.of(EndOfTurn)
    assert [i for i, _ in ends] == [49, 99]  # 50 frames each, onset frames included
    assert all(isinstance(e, EndOfTurn) and e.reason == "max_length" for _, e in ends)


def test_a_turn_model_verdict_ends_the_turn_once() -> None:
    run = Run()
    run.endpointer = Endpointer(
        CONFIG, SmartTurnPolicy(SmartTurnConfig(threshold=0.5, min_pause_ms=100))
    )
    run.feed(0.9, 20)
    run.feed(0.0, 5)
    ((i_wanted, wanted),) = run.of(TurnModelWanted)
    assert i_wanted == 24 and isinstance(wanted, TurnModelWanted)
    (end,) = run.endpointer.set_verdict(wanted.pause, 0.9, now=1.0)
    assert isinstance(end, EndOfTurn) and end.reason == "model" and end.endpoint_at == 1.0
    assert run.endpointer.set_verdict(wanted.pause, 0.9, now=1.1) == []
    run.feed(0.0, 40)
    assert run.of(EndOfTurn) == []


def word_run() -> Run:
    run = Run()
    run.endpointer = Endpointer(
        CONFIG,
        FixedSilencePolicy(600),
        BargeInClassifier(min_interrupt_ms=500, max_backchannel_ms=1200, use_words=True),
    )
    return run


def test_short_speech_over_the_agent_is_a_backchannel_without_asking_for_words() -> None:
    run = word_run()
    run.feed(0.9, 20, agent=True)  # 400 ms "uh-huh"
    run.feed(0.0, 40, agent=True)
    assert run.of(BargeIn) == [] and run.of(WordsWanted) == [] and run.of(EndOfTurn) == []
    assert len(run.of(Backchannel)) == 1


def test_acknowledging_words_keep_the_agent_talking() -> None:
    run = word_run()
    run.feed(0.9, 30, agent=True)  # 600 ms
    ((_, wanted),) = run.of(WordsWanted)
    assert isinstance(wanted, WordsWanted) and wanted.segment == run.endpointer.segment
    assert frame_ids(wanted.audio) == list(range(25))  # the speech up to its first 500 ms
    run.endpointer.set_words(wanted.segment, "Yeah, right.")
    assert run.endpointer.check_barge_in(0.7, agent_speaking=True) == []
    run.feed(0.0, 40, agent=True)
    assert run.of(BargeIn) == [] and len(run.of(Backchannel)) == 1


def test_real_words_interrupt_once_they_arrive_and_the_speech_becomes_the_turn() -> None:
    run = word_run()
    run.feed(0.0, 10)
    run.feed(0.9, 30, agent=True)
    ((_, wanted),) = run.of(WordsWanted)
    assert isinstance(wanted, WordsWanted)
    run.endpointer.set_words(wanted.segment - 1, "Yeah.")  # a stale answer is ignored
    assert run.endpointer.check_barge_in(0.8, agent_speaking=True) == []
    run.endpointer.set_words(wanted.segment, "Wait, how much is it?")
    (barge,) = run.endpointer.check_barge_in(0.8, agent_speaking=True)
    assert isinstance(barge, BargeIn) and barge.speech_started_at == 10 * 0.02
    run.feed(0.9, 20)
    run.feed(0.0, 40)
    ((_, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn) and end.barged_in
    assert frame_ids(end.audio)[0] == 0  # the interrupting words from their pre-roll on


def test_a_short_unclear_reading_keeps_the_agent_talking_an_answer_interrupts() -> None:
    """With `unclear_is_backchannel`: "A memo." (a hum misheard) is a backchannel; the same
    words handed back as an answer the script understands interrupt."""
    for answers, interrupts in ((False, False), (True, True)):
        run = Run()
        run.endpointer = Endpointer(
            CONFIG,
            FixedSilencePolicy(600),
            BargeInClassifier(
                min_interrupt_ms=500,
                max_backchannel_ms=1200,
                use_words=True,
                unclear_is_backchannel=True,
            ),
        )
        run.feed(0.9, 30, agent=True)
        ((_, wanted),) = run.of(WordsWanted)
        assert isinstance(wanted, WordsWanted)
        run.endpointer.set_words(wanted.segment, "A memo.", answers=answers)
        barged = run.endpointer.check_barge_in(0.7, agent_speaking=True)
        assert [isinstance(event, BargeIn) for event in barged] == ([True] if interrupts else [])
        run.feed(0.0, 40, agent=True)
        assert len(run.of(Backchannel)) == (0 if interrupts else 1)


def test_long_speech_over_the_agent_interrupts_whatever_the_words() -> None:
    run = word_run()
    run.feed(0.9, 30, agent=True)
    ((_, wanted),) = run.of(WordsWanted)
    assert isinstance(wanted, WordsWanted)
    run.endpointer.set_words(wanted.segment, "Yeah yeah yeah.")
    run.feed(0.9, 40, agent=True)
    ((i, _),) = run.of(BargeIn)
    assert i == 59  # 60 frames = 1200 ms of speech


def test_pauses_are_numbered_and_the_segment_audio_is_readable() -> None:
    run = Run()
    run.feed(0.9, 10)
    assert not run.endpointer.paused and run.endpointer.pause == 0
    run.feed(0.0, 3)
    assert run.endpointer.paused and run.endpointer.pause == 1
    assert len(run.endpointer.audio()) == 13 * 160
    run.feed(0.9, 5)
    run.feed(0.0, 2)
    assert run.endpointer.pause == 2


def script_run(min_pause_ms: int = 0) -> Run:
    """Smart Turn that never answers (max silence 1.5 s), made script-aware."""
    run = Run()
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.9, min_pause_ms=200, max_silence_ms=1500))
    run.endpointer = Endpointer(CONFIG, ScriptAwarePolicy(policy, min_pause_ms))
    return run


def test_a_complete_answer_ends_the_turn_at_the_pause_without_waiting() -> None:
    run = script_run()
    run.feed(0.9, 30)
    run.feed(0.0, 12)  # 240 ms: the speculative transcript was taken at 200 ms
    ((_, spec),) = run.of(SpeculativePause)
    assert isinstance(spec, SpeculativePause) and spec.pause == run.endpointer.pause
    (end,) = run.endpointer.set_answer(spec.pause, True, now=0.9)
    assert isinstance(end, EndOfTurn) and end.reason == "script" and end.endpoint_at == 0.9
    assert end.last_voiced_at == 29 * 0.02
    run.feed(0.0, 80)
    assert run.of(EndOfTurn) == []  # the turn ended once, well before max silence


def test_an_incomplete_answer_waits_for_max_silence() -> None:
    run = script_run()
    run.feed(0.9, 30)
    run.feed(0.0, 12)
    ((_, spec),) = run.of(SpeculativePause)
    assert isinstance(spec, SpeculativePause)
    assert run.endpointer.set_answer(spec.pause, False, now=0.9) == []
    run.feed(0.0, 63)
    ((i_end, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn) and end.reason == "max_silence"
    assert i_end == 30 + 75 - 1  # 75 silent frames = 1.5 s


def test_a_judgement_of_a_pause_that_is_over_is_ignored() -> None:
    run = script_run()
    run.feed(0.9, 30)
    run.feed(0.0, 12)
    ((_, spec),) = run.of(SpeculativePause)
    assert isinstance(spec, SpeculativePause)
    run.feed(0.9, 10)  # the caller went on: that transcript is stale
    assert run.endpointer.set_answer(spec.pause, True, now=1.0) == []
    run.feed(0.0, 5)
    assert run.endpointer.set_answer(spec.pause, True, now=1.1) == []
    assert run.of(EndOfTurn) == []


def test_a_complete_answer_waits_for_the_minimum_pause() -> None:
    run = script_run(min_pause_ms=400)
    run.feed(0.9, 30)
    run.feed(0.0, 12)
    ((_, spec),) = run.of(SpeculativePause)
    assert isinstance(spec, SpeculativePause)
    assert run.endpointer.set_answer(spec.pause, True, now=0.9) == []
    run.feed(0.0, 8)
    ((i_end, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn) and end.reason == "script" and i_end == 30 + 20 - 1


def holding_run() -> Run:
    """Smart Turn (max silence 1 s) made script-aware, holding an unfinished pause up to 2.5 s."""
    run = Run()
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.9, min_pause_ms=200, max_silence_ms=1000))
    holding = ScriptAwarePolicy(policy, 0, unfinished_max_silence_ms=2500)
    run.endpointer = Endpointer(CONFIG, holding)
    return run


def test_an_unfinished_transcript_holds_the_turn_past_max_silence_and_the_models_verdict() -> None:
    run = holding_run()
    run.feed(0.9, 30)
    run.feed(0.0, 10)  # 200 ms: the model and the transcript are asked for together
    ((_, spec),) = run.of(SpeculativePause)
    ((_, wanted),) = run.of(TurnModelWanted)
    assert isinstance(spec, SpeculativePause) and isinstance(wanted, TurnModelWanted)
    assert run.endpointer.set_verdict(wanted.pause, 0.99, now=0.8) == []  # "um..." sounds done
    assert run.endpointer.set_answer(spec.pause, False, now=0.85, unfinished=True) == []
    run.feed(0.0, 80)  # 1.8 s of silence in all: past the 1 s max silence
    assert run.of(EndOfTurn) == []
    run.feed(0.9, 10)  # "...about ninety dollars"
    run.feed(0.0, 10)
    assert run.endpointer.set_answer(run.endpointer.pause, True, now=3.0) != []


def test_an_unfinished_transcript_ends_the_turn_at_the_longer_silence() -> None:
    run = holding_run()
    run.feed(0.9, 30)
    run.feed(0.0, 10)
    ((_, spec),) = run.of(SpeculativePause)
    assert isinstance(spec, SpeculativePause)
    assert run.endpointer.set_answer(spec.pause, False, now=0.8, unfinished=True) == []
    run.feed(0.0, 120)
    ((i_end, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn) and end.reason == "max_silence"
    assert i_end == 30 + 125 - 1  # 125 silent frames = 2.5 s


def test_the_models_verdict_waits_for_the_transcript_then_ends_the_turn() -> None:
    run = holding_run()
    run.feed(0.9, 30)
    run.feed(0.0, 10)
    ((_, spec),) = run.of(SpeculativePause)
    ((_, wanted),) = run.of(TurnModelWanted)
    assert isinstance(spec, SpeculativePause) and isinstance(wanted, TurnModelWanted)
    assert run.endpointer.set_verdict(wanted.pause, 0.99, now=0.8) == []
    (end,) = run.endpointer.set_answer(spec.pause, False, now=0.85)  # no answer, but finished
    assert isinstance(end, EndOfTurn) and end.reason == "model" and end.endpoint_at == 0.85


@pytest.mark.parametrize("verdict_first", [True, False])
@pytest.mark.parametrize("holds", [True, False])
def test_a_short_answer_is_not_ended_by_the_model_before_its_longer_pause(
    verdict_first: bool, holds: bool
) -> None:
    """ "Yes." then a pause: the model finds it complete (before or after the transcript), but
    the turn waits the short answer's 700 ms, so a caller going on ("...this is Keiko") keeps
    the turn open. Without `short_answer_holds_model` the model ends it at once."""
    run = Run()
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.9, min_pause_ms=200, max_silence_ms=1000))
    run.endpointer = Endpointer(
        CONFIG, ScriptAwarePolicy(policy, 450, 2500, short_answer_holds_model=holds)
    )
    run.feed(0.9, 30)
    run.feed(0.0, 10)
    ((_, spec),) = run.of(SpeculativePause)
    ((_, wanted),) = run.of(TurnModelWanted)
    assert isinstance(spec, SpeculativePause) and isinstance(wanted, TurnModelWanted)
    ended: list[TurnEvent] = []
    for step in ("verdict", "answer") if verdict_first else ("answer", "verdict"):
        if step == "verdict":
            ended += run.endpointer.set_verdict(wanted.pause, 0.99, now=0.8)
        else:
            ended += run.endpointer.set_answer(spec.pause, False, now=0.85, min_pause_ms=700)
    if not holds:
        assert [type(event) for event in ended] == [EndOfTurn]
        return
    assert ended == []
    run.feed(0.0, 20)  # 600 ms of silence: not yet
    assert run.of(EndOfTurn) == []
    run.feed(0.0, 15)  # past 700 ms, before the 1 s maximum
    ((_, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn) and end.reason == "model"


def test_without_a_hold_the_model_does_not_wait_for_the_transcript() -> None:
    run = script_run()
    run.feed(0.9, 30)
    run.feed(0.0, 10)
    ((_, wanted),) = run.of(TurnModelWanted)
    assert isinstance(wanted, TurnModelWanted)
    (end,) = run.endpointer.set_verdict(wanted.pause, 0.99, now=0.8)
    assert isinstance(end, EndOfTurn) and end.reason == "model"


def test_an_acoustic_policy_alone_ignores_the_script() -> None:
    run = Run()
    run.feed(0.9, 30)
    run.feed(0.0, 12)
    ((_, spec),) = run.of(SpeculativePause)
    assert isinstance(spec, SpeculativePause)
    assert run.endpointer.set_answer(spec.pause, True, now=0.9) == []


PAUSING = EndpointerConfig(
    min_speech_ms=60,
    speculative_after_ms=200,
    pause_agent_after_ms=100,
    backchannel_silence_ms=300,
)


def pausing_run() -> Run:
    run = Run(PAUSING, endpoint_ms=600)
    run.endpointer = Endpointer(
        PAUSING,
        FixedSilencePolicy(600),
        BargeInClassifier(min_interrupt_ms=500, max_backchannel_ms=1200, use_words=True),
    )
    return run


def test_speech_over_the_agent_pauses_it_at_onset() -> None:
    run = pausing_run()
    run.feed(0.0, 10, agent=True)
    run.feed(0.9, 10, agent=True)  # frames 10-19
    ((i_pause, pause),) = run.of(PauseAgent)
    assert i_pause == 14  # 5 voiced frames = 100 ms, long before any barge-in verdict
    assert isinstance(pause, PauseAgent) and pause.speech_started_at == 10 * 0.02
    assert run.of(BargeIn) == []


def test_a_backchannel_ends_after_a_short_silence_so_the_agent_resumes() -> None:
    run = pausing_run()
    run.feed(0.9, 20, agent=True)  # 400 ms "mm-hmm": paused at 100 ms
    run.feed(0.0, 15, agent=True)  # the paused agent still holds the floor
    ((i_back, back),) = run.of(Backchannel)
    assert i_back == 20 + 15 - 1  # 300 ms of silence, not the 600 ms endpoint
    assert isinstance(back, Backchannel) and back.voiced_ms == 400
    assert len(run.of(PauseAgent)) == 1 and run.of(BargeIn) == [] and run.of(EndOfTurn) == []


def test_a_backchannel_waits_for_the_words_it_asked_for() -> None:
    run = pausing_run()
    run.feed(0.9, 30, agent=True)  # 600 ms: its words decide
    ((_, wanted),) = run.of(WordsWanted)
    assert isinstance(wanted, WordsWanted)
    run.feed(0.0, 25, agent=True)
    assert run.of(Backchannel) == []  # no verdict without the words
    run.endpointer.set_words(wanted.segment, "Yeah, right.")
    (back,) = run.endpointer.check_barge_in(1.2, agent_speaking=True)
    assert isinstance(back, Backchannel)


def test_real_words_over_the_paused_agent_interrupt_it() -> None:
    run = pausing_run()
    run.feed(0.9, 30, agent=True)
    ((_, wanted),) = run.of(WordsWanted)
    assert isinstance(wanted, WordsWanted)
    run.endpointer.set_words(wanted.segment, "Hang on, how much does it cost?")
    (barge,) = run.endpointer.check_barge_in(0.7, agent_speaking=True)
    assert isinstance(barge, BargeIn)
    run.feed(0.0, 30, agent=False)
    ((_, end),) = run.of(EndOfTurn)
    assert isinstance(end, EndOfTurn) and end.barged_in
