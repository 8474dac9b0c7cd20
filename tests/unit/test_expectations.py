"""What the edge is told an answer looks like, and its judgement of a paused transcript."""

from __future__ import annotations

from slot.playbooks import load_playbook_file
from slot.settings import REPO_ROOT
from workflows.expectations import expected_answer, judge_answer

PLAYBOOK = load_playbook_file(REPO_ROOT / "playbooks" / "solar_survey.yaml")


def test_a_slot_the_state_collects_is_a_complete_answer() -> None:
    expect = expected_answer(PLAYBOOK, "ask_day", "Which weekday works best?")
    assert expect is not None
    assert judge_answer(expect, "Wednesdays are best").complete
    assert "Wednesday" in expect.vocabulary()


def test_an_unfinished_sentence_waits_even_with_a_matching_intent() -> None:
    expect = expected_answer(PLAYBOOK, "homeowner")
    assert expect is not None
    assert judge_answer(expect, "Yeah, we own it").complete
    assert not judge_answer(expect, "Yeah, we own it and the").complete
    assert not judge_answer(expect, "My bill is around").complete


def test_terminal_states_expect_no_answer() -> None:
    assert expected_answer(PLAYBOOK, "booked") is None
