"""The embedded dev stack: Temporal dev server, worker, media edge and phone simulator.

Each part is a child process with its own log file under the data folder, so a crash of one is
visible and the others keep running. Parts that already answer at their configured address are
reused, not started twice. `slot dev` supervises what it started (`Stack.supervise`): a worker,
edge or simulator that dies is restarted, and so is the Temporal dev server, on the same SQLite
file, so calls in flight carry on; a part that keeps crashing stops the stack, saying which.
The stack runs with authentication on, as production does: unless the environment sets them, it
generates `TWILIO_AUTH_TOKEN` (the simulator signs with it as Twilio does) and
`SLOT_INTERNAL_TOKEN` afresh for each run, kept in the data folder (mode 0600) only so that a
later `slot demo` can join the running stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from slot.codec_server import codec_url, ui_codec_endpoint
from slot.database import SchemaBehind, check_at_start
from slot.dev_secrets import API_TOKEN_FILE, use_dev_secrets
from slot.settings import REPO_ROOT, Settings
from slot.temporal import (
    TemporalDevServer,
    TemporalDevServerError,
    connect,
    ensure_search_attributes,
    temporal_is_running,
)

ReadyCheck = Callable[[], Awaitable[bool]]

SUPERVISE_EVERY_S = 1.0
CRASH_LOOP = (3, 60.0)
"""A part that dies this many times within this many seconds is not restarted again."""


@dataclass
class Crashes:
    """When a part of the stack died, to tell a crash from a crash loop."""

    times: list[float] = field(default_factory=list)

    def too_many(self, now: float) -> bool:
        """Count a crash at `now`; whether it makes a crash loop (see CRASH_LOOP)."""
        limit, window = CRASH_LOOP
        self.times = [t for t in self.times if now - t < window] + [now]
        return len(self.times) >= limit


class StackError(RuntimeError):
    """A part of the stack did not come up; the message says which and where its log is."""


SECRETS_FILE = "dev-secrets.json"
_SECRET_FIELDS = {"twilio_auth_token": "TWILIO_AUTH_TOKEN", "internal_token": "SLOT_INTERNAL_TOKEN"}


def api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as `SLOT_*` variables (secrets under their own names), so child processes
    see exactly this configuration."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            env[_SECRET_FIELDS.get(name, f"SLOT_{name.upper()}")] = value.get_secret_value()
            continue
        env[f"SLOT_{name.upper()}"] = str(value)
    return env


def _stored_secrets(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def with_dev_secrets(settings: Settings, *, join_running: bool) -> Settings:
    """`settings` with both secrets: those of the environment, else the running stack's (when
    joining one), else new ones, written to the data folder for a later run to join."""
    missing = [name for name in _SECRET_FIELDS if getattr(settings, name) is None]
    if not missing:
        return settings
    path = settings.data_dir / SECRETS_FILE
    if join_running:
        stored = _stored_secrets(path)
        if any(not stored.get(name) for name in missing):
            raise StackError(
                f"parts of a dev stack are running, but its secrets ({path}) are unreadable: "
                "stop them, or set TWILIO_AUTH_TOKEN and SLOT_INTERNAL_TOKEN"
            )
    else:
        stored = {name: secrets.token_urlsafe(24) for name in _SECRET_FIELDS}
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(stored, file)
    return settings.model_copy(update={name: SecretStr(stored[name]) for name in missing})


@dataclass
class ManagedProcess:
    """One child process of the stack, with its log file and a readiness check."""

    name: str
    argv: list[str]
    log_path: Path
    ready: ReadyCheck
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    crashes: Crashes = field(default_factory=Crashes)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is not None:
            self._log.close()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StackError(
                    f"{self.name} exited with code {self.process.returncode}; see {self.log_path}"
                )
            if await self.ready():
                return
            await asyncio.sleep(0.1)
        raise StackError(f"{self.name} not ready after {timeout_s:.0f} s; see {self.log_path}")

    @property
    def exit_code(self) -> int | None:
        """The code it exited with, or None while it runs."""
        return self.process.poll() if self.process is not None else None

    def kill(self) -> None:
        """SIGKILL, as a crash would: used by the durability test."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


