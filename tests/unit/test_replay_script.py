"""`slot replay script` on the recorded corpus: the playbook the calls were made with reproduces
their script decisions; an edited line or an added example shows exactly that difference, in
the terminal diff and the JSON; a broken playbook or router config exits 1 with its message and
an empty folder exits 2.

The classifier and the knowledge base are the real ones (the knowledge folder ingested into a
local Qdrant under the test's temporary folder), as the worker runs them.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.intent_classifier import shared_classifier
from activities.knowledge_base import KnowledgeBase
from activities.records import RecordsActivities, SaveCallRecord
from slot import cli
from slot.payload_codec import Keyring
from slot.replay import CORPUS_DIR as RECORDED_CORPUS
from slot.replay_script import InProcessTools, main
from slot.settings import Settings
from slot.stored_calls import calls_from_records, load_calls
from workflows.messages import CallSnapshot
from workflows.script import Playbook

SCRIPT_TIERS = {"script", "rule", "intent"}
TOOL_TIERS = {"classifier", "knowledge", "llm", "fallback"}
"""Tiers whose decisions depend on the router's tools (classifier, knowledge base, LLM)."""
PRE_ROUTER = "pre_router_call.json"
"""Recorded before the router's patch: its token-matcher turns are now decided by another tier."""
LLM_VARIABLES = ("LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "GROQ_API_KEY", "ANTHROPIC_API_KEY")
NEW_QUALIFY = "Lovely. Roughly what do you spend on electricity in a month?"


def _corpus_of_one_playbook() -> Path:
    """The recorded corpus without the histories recorded after the playbook changed (they
    snapshot a newer playbook): these tests replay every call with one playbook."""
    folder = Path(tempfile.mkdtemp(prefix="replay-script-corpus-"))
    shutil.copytree(RECORDED_CORPUS, folder, dirs_exist_ok=True)
    first = next(c for c in load_calls(folder) if c.source == "booked.json").call.playbook
    for stored in load_calls(folder):
        if stored.call.playbook != first:
            for source in [stored.source, *stored.later_runs]:
                (folder / source).unlink()
    return folder


CORPUS_DIR = _corpus_of_one_playbook()


@pytest.fixture(scope="module")
def recorded_playbook() -> dict[str, Any]:
    """The playbook the corpus' calls were made with (each history snapshots it)."""
    playbooks = {c.call.playbook.model_dump_json() for c in load_calls(CORPUS_DIR)}
    assert len(playbooks) == 1, "the corpus was recorded with one playbook"
    playbook = json.loads(playbooks.pop())
    assert isinstance(playbook, dict)
    return playbook


Run = Callable[..., tuple[int, str, dict[str, Any]]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, knowledge: KnowledgeBase) -> Run:
    """`slot replay script` in-process: exit status, terminal output, JSON. One set of tools
    for every run, as one process replaying several variants has."""
    folder = tmp_path_factory.mktemp("replay-script")
    settings = Settings(data_dir=folder)
    tools = InProcessTools(shared_classifier(), lambda: knowledge)
    runs = iter(range(1_000))

    def replay(playbook: dict[str, Any], *, llm: bool = False, **options: Any) -> Any:
        number = next(runs)
        path = folder / f"playbook-{number}.yaml"
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        json_out = folder / f"result-{number}.json"
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as env:
            for name in LLM_VARIABLES:  # --llm replays recorded answers, never a real LLM here
                env.delenv(name, raising=False)
            status = main(
                settings,
                playbook=str(path),
                router_config=options.get("router_config"),
                calls=options.get("calls", CORPUS_DIR),
                since=None,
                json_out=json_out,
                llm=llm,
                out=out,
                tools=tools,
            )
        result = json.loads(json_out.read_text()) if json_out.exists() else {}
        return status, out.getvalue(), result

    return replay


@pytest.fixture(scope="module")
def baseline(run: Run, recorded_playbook: dict[str, Any]) -> dict[str, Any]:
    status, _, result = run(recorded_playbook)
    assert status == 0
    return result


def turns(result: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(c["source"], t["turn"]): t for c in result["calls"] for t in c["turns"]}


def test_the_recorded_playbook_reproduces_the_scripts_own_decisions(
    baseline: dict[str, Any],
) -> None:
    """Until a turn the router's tools decide differently moves a call elsewhere (no LLM here,
    a knowledge answer instead of the LLM's), every turn lands where it did; the script's own
    decisions are the same line in the same state."""
    calls = baseline["calls"]
    assert len(calls) == len(load_calls(CORPUS_DIR)) == 29
    checked = 0
    for call in calls:
        source = call["source"]
        for turn in call["turns"]:
            was, now, number = turn["was"], turn["now"], turn["turn"]
            assert now is not None, f"{source} turn {number}: the call ended before it"
            if turn["changed"]:
                assert was["tier"] in TOOL_TIERS, (source, number, now)
            if was["tier"] in SCRIPT_TIERS:
                checked += 1
                assert not turn["changed"], (source, number, now)
                assert (now["state"], now["text"]) == (was["state"], was["text"])
            if now["state"] != was["state"]:
                break  # the call is elsewhere now: later turns answer other questions
    assert checked >= 50
    assert baseline["summary"]["outcomes_changed"] == 0
    assert all(c["outcome"]["was"] == c["outcome"]["now"] for c in calls)
    retiered = [t for c in calls for t in c["turns"] if t["tier_changed"] and not t["changed"]]
    assert baseline["summary"]["turns_decided_by_another_tier"] == len(retiered)
    pre_router = next(c for c in calls if c["source"] == PRE_ROUTER)
    assert pre_router["turns"][1]["tier_changed"], "the token matcher decided it then"


def test_with_llm_the_recorded_llm_answers_are_replayed_through_the_script(
    run: Run, recorded_playbook: dict[str, Any], baseline: dict[str, Any]
) -> None:
    status, text, result = run(recorded_playbook, llm=True)
    assert status == 0
    llm_turns = [t for t in turns(result).values() if t["was"]["tier"] == "llm"]
    assert len(llm_turns) >= 8
    for turn in llm_turns:
        now, was = turn["now"], turn["was"]
        assert (now["state"], now["text"], now["tier"]) == (was["state"], was["text"], "llm")
    without = [t for t in turns(baseline).values() if t["was"]["tier"] == "llm"]
    assert all(t["now"]["tier"] != "llm" for t in without), "without --llm nothing is tier 2"
    asked = [t for t in turns(result).values() if t["was"]["tier"] == "knowledge"]
    assert asked and all(t["now"]["text"] == "LLM would answer" for t in asked)
    assert "LLM would answer" in text
    assert result["notes"][0].startswith("--llm without an LLM configured")


def test_an_edited_line_shows_exactly_where_it_is_said(
    run: Run, recorded_playbook: dict[str, Any], baseline: dict[str, Any]
) -> None:
    playbook = json.loads(json.dumps(recorded_playbook))
    old = playbook["states"]["qualify"]["say"]
    playbook["states"]["qualify"]["say"] = NEW_QUALIFY
    status, text, result = run(playbook)
    assert status == 0

    before, after = turns(baseline), turns(result)
    edited = []
    for key, turn in after.items():
        expected = before[key]["now"]["text"].replace(old, NEW_QUALIFY)
        assert turn["now"]["text"] == expected, key
        assert turn["now"]["state"] == before[key]["now"]["state"], key
        if expected != before[key]["now"]["text"]:
            edited.append(key)
            assert turn["changed"], key
    assert len(edited) >= 6
    assert {c["source"] for c in result["calls"] if c["changed"]} >= {s for s, _ in edited}
    assert result["summary"]["outcomes_changed"] == 0
    tier = after[("booked.json", 3)]["now"]["tier"]
    assert f'    now qualify "{NEW_QUALIFY}" ({tier})' in text
    assert f'    was qualify "{old}" (classifier)' in text
    assert "call booked (booked.json)" in text
    assert 'turn 3: caller said "Sure, that sounds good.":' in text


def test_an_added_example_turns_a_fallback_into_an_intent_and_changes_the_outcome(
    run: Run, recorded_playbook: dict[str, Any], baseline: dict[str, Any]
) -> None:
    playbook = json.loads(json.dumps(recorded_playbook))
    playbook["states"]["pitch"]["intents"].append(
        {"name": "not_interested", "examples": ["Favourite colour?"], "next": "not_interested"}
    )
    status, text, result = run(playbook)
    assert status == 0

    flipped = "token_match_then_nothing_answers.json"
    call = next(c for c in result["calls"] if c["source"] == flipped)
    turn = call["turns"][3]
    assert turn["text"] == "What's your favourite colour?"
    assert turn["was"]["tier"] == "fallback"
    assert turn["now"]["state"] == "not_interested"
    assert turn["now"]["tier"] != "fallback"
    assert turn["changed"]
    assert call["outcome"] == {"was": "hung_up", "now": "not_interested"}
    assert call["ended_now"] == "agent ended the call"

    def said(turn: dict[str, Any]) -> tuple[str, str] | None:
        now = turn["now"]
        return None if now is None else (now["state"], now["text"])

    before, after = turns(baseline), turns(result)
    moved = {source for (source, n), t in after.items() if said(before[(source, n)]) != said(t)}
    assert moved == {flipped}, "the added example moves that call's turn and no other"
    assert result["summary"]["outcomes_changed"] == 1
    assert "call token_match_then_nothing_answers (token_match_then_nothing_answers.json)" in text
    assert '  turn 3: caller said "What\'s your favourite colour?":' in text
    assert '    was pitch "Sorry, could you say that again?" (fallback)' in text
    assert "  outcome was hung_up -> now not_interested; agent ended the call" in text
    changed = result["summary"]["changed"]
    assert text.splitlines()[-1].startswith(f"29 calls, {changed} changed, outcomes changed 1")


def test_a_new_state_before_the_goodbye_leaves_the_call_open_where_the_caller_stopped(
    run: Run, recorded_playbook: dict[str, Any], tmp_path: Path
) -> None:
    """A second chance before "not interested": the recorded caller never heard that question,
    so the call is left open there, and its outcome is gone."""
    calls = tmp_path / "calls"
    calls.mkdir()
    (calls / "not_interested.json").write_bytes((CORPUS_DIR / "not_interested.json").read_bytes())
    playbook = json.loads(json.dumps(recorded_playbook))
    playbook["states"]["pitch"]["intents"].append(
        {
            "name": "not_interested",
            "examples": ["No thanks, I'm not interested."],
            "next": "soft_close",
        }
    )
    playbook["states"]["soft_close"] = {
        "say": "Could I at least send you a free estimate?",
        "intents": [{"name": "no", "examples": ["No."], "next": "not_interested"}],
    }
    status, text, result = run(playbook, calls=calls)
    assert status == 0
    (call,) = result["calls"]
    assert call["turns"][3]["now"]["state"] == "soft_close"
    assert call["outcome"] == {"was": "not_interested", "now": None}
    assert call["ended_now"] == (
        "still open in state 'soft_close': the recorded caller said no more"
    )
    assert "  outcome was not_interested -> now none; still open in state 'soft_close'" in text
    assert text.splitlines()[-1].startswith("1 call, 1 changed, outcomes changed 1")


def test_silences_are_replayed_as_reprompts(
    run: Run, recorded_playbook: dict[str, Any], tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    for name in ("silent_then_answers.json", "silent_caller_released.json"):
        (calls / name).write_bytes((CORPUS_DIR / name).read_bytes())
    playbook = json.loads(json.dumps(recorded_playbook))
    playbook["states"]["greeting"]["reprompt"] = "Hello, are you there?"
    status, text, result = run(playbook, calls=calls)
    assert status == 0
    silences = [t for c in result["calls"] for t in c["turns"] if t["kind"] == "silence"]
    reprompts = [t for t in silences if not t["now"]["end_call"]]
    assert len(reprompts) == 3 and all(t["changed"] for t in reprompts)
    assert all(t["now"]["text"] == "Hello, are you there?" for t in reprompts)
    goodbye = next(t for t in silences if t["now"]["end_call"])
    assert not goodbye["changed"] and goodbye["now"]["outcome"] == "no_response"
    assert '  after turn 0: caller stayed silent:\n    was greeting "Hello? This is' in text
    assert '    now greeting "Hello, are you there?" (rule)' in text
    assert text.splitlines()[-1].startswith("2 calls, 2 changed, outcomes changed 0")


def test_a_router_config_is_applied_and_a_misspelt_field_is_refused(
    run: Run, recorded_playbook: dict[str, Any], tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    for name in ("booked.json", "not_interested.json", "transfer.json"):
        (calls / name).write_bytes((CORPUS_DIR / name).read_bytes())
    strict = tmp_path / "strict.yaml"
    strict.write_text("intent_confidence_threshold: 0.999\nunderstanding_intent_threshold: 0.999\n")
    status, text, result = run(recorded_playbook, router_config=strict, calls=calls)
    assert status == 0
    assert result["router_config"] == {
        "intent_confidence_threshold": 0.999,
        "understanding_intent_threshold": 0.999,
    }
    assert "intent_confidence_threshold=0.999" in text.splitlines()[0]
    was_classifier = [t for t in turns(result).values() if t["was"]["tier"] == "classifier"]
    assert was_classifier and all(t["tier_changed"] for t in was_classifier)
    assert all(t["now"] is None or t["now"]["tier"] != "classifier" for t in turns(result).values())

    misspelt = tmp_path / "misspelt.json"
    misspelt.write_text('{"intent_confidence_treshold": 0.5}')
    status, text, result = run(recorded_playbook, router_config=misspelt, calls=calls)
    assert status == 1
    assert "misspelt.json" in text and "intent_confidence_treshold" in text
    assert result == {}


def slot_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The `slot` command line, in this process: exit status and what it printed."""
    status = cli.main(list(argv))
    return status, capsys.readouterr().out


def test_a_broken_playbook_exits_1_with_its_message(
    recorded_playbook: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    playbook = json.loads(json.dumps(recorded_playbook))
    playbook["states"]["confirm"]["intents"][0]["next"] = "nowhere"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    status, out = slot_cli(capsys, "replay", "script", str(path), "--calls", str(CORPUS_DIR))
    assert status == 1, out
    assert "state 'confirm', field 'intents[0].next': unknown state 'nowhere'" in out


def test_an_empty_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = slot_cli(capsys, "replay", "script", "solar_survey", "--calls", str(tmp_path))
    assert status == 2, out
    assert f"no stored calls in {tmp_path}" in out


def test_a_file_that_is_not_a_history_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    status, out = slot_cli(capsys, "replay", "script", "solar_survey", "--calls", str(tmp_path))
    assert status == 1, out
    assert "notes.json" in out


def test_call_records_give_the_same_turns_as_histories(
    tmp_path: Path, recorded_playbook: dict[str, Any]
) -> None:
    """Each corpus call's final snapshot saved as its call record (by the records activity) reads
    back as the turns and decisions its history has: speech, keys, silence, refused, LLM."""
    keyring = Keyring.parse(Keyring.new_entry("test"))
    records = RecordsActivities(f"sqlite:///{tmp_path}/records.db", keyring)
    histories = {c.call_id: c for c in load_calls(CORPUS_DIR) if c.status is not None}
    started = datetime.now(UTC)
    for stored in histories.values():
        history = json.loads((CORPUS_DIR / stored.source).read_text())
        result = history["events"][-1]["workflowExecutionCompletedEventAttributes"]["result"]
        snapshot = CallSnapshot.model_validate_json(base64.b64decode(result["payloads"][0]["data"]))
        records.save_call_record(
            SaveCallRecord(
                snapshot=snapshot,
                direction=stored.call.direction,
                script_name=stored.call.script_name,
                follow_up_of=stored.call.follow_up_of,
                started_at=started,
            )
        )
    records.close()
    playbook = Playbook.model_validate(recorded_playbook)

    from_records = calls_from_records(records.database_url, started, playbook, set(), keyring)
    assert sorted(c.call_id for c in from_records) == sorted(histories)
    kinds = set()
    for call in from_records:
        history = histories[call.call_id]
        assert call.outcome == history.outcome, call.call_id
        assert call.call.lead.name == history.call.lead.name, call.call_id
        assert call.call.follow_up_of == history.call.follow_up_of
        shape = [(t.kind, t.seq, t.text, t.digits) for t in call.turns]
        assert shape == [(t.kind, t.seq, t.text, t.digits) for t in history.turns], call.call_id
        for ours, theirs in zip(call.turns, history.turns, strict=True):
            assert (ours.decision is None) == (theirs.decision is None), call.call_id
            if ours.decision and theirs.decision:
                decided = ("state", "text", "tier")
                assert ours.decision.model_dump(include=set(decided)) == theirs.decision.model_dump(
                    include=set(decided)
                ), (call.call_id, ours.seq)
            kinds.add(ours.kind if ours.decision else "refused")
    assert kinds == {"start", "speech", "dtmf", "silence", "refused"}
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert calls_from_records(records.database_url, later, playbook, set(), keyring) == []
