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
    qualify = expected_answer(PLAYBOOK, "qualify")
    assert qualify is not None
    for text in (
        "Um.",
        "Well,",
        "Oh, I'd have to look... maybe",
        "In the summer it's",
        "I.",
        "We don't, yeah, but.",
    ):
        judged = judge_answer(qualify, text)
        assert not judged.complete and judged.unfinished, text
    for text in ("About ninety dollars.", "", "What's this about?", "I think so.", "It is."):
        assert not judge_answer(qualify, text).unfinished, text
    assert judge_answer(qualify, "One eighty, if possible.,").complete  # a stray comma
    assert judge_answer(None, "Well,").unfinished and judge_answer(None, "and the").unfinished
    assert not judge_answer(None, "").unfinished
    assert not judge_answer(None, "Is it really free?").unfinished
