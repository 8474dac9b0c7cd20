"""The line's own events as the workflow reads them: an unanswered call's outcome, machine
detection's results, the summary a person gets with a transfer, and what the simulator accepts
as a live call's new TwiML (`<Dial>`, `<Hangup/>`)."""

from __future__ import annotations

import pytest

from simulator.persona import PersonaError, parse_persona
from simulator.protocol import (
    DialInstruction,
    HangupInstruction,
    TwimlError,
    parse_call_update,
)
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT
from workflows.line_control import handoff_summary, voicemail_step
from workflows.messages import CallStatusUpdate, MachineDetection, TranscriptEntry
from workflows.script import Outcome

SOLAR = load_playbook("solar_survey", REPO_ROOT / "playbooks")


def test_an_unanswered_call_records_why() -> None:
    assert CallStatusUpdate(status="busy").unanswered_outcome() is Outcome.BUSY
    assert CallStatusUpdate(status="no-answer").unanswered_outcome() is Outcome.NO_ANSWER
    machine = CallStatusUpdate(status="completed", answered_by="machine_end_beep")
    assert machine.unanswered_outcome() is Outcome.VOICEMAIL


@pytest.mark.parametrize(
    ("answered_by", "machine"),
    [
        ("machine_end_beep", True),
        ("machine_end_silence", True),
        ("fax", True),
        ("human", False),
        ("unknown", False),
    ],
)
def test_which_detection_results_are_machines(answered_by: str, machine: bool) -> None:
    assert MachineDetection(answered_by=answered_by).machine is machine


def test_the_voicemail_line_ends_the_call_as_voicemail() -> None:
    step = voicemail_step(SOLAR, {"lead_name": "Pat"}, "machine_end_beep")
    assert step.end_call and step.outcome is Outcome.VOICEMAIL and step.state == "voicemail"
    assert step.text.startswith("Hi Pat, this is Sam from Sunny Solar")
    assert "machine_end_beep" in step.reason


def test_the_handoff_summary_says_who_where_and_what_was_answered() -> None:
    transcript = [
        TranscriptEntry(speaker="agent", text="Hi...", state="greeting"),
        TranscriptEntry(speaker="caller", text="Yes, it's me."),
        TranscriptEntry(speaker="agent", text="Do you own?", state="qualify"),
        TranscriptEntry(speaker="caller", text="Can I talk to a real person?"),
        TranscriptEntry(speaker="agent", text="Let me connect you.", state="transfer"),
    ]
    slots = {"lead_name": "Jo", "monthly_bill": "180"}
    summary = handoff_summary(SOLAR, "transfer", slots, transcript)
    assert summary == (
        "Sunny Solar call with Jo, who asked for a person during 'qualify'; "
        'answers so far: monthly_bill: 180; last words: "Can I talk to a real person?".'
    )


def test_a_live_call_is_updated_with_dial_or_hangup() -> None:
    assert parse_call_update("<Response><Dial>+15550109000</Dial></Response>") == (
        DialInstruction("+15550109000")
    )
    number = "<Response><Dial><Number>+15550109001</Number></Dial></Response>"
    assert parse_call_update(number) == DialInstruction("+15550109001")
    assert parse_call_update("<Response><Hangup/></Response>") == HangupInstruction("Hangup")
    for bad, words in [
        ("<Response><Dial> </Dial></Response>", "names no number"),
        ("<Response><Say>hi</Say></Response>", "only with <Dial> or <Hangup>"),
        ("<Dial>+1</Dial>", "expected <Response>"),
    ]:
        with pytest.raises(TwimlError, match=words):
            parse_call_update(bad)


def test_persona_keys_and_answering_machines_are_checked() -> None:
    keys = parse_persona({"name": "K", "phone": "+1", "lines": [{"say": "Hi."}, {"press": "0"}]})
    assert [line.spoken for line in keys.lines] == [True, False]
    assert keys.spoken_lines == ["Hi."]
    machine = parse_persona({"name": "M", "phone": "+1", "machine": {"greeting": "Leave it."}})
    assert machine.machine is not None and machine.spoken_lines == ["Leave it."]
    cases: list[tuple[dict[str, object], str]] = [
        ({"lines": [{"press": "0", "say": "hi"}]}, "cannot also `say`"),
        ({"lines": [{"press": "x"}]}, "String should match pattern"),
        ({"lines": [{"say": "hi"}], "machine": {"greeting": "Hi."}}, "says no `lines`"),
        ({}, "at least one line is needed"),
    ]
    for data, words in cases:
        with pytest.raises(PersonaError, match=words):
            parse_persona({"name": "P", "phone": "+1", **data})
