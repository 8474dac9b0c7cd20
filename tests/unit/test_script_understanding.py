"""The script engine's understanding-v1 path (`respond` with a `TurnContext`): slots from any
turn, yes/no answers with content, states skipped when their slot was given earlier, and
recovery that never loops and ends in the playbook's `on_confusion`."""

from __future__ import annotations

import pytest

from slot.playbooks import load_playbook_file
from slot.settings import REPO_ROOT
from workflows.messages import TranscriptEntry
from workflows.router import turn_context
from workflows.script import (
    DecisionTier,
    Outcome,
    Playbook,
    ScriptStep,
    TurnContext,
    reprompt,
    respond,
)

LEAD = {"lead_name": "Jordan"}
NEW = TurnContext()


@pytest.fixture(scope="module")
def solar() -> Playbook:
    return load_playbook_file(REPO_ROOT / "playbooks" / "solar_survey.yaml")


def say(
    playbook: Playbook,
    step: ScriptStep,
    utterance: str,
    asked: set[str],
    misses: int = 0,
) -> ScriptStep:
    asked.add(step.state)
    context = TurnContext(asked=frozenset(asked), misses=misses, last_line=step.text)
    return respond(playbook, step.state, step.slots, utterance, context=context)


def test_yes_with_content_answers_the_question(solar: Playbook) -> None:
    step = respond(
        solar, "homeowner", LEAD, "Yeah, we've owned the place for about ten years now", context=NEW
    )
    assert (step.state, step.intent, step.tier) == ("pitch", "owns_home", DecisionTier.SCRIPT)
    assert "'yeah' answers the question" in step.reason
    rents = respond(solar, "homeowner", LEAD, "No, we rent", context=NEW)
    assert (rents.state, rents.intent) == ("check_renting", "rents")
    go = respond(solar, "confirm", {**LEAD, "survey_day": "Monday"}, "Yep, go ahead", context=NEW)
    assert go.outcome is Outcome.BOOKED
    # the older engine falls back on the same words
    older = respond(solar, "homeowner", LEAD, "Yeah, we've owned the place for ten years now")
    assert older.tier is DecisionTier.FALLBACK


def test_a_detail_given_early_is_kept_and_its_question_skipped_later(solar: Playbook) -> None:
    asked: set[str] = set()
    step = ScriptStep(
        state="homeowner",
        text="Do you own your home?",
        tier=DecisionTier.SCRIPT,
        reason="",
        slots=dict(LEAD),
    )
    early = say(solar, step, "Okay, Thursday afternoon would work for me", asked)
    assert early.state == "homeowner"
    assert early.slots["survey_day"] == "Thursday"
    assert early.slots["survey_time"] == "afternoon"
    assert early.text == "Got it, thanks. Do you own your home, or do you rent?"
    assert "noted 'survey_day' = 'Thursday' for later" in early.reason
    owner = say(solar, early, "Yes, we own it.", asked)
    assert owner.state == "pitch"
    interested = say(solar, owner, "Sure, why not.", asked)
    assert interested.state == "qualify"
    bill = say(solar, interested, "Oh, one eighty a month, give or take", asked)
    assert bill.slots["monthly_bill"] == "180"
    assert bill.state == "confirm"
    assert "skipped 'ask_day': 'survey_day' given earlier" in bill.reason
    assert "skipped 'ask_time': 'survey_time' given earlier" in bill.reason
    assert bill.text.startswith("Perfect. That's a free solar survey on Thursday afternoon.")


def test_changing_the_day_asks_again_what_was_asked_before(solar: Playbook) -> None:
    slots = {**LEAD, "survey_day": "Tuesday", "survey_time": "morning"}
    context = TurnContext(asked=frozenset({"ask_day", "ask_time", "confirm"}))
    step = respond(solar, "confirm", slots, "No, can we change it?", context=context)
    assert step.state == "ask_day"
    new_day = respond(solar, "confirm", slots, "No, can we do Wednesday instead?", context=context)
    assert (new_day.state, new_day.slots["survey_day"]) == ("ask_time", "Wednesday")


