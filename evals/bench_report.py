"""`slot bench`'s figures per step (N concurrent calls), its markdown table and its plot."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.bench_calls import CallSample
from evals.bench_turns import PROVIDERS, TURN_TAKING
from evals.call_metrics import percentile

STACK = ("temporal", "worker", "edge")
"""The processes whose CPU and memory are Slot's (doubles and the simulator are not)."""
TARGET_OVERHEAD_P99_MS = 80.0
STAGES = (*TURN_TAKING, *PROVIDERS, "decision", "send", "total")


def step_figures(
    calls: int,
    samples: Sequence[CallSample],
    *,
    wall_s: float,
    cpu_s: dict[str, float],
    rss_growth_mb: dict[str, float],
    rss_peak_mb: dict[str, float],
    loop_lag_ms: Sequence[float],
    outcomes: dict[str, str],
) -> dict[str, Any]:
    """One step's figures: latencies over every answered turn of every call, frames over every
    utterance, CPU and memory of the stack's processes over the step's wall time."""
    turns = [turn for sample in samples for turn in sample.turns]
    jitter = [j for sample in samples for j in sample.jitter_ms]
    frames = sum(sample.frames for sample in samples)
    late = sum(sample.late_frames for sample in samples)
    stack_cpu = sum(cpu_s.get(name, 0.0) for name in STACK)
    stack_rss = sum(rss_peak_mb.get(name, 0.0) for name in STACK)
    growth = sum(rss_growth_mb.get(name, 0.0) for name in STACK)
    update = [ms for sample in samples for ms in sample.update_ms]
    booked = sum(1 for outcome in outcomes.values() if outcome == "booked")
    transcribed = Counter(who for sample in samples for who in sample.transcribed_by)
    spoken = Counter(who for sample in samples for who in sample.spoken_by)
    return {
        "calls": calls,
        "calls_failed": sum(1 for sample in samples if sample.error),
        "calls_booked": booked,
        "turns": len(turns),
        "turns_unanswered": sum(len(sample.lost_turns) for sample in samples),
        "transcribed_by": dict(transcribed.most_common()),
        "spoken_by": dict(spoken.most_common()),
        "outcomes": dict(Counter(outcome or "none" for outcome in outcomes.values())),
        "turn_latency_p50_ms": percentile([t.total_ms for t in turns], 50),
        "turn_latency_p99_ms": percentile([t.total_ms for t in turns], 99),
        "overhead_p50_ms": percentile([t.overhead_ms for t in turns], 50),
        "overhead_p99_ms": percentile([t.overhead_ms for t in turns], 99),
        "update_p50_ms": percentile(update, 50),
        "update_p99_ms": percentile(update, 99),
        "updates": len(update),
        "frames": frames,
        "late_frames": late,
        "jitter_p99_ms": percentile(jitter, 99),
        "jitter_max_ms": round(max(jitter), 1) if jitter else None,
        "cpu_per_call_pct": round(100.0 * stack_cpu / wall_s / calls, 2) if wall_s else None,
        "stack_cpu_pct": round(100.0 * stack_cpu / wall_s, 1) if wall_s else None,
        "cpu_pct_by_process": {n: round(100.0 * c / wall_s, 1) for n, c in cpu_s.items()},
        "rss_per_call_mb": round(growth / calls, 2),
        "stack_rss_mb": round(stack_rss, 0),
        "simulator_loop_lag_p99_ms": percentile(loop_lag_ms, 99),
        "wall_s": round(wall_s, 1),
        "stages_p50_ms": {
            stage: percentile([t.stages[stage] for t in turns if stage in t.stages], 50)
            for stage in STAGES
        },
        "stages_p99_ms": {
            stage: percentile([t.stages[stage] for t in turns if stage in t.stages], 99)
            for stage in STAGES
        },
    }