async def _never() -> bool:
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def http_ok(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class Stack:
    """Starts (or reuses) every part Slot needs for a call, and stops what it started."""

    def __init__(
        self,
        settings: Settings,
        *,
        headless: bool = False,
        with_simulator: bool = True,
        with_api: bool = False,
    ) -> None:
        self.settings = use_dev_secrets(settings)
        self.headless = headless
        self.with_simulator = with_simulator
        self.with_api = with_api
        """The HTTP API (`slot dev` runs it; the demo and the evaluations do not need it)."""
        self.logs_dir = settings.data_dir / "logs"
        self.temporal: TemporalDevServer | None = None
        self._temporal_crashes = Crashes()
        self._temporal_answering = True
        self.processes: dict[str, ManagedProcess] = {}
        self.reused: list[str] = []
        self.notes: list[str] = []
        """What the stack did besides starting processes, for the user (e.g. seeding the KB)."""

    def _python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def _process(self, name: str, argv: list[str], ready: ReadyCheck) -> ManagedProcess:
        return ManagedProcess(
            name=name,
            argv=argv,
            log_path=self.logs_dir / f"{name}.log",
            ready=ready,
            env=settings_env(self.settings),
        )

    async def live_worker_pids(self) -> set[int]:
        """Pids of workers on this host that poll the call task queue and are still alive.

        The server remembers pollers for minutes, so a killed worker still shows up there:
        its identity (`pid@host`, the SDK's default) tells a live one from a dead one.
        """
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        try:
            client = await connect(self.settings)
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.settings.temporal_namespace,
                    task_queue=TaskQueue(name=self.settings.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
        except Exception:
            return set()
        pids = set()
        for poller in response.pollers:
            pid_text, _, host = poller.identity.partition("@")
            if host == socket.gethostname() and pid_text.isdigit() and _alive(int(pid_text)):
                pids.add(int(pid_text))
        return pids

    def _worker(self) -> ManagedProcess:
        worker = self._process("worker", self._python(str(REPO_ROOT / "worker.py")), _never)

        async def polling() -> bool:
            return (
                worker.process is not None and worker.process.pid in await self.live_worker_pids()
            )

        worker.ready = polling
        return worker

    async def _watch_reused_temporal(self, say: Callable[[str], None]) -> None:
        """A Temporal this stack did not start cannot be restarted by it: say when it goes."""
        address = self.settings.temporal_address
        answering = await temporal_is_running(address)
        if answering == self._temporal_answering:
            return
        self._temporal_answering = answering
        if answering:
            say(f"Temporal at {address} answers again")
        else:
            say(f"Temporal at {address} is not answering (not started by this stack)")

    async def start(self, timeout_s: float = 60.0) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if await temporal_is_running(settings.temporal_address):
            self.reused.append("temporal")
            await ensure_search_attributes(await connect(settings))
        else:
            self.temporal = TemporalDevServer(
                address=settings.temporal_address,
                ui_port=settings.temporal_ui_port,
                db_path=settings.data_dir / "temporal.db",
                log_path=self.logs_dir / "temporal.log",
                headless=self.headless,
                ui_codec_endpoint=ui_codec_endpoint(settings),
            )
            await self.temporal.start()

        edge_health = f"http://{settings.edge_host}:{settings.edge_port}/healthz"
        sim_health = f"http://{settings.simulator_host}:{settings.simulator_port}/healthz"
        running = await http_ok(edge_health) or await http_ok(sim_health)
        running = running or bool(await self.live_worker_pids())
        self.settings = settings = with_dev_secrets(settings, join_running=running)
        # migrated here, once, before the worker and the API open the database together
        try:
            await asyncio.to_thread(check_at_start, settings.database_url)
        except SchemaBehind as error:
            raise StackError(str(error)) from None
        wanted: list[ManagedProcess] = [
            self._worker(),
            self._process(
                "edge", self._python("-m", "media_edge.app"), lambda: http_ok(edge_health)
            ),
        ]
        if not self.headless:
            codec_health = f"{codec_url(settings)}/healthz"
            wanted.append(
                self._process(
                    "codec", self._python("-m", "slot.codec_server"), lambda: http_ok(codec_health)
                )
            )
        if self.with_api:
            api_health = f"{api_url(settings)}/healthz"
            wanted.append(
                self._process(
                    "api", self._python("-m", "slot.api.server"), lambda: http_ok(api_health)
                )
            )
        if self.with_simulator:
            wanted.append(
                self._process(
                    "simulator",
                    self._python("-m", "simulator.twilio_api"),
                    lambda: http_ok(sim_health),
                )
            )
        for process in wanted:
            if process.name == "worker":
                if await self.live_worker_pids():
                    self.reused.append("worker")
                    continue
                await self.seed_knowledge()
            elif await process.ready():
                self.reused.append(process.name)
                continue
            process.start()
            self.processes[process.name] = process
        try:
            await asyncio.gather(*(p.wait_ready(timeout_s) for p in self.processes.values()))
        except BaseException:
            await self.stop()
            raise

    async def seed_knowledge(self) -> None:
        """Ingest the default script's shipped documents when the knowledge base is empty.

        Runs before the worker starts: Qdrant's local mode lets one process open its folder,
        and from then on that process is the worker. A failure costs the knowledge tier, not
        the stack.
        """
        settings = self.settings
        folder = REPO_ROOT / "knowledge" / settings.default_script
        if not folder.is_dir():
            return

        def seed() -> str | None:
            from activities.knowledge_base import open_knowledge_base

            with open_knowledge_base(settings) as kb:
                if kb.count() > 0:
                    return None
                report = kb.ingest([folder], settings.model_cache_path)
                return f"knowledge base: {report.chunks} passages from {folder} ingested"

        try:
            note = await asyncio.to_thread(seed)
        except Exception as error:
            note = f"knowledge base not seeded ({type(error).__name__}: {error})"
        if note:
            self.notes.append(note)

    async def restart_worker(self, timeout_s: float = 60.0) -> None:
        """Start a fresh worker process (after the old one was killed)."""
        await self.restart("worker", timeout_s)

    async def restart(self, name: str, timeout_s: float = 60.0) -> None:
        """Start `name` again (after it died), and wait until it is ready."""
        process = self.processes[name]
        process.stop()
        process.start()
        await process.wait_ready(timeout_s)

    def pids(self) -> dict[str, int]:
        """The processes this stack started, by name."""
        pids = {n: p.process.pid for n, p in self.processes.items() if p.process is not None}
        if self.temporal is not None and self.temporal.process is not None:
            pids["temporal"] = self.temporal.process.pid
        return pids

    async def supervise(self, say: Callable[[str], None], timeout_s: float = 120.0) -> None:
        """Restart whatever this stack started and has died, saying so; `StackError` for a
        part that keeps crashing (or cannot come back)."""
        now = time.monotonic()
        temporal = self.temporal
        if temporal is not None and temporal.process is not None:
            code = temporal.process.poll()
            if code is not None:
                say(f"Temporal dev server exited ({code}); restarting it on {temporal.db_path}")
                if self._temporal_crashes.too_many(now):
                    raise StackError(f"Temporal keeps crashing; see {temporal.log_path}")
                await temporal.start(timeout_s)
                say(f"Temporal dev server is back (pid {temporal.process.pid})")
        elif "temporal" in self.reused:
            await self._watch_reused_temporal(say)
        for name, process in self.processes.items():
            code = process.exit_code
            if code is None:
                continue
            say(f"{name} exited ({code}); restarting it (log {process.log_path})")
            if process.crashes.too_many(now):
                raise StackError(f"{name} keeps crashing; see {process.log_path}")
            await self.restart(name, timeout_s)
            assert process.process is not None
            say(f"{name} restarted (pid {process.process.pid})")

    async def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()
        if self.temporal is not None:
            await self.temporal.stop()
            self.temporal = None

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()


async def run_dev(settings: Settings, *, headless: bool = False) -> int:
    """`slot dev`: bring the stack up, say where everything is, and stop it all on Ctrl-C."""
    from rich.console import Console

    console = Console()
    stack = Stack(settings, headless=headless, with_api=True)
    with console.status("starting Temporal, worker, media edge, API and phone simulator..."):
        try:
            await stack.start()
        except StackError as error:
            await stack.stop()  # what it did start (Temporal, say) must not outlive it
            console.print(f"[red]error:[/] {error}")
            return 1
    for name in stack.reused:
        console.print(f"[dim]reusing the {name} already running[/]")
    for note in stack.notes:
        console.print(f"[dim]{note}[/]")
    console.print(f"Temporal      {settings.temporal_address}  (Web UI {settings.temporal_ui_url})")
    settings = stack.settings
    if not headless:
        console.print(f"codec server  {codec_url(settings)}  (the Web UI decrypts call data)")
    console.print(
        f"media edge    {settings.edge_url}  (Twilio webhook {settings.edge_url}/twilio/voice)"
    )
    console.print(
        f"edge internal {settings.edge_internal_url}  (say, events: bearer SLOT_INTERNAL_TOKEN)"
    )
    console.print(f"simulator     {settings.twilio_base}  (Twilio REST API, locally)")
    console.print(
        f"api           {api_url(settings)}  (docs {api_url(settings)}/docs; bearer token in "
        f"{settings.data_dir / API_TOKEN_FILE})"
    )
    redis_at = urlsplit(settings.redis_url or "")  # never its password
    shared = f"Redis at {redis_at.hostname}:{redis_at.port or 6379}" if settings.redis_url else ""
    shared = shared or "in each process (no Redis)"
    console.print(f"pace, events  {shared}  (slot watch CALL_ID | --campaign ID)")
    console.print(f"logs          {stack.logs_dir}")
    pids = ", ".join(f"{name} {pid}" for name, pid in stack.pids().items())
    console.print(f"processes     {pids or 'none started here'}")
    console.print("[bold]ready[/] — Ctrl-C stops everything")

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    code = 0
    try:
        while not stopping.is_set():
            try:
                await stack.supervise(lambda line: console.print(f"[yellow]{line}[/]"))
            except (StackError, TemporalDevServerError) as error:
                console.print(f"[red]error:[/] {error}; stopping the stack")
                code = 1
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=SUPERVISE_EVERY_S)
    finally:
        with console.status("stopping..."):
            await stack.stop()
    console.print("stopped")
    return code
