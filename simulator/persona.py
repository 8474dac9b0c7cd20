"""Caller personas: what a simulated caller says, loaded from YAML.

Two kinds. A linear `Persona` (the tests' and scenario files) says a fixed list of lines, turn by
turn. A `ReactivePersona` (personas/dev, personas/heldout; format in personas/README.md) answers
the question the agent is asking: its replies are grouped by topic, and `simulator.reactive`
picks the next one from the agent's script state.

In a linear persona each line is one caller turn: spoken after
the agent finishes, spoken over the agent (`interrupt_after_ms`) to exercise barge-in, left
silent (`silent: true`) to exercise the workflow's no-input reprompt, or keys pressed on the
phone (`press: "0"`, sent as Twilio's `dtmf` messages). A persona with `machine` is an answering
machine: it plays its greeting and a beep, Twilio's machine detection reports it, and it records
what the agent says after the beep. A `backchannel` line is not
a turn: a short acknowledgement ("uh-huh") said `after_ms` into the agent's next utterance, which
the agent is expected to talk through; the following line answers that same utterance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slot.yaml_models import YamlModel


class PersonaError(ValueError):
    """A persona file that cannot be used; the message names the file and the field."""


class PersonaLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    say: str = ""
    press: str = Field(default="", pattern=r"^[0-9*#]*$")
    """DTMF keys pressed after the agent finishes (instead of speaking)."""
    interrupt_after_ms: int | None = Field(default=None, ge=0)
    silent: bool = False
    backchannel: str = ""
    after_ms: int = Field(default=1000, ge=0)
    """For a backchannel: how far into the agent's utterance it is said."""

    @property
    def text(self) -> str:
        """What the caller says on this line (empty when silent or pressing keys)."""
        return self.backchannel or self.say

    @property
    def spoken(self) -> bool:
        return not self.silent and not self.press

    @model_validator(mode="after")
    def _say_or_silent(self) -> PersonaLine:
        if self.press:
            if self.say.strip() or self.silent or self.backchannel.strip():
                raise ValueError("a `press` line cannot also `say`, be silent or backchannel")
            if self.interrupt_after_ms is not None:
                raise ValueError("a `press` line waits for the agent; it cannot interrupt")
            return self
        if self.backchannel.strip():
            if self.say.strip() or self.silent or self.interrupt_after_ms is not None:
                raise ValueError("a backchannel line cannot also `say`, be silent or interrupt")
            return self
        if self.silent and self.say.strip():
            raise ValueError("a silent line cannot also `say` something")
        if not self.silent and not self.say.strip():
            raise ValueError("`say` is required unless the line is `silent: true`")
        if self.silent and self.interrupt_after_ms is not None:
            raise ValueError("a silent line cannot interrupt the agent")
        return self


MachineResult = Literal["machine_end_beep", "machine_end_silence", "machine_end_other"]


class AnsweringMachine(BaseModel):
    """A voicemail box: its greeting, the beep, then it records for `record_ms`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: str = Field(min_length=1)
    beep_ms: int = Field(default=500, ge=100, le=2000)
    record_ms: int = Field(default=20_000, ge=1000)
    answered_by: MachineResult = "machine_end_beep"
    """What Twilio's detection reports once the greeting (and beep) is over."""


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    phone: str = Field(min_length=1)
    expect_outcome: str | None = None
    lines: tuple[PersonaLine, ...] = ()
    machine: AnsweringMachine | None = None
    """An answering machine answers instead of a person (then `lines` stay empty)."""

    @model_validator(mode="after")
    def _person_or_machine(self) -> Persona:
        if self.machine is None and not self.lines:
            raise ValueError("lines: at least one line is needed (or the persona is a `machine`)")
        if self.machine is not None and self.lines:
            raise ValueError("an answering machine (`machine`) says no `lines`")
        return self

    @property
    def spoken_lines(self) -> list[str]:
        if self.machine is not None:
            return [self.machine.greeting]
        return [line.text for line in self.lines if line.spoken]


_PERSONA = YamlModel(Persona, PersonaError, what="persona")


def parse_persona(data: object, source: str = "<persona>") -> Persona:
    """Validate already-parsed YAML; errors are one line naming `source` and the field."""
    return _PERSONA.validate(data, source)


def load_persona(path: str | Path) -> Persona:
    """Load a persona YAML file; every problem is a `PersonaError` naming the file and field."""
    return _PERSONA.load(path)