COLUMNS: tuple[tuple[str, str], ...] = (
    ("calls", "N"),
    ("turns", "turns"),
    ("turn_latency_p50_ms", "turn latency p50"),
    ("turn_latency_p99_ms", "p99"),
    ("overhead_p50_ms", "platform overhead p50"),
    ("overhead_p99_ms", "p99"),
    ("update_p50_ms", "Update p50"),
    ("update_p99_ms", "p99"),
    ("update_task_p50_ms", "its workflow task p50"),
    ("update_task_p99_ms", "p99"),
    ("update_queue_p99_ms", "task queued p99"),
    ("late_frames", "late frames"),
    ("cpu_per_call_pct", "CPU/call (% core)"),
    ("rss_per_call_mb", "MB/call"),
    ("simulator_loop_lag_p99_ms", "sim lag p99"),
    ("simulator_cpu_pct", "sim CPU %"),
)


def _cell(key: str, step: dict[str, Any]) -> str:
    value = step.get(key)
    if value is None:
        return "–"
    if key == "late_frames":
        return f"{value} of {step['frames']}"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# `slot bench`",
        "",
        f"{report['cores']} cores, load average {report['load_before']} before the run; "
        f"times in ms. Caller `{report['persona']}` on script `{report['script']}`.",
    ]
    for run in report["runs"]:
        lines += [
            "",
            f"## Speech: {run['speech']}",
            "",
            run["speech_note"],
            "",
            "| " + " | ".join(title for _, title in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for step in run["steps"]:
            lines.append("| " + " | ".join(_cell(key, step) for key, _ in COLUMNS) + " |")
        lines += ["", "Calls that booked / failed / unanswered caller turns, per N: "]
        lines.append(
            ", ".join(
                f"N={s['calls']}: {s['calls_booked']} / {s['calls_failed']} / "
                f"{s['turns_unanswered']}"
                for s in run["steps"]
            )
        )
    lines += [
        "",
        f"Target (stand-ins, 2 cores): 100 calls, platform overhead p99 ≤ "
        f"{TARGET_OVERHEAD_P99_MS:.0f} ms, no late frames. Figures are measurements, not "
        "assertions; on a shared machine they include the neighbours' load.",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Per N: turn latency and overhead, Update round trip, late frames, CPU and memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    (latency, update), (late, cost) = axes
    for run in report["runs"]:
        steps = run["steps"]
        n = [s["calls"] for s in steps]

        def series(key: str, steps: list[dict[str, Any]] = steps) -> list[float]:
            return [float("nan") if s[key] is None else s[key] for s in steps]

        tag = run["speech"]
        for key, style in (("turn_latency", "-"), ("overhead", "--")):
            for q, marker in (("p50", "o"), ("p99", "^")):
                latency.plot(
                    n, series(f"{key}_{q}_ms"), style, marker=marker, label=f"{tag} {key} {q}"
                )
        for q, marker in (("p50", "o"), ("p99", "^")):
            update.plot(n, series(f"update_{q}_ms"), marker=marker, label=f"{tag} {q}")
        late.plot(
            n,
            [100.0 * s["late_frames"] / s["frames"] if s["frames"] else 0.0 for s in steps],
            marker="o",
            label=tag,
        )
        cost.plot(n, series("cpu_per_call_pct"), marker="o", label=f"{tag} CPU % of a core")
        cost.plot(n, series("rss_per_call_mb"), "--", marker="s", label=f"{tag} MB")
    latency.axhline(TARGET_OVERHEAD_P99_MS, color="grey", linestyle=":", linewidth=1)
    late.set_ylim(bottom=0)
    titles = (
        (latency, "turn latency and platform overhead (ms)"),
        (update, "Update round trip (ms)"),
        (late, "frames > 40 ms late (%)"),
        (cost, "per call: CPU (% of a core), memory (MB)"),
    )
    for axis, title in titles:
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("concurrent calls")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle("slot bench")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "load_before": round(os.getloadavg()[0], 1)}
