"""The one YAML-to-model loader behind playbooks and personas."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from simulator.persona import PersonaError, load_persona
from slot.yaml_models import YamlModel, YamlModelError


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    says: list[str]
    polite: bool = False


def test_yes_and_no_stay_words_only_true_and_false_are_booleans(tmp_path: Path) -> None:
    path = tmp_path / "answer.yaml"
    path.write_text("name: no\nsays: [yes, off, On]\npolite: true\n", encoding="utf-8")
    answer = YamlModel(Answer).load(path)
    assert answer == Answer(name="no", says=["yes", "off", "On"], polite=True)


def test_a_caller_can_say_no(tmp_path: Path) -> None:
    path = tmp_path / "caller.yaml"
    path.write_text("name: A\nphone: '+1'\nlines:\n  - say: no\n", encoding="utf-8")
    assert load_persona(path).lines[0].say == "no"


def test_errors_name_the_file_the_field_and_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "answer.yaml"
    path.write_text("name: x\nsays: [fine, {a: b}]\nextra: 1\n", encoding="utf-8")
    with pytest.raises(YamlModelError) as caught:
        YamlModel(Answer).load(path)
    assert str(caught.value) == (
        f"{path}: says[1]: Input should be a valid string (and 1 more problem)"
    )


def test_each_caller_gets_its_own_error_type(tmp_path: Path) -> None:
    path = tmp_path / "caller.yaml"
    path.write_text("just text\n", encoding="utf-8")
    with pytest.raises(PersonaError, match="expected a mapping of persona fields"):
        load_persona(path)
