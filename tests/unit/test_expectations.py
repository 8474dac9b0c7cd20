"""What the edge is told an answer looks like, and its judgement of a paused transcript."""

from __future__ import annotations

from evals.router_labels import DEV_CALLERS, DEV_CALLERS2, DEV_CALLERS3, DEV_PLAYBOOK, load_cases
from slot.playbooks import load_playbook_file
from slot.settings import REPO_ROOT
from workflows.expectations import AnswerReadings, expected_answer, judge_answer
from workflows.script import DecisionTier, TurnContext, respond

PLAYBOOK = load_playbook_file(REPO_ROOT / "playbooks" / "solar_survey.yaml")
LEAD = {"lead_name": "Frank"}


def assert_held(state: str, held: tuple[str, ...], not_held: tuple[str, ...]) -> None:
    """In `state`, each of `held` waits as unfinished (not a complete answer); none of
    `not_held` does."""
    expect = expected_answer(PLAYBOOK, state)
    assert expect is not None
    for text in held:
        judged = judge_answer(expect, text)
        assert not judged.complete and judged.unfinished, text
    for text in not_held:
        assert not judge_answer(expect, text).unfinished, text


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


def test_judgement_shares_the_routers_understanding() -> None:
    """A turn judged complete is one the router's tier 0 understands at once."""
    homeowner = expected_answer(PLAYBOOK, "homeowner")
    qualify = expected_answer(PLAYBOOK, "qualify")
    ask_time = expected_answer(PLAYBOOK, "ask_time")
    greeting = expected_answer(PLAYBOOK, "greeting")
    assert homeowner and qualify and ask_time and greeting
    assert homeowner.yes == "owns_home" and homeowner.no == "rents"
    owned = judge_answer(homeowner, "Yeah, we've owned the place for about ten years now")
    assert owned.complete and "owns_home" in owned.reason
    bill = judge_answer(qualify, "one eighty a month")
    assert bill.complete and bill.reason == "slot 'monthly_bill' = '180'"
    assert judge_answer(ask_time, "any time after two").complete
    assert judge_answer(greeting, "Can you ring back this evening?").complete
    assert judge_answer(greeting, "Please stop calling me").complete
    assert not judge_answer(qualify, "It's around").complete
    assert not judge_answer(homeowner, "Okay, Thursday afternoon would work for me").complete


def test_speech_is_biased_to_the_words_of_the_yes_and_no_answers_first() -> None:
    expect = expected_answer(PLAYBOOK, "homeowner")
    assert expect is not None
    words = expect.vocabulary()
    assert words[: len(expect.answer_words())] == expect.answer_words()
    assert {"own", "rent"} <= set(expect.answer_words())
    greeting = expected_answer(PLAYBOOK, "greeting")
    assert greeting is not None
    assert "jordan" not in greeting.answer_words()  # a name in an example is not a hotword


def test_words_that_trail_off_are_unfinished_and_say_so() -> None:
    assert_held(
        "qualify",
        (
            "Um.",
            "Well,",
            "Oh, I'd have to look... maybe",
            "In the summer it's",
            "I.",
            "We don't, yeah, but.",
        ),
        ("About ninety dollars.", "", "What's this about?", "I think so.", "It is."),
    )
    qualify = expected_answer(PLAYBOOK, "qualify")
    assert qualify is not None
    assert judge_answer(qualify, "One eighty, if possible.,").complete  # a stray comma
    assert judge_answer(None, "Well,").unfinished and judge_answer(None, "and the").unfinished
    assert not judge_answer(None, "").unfinished
    assert not judge_answer(None, "Is it really free?").unfinished


def test_an_answer_the_recognizer_closed_with_a_comma_is_not_held_as_trailing_off() -> None:
    ask_time = expected_answer(PLAYBOOK, "ask_time")
    assert ask_time is not None
    for text in ("Early morning,", "Afternoon, like I said,", "Mornings -"):
        judged = judge_answer(ask_time, text)
        assert not judged.complete and not judged.unfinished, text
    for text in ("Morning, and", "Um,", "Well, let me think,", "O,,"):
        assert judge_answer(ask_time, text).unfinished, text


def test_a_contracted_verb_never_ends_an_answer_whatever_the_punctuation() -> None:
    """ "it's", "I'm", "we'd" cannot close an English sentence; "it is" can."""
    assert_held(
        "qualify",
        ("Um, in the summer, it's.", "Yes, I'm.", "Well, we'd.", "That's."),
        ("Yes, it is.", "That's about it.", "It's a hundred and ten."),
    )
    qualify = expected_answer(PLAYBOOK, "qualify")
    assert qualify is not None
    assert judge_answer(qualify, "I think it's about one ten.").complete


def test_a_question_the_script_does_not_answer_is_marked_as_the_callers_question() -> None:
    pitch = expected_answer(PLAYBOOK, "pitch")
    assert pitch is not None
    for text in ("How long would they be here for?", "Who is Sunny Solar exactly?"):
        judged = judge_answer(pitch, text)
        assert judged.question and not judged.complete, text
    for text in ("Is it really free? There's no catch.", "How long would they be here for", "And?"):
        assert not judge_answer(pitch, text).question, text
    understood = judge_answer(pitch, "Can you call me back later?")
    assert understood.complete and not understood.question


