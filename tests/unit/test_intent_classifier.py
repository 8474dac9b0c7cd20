"""Tier 1: the embedding intent classifier against the sample playbook, and its evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activities.embeddings import DIMENSIONS
from activities.intent_classifier import IntentClassifier, IntentClassifierActivities
from evals.router import Prediction, choose, load_heldout, sweep
from slot.playbooks import load_playbook
from slot.settings import get_settings
from workflows.llm_turn import playbook_intents
from workflows.router_messages import (
    INTENT_CONFIDENCE_THRESHOLD,
    ClassifyRequest,
    IntentExamples,
)
from workflows.script import Playbook


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook("solar_survey", get_settings().playbooks_dir)


@pytest.fixture(scope="module")
def classifier(playbook: Playbook) -> IntentClassifier:
    classifier = IntentClassifier()
    assert classifier.prepare(playbook) > 50
    return classifier


@pytest.mark.parametrize(
    ("state", "utterance", "intent"),
    [
        ("homeowner", "Yes, we own the house.", "owns_home"),
        ("homeowner", "Nope, we're renting.", "rents"),
        ("greeting", "Uh huh, that's me speaking.", "confirm_identity"),
        ("pitch", "How much would I have to pay?", "asks_cost"),
        ("confirm", "Could we move it to another day?", "change"),
        ("pitch", "I'm driving right now, ring me later.", "call_back_later"),
    ],
)
def test_clear_answers_are_classified_confidently(
    classifier: IntentClassifier, playbook: Playbook, state: str, utterance: str, intent: str
) -> None:
    result = classifier.classify(utterance, playbook_intents(playbook, state))
    assert result.intent == intent
    assert result.confidence >= INTENT_CONFIDENCE_THRESHOLD
    assert result.margin > 0
    assert result.example


@pytest.mark.parametrize(
    ("state", "utterance"),
    [
        ("pitch", "How long is the warranty on the panels?"),
        ("homeowner", "Do the panels work when it snows?"),
        ("greeting", "What is the capital of France?"),
    ],
)
def test_out_of_scope_turns_stay_below_the_threshold(
    classifier: IntentClassifier, playbook: Playbook, state: str, utterance: str
) -> None:
    result = classifier.classify(utterance, playbook_intents(playbook, state))
    assert result.confidence < INTENT_CONFIDENCE_THRESHOLD


def test_the_earlier_intent_owns_a_shared_example(
    classifier: IntentClassifier, playbook: Playbook
) -> None:
    """'No.' is both `rents` (state) and `not_interested` (global): the state's own wins."""
    result = classifier.classify("No.", playbook_intents(playbook, "homeowner"))
    assert result.intent == "rents"


def test_same_input_same_output(classifier: IntentClassifier, playbook: Playbook) -> None:
    intents = playbook_intents(playbook, "pitch")
    first = classifier.classify("Sure, sounds good to me", intents)
    second = classifier.classify("Sure, sounds good to me", intents)
    assert first.model_dump(exclude={"elapsed_ms"}) == second.model_dump(exclude={"elapsed_ms"})


def test_no_candidates_or_empty_utterance(classifier: IntentClassifier) -> None:
    assert classifier.classify("yes", []).intent is None
    only = [IntentExamples(name="yes", examples=["Yes."])]
    assert classifier.classify("  ", only).intent is None


def test_activity_entry_point(classifier: IntentClassifier, playbook: Playbook) -> None:
    activities = IntentClassifierActivities(classifier)
    request = ClassifyRequest(
        utterance="Yeah it's our house", intents=playbook_intents(playbook, "homeowner")
    )
    result = activities.classify_intent(request)
    assert result.intent == "owns_home" and result.index == 0


def test_heldout_set_is_not_the_playbook_examples(playbook: Playbook) -> None:
    data = load_heldout()
    examples = {
        e.strip().lower()
        for intents in [playbook.global_intents, *(s.intents for s in playbook.states.values())]
        for i in intents
        for e in i.examples
    }
    assert len(data.utterances) >= 80
    assert not [u.text for u in data.utterances if u.text.strip().lower() in examples]
    assert any(u.intent is None for u in data.utterances)
    for u in data.utterances:
        names = {i.name for i in playbook_intents(playbook, u.state)}
        assert u.intent is None or u.intent in names, u


def test_threshold_choice_prefers_coverage_at_the_precision_floor() -> None:
    predictions = [
        Prediction("a", "a", 0.9),
        Prediction("b", "b", 0.7),
        Prediction(None, "a", 0.6),
        Prediction("b", "a", 0.55),
    ]
    rows = sweep(predictions, [0.5, 0.6, 0.65, 0.95])
    assert [r.answered for r in rows] == [4, 3, 2, 0]
    assert choose(rows, 0.95).threshold == 0.65
    assert rows[1].oos_leak == 1.0


def test_a_playbooks_example_vectors_are_kept_and_read_back_at_the_next_start(
    playbook: Playbook, tmp_path: Path
) -> None:
    computed = IntentClassifier()
    count = computed.prepare(playbook, tmp_path)
    [kept] = (tmp_path / "examples").iterdir()
    vectors = np.load(kept)
    assert vectors.shape == (count, DIMENSIONS)
    np.save(kept, vectors[::-1])  # a next start must take the kept vectors as they are
    restarted = IntentClassifier()
    assert restarted.prepare(playbook, tmp_path) == count
    first, last = sorted(restarted._vectors)[0], sorted(restarted._vectors)[-1]
    assert np.array_equal(restarted._vectors[first], computed._vectors[last])
