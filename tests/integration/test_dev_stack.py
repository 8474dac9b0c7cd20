"""`slot dev` as a person runs it: everything comes up, answers, and Ctrl-C stops all of it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

from slot.devstack import http_ok, settings_env
from slot.settings import REPO_ROOT, Settings
from slot.temporal import connect, temporal_is_running
from tests.conftest import free_port


async def test_slot_dev_starts_every_part_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    settings = Settings(
        temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
        edge_port=free_port(),
        simulator_port=free_port(),
        data_dir=tmp_path / "data",
    )
    dev = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slot.cli",
        "dev",
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(settings), "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert dev.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not any("ready" in line for line in output):
                line = (await dev.stdout.readline()).decode()
                assert line, "slot dev exited early:\n" + "".join(output)
                output.append(line)

        assert await temporal_is_running(settings.temporal_address)
        assert await http_ok(f"{settings.edge_url}/healthz")
        assert await http_ok(f"{settings.twilio_base}/healthz")
        assert await http_ok(settings.temporal_ui_url)
        assert (settings.data_dir / "temporal.db").exists()
        client = await connect(settings)
        attributes = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace)
        )
        for name in ("CallStatus", "ScriptState", "Outcome", "ScriptName"):
            assert name in attributes.custom_attributes, name
    finally:
        if dev.returncode is None:
            dev.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(dev.communicate(), timeout=60)
    output.append(rest[0].decode())
    assert dev.returncode == 0, "".join(output)
    assert "stopped" in "".join(output)
    assert not await temporal_is_running(settings.temporal_address)
    assert not await http_ok(f"{settings.edge_url}/healthz")
    assert not await http_ok(f"{settings.twilio_base}/healthz")
