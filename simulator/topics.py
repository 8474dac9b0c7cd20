"""Which topic a reactive caller hears in each script state, per playbook.

A reactive persona's replies are grouped by topic (personas/README.md), not by the playbook's
state names, so personas are written without knowing the playbook. This map, kept with the
simulator, is the one place that knows both: states not listed are topic `other`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from simulator.persona import Topic
from slot.playbooks import load_playbook
from workflows.script import Outcome, Playbook

TOPIC_MAPS: Mapping[str, Mapping[str, Topic]] = {
    "solar_survey": {
        "greeting": "identity",
        "homeowner": "homeowner",
        "check_renting": "homeowner",
        "pitch": "interest",
        "cost": "interest",
        "follow_up": "interest",
        "qualify": "bill",
        "ask_day": "day",
        "ask_time": "time",
        "confirm": "confirm",
    },
}
_OUTCOMES = frozenset(outcome.value for outcome in Outcome)


@dataclass(frozen=True)
class ScriptTopics:
    """A playbook from the caller's side: a state's topic, and whether its line ends the call."""

    playbook: Playbook
    topics: Mapping[str, Topic]

    def topic(self, state: str) -> Topic:
        return self.topics.get(state, "other")

    def ends_call(self, state: str) -> bool:
        """The agent's line in `state` is its last (a terminal state, or a built-in goodbye)."""
        known = self.playbook.states.get(state)
        if known is not None:
            return known.terminal
        return state in _OUTCOMES


def script_topics(script: str, folder: Path | str | None = None) -> ScriptTopics:
    """The topic map of playbook `script` (every state is `other` for a playbook not mapped)."""
    playbook = load_playbook(script, folder)
    return ScriptTopics(playbook, TOPIC_MAPS.get(playbook.name, {}))
