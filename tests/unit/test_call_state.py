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
