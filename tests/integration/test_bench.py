"""`slot bench`, smoke run: two concurrent bench calls with speech stand-ins, through the command.

The real stack (Temporal dev server, worker and edge processes on free ports), the Deepgram
and Cartesia doubles in their fast modes in processes of their own, the simulator's bench
callers over real WebSockets. It checks the measurement, not the targets (timings belong to
the bench): every figure is in the report and sane, the calls were real (each reached an
outcome, every caller turn was transcribed by the Deepgram stand-in and every agent line
spoken by the Cartesia one), and the plot was drawn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.bench_report import COLUMNS, STACK
from evals.bench_stack import stt_standin, tts_standin
from media_edge import cartesia_tts, deepgram_stt
from slot.settings import REPO_ROOT, Settings

CALLS = 2
BENCH_TIMEOUT_S = 270
"""Under the suite's 300 s per-test timeout, so that a bench that does not finish (78-82 s
normally; once in a CI run of session 8 it ran past 300 s) fails with its own output."""


def _tail(stuck: subprocess.TimeoutExpired) -> str:
    def text(data: bytes | str | None) -> str:
        return data.decode(errors="replace") if isinstance(data, bytes) else data or ""

    return text(stuck.stdout)[-3000:] + text(stuck.stderr)[-3000:]


def test_slot_bench_with_stand_ins_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    env = {**os.environ, "SLOT_DATA_DIR": str(tmp_path / "data")}
    env.pop("DEEPGRAM_API_KEY", None)
    env.pop("CARTESIA_API_KEY", None)
    command = ["bench", "--calls", str(CALLS), "--speech", "standin", "--out", str(out)]
    try:
        run = subprocess.run(
            [sys.executable, "-m", "slot.cli", *command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=BENCH_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as stuck:
        pytest.fail(f"slot bench still running after {BENCH_TIMEOUT_S} s:\n{_tail(stuck)}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    report = json.loads((out / "bench.json").read_text())
    (bench,) = report["runs"]
    (step,) = bench["steps"]
    assert bench["speech"] == "standin" and step["calls"] == CALLS
    assert step["calls_failed"] == 0, step
    assert sum(step["outcomes"].values()) == CALLS and "none" not in step["outcomes"], (
        "each call ran to an outcome its workflow recorded (the caller books, unless a loaded "
        "machine cuts a turn off)"
    )
    assert step["turns"] >= 5 * CALLS and step["turns_unanswered"] == 0
    assert step["transcribed_by"] == {"deepgram": step["turns"]}, (
        "every caller turn went through the Deepgram stand-in, none fell back to Whisper"
    )
    assert list(step["spoken_by"]) == ["cartesia"], (
        "every agent line came from the Cartesia stand-in, none fell back to Piper"
    )

    for key, _ in COLUMNS:
        assert step[key] is not None, key
    assert 0 < step["overhead_p50_ms"] <= step["turn_latency_p50_ms"]
    assert step["overhead_p99_ms"] <= step["turn_latency_p99_ms"]
    assert 0 < step["update_p50_ms"] <= step["update_p99_ms"]
    assert step["updates"] >= step["turns"] + CALLS, "each turn's Update and each call's start"
    stages = step["stages_p50_ms"]
    assert stages["stt"] is not None and stages["endpointing"] is not None
    assert step["frames"] > CALLS * 10 * 50, "at least ten seconds of agent audio per call"
    assert 0 <= step["late_frames"] <= step["frames"]
    assert all(step["cpu_pct_by_process"][name] > 0 for name in STACK), step
    assert step["cpu_per_call_pct"] > 0 and step["stack_rss_mb"] > 100

    markdown = (out / "bench.md").read_text()
    assert "| N | turns | turn latency p50 |" in markdown
    assert f"\n| {CALLS} | {step['turns']} |" in markdown
    assert (out / "bench.png").stat().st_size > 10_000


async def test_the_stand_ins_take_a_key_that_begins_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random key begins with "-" one time in 64; the doubles once read it as an option and
    the bench (and this suite, once) failed with "did not start"."""
    key = "-Zx_0a1b2c3d4e5f6g7h8i9j"
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)  # the stand-ins set them
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    standins = []
    try:
        standins.append(await stt_standin(tmp_path, [], key))
        standins.append(await tts_standin(key))
        overrides = standins[0].overrides | standins[1].overrides
        settings = Settings(**overrides)  # type: ignore[arg-type]
        await deepgram_stt.check_key(deepgram_stt.DeepgramConfig(settings, key))
        await cartesia_tts.check_key(cartesia_tts.CartesiaConfig(settings, key))
        with pytest.raises(deepgram_stt.DeepgramConfigError):
            await deepgram_stt.check_key(deepgram_stt.DeepgramConfig(settings, key[1:]))
    finally:
        for standin in standins:
            await standin.stop()
