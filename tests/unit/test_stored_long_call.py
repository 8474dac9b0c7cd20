"""`slot replay script` reads a long call, whose runs are histories of their own, as one call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slot.replay import CORPUS_DIR
from slot.stored_calls import StoredCallError, load_calls

RUNS = [f"continued_as_new-run{n}.json" for n in (1, 2, 3)]


def corpus_files(folder: Path, names: list[str]) -> Path:
    for name in names:
        shutil.copy(CORPUS_DIR / name, folder / name)
    return folder


def test_the_runs_of_a_long_call_are_one_call_with_every_turn(tmp_path: Path) -> None:
    (call,) = load_calls(corpus_files(tmp_path, list(reversed(RUNS))))
    assert (call.source, call.later_runs) == (RUNS[0], RUNS[1:])
    assert call.call.carried is None
    assert [t.seq for t in call.turns] == list(range(14))
    assert all(t.decision is not None for t in call.turns)
    assert (call.status, call.outcome) == ("ended", "booked")
    assert call.turns[-1].decision is not None and call.turns[-1].decision.state == "booked"


def test_a_later_run_without_the_run_it_continues_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoredCallError, match=f"{RUNS[1]}: a later run of call"):
        load_calls(corpus_files(tmp_path, RUNS[1:]))


def test_a_long_call_cut_short_reads_to_its_last_run(tmp_path: Path) -> None:
    (call,) = load_calls(corpus_files(tmp_path, RUNS[:2]))
    assert [t.seq for t in call.turns] == list(range(12))
    assert (call.status, call.outcome, call.later_runs) == (None, None, RUNS[1:2])
