"""Reading callers' words without an LLM: number words and ranges, weekdays, times of day,
yes and no with content, requests to be called back."""

from __future__ import annotations

import pytest

from workflows.understanding import (
    asks_for_a_person,
    asks_to_be_called_back,
    names_themselves,
    only_yes_or_no,
    polarity,
    read_amounts,
    read_daypart,
    read_money,
    read_weekday,
    says_wrong_person,
)

SURVEY_PARTS = ("morning", "afternoon")
WORKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("one eighty a month", 180),
        ("a hundred and twenty", 120),
        ("two fifty", 250),
        ("about two hundred and fifty bucks", 250),
        ("Ninety-five.", 95),
        ("Usually a hundred sixty-five or so.", 165),
        ("Two seventy-five, it's killing me", 275),
        ("twelve fifty", 1250),
        ("$1,200 a year", 1200),
        ("It was 85 dollars", 85),
    ],
)
def test_number_words_become_numbers(text: str, value: int) -> None:
    assert read_amounts(text)[0].value == value


def test_a_range_becomes_its_midpoint_and_says_so() -> None:
    (amount,) = read_amounts("between one and two hundred")
    assert amount.value == 150
    assert amount.note == "midpoint of 100-200"
    assert read_amounts("150 to 200")[0].value == 175


def test_money_needs_money_words_unless_the_question_asked_for_it() -> None:
    assert read_money("We bought it back in twenty ten.", asked=False) is None
    assert read_money("The one and only.", asked=True) is None  # too small to be a bill
    money = read_money("Our bill is one eighty a month", asked=False)
    assert money is not None and money.value == 180
    asked = read_money("Uh, it's around three twenty in winter.", asked=True)
    assert asked is not None and asked.value == 320
    assert read_money("Several hundred bucks, it's crazy.", asked=True) is None


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("Wednesdays are best", "Wednesday"),
        ("Weds would be easiest.", "Wednesday"),
        ("Um, let's go with Thursday.", "Thursday"),
        ("Not Monday, not Tuesday... Wednesday's fine.", "Wednesday"),
        ("Tuesday, no wait, Friday", "Friday"),
    ],
)
def test_weekdays_as_people_say_them(text: str, day: str) -> None:
    found = read_weekday(text, WORKDAYS)
    assert found is not None and found.value == day


def test_a_day_outside_the_choices_or_ruled_out_is_no_day() -> None:
    assert read_weekday("Saturday's the only day I'm free.", WORKDAYS) is None
    assert read_weekday("Not Monday.", WORKDAYS) is None
    assert read_weekday("I sat down with my wife") is None


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("mornings, ideally", "morning"),
        ("after lunch", "afternoon"),
        ("first thing", "morning"),
        ("any time after two", "afternoon"),
        ("In the AM.", "morning"),
        ("Early, like eight or nine.", "morning"),
        ("10am works", "morning"),
        ("Um, later in the day.", "afternoon"),
    ],
)
def test_times_of_day_as_people_say_them(text: str, part: str) -> None:
    found = read_daypart(text, SURVEY_PARTS)
    assert found is not None and found.value == part


def test_an_evening_is_not_read_as_a_morning_hour() -> None:
    assert read_daypart("ring me around seven tonight", SURVEY_PARTS) is None
    assert read_daypart("I am not sure", SURVEY_PARTS) is None
    assert read_daypart("we've owned it for about ten years now", SURVEY_PARTS) is None
    assert read_daypart("around two hundred a month", SURVEY_PARTS) is None


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("Yeah, we've owned the place for about ten years now", "yes"),
        ("Yep, go ahead", "yes"),
        ("Okay, do it.", "yes"),
        ("Um, I've been meaning to look into that, so okay.", "yes"),
        ("No, we rent", "no"),
        ("Nah, I'm good, thanks.", "no"),
        ("No problem", "yes"),
    ],
)
def test_yes_and_no_with_content(text: str, meaning: str) -> None:
    said = polarity(text)
    assert said is not None and said[0] == meaning


