"""Caller persona files: the shipped ones load; broken ones fail naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.persona import (
    Persona,
    PersonaError,
    ReactivePersona,
    load_any_persona,
    load_persona,
    parse_persona,
)
from slot.settings import REPO_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "caller.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_lines_with_interrupt_and_silence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: Ana
phone: "+15550100009"
expect_outcome: booked
lines:
  - say: Hello?
  - say: Yes please.
    interrupt_after_ms: 800
  - silent: true
""",
    )
    persona = load_persona(path)
    assert persona.name == "Ana"
    assert persona.expect_outcome == "booked"
    assert [line.interrupt_after_ms for line in persona.lines] == [None, 800, None]
    assert [line.silent for line in persona.lines] == [False, False, True]
    assert persona.spoken_lines == ["Hello?", "Yes please."]


def test_backchannel_lines_are_said_over_the_agent_and_are_not_turns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: Ana
phone: "+15550100009"
lines:
  - say: Hello?
  - backchannel: Uh-huh.
    after_ms: 900
  - say: Yes please.
""",
    )
    persona = load_persona(path)
    line = persona.lines[1]
    assert line.backchannel == "Uh-huh." and line.after_ms == 900 and line.text == "Uh-huh."
    assert persona.spoken_lines == ["Hello?", "Uh-huh.", "Yes please."]


def test_shipped_personas_load() -> None:
    paths = sorted((REPO_ROOT / "personas").glob("*.yaml"))
    assert paths
    for path in paths:
        persona = load_any_persona(path)
        assert persona.lines if isinstance(persona, Persona) else persona.answers


def test_the_demo_caller_is_reactive_and_books() -> None:
    demo = load_any_persona(REPO_ROOT / "personas" / "demo_caller.yaml")
    assert isinstance(demo, ReactivePersona) and demo.expect_outcome == "booked"
    assert any(r.interrupt_after_ms is not None for rs in demo.answers.values() for r in rs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: A\nlines:\n  - say: hi\n", "phone: Field required"),
        ("name: A\nphone: '+1'\nlines: []\n", "lines: "),
        ("name: A\nphone: '+1'\nlines:\n  - sai: hi\n", "lines[0].sai: Extra inputs"),
        ("name: A\nphone: '+1'\nlines:\n  - say: ''\n", "lines[0]: `say` is required"),
        (
            "name: A\nphone: '+1'\nlines:\n  - say: hi\n  - say: x\n    interrupt_after_ms: soon\n",
            "lines[1].interrupt_after_ms: Input should be a valid integer",
        ),
        (
            "name: A\nphone: '+1'\nlines:\n  - say: hi\n    interrupt_after_ms: -5\n",
            "lines[0].interrupt_after_ms: Input should be greater than or equal to 0",
        ),
        (
            "name: A\nphone: '+1'\nlines:\n  - silent: true\n    say: hi\n",
            "lines[0]: a silent line cannot also `say` something",
        ),
        (
            "name: A\nphone: '+1'\nlines:\n  - backchannel: uh-huh\n    say: hi\n",
            "lines[0]: a backchannel line cannot also `say`, be silent or interrupt",
        ),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "invalid YAML at line"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PersonaError) as caught:
        load_persona(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_a_persona_error(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="cannot read persona file"):
        load_persona(tmp_path / "nope.yaml")


def test_parse_names_the_source() -> None:
    with pytest.raises(PersonaError, match=r"^inline: name: "):
        parse_persona({"name": "", "phone": "+1", "lines": [{"say": "hi"}]}, "inline")
