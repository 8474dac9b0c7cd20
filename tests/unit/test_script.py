"""The script state machine, walked with the sample playbook and the simulator's personas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slot.playbooks import load_playbook
from workflows.script import (
    DecisionTier,
    Outcome,
    Playbook,
    ScriptStep,
    SlotSpec,
    TurnContext,
    extract_slot,
    opening,
    reachable_outcomes,
    render,
    reprompt,
    respond,
    respond_dtmf,
)

ROOT = Path(__file__).resolve().parents[2]
LEAD = {"lead_name": "Jordan"}


@pytest.fixture(scope="module")
def solar() -> Playbook:
    return load_playbook("solar_survey", ROOT / "playbooks")


def persona(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "personas" / f"{name}.yaml").read_text())
    return data


def walk(playbook: Playbook, name: str, *, follow_up: bool = False) -> list[ScriptStep]:
    """Play a persona's lines as text: what the call would do if STT heard them exactly."""
    caller = persona(name)
    steps = [opening(playbook, {"lead_name": caller["name"]}, follow_up=follow_up)]
    silences = 0
    for line in caller["lines"]:
        last = steps[-1]
        assert not last.end_call, f"{name}: call ended before the line {line!r}"
        if line.get("silent"):
            silences += 1
            steps.append(reprompt(playbook, last.state, last.slots, silences))
        else:
            silences = 0
            steps.append(respond(playbook, last.state, last.slots, line["say"]))
    assert steps[-1].end_call, f"{name}: the persona ran out of lines mid-call"
    assert steps[-1].outcome == Outcome(caller["expect_outcome"])
    return steps


def test_sample_playbook_reaches_the_required_outcomes(solar: Playbook) -> None:
    assert len(solar.states) >= 6
    assert {
        Outcome.BOOKED,
        Outcome.NOT_INTERESTED,
        Outcome.CALL_BACK_LATER,
        Outcome.DO_NOT_CALL,
    } <= reachable_outcomes(solar)


def test_opening_greets_the_lead_by_name(solar: Playbook) -> None:
    step = opening(solar, LEAD)
    assert step.state == "greeting"
    assert step.tier == DecisionTier.SCRIPT
    assert step.text == "Hi, this is Sam from Sunny Solar. Am I speaking with Jordan?"
    assert not step.end_call


def test_opening_without_a_lead_name_uses_the_slot_default(solar: Playbook) -> None:
    assert opening(solar, {}).text.endswith("Am I speaking with the homeowner?")


def test_booked_caller_walks_the_whole_script(solar: Playbook) -> None:
    steps = walk(solar, "booked_caller")
    assert [s.state for s in steps] == [
        "greeting",
        "homeowner",
        "pitch",
        "qualify",
        "qualify",
        "ask_day",
        "confirm",
        "booked",
    ]
    booked = steps[-1]
    assert booked.slots == {
        "lead_name": "Jordan",
        "monthly_bill": "150",
        "survey_day": "Tuesday",
        "survey_time": "morning",
    }
    assert "Tuesday morning" in booked.text
    assert "ask_time" in steps[-2].reason
    question = steps[4]
    assert question.tier == DecisionTier.FALLBACK, "the script alone cannot answer a question"
    assert question.text == "Roughly how much do you pay for power each month?"


def test_booked_caller_interrupts_the_pitch_and_still_moves_on(solar: Playbook) -> None:
    lines = persona("booked_caller")["lines"]
    interrupting = [i for i, line in enumerate(lines) if "interrupt_after_ms" in line]
    assert len(interrupting) == 1
    steps = walk(solar, "booked_caller")
    assert steps[interrupting[0]].state == "pitch"
    assert steps[interrupting[0] + 1].state == "qualify"
    assert len(steps) - 1 >= 5


def test_callback_caller_ends_with_call_back_later(solar: Playbook) -> None:
    steps = walk(solar, "callback_caller")
    assert steps[-1].state == "call_back_later"
    assert steps[-1].tier == DecisionTier.INTENT
    assert "global intent 'call_back_later'" in steps[-1].reason


def test_followup_answerer_books_on_the_follow_up_call(solar: Playbook) -> None:
    steps = walk(solar, "followup_answerer", follow_up=True)
    assert steps[0].state == "follow_up"
    assert "calling back as promised" in steps[0].text
    assert steps[-1].state == "booked"
    assert steps[-1].slots["survey_day"] == "Thursday"
    assert steps[-1].slots["survey_time"] == "afternoon"


