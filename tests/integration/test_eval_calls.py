"""`slot eval calls`, smoke run: three dev personas through the real stack (Temporal dev server,
worker and edge processes, the simulator's reactive callers over real WebSockets).

It checks the measurement, not the targets: the report has every measure, each call reached its
expected outcome, and the caller's side was measured (latencies, agent turns, recordings).
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console

from evals.calls import ROWS, load_corpus, run_eval
from slot.settings import REPO_ROOT, Settings
from tests.conftest import free_port
from tests.integration.edge_fixtures import STARTUP_S

SMOKE = ("pete_wants_real_person", "jamal_duplex_renter", "brent_driving")
"""Three short dev calls with different outcomes (transfer, not_interested, call_back_later)."""


async def test_three_dev_personas_are_called_and_measured(
    temporal_settings: Settings, tmp_path: Path
) -> None:
    settings = Settings(
        temporal_address=temporal_settings.temporal_address,
        data_dir=tmp_path / "data",
        payload_keys=temporal_settings.payload_keys,
        edge_port=free_port(),
        edge_internal_port=free_port(),
        simulator_port=free_port(),
        task_queue=f"slot-calls-{uuid.uuid4().hex[:8]}",
    )
    """Its own task queue: `slot eval calls` reuses a worker it finds polling its queue, and on
    this test process's Temporal another module's in-process worker may just have stopped
    polling the default one (the server lists pollers for a minute; the process is alive), so
    the eval started no worker and no call's first turn was answered."""
    corpus = load_corpus(REPO_ROOT / "personas", ("dev",), SMOKE)
    assert sorted(c.path.stem for c in corpus) == sorted(SMOKE)
    output = io.StringIO()
    report, paths = await run_eval(
        settings,
        corpus,
        concurrency=3,
        reports=tmp_path / "reports",
        console=Console(file=output, width=200),
        startup_s=STARTUP_S,
    )

    check_report(report, paths, output.getvalue())


def check_report(report: dict[str, Any], paths: list[Path], progress: str) -> None:
    assert [path.name for path in paths] == ["calls.md", "calls.json", "calls.png"]
    assert json.loads(paths[1].read_text()) == report
    summary = report["sets"]["dev"]
    for key, _ in ROWS:
        assert key in summary, key
    rows = {row["persona"]: row for row in report["personas"]}
    for name in SMOKE:
        row = rows[name]
        assert row["error"] is None, row
        assert (row["outcome"], row["reached"]) == (row["expected"], True), row["timeline"]
        assert Path(row["recording"]).stat().st_size > 8000
        assert row["metrics"]["agent_turns"] >= 2
        assert row["metrics"]["latency_p50_ms"] is not None
        assert name in progress, "one progress line per finished call"
    assert summary["calls"] == 3 and summary["outcome_pct"] == 100.0
    endings = summary["turn_endings"]
    assert set(endings) <= {"script", "question", "model", "max_silence", "silence"}, endings
    assert sum(row["turns"] for row in endings.values()) >= len(SMOKE), "each call's turns"
    voices = report["voices"]["dev"]
    assert sorted(voices) == sorted({row["voice"] for row in rows.values()})
    assert sum(row["calls"] for row in voices.values()) == 3
    assert sum(row["caller_turns"] for row in voices.values()) == summary["caller_turns"]
    markdown = paths[0].read_text()
    assert "| measure | dev |" in markdown and "pete_wants_real_person" in markdown
    for voice, row in voices.items():
        assert f"| dev | {voice} | {row['calls']} |" in markdown, voice
    assert "## What ended the caller's turns" in markdown
