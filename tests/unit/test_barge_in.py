"""Barge-in: backchannels and coughs over the agent do not interrupt; real speech does."""

from __future__ import annotations

import pytest

from media_edge.barge_in import BargeInClassifier, is_backchannel_text, takes_the_floor


@pytest.mark.parametrize(
    "text",
    [
        *("uh-huh", "Yeah.", "Right, right.", "Okay", "Mm-hmm.", "I see.", ""),
        # Whisper's spellings of hums in the simulator's caller voices, and of line noise.
        *("MMMM.", "Mm-m-m", "Uh-uh.", "Mm, mm", "Um.", "You"),
    ],
)
def test_acknowledgements_are_backchannels(text: str) -> None:
    assert is_backchannel_text(text)


@pytest.mark.parametrize(
    "text",
    [
        *("Wait, sorry.", "No.", "Hold on.", "Sorry, who is this?", "Yeah but how much?"),
        *("You know what, no.", "Hmm, how much?", "Mom?", "150.", "1:1"),
    ],
)
def test_real_words_are_not_backchannels(text: str) -> None:
    assert not is_backchannel_text(text)


def test_short_speech_never_interrupts() -> None:
    classifier = BargeInClassifier(min_interrupt_ms=400, use_words=False)
    assert classifier.classify(200) == "undecided"
    assert classifier.classify(200, ended=True) == "backchannel"
    assert classifier.classify(399, "stop", ended=True) == "backchannel"


def test_duration_only_interrupts_at_the_minimum() -> None:
    classifier = BargeInClassifier(min_interrupt_ms=400, use_words=False)
    assert classifier.classify(400) == "interrupt"
    assert classifier.classify(600, "yeah") == "interrupt"


def test_words_decide_between_the_minimum_and_the_backchannel_limit() -> None:
    classifier = BargeInClassifier(min_interrupt_ms=300, max_backchannel_ms=1200, use_words=True)
    assert not classifier.wants_words(200)
    assert classifier.wants_words(300)
    assert classifier.classify(500) == "undecided"
    assert classifier.classify(500, ended=True) == "backchannel"
    assert classifier.classify(500, "Okay, yeah.") == "backchannel"
    assert classifier.classify(500, "Wait, sorry") == "interrupt"
    assert classifier.classify(500, "") == "backchannel"


def test_long_speech_interrupts_whatever_the_words() -> None:
    classifier = BargeInClassifier(min_interrupt_ms=300, max_backchannel_ms=1200, use_words=True)
    assert not classifier.wants_words(1200)
    assert classifier.classify(1200) == "interrupt"
    assert classifier.classify(1500, "yeah yeah yeah") == "interrupt"


@pytest.mark.parametrize(
    ("words", "answers", "verdict"),
    [
        # Hums misheard: a short reading with nothing in it that claims the turn.
        ("A memo.", False, "backchannel"),
        ("In Mm-mm.", False, "backchannel"),
        ("Amend them.", False, "backchannel"),
        # What claims the turn, however short: a word that stops or asks, a question, an answer.
        ("Wait.", False, "interrupt"),
        ("Sorry", False, "interrupt"),
        ("Who's this", False, "interrupt"),
        ("A memo?", False, "interrupt"),
        ("Not today.", False, "interrupt"),
        ("Amen, yes.", True, "interrupt"),
        ("150.", True, "interrupt"),
        ("150.", False, "backchannel"),
        # More than a short reading.
        ("I already have panels on the roof.", False, "interrupt"),
    ],
)
def test_first_words_that_do_not_take_the_floor_are_a_backchannel_when_asked(
    words: str, answers: bool, verdict: str
) -> None:
    unclear = BargeInClassifier(min_interrupt_ms=500, use_words=True, unclear_is_backchannel=True)
    strict = BargeInClassifier(min_interrupt_ms=500, use_words=True)
    assert unclear.classify(600, words, answers=answers) == verdict
    assert takes_the_floor(words, answers) == (verdict == "interrupt")
    assert strict.classify(600, words, answers=answers) == "interrupt"
    assert unclear.classify(1300, words) == "interrupt", "long speech interrupts whatever"
