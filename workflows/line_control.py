"""What a call does with the phone line itself, as pure functions the call workflow applies:
the line left on an answering machine, and the summary a person gets with a transferred call.

Deterministic (no clock, no I/O): the workflow runs them, and the telephony activities carry
out the result through Twilio (`activities.telephony`).
"""

from __future__ import annotations

from collections.abc import Sequence

from workflows.messages import TranscriptEntry
from workflows.script import DecisionTier, Outcome, Playbook, ScriptStep, render

TRANSFER_PATCH = "transfer-v1"
"""A call that reaches the `transfer` outcome is handed to a person with `<Dial>`."""
LINE_OUTCOMES_PATCH = "line-outcomes-v1"
"""A call that ends unanswered records why as its outcome: voicemail, no_answer or busy."""


def voicemail_step(playbook: Playbook, slots: dict[str, str], answered_by: str) -> ScriptStep:
    """The playbook's voicemail line, said after the beep; the call ends with it."""
    policy = playbook.voicemail
    assert policy is not None and policy.message
    return ScriptStep(
        state=Outcome.VOICEMAIL.value,
        text=render(playbook, policy.message, slots),
        tier=DecisionTier.RULE,
        reason=f"answering machine ({answered_by}): message left after the beep",
        end_call=True,
        outcome=Outcome.VOICEMAIL,
        slots=dict(slots),
    )


def leaves_message(playbook: Playbook) -> bool:
    policy = playbook.voicemail
    return policy is not None and policy.action == "leave_message"


def handoff_summary(
    playbook: Playbook, state: str, slots: dict[str, str], transcript: Sequence[TranscriptEntry]
) -> str:
    """What the person taking a transferred call needs first: who, where the script was, what
    the caller already said and answered."""
    name = slots.get("lead_name") or "the caller"
    asked_in = next(
        (e.state for e in reversed(transcript) if e.speaker == "agent" and e.state != state),
        None,
    )
    answers = [f"{k}: {v}" for k, v in sorted(slots.items()) if k != "lead_name" and v]
    said = [e.text for e in transcript if e.speaker == "caller"]
    parts = [f"{playbook.company or playbook.name} call with {name}, who asked for a person"]
    if asked_in:
        parts[0] += f" during '{asked_in}'"
    if answers:
        parts.append("answers so far: " + ", ".join(answers))
    if said:
        parts.append(f'last words: "{said[-1]}"')
    return "; ".join(parts) + "."
