"""`slot eval router`'s labels and verdicts: every caller label maps onto the playbook, and a
decision is judged by where it moves the script."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.router_decisions import verdict
from evals.router_labels import (
    BEFORE_PLAYBOOK,
    DEV_CALLERS,
    DEV_CALLERS2,
    DEV_CALLERS3,
    DEV_PLAYBOOK,
    HELDOUT_CALLERS,
    Case,
    Expected,
    expected_for,
    load_cases,
)
from slot.playbooks import load_playbook_file
from slot.settings import REPO_ROOT
from workflows.script import DecisionTier, Playbook, ScriptStep

PLAYBOOK = load_playbook_file(REPO_ROOT / "playbooks" / "solar_survey.yaml")


@pytest.mark.parametrize(
    "path", [DEV_PLAYBOOK, DEV_CALLERS, DEV_CALLERS2, DEV_CALLERS3, HELDOUT_CALLERS]
)
def test_every_label_maps_onto_the_playbook(path: Path) -> None:
    cases = load_cases(path)
    assert cases
    for case in cases:
        state = PLAYBOOK.state(case.state)
        if case.expected.kind == "intent":
            names = {i.name for i in [*state.intents, *PLAYBOOK.global_intents]}
            assert case.expected.name in names, case
        elif case.expected.kind == "slot":
            assert case.expected.name == state.collect, case


def test_interest_is_asked_in_the_pitch_and_after_the_cost() -> None:
    assert expected_for("yes", "pitch") == Expected("intent", "interested")
    assert expected_for("cost_question", "cost") == Expected("pass")
    assert expected_for("amount", "qualify", 180) == Expected("slot", "monthly_bill", "180")
    assert expected_for("afternoon", "ask_time") == Expected("slot", "survey_time", "afternoon")


def test_the_before_playbook_is_the_one_main_had() -> None:
    before: Playbook = load_playbook_file(BEFORE_PLAYBOOK)
    assert before.slots["monthly_bill"].kind == "pattern"
    assert before.on_confusion is None


def step(state: str, intent: str | None = None) -> ScriptStep:
    return ScriptStep(state=state, text="", tier=DecisionTier.SCRIPT, reason="", intent=intent)


def test_a_decision_is_judged_by_where_it_moves_the_script() -> None:
    back = Case("greeting", "ring back tonight", Expected("intent", "call_back_later"), "identity")
    assert verdict(back, step("call_back_later", "not_available"), PLAYBOOK) == "right"
    question = Case("pitch", "Does it snow?", Expected("pass"), "interest")
    assert verdict(question, step("pitch"), PLAYBOOK) == "right"
    assert verdict(question, step("qualify", "interested"), PLAYBOOK) == "wrong"
    owns = Case("homeowner", "Yeah", Expected("intent", "owns_home"), "homeowner")
    assert verdict(owns, step("homeowner"), PLAYBOOK) == "missed"


@pytest.mark.parametrize("dev_set", [DEV_CALLERS2, DEV_CALLERS3], ids=lambda p: p.stem)
def test_the_later_dev_rounds_share_no_line_with_the_held_out_set(dev_set: Path) -> None:
    """dev_callers2 and 3 were written without reading the held-out set and no line of them is
    one (the first rounds share a few everyday lines with it, "No.")."""
    held = {c.text.lower() for c in load_cases(HELDOUT_CALLERS)}
    shared = held & {c.text.lower() for c in load_cases(dev_set)}
    assert not shared, shared  # only the shared lines: a failure must not print the held-out set