@pytest.mark.parametrize(
    "text",
    [
        "Okay, Thursday afternoon would work for me",  # an acknowledgement, then another answer
        "Yeah it's me, but I'm in the middle of something",  # turns with "but"
        "Yeah, not really",
        "I'm renting.",
    ],
)
def test_not_a_plain_yes_or_no(text: str) -> None:
    assert polarity(text) is None


def test_a_request_to_be_called_back() -> None:
    assert asks_to_be_called_back("Can you ring back after the weekend?") == "ring back"
    assert asks_to_be_called_back("I've got to run, try me tomorrow after four.")
    assert asks_to_be_called_back("I'll call you back about it") is None


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("Then no, I'll pass.", "no"),
        ("And no, we don't want it.", "no"),
        ("Okay, no thanks.", "no"),
        ("Okay then.", "yes"),
    ],
)
def test_refined_yes_and_no_after_an_opener(text: str, meaning: str) -> None:
    """understanding-v2: a no after "then", "and", "okay" is still a no."""
    said = polarity(text, refined=True)
    assert said is not None and said[0] == meaning


@pytest.mark.parametrize("text", ["No idea, to be honest.", "No clue what we pay."])
def test_no_idea_is_not_a_no(text: str) -> None:
    assert polarity(text) is not None
    assert polarity(text, refined=True) is None


@pytest.mark.parametrize(
    "text",
    [
        "Could I get a manager on the line?",
        "Just put me through to a human, please.",
        "I'd rather talk to a real person.",
        "Can you transfer me to your supervisor?",
    ],
)
def test_a_request_for_a_person(text: str) -> None:
    assert asks_for_a_person(text) is not None


@pytest.mark.parametrize(
    "text", ["The manager of my building said it's fine.", "I'm a real person, yes."]
)
def test_not_a_request_for_a_person(text: str) -> None:
    assert asks_for_a_person(text) is None


@pytest.mark.parametrize(
    "text", ["Alright, send them out.", "Okay then, book it.", "Alright, sign me up for it then."]
)
def test_a_go_ahead_after_okay_is_a_yes(text: str) -> None:
    said = polarity(text, refined=True)
    assert said is not None and said[0] == "yes"
    assert polarity(text) is None


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Yep, Dana here.", True),
        ("Mm, yeah, Dana, I was just out back.", True),
        ("This is Dana, who's this?", True),
        ("Dana? She's not home.", False),
        ("No, Dana moved out.", False),
        ("Who's asking for Dana?", False),
    ],
)
def test_a_caller_naming_themselves(text: str, found: bool) -> None:
    assert (names_themselves(text, "Dana") is not None) is found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("There's no Dana here, sorry.", True),
        ("I think you have the wrong number, pal.", True),
        ("I'm not her, I'm her sister.", True),
        ("There's no one here right now.", False),
        ("There's no way I'm doing that.", False),
    ],
)
def test_saying_it_is_the_wrong_person(text: str, found: bool) -> None:
    assert (says_wrong_person(text) is not None) is found
    assert (says_wrong_person(text, v4=True) is not None) is found, "v4 reads these alike"


@pytest.mark.parametrize(
    "text",
    [
        "There's no Mary Ann here.",
        "Oh, Mar, no, there's no, no, Mar here.",
        "There's no, no Dana here.",
    ],
)
def test_understanding_v4_reads_a_two_word_name_or_a_repeated_no(text: str) -> None:
    assert says_wrong_person(text) is None
    assert says_wrong_person(text, v4=True) is not None


@pytest.mark.parametrize(
    ("example", "bare"),
    [("No.", True), ("Nope.", True), ("Yes.", True), ("No thanks.", False), ("Not now.", False)],
)
def test_an_intent_example_that_is_only_a_yes_or_a_no(example: str, bare: bool) -> None:
    assert only_yes_or_no(example) is bare