def test_a_less_likely_reading_may_stand_only_for_an_answer_in_the_states_own_terms() -> None:
    """What the STT's second look may take: the state's slot, its own intents, its yes or no;
    never a built-in rule or a global intent read into audio the model first heard otherwise."""
    ask_day = expected_answer(PLAYBOOK, "ask_day")
    homeowner = expected_answer(PLAYBOOK, "homeowner")
    assert ask_day and homeowner
    day, home = AnswerReadings(ask_day), AnswerReadings(homeowner)
    assert day.answers("Tuesday.")
    assert judge_answer(ask_day, "Tuesday.").meaning == "slot:survey_day=Tuesday"
    assert home.answers("Yeah, I own the house.") and home.answers("No, we rent.")
    assert judge_answer(homeowner, "No, we rent.").meaning == "intent:rents"
    stop = judge_answer(homeowner, "Stop calling me.")
    assert stop.complete and not stop.answers_here and not home.answers("Stop calling me.")
    global_intent = judge_answer(homeowner, "I'm not interested, thanks.")
    assert global_intent.meaning == "intent:not_interested" and not global_intent.answers_here


def test_a_first_reading_is_settled_when_understood_or_trailing_off() -> None:
    ask_day = expected_answer(PLAYBOOK, "ask_day")
    assert ask_day
    readings = AnswerReadings(ask_day)
    assert readings.settled("Thursday works.")
    assert readings.settled("Stop calling me.")
    assert readings.settled("Maybe Thursday or")
    assert readings.settled("Um,")
    assert not readings.settled("Doomed then.")
    assert not readings.settled("")


def test_a_caller_asking_for_a_moment_holds_the_turn() -> None:
    """The last clause asks the agent to wait: the pause is held like words that trail off."""
    assert_held(
        "ask_day",
        ("Let me check my calendar.", "Um, let me think.", "Okay, one sec.", "Hang on."),
        (
            "Let me see, Thursday works.",  # answered after it
            "Hang on, how did you get my number?",  # a question of the caller's own
            "Hold on, stop calling me.",
            "Let me check with my wife and call you back.",
            "A second opinion.",
        ),
    )
    ask_day = expected_answer(PLAYBOOK, "ask_day")
    assert ask_day is not None
    assert judge_answer(ask_day, "Let me see, Thursday works.").complete
    qualify = expected_answer(PLAYBOOK, "qualify")
    assert qualify is not None
    answered = judge_answer(qualify, "Hang on about 190.")  # a dev caller, heard so
    assert answered.complete and not answered.unfinished, answered.reason


def test_a_pause_is_judged_with_the_routers_newest_readings() -> None:
    """Turns the router's tier 0 reads that the edge once judged unfinished business, so they
    waited the whole maximum silence: names (the question asks for Frank), a transfer, an
    opener before a yes, a word's inflection, an hour alone."""
    greeting = expected_answer(PLAYBOOK, "greeting", "Am I speaking with Frank?", LEAD)
    nobody = expected_answer(PLAYBOOK, "greeting", "Am I speaking with the homeowner?")
    homeowner = expected_answer(PLAYBOOK, "homeowner")
    pitch = expected_answer(PLAYBOOK, "pitch")
    ask_time = expected_answer(PLAYBOOK, "ask_time")
    assert greeting and nobody and homeowner and pitch and ask_time
    assert greeting.lead_name == "Frank" and nobody.lead_name is None
    for text in ("Frank here.", "There's no Frank here.", "You're talking to him."):
        judged = judge_answer(greeting, text)
        assert judged.complete and judged.meaning == "identity", text
    assert not judge_answer(nobody, "Frank here.").complete
    assert judge_answer(greeting, "Can you transfer me?").meaning == "a person"
    assert judge_answer(homeowner, "Ok, yeah, I own my place.").complete
    assert judge_answer(pitch, "Solar's a scam if you ask me, no thanks.").complete
    assert judge_answer(ask_time, "Three o'clock-ish.").complete


def test_no_dev_turn_is_judged_complete_that_the_routers_tier_0_does_not_read() -> None:
    """A pause judged complete ends the turn at once: if the router then did not understand
    it, the caller was cut off for a fallback line."""
    context = TurnContext(
        refined=True,
        do_not_call_v3=True,
        state_answers_v4=True,
        understanding_v5=True,
        understanding_v6=True,
        understanding_v7=True,
        questions_v6=True,
    )
    lead = {"lead_name": "Jordan"}
    judged_only = []
    for path in (DEV_PLAYBOOK, DEV_CALLERS, DEV_CALLERS2, DEV_CALLERS3):
        for case in load_cases(path):
            expect = expected_answer(PLAYBOOK, case.state, "", lead)
            assert expect is not None
            step = respond(PLAYBOOK, case.state, dict(lead), case.text, context=context)
            read = step.tier in (DecisionTier.RULE, DecisionTier.SCRIPT)
            if judge_answer(expect, case.text).complete and not read:
                judged_only.append(case.text)
    assert judged_only == []
