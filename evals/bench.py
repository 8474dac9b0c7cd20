"""`slot bench`: N concurrent simulated calls against one stack, ramping N, measured.

For each speech choice (`--speech embedded,standin`, `evals.bench_stack`) one stack is started
(Temporal dev server, worker, edge on free ports, a fresh data folder); then for each N of
`--calls` N bench callers (`evals/data/bench/caller.yaml`, who books in about a minute) call at
once, their starts spread over N x 0.1 s. Per N: turn latency and platform overhead p50/p99
(`evals.bench_turns` defines them), Update round trip p50/p99 and the part of it the worker's
workflow task took (`evals.bench_updates`), agent frames more than 40 ms late
(send jitter as the caller received them), the stack's CPU and memory per call (/proc), and the
simulator's own loop lag (late frames while it is high are partly the bench's). Writes
bench.md, bench.json and bench.png under `--out`. `--faults` runs `evals.bench_faults` instead.
Figures are reported, never asserted: the exit code says whether the bench ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from rich.console import Console
from temporalio.service import RPCError

from evals.bench_callers import Callers
from evals.bench_report import machine, markdown, plot, step_figures
from evals.bench_stack import BenchStack, Speech, Usage, bench_stack
from evals.bench_updates import update_split
from simulator.caller_audio import CallerAudio
from simulator.persona import PersonaError, ReactivePersona, load_reactive_persona
from slot.devstack import StackError
from slot.settings import REPO_ROOT, Settings, get_settings
from slot.temporal import connect
from workflows.search_attributes import CALL_STATUS, OUTCOME

PERSONA = REPO_ROOT / "evals" / "data" / "bench" / "caller.yaml"
STAGGER_PER_CALL_S = 0.1
RAMP = (10, 25, 50, 100)
FAULT_CALLS = 50
SPEECH_NOTES: dict[str, str] = {
    "embedded": "Embedded models: Whisper tiny.en per segment and Piper, on the stack's cores.",
    "standin": (
        "Stand-ins, each in its own process (not counted): STT through the Deepgram double in "
        "fast mode (recognizes the caller's registered clips, no model), TTS through the "
        "Cartesia double in fast mode (a tone burst per word, at once)."
    ),
}


async def final_states(
    settings: Settings, call_ids: Sequence[str], wait_s: float = 20.0
) -> dict[str, dict[str, str]]:
    """Each call's `CallStatus` and `Outcome` search attributes, once its status is final or
    `wait_s` has passed (the workflow may still be writing its record)."""
    try:
        client = await connect(settings)
    except RuntimeError as error:  # Temporal is down: the bench still reports the rest
        return {call_id: {"status": f"unknown ({error})", "outcome": ""} for call_id in call_ids}
    final = {"completed", "ended", "dropped", "follow_up_scheduled", "no_answer"}

    async def one(call_id: str) -> dict[str, str]:
        handle = client.get_workflow_handle(call_id)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                described = await handle.describe()
            except (RPCError, RuntimeError) as error:
                return {"status": f"unknown ({error})", "outcome": ""}
            found = described.typed_search_attributes
            status = found.get(CALL_STATUS) or ""
            if status in final or time.monotonic() > deadline:
                return {"status": status, "outcome": found.get(OUTCOME) or ""}
            await asyncio.sleep(0.5)

    states = await asyncio.gather(*(one(call_id) for call_id in call_ids))
    return dict(zip(call_ids, states, strict=True))


async def run_step(
    stack: BenchStack, persona: Path, audio: CallerAudio, calls: int
) -> dict[str, Any]:
    """N calls at once on the running stack, and their figures."""
    usage = Usage(stack.pids())
    stop = asyncio.Event()
    watcher = asyncio.create_task(usage.run(stop))
    began = time.monotonic()
    try:
        callers = await Callers.start(stack.settings, persona, audio, calls, STAGGER_PER_CALL_S)
        samples, lag, cpu = (await callers.results()).samples, callers.loop_lag_ms, callers.cpu_s
    finally:
        wall_s = time.monotonic() - began
        stop.set()
        await watcher
    states = await final_states(stack.settings, [s.call_id for s in samples])
    figures = step_figures(
        calls,
        samples,
        wall_s=wall_s,
        cpu_s=usage.cpu_s(),
        rss_growth_mb=usage.rss_growth_mb(),
        rss_peak_mb=usage.rss_peak,
        loop_lag_ms=lag,
        outcomes={call_id: state["outcome"] for call_id, state in states.items()},
    )
    # near 100 % of a core, a caller process's late wake-ups count as the edge's late frames
    figures["simulator_cpu_pct"] = round(100.0 * max(cpu) / wall_s, 1)
    figures["simulator_processes"] = len(cpu)
    figures.update(await update_split(stack.settings, [s.call_id for s in samples]))
    return figures


async def run_speech(
    speech: Speech, ramp: Sequence[int], persona: ReactivePersona, console: Console
) -> dict[str, Any]:
    settings = get_settings()
    audio = CallerAudio(settings.data_dir / "caller-audio")
    with console.status(f"starting the stack ({speech} speech)..."):
        async with bench_stack(speech, persona, audio) as stack:
            console.print(f"stack up ({speech} speech): logs in {stack.stack.logs_dir}")
            await asyncio.to_thread(audio.prepare, [persona])
            steps = []
            for calls in ramp:
                step = await run_step(stack, PERSONA, audio, calls)
                steps.append(step)
                console.print(
                    f"{speech} N={calls}: turns {step['turns']}, overhead p50/p99 "
                    f"{step['overhead_p50_ms']}/{step['overhead_p99_ms']} ms, Update p50/p99 "
                    f"{step['update_p50_ms']}/{step['update_p99_ms']} ms, late frames "
                    f"{step['late_frames']} of {step['frames']}, CPU/call "
                    f"{step['cpu_per_call_pct']} %, booked {step['calls_booked']}/{calls}"
                )
    return {"speech": speech, "speech_note": SPEECH_NOTES[speech], "steps": steps}


async def run_bench(
    speeches: Sequence[Speech], ramp: Sequence[int], out: Path, console: Console
) -> list[Path]:
    persona = load_reactive_persona(PERSONA)
    report: dict[str, Any] = {
        **machine(),
        "persona": PERSONA.relative_to(REPO_ROOT).as_posix(),
        "script": get_settings().default_script,
        "stagger_per_call_s": STAGGER_PER_CALL_S,
        "runs": [],
    }
    for speech in speeches:
        report["runs"].append(await run_speech(speech, ramp, persona, console))
    return await asyncio.to_thread(write_reports, report, out, "bench")


def write_reports(report: dict[str, Any], out: Path, name: str) -> list[Path]:
    """`name`.md, `name`.json and `name`.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.json", out / f"{name}.png"]
    paths[0].write_text(markdown(report), encoding="utf-8")
    paths[1].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(report, paths[2])
    return paths


