"""The stack `slot bench` measures: `slot dev`'s processes on free ports, with a speech choice.

- `embedded`: the default stack (Whisper per segment, Piper), so the figures include the
  embedded models' time on the same cores;
- `standin`: speech through wire-protocol doubles of the cloud services, fast enough that what
  is left is Slot's own, each in a process of its own so its CPU is not counted as Slot's.
  STT: `SLOT_STT=deepgram` against the Deepgram double in its fast mode (it recognizes the
  caller's registered clips by their frames, `simulator.known_lines`). TTS: `SLOT_TTS=cartesia`
  against the Cartesia double in its fast mode (a tone burst per word, at once).

`Usage` samples the stack's processes (and their children) from /proc: CPU seconds and
resident memory, for the per-call figures.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
from asyncio.subprocess import PIPE, Process
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evals.edge_flood_bench import free_port
from simulator.caller_audio import CallerAudio
from simulator.known_lines import KnownLines
from simulator.persona import ReactivePersona
from slot.devstack import Stack
from slot.settings import REPO_ROOT, Settings

Speech = Literal["embedded", "standin"]
DEEPGRAM_KEY_ENV = "DEEPGRAM_API_KEY"
CARTESIA_KEY_ENV = "CARTESIA_API_KEY"
STARTUP_S = 300.0
"""Patience for the stack on a busy machine (the edge loads and warms its speech models)."""


def clips(persona: ReactivePersona, audio: CallerAudio) -> list[tuple[str, bytes]]:
    """Every clip the bench caller may say, as the simulator will send it (mu-law)."""
    audio.prepare([persona])
    said = []
    for replies in persona.answers.values():
        for reply in replies:
            if reply.say.strip():
                said.append((reply.say, b"".join(audio.reply_frames(persona.voice, reply))))
    return said


@dataclass
class SpeechStandins:
    """The doubles a `standin` run starts, and the settings that point the edge at them."""

    overrides: dict[str, object] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()


async def _double(module: str, *args: str) -> tuple[Process, str]:
    """A wire-protocol double in its own process, on a free port; its base URL once serving."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "--port", str(port), *args, stdout=PIPE, cwd=REPO_ROOT
    )
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode()
    if " double at " not in line:
        process.kill()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return process, f"http://127.0.0.1:{port}"


def _key_option(key: str) -> str:
    """`--key=K` in one word: a random key may begin with "-", which argparse would read as an
    option of its own if the key came as the next word."""
    return f"--key={key}"


async def stt_standin(
    folder: Path, lines: list[tuple[str, bytes]], key: str | None = None
) -> SpeechStandins:
    """The Deepgram double in fast mode, in its own process, knowing the caller's clips."""
    known = folder / "known-lines.json"
    KnownLines().dump(known, lines)
    key = key or secrets.token_urlsafe(24)
    process, url = await _double(
        "simulator.deepgram_double", _key_option(key), "--known-lines", str(known)
    )
    os.environ[DEEPGRAM_KEY_ENV] = key  # the edge inherits it; only ever the double's own key
    return SpeechStandins({"stt": "deepgram", "deepgram_url": url}, [process])


async def tts_standin(key: str | None = None) -> SpeechStandins:
    """The Cartesia double in its fast mode (a tone burst per word, exactly timed, at once), in
    its own process: `SLOT_TTS=cartesia` against it."""
    key = key or secrets.token_urlsafe(24)
    process, url = await _double("simulator.cartesia_double", _key_option(key), "--mode", "fast")
    os.environ[CARTESIA_KEY_ENV] = key  # the edge inherits it; only ever the double's own key
    return SpeechStandins({"tts": "cartesia", "cartesia_url": url}, [process])


@dataclass
class BenchStack:
    stack: Stack
    settings: Settings
    speech: Speech
    standins: list[SpeechStandins]

    def pids(self) -> dict[str, int]:
        return self.stack.pids()


@asynccontextmanager
async def bench_stack(
    speech: Speech, persona: ReactivePersona, audio: CallerAudio
) -> AsyncIterator[BenchStack]:
    """Temporal, worker and edge on free ports in a fresh data folder, speech as chosen."""
    with tempfile.TemporaryDirectory(prefix="slot-bench-") as data_dir:
        folder = Path(data_dir)
        standins: list[SpeechStandins] = []
        overrides: dict[str, object] = {
            "data_dir": folder,
            "edge_port": free_port(),
            "edge_internal_port": free_port(),
            "temporal_address": f"127.0.0.1:{free_port()}",
            "temporal_ui_port": free_port(),
            "media_max_streams": 1000,
            "media_max_streams_per_source": 1000,
        }
        try:
            if speech == "standin":
                lines = await asyncio.to_thread(clips, persona, audio)
                standins.append(await stt_standin(folder, lines))
                standins.append(await tts_standin())  # the first is stopped if this fails
                for standin in standins:
                    overrides |= standin.overrides
            settings = Settings(**overrides)  # type: ignore[arg-type]
            stack = Stack(settings, headless=True, with_simulator=False)
            await stack.start(timeout_s=STARTUP_S)
            try:
                yield BenchStack(stack, stack.settings, speech, standins)
            finally:
                await stack.stop()
        finally:
            for standin in standins:
                await standin.stop()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def _cpu_rss(pid: int) -> tuple[float, float]:
    """CPU seconds and resident MB of one process (0, 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next((int(x.split()[1]) / 1024.0 for x in status.splitlines() if x[:6] == "VmRSS:"), 0)
    return cpu, float(rss)


@dataclass
class Usage:
    """CPU and memory of named processes and their children, sampled while calls run."""

    pids: dict[str, int]
    cpu_start: dict[str, float] = field(default_factory=dict)
    cpu_end: dict[str, float] = field(default_factory=dict)
    rss_peak: dict[str, float] = field(default_factory=dict)
    rss_start: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, tuple[float, float]]:
        totals = {}
        for name, pid in self.pids.items():
            parts = [_cpu_rss(p) for p in _tree(pid)]
            totals[name] = (sum(c for c, _ in parts), sum(r for _, r in parts))
        return totals

    def sample(self) -> None:
        for name, (cpu, rss) in self._read().items():
            self.cpu_start.setdefault(name, cpu)
            self.rss_start.setdefault(name, rss)
            self.cpu_end[name] = cpu
            self.rss_peak[name] = max(self.rss_peak.get(name, 0.0), rss)

    async def run(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.sample)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
        await asyncio.to_thread(self.sample)

    def cpu_s(self) -> dict[str, float]:
        return {name: self.cpu_end[name] - self.cpu_start[name] for name in self.cpu_end}

    def rss_growth_mb(self) -> dict[str, float]:
        return {name: self.rss_peak[name] - self.rss_start[name] for name in self.rss_peak}