def test_silent_caller_is_reprompted_then_told_goodbye(solar: Playbook) -> None:
    steps = walk(solar, "silent_caller")
    first, second, goodbye = steps[1:]
    assert first.state == second.state == "greeting"
    assert first.tier == DecisionTier.RULE
    assert first.reason == "no input (reprompt 1 of 2)"
    assert first.text.startswith("Hello?")
    assert not second.end_call
    assert goodbye.end_call
    assert goodbye.outcome == Outcome.NO_RESPONSE
    assert goodbye.text == solar.no_input_goodbye


def test_reprompt_limit_can_come_from_the_workflow(solar: Playbook) -> None:
    assert reprompt(solar, "pitch", LEAD, 1, max_reprompts=0).outcome == Outcome.NO_RESPONSE
    step = reprompt(solar, "pitch", LEAD, 3, max_reprompts=3)
    assert step.text == solar.states["pitch"].reprompt
    assert not step.end_call


@pytest.mark.parametrize(
    ("state", "utterance", "phrase"),
    [
        ("greeting", "Stop calling me.", "stop calling"),
        ("pitch", "Please take me off your list.", "take me off"),
        ("ask_day", "Don't call me again.", "do not call me again"),
        ("confirm", "Put me on your do not call list", "do not call list"),
    ],
)
def test_do_not_call_rule_wins_in_every_state(
    solar: Playbook, state: str, utterance: str, phrase: str
) -> None:
    step = respond(solar, state, LEAD, utterance)
    assert step.state == "do_not_call"
    assert step.outcome == Outcome.DO_NOT_CALL
    assert step.end_call
    assert step.tier == DecisionTier.RULE
    assert step.reason == f"rule do_not_call: '{phrase}'"


def test_do_not_call_without_a_state_for_it_uses_a_built_in_line(solar: Playbook) -> None:
    states = {n: s for n, s in solar.states.items() if s.outcome != Outcome.DO_NOT_CALL}
    bare = solar.model_copy(update={"states": states})
    step = respond(bare, "pitch", LEAD, "stop calling me")
    assert (step.state, step.outcome, step.end_call) == ("do_not_call", Outcome.DO_NOT_CALL, True)
    assert step.text


def test_goodbye_hangs_up_but_a_bye_inside_a_sentence_does_not(solar: Playbook) -> None:
    step = respond(solar, "pitch", LEAD, "Okay, bye.")
    assert (step.outcome, step.end_call, step.tier) == (Outcome.HUNG_UP, True, DecisionTier.RULE)
    assert respond(solar, "pitch", LEAD, "Yes, I'm interested, bye the way").state == "qualify"


def test_asking_to_repeat_repeats_the_current_line(solar: Playbook) -> None:
    step = respond(solar, "homeowner", LEAD, "Sorry, can you say that again?")
    assert step.state == "homeowner"
    assert step.text == render(solar, solar.states["homeowner"].say, LEAD)
    assert step.tier == DecisionTier.RULE


def test_intent_reason_names_the_intent_and_its_score(solar: Playbook) -> None:
    step = respond(solar, "pitch", LEAD, "Yes, I'm interested.")
    assert step.state == "qualify"
    assert step.tier == DecisionTier.INTENT
    assert step.reason.startswith("intent 'interested' score 1.00 ≥ 0.45")


def test_negated_answer_goes_the_other_way(solar: Playbook) -> None:
    step = respond(solar, "pitch", LEAD, "No, I'm not interested.")
    assert step.state == "not_interested"
    assert step.outcome == Outcome.NOT_INTERESTED


def test_state_intents_win_ties_with_global_ones(solar: Playbook) -> None:
    assert respond(solar, "homeowner", LEAD, "No.").state == "check_renting"
    assert respond(solar, "confirm", LEAD, "No.").state == "ask_day"


def test_a_renter_is_asked_once_more_before_the_call_ends(solar: Playbook) -> None:
    """The answer that ends the call is checked: an owner misheard as a renter gets to say so."""
    assert respond(solar, "homeowner", LEAD, "We don't own.").state == "check_renting"
    owner = respond(solar, "check_renting", LEAD, "Yes, we own it.")
    assert (owner.state, owner.outcome) == ("pitch", None)
    renter = respond(solar, "check_renting", LEAD, "No, we rent.")
    assert (renter.state, renter.outcome) == ("renter", Outcome.NOT_INTERESTED)


