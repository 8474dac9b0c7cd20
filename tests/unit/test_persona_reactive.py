"""Reactive personas: the format parses as personas/README.md says, and the policy answers the
topic of the agent's script state, with the next phrasing when asked again."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from simulator.persona import (
    Persona,
    PersonaError,
    ReactivePersona,
    Reply,
    load_any_persona,
    parse_reactive_persona,
)
from simulator.reactive import ReactivePolicy
from simulator.topics import script_topics
from slot.settings import REPO_ROOT

DANA = {
    "name": "Dana",
    "phone": "+15550130001",
    "expect_outcome": "booked",
    "voice": "espeak_f3",
    "about": "Retired teacher.",
    "answers": {
        "identity": ["Yes, that's me. Who's calling?"],
        "homeowner": [
            {"backchannel": "Mm-hmm.", "after_ms": 1500, "say": "Oh yes, since ninety-eight."}
        ],
        "interest": ["Before I say yes, what's this going to cost me?", "Alright, let's do it."],
        "bill": [{"say": "Um... it's usually around... one forty a month.", "pause_ms": 900}],
        "confirm": [{"say": "Yep, perfect.", "interrupt_after_ms": 1800}],
        "other": ["Sorry, what was that?", "Say again?"],
    },
}


def dana() -> ReactivePersona:
    return parse_reactive_persona(DANA, "dana")


def policy(persona: ReactivePersona | None = None) -> ReactivePolicy:
    return ReactivePolicy(persona or dana(), script_topics("solar_survey", REPO_ROOT / "playbooks"))


def test_replies_are_text_or_mappings() -> None:
    persona = dana()
    assert persona.answers["identity"][0] == Reply(say="Yes, that's me. Who's calling?")
    homeowner = persona.answers["homeowner"][0]
    assert (homeowner.backchannel, homeowner.after_ms) == ("Mm-hmm.", 1500)
    assert persona.answers["bill"][0].pause_ms == 900
    assert persona.answers["confirm"][0].interrupt_after_ms == 1800
    assert "Mm-hmm." in persona.spoken_lines


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"identity": []}, "topic 'identity' has no replies"),
        ({"identity": [{"pause_ms": 100}]}, "`say` is required"),
        ({"weather": ["Nice."]}, "answers.weather"),
        (
            {"identity": [{"say": "Hi", "backchannel": "Mm.", "interrupt_after_ms": 5}]},
            "cannot both backchannel and interrupt",
        ),
    ],
)
def test_bad_replies_name_the_field(answers: object, expected: str) -> None:
    with pytest.raises(PersonaError, match=expected):
        parse_reactive_persona({**DANA, "answers": answers}, "dana")


def test_unknown_voice_is_refused() -> None:
    with pytest.raises(PersonaError, match="voice"):
        parse_reactive_persona({**DANA, "voice": "robot"}, "dana")


def test_pauses_split_a_reply_into_stretches_of_speech() -> None:
    reply = Reply(say="Um... it's usually around... one forty a month.")
    assert reply.segments == ["Um", "it's usually around", "one forty a month."]
    assert Reply(say="Let me think… Wednesday.").segments == ["Let me think", "Wednesday."]
    assert Reply(say="Wednesday.").segments == ["Wednesday."]
    assert Reply(say="Well...").segments == ["Well"]


def test_each_state_gets_its_topics_reply() -> None:
    caller = policy()
    expected = {
        "greeting": ("identity", "Yes, that's me. Who's calling?"),
        "homeowner": ("homeowner", "Oh yes, since ninety-eight."),
        "pitch": ("interest", "Before I say yes, what's this going to cost me?"),
        "qualify": ("bill", "Um... it's usually around... one forty a month."),
        "confirm": ("confirm", "Yep, perfect."),
    }
    for state, (topic, say) in expected.items():
        planned = caller.peek(state)
        assert planned is not None
        assert (planned.topic, planned.reply.say) == (topic, say), state


def test_asked_the_same_topic_again_the_caller_uses_its_next_phrasing() -> None:
    caller = policy()
    first = caller.take("pitch")
    again = caller.take("cost")  # the cost answer asks the interest question again
    assert first is not None and again is not None
    assert (first.phrasing, again.phrasing) == (0, 1)
    assert again.reply.say == "Alright, let's do it."
    last = caller.take("pitch")
    assert last is not None and last.reply.say == "Alright, let's do it.", "the last repeats"


def test_peek_does_not_use_up_a_phrasing() -> None:
    caller = policy()
    assert caller.peek("greeting") == caller.peek("greeting") == caller.take("greeting")


def test_a_state_without_a_topic_reply_is_answered_from_other() -> None:
    caller = policy()
    day = caller.take("ask_day")  # Dana has no `day` replies
    assert day is not None and (day.topic, day.reply.say) == ("other", "Sorry, what was that?")
    unmapped = caller.take("a_state_the_map_does_not_know")
    assert unmapped is not None and unmapped.reply.say == "Say again?"


def test_no_reply_at_all_is_silence() -> None:
    persona = parse_reactive_persona({**DANA, "answers": {"identity": ["Yes."]}}, "dana")
    assert policy(persona).take("ask_day") is None


def test_a_line_that_ends_the_call_gets_no_reply() -> None:
    caller = policy()
    for state in ("booked", "renter", "not_interested", "do_not_call", "transfer", "no_response"):
        assert caller.ends_call(state), state
        assert caller.peek(state) is None
    assert not caller.ends_call("confirm")


def test_either_kind_of_persona_file_loads(tmp_path: Path) -> None:
    reactive = tmp_path / "reactive.yaml"
    reactive.write_text("name: A\nphone: '+1'\nanswers:\n  identity: [Hi.]\n", encoding="utf-8")
    assert isinstance(load_any_persona(reactive), ReactivePersona)
    assert isinstance(load_any_persona(REPO_ROOT / "personas" / "booked_caller.yaml"), Persona)


def test_asked_the_same_thing_too_often_the_caller_hangs_up() -> None:
    caller = ReactivePolicy(dana(), script_topics("solar_survey", REPO_ROOT / "playbooks"), 3)
    said = [caller.take("homeowner") for _ in range(4)]
    assert [p.reply.hang_up for p in said if p is not None] == [False, False, False, True]


def test_a_reply_resumed_over_the_agent_splits_at_its_first_pause_and_needs_one() -> None:
    reply = Reply(say="Tuesday... no sorry... Thursday.", resume_on_agent_ms=300)
    assert reply.resumed == ("Tuesday", "no sorry... Thursday.")
    with pytest.raises(ValidationError, match="needs a `"):
        Reply(say="Thursday.", resume_on_agent_ms=300)