def test_a_bare_number_is_not_a_bill_but_money_words_anywhere_are(solar: Playbook) -> None:
    greeting = respond(solar, "greeting", LEAD, "Yes, been here twenty five years", context=NEW)
    assert "monthly_bill" not in greeting.slots
    pitch = respond(solar, "pitch", LEAD, "Sure, our bill is about two fifty a month", context=NEW)
    assert (pitch.state, pitch.slots["monthly_bill"]) == ("ask_day", "250")
    assert "skipped 'qualify': 'monthly_bill' already given" in pitch.reason


def test_a_range_is_its_midpoint_and_the_reason_says_so(solar: Playbook) -> None:
    step = respond(solar, "qualify", LEAD, "Between one and two hundred", context=NEW)
    assert step.slots["monthly_bill"] == "150"
    assert "midpoint of 100-200" in step.reason


def test_a_request_to_be_called_back_outranks_a_day(solar: Playbook) -> None:
    step = respond(
        solar,
        "ask_day",
        LEAD,
        "Can you ring back after the weekend? Monday evening's good.",
        context=NEW,
    )
    assert step.outcome is Outcome.CALL_BACK_LATER


def test_recovery_fallback_then_rephrase_then_on_confusion_then_goodbye(
    solar: Playbook,
) -> None:
    unclear = "Purple elephants dance on the moon."
    lines = []
    last = ""
    for misses in range(3):
        context = TurnContext(asked=frozenset({"pitch"}), misses=misses, last_line=last)
        step = respond(solar, "pitch", LEAD, unclear, context=context)
        assert step.tier is DecisionTier.FALLBACK
        lines.append(step.text)
        last = step.text
    assert lines[0] == solar.fallback_line
    assert lines[1] == solar.states["pitch"].rephrase
    assert step.state == "offer_call_back"
    assert "on_confusion: 'offer_call_back'" in step.reason
    stuck = TurnContext(misses=2, last_line=step.text)
    goodbye = respond(solar, "offer_call_back", LEAD, unclear, context=stuck)
    assert goodbye.end_call and goodbye.outcome is Outcome.NO_RESPONSE
    yes = respond(solar, "offer_call_back", LEAD, "Yeah, that's fine", context=NEW)
    assert yes.outcome is Outcome.CALL_BACK_LATER


def test_a_state_with_its_own_on_confusion_moves_on_instead_of_offering_a_call_back(
    solar: Playbook,
) -> None:
    """The sample playbook can book without the power bill: a third miss in `qualify` asks for
    the day, keeping the call's details; the day is not optional, so a third miss there still
    goes to the playbook's `on_confusion`."""
    assert solar.states["qualify"].on_confusion == "ask_day"
    unclear = "Purple elephants dance on the moon."
    slots = {**LEAD, "survey_time": "morning"}
    steps = [
        respond(solar, "qualify", slots, unclear, context=TurnContext(misses=m)) for m in range(3)
    ]
    assert [s.state for s in steps] == ["qualify", "qualify", "ask_day"]
    moved = steps[-1]
    assert moved.tier is DecisionTier.FALLBACK and "on_confusion: 'ask_day'" in moved.reason
    assert moved.text == solar.states["ask_day"].say and moved.slots["survey_time"] == "morning"
    day = respond(solar, "ask_day", moved.slots, "Tuesday works.", context=NEW)
    assert day.slots["survey_day"] == "Tuesday" and "monthly_bill" not in day.slots
    stuck = respond(solar, "ask_day", moved.slots, unclear, context=TurnContext(misses=2))
    assert stuck.state == solar.on_confusion == "offer_call_back"


def test_never_the_same_fallback_line_twice_in_a_row(solar: Playbook) -> None:
    context = TurnContext(misses=0, last_line=solar.fallback_line)
    step = respond(solar, "pitch", LEAD, "Purple elephants.", context=context)
    assert step.text != solar.fallback_line
    no_confusion = solar.model_copy(update={"on_confusion": None})
    last = ""
    for misses in range(6):
        context = TurnContext(misses=misses, last_line=last)
        step = respond(no_confusion, "pitch", LEAD, "Purple elephants.", context=context)
        assert step.state == "pitch" and step.text != last
        last = step.text


