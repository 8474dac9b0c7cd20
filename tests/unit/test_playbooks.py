"""Loading playbooks: the sample loads; broken ones fail with file, state and field named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from slot.playbooks import PlaybookError, list_playbooks, load_playbook, parse_playbook

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
name: tiny
agent_name: Sam
company: Acme
start: greeting
slots:
  day:
    kind: choice
    choices: {Monday: [mon], Friday: [fri]}
states:
  greeting:
    say: Hi {lead_name}, this is {agent_name}. Want a visit?
    intents:
      - name: yes
        next: ask_day
        examples: ["Yes", "Sure"]
      - name: no
        next: bye
        examples: ["No thanks"]
  ask_day:
    say: Which day?
    collect: day
    next: booked
  booked:
    say: See you {day}.
    outcome: booked
  bye:
    say: Goodbye.
    outcome: not_interested
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_for(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, "broken", text)
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_the_sample_playbook_loads_by_name() -> None:
    playbook = load_playbook("solar_survey", ROOT / "playbooks")
    assert playbook.name == "solar_survey"
    assert playbook.start == "greeting"
    assert "solar_survey" in list_playbooks(ROOT / "playbooks")


def test_a_valid_playbook_loads_by_path_and_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny", VALID)
    playbook = load_playbook(path)
    assert playbook.states["ask_day"].collect == "day"
    assert [i.name for i in playbook.states["greeting"].intents] == ["yes", "no"]
    assert load_playbook("tiny", tmp_path).name == "tiny"
    assert load_playbook(str(path)).name == "tiny"
    assert list_playbooks(tmp_path) == ["tiny"]


def test_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "unnamed", VALID.replace("name: tiny\n", ""))
    assert load_playbook(path).name == "unnamed"


def test_unknown_next_state_names_file_state_and_field(tmp_path: Path) -> None:
    broken = VALID.replace("next: bye", "next: byee")
    assert error_for(tmp_path, broken) == (
        "state 'greeting', field 'intents[1].next': unknown state 'byee'"
    )


def test_unknown_start_state(tmp_path: Path) -> None:
    assert error_for(tmp_path, VALID.replace("start: greeting", "start: hello")) == (
        "field 'start': unknown state 'hello'"
    )


def test_missing_required_field_is_located(tmp_path: Path) -> None:
    broken = VALID.replace('        examples: ["No thanks"]\n', "")
    assert error_for(tmp_path, broken) == (
        "state 'greeting', field 'intents[1].examples': Field required"
    )


def test_misspelled_field_is_rejected(tmp_path: Path) -> None:
    broken = VALID.replace("    collect: day", "    colect: day")
    message = error_for(tmp_path, broken)
    assert message.startswith("state 'ask_day', field 'colect': Extra inputs are not permitted")


def test_unknown_outcome(tmp_path: Path) -> None:
    message = error_for(tmp_path, VALID.replace("outcome: booked", "outcome: bookd"))
    assert message.startswith("state 'booked', field 'outcome': Input should be 'booked'")


def test_unknown_placeholder(tmp_path: Path) -> None:
    message = error_for(tmp_path, VALID.replace("See you {day}.", "See you {dya}."))
    assert message.startswith("state 'booked', field 'say': unknown placeholder '{dya}'")


def test_malformed_placeholder(tmp_path: Path) -> None:
    message = error_for(tmp_path, VALID.replace("See you {day}.", "See you {day.upper}."))
    assert message.startswith("state 'booked', field 'say': placeholder '{day.upper}'")


def test_terminal_state_with_intents(tmp_path: Path) -> None:
    broken = VALID.replace(
        "    outcome: not_interested\n",
        "    outcome: not_interested\n    intents:\n"
        "      - {name: again, next: greeting, examples: [again]}\n",
    )
    assert error_for(tmp_path, broken).startswith(
        "state 'bye', field 'intents': a terminal state (outcome 'not_interested')"
    )


def test_state_with_no_way_out(tmp_path: Path) -> None:
    broken = VALID.replace("    collect: day\n    next: booked\n", "")
    assert error_for(tmp_path, broken).startswith(
        "state 'ask_day', field 'intents': a state without an outcome needs intents"
    )


def test_collect_needs_a_declared_slot_and_a_next(tmp_path: Path) -> None:
    assert error_for(tmp_path, VALID.replace("collect: day", "collect: time")) == (
        "state 'ask_day', field 'collect': unknown slot 'time'"
    )
    assert error_for(tmp_path, VALID.replace("    next: booked\n", "")) == (
        "state 'ask_day', field 'next': required when the state collects a slot"
    )


def test_bad_slot_specs(tmp_path: Path) -> None:
    broken = VALID.replace(
        "    choices: {Monday: [mon], Friday: [fri]}",
        "    choices: {Monday: [mon], Friday: [fri]}\n  code:\n    kind: pattern\n"
        "    pattern: '(\\d+'",
    )
    assert error_for(tmp_path, broken).startswith(
        "slot 'code', field 'pattern': invalid regular expression"
    )
    wrong_kind = VALID.replace("kind: choice", "kind: number")
    assert error_for(tmp_path, wrong_kind).startswith("slot 'day', field 'kind': Input should be")


def test_unreachable_state(tmp_path: Path) -> None:
    broken = VALID + "  orphan:\n    say: Nobody gets here.\n    outcome: booked\n"
    assert error_for(tmp_path, broken) == (
        "state 'orphan': unreachable from the start state 'greeting'"
    )


def test_invalid_yaml_and_wrong_shapes(tmp_path: Path) -> None:
    assert error_for(tmp_path, "name: [unclosed\n").startswith("invalid YAML at line")
    assert error_for(tmp_path, "- a list\n") == (
        "expected a mapping of playbook fields at the top level"
    )


def test_several_problems_are_counted_on_one_line(tmp_path: Path) -> None:
    message = error_for(tmp_path, "name: x\n")
    assert message.startswith("field 'start': Field required (and 1 more problem)")


def test_names_from_requests_cannot_escape_the_folder(tmp_path: Path) -> None:
    write(tmp_path, "tiny", VALID)
    with pytest.raises(PlaybookError, match=r"invalid playbook name '\.\./tiny'"):
        load_playbook("../tiny", tmp_path)
    with pytest.raises(PlaybookError, match=r"unknown playbook 'nope' .*available: tiny"):
        load_playbook("nope", tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="cannot read"):
        load_playbook(tmp_path / "absent.yaml")


def test_parse_playbook_names_its_source() -> None:
    with pytest.raises(PlaybookError, match=r"^inline: field 'start'"):
        parse_playbook(VALID.replace("start: greeting", "start: nowhere"), "inline")


def test_understanding_fields_load(tmp_path: Path) -> None:
    """yes/no intents, a rephrased question, on_confusion and the new slot kinds."""
    text = (
        VALID.replace(
            "    say: Hi {lead_name}, this is {agent_name}. Want a visit?\n",
            "    say: Hi {lead_name}, this is {agent_name}. Want a visit?\n"
            "    rephrase: Shall we visit, yes or no?\n    yes: 'yes'\n    no: 'no'\n",
        )
        .replace("    kind: choice\n", "    kind: weekday\n")
        .replace("start: greeting\n", "start: greeting\non_confusion: bye\n")
    )
    playbook = load_playbook(write(tmp_path, "tiny", text))
    greeting = playbook.states["greeting"]
    assert (greeting.yes, greeting.no) == ("yes", "no")
    assert greeting.rephrase == "Shall we visit, yes or no?"
    assert playbook.on_confusion == "bye"
    assert playbook.slots["day"].kind == "weekday"


def test_yes_must_name_an_intent_of_the_state(tmp_path: Path) -> None:
    broken = VALID.replace(
        "    intents:\n      - name: yes\n", "    yes: agree\n    intents:\n      - name: yes\n"
    )
    message = error_for(tmp_path, broken)
    assert message.startswith("state 'greeting', field 'yes': unknown intent 'agree'")


def test_on_confusion_must_be_a_state(tmp_path: Path) -> None:
    broken = VALID.replace("start: greeting\n", "start: greeting\non_confusion: human\n")
    assert error_for(tmp_path, broken) == "field 'on_confusion': unknown state 'human'"


def test_a_states_on_confusion_must_be_another_state(tmp_path: Path) -> None:
    unknown = VALID.replace("    collect: day\n", "    collect: day\n    on_confusion: human\n")
    message = error_for(tmp_path, unknown)
    assert message == "state 'ask_day', field 'on_confusion': unknown state 'human'"
    itself = VALID.replace("    collect: day\n", "    collect: day\n    on_confusion: ask_day\n")
    assert error_for(tmp_path, itself).startswith("state 'ask_day', field 'on_confusion': a state")
    moves_on = VALID.replace("    collect: day\n", "    collect: day\n    on_confusion: bye\n")
    assert load_playbook(write(tmp_path, "tiny", moves_on)).states["ask_day"].on_confusion == "bye"


def test_rephrase_placeholders_are_checked(tmp_path: Path) -> None:
    broken = VALID.replace("    collect: day\n", "    rephrase: Is {dya} good?\n    collect: day\n")
    message = error_for(tmp_path, broken)
    assert message.startswith("state 'ask_day', field 'rephrase': unknown placeholder '{dya}'")


def test_a_weekday_slot_holds_weekdays(tmp_path: Path) -> None:
    broken = VALID.replace("    kind: choice\n", "    kind: weekday\n").replace(
        "Friday: [fri]", "Someday: [soon]"
    )
    message = error_for(tmp_path, broken)
    assert message.startswith("slot 'day', field 'choices': a weekday slot's values are among")


def test_terminal_states_cannot_have_yes_or_rephrase(tmp_path: Path) -> None:
    broken = VALID.replace("    outcome: booked\n", "    outcome: booked\n    rephrase: Again?\n")
    message = error_for(tmp_path, broken)
    assert message.startswith("state 'booked', field 'rephrase': a terminal state")


def test_voicemail_policy_loads_and_is_checked(tmp_path: Path) -> None:
    """An answering machine: leave a message (which needs one) or hang up (which has none)."""
    leave = "start: greeting\nvoicemail:\n  action: leave_message\n  message: Hi {lead_name}.\n"
    playbook = load_playbook(write(tmp_path, "leave", VALID.replace("start: greeting\n", leave)))
    assert playbook.voicemail is not None and playbook.voicemail.action == "leave_message"
    hang_up = "start: greeting\nvoicemail: {action: hang_up}\n"
    assert load_playbook(write(tmp_path, "hang", VALID.replace("start: greeting\n", hang_up)))

    no_message = VALID.replace(
        "start: greeting\n", "start: greeting\nvoicemail:\n  action: leave_message\n"
    )
    assert error_for(tmp_path, no_message) == (
        "field 'voicemail.message': required when the action is 'leave_message'"
    )
    extra = "start: greeting\nvoicemail: {action: hang_up, message: Hi.}\n"
    assert error_for(tmp_path, VALID.replace("start: greeting\n", extra)) == (
        "field 'voicemail.message': only used when the action is 'leave_message'"
    )
    typo = leave.replace("{lead_name}", "{lead}")
    message = error_for(tmp_path, VALID.replace("start: greeting\n", typo))
    assert message.startswith("field 'voicemail.message': unknown placeholder '{lead}'")
    unknown = "start: greeting\nvoicemail: {action: ring_back}\n"
    message = error_for(tmp_path, VALID.replace("start: greeting\n", unknown))
    assert message.startswith("field 'voicemail.action': Input should be 'leave_message' or")
