"""Frame timing of good calls with and without a flood, on the embedded stack (figures only).

`python -m evals.edge_flood_bench [--calls N] [--no-limits]` starts Temporal, a worker and the
edge (`slot dev`'s processes) on free ports, places N good calls one after the other on a quiet
edge, then N more while other clients flood it the way the probe in issue 9 did (twelve clients
sending 10 MB messages over and over, 50 sockets that never start, two sending junk of the
largest size the edge reads) with upgrades signed by the edge's Twilio token (a leaked token:
the worst case the limits are for), then N more under the same flood unsigned (an attacker
without the token, refused at the upgrade), and prints per condition: the good calls' frame
jitter (each
frame's gap after the previous one minus 20 ms) median / p99 / max, frames later than 40 ms,
/healthz latency, the edge's resident memory and how the flood sockets ended. `--no-limits` runs
the same against an edge whose limits are lifted, to show what they prevent. `--parse` times
one message's parsing instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import timeit
from asyncio.subprocess import PIPE
from collections import Counter
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from evals.edge_flood import (
    LATE_JITTER_MS,
    Behaviour,
    GoodCall,
    Idle,
    Junk,
    Outcome,
    Oversized,
    Wave,
    good_call,
    media_message,
    tally,
)
from media_edge import twilio_protocol as tp
from media_edge.twiml import stream_url
from simulator.phone import edge_access
from slot.credentials import TWILIO_AUTH_TOKEN_ENV
from slot.devstack import Stack
from slot.settings import Settings

OVERSIZED = 10_000_000
IDLE_SOURCES = 5
IDLE_PER_SOURCE = 10
FLOODING = "flooding"
"""The flood process's first line: good calls wait for it (its start-up takes seconds)."""
STARTUP_S = 300.0
"""Patience for the stack on a busy machine (the edge loads and warms its speech models)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Probe:
    """/healthz latency and the edge's memory, sampled while the good calls run."""

    health_ms: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    async def run(self, edge_url: str, pid: int, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=edge_url, timeout=60) as http:
            while not stop.is_set():
                started = time.perf_counter()
                await http.get("/healthz")
                self.health_ms.append((time.perf_counter() - started) * 1000.0)
                self.rss_mb.append(rss_mb(pid))
                await asyncio.sleep(0.2)


async def _repeat(
    url: str, source: str, behaviour: Behaviour, ended: list[Outcome], auth_token: str | None
) -> None:
    while True:
        ended += await Wave(url, source, behaviour, auth_token=auth_token).outcomes()


async def flood(url: str, ended: list[Outcome], auth_token: str | None) -> None:
    """The probe's flood, each client starting again as soon as the edge ends its socket,
    signed with `auth_token` or unsigned (None); runs until cancelled."""

    def client(source: str, behaviour: Behaviour) -> Coroutine[Any, Any, None]:
        return _repeat(url, source, behaviour, ended, auth_token)

    clients = [client(f"127.0.2.{i}", Oversized(OVERSIZED)) for i in range(12)]
    clients += [
        client(f"127.0.3.{s}", Idle()) for s in range(IDLE_SOURCES) for _ in range(IDLE_PER_SOURCE)
    ]
    clients += [client(f"127.0.4.{i}", Junk(16 * 1024)) for i in range(2)]
    await asyncio.gather(*clients)


@dataclass
class Condition:
    name: str
    calls: list[GoodCall]
    probe: Probe
    flood: Counter[str]
    edge_cpu: float
    """The edge's CPU time over the wall time of the calls (1.0: one core busy)."""

    def line(self) -> str:
        jitter = [j for call in self.calls for j in call.jitter_ms()]
        late = sum(1 for j in jitter if j > LATE_JITTER_MS)
        frames = sum(len(call.arrivals) for call in self.calls)
        health = self.probe.health_ms
        return (
            f"{self.name:8} calls {len(self.calls)} frames {frames} | jitter ms "
            f"median {statistics.median(jitter):.2f} p99 {percentile(jitter, 0.99):.2f} "
            f"max {max(jitter):.1f} late(>{LATE_JITTER_MS:.0f} ms) {late} | healthz ms "
            f"median {statistics.median(health):.1f} max {max(health):.1f} | edge RSS MB "
            f"max {max(self.probe.rss_mb):.0f} | edge CPU {self.edge_cpu:.0%} of a core"
        )


