"""Piper speaks, the phone band carries it, Whisper hears it back: the words must match."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from media_edge.audio import PHONE_RATE, mulaw_decode
from media_edge.phrases import split_sentences
from media_edge.providers import SpeechContext
from media_edge.stt import WhisperSTT
from media_edge.tts import PhoneSpeech, PiperTTS


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def test_split_sentences_into_phrases() -> None:
    assert split_sentences("Hi there, this is Sam. How are you today? I am fine, thanks!") == [
        "Hi there, this is Sam.",
        "How are you today?",
        "I am fine, thanks!",
    ]
    # The first phrase is short so speech starts early; later tiny pieces join a neighbour.
    assert split_sentences("Great. About how much is your bill? Thanks.") == [
        "Great.",
        "About how much is your bill? Thanks.",
    ]
    assert split_sentences("Okay, bye.") == ["Okay, bye."]
    # A long first sentence starts with its first clause.
    assert split_sentences("Thanks for your time today, and have a really great afternoon.") == [
        "Thanks for your time today,",
        "and have a really great afternoon.",
    ]
    # Long sentences are cut at commas.
    long = (
        "Solar panels can cut your power bill by up to half, and the survey is free, with no fee."
    )
    assert split_sentences(long) == [
        "Solar panels can cut your power bill by up to half,",
        "and the survey is free, with no fee.",
    ]
    assert split_sentences("  ") == []


async def test_piper_speech_transcribed_back_by_whisper(executor: ThreadPoolExecutor) -> None:
    text = "Good morning. I would like to book a home survey on Thursday."
    speech = PhoneSpeech(PiperTTS(executor), executor)
    chunks = [chunk async for chunk in speech.render(text, cacheable=True)]
    assert [c.text for c in chunks] == split_sentences(text)
    assert speech.cached(text) is not None
    phone_audio = mulaw_decode(b"".join(c.audio for c in chunks))
    assert len(phone_audio) / PHONE_RATE > 2.0

    stt = WhisperSTT(executor, cpu_threads=2)
    transcript = await stt.transcribe(phone_audio, PHONE_RATE)
    assert words(transcript.text) == words(text)


async def test_whisper_biased_to_the_question_still_hears_the_words(
    executor: ThreadPoolExecutor,
) -> None:
    """The question as Whisper's prompt and the slot words as hotwords, in faster-whisper's
    layout (before the task tokens), on the short-window path a caller turn takes."""
    text = "Thursday afternoon would work for me."
    speech = PhoneSpeech(PiperTTS(executor), executor)
    chunks = [chunk async for chunk in speech.render(text, cacheable=False)]
    phone_audio = mulaw_decode(b"".join(c.audio for c in chunks))
    stt = WhisperSTT(executor, cpu_threads=2)
    context = SpeechContext(
        prompt="Which weekday works best for a short visit?",
        hotwords=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "afternoon"),
    )
    prompt, plain = stt.prompt(context), stt.prompt(None)
    assert prompt[0] == stt._tokenizer.sot_prev and prompt[-len(plain) :] == plain
    transcript = await stt.transcribe(phone_audio, PHONE_RATE, context)
    assert words(transcript.text) == words(text)


async def test_whisper_on_silence_says_nothing_much(executor: ThreadPoolExecutor) -> None:
    stt = WhisperSTT(executor, cpu_threads=2)
    transcript = await stt.transcribe(np.zeros(400, dtype=np.int16), PHONE_RATE)
    assert transcript.text == ""
