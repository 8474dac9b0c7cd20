"""`slot eval calls`: whole simulated calls with the persona corpus, measured on the caller's side.

Starts the embedded stack once (as `slot demo` does), synthesizes every persona's replies ahead
(cached on disk), then runs the reactive personas of personas/dev and personas/heldout a few at
a time. Each call's outcome comes from its workflow; the timing measures come from the
simulator's media clock (evals.call_metrics). Writes reports/calls.md, reports/calls.json,
reports/calls.png and a recording per call under .slot-data/recordings/eval-calls/. The exit
code says whether the eval ran, not whether the targets were met: it is a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from evals.call_metrics import CallMetrics, call_metrics, percentile, share
from media_edge.events import AgentUtterance, Backchannel, BargeIn, CallerTurn
from simulator.caller_audio import CallerAudio
from simulator.persona import PersonaError, ReactivePersona, load_reactive_persona
from simulator.phone import CallerTiming, CallResult, SimulatedCall, edge_access
from simulator.protocol import new_sid
from simulator.reactive import ReactivePolicy
from simulator.topics import script_topics
from slot.demo import final_snapshot
from slot.devstack import Stack, StackError
from slot.settings import REPO_ROOT, Settings, get_settings

SETS = ("dev", "heldout")
SET_TITLES = {"dev": "dev", "heldout": "held-out"}
DEFAULT_CONCURRENCY = 6
"""Calls in flight at once: the fewest that keep the 46-persona corpus under 10 minutes on
2 cores (measured: 6 at a time, 473 s of calls, 8 min 17 s with start-up; 8 at a time, 395 s).
More at once inflates the latency it measures (the edge's STT queues): `--concurrency 1` for
the cleanest latency figures."""

MAX_CALL_MS = 240_000
"""A corpus call lasts 40-90 s; one still going after 4 minutes is stuck, and the caller hangs up
(the workflow records `hung_up`, a missed outcome) rather than hold a slot of the eval."""

TARGETS: dict[str, tuple[str, float]] = {
    "outcome_pct": (">=", 90.0),
    "fallback_pct": ("<=", 5.0),
    "identical_in_a_row": ("<=", 0),
    "latency_p50_ms": ("<=", 500.0),
    "latency_p90_ms": ("<=", 900.0),
    "premature_cutoff_pct": ("<=", 5.0),
    "barge_in_p50_ms": ("<=", 400.0),
    "backchannel_completed_pct": (">=", 90.0),
}
"""Issue 8's targets (for the held-out set)."""

ROWS: tuple[tuple[str, str], ...] = (
    ("calls", "calls"),
    ("outcome_pct", "expected outcome reached (%)"),
    ("latency_p50_ms", "response latency p50 (ms)"),
    ("latency_p90_ms", "response latency p90 (ms)"),
    ("premature_cutoff_pct", "premature cut-offs (% of caller turns)"),
    ("barge_in_p50_ms", "barge-in reaction p50 (ms)"),
    ("barge_in_p90_ms", "barge-in reaction p90 (ms)"),
    ("barge_ins_unanswered", "interruptions talked through"),
    ("fallback_pct", "fallback lines (% of agent turns)"),
    ("longest_fallback_run", "longest run of fallbacks"),
    ("identical_in_a_row", "identical agent lines in a row"),
    ("backchannel_completed_pct", "agent finished its line after a backchannel (%)"),
    ("caller_turns", "caller turns"),
    ("agent_turns", "agent turns"),
    ("unanswered_turns", "caller turns the agent never answered"),
    ("mean_call_s", "mean call length (s)"),
)


@dataclass(frozen=True)
class CorpusPersona:
    set_name: str
    path: Path
    persona: ReactivePersona

    @property
    def key(self) -> str:
        return f"{self.set_name}/{self.path.stem}"


@dataclass
class CallRecord:
    """One persona's call: what was expected, what happened, and its measures."""

    corpus: CorpusPersona
    call_id: str
    outcome: str | None
    metrics: CallMetrics
    duration_ms: int
    recording: str | None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """What was said when (simulated personas, not callers' data): for reading a missed call."""

    @property
    def expected(self) -> str | None:
        return self.corpus.persona.expect_outcome

    @property
    def reached(self) -> bool:
        return self.error is None and self.outcome == self.expected

    def row(self) -> dict[str, Any]:
        return {
            "set": self.corpus.set_name,
            "persona": self.corpus.path.stem,
            "name": self.corpus.persona.name,
            "voice": self.corpus.persona.voice,
            "expected": self.expected,
            "outcome": self.outcome,
            "reached": self.reached,
            "call_id": self.call_id,
            "duration_s": round(self.duration_ms / 1000, 1),
            "recording": self.recording,
            "metrics": self.metrics.summary(),
            "notes": self.notes,
            "error": self.error,
            "timeline": self.timeline,
        }


def load_corpus(folder: Path, sets: Sequence[str], only: Sequence[str] = ()) -> list[CorpusPersona]:
    """The reactive personas of `sets` under `folder` (personas/dev, personas/heldout), in file
    order; `only` keeps those whose file stem or name is listed."""
    wanted = {name.lower() for name in only}
    corpus: list[CorpusPersona] = []
    for set_name in sets:
        for path in sorted((folder / set_name).glob("*.yaml")):
            persona = load_reactive_persona(path)
            if wanted and not wanted & {path.stem.lower(), persona.name.lower()}:
                continue
            corpus.append(CorpusPersona(set_name, path, persona))
    return corpus


async def run_call(
    settings: Settings, corpus: CorpusPersona, audio: CallerAudio, script: str
) -> CallRecord:
    """One persona's call on the running stack, measured."""
    persona = corpus.persona
    call_sid = new_sid("CA")
    call_id = f"call-{call_sid}"
    recording = settings.data_dir / "recordings" / "eval-calls" / f"{corpus.key}.wav"
    call = SimulatedCall(
        settings.edge_url,
        persona,
        **edge_access(settings),
        call_sid=call_sid,
        account_sid=settings.twilio_account_sid,
        agent_number=settings.agent_phone_number,
        params={"script": script, "lead_name": persona.name},
        recording_path=recording,
        policy=ReactivePolicy(persona, script_topics(script, settings.playbooks_dir)),
        caller_audio=audio,
        timing=CallerTiming(max_call_ms=MAX_CALL_MS),
    )
    result = await call.run()
    metrics = call_metrics(
        result.lines_spoken,
        result.agent_segments,
        result.clears_ms,
        [event for _, event in result.edge_events],
    )
    outcome: str | None = None
    error = result.error
    if error is None:
        try:
            snapshot = await final_snapshot(settings, call_id, timeout_s=30)
            outcome = snapshot.outcome.value if snapshot.outcome else None
        except Exception as failure:  # a measurement: one broken call must not end the eval
            error = f"no workflow snapshot: {type(failure).__name__}: {failure}"
    return CallRecord(
        timeline=timeline(result),
        corpus=corpus,
        call_id=call_id,
        outcome=outcome,
        metrics=metrics,
        duration_ms=result.duration_ms,
        recording=str(result.recording_path) if result.recording_path else None,
        notes=list(result.notes),
        error=error,
    )


def timeline(result: CallResult) -> list[dict[str, Any]]:
    """The call as the caller lived it: its lines, the agent's utterances, barge-ins, clears."""
    entries: list[dict[str, Any]] = []
    for line in result.lines_spoken:
        kind = "backchannel" if line.backchannel else "interrupts" if line.interrupting else "says"
        entries.append(
            {"at_ms": line.voiced_start_ms, "caller": kind, "text": line.text, "to": line.state}
        )
    for at_ms, event in result.edge_events:
        if isinstance(event, AgentUtterance):
            entries.append(
                {
                    "at_ms": at_ms,
                    "agent": event.state,
                    "tier": event.tier,
                    "text": event.text,
                    "latency_ms": event.latency_ms,
                }
            )
        elif isinstance(event, CallerTurn):
            entries.append(
                {
                    "at_ms": at_ms,
                    "heard": event.text,
                    "ended_by": event.end_reason,
                    "turn_model_p": event.turn_model_p,
                    "latency_ms": event.latency_ms,
                }
            )
        elif isinstance(event, BargeIn):
            entries.append({"at_ms": at_ms, "barge_in": event.heard_text})
        elif isinstance(event, Backchannel):
            entries.append({"at_ms": at_ms, "backchannel_ms": event.voiced_ms})
    entries += [{"at_ms": at_ms, "clear": True} for at_ms in result.clears_ms]
    return sorted(entries, key=lambda entry: entry["at_ms"] or 0)


TURN_STAGES = ("stt", "turn_model", "script_judge", "decision", "tts_first_audio")
"""The latency stages shown per turn ending (the edge's `latency_ms` names)."""


def turn_endings(timelines: Iterable[Sequence[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """What ended the caller's turns (script, model, question, max silence...) and how long the
    reply took on the edge's clock for each: from the turn's last voiced frame to the reply's
    first audio sent (the caller hears it a VAD release and a network hop later), with the
    median of each stage. Read from calls' timelines (`timeline`): a `heard` turn and the agent
    line that answered it."""
    totals: defaultdict[str, list[float]] = defaultdict(list)
    stages: defaultdict[str, defaultdict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for entries in timelines:
        heard: dict[str, Any] | None = None
        for entry in entries:
            if "heard" in entry:
                heard = entry
                continue
            if "agent" not in entry or heard is None:
                continue
            reason = str(heard.get("ended_by") or "unknown")
            latency = {**(heard.get("latency_ms") or {}), **(entry.get("latency_ms") or {})}
            heard = None
            if "total" not in latency:
                continue
            totals[reason].append(latency["total"])
            for stage in TURN_STAGES:
                if stage in latency:
                    stages[reason][stage].append(latency[stage])
    turns = sum(len(values) for values in totals.values())
    return {
        reason: {
            "turns": len(values),
            "share_pct": share(len(values), turns),
            "edge_p50_ms": percentile(values, 50),
            "edge_p90_ms": percentile(values, 90),
            "stages_p50_ms": {
                stage: percentile(samples, 50) for stage, samples in stages[reason].items()
            },
        }
        for reason, values in sorted(totals.items(), key=lambda item: -len(item[1]))
    }


def set_summary(records: Sequence[CallRecord]) -> dict[str, Any]:
    """A set's figures: outcomes reached, the pooled measures, mean call length, and what ended
    the caller's turns."""
    total = CallMetrics()
    for record in records:
        total = total.combine(record.metrics)
    reached = sum(record.reached for record in records)
    summary: dict[str, Any] = {
        "calls": len(records),
        "outcome_pct": round(100.0 * reached / len(records), 1) if records else None,
        "outcomes_reached": reached,
        "mean_call_s": (
            round(sum(r.duration_ms for r in records) / len(records) / 1000, 1) if records else None
        ),
    }
    summary.update(total.summary())
    summary["turn_endings"] = turn_endings(record.timeline for record in records)
    return summary


def _by_voice(records: Sequence[CallRecord]) -> dict[str, dict[str, Any]]:
    """A set's figures per caller voice."""
    voices = sorted({r.corpus.persona.voice for r in records})
    return {
        voice: set_summary([r for r in records if r.corpus.persona.voice == voice])
        for voice in voices
    }


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return str(value)


def _target(key: str) -> str:
    if key not in TARGETS:
        return ""
    op, value = TARGETS[key]
    return f"{'≥' if op == '>=' else '≤'} {value:g}"


def markdown(report: dict[str, Any]) -> str:
    sets = [name for name in SETS if name in report["sets"]]
    head = ["measure", *(SET_TITLES[name] for name in sets), "target (held-out)"]
    lines = [
        "# Whole calls (`slot eval calls`)",
        "",
        f"{report['calls']} calls, {report['concurrency']} at a time, "
        f"{report['wall_s']:.0f} s wall time on {report['cores']} cores; "
        f"script `{report['script']}`, embedded default stack. Times are the simulated "
        "caller's media clock.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for key, title in ROWS:
        cells = [_cell(report["sets"][name].get(key)) for name in sets]
        lines.append("| " + " | ".join([title, *cells, _target(key)]) + " |")
    lines += [
        "",
        "## By caller voice",
        "",
        "Each set's figures per caller voice (word error rates per voice: `slot eval stt`).",
        "",
        "| set | voice | calls | reached | latency p50 / p90 | premature | fallback lines |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sets:
        for voice, row in report["voices"].get(name, {}).items():
            lines.append(
                f"| {SET_TITLES[name]} | {voice} | {row['calls']} | "
                f"{_cell(row['outcome_pct'])} % | {_cell(row['latency_p50_ms'])} / "
                f"{_cell(row['latency_p90_ms'])} ms | {_cell(row['premature_cutoff_pct'])} % | "
                f"{_cell(row['fallback_pct'])} % |"
            )
    lines += [
        "",
        "## What ended the caller's turns",
        "",
        "Reply latency on the edge's clock: the turn's last voiced frame to the reply's first "
        "audio sent (stages are medians).",
        "",
        "| set | ended by | turns | share | edge p50 | edge p90 | stages p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sets:
        for reason, row in report["sets"][name].get("turn_endings", {}).items():
            stages = ", ".join(f"{k} {_cell(v)}" for k, v in row["stages_p50_ms"].items())
            lines.append(
                f"| {SET_TITLES[name]} | {reason} | {row['turns']} | {_cell(row['share_pct'])} % "
                f"| {_cell(row['edge_p50_ms'])} | {_cell(row['edge_p90_ms'])} | {stages} |"
            )
    lines += [
        "",
        "## Calls",
        "",
        "| set | persona | voice | expected | got | latency p50 | premature | fallbacks | "
        "barge-in p50 | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["personas"]:
        m = row["metrics"]
        got = row["outcome"] if row["error"] is None else f"error: {row['error'][:60]}"
        mark = "✓" if row["reached"] else "✗"
        lines.append(
            f"| {SET_TITLES[row['set']]} | {row['persona']} | {row['voice']} | "
            f"{row['expected']} | {mark} {got} | {_cell(m['latency_p50_ms'])} | "
            f"{m['premature_cutoff_pct'] if m['premature_cutoff_pct'] is not None else '–'} % | "
            f"{_cell(m['fallback_pct'])} % | {_cell(m['barge_in_p50_ms'])} | "
            f"{row['duration_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(records: Sequence[CallRecord], path: Path) -> None:
    """Response latency and barge-in reaction, each set's distribution (ECDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels: tuple[tuple[str, Callable[[CallMetrics], list[int]], tuple[int, ...]], ...] = (
        ("response latency (ms)", lambda m: m.response_latency_ms, (500, 900)),
        ("barge-in reaction (ms)", lambda m: m.barge_in_reaction_ms, (400,)),
    )
    for axis, (title, values_of, targets) in zip(axes, panels, strict=True):
        for set_name in SETS:
            values = sorted(
                v for r in records if r.corpus.set_name == set_name for v in values_of(r.metrics)
            )
            if not values:
                continue
            if values:
                ranks = [(i + 1) / len(values) for i in range(len(values))]
                median = percentile(values, 50)
                axis.step(
                    values, ranks, where="post", label=f"{SET_TITLES[set_name]} (p50 {median})"
                )
        for target in targets:
            axis.axvline(target, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel(title)
        axis.set_ylabel("share of turns")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="lower right")
    figure.suptitle("slot eval calls: measured on the simulated caller's side")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_report(
    records: Sequence[CallRecord], *, script: str, concurrency: int, wall_s: float
) -> dict[str, Any]:
    import os

    by_set = {
        name: set_summary([r for r in records if r.corpus.set_name == name])
        for name in SETS
        if any(r.corpus.set_name == name for r in records)
    }
    return {
        "script": script,
        "calls": len(records),
        "concurrency": concurrency,
        "wall_s": round(wall_s, 1),
        "cores": os.cpu_count(),
        "targets": {key: {"op": op, "value": value} for key, (op, value) in TARGETS.items()},
        "sets": by_set,
        "voices": {
            name: _by_voice([r for r in records if r.corpus.set_name == name]) for name in by_set
        },
        "personas": [record.row() for record in records],
    }


def write_reports(
    report: dict[str, Any], records: Sequence[CallRecord], folder: Path
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "calls.md", folder / "calls.json", folder / "calls.png"]
    paths[0].write_text(markdown(report), encoding="utf-8")
    paths[1].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(records, paths[2])
    return paths


def progress_line(done: int, total: int, record: CallRecord) -> str:
    latency = percentile(record.metrics.response_latency_ms, 50)
    status = "[green]ok[/]" if record.reached else "[red]MISSED[/]"
    got = record.outcome if record.error is None else f"error ({record.error[:80]})"
    return (
        f"[{done:>2}/{total}] {record.corpus.key:<40} {status} {got} "
        f"(expected {record.expected})  latency p50 "
        f"{'–' if latency is None else f'{latency:.0f} ms'}  {record.duration_ms / 1000:.0f} s"
    )


async def run_eval(
    settings: Settings,
    corpus: Sequence[CorpusPersona],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    reports: Path = REPO_ROOT / "reports",
    console: Console | None = None,
    startup_s: float = 60.0,
) -> tuple[dict[str, Any], list[Path]]:
    """Run every persona's call (at most `concurrency` at once) and write the reports."""
    console = console or Console(highlight=False)
    script = settings.default_script
    audio = CallerAudio(settings.data_dir / "caller-audio")
    began = time.monotonic()
    clips = await asyncio.to_thread(audio.prepare, [c.persona for c in corpus])
    console.print(
        f"caller audio: {clips} clips ready in {time.monotonic() - began:.0f} s "
        f"(cached in {audio.folder})"
    )
    stack = Stack(settings, headless=True, with_simulator=False)
    with console.status("starting the embedded stack (Temporal, worker, edge)..."):
        await stack.start(timeout_s=startup_s)
    for note in stack.notes:
        console.print(f"[dim]{note}[/]")
    if stack.reused:
        console.print(f"[yellow]reusing running {', '.join(stack.reused)}[/]")
    settings = stack.settings
    records: list[CallRecord] = []
    gate = asyncio.Semaphore(concurrency)
    began = time.monotonic()

    async def one(item: CorpusPersona) -> CallRecord:
        async with gate:
            record = await run_call(settings, item, audio, script)
        records.append(record)
        console.print(progress_line(len(records), len(corpus), record), soft_wrap=True)
        return record

    try:
        console.print(f"{len(corpus)} calls, {concurrency} at a time")
        ordered = await asyncio.gather(*(one(item) for item in corpus))
    finally:
        with console.status("stopping what the eval started..."):
            await stack.stop()
    wall_s = time.monotonic() - began
    report = build_report(ordered, script=script, concurrency=concurrency, wall_s=wall_s)
    paths = await asyncio.to_thread(write_reports, report, ordered, reports)
    return report, paths


def main(argv: Sequence[str] | None = None) -> int:
    """`slot eval calls [--set dev|heldout|all] [--personas DIR] [--concurrency N] [--only ...]`."""
    parser = argparse.ArgumentParser(prog="slot eval calls", description=__doc__)
    parser.add_argument("--set", choices=("dev", "heldout", "all"), default="all")
    parser.add_argument("--personas", type=Path, default=None, help="default: personas/")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--only", nargs="+", default=(), metavar="NAME")
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    settings = get_settings()
    sets = SETS if args.set == "all" else (args.set,)
    try:
        corpus = load_corpus(args.personas or settings.personas_dir, sets, args.only)
    except PersonaError as error:
        console.print(f"[red]error:[/] {error}")
        return 2
    if not corpus:
        console.print("[red]error:[/] no personas to call")
        return 2
    try:
        report, paths = asyncio.run(
            run_eval(
                settings,
                corpus,
                concurrency=max(1, args.concurrency),
                reports=args.reports,
                console=console,
            )
        )
    except StackError as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    console.print()
    console.print(markdown(report).split("## Calls")[0].strip())
    for path in paths:
        console.print(f"wrote {path}")
    return 0
