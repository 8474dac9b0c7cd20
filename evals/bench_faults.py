"""`slot bench --faults`: 50 calls in flight while the worker, then the edge, then Temporal die.

The stack is `slot dev`'s, supervised as `slot dev` supervises it (`Stack.supervise` every
second restarts what died). Fifty bench callers (`--calls N`) place calls back to back for the
whole run.
25 s in, the worker is killed with SIGKILL; once the supervisor has it back and calls have run
on for 30 s, the edge; then the same way the Temporal dev server; 30 s after Temporal is back
the callers stop placing calls. Per fault:
- back after: from the kill until the supervisor had the part running and ready again;
- calls in flight: calls whose media stream was open at the kill;
- turns lost: caller turns ending from 5 s before the kill until the next fault (or the end)
  that the agent never answered (worker and Temporal: the edge retries, so 0 is the aim; the
  edge: the calls it held die with it);
- stall: the longest and median wait for the agent's reply among turns ending from 5 s before
  the kill until 5 s after the part was back (a normal turn waits well under a second);
- wait p50 before: the median wait for a reply in the 30 s before that (the machine's normal);
- dropped: calls in flight at the kill that ended before the next kill and that their workflow
  ended as `dropped` (a call that lived through two kills counts for the later one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from evals.bench import PERSONA, STAGGER_PER_CALL_S, final_states
from evals.bench_callers import START_AFTER_S, Callers
from evals.bench_calls import CallSample
from evals.bench_report import machine
from evals.bench_stack import BenchStack, Speech, bench_stack
from evals.call_metrics import percentile
from simulator.caller_audio import CallerAudio
from simulator.persona import load_reactive_persona
from slot.settings import REPO_ROOT, get_settings

PARTS = ("worker", "edge", "temporal")
"""What is killed, in this order."""
FIRST_KILL_S = 25.0
"""Calls in flight and in mid-conversation before the first kill."""
SETTLE_S = 30.0
"""After a killed part is back, calls run this long before the next kill (or the end), so
each fault's turns are its own."""
LEAD_S = 5.0
"""Turns ending this long before a kill may still be in flight at it."""
STALL_AFTER_S = 5.0
KILL_SLACK_S = 1.0
"""A caller in another process may see its stream close a little before the bench's stamp of
the kill (taken under load): a call ending this close before a kill was still in flight at it."""


@dataclass
class Fault:
    part: str
    killed_at: float
    back_at: float | None = None
    back: asyncio.Event = field(default_factory=asyncio.Event)


def kill(stack: BenchStack, part: str) -> None:
    """SIGKILL, as a crash would."""
    if part == "temporal":
        temporal = stack.stack.temporal
        assert temporal is not None and temporal.process is not None
        temporal.process.kill()
        temporal.process.wait()
    else:
        stack.stack.processes[part].kill()


async def supervise(stack: BenchStack, faults: list[Fault], stop: asyncio.Event) -> None:
    """`slot dev`'s supervision loop; notes when each killed part is back."""

    def said(line: str) -> None:
        if faults and faults[-1].back_at is None and ("restarted" in line or "is back" in line):
            faults[-1].back_at = time.monotonic()
            faults[-1].back.set()

    while not stop.is_set():
        await stack.stack.supervise(said)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def inject(stack: BenchStack, began: float, faults: list[Fault], console: Console) -> None:
    """Kill each part in turn, the next only once the last is back and calls have settled."""
    await asyncio.sleep(max(0.0, began + FIRST_KILL_S - time.monotonic()))
    for part in PARTS:
        faults.append(Fault(part, time.monotonic()))
        kill(stack, part)
        console.print(f"killed {part} at {time.monotonic() - began:.1f} s")
        await faults[-1].back.wait()
        console.print(f"{part} back after {time.monotonic() - faults[-1].killed_at:.1f} s")
        await asyncio.sleep(SETTLE_S)


def in_flight_at(sample: CallSample, moment: float) -> bool:
    return sample.started_at <= moment <= sample.ended_at + KILL_SLACK_S