def _ramp(text: str) -> list[int]:
    try:
        ramp = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--calls wants numbers like 10,25,50: {text!r}") from None
    if not ramp or min(ramp) < 1:
        raise argparse.ArgumentTypeError(f"--calls wants positive numbers: {text!r}")
    return ramp


def _speeches(text: str) -> list[Speech]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [part for part in chosen if part not in get_args(Speech)]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(f"--speech is embedded, standin or both: {text!r}")
    return chosen  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slot bench", description=__doc__)
    parser.add_argument(
        "--calls", type=_ramp, default=None, help="N to ramp (10,25,50,100); --faults: N (50)"
    )
    parser.add_argument("--speech", type=_speeches, default=["standin"])
    parser.add_argument("--faults", action="store_true", help="kill worker, edge, Temporal")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    logging.getLogger("simulator.phone").setLevel(logging.ERROR)  # failed calls are counted
    try:
        if args.faults:
            from evals.bench_faults import run_faults

            calls = args.calls[0] if args.calls else FAULT_CALLS
            paths = asyncio.run(run_faults(args.speech[0], calls, args.out, console))
        else:
            ramp = args.calls or RAMP
            paths = asyncio.run(run_bench(args.speech, ramp, args.out, console))
    except (StackError, PersonaError) as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    for path in paths:
        console.print(f"wrote {path}")
    console.print(paths[0].read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
