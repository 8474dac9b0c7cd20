"""`slot temporal setup` on a Temporal that knows nothing of Slot, as a new production one.

The dev server is started without Slot's search attributes; the real command runs twice (the
compose file runs it on every start), and only then can a call's workflow start.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.service import RPCError

from slot.devstack import settings_env
from slot.payload_codec import Keyring
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, Settings
from slot.temporal import TemporalDevServer, connect, start_call_workflow
from tests.conftest import free_port
from workflows.messages import CallInput, CallTimers, Direction, Lead
from workflows.search_attributes import CALL_STATUS, REGISTERED_KEYS, SCRIPT_NAME


@pytest.fixture
async def bare_settings(tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings for a fresh dev server on which no search attribute is registered."""
    server = TemporalDevServer(
        address=f"127.0.0.1:{free_port()}",
        db_path=tmp_path / "temporal.db",
        headless=True,
        search_attributes=False,
    )
    async with server:
        yield Settings(
            temporal_address=server.address,
            data_dir=tmp_path / "data",
            task_queue=f"setup-{uuid.uuid4().hex[:8]}",
            payload_keys=SecretStr(Keyring.new_entry("setup")),
        )


async def slot_temporal_setup(settings: Settings) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slot.cli",
        "temporal",
        "setup",
        "--wait",
        "30",
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(settings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode()


def call_input(settings: Settings) -> CallInput:
    return CallInput(
        call_id=f"call-{uuid.uuid4().hex[:12]}",
        direction=Direction.INBOUND,
        lead=Lead(name="Jordan", phone="+15550001111"),
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
        timers=CallTimers(),
    )


async def test_setup_twice_then_a_call_starts(bare_settings: Settings) -> None:
    client = await connect(bare_settings)
    with pytest.raises(RPCError, match="search attribute"):
        await start_call_workflow(client, call_input(bare_settings), bare_settings)

    first = await slot_temporal_setup(bare_settings)
    again = await slot_temporal_setup(bare_settings)

    assert first[0] == 0, first[1]
    assert "registered" in first[1] and all(key.name in first[1] for key in REGISTERED_KEYS)
    assert again[0] == 0 and "already set up" in again[1], again[1]
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=bare_settings.temporal_namespace)
    )
    for key in REGISTERED_KEYS:
        assert listed.custom_attributes[key.name] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    handle = await start_call_workflow(client, call_input(bare_settings), bare_settings)
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(CALL_STATUS) == "ringing"
    assert attributes.get(SCRIPT_NAME) == "solar_survey"
    await handle.terminate("test over")


async def test_an_attribute_of_another_type_is_a_one_line_error(bare_settings: Settings) -> None:
    client = await connect(bare_settings)
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=bare_settings.temporal_namespace,
            search_attributes={"CallStatus": IndexedValueType.INDEXED_VALUE_TYPE_INT},
        )
    )
    code, output = await slot_temporal_setup(bare_settings)
    assert code == 1
    assert output.strip().count("\n") == 0, output
    assert "CallStatus" in output and "Keyword" in output and "INT" in output
