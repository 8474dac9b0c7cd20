"""The one splitter: sentences, script lines into phrases, LLM text deltas into phrases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from media_edge.phrases import PhraseChunker, phrases, split_sentences
from media_edge.tts import EspeakTTS, PhoneSpeech
from workflows.sentences import sentences

TEXT = (
    "Our panels carry a 25-year warranty, and the inverter is covered for 12 years. "
    "Dr. Smith says it costs about $3.50 a watt, which is fair; shall we book a survey? Great"
)


def chunk(text: str, step: int, chunker: PhraseChunker | None = None) -> list[str]:
    chunker = chunker or PhraseChunker()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += chunker.feed(text[i : i + step])
    return out + chunker.flush()


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_same_phrases_whatever_the_delta_size(step: int) -> None:
    assert chunk(TEXT, step) == [
        "Our panels carry a 25-year warranty,",
        "and the inverter is covered for 12 years.",
        "Dr. Smith says it costs about $3.50 a watt,",
        "which is fair; shall we book a survey?",
        "Great",
    ]


def test_joined_phrases_give_back_the_text() -> None:
    assert " ".join(chunk(TEXT, 5)) == " ".join(TEXT.split())


def test_sentence_end_is_a_phrase_even_when_short() -> None:
    assert chunk("Sure. Which day works best for you?", 2) == [
        "Sure.",
        "Which day works best for you?",
    ]


def test_comma_waits_for_the_minimum_length() -> None:
    chunker = PhraseChunker(min_chars=40, first_min_chars=20)
    assert chunk("Yes, of course, we can do that for you tomorrow.", 4, chunker) == [
        "Yes, of course, we can do that for you tomorrow."
    ]
    fresh = PhraseChunker(min_chars=40, first_min_chars=20)
    assert chunk("Well, the survey takes about an hour, and it's free.", 4, fresh) == [
        "Well, the survey takes about an hour,",
        "and it's free.",
    ]


def test_a_phrase_is_emitted_as_soon_as_it_is_complete() -> None:
    chunker = PhraseChunker()
    assert chunker.feed("The survey is free.") == []
    assert chunker.feed(" Shall") == ["The survey is free."]


def test_decimals_and_abbreviations_do_not_split() -> None:
    assert chunk("It is 3.5 kW. Mr. Lee will come at 9 a.m. sharp.", 1) == [
        "It is 3.5 kW.",
        "Mr. Lee will come at 9 a.m. sharp.",
    ]


def test_quotes_stay_with_their_sentence() -> None:
    assert chunk('He said "it works." Then we left.', 1) == ['He said "it works."', "Then we left."]


def test_long_text_without_punctuation_is_cut_at_a_space() -> None:
    words = " ".join(["solar"] * 60)
    out = chunk(words, 9, PhraseChunker(max_chars=50))
    assert all(len(p) <= 50 for p in out)
    assert " ".join(out) == words


def test_empty_and_whitespace_only() -> None:
    assert chunk("", 1) == []
    assert chunk("   ", 1) == []


def test_invalid_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_chars"):
        PhraseChunker(min_chars=0)


async def test_async_helper() -> None:
    async def deltas() -> AsyncIterator[str]:
        for piece in ["Hello the", "re. How are", " you today?"]:
            yield piece

    assert [p async for p in phrases(deltas())] == ["Hello there.", "How are you today?"]


def test_one_sentence_splitter_knows_abbreviations_and_quotes() -> None:
    text = 'Dr. Lee said "call at 3 p.m. today." Then J. Smith agreed! OK?'
    assert sentences(text) == [
        'Dr. Lee said "call at 3 p.m. today."',
        "Then J. Smith agreed!",
        "OK?",
    ]
    assert split_sentences("Dr. Smith will come by on Thursday morning to do the survey.") == [
        "Dr. Smith will come by on Thursday morning to do the survey."
    ]
    assert sentences("") == []


async def test_an_llm_phrase_is_synthesized_as_it_was_cut() -> None:
    """The chunker's phrase is not cut again by the line splitter on its way into TTS."""
    phrase = "Thanks for your time today, and have a really great afternoon."
    assert len(split_sentences(phrase)) == 2
    with ThreadPoolExecutor(1) as executor:
        speech = PhoneSpeech(EspeakTTS(), executor)
        whole = [chunk.text async for chunk in speech.render(phrase, False, one_phrase=True)]
        cut = [chunk.text async for chunk in speech.render(phrase, False)]
    assert whole == [phrase]
    assert cut == split_sentences(phrase)
