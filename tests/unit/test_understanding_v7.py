"""Patch understanding-v7: a "two" heard as "to" in an amount (four dev replies in the dev
calls' speech: "To fifty.", "About to fifty a month." for "two fifty"). Each test shows the
turn read wrongly without the patch and rightly with it, and the cases it must leave alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slot.playbooks import load_playbook_file
from slot.settings import REPO_ROOT
from workflows.expectations import expected_answer, judge_answer
from workflows.script import TurnContext, respond
from workflows.understanding import read_amounts

LEAD = {"lead_name": "Jordan"}
V6 = TurnContext(
    refined=True,
    do_not_call_v3=True,
    state_answers_v4=True,
    understanding_v5=True,
    understanding_v6=True,
)
V7 = replace(V6, understanding_v7=True)
PLAYBOOK = load_playbook_file(REPO_ROOT / "playbooks" / "solar_survey.yaml")


@pytest.mark.parametrize(
    ("text", "before", "value"),
    [("Too sixty, roughly.", 60, 260), ("Um, to hundred dollars.", 100, 200),
     ("It's like to forty.", 40, 240), ("To seventy a month", 70, 270)],
)  # fmt: skip
def test_to_before_a_tens_word_after_nothing_but_fillers_is_two(
    text: str, before: int, value: int
) -> None:
    assert [a.value for a in read_amounts(text, v6=True)] == [before]
    assert [a.value for a in read_amounts(text, v7=True)] == [value]


@pytest.mark.parametrize(
    ("text", "value"),
    [("It goes up to sixty in summer.", 60), ("It drops to forty in winter.", 40),
     ("One fifty to two hundred.", 175), ("Close to a hundred.", 100),
     ("I'd say forty to fifty.", 45)],
)  # fmt: skip
def test_a_to_that_means_to_stays(text: str, value: int) -> None:
    assert [a.value for a in read_amounts(text, v7=True)] == [value]


def test_the_bill_question_takes_two_fifty_with_the_patch_and_the_edge_judges_so() -> None:
    text = "About to fifty a month."
    before = respond(PLAYBOOK, "qualify", dict(LEAD), text, context=V6)
    after = respond(PLAYBOOK, "qualify", dict(LEAD), text, context=V7)
    assert before.slots["monthly_bill"] == "50"
    assert after.slots["monthly_bill"] == "250"
    expect = expected_answer(PLAYBOOK, "qualify")
    assert expect is not None
    assert judge_answer(expect, text).meaning == "slot:monthly_bill=250"
