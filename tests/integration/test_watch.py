"""`slot watch` as a user runs it: a live call tailed from its Redis Stream (real Redis at
127.0.0.1:6379) while the edge's event hub publishes it, and a refusal without the internal
credential."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from media_edge.events import AgentUtterance, CallEnded, CallerTurn, CallStarted, EventHub
from slot.dev_secrets import use_dev_secrets
from slot.live_events import RedisLiveEvents
from slot.payload_codec import require_keyring
from slot.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.timeout(120)

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"slot-test-{uuid.uuid4().hex}"
    yield name
    client = aioredis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{name}:*"):
        await client.delete(key)
    await client.aclose()


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SLOT_DATA_DIR": str(data_dir), "COLUMNS": "200", **extra}
    env.pop("SLOT_PAYLOAD_KEYS", None)
    return env


async def test_watch_tails_a_live_call_from_redis(prefix: str, tmp_path: Path) -> None:
    settings = use_dev_secrets(Settings(data_dir=tmp_path))
    env = _env(tmp_path, SLOT_REDIS_URL=REDIS_URL, SLOT_REDIS_PREFIX=prefix)
    watch = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "slot.cli", "watch", "call-7"),
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert watch.stdout is not None
    first = await asyncio.wait_for(watch.stdout.readline(), 60)
    assert first.decode().startswith("watching call call-7")

    hub = EventHub(streams=RedisLiveEvents.from_url(REDIS_URL, require_keyring(settings), prefix))
    hub.publish("call-7", CallStarted(call_id="call-7", stream_sid="MZ7"))
    hub.publish(
        "call-7",
        AgentUtterance(
            utterance_id="u0", text="Hi, is this Dana?", state="greet", tier="0", reason="start"
        ),
    )
    hub.publish("call-7", CallerTurn(seq=0, text="Yes, this is Dana."))
    hub.publish("call-7", CallEnded(reason="caller hung up"))
    await hub.close()

    out, err = await asyncio.wait_for(watch.communicate(), 60)
    assert watch.returncode == 0, err.decode()
    lines = [line.strip() for line in out.decode().splitlines() if line.strip()]
    assert lines == [
        "call connected",
        "agent   Hi, is this Dana?  (greet, 0)",
        "caller  Yes, this is Dana.",
        "call ended: caller hung up",
    ]


async def test_watch_refuses_without_the_internal_credential(tmp_path: Path) -> None:
    env = _env(tmp_path, SLOT_REDIS_URL=REDIS_URL)
    env.pop("SLOT_INTERNAL_TOKEN", None)
    watch = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "slot.cli", "watch", "--campaign", "c1"),
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(watch.communicate(), 60)
    assert watch.returncode == 2
    assert out == b""
    message = err.decode().strip()
    assert len(message.splitlines()) == 1 and "SLOT_INTERNAL_TOKEN is not set" in message