def test_a_silent_caller_is_never_asked_the_same_line_twice_in_a_row(solar: Playbook) -> None:
    """Patch reprompt-varied-v1: reprompts after a fallback or another reprompt are new words,
    the second one the state's question rephrased."""
    pitch = solar.states["pitch"]
    first = reprompt(solar, "pitch", LEAD, 1, last_line=pitch.say)
    assert first.text == pitch.reprompt
    second = reprompt(solar, "pitch", LEAD, 2, last_line=first.text)
    assert second.text == pitch.rephrase
    after_fallback = reprompt(solar, "qualify", LEAD, 1, last_line=solar.states["qualify"].reprompt)
    assert after_fallback.text not in ("", solar.states["qualify"].reprompt)
    assert second.tier is DecisionTier.RULE and not second.end_call
    older = reprompt(solar, "pitch", LEAD, 2)
    assert older.text == pitch.reprompt


def test_misses_are_counted_from_the_transcript() -> None:
    def agent(state: str, tier: DecisionTier, text: str = "line") -> TranscriptEntry:
        return TranscriptEntry(speaker="agent", text=text, state=state, tier=tier)

    caller = TranscriptEntry(speaker="caller", text="hm")
    transcript = [
        agent("greeting", DecisionTier.SCRIPT),
        caller,
        agent("homeowner", DecisionTier.FALLBACK),
        caller,
        agent("pitch", DecisionTier.SCRIPT),
        caller,
        agent("pitch", DecisionTier.FALLBACK),
        caller,
        agent("pitch", DecisionTier.KNOWLEDGE),
        caller,
        agent("pitch", DecisionTier.FALLBACK, "Shall I book you a free survey, yes or no?"),
        caller,
    ]
    context = turn_context(transcript, "pitch")
    assert context.misses == 2
    assert context.asked == {"greeting", "homeowner", "pitch"}
    assert context.last_line == "Shall I book you a free survey, yes or no?"


REFINED = TurnContext(refined=True)


def test_a_new_day_when_the_booking_is_read_back_is_a_no_that_keeps_it(solar: Playbook) -> None:
    """understanding-v2: "Actually Friday's better" at confirm changes the day, and the day
    question is not asked again."""
    booked = {**LEAD, "survey_day": "Tuesday", "survey_time": "morning"}
    text = "Hmm, actually Friday's better for us."
    asked = TurnContext(asked=frozenset({"ask_day", "ask_time", "confirm"}), refined=True)
    step = respond(solar, "confirm", booked, text, context=asked)
    assert step.intent == "change" and step.slots["survey_day"] == "Friday"
    assert step.state == "ask_time" and step.tier is DecisionTier.SCRIPT
    same = respond(solar, "confirm", booked, "Yes, Tuesday is fine.", context=asked)
    assert same.intent == "confirmed"
    before = respond(solar, "confirm", booked, text, context=NEW)
    assert before.tier is DecisionTier.FALLBACK


def test_a_request_for_a_person_transfers_in_any_state(solar: Playbook) -> None:
    text = "Honestly, could I get a manager on the line?"
    step = respond(solar, "qualify", LEAD, text, context=REFINED)
    assert step.intent == "talk_to_person" and step.outcome is Outcome.TRANSFER
    assert respond(solar, "qualify", LEAD, text, context=NEW).outcome is not Outcome.TRANSFER


def test_then_no_declines_the_offer(solar: Playbook) -> None:
    step = respond(solar, "cost", LEAD, "Then no, I'll leave it.", context=REFINED)
    assert step.outcome is Outcome.NOT_INTERESTED


def test_the_caller_naming_themselves_confirms_identity(solar: Playbook) -> None:
    step = respond(solar, "greeting", LEAD, "Mm. Jordan here.", context=REFINED)
    assert step.intent == "confirm_identity" and step.state == "homeowner"
    assert respond(solar, "greeting", LEAD, "Mm. Jordan here.", context=NEW).state == "greeting"
    default = {"lead_name": "the homeowner"}
    unnamed = respond(solar, "greeting", default, "Yes, the homeowner here", context=REFINED)
    assert "answers who is speaking" not in unnamed.reason


def test_no_such_person_here_is_the_wrong_person(solar: Playbook) -> None:
    step = respond(solar, "greeting", LEAD, "Jordan? There's no Jordan here.", context=REFINED)
    assert step.outcome is Outcome.WRONG_PERSON


def test_a_time_said_at_the_greeting_is_not_a_correction(solar: Playbook) -> None:
    slots = {**LEAD, "survey_day": "Friday", "survey_time": "morning"}
    step = respond(solar, "greeting", slots, "Can't talk, after five", context=REFINED)
    assert step.outcome is not Outcome.WRONG_PERSON
