"""Whisper tiny.en's reading of a day or time that Moonshine did not understand
(`media_edge.stt_models.SecondOpinionSTT`): real models, the corpus' caller voices."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from media_edge.audio import PHONE_RATE
from media_edge.stt_models import EmbeddedSTT, SecondOpinionSTT, embedded_stt
from workflows.expectations import AnswerReadings, judge_answer

from .test_moonshine_stt import corpus_audio, edge_context


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[EmbeddedSTT, EmbeddedSTT]]:
    with ThreadPoolExecutor(2) as pool:
        second = embedded_stt("moonshine-base", pool, 2, second_opinion=True)
        yield embedded_stt("moonshine-base", pool, 2), second


def test_a_weekday_moonshine_cannot_read_is_taken_from_whisper(
    models: tuple[EmbeddedSTT, EmbeddedSTT],
) -> None:
    moonshine, second = models
    assert isinstance(second, SecondOpinionSTT)
    audio = corpus_audio("espeak_m3", "ask_day", "Thursday.")
    context = edge_context("ask_day", second_look=True)
    readings = context.readings
    assert isinstance(readings, AnswerReadings)
    alone = moonshine.transcribe_sync(audio, PHONE_RATE, context)
    assert not readings.settled(alone.text), alone
    taken = second.transcribe_sync(audio, PHONE_RATE, context)
    assert judge_answer(readings.expect, taken.text).meaning == "slot:survey_day=Thursday", taken
    assert (taken.provider, taken.first_reading) == ("whisper", alone.text)


def test_other_questions_and_readings_understood_keep_moonshines_reading(
    models: tuple[EmbeddedSTT, EmbeddedSTT],
) -> None:
    """Whisper heard an owner's "Own it." as "Oh, no.": outside days and times it is not asked."""
    moonshine, second = models
    for voice, state, said in (
        ("piper_fast", "homeowner", "Own it."),
        ("piper_fast", "ask_day", "Thursday, please."),
    ):
        audio = corpus_audio(voice, state, said)
        context = edge_context(state, second_look=True)
        alone = moonshine.transcribe_sync(audio, PHONE_RATE, context)
        assert second.transcribe_sync(audio, PHONE_RATE, context) == alone, (said, alone)
