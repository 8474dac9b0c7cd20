"""Replay recorded call histories on today's workflow code: the safety net for workflow edits.

A worker deployed with new workflow code picks up calls that older code started; if the new
code issues different commands for the same history, those calls fail with a non-determinism
error. `slot replay check` runs Temporal's Replayer over a folder of recorded histories (the
corpus in tests/replay/histories, which the test suite checks) so that shows before a deploy;
`slot replay export` adds the histories of real calls from a running Temporal to a folder,
their payloads still encrypted as Temporal stored them; `check` decrypts them with the keys in
`SLOT_PAYLOAD_KEYS` and reads clear histories (the corpus) without any.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from slot.payload_codec import Keyring, PayloadDecryptor, PayloadKeyError
from slot.settings import REPO_ROOT

CORPUS_DIR = REPO_ROOT / "tests" / "replay" / "histories"
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_EVENT = re.compile(r"HistoryEvent\(id: (\d+), (\w+)")


@dataclass(frozen=True)
class ReplayResult:
    """One history replayed: `failure` is the Replayer's error message, None when it replayed;
    `event` the id and type of the history event it diverged at, when the message names one."""

    path: Path
    workflow_id: str
    failure: str | None
    event: tuple[int, str] | None = None
    unreadable: bool = False
    """The history is encrypted under a key this process does not hold: not replayed."""

    @property
    def ok(self) -> bool:
        return self.failure is None


def describe_failure(error: Exception) -> tuple[str, tuple[int, str] | None]:
    """The core's own message (e.g. `[TMPRL1100] Nondeterminism error: ...`) out of the
    activation failure that wraps it, and the history event it names."""
    text = str(error)
    found = _CORE_MESSAGE.search(text)
    message = found.group(1) if found else text
    event = _EVENT.search(message)
    return message, (int(event.group(1)), event.group(2)) if event else None


def history_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def load_history(path: Path) -> WorkflowHistory:
    """A history file written by `WorkflowHistory.to_json()`; its name is the workflow id."""
    return WorkflowHistory.from_json(path.stem, path.read_text())


def default_workflows() -> list[type]:
    """The workflow classes the worker runs, imported only when a replay needs them."""
    from worker import workflows

    return workflows()


async def replay(
    paths: Sequence[Path], workflows: Sequence[type] | None = None, keyring: Keyring | None = None
) -> list[ReplayResult]:
    """Replay each history, decrypted with `keyring`, with `workflows` (default: the worker's)
    and Slot's pydantic data converter."""
    replayer = Replayer(
        workflows=list(workflows if workflows is not None else default_workflows()),
        data_converter=pydantic_data_converter,
    )
    decryptor = PayloadDecryptor(keyring)
    results = []
    for path in paths:
        history = load_history(path)
        try:
            history = decryptor.decode_history(history)
        except PayloadKeyError as locked:
            results.append(ReplayResult(path, history.workflow_id, str(locked), unreadable=True))
            continue
        outcome = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if outcome.replay_failure is None:
            results.append(ReplayResult(path, history.workflow_id, None))
        else:
            message, event = describe_failure(outcome.replay_failure)
            results.append(ReplayResult(path, history.workflow_id, message, event))
    return results


async def check(
    folder: Path,
    out: TextIO,
    workflows: Sequence[type] | None = None,
    keyring: Keyring | None = None,
) -> int:
    """Print one line per history; exit status 1 with the first divergence, 2 if none found."""
    paths = history_files(folder)
    if not paths:
        print(f"no histories (*.json) in {folder}", file=out)
        return 2
    results = await replay(paths, workflows, keyring)
    for result in results:
        label = "ok" if result.ok else "unreadable" if result.unreadable else "diverged"
        print(f"{label:<8} {result.path.relative_to(folder)}", file=out)
    failed = [r for r in results if not r.ok]
    if not failed:
        print(f"{len(results)} histories replay on the current code", file=out)
        return 0
    first = failed[0]
    where = f" at event {first.event[0]} ({first.event[1]})" if first.event else ""
    what = "did not replay" if any(r.unreadable for r in failed) else "diverged"
    print(
        f"{len(failed)} of {len(results)} histories {what}; first: {first.path} "
        f"(workflow {first.workflow_id}){where}: {first.failure}",
        file=out,
    )
    return 1


async def export(client: Client, workflow_ids: Sequence[str], folder: Path) -> list[Path]:
    """Write each workflow's history (latest run) to `folder/<workflow id>.json`."""
    histories = [await client.get_workflow_handle(i).fetch_history() for i in workflow_ids]
    return save_histories(histories, folder)


def save_histories(histories: Sequence[WorkflowHistory], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for history in histories:
        path = folder / f"{history.workflow_id}.json"
        path.write_text(history.to_json())
        written.append(path)
    return written