def fault_figures(
    fault: Fault,
    until: float,
    samples: list[CallSample],
    statuses: dict[str, str],
    began: float,
    next_kill: float | None = None,
) -> dict[str, Any]:
    """One fault's row; a call in flight at `next_kill` too is the next fault's (whichever of
    the two ended it, the later one did)."""
    in_flight = [s for s in samples if in_flight_at(s, fault.killed_at)]
    window = (fault.killed_at - LEAD_S, until)
    back = fault.back_at or until
    stall_window = (fault.killed_at - LEAD_S, back + STALL_AFTER_S)
    turns = [t for s in samples for t in s.caller_turns if window[0] <= t[0] < window[1]]
    calm = [
        reply
        for end, reply in (t for s in samples for t in s.caller_turns)
        if reply is not None
        and fault.killed_at - LEAD_S - SETTLE_S <= end < fault.killed_at - LEAD_S
    ]
    waits = [
        reply
        for end, reply in (t for s in samples for t in s.caller_turns)
        if reply is not None
        if stall_window[0] <= end < stall_window[1]
    ]
    return {
        "part": fault.part,
        "killed_at_s": round(fault.killed_at - began, 1),
        "back_after_s": None if fault.back_at is None else round(back - fault.killed_at, 1),
        "calls_in_flight": len(in_flight),
        "turns_in_window": len(turns),
        "turns_lost": sum(1 for _, reply in turns if reply is None),
        "stall_max_ms": max(waits) if waits else None,
        "stall_p50_ms": percentile(waits, 50),
        "wait_p50_before_ms": percentile(calm, 50),
        "calls_dropped": sum(
            1
            for s in in_flight
            if statuses.get(s.call_id) == "dropped"
            and (next_kill is None or not in_flight_at(s, next_kill))
        ),
        "in_flight_ended_as": _count(statuses.get(s.call_id, "unknown") for s in in_flight),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# `slot bench --faults`",
        "",
        f"{report['calls']} calls in flight, {report['speech']} speech, {report['cores']} cores "
        f"(load {report['load_before']} before); {report['calls_placed']} calls in "
        f"{report['run_s']:.0f} s, {report['calls_failed']} of them ended in an error; "
        f"{report['calls_refused']} attempts refused while a part was down (retried each second).",
        "",
        "| killed | at (s) | back after (s) | calls in flight | turns | turns lost | "
        "stall max (ms) | stall p50 (ms) | wait p50 before (ms) | calls dropped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)

    for f in report["faults"]:
        lines.append(
            f"| {f['part']} | {cell(f['killed_at_s'])} | {f['back_after_s']} | "
            f"{f['calls_in_flight']} | {f['turns_in_window']} | {f['turns_lost']} | "
            f"{cell(f['stall_max_ms'])} | {cell(f['stall_p50_ms'])} | "
            f"{cell(f['wait_p50_before_ms'])} | {f['calls_dropped']} |"
        )
    lines += [
        "",
        f"Before the first fault: {report['turns_before']} turns, {report['lost_before']} lost. "
        f"Calls ended `dropped` in all: {report['dropped_total']}.",
    ]
    return "\n".join(lines) + "\n"


def plot(samples: list[CallSample], faults: list[dict[str, Any]], began: float, path: Path) -> None:
    """Every caller turn: when it ended and how long the reply took (lost turns on top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 4))
    answered = [(end - began, r) for s in samples for end, r in s.caller_turns if r is not None]
    lost = [end - began for s in samples for end in s.lost_turns]
    axis.scatter([a for a, _ in answered], [r for _, r in answered], s=6, label="reply wait")
    top = max([r for _, r in answered] or [1000.0])
    axis.scatter(lost, [top * 1.05] * len(lost), s=12, marker="x", color="red", label="lost")
    for fault in faults:
        axis.axvline(fault["killed_at_s"], color="grey", linestyle=":")
        axis.text(fault["killed_at_s"], top * 1.1, f" kill {fault['part']}", fontsize=8)
    axis.set_xlabel("s since the first call")
    axis.set_ylabel("caller's wait for the reply (ms)")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


async def run_faults(speech: Speech, calls: int, out: Path, console: Console) -> list[Path]:
    persona = load_reactive_persona(PERSONA)
    settings = get_settings()
    audio = CallerAudio(settings.data_dir / "caller-audio")
    faults: list[Fault] = []
    async with bench_stack(speech, persona, audio) as stack:
        console.print(f"stack up ({speech} speech): logs in {stack.stack.logs_dir}")
        await asyncio.to_thread(audio.prepare, [persona])
        callers = await Callers.start(
            stack.settings, PERSONA, audio, calls, STAGGER_PER_CALL_S, until_stopped=True
        )
        began = time.monotonic() + START_AFTER_S
        supervising = asyncio.Event()
        supervisor = asyncio.create_task(supervise(stack, faults, supervising))
        injector = asyncio.create_task(inject(stack, began, faults, console))
        try:
            await injector
        finally:
            callers.stop()
            injector.cancel()
            attempts = (await callers.results()).samples
            ended = time.monotonic()
            supervising.set()
            await asyncio.gather(supervisor, injector, return_exceptions=True)
        samples = [sample for sample in attempts if sample.streamed]
        await stack.stack.supervise(lambda line: console.print(line))  # all back for the query
        states = await final_states(stack.settings, [s.call_id for s in samples], wait_s=30.0)
    statuses = {call_id: state["status"] for call_id, state in states.items()}
    figures = []
    for index, fault in enumerate(faults):
        next_kill = faults[index + 1].killed_at if index + 1 < len(faults) else None
        until = next_kill - LEAD_S if next_kill is not None else ended
        figures.append(fault_figures(fault, until, samples, statuses, began, next_kill))
    first = faults[0].killed_at - LEAD_S if faults else ended
    before = [t for s in samples for t in s.caller_turns if t[0] < first]
    report: dict[str, Any] = {
        **machine(),
        "speech": speech,
        "calls": calls,
        "run_s": round(ended - began, 1),
        "calls_placed": len(samples),
        "calls_failed": sum(1 for s in samples if s.error),
        "calls_refused": len(attempts) - len(samples),
        "faults": figures,
        "turns_before": len(before),
        "lost_before": sum(1 for _, reply in before if reply is None),
        "dropped_total": sum(1 for status in statuses.values() if status == "dropped"),
        "statuses": dict(sorted(_count(statuses.values()).items())),
        "persona": PERSONA.relative_to(REPO_ROOT).as_posix(),
    }
    return await asyncio.to_thread(_write, report, samples, began, out)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _write(
    report: dict[str, Any], samples: list[CallSample], began: float, out: Path
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "faults.md", out / "faults.json", out / "faults.png"]
    paths[0].write_text(markdown(report), encoding="utf-8")
    paths[1].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(samples, report["faults"], began, paths[2])
    return paths
