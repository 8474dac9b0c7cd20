"""Shared fixtures: one real Temporal dev server per test process, on a free loopback port.

The suite runs on pytest-xdist workers (see `[tool.pytest.ini_options]`): most of its time is
simulated calls waiting on the clock, so several run at once. Each worker is its own process
with its own Temporal dev server, data folders (under its own `tmp_path_factory` base) and
ports, so nothing is shared between workers but the cores.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from slot.dev_secrets import use_dev_secrets
from slot.settings import Settings
from slot.temporal import TemporalDevServer, connect

WORKERS = 5
"""xdist workers for a run of more than one file (PYTEST_XDIST_AUTO_NUM_WORKERS overrides it).
A simulated call mostly waits on the clock: with four test processes the suite kept 1.5 of
the 2 cores busy on average (718 s of CPU in a 471 s run); with five it took 405 s instead of
432-457 s (same machine, one run each). More adds load, and a whole call under heavy load can
miss its caller's patience (a hang-up grace of 5-15 s)."""

SLOWEST_FIRST = (
    "tests/integration/test_long_call.py::"
    "test_a_2500_turn_call_answers_every_turn_over_several_runs_and_records_them_all",
    "tests/integration/test_campaign.py::test_a_thousand_leads_continue_as_new",
    "tests/integration/test_end_to_end.py",
    "tests/integration/test_two_boxes.py",
    "tests/integration/test_campaign_run.py",
    "tests/integration/test_router_call.py",
    "tests/integration/test_turn_taking.py",
    "tests/integration/test_bench.py",
    "tests/integration/test_cloud_speech_call.py",
    "tests/integration/test_cartesia_tts.py",
    "tests/integration/test_telephony.py",
    "tests/integration/test_simulator.py",
    "tests/integration/test_eval_calls.py",
    "tests/unit/test_replay_script.py",
    "tests/integration/test_replay_script.py",
    "tests/integration/test_end_to_end.py::test_demo_command_reaches_booked_and_reports_every_stage",
    "tests/integration/test_dev_stack.py::test_slot_dev_restarts_a_crashed_worker_edge_or_temporal",
    "tests/integration/test_dev_stack.py",
    "tests/integration/test_outages.py",
    "tests/test_code_quality.py",
    "tests/integration/test_replay.py",
    "tests/integration/test_edge_bad_input.py",
    "tests/integration/test_call_workflow.py",
    "tests/integration/test_long_call.py",
    "tests/integration/test_edge_auth.py",
    "tests/integration/test_edge_limits.py",
    "tests/integration/test_payload_encryption.py",
    "tests/integration/test_api.py",
    "tests/integration/test_campaign.py",
    "tests/integration/test_migrations.py",
    "tests/integration/test_watch.py",
    "tests/integration/test_live_events.py",
    "tests/integration/test_redis_limiter.py",
)
"""Work units handed out first, longest first, so no long one starts last (measured with
`--durations=0`). A file is one unit (its module fixtures, such as a running stack, are built
once); a test named here on its own is a unit of its own, as it builds its own stack."""


os.environ.setdefault("SLOT_LINE_STORE_DIR", tempfile.mkdtemp(prefix="slot-test-lines-"))
os.environ.setdefault("SLOT_MODEL_CACHE_DIR", tempfile.mkdtemp(prefix="slot-test-models-"))
"""One folder of stored fixed lines and one of optimized speech models for the whole run (set
before xdist starts its workers, so they share them): each edge the tests start reads what the
first one made."""

os.environ["TWILIO_AUTH_TOKEN"] = secrets.token_hex(16)
os.environ["SLOT_INTERNAL_TOKEN"] = secrets.token_urlsafe(24)
"""Per-run secrets, as `slot dev` generates them: every edge in the tests checks Twilio's
signatures and the internal bearer token, and the simulator signs as Twilio does."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def edge_ports() -> dict[str, int]:
    """Free ports for an edge's two listeners: public (Twilio) and internal (say, events)."""
    return {"edge_port": free_port(), "edge_internal_port": free_port()}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: WORKERS, or none (run in this process) when the run names a single file."""
    if override := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(override)
    files = {Path(str(arg).split("::")[0]).resolve() for arg in config.args}
    if len(files) == 1 and all(path.is_file() for path in files):
        return 0
    return WORKERS


def _unit(nodeid: str) -> str:
    return nodeid if nodeid in SLOWEST_FIRST else nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, except that a test named in SLOWEST_FIRST is a unit of its own.

    (xdist's `loadgroup` cannot do it: it renames items, which pytest 9 no longer allows.)
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Units(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return Units(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, the slowest units first (xdist hands units out in collection order);
    a run in one process keeps pytest's own order."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        rank = {unit: index for index, unit in enumerate(SLOWEST_FIRST)}
        items.sort(key=lambda item: rank.get(_unit(item.nodeid), len(rank)))


@pytest.fixture(scope="session")
async def temporal_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TemporalDevServer]:
    """A headless dev server with Slot's search attributes registered, stopped after the session."""
    folder = tmp_path_factory.mktemp("temporal")
    server = TemporalDevServer(
        address=f"127.0.0.1:{free_port()}",
        db_path=folder / "temporal.db",
        log_path=folder / "temporal.log",
        headless=True,
    )
    async with server:
        yield server


@pytest.fixture(scope="session")
def temporal_settings(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings pointing at the session's dev server, with data (and the dev stack's payload
    keys) in a temporary folder."""
    return use_dev_secrets(
        Settings(
            temporal_address=temporal_server.address,
            data_dir=tmp_path_factory.mktemp("slot-data"),
        )
    )


@pytest.fixture(scope="session")
async def temporal_client(temporal_settings: Settings) -> Client:
    return await connect(temporal_settings)