def test_wrong_person_and_cost_questions(solar: Playbook) -> None:
    assert respond(solar, "greeting", LEAD, "Sorry, wrong number.").outcome == (
        Outcome.WRONG_PERSON
    )
    cost = respond(solar, "pitch", LEAD, "How much does it cost?")
    assert cost.state == "cost"
    assert "completely free" in cost.text


def test_unmatched_speech_falls_back_and_stays(solar: Playbook) -> None:
    step = respond(solar, "pitch", LEAD, "The weather was lovely in the park")
    assert step.state == "pitch"
    assert step.text == solar.fallback_line
    assert step.tier == DecisionTier.FALLBACK
    assert "no intent scored" in step.reason
    assert not step.end_call


def test_a_missing_slot_value_is_asked_again(solar: Playbook) -> None:
    step = respond(solar, "ask_day", LEAD, "Hmm, let me think.")
    assert step.state == "ask_day"
    assert step.text == solar.states["ask_day"].reprompt
    assert step.tier == DecisionTier.FALLBACK
    assert "no value for slot 'survey_day'" in step.reason


@pytest.mark.parametrize(
    ("utterance", "day"),
    [("Tuesday.", "Tuesday"), ("Tues works", "Tuesday"), ("How about Friday?", "Friday")],
)
def test_choice_slots_accept_synonyms(solar: Playbook, utterance: str, day: str) -> None:
    step = respond(solar, "ask_day", LEAD, utterance)
    assert step.state == "ask_time"
    assert step.slots["survey_day"] == day
    assert step.tier == DecisionTier.SCRIPT
    assert step.text == f"Would {day} morning or afternoon be better?"


def test_money_slot_reads_digits_and_number_words(solar: Playbook) -> None:
    step = respond(solar, "qualify", LEAD, "About $1,200 a year, so 100 a month.")
    assert step.slots["monthly_bill"] == "1200"
    worded = respond(solar, "qualify", LEAD, "About a hundred and fifty dollars a month.")
    assert worded.state == "ask_day"
    assert worded.slots["monthly_bill"] == "150"


def test_pattern_slot_and_its_word_fallback() -> None:
    """The older pattern slot (playbooks recorded before `money`) keeps its behaviour."""
    pattern = SlotSpec(kind="pattern", pattern=r"(\d[\d,]*)")
    assert extract_slot(pattern, "About $1,200 a year") == ("1,200", "1,200")
    assert extract_slot(pattern, "About a hundred and fifty dollars a month.") is None


def test_an_intent_can_set_a_slot(solar: Playbook) -> None:
    step = respond(solar, "ask_time", {**LEAD, "survey_day": "Monday"}, "Either is fine.")
    assert step.state == "confirm"
    assert step.slots["survey_time"] == "morning"
    assert "Monday morning" in step.text


def test_changing_the_day_at_confirmation_keeps_the_new_day(solar: Playbook) -> None:
    slots = {**LEAD, "survey_day": "Tuesday", "survey_time": "morning"}
    step = respond(solar, "confirm", slots, "No, can we do Wednesday instead?")
    assert step.state == "ask_time"
    assert step.slots["survey_day"] == "Wednesday"


def test_extract_slot_by_kind() -> None:
    choice = SlotSpec(kind="choice", choices={"morning": ["am"], "afternoon": ["after lunch"]})
    assert extract_slot(choice, "After lunch, please") == ("afternoon", "after lunch")
    assert extract_slot(choice, "Morning or after lunch") == ("morning", "morning")
    assert extract_slot(choice, "amazing") is None
    pattern = SlotSpec(kind="pattern", pattern=r"(\d{5})")
    assert extract_slot(pattern, "my zip is 90210") == ("90210", "90210")
    assert extract_slot(SlotSpec(), "  anything  ") == ("anything", "anything")


def test_render_never_fails_on_missing_values(solar: Playbook) -> None:
    assert render(solar, "Call on {survey_day} {unknown} .", {}) == "Call on."
    assert render(solar, "{agent_name} at {company}", {}) == "Sam at Sunny Solar"


def test_dtmf_zero_transfers_when_the_playbook_can(solar: Playbook) -> None:
    step = respond_dtmf(solar, "pitch", LEAD, "0")
    assert (step.state, step.outcome, step.end_call) == ("transfer", Outcome.TRANSFER, True)
    assert step.tier == DecisionTier.RULE


