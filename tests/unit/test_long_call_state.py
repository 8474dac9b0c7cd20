"""A long call's hand-over to its next run, without Temporal: what the next run carries, and that
the summary of the lines it leaves behind keeps every routing decision the same."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from slot.playbooks import load_playbook
from workflows.call_state import CallState
from workflows.details import current_details
from workflows.messages import (
    CallInput,
    CallStatus,
    EarlierTranscript,
    Lead,
    TranscriptEntry,
    Turn,
    UtterancePlayed,
)
from workflows.router import turn_context
from workflows.script import DecisionTier, Playbook, opening, respond

ROOT = Path(__file__).resolve().parents[2]
STARTED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CALLER = [
    "Yes, speaking.",
    "Mmm, blue hats and oranges.",
    "Could you say that again?",
    "Flibbertigibbet.",
    "Yes, I own my home.",
    "Purple elephants dancing.",
    "Sure, that sounds good.",
    "About 200 dollars a month.",
    "Gobbledygook.",
    "Tuesday works for me.",
    "Could you say that again?",
    "Wibble wobble.",
]
"""Answers, misses in a row (fallback lines) and repeats across several states."""


@pytest.fixture(scope="module")
def solar() -> Playbook:
    return load_playbook("solar_survey", ROOT / "playbooks")


def call_input(playbook: Playbook) -> CallInput:
    return CallInput(
        call_id="call-1", lead=Lead(name="Jordan"), script_name="solar_survey", playbook=playbook
    )


def talked(playbook: Playbook, lines: list[str] = CALLER) -> CallState:
    """A call that heard `lines`, each answered as the router's script tier answers it."""
    call = CallState(call_input(playbook))
    call.hear(Turn(seq=0, kind="start"))
    call.apply(opening(playbook, call.slots))
    for seq, text in enumerate(lines, start=1):
        call.hear(Turn(seq=seq, kind="speech", text=text))
        context = turn_context(call.transcript, call.state, call.earlier)
        decision = call.apply(respond(playbook, call.state, call.slots, text, context=context))
        call.played(UtterancePlayed(utterance_id=decision.utterance_id, heard_text="", played_ms=1))
    return call


def test_the_script_sees_the_same_call_whatever_lines_were_moved_out(solar: Playbook) -> None:
    transcript = talked(solar).transcript
    assert any(e.tier is DecisionTier.FALLBACK for e in transcript)
    for cut in range(len(transcript) + 1):
        earlier = EarlierTranscript().fold(transcript[:cut])
        assert earlier.lines == cut
        for state in solar.states:
            whole = turn_context(transcript, state)
            assert turn_context(transcript[cut:], state, earlier) == whole, (cut, state)


def test_folding_in_steps_is_folding_at_once(solar: Playbook) -> None:
    transcript = talked(solar).transcript
    for first in range(len(transcript)):
        for second in range(first, len(transcript) + 1):
            steps = EarlierTranscript().fold(transcript[:first]).fold(transcript[first:second])
            assert steps == EarlierTranscript().fold(transcript[:second])


def test_misses_in_a_row_count_across_the_cut(solar: Playbook) -> None:
    """Two misses in a row in `homeowner` (a repeat between them): a cut after them keeps the
    count (the third miss must lead to the playbook's `on_confusion` state, not loop)."""
    transcript = talked(solar).transcript
    homeowner_misses = [
        i
        for i, e in enumerate(transcript)
        if e.state == "homeowner" and e.tier is DecisionTier.FALLBACK
    ]
    cut = homeowner_misses[1] + 1
    earlier = EarlierTranscript().fold(transcript[:cut])
    assert (earlier.last_state, earlier.last_state_misses) == ("homeowner", 2)
    assert turn_context(transcript[cut:cut], "homeowner", earlier).misses == 2


def test_the_next_run_starts_where_the_call_was_with_the_last_lines(solar: Playbook) -> None:
    call = talked(solar)
    call.reprompts = 1
    call.edge_queue = "edge-127.0.0.1-8080"
    before = call.snapshot()
    carried = call.carry(STARTED, saved_lines=len(call.transcript), keep_lines=16)
    assert len(carried.transcript) == 16 and carried.run == 2
    assert carried.transcript == call.transcript[-16:]

    resumed = CallState(call_input(solar).model_copy(update={"carried": carried}))
    after = resumed.snapshot()
    assert after.earlier_lines == len(before.transcript) - 16
    assert after.transcript == before.transcript[-16:]
    same = ("status", "state", "outcome", "slots", "reprompts")
    assert {k: getattr(after, k) for k in same} == {k: getattr(before, k) for k in same}
    assert (resumed.last_seq, resumed.utterances, resumed.events, resumed.updates) == (
        call.last_seq,
        call.utterances,
        call.events,
        0,
    )
    assert resumed.status is CallStatus.IN_PROGRESS and resumed.silence_armed
    assert resumed.run == 2
    assert resumed.edge_queue == call.edge_queue, "the next run holds the call on the same edge"
    assert resumed.carry(STARTED, 0, 16).run == 3
    follow_up = call_input(solar).model_copy(update={"carried": carried}).follow_up()
    assert follow_up.carried is None, "a follow-up call starts afresh"


def test_lines_not_yet_in_the_record_are_carried_whatever_the_limit(solar: Playbook) -> None:
    call = talked(solar)
    saved = 5
    carried = call.carry(STARTED, saved_lines=saved, keep_lines=16)
    assert len(call.transcript) - saved > 16
    assert carried.earlier.lines == saved
    assert carried.transcript == call.transcript[saved:]


def test_the_next_turn_after_the_hand_over_is_decided_as_without_it(solar: Playbook) -> None:
    """A caller who missed twice in `homeowner` before the hand-over and misses again just after
    it goes to `on_confusion` (a count started afresh would loop on the fallback line)."""
    lines = ["Yes, speaking.", "Purple elephants.", "Flibbertigibbet."]
    straight = talked(solar, [*lines, "Wibble wobble."])
    before = talked(solar, lines)
    carried = before.carry(STARTED, saved_lines=len(before.transcript), keep_lines=1)
    resumed = CallState(call_input(solar).model_copy(update={"carried": carried}))
    assert len(resumed.transcript) == 1 and resumed.state == "homeowner"
    resumed.hear(Turn(seq=4, kind="speech", text="Wibble wobble."))
    context = turn_context(resumed.transcript, resumed.state, resumed.earlier)
    step = respond(solar, resumed.state, resumed.slots, "Wibble wobble.", context=context)
    assert step.state == straight.state == solar.on_confusion


def test_the_web_ui_counts_the_lines_in_the_record(solar: Playbook) -> None:
    lines = [TranscriptEntry(speaker="caller", text=f"line {n}", seq=n) for n in range(31)]
    details = current_details(CallStatus.IN_PROGRESS, "ask_time", None, lines, earlier_lines=400)
    assert "_… 401 earlier lines_" in details
    assert "line 0" not in details and "line 30" in details