# ---- reactive personas ------------------------------------------------------------------------

Topic = Literal["identity", "homeowner", "interest", "bill", "day", "time", "confirm", "other"]
TOPICS: tuple[Topic, ...] = get_args(Topic)
VoiceName = Literal["piper_slow", "piper_fast", "espeak_f3", "espeak_m3", "espeak_f5"]
"""The named caller voices (simulator.caller_voice implements them)."""
VOICE_NAMES: tuple[VoiceName, ...] = get_args(VoiceName)
PAUSE = re.compile(r"\s*(?:\.\.\.|\u2026)\s*")
"""A `...` (or `…`) in a reply: the caller stops mid-sentence for `pause_ms`."""


class Reply(BaseModel):
    """One way a reactive caller answers a topic; plain text in YAML is `say` alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    say: str = ""
    pause_ms: int = Field(default=800, ge=0)
    """Silence at each `...` in `say`."""
    interrupt_after_ms: int | None = Field(default=None, ge=0)
    """Say it over the agent's question, this far into it, instead of waiting for the end."""
    resume_on_agent_ms: int | None = Field(default=None, ge=0)
    """At the first `...`, wait instead for the agent to start replying and go on this far into
    its reply: a caller the agent answered too soon, whatever the edge's speed (tests)."""
    backchannel: str = ""
    """A short acknowledgement said `after_ms` into the agent's question; not a turn."""
    after_ms: int = Field(default=1000, ge=0)
    hang_up: bool = False
    """Hang up after saying `say` (or at once, when there is nothing to say)."""

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, data: Any) -> Any:
        return {"say": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _says_something(self) -> Reply:
        if not self.say.strip() and not self.hang_up:
            raise ValueError("`say` is required unless the reply is `hang_up: true`")
        if self.backchannel.strip() and self.interrupt_after_ms is not None:
            raise ValueError("a reply cannot both backchannel and interrupt the agent")
        if self.resume_on_agent_ms is not None and len(self.segments) < 2:
            raise ValueError("`resume_on_agent_ms` needs a `...` in `say` to resume after")
        if self.resume_on_agent_ms is not None and self.interrupt_after_ms is not None:
            raise ValueError("a reply cannot both interrupt the agent and resume over it")
        return self

    @property
    def segments(self) -> list[str]:
        """`say` split at its `...` pauses: the stretches of speech, in order."""
        return [part for part in PAUSE.split(self.say.strip()) if part.strip(" ,.")]

    @property
    def resumed(self) -> tuple[str, str]:
        """`say` before its first `...`, and after it (`resume_on_agent_ms`)."""
        first, rest = PAUSE.split(self.say.strip(), maxsplit=1)
        return first, rest

    @property
    def texts(self) -> list[str]:
        """Everything this reply says aloud (backchannel first)."""
        return [text for text in (self.backchannel.strip(), self.say.strip()) if text]


class ReactivePersona(BaseModel):
    """A caller who answers the question the agent is asking (personas/README.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    phone: str = Field(min_length=1)
    expect_outcome: str | None = None
    voice: VoiceName = "piper_slow"
    about: str = ""
    answers: dict[Topic, tuple[Reply, ...]]

    @model_validator(mode="after")
    def _has_replies(self) -> ReactivePersona:
        empty = [topic for topic, replies in self.answers.items() if not replies]
        if empty:
            raise ValueError(f"topic {empty[0]!r} has no replies")
        if not self.answers:
            raise ValueError("`answers` needs at least one topic")
        return self

    @property
    def spoken_lines(self) -> list[str]:
        """Every text this caller may say (for synthesis ahead of the call and corpus checks)."""
        return [text for replies in self.answers.values() for r in replies for text in r.texts]


_REACTIVE = YamlModel(ReactivePersona, PersonaError, what="persona")
_ANSWERS = re.compile(r"^answers\s*:", re.MULTILINE)

AnyPersona = Persona | ReactivePersona


def parse_reactive_persona(data: object, source: str = "<persona>") -> ReactivePersona:
    return _REACTIVE.validate(data, source)


def load_reactive_persona(path: str | Path) -> ReactivePersona:
    return _REACTIVE.load(path)


def load_any_persona(path: str | Path) -> AnyPersona:
    """A persona file of either kind: reactive when it has `answers`, linear otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return _PERSONA.load(path)  # the loader's own error names the file
    return _REACTIVE.load(path) if _ANSWERS.search(text) else _PERSONA.load(path)
