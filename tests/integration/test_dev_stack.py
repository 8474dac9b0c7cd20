"""`slot dev` as a person runs it: everything comes up, answers, and Ctrl-C stops all of it; with
no secrets in the environment it generates its own and still refuses strangers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

from slot.devstack import SECRETS_FILE, http_ok, settings_env
from slot.settings import REPO_ROOT, Settings
from slot.temporal import connect, temporal_is_running
from tests.conftest import free_port


async def test_slot_dev_starts_every_part_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    settings = Settings(
        temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
        edge_port=free_port(),
        edge_internal_port=free_port(),
        simulator_port=free_port(),
        data_dir=tmp_path / "data",
    ).model_copy(update={"twilio_auth_token": None, "internal_token": None})
    env = {**os.environ, **settings_env(settings), "COLUMNS": "200"}
    for secret in ("TWILIO_AUTH_TOKEN", "SLOT_INTERNAL_TOKEN"):
        env.pop(secret)
    dev = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slot.cli",
        "dev",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert dev.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not any(line.startswith("ready") for line in output):
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
        await refuses_strangers(settings)
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
    generated = json.loads((settings.data_dir / SECRETS_FILE).read_text()).values()
    logs = [path.read_text() for path in (settings.data_dir / "logs").glob("*.log")]
    assert logs and not [s for s in generated for text in [*logs, *output] if s in text]
    assert not [text for text in logs if "Mallory" in text], "a query string was logged"


async def refuses_strangers(settings: Settings) -> None:
    """The dev stack runs with per-run secrets (0600, not printed) and fails closed without them."""
    secrets_path = settings.data_dir / SECRETS_FILE
    assert secrets_path.stat().st_mode & 0o777 == 0o600
    internal_token = json.loads(secrets_path.read_text())["internal_token"]
    internal = settings.edge_internal_url
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(
            f"{settings.edge_url}/twilio/voice?lead_name=Mallory",
            data={"CallSid": "CAstranger", "From": "+15550001111"},
        )
        public_say = await http.post(f"{settings.edge_url}/calls/call-x/say", json={})
        no_bearer = await http.get(f"{internal}/healthz")
        bearer = await http.get(
            f"{internal}/healthz", headers={"Authorization": f"Bearer {internal_token}"}
        )
    assert unsigned.status_code == 403
    assert public_say.status_code == 404
    assert no_bearer.status_code == 401
    assert bearer.status_code == 200
