"""Patch understanding-v6: readings a third dev round of caller turns found missing
(`evals/data/router/dev_callers3.yaml`). Each test shows the turn read wrongly without the patch
and rightly with it, so deleting a reading fails its test; the phrasings are mostly not the dev
lines themselves, and each reading has a case it must leave alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slot.playbooks import load_playbook_file
from slot.settings import REPO_ROOT
from workflows.script import DecisionTier, Outcome, Playbook, ScriptStep, TurnContext, respond
from workflows.understanding import (
    asks_to_be_called_back,
    polarity,
    read_amounts,
    read_daypart,
    says_it_is_them,
    says_wrong_person,
)

LEAD = {"lead_name": "Jordan"}
V5 = TurnContext(refined=True, do_not_call_v3=True, state_answers_v4=True, understanding_v5=True)
V6 = replace(V5, understanding_v6=True)
SURVEY_PARTS = ("morning", "afternoon")


@pytest.fixture(scope="module")
def solar() -> Playbook:
    return load_playbook_file(REPO_ROOT / "playbooks" / "solar_survey.yaml")


def both(
    playbook: Playbook, state: str, utterance: str, slots: dict[str, str] | None = None
) -> tuple[ScriptStep, ScriptStep]:
    """The decision without the patch, then with it."""
    given = {**LEAD, **(slots or {})}
    return (
        respond(playbook, state, dict(given), utterance, context=V5),
        respond(playbook, state, dict(given), utterance, context=V6),
    )


def test_a_second_hundred_starts_a_second_amount() -> None:
    text = "A hundred and twenty, hundred and thirty."
    assert [a.value for a in read_amounts(text, v5=True)] == [12030]
    assert [a.value for a in read_amounts(text, v6=True)] == [130]
    assert [a.value for a in read_amounts("two hundred and five", v6=True)] == [205]


@pytest.mark.parametrize(
    ("text", "part"),
    [("Three o'clock-ish.", "afternoon"), ("Ten-ish, I suppose.", "morning"),
     ("Eleven o'clock?", "morning")],
)  # fmt: skip
def test_an_hour_said_alone_gives_the_daypart(text: str, part: str) -> None:
    assert read_daypart(text, SURVEY_PARTS, v5=True) is None
    found = read_daypart(text, SURVEY_PARTS, v6=True)
    assert found is not None and found.value == part


@pytest.mark.parametrize(
    ("text", "part"),
    [("Not the morning, I do the school run.", "afternoon"),
     ("Not afternoons, the kids are home.", "morning")],
)  # fmt: skip
def test_ruling_out_one_of_two_dayparts_picks_the_other(text: str, part: str) -> None:
    assert read_daypart(text, SURVEY_PARTS, v5=True) is None
    found = read_daypart(text, SURVEY_PARTS, v6=True)
    assert found is not None and found.value == part
    assert read_daypart(text, ("morning", "afternoon", "evening"), v6=True) is None


@pytest.mark.parametrize(
    "text", ["Lovely.", "Grand, see you then.", "Sign me up.", "Count me in.", "Spot on."]
)
def test_more_acknowledgements_and_go_aheads_are_a_yes(text: str) -> None:
    assert polarity(text, refined=True, v5=True) is None
    said = polarity(text, v6=True)
    assert said is not None and said[0] == "yes"


@pytest.mark.parametrize(
    "text", ["Lovely weather we're having, but no.", "I suppose not.", "Grand, but not Tuesday."]
)
def test_an_acknowledgement_before_a_turn_is_not_a_yes(text: str) -> None:
    said = polarity(text, v6=True)
    assert said is None or said[0] == "no"


@pytest.mark.parametrize(
    "text",
    ["Give me a ring next week.", "Bad time, I'm at the school gate. Later this afternoon?",
     "Not a good moment, I'm cooking. Maybe this evening?", "Can we do this another time?"],
)  # fmt: skip
def test_a_ring_asked_for_or_a_bad_time_with_a_later_one_asks_for_a_call_back(text: str) -> None:
    assert asks_to_be_called_back(text, v5=True) is None
    assert asks_to_be_called_back(text, v6=True) is not None


def test_a_bad_time_with_no_later_one_is_not_a_call_back() -> None:
    assert asks_to_be_called_back("It's a bad time of year for the bills.", v6=True) is None


@pytest.mark.parametrize(
    "text", ["Oh, she moved out years ago.", "He doesn't live here anymore.", "They've moved away."]
)
def test_the_lead_moved_away_is_the_wrong_person(text: str) -> None:
    assert says_wrong_person(text, v4=True) is None
    assert says_wrong_person(text, v6=True) is not None


@pytest.mark.parametrize("text", ["He left for work an hour ago.", "She moved the car."])
def test_the_lead_out_or_moving_things_is_not_the_wrong_person(text: str) -> None:
    assert says_wrong_person(text, v6=True) is None


def test_youre_talking_to_him_answers_who_is_speaking(solar: Playbook) -> None:
    before, after = both(solar, "greeting", "You're talking to him.")
    assert before.intent != "confirm_identity"
    assert (after.intent, after.state) == ("confirm_identity", "homeowner"), after.reason
    assert says_it_is_them("You're not talking to him.") is None


@pytest.mark.parametrize("text", ["Put me on your no-call list.", "Stop ringing this number."])
def test_the_list_by_another_name_and_stop_ringing_ask_not_to_be_called(
    solar: Playbook, text: str
) -> None:
    before, after = both(solar, "greeting", text)
    assert before.outcome is not Outcome.DO_NOT_CALL
    assert after.outcome is Outcome.DO_NOT_CALL, after.reason


@pytest.mark.parametrize(
    ("text", "slot", "value"),
    [("Hmm, make it the afternoon instead.", "survey_time", "afternoon"),
     ("Sorry, can we move it to Friday?", "survey_day", "Friday")],
)  # fmt: skip
def test_a_change_asked_for_at_the_read_back_is_a_no_that_keeps_the_value(
    solar: Playbook, text: str, slot: str, value: str
) -> None:
    read_back = {"survey_day": "Friday", "survey_time": "afternoon"}
    before, after = both(solar, "confirm", text, read_back)
    assert before.intent != "change", before.reason
    assert after.intent == "change", after.reason
    assert after.slots[slot] == value


def test_a_day_repeated_at_the_read_back_without_a_change_word_is_not_a_change(
    solar: Playbook,
) -> None:
    _, after = both(solar, "confirm", "Friday afternoon, yes.", {"survey_day": "Friday"})
    assert after.intent == "confirmed", after.reason


def test_a_question_nothing_answers_is_acknowledged_before_the_question_again(
    solar: Playbook,
) -> None:
    """ "Sorry, could you say that again?" to a question heard well asks the caller to repeat
    what was understood; the script says it has no answer and asks its question again."""
    before, after = both(solar, "pitch", "How long would they be here for?")
    assert before.text == solar.fallback_line
    assert after.text == f"{solar.unanswered} {solar.state('pitch').reprompt}", after.reason
    assert after.tier is DecisionTier.FALLBACK and after.state == "pitch"
    _, unclear = both(solar, "pitch", "Purple elephants.")
    assert unclear.text == solar.fallback_line
