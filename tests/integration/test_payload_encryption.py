"""Personal data at rest in Temporal: a real call's history, read raw from the server and from
its database file, holds no clear transcript, name or phone number while Slot's client reads it
all; a call goes on across a key rotation; the codec server decodes only for the token holder;
the worker, the edge and the codec server refuse to start without their secrets."""

from __future__ import annotations

import base64
import json
import os
import random
import string
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client, WorkflowHistory

from slot.codec_server import CodecServerError, create_codec_app
from slot.payload_codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    Keyring,
    PayloadDecryptor,
    PayloadKeyError,
    decryptor_of,
    require_keyring,
)
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, Settings
from slot.temporal import TemporalDevServer, connect, start_call_workflow
from tests.conftest import free_port
from tests.integration.edge_fixtures import serve
from worker import ACTIVITY_SLOTS, build_worker
from workflows.call import CallWorkflow
from workflows.messages import CallInput, HangUp, Lead, Turn


def readable(history: WorkflowHistory) -> str:
    """Everything a person with the raw history could read: its JSON and every payload's data."""
    text = history.to_json()
    found = [text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "data" in node and isinstance(node["data"], str):
                found.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(text))
    return "\n".join(found)


def payload_key_ids(history: WorkflowHistory) -> set[str]:
    ids: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            metadata = node.get("metadata")
            if isinstance(metadata, dict) and KEY_ID_METADATA in metadata:
                ids.add(base64.b64decode(metadata[KEY_ID_METADATA]).decode())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history.to_json()))
    return ids


def letters(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=n))


def call_for(settings: Settings, name: str, phone: str) -> CallInput:
    return CallInput(
        call_id=f"call-encrypted-{uuid.uuid4().hex[:10]}",
        lead=Lead(name=name, phone=phone),
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
    )


def queue_settings(base: Settings, tmp_path: Path, **changes: Any) -> Settings:
    return base.model_copy(
        update={
            "task_queue": f"encrypted-{uuid.uuid4().hex[:8]}",
            "database_url": f"sqlite:///{tmp_path}/records.db",
            **changes,
        }
    )


async def test_a_call_leaves_no_clear_transcript_name_or_number_in_temporal(
    temporal_client: Client,
    temporal_settings: Settings,
    temporal_server: TemporalDevServer,
    tmp_path: Path,
) -> None:
    settings = queue_settings(temporal_settings, tmp_path)
    name = f"Jordan {letters(10).title()}"
    phone = "+1555" + "".join(random.choices(string.digits, k=7))
    words = f"Yes, speaking, write down {letters(12)} please"
    call = call_for(settings, name, phone)
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with build_worker(temporal_client, settings, executor):
            handle = await start_call_workflow(temporal_client, call, settings)
            await handle.execute_update(CallWorkflow.turn, Turn(seq=0, kind="start"))
            await handle.execute_update(CallWorkflow.turn, Turn(seq=1, kind="speech", text=words))
            await handle.signal(CallWorkflow.hang_up, HangUp())
            snapshot = await handle.result()
    assert words in [e.text for e in snapshot.transcript], "Slot's client reads it in clear"
    description = await handle.describe()
    assert phone in (await description.static_summary() or "")

    plain = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    raw = await plain.get_workflow_handle(call.call_id).fetch_history()
    stored = readable(raw)
    for personal in (name, phone, words, words.split()[-2]):
        assert personal not in stored, personal
    assert payload_key_ids(raw) == {require_keyring(settings).current_id}

    database = b"".join(path.read_bytes() for path in temporal_server.database_files())
    assert call.call_id.encode() in database, "the database files hold this call"
    for personal in (name, phone, words.split()[-2]):
        assert personal.encode() not in database, personal

    clear = readable(decryptor_of(temporal_client.data_converter).decode_history(raw))
    for personal in (name, phone, words):
        assert personal in clear, personal


