"""The local intent matcher: normalisation, negation and thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from workflows.intents import MATCH_THRESHOLD, is_negated, match_intent, normalize, similarity


@dataclass
class Example:
    name: str
    examples: list[str] = field(default_factory=list)


INTERESTED = Example("interested", ["Yes, I'm interested.", "Sounds good."])
NOT_INTERESTED = Example("not_interested", ["I'm not interested.", "No thanks."])
CALL_BACK = Example("call_back_later", ["Can you call me back later?", "I'm busy right now."])


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("I'm NOT interested!", "i am not interested"),
        ("Don't call, we can't talk.", "do not call we can not talk"),
        ("It\u2019s fine, won't hurt", "it is fine will not hurt"),
        ("  Yes.  ", "yes"),
        ("$150 a month", "150 a month"),
    ],
)
def test_normalize_lowercases_expands_contractions_and_strips_punctuation(
    text: str, normalized: str
) -> None:
    assert normalize(text) == normalized


def test_identical_texts_score_one_after_normalising() -> None:
    assert similarity("Yes, that works!", "yes that works") == 1.0


def test_negation_is_noticed_but_idioms_that_mean_yes_are_not() -> None:
    assert is_negated(normalize("I'm not interested"))
    assert is_negated(normalize("No."))
    assert not is_negated(normalize("Yes, no problem."))
    assert not is_negated(normalize("I'm interested"))


def test_not_interested_never_matches_interested() -> None:
    match = match_intent("No, I'm not interested.", [INTERESTED, NOT_INTERESTED])
    assert match is not None
    assert match.name == "not_interested"
    assert similarity("not interested", "interested") < MATCH_THRESHOLD


@pytest.mark.parametrize(
    ("utterance", "intent"),
    [
        ("Yes, I'm interested", "interested"),
        ("I am interested", "interested"),
        ("Sounds good to me.", "interested"),
        ("No thank you", "not_interested"),
        ("Sorry, I'm busy right now. Can you call me back later?", "call_back_later"),
        ("Call me back later", "call_back_later"),
    ],
)
def test_plausible_transcripts_match_their_intent(utterance: str, intent: str) -> None:
    match = match_intent(utterance, [INTERESTED, NOT_INTERESTED, CALL_BACK])
    assert match is not None
    assert match.name == intent
    assert match.score >= MATCH_THRESHOLD


def test_unrelated_speech_matches_nothing() -> None:
    assert match_intent("The weather was lovely in the park", [INTERESTED, CALL_BACK]) is None
    assert match_intent("", [INTERESTED]) is None
    assert match_intent("Yes", []) is None


def test_ties_go_to_the_earlier_candidate_and_the_match_says_which() -> None:
    first, second = Example("state_no", ["No."]), Example("global_no", ["No."])
    match = match_intent("No", [first, second])
    assert match is not None
    assert (match.name, match.index, match.example, match.score) == ("state_no", 0, "No.", 1.0)


def test_matching_is_deterministic() -> None:
    scores = {similarity("Tuesday morning works", "Yes, that works.") for _ in range(5)}
    assert len(scores) == 1
