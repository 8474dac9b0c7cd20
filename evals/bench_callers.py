"""`slot bench`'s callers, spread over processes of their own.

Every simulated call sends a media frame each 20 ms and times the frames it receives on its
process's one event loop: a call costs its process about 3.5 % of a core, so 100 calls are
more than one Python loop keeps on time, and a late wake-up of the bench would count as a late
frame of the edge. So the bench runs its callers in processes of `CALLERS_PER_PROCESS`, all
reaching the same stack: settings from the environment the bench passes
(`slot.devstack.settings_env`, secrets included, never on a command line), each call started
at the time the bench gave it on the machine's monotonic clock. A process either places one
call per start (the ramp) or, with `--until-stopped`, keeps placing calls back to back until a
line (or the end) on its stdin (`--faults`). It prints one JSON object: the calls' samples,
its loop lag and its CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from asyncio.subprocess import PIPE, Process
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evals.bench_calls import CallPlan, CallSample, LoopLag, run_calls, run_slots
from simulator.caller_audio import CallerAudio
from simulator.persona import load_reactive_persona
from simulator.topics import script_topics
from slot.devstack import settings_env
from slot.settings import Settings, get_settings

CALLERS_PER_PROCESS = 15
"""Measured: a bench caller costs its process about 3.5 % of a core (frames out every 20 ms,
frames and events in), so 15 keep each loop about half busy."""
START_AFTER_S = 3.0
"""The processes' imports, before the first call."""


@dataclass
class Callers:
    """The bench's caller processes for one step, and what they measured."""

    processes: list[Process]
    samples: list[CallSample]
    loop_lag_ms: list[float]
    cpu_s: list[float]

    @classmethod
    async def start(
        cls,
        settings: Settings,
        persona: Path,
        audio: CallerAudio,
        calls: int,
        stagger_s: float,
        *,
        until_stopped: bool = False,
    ) -> Callers:
        """`calls` callers, the i-th starting i x `stagger_s` s from now (plus start-up)."""
        env = {**os.environ, **settings_env(settings)}
        shares = -(-calls // CALLERS_PER_PROCESS)
        began = time.monotonic() + START_AFTER_S
        processes = []
        for share in range(shares):
            starts = [i * stagger_s for i in range(share, calls, shares)]
            argv = ["--persona", str(persona), "--caller-audio", str(audio.folder)]
            argv += ["--began", repr(began), "--starts", ",".join(f"{s:.3f}" for s in starts)]
            argv += ["--until-stopped"] if until_stopped else []
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "evals.bench_callers",
                    *argv,
                    stdin=PIPE,
                    stdout=PIPE,
                    env=env,
                )
            )
        return cls(processes, [], [], [])

    def stop(self) -> None:
        """Callers placing calls back to back place no more (those in progress play out)."""
        for process in self.processes:
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.write(b"stop\n")
                process.stdin.close()

    async def results(self) -> Callers:
        outputs = await asyncio.gather(*(p.communicate() for p in self.processes))
        for process, (out, _) in zip(self.processes, outputs, strict=True):
            if process.returncode != 0:
                raise RuntimeError(f"a bench caller process exited with {process.returncode}")
            share = json.loads(out)
            self.samples += [CallSample.from_json(sample) for sample in share["samples"]]
            self.loop_lag_ms += share["loop_lag_ms"]
            self.cpu_s.append(share["cpu_s"])
        return self


async def _stopped(stop: asyncio.Event) -> None:
    await asyncio.to_thread(sys.stdin.readline)
    stop.set()


async def run_share(
    persona: Path, caller_audio: Path, starts: Sequence[float], began: float, until_stopped: bool
) -> dict[str, Any]:
    settings = get_settings()
    topics = script_topics(settings.default_script, settings.playbooks_dir)
    plan = CallPlan(settings, load_reactive_persona(persona), CallerAudio(caller_audio), topics)
    lag = LoopLag()
    done, stop = asyncio.Event(), asyncio.Event()
    probe = asyncio.create_task(lag.run(done))
    cpu = time.process_time()
    try:
        if until_stopped:
            listener = asyncio.create_task(_stopped(stop))
            samples = await run_slots(plan, starts, began, stop)
            listener.cancel()
        else:
            samples = await run_calls(plan, starts, began)
    finally:
        done.set()
        await probe
    return {
        "samples": [asdict(sample) for sample in samples],
        "loop_lag_ms": lag.lag_ms,
        "cpu_s": time.process_time() - cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", type=Path, required=True)
    parser.add_argument("--caller-audio", type=Path, required=True)
    parser.add_argument("--began", type=float, required=True, help="monotonic time of s 0")
    parser.add_argument("--starts", required=True, help="each caller's start, s: 0,0.1,...")
    parser.add_argument("--until-stopped", action="store_true", help="calls back to back")
    args = parser.parse_args(argv)
    logging.getLogger("simulator.phone").setLevel(logging.ERROR)  # the bench counts failures
    starts = [float(start) for start in args.starts.split(",")]
    share = asyncio.run(
        run_share(args.persona, args.caller_audio, starts, args.began, args.until_stopped)
    )
    print(json.dumps(share), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
