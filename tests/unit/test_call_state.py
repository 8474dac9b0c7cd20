"""The call's state without Temporal: turns, plays, hang-ups and the call input's snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from slot.playbooks import load_playbook
from workflows.call_state import CallState
from workflows.messages import CallInput, CallStatus, Lead, Turn, UtterancePlayed
from workflows.router_messages import RouterConfig
from workflows.script import Outcome, Playbook, opening, respond

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def solar() -> Playbook:
    return load_playbook("solar_survey", ROOT / "playbooks")


def call_input(playbook: Playbook) -> CallInput:
    return CallInput(
        call_id="call-1", lead=Lead(name="Jordan"), script_name="solar_survey", playbook=playbook
    )


def test_a_turn_applied_moves_the_call_and_its_goodbye_ends_it(solar: Playbook) -> None:
    call = CallState(call_input(solar))
    call.hear(Turn(seq=0, kind="start"))
    greeting = call.apply(opening(solar, call.slots))
    assert (call.status, greeting.utterance_id) == (CallStatus.IN_PROGRESS, "call-1-u1")
    call.played(UtterancePlayed(utterance_id="call-1-u1", heard_text=greeting.text, played_ms=1))
    assert call.silence_armed

    call.hear(Turn(seq=1, kind="speech", text="No thanks, I'm not interested."))
    assert not call.silence_armed
    goodbye = call.apply(respond(solar, call.state, call.slots, "No thanks, I'm not interested."))
    assert goodbye.end_call and call.outcome is Outcome.NOT_INTERESTED and not call.ended
    call.played(UtterancePlayed(utterance_id=goodbye.utterance_id, heard_text="Bye", played_ms=1))
    assert call.ended and call.status is CallStatus.ENDED
    assert call.outcome is Outcome.NOT_INTERESTED
    assert [e.speaker for e in call.snapshot().transcript] == ["agent", "caller", "agent"]


def test_a_hang_up_mid_call_is_recorded_as_hung_up_and_keys_join_the_transcript(
    solar: Playbook,
) -> None:
    call = CallState(call_input(solar))
    call.hear(Turn(seq=0, kind="start"))
    call.apply(opening(solar, call.slots))
    call.hear(Turn(seq=1, kind="dtmf", digits="5"))
    assert call.transcript[-1].text == "[keys 5]"
    call.end(CallStatus.ENDED, "caller hung up")
    assert (call.ended, call.outcome, call.end_reason) == (True, Outcome.HUNG_UP, "caller hung up")


def test_router_config_is_part_of_the_call_input_and_old_inputs_keep_their_score(
    solar: Playbook,
) -> None:
    fresh = call_input(solar)
    assert fresh.router == RouterConfig()
    assert "router" in fresh.model_dump(mode="json")
    recorded_before = fresh.model_dump(mode="json")
    del recorded_before["router"]
    recorded_before["knowledge_min_score"] = 0.7
    old = CallInput.model_validate(recorded_before)
    assert old.router == RouterConfig(knowledge_min_score=0.7)


def _at_ask_time(solar: Playbook) -> CallState:
    """A call whose caller has chosen Wednesday: the agent asks morning or afternoon (turn 4)."""
    call = CallState(call_input(solar))
    call.hear(Turn(seq=0, kind="start"))
    call.apply(opening(solar, call.slots))
    for seq, text in enumerate(
        ["Yes, this is Jordan.", "Yes, I own my home.", "Sounds good.", "About two hundred."], 1
    ):
        call.hear(Turn(seq=seq, kind="speech", text=text))
        call.apply_turn(respond(solar, call.state, call.slots, text), seq)
    call.hear(Turn(seq=5, kind="speech", text="Wednesday."))
    call.apply_turn(respond(solar, call.state, call.slots, "Wednesday."), 5)
    assert call.state == "ask_time" and call.slots["survey_day"] == "Wednesday"
    return call


def test_a_continuation_undoes_the_premature_decision_its_state_and_slots(
    solar: Playbook,
) -> None:
    call = _at_ask_time(solar)
    slots_before = dict(call.slots)
    call.hear(Turn(seq=6, kind="speech", text="I don't mind"))
    premature = call.apply_turn(respond(solar, call.state, call.slots, "I don't mind"), 6)
    assert (premature.state, call.slots["survey_time"]) == ("confirm", "morning")

    joined = "I don't mind mornings but afternoons are better"
    continuation = Turn(seq=7, kind="speech", text=joined, continues=6)
    assert call.can_rewind(continuation)
    call.rewind()
    assert (call.state, call.slots) == ("ask_time", slots_before)
    withdrawn = [e for e in call.transcript if e.withdrawn]
    assert [(e.speaker, e.seq or e.utterance_id) for e in withdrawn] == [
        ("caller", 6),
        ("agent", premature.utterance_id),
    ]
    call.hear(continuation)
    assert call.routed_transcript()[-1].text == joined
    assert premature.utterance_id not in {e.utterance_id for e in call.routed_transcript()}
    decision = call.apply_turn(respond(solar, call.state, call.slots, joined), 7)
    assert (decision.state, call.slots["survey_time"]) == ("confirm", "afternoon")


def test_only_the_last_decision_can_be_undone_and_only_by_its_own_continuation(
    solar: Playbook,
) -> None:
    call = _at_ask_time(solar)
    assert not call.can_rewind(Turn(seq=6, kind="speech", text="Mornings.", continues=4))
    assert not call.can_rewind(Turn(seq=6, kind="speech", text="Mornings."))
    assert call.can_rewind(Turn(seq=6, kind="speech", text="Mornings.", continues=5))
    reprompt = respond(solar, call.state, call.slots, "")
    call.apply(reprompt.model_copy(update={"text": "Morning or afternoon on Wednesday?"}))
    assert not call.can_rewind(Turn(seq=6, kind="speech", text="Mornings.", continues=5))


def test_a_decision_that_ends_the_call_or_records_an_outcome_is_not_undone(
    solar: Playbook,
) -> None:
    call = _at_ask_time(solar)
    call.hear(Turn(seq=6, kind="speech", text="No thanks, I'm not interested."))
    goodbye = respond(solar, call.state, call.slots, "No thanks, I'm not interested.")
    assert goodbye.end_call and goodbye.outcome is Outcome.NOT_INTERESTED
    call.apply_turn(goodbye, 6)
    assert not call.can_rewind(Turn(seq=7, kind="speech", text="Not yet anyway.", continues=6))
    assert call.before_decision is None


def _at_ask_day(solar: Playbook) -> CallState:
    call = _at_ask_time(solar)
    call.rewind()
    return call


def _goodbye_cut_off(solar: Playbook, *, withdrawn: bool, goodbyes: bool = True) -> CallState:
    """At the day question the caller says "Not this week." (a call-back goodbye) and talks
    over its first words: cut off for a continuation (`withdrawn`) or as a barge-in."""
    call = _at_ask_day(solar)
    call.hear(Turn(seq=6, kind="speech", text="Not this week."))
    step = respond(solar, call.state, call.slots, "Not this week.")
    assert step.end_call and step.outcome is Outcome.CALL_BACK_LATER
    goodbye = call.apply_turn(step, 6, goodbyes=goodbyes)
    call.played(
        UtterancePlayed(
            utterance_id=goodbye.utterance_id,
            interrupted=True,
            heard_text="Of course.",
            played_ms=300,
            withdrawn=withdrawn,
        )
    )
    return call


def test_a_goodbye_taken_back_by_the_callers_continuation_is_undone_and_the_call_goes_on(
    solar: Playbook,
) -> None:
    """ "Not this week..." ends the call as a call back; the caller goes on ("...actually,
    Friday works") over the goodbye: the edge withdraws it, the call does not end, and the
    continuation is decided where the call stood, with the goodbye undone."""
    call = _goodbye_cut_off(solar, withdrawn=True)
    assert not call.ended and call.goodbye_withdrawn
    joined = "Not this week. actually, Friday works"
    continuation = Turn(seq=7, kind="speech", text=joined, continues=6)
    assert call.can_rewind(continuation)
    call.rewind()
    assert (call.state, call.outcome, call.end_utterance_id) == ("ask_day", None, None)
    assert not call.goodbye_withdrawn and call.goodbyes_taken_back == 1
    call.hear(continuation)
    decision = call.apply_turn(respond(solar, call.state, call.slots, joined), 7, goodbyes=True)
    assert (decision.state, call.slots["survey_day"]) == ("ask_time", "Friday")


def test_a_goodbye_heard_or_cut_off_by_barge_in_still_ends_the_call(solar: Playbook) -> None:
    for withdrawn, goodbyes in ((False, True), (True, False)):
        call = _goodbye_cut_off(solar, withdrawn=withdrawn, goodbyes=goodbyes)
        assert call.ended and call.outcome is Outcome.CALL_BACK_LATER, (withdrawn, goodbyes)


def test_a_do_not_call_goodbye_is_never_taken_back(solar: Playbook) -> None:
    call = _at_ask_day(solar)
    call.hear(Turn(seq=6, kind="speech", text="Stop calling me."))
    step = respond(solar, call.state, call.slots, "Stop calling me.")
    assert step.outcome is Outcome.DO_NOT_CALL
    call.apply_turn(step, 6, goodbyes=True)
    assert not call.can_rewind(Turn(seq=7, kind="speech", text="Stop calling me. ok", continues=6))