async def flood_until_terminated(url: str) -> None:
    """`--flood URL`: the flood in a process of its own (so its load never delays the good
    calls' own client), until SIGTERM; says `flooding` once under way, then how its sockets
    ended, as JSON. Signed with TWILIO_AUTH_TOKEN when the environment has it (never on the
    command line)."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ended: list[Outcome] = []
    flooding = asyncio.create_task(flood(url, ended, os.environ.get(TWILIO_AUTH_TOKEN_ENV)))
    print(FLOODING, flush=True)
    await stop.wait()
    flooding.cancel()
    await asyncio.gather(flooding, return_exceptions=True)
    print(json.dumps(tally(ended)), flush=True)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Flood = Literal["none", "signed", "unsigned"]


async def measure(name: str, settings: Settings, pid: int, calls: int, flood: Flood) -> Condition:
    token = edge_access(settings)["auth_token"] or ""
    flooder = None
    if flood != "none":
        env = {k: v for k, v in os.environ.items() if k != TWILIO_AUTH_TOKEN_ENV}
        if flood == "signed":
            env[TWILIO_AUTH_TOKEN_ENV] = token
        url = stream_url(settings.edge_url)
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "evals.edge_flood_bench", "--flood", url, stdout=PIPE, env=env
        )
        assert flooder.stdout is not None
        if (await flooder.stdout.readline()).decode().strip() != FLOODING:
            raise RuntimeError("the flood process did not start")
    stop = asyncio.Event()
    probe = Probe()
    probing = asyncio.create_task(probe.run(settings.edge_url, pid, stop))
    cpu_before, started = cpu_s(pid), time.monotonic()
    try:
        done = [await good_call(settings.edge_url, token) for _ in range(calls)]
    finally:
        stop.set()
        await probing
        ended: Counter[str] = Counter()
        if flooder is not None:
            flooder.terminate()
            out, _ = await flooder.communicate()
            ended = Counter(json.loads(out or b"{}"))
    cpu_share = (cpu_s(pid) - cpu_before) / (time.monotonic() - started)
    return Condition(name, done, probe, ended, cpu_share)


async def bench(calls: int, limits: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="slot-flood-") as data_dir:
        overrides: dict[str, object] = {
            "data_dir": Path(data_dir),
            "edge_port": free_port(),
            "edge_internal_port": free_port(),
            "temporal_address": f"127.0.0.1:{free_port()}",
            "temporal_ui_port": free_port(),
            "reprompt_after_s": 120.0,
        }
        if not limits:
            overrides |= {
                "media_max_message_bytes": 16 * 1024 * 1024,
                "media_start_timeout_s": 3600.0,
            }
        settings = Settings(**overrides)  # type: ignore[arg-type]
        stack = Stack(settings, headless=True, with_simulator=False)
        await stack.start(timeout_s=STARTUP_S)
        try:
            settings = stack.settings
            edge = stack.processes["edge"].process
            assert edge is not None
            quiet = await measure("quiet", settings, edge.pid, calls, "none")
            print(quiet.line(), flush=True)
            floods: list[Flood] = ["signed", "unsigned"]
            for flood in floods:
                loud = await measure(flood, settings, edge.pid, calls, flood)
                print(loud.line(), flush=True)
                print(f"{flood} flood sockets ended: {dict(loud.flood)}", flush=True)
            async with httpx.AsyncClient(base_url=settings.edge_url, timeout=60) as http:
                print(f"/healthz after: {(await http.get('/healthz')).json()}")
        finally:
            await stack.stop()


async def _hop_us(raw: str, n: int = 2000) -> float:
    """What moving the parse off the loop would cost: a round trip to a thread, per message."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as thread:
        started = time.perf_counter()
        for _ in range(n):
            await loop.run_in_executor(thread, tp.parse_message, raw)
        return (time.perf_counter() - started) / n * 1e6


def parse_figures() -> None:
    """Parsing one message on the loop (best of 5 runs, in us): a Twilio media frame and the
    largest junk the edge reads; and what one 10 MB message cost before the limit."""
    frame = media_message("MZ" + "0" * 32, 12)
    junk = '{"event":"media","x":"' + "a" * (16 * 1024 - 25) + '"}'

    def parse(raw: str) -> None:
        with contextlib.suppress(tp.ProtocolError):
            tp.parse_message(raw)

    for name, raw, n in (("media frame", frame, 20000), ("16 KiB junk", junk, 2000)):
        us = min(timeit.repeat(functools.partial(parse, raw), number=n, repeat=5)) / n * 1e6
        print(f"{name} ({len(raw)} bytes): {us:.1f} us")
    print(f"the same media frame parsed in a thread, awaited: {asyncio.run(_hop_us(frame)):.1f} us")
    big = media_message("MZ", 1, "A" * OVERSIZED)
    started = time.perf_counter()
    parse(big)
    print(f"10 MB message (before the limit): {(time.perf_counter() - started) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--no-limits", action="store_true")
    parser.add_argument("--parse", action="store_true")
    parser.add_argument("--flood", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        asyncio.run(flood_until_terminated(args.flood))
        return
    if args.parse:
        parse_figures()
        return
    asyncio.run(bench(args.calls, limits=not args.no_limits))


if __name__ == "__main__":
    main()
