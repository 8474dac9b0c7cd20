"""A sales script (playbook) as a strict, pure state machine.

CONTRACT (to be implemented; signatures are fixed, bodies are not yet):
- `Playbook` is the validated, compiled form of a YAML playbook; it travels inside the call
  workflow's input as the script snapshot, so it must be a pydantic model of plain data.
- `opening`, `respond`, `respond_dtmf`, `reprompt` are pure: no I/O, no clocks, no randomness.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class Outcome(StrEnum):
    BOOKED = "booked"
    NOT_INTERESTED = "not_interested"
    CALL_BACK_LATER = "call_back_later"
    DO_NOT_CALL = "do_not_call"
    TRANSFER = "transfer"
    NO_RESPONSE = "no_response"
    HUNG_UP = "hung_up"


class DecisionTier(StrEnum):
    SCRIPT = "script"
    RULE = "rule"
    INTENT = "intent"
    FALLBACK = "fallback"


class Playbook(BaseModel):
    name: str
    start: str


class ScriptStep(BaseModel):
    """The state machine's answer to one event: where it goes and what the agent says."""

    state: str
    text: str
    tier: DecisionTier
    reason: str
    end_call: bool = False
    outcome: Outcome | None = None
    slots: dict[str, str] = {}


def opening(playbook: Playbook, slots: dict[str, str]) -> ScriptStep:
    """The agent's first line: the start state's `say`, rendered with `slots`."""
    raise NotImplementedError


def respond(playbook: Playbook, state: str, slots: dict[str, str], utterance: str) -> ScriptStep:
    """Next step after the caller said `utterance` in `state` (rules, then intent match)."""
    raise NotImplementedError


def respond_dtmf(playbook: Playbook, state: str, slots: dict[str, str], digits: str) -> ScriptStep:
    """Next step after the caller pressed keys."""
    raise NotImplementedError


def reprompt(playbook: Playbook, state: str, slots: dict[str, str], attempt: int) -> ScriptStep:
    """The caller said nothing: attempt 1..max_reprompts re-asks, beyond that a polite goodbye."""
    raise NotImplementedError
