"""The persona corpus (personas/dev, personas/heldout): big enough, every outcome, unique phones,
known voices, and written from the business, not from the playbook: no persona line may be
identical or near-identical (token Jaccard >= 0.8 after normalising) to a playbook example."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from simulator.caller_voice import CALLER_VOICES
from simulator.persona import ReactivePersona, load_reactive_persona, parse_reactive_persona
from slot.settings import REPO_ROOT
from workflows.intents import tokens
from workflows.script import Outcome

PERSONAS = REPO_ROOT / "personas"
PLAYBOOKS = REPO_ROOT / "playbooks"
NEAR_COPY = 0.8
CALL_OUTCOMES = {
    Outcome.BOOKED,
    Outcome.NOT_INTERESTED,
    Outcome.CALL_BACK_LATER,
    Outcome.WRONG_PERSON,
    Outcome.DO_NOT_CALL,
    Outcome.TRANSFER,
}


def corpus(set_name: str) -> list[tuple[Path, ReactivePersona]]:
    return [(p, load_reactive_persona(p)) for p in sorted((PERSONAS / set_name).glob("*.yaml"))]


def _examples_in(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "examples" and isinstance(value, list):
                yield from (str(example) for example in value)
            else:
                yield from _examples_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _examples_in(item)


def playbook_examples() -> list[str]:
    """Every intent example of every shipped playbook (states' and global intents')."""
    examples: list[str] = []
    for path in sorted(PLAYBOOKS.glob("*.yaml")):
        examples.extend(_examples_in(yaml.safe_load(path.read_text(encoding="utf-8"))))
    return examples


def jaccard(a: str, b: str) -> float:
    left, right = set(tokens(a)), set(tokens(b))
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def copied_lines(persona: ReactivePersona, examples: list[str]) -> list[tuple[str, str, float]]:
    """(persona line, playbook example, Jaccard) for every line that is a near copy."""
    found: list[tuple[str, str, float]] = []
    for line in dict.fromkeys(persona.spoken_lines):
        for example in examples:
            score = jaccard(line, example)
            if score >= NEAR_COPY:
                found.append((line, example, round(score, 2)))
                break
    return found


def test_the_corpus_is_big_enough_and_covers_every_outcome() -> None:
    dev, heldout = corpus("dev"), corpus("heldout")
    everyone = [persona for _, persona in dev + heldout]
    assert len(everyone) >= 40
    assert len(heldout) >= 12
    outcomes = Counter(persona.expect_outcome for persona in everyone)
    assert outcomes[Outcome.BOOKED] >= 20
    assert set(outcomes) == {outcome.value for outcome in CALL_OUTCOMES}, outcomes


def test_phones_are_unique_and_name_their_set() -> None:
    phones: Counter[str] = Counter()
    for set_name, prefix in (("dev", "+1555013"), ("heldout", "+1555014")):
        for path, persona in corpus(set_name):
            assert persona.phone.startswith(prefix), path
            phones[persona.phone] += 1
    assert [phone for phone, n in phones.items() if n > 1] == []


def test_every_voice_is_a_named_caller_voice() -> None:
    for path, persona in corpus("dev") + corpus("heldout"):
        assert persona.voice in CALLER_VOICES, path
    assert len({persona.voice for _, persona in corpus("heldout")}) >= 3


def test_no_persona_line_copies_a_playbook_example() -> None:
    """Nor does the demo's caller (personas/demo_caller.yaml)."""
    examples = playbook_examples()
    assert examples
    demo = PERSONAS / "demo_caller.yaml"
    everyone = [*corpus("dev"), *corpus("heldout"), (demo, load_reactive_persona(demo))]
    copies = {
        str(path.relative_to(PERSONAS)): found
        for path, persona in everyone
        if (found := copied_lines(persona, examples))
    }
    assert copies == {}


def test_a_planted_copy_is_caught() -> None:
    """The check above would fail on a persona that borrows the playbook's words."""
    planted = parse_reactive_persona(
        {
            "name": "Planted",
            "phone": "+15550139999",
            "expect_outcome": "booked",
            "voice": "espeak_f3",
            "answers": {
                "identity": ["Hello, who's this?"],
                "homeowner": ["Yeah we own it."],  # "Yeah, we own it." in the playbook
                "interest": [{"backchannel": "Mm-hmm.", "say": "Sure, that sounds really good."}],
            },
        }
    )
    found = copied_lines(planted, playbook_examples())
    assert [line for line, _, _ in found] == ["Yeah we own it.", "Sure, that sounds really good."]
    assert found[0][1] == "Yeah, we own it."


@pytest.mark.parametrize(
    ("a", "b", "score"),
    [("I'm renting.", "I am renting", 1.0), ("Wednesday works", "Thursday works for me", 0.2)],
)
def test_jaccard_compares_normalised_tokens(a: str, b: str, score: float) -> None:
    assert jaccard(a, b) == score
