"""`slot dev` as a person runs it: everything comes up, answers, comes back when it crashes,
and Ctrl-C stops all of it; with no secrets in the environment it generates its own and still
refuses strangers, and its Web UI decrypts call data through the codec server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus

from slot.codec_server import codec_url, ui_codec_endpoint
from slot.dev_secrets import PAYLOAD_KEYS_FILE, use_dev_secrets
from slot.devstack import SECRETS_FILE, api_url, http_ok, settings_env
from slot.payload_codec import EncryptionCodec, require_keyring
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, Settings
from slot.temporal import connect, temporal_is_running
from tests.conftest import free_port
from workflows.call import CallWorkflow
from workflows.messages import CallInput


def stack_without_secrets(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    """A dev stack of its own (free ports, a fresh data folder), and the environment `slot dev`
    runs with: no secrets in it, so the stack makes its own."""
    settings = Settings(
        temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
        codec_port=free_port(),
        edge_port=free_port(),
        edge_internal_port=free_port(),
        simulator_port=free_port(),
        api_port=free_port(),
        data_dir=tmp_path / "data",
    ).model_copy(update={"twilio_auth_token": None, "internal_token": None})
    env = {**os.environ, **settings_env(settings), "COLUMNS": "200"}
    for secret in ("TWILIO_AUTH_TOKEN", "SLOT_INTERNAL_TOKEN"):
        env.pop(secret)
    return settings, env


async def test_slot_dev_starts_every_part_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    settings, env = stack_without_secrets(tmp_path)
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
        assert await http_ok(f"{api_url(settings)}/healthz")
        assert (settings.data_dir / "temporal.db").exists()
        assert (settings.data_dir / PAYLOAD_KEYS_FILE).stat().st_mode & 0o077 == 0
        use_dev_secrets(settings, create=False)
        await the_ui_decrypts_through_the_codec_server(settings)
        client = await connect(settings)
        attributes = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace)
        )
        for name in ("CallStatus", "ScriptState", "Outcome", "ScriptName"):
            assert name in attributes.custom_attributes, name
        await refuses_strangers(settings)
        await the_api_takes_its_dev_token(settings)
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
    assert not await http_ok(f"{codec_url(settings)}/healthz")
    assert not await http_ok(f"{api_url(settings)}/healthz")
    generated = json.loads((settings.data_dir / SECRETS_FILE).read_text()).values()
    logs = [path.read_text() for path in (settings.data_dir / "logs").glob("*.log")]
    assert logs and not [s for s in generated for text in [*logs, *output] if s in text]
    assert not [text for text in logs if "Mallory" in text], "a query string was logged"


async def the_api_takes_its_dev_token(settings: Settings) -> None:
    """The API's token is the one the dev stack keeps in its data folder; nothing else opens it."""
    assert settings.api_token is not None
    token = settings.api_token.get_secret_value()
    async with httpx.AsyncClient(base_url=api_url(settings)) as http:
        assert (await http.get("/campaigns")).status_code == 401
        listed = await http.get("/campaigns", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200 and listed.json() == []


async def the_ui_decrypts_through_the_codec_server(settings: Settings) -> None:
    """What the Web UI does: read its codec endpoint from its settings, post payloads there."""
    ui = settings.temporal_ui_url
    async with httpx.AsyncClient() as http:
        codec = (await http.get(f"{ui}/api/v1/settings")).json()["Codec"]
        assert codec["Endpoint"] == ui_codec_endpoint(settings)
        clear = Payload(metadata={"encoding": b"json/plain"}, data=b'"+15558675309"')
        (sealed,) = await EncryptionCodec(require_keyring(settings)).encode([clear])
        response = await http.post(
            f"{codec['Endpoint']}/decode?preserveStorageRefs=true",
            content=json_format.MessageToJson(Payloads(payloads=[sealed])),
            headers={"Content-Type": "application/json", "X-Namespace": "default", "Origin": ui},
        )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ui
    assert list(json_format.Parse(response.text, Payloads()).payloads) == [clear]


async def test_slot_dev_restarts_a_crashed_worker_edge_or_temporal(tmp_path: Path) -> None:
    """kill -9 of each part: `slot dev` says which died and brings it back; Temporal comes back
    on its SQLite file, with the workflows it held."""
    settings = Settings(
        temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
        edge_port=free_port(),
        simulator_port=free_port(),
        api_port=free_port(),
        data_dir=tmp_path / "data",
        presynthesize_lines=False,
    )
    dev = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slot.cli",
        "dev",
        "--headless",
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(settings), "COLUMNS": "400"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert dev.stdout is not None
    output: list[str] = []

    async def line_with(text: str) -> str:
        """Read slot dev's output until a line says `text`."""
        assert dev.stdout is not None
        async with asyncio.timeout(180):
            while True:
                line = (await dev.stdout.readline()).decode()
                assert line, "slot dev exited:\n" + "".join(output)
                output.append(line)
                if text in line:
                    return line

    try:
        pids_line = await line_with("processes ")
        parts = (part.split() for part in pids_line.split(None, 1)[1].split(","))
        pids = {name: int(pid) for name, pid in parts}
        await line_with("ready")
        use_dev_secrets(settings, create=False)

        os.kill(pids["worker"], signal.SIGKILL)
        assert "worker exited (-9)" in await line_with("worker exited")
        restarted = await line_with("worker restarted (pid ")
        new_pid = int(restarted.rsplit("pid ", 1)[1].rstrip(")\n"))
        assert new_pid != pids["worker"]
        os.kill(new_pid, 0)

        os.kill(pids["edge"], signal.SIGKILL)
        await line_with("edge restarted (pid ")
        assert await http_ok(f"{settings.edge_url}/healthz")

        client = await connect(settings)
        call = CallInput(
            call_id=f"call-{uuid.uuid4().hex[:12]}",
            script_name="solar_survey",
            playbook=load_playbook("solar_survey", settings.playbooks_dir),
        )
        handle = await client.start_workflow(
            CallWorkflow.run, call, id=call.call_id, task_queue="no-worker-here"
        )
        os.kill(pids["temporal"], signal.SIGKILL)
        assert "Temporal dev server exited (-9)" in await line_with("Temporal dev server exited")
        await line_with("Temporal dev server is back")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test over")
    finally:
        if dev.returncode is None:
            dev.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(dev.communicate(), timeout=60)
    output.append(rest[0].decode())
    assert dev.returncode == 0, "".join(output)


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


async def test_slot_dev_that_cannot_start_stops_the_temporal_it_started(tmp_path: Path) -> None:
    """Something answers on the edge's port (another stack's edge, say) and no secrets are set:
    `slot dev` refuses to join it, and the Temporal it had started is stopped, not left behind
    (seen in CI: a dev server outliving its `slot dev`)."""

    async def healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    settings, env = stack_without_secrets(tmp_path)
    squatter = await asyncio.start_server(healthz, settings.edge_host, settings.edge_port)
    async with squatter:
        assert await http_ok(f"http://{settings.edge_host}:{settings.edge_port}/healthz")
        dev = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "slot.cli", "dev", "--headless"),
            cwd=REPO_ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(dev.communicate(), 120)
    assert dev.returncode == 1, out.decode()
    assert "parts of a dev stack are running, but its secrets" in out.decode()
    assert (settings.data_dir / "temporal.db").exists(), "it had started its own Temporal"
    assert not await temporal_is_running(settings.temporal_address)
