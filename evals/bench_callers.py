"""One share of `slot bench`'s callers, in a process of its own.

Every simulated call sends a media frame each 20 ms and times the frames it receives on its
process's one event loop; at 100 calls that is more than one Python loop keeps on time, and a
late wake-up of the bench would count as a late frame of the edge. So the bench spreads its
callers over processes (`CALLERS_PER_PROCESS` each), all reaching the same stack: settings
from the environment the bench passes (`slot.devstack.settings_env`), each call starting at
the time the bench gave it on the shared monotonic clock. Prints one JSON object: the calls'
samples, its loop lag and its CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evals.bench_calls import CallPlan, LoopLag, run_calls
from simulator.caller_audio import CallerAudio
from simulator.persona import load_reactive_persona
from simulator.topics import script_topics
from slot.settings import get_settings

CALLERS_PER_PROCESS = 15
"""Measured: a bench caller costs its process 2.5-3.5 % of a core (frames out every 20 ms,
frames and events in), so 15 keep each loop about half busy."""


async def run_share(
    persona: Path, caller_audio: Path, starts: Sequence[float], began: float
) -> dict[str, Any]:
    settings = get_settings()
    topics = script_topics(settings.default_script, settings.playbooks_dir)
    plan = CallPlan(settings, load_reactive_persona(persona), CallerAudio(caller_audio), topics)
    lag = LoopLag()
    stop = asyncio.Event()
    probe = asyncio.create_task(lag.run(stop))
    cpu = time.process_time()
    try:
        samples = await run_calls(plan, starts, began)
    finally:
        stop.set()
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
    parser.add_argument("--starts", required=True, help="each call's start, s: 0,0.1,...")
    args = parser.parse_args(argv)
    logging.getLogger("simulator.phone").setLevel(logging.ERROR)  # the bench counts failures
    starts = [float(start) for start in args.starts.split(",")]
    share = asyncio.run(run_share(args.persona, args.caller_audio, starts, args.began))
    print(json.dumps(share), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