async def test_a_call_started_under_an_old_key_goes_on_after_the_key_is_rotated(
    temporal_settings: Settings, tmp_path: Path
) -> None:
    old, new = f"old-{uuid.uuid4().hex[:6]}", f"new-{uuid.uuid4().hex[:6]}"
    old_entry, new_entry = Keyring.new_entry(old), Keyring.new_entry(new)
    before = queue_settings(temporal_settings, tmp_path, payload_keys=SecretStr(old_entry))
    after = before.model_copy(update={"payload_keys": SecretStr(f"{new_entry},{old_entry}")})
    call = call_for(before, "Jordan Rotated", "+15550002222")
    first_words, later_words = "Yes, speaking.", "Yes, I own my home."

    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        client = await connect(before)
        async with build_worker(client, before, executor):
            handle = await start_call_workflow(client, call, before)
            await handle.execute_update(CallWorkflow.turn, Turn(seq=0, kind="start"))
            await handle.execute_update(
                CallWorkflow.turn, Turn(seq=1, kind="speech", text=first_words)
            )
        client = await connect(after)
        async with build_worker(client, after, executor):
            handle = client.get_workflow_handle_for(CallWorkflow.run, call.call_id)
            pitch = await handle.execute_update(
                CallWorkflow.turn, Turn(seq=2, kind="speech", text=later_words)
            )
            await handle.signal(CallWorkflow.hang_up, HangUp())
            snapshot = await handle.result()

    assert pitch.state == "pitch", "the rotated worker read the state the old key wrote"
    caller = [e.text for e in snapshot.transcript if e.speaker == "caller"]
    assert caller == [first_words, later_words]
    raw = await handle.fetch_history()
    assert payload_key_ids(raw) == {old, new}
    assert first_words in readable(decryptor_of(client.data_converter).decode_history(raw))
    only_new = PayloadDecryptor(Keyring.parse(new_entry))
    with pytest.raises(PayloadKeyError, match=f"'{old}', which SLOT_PAYLOAD_KEYS does not hold"):
        only_new.decode_history(raw)


async def test_the_codec_server_decodes_for_the_token_holder_only(
    temporal_settings: Settings,
) -> None:
    settings = temporal_settings.model_copy(
        update={"codec_port": free_port(), "temporal_ui_port": free_port()}
    )
    assert settings.codec_token is not None
    token = settings.codec_token.get_secret_value()
    clear = Payload(metadata={"encoding": b"json/plain"}, data=b'"call me on 555 867 5309"')
    (sealed,) = await EncryptionCodec(require_keyring(settings)).encode([clear])
    body = json_format.MessageToJson(Payloads(payloads=[sealed]))
    ui = f"http://127.0.0.1:{settings.temporal_ui_port}"

    def payloads(response: httpx.Response) -> list[Payload]:
        assert response.status_code == 200, response.text
        return list(json_format.Parse(response.text, Payloads()).payloads)

    async with (
        serve(create_codec_app(settings), settings.codec_port) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        headers = {"Content-Type": "application/json", "X-Namespace": "default"}
        refused = [
            await http.post("/decode", content=body, headers=headers),
            await http.post(
                "/decode", content=body, headers={**headers, "Authorization": "Bearer nope"}
            ),
            await http.post("/not-the-token/decode", content=body, headers=headers),
            await http.post("/encode", content=body, headers=headers),
        ]
        assert [r.status_code for r in refused] == [401, 401, 401, 401]
        assert all("867" not in r.text for r in refused)

        bearer = {**headers, "Authorization": f"Bearer {token}"}
        assert payloads(await http.post("/decode", content=body, headers=bearer)) == [clear]
        by_path = await http.post(f"/{token}/decode", content=body, headers=headers)
        assert payloads(by_path) == [clear]

        encoded = payloads(
            await http.post(
                "/encode",
                content=json_format.MessageToJson(Payloads(payloads=[clear])),
                headers=bearer,
            )
        )
        assert encoded[0].metadata["encoding"] == ENCODING
        again = json_format.MessageToJson(Payloads(payloads=encoded))
        assert payloads(await http.post("/decode", content=again, headers=bearer)) == [clear]

        bad = await http.post("/decode", content=b"{not json", headers=bearer)
        assert bad.status_code == 400

        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        }
        allowed = await http.options("/decode", headers={"Origin": ui, **preflight})
        assert allowed.headers.get("access-control-allow-origin") == ui
        other = await http.options(
            "/decode", headers={"Origin": "http://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers

    with pytest.raises(CodecServerError, match="SLOT_CODEC_TOKEN is not set"):
        create_codec_app(settings.model_copy(update={"codec_token": None}))


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["worker.py"], "SLOT_PAYLOAD_KEYS"),
        (["-m", "media_edge.app"], "SLOT_PAYLOAD_KEYS"),
        (["-m", "slot.codec_server"], "SLOT_PAYLOAD_KEYS"),
        (["-m", "slot.codec_server"], "SLOT_CODEC_TOKEN"),
    ],
    ids=["worker", "edge", "codec-server-keys", "codec-server-token"],
)
def test_a_process_without_its_secret_refuses_to_start_naming_it(
    argv: list[str], missing: str, tmp_path: Path
) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("SLOT_PAYLOAD_KEYS", "SLOT_CODEC_TOKEN")
    }
    env["SLOT_DATA_DIR"] = str(tmp_path)
    env["SLOT_EDGE_PORT"] = str(free_port())
    env["SLOT_CODEC_PORT"] = str(free_port())
    if missing != "SLOT_PAYLOAD_KEYS":
        env["SLOT_PAYLOAD_KEYS"] = Keyring.new_entry("k1")
    completed = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    last = completed.stderr.strip().splitlines()[-1]
    assert f"{missing} is not set" in last, completed.stderr
    assert "Traceback" not in completed.stderr
