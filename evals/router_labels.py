"""What each labelled caller utterance should make the router do, for `slot eval router`.

Two label formats feed it. `data/router/dev_playbook.yaml` names the playbook's state and intent
directly (`intent: null` is a turn no intent covers). `dev_callers.yaml` and
`heldout_callers.yaml` were written blind from the business description, so they speak of a
`topic` (the question being asked) and what the caller `means` (and a `value`); the tables here
map them onto the sample playbook: topic -> state, and means -> the intent, slot value or rule
the right decision takes. "pass" means no intent or slot should be taken (a question the
knowledge base or LLM answers, or a clarification).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

DATA = Path(__file__).parent / "data" / "router"
DEV_PLAYBOOK = DATA / "dev_playbook.yaml"
DEV_CALLERS = DATA / "dev_callers.yaml"
DEV_CALLERS2 = DATA / "dev_callers2.yaml"
"""A second dev round (session 11), longer and less direct; it found the readings of
understanding-v5."""
DEV_CALLERS3 = DATA / "dev_callers3.yaml"
"""A third dev round (session 13), written blind from BUSINESS.md; it found the readings of
understanding-v6."""
HELDOUT_CALLERS = DATA / "heldout_callers.yaml"
BEFORE_PLAYBOOK = DATA / "solar_survey_before.yaml"
"""The sample playbook before issue 8: the "before" figures run the old router on it."""

TOPIC_STATES: dict[str, tuple[str, ...]] = {
    "identity": ("greeting",),
    "homeowner": ("homeowner",),
    "interest": ("pitch", "cost"),
    "bill": ("qualify",),
    "day": ("ask_day",),
    "time": ("ask_time",),
    "confirm": ("confirm",),
    "follow_up": ("follow_up",),
}
"""The state(s) whose question a topic answers (plan.md's map for solar_survey)."""

Kind = Literal["intent", "slot", "outcome", "pass"]


@dataclass(frozen=True)
class Expected:
    kind: Kind
    name: str = ""
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "slot":
            return f"{self.name}={self.value}"
        return self.name if self.kind != "pass" else "pass"


PASS = Expected("pass")


def _intent(name: str) -> Expected:
    return Expected("intent", name)


_ANY_STATE: dict[str, Expected] = {
    "yes_its_me": _intent("confirm_identity"),
    "wrong_person": _intent("wrong_person"),
    "not_available": _intent("not_available"),
    "question": PASS,
    "call_back_later": _intent("call_back_later"),
    "do_not_call": Expected("outcome", "do_not_call"),
    "not_interested": _intent("not_interested"),
    "talk_to_person": _intent("talk_to_person"),
    "owns": _intent("owns_home"),
    "rents": _intent("rents"),
    "unsure": _intent("unsure"),
    "none_work": _intent("no_day_works"),
    "either": _intent("either"),
    "change": _intent("change"),
}
_BY_STATE: dict[tuple[str, str], Expected] = {
    ("yes", "pitch"): _intent("interested"),
    ("yes", "cost"): _intent("interested"),
    ("yes", "confirm"): _intent("confirmed"),
    ("yes", "follow_up"): _intent("has_time"),
    ("no", "pitch"): _intent("not_interested"),
    ("no", "cost"): _intent("not_interested"),
    ("no", "confirm"): _intent("change"),
    ("no", "follow_up"): _intent("call_back_later"),
    ("cost_question", "pitch"): _intent("asks_cost"),
    ("cost_question", "cost"): PASS,
}
_SLOTS = {"amount": "monthly_bill", "day": "survey_day", "morning": "survey_time"}


def expected_for(means: str, state: str, value: Any = None) -> Expected:
    """The right decision for a caller who `means` this in `state`."""
    if (means, state) in _BY_STATE:
        return _BY_STATE[(means, state)]
    if means in _ANY_STATE:
        return _ANY_STATE[means]
    if means in ("morning", "afternoon"):
        return Expected("slot", "survey_time", means)
    if means in _SLOTS:
        return Expected("slot", _SLOTS[means], str(value))
    raise ValueError(f"no mapping for means '{means}' in state '{state}'")


@dataclass(frozen=True)
class Case:
    """One utterance said in one state, and the decision it should get."""

    state: str
    text: str
    expected: Expected
    topic: str


def load_cases(path: Path) -> list[Case]:
    """Cases from either label format (state/intent, or topic/means/value)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases: list[Case] = []
    for item in data["utterances"]:
        if "state" in item:
            intent = item.get("intent")
            expected = _intent(intent) if intent else PASS
            cases.append(Case(item["state"], item["text"], expected, item["state"]))
            continue
        for state in TOPIC_STATES[item["topic"]]:
            expected = expected_for(str(item["means"]), state, item.get("value"))
            cases.append(Case(state, item["text"], expected, item["topic"]))
    return cases
