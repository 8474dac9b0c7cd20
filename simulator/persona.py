"""Caller personas: what a simulated caller says, turn by turn, loaded from YAML.

A persona is the caller's half of a test conversation. Each line is one caller turn: spoken after
the agent finishes, spoken over the agent (`interrupt_after_ms`) to exercise barge-in, or left
silent (`silent: true`) to exercise the workflow's no-input reprompt. A `backchannel` line is not
a turn: a short acknowledgement ("uh-huh") said `after_ms` into the agent's next utterance, which
the agent is expected to talk through; the following line answers that same utterance.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slot.yaml_models import YamlModel


class PersonaError(ValueError):
    """A persona file that cannot be used; the message names the file and the field."""


class PersonaLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    say: str = ""
    interrupt_after_ms: int | None = Field(default=None, ge=0)
    silent: bool = False
    backchannel: str = ""
    after_ms: int = Field(default=1000, ge=0)
    """For a backchannel: how far into the agent's utterance it is said."""

    @property
    def text(self) -> str:
        """What the caller says on this line (empty when silent)."""
        return self.backchannel or self.say

    @model_validator(mode="after")
    def _say_or_silent(self) -> PersonaLine:
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


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    phone: str = Field(min_length=1)
    expect_outcome: str | None = None
    lines: tuple[PersonaLine, ...] = Field(min_length=1)

    @property
    def spoken_lines(self) -> list[str]:
        return [line.text for line in self.lines if not line.silent]


_PERSONA = YamlModel(Persona, PersonaError, what="persona")


def parse_persona(data: object, source: str = "<persona>") -> Persona:
    """Validate already-parsed YAML; errors are one line naming `source` and the field."""
    return _PERSONA.validate(data, source)


def load_persona(path: str | Path) -> Persona:
    """Load a persona YAML file; every problem is a `PersonaError` naming the file and field."""
    return _PERSONA.load(path)