def test_dtmf_without_a_meaning_repeats_the_line(solar: Playbook) -> None:
    step = respond_dtmf(solar, "pitch", LEAD, "7")
    assert step.state == "pitch"
    assert step.text == solar.states["pitch"].say
    states = {n: s for n, s in solar.states.items() if s.outcome != Outcome.TRANSFER}
    no_transfer = solar.model_copy(update={"states": states})
    assert "no transfer state" in respond_dtmf(no_transfer, "pitch", LEAD, "0").reason


def test_events_after_the_last_line_keep_the_call_ended(solar: Playbook) -> None:
    for step in (
        respond(solar, "booked", LEAD, "thanks"),
        respond_dtmf(solar, "do_not_call", LEAD, "1"),
        reprompt(solar, "no_response", LEAD, 1),
    ):
        assert step.end_call
        assert "already ended" in step.reason


def test_unknown_state_is_a_clear_error(solar: Playbook) -> None:
    with pytest.raises(ValueError, match="no state 'nowhere'"):
        respond(solar, "nowhere", LEAD, "yes")


def test_steps_do_not_mutate_the_callers_slots(solar: Playbook) -> None:
    slots = dict(LEAD)
    respond(solar, "ask_day", slots, "Tuesday morning")
    assert slots == LEAD


def test_playbook_survives_a_json_round_trip(solar: Playbook) -> None:
    assert Playbook.model_validate_json(solar.model_dump_json()) == solar


def test_the_match_threshold_comes_from_the_caller_not_a_constant(solar: Playbook) -> None:
    """The router passes the call's `RouterConfig.match_threshold`; the engine obeys it."""
    words = "yes i would like that"
    loose = respond(solar, "pitch", LEAD, words, match_threshold=0.45)
    assert loose.tier is DecisionTier.INTENT and loose.state == "qualify"
    strict = respond(solar, "pitch", LEAD, words, match_threshold=0.9)
    assert strict.tier is DecisionTier.FALLBACK and strict.state == "pitch"
    assert "≥ 0.90" in strict.reason


@pytest.mark.parametrize(
    ("utterance", "v3", "do_not_call"),
    [
        ("Look, please just put me under. Do not call us.", True, True),
        ("Look, please just put me under. Do not call us.", False, False),
        ("Okay. Don't call.", True, True),
        ("Please don't call us before five, we're at work.", True, False),
        ("Don't call me tomorrow, call me Friday.", True, False),
    ],
)
def test_do_not_call_us_anywhere_in_a_turn_is_the_rule_from_understanding_v3(
    solar: Playbook, utterance: str, v3: bool, do_not_call: bool
) -> None:
    context = TurnContext(refined=True, do_not_call_v3=v3)
    step = respond(solar, "homeowner", LEAD, utterance, context=context)
    assert (step.outcome is Outcome.DO_NOT_CALL) == do_not_call, step.reason


@pytest.mark.parametrize(
    ("state", "utterance", "v3_intent", "v4_intent"),
    [
        ("greeting", "No.", "not_interested", "wrong_person"),
        ("greeting", "Nope, not me.", "not_interested", "wrong_person"),
        ("greeting", "Oh, Mar, no, there's no, no, Mar here.", "not_interested", "wrong_person"),
        ("greeting", "Omar? No.", "not_interested", "wrong_person"),
        ("greeting", "Omar, no, there, no, no, Mar here.", "not_interested", "wrong_person"),
        ("homeowner", "Nope.", "not_interested", "rents"),
        ("greeting", "No, I'm not interested.", "not_interested", "not_interested"),
        ("greeting", "Yes.", "confirm_identity", "confirm_identity"),
    ],
)
def test_a_plain_no_means_what_the_state_says_from_understanding_v4(
    solar: Playbook, state: str, utterance: str, v3_intent: str, v4_intent: str
) -> None:
    """A global intent matched only on its bare "No." example no longer beats the state's own
    meaning of a no: to "Am I speaking with Omar?" it is the wrong person. A global intent
    matched on its own words ("I'm not interested") still stands."""
    for v4, intent in ((False, v3_intent), (True, v4_intent)):
        context = TurnContext(refined=True, do_not_call_v3=True, state_answers_v4=v4)
        step = respond(solar, state, {"lead_name": "Omar"}, utterance, context=context)
        assert f"intent '{intent}'" in step.reason, (v4, step.reason)
