"""What the persona corpus' callers say, line by line, for the audio evals (`turns`, `stt`).

Reads the reactive personas' `answers` (personas/README.md) straight from the YAML: each reply's
`say` (with its `...` pauses), its `backchannel`, whether it is said over the agent
(`interrupt_after_ms`), the persona's voice, and the playbook state whose question it answers
(topic -> state as the simulator maps them). The dev and held-out folders stay apart: a line
from personas/heldout/ is only ever used to report.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from simulator.topics import TOPIC_MAPS
from slot.settings import REPO_ROOT
from workflows.expectations import ExpectedAnswer, expected_answer
from workflows.script import Playbook, render

Split = Literal["dev", "heldout"]
SPLITS: tuple[Split, ...] = ("dev", "heldout")
PERSONAS_DIR = REPO_ROOT / "personas"

TOPIC_STATES: dict[str, str] = {}
for _state, _topic in TOPIC_MAPS["solar_survey"].items():
    TOPIC_STATES.setdefault(_topic, _state)
"""The playbook state whose question a topic answers: the first state the simulator maps to it
(solar_survey; `interest` is first asked in `pitch`). `other` has no state of its own."""
QUESTION_STATES = tuple(dict.fromkeys(TOPIC_STATES.values()))

PAUSE = re.compile(r"\s*(?:\.\.\.|…)\s*")


@dataclass(frozen=True)
class PersonaLine:
    """One thing a persona says: a reply (`say`) or a backchannel."""

    split: Split
    persona: str
    name: str
    """The persona's first name (the lead the agent asks for)."""
    voice: str
    topic: str
    state: str
    """The state whose question this answers (`other`: a state chosen by a seeded draw)."""
    text: str
    """As written, with `...` where the caller pauses."""
    kind: Literal["reply", "backchannel"] = "reply"
    interrupts: bool = False
    """Said over the agent (`interrupt_after_ms`)."""

    @property
    def parts(self) -> list[str]:
        """The stretches of speech between the `...` pauses."""
        return [p for p in PAUSE.split(self.text) if p.strip()]

    @property
    def words(self) -> str:
        """What is said, without the pause marks (the reference transcript)."""
        return " ".join(self.parts)


def _state_for(topic: str, persona: str, text: str) -> str:
    state = TOPIC_STATES.get(topic)
    if state is not None:
        return state
    draw = zlib.crc32(f"{persona}\n{text}".encode()) % len(QUESTION_STATES)
    return QUESTION_STATES[draw]


def persona_lines(split: Split, folder: Path | None = None) -> list[PersonaLine]:
    """Every reply and backchannel of the split's personas, in file and answer order."""
    lines: list[PersonaLine] = []
    for path in sorted((folder or PERSONAS_DIR / split).glob("*.yaml")):
        data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        persona, voice = path.stem, str(data.get("voice") or "piper_slow")
        name = str(data.get("name") or "")
        for topic, replies in (data.get("answers") or {}).items():
            for reply in replies or []:
                item = {"say": reply} if isinstance(reply, str) else dict(reply)
                if item.get("backchannel"):
                    text = str(item["backchannel"])
                    state = _state_for(str(topic), persona, text)
                    lines.append(
                        PersonaLine(
                            split, persona, name, voice, str(topic), state, text, "backchannel"
                        )
                    )
                if item.get("say"):
                    text = str(item["say"])
                    lines.append(
                        PersonaLine(
                            split,
                            persona,
                            name,
                            voice,
                            str(topic),
                            _state_for(str(topic), persona, text),
                            text,
                            interrupts="interrupt_after_ms" in item,
                        )
                    )
    return lines


def text_key(text: str) -> str:
    """Lines that differ only in case, punctuation or pauses are the same text."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def state_question(playbook: Playbook, state: str, lead_name: str = "") -> str:
    """The agent's line in `state` as said to `lead_name` (other slots at their defaults): the
    question the caller answers."""
    return render(playbook, playbook.states[state].say, {"lead_name": lead_name})


def expected_answers(playbook: Playbook, lead_name: str = "") -> dict[str, ExpectedAnswer]:
    """What an answer to each question state looks like (workflows.expectations)."""
    found = {}
    for state in QUESTION_STATES:
        question = state_question(playbook, state, lead_name)
        expect = expected_answer(playbook, state, question)
        if expect is not None:
            found[state] = expect
    return found


def sample_playbook() -> Playbook:
    """The playbook the corpus was written for (the topic -> state map is for it)."""
    from slot.playbooks import load_playbook

    return load_playbook(REPO_ROOT / "playbooks" / "solar_survey.yaml")
