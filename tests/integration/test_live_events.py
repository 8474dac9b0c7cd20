"""Live events in real Redis (127.0.0.1:6379): a call's events as the edge publishes them, and a
campaign's dials and results as its workflow sends them, written and read back in order by
another client, sealed (no caller words in clear in Redis)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from media_edge.events import (
    AgentUtterance,
    CallEnded,
    CallerTurn,
    CallEvent,
    CallStarted,
    EventHub,
    parse_event,
)
from slot.dev_secrets import use_dev_secrets
from slot.live_events import RedisLiveEvents, call_stream, campaign_stream, tail
from slot.payload_codec import require_keyring
from slot.playbooks import load_playbook
from slot.settings import Settings
from tests.integration.campaign_fixtures import campaign_rig
from workflows.campaign import CampaignWorkflow
from workflows.campaign_plan import AttemptResult, CampaignEvent, CampaignInput, CampaignLead

pytestmark = pytest.mark.timeout(120)

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, removed afterwards."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as error:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {error}")
    name = f"slot-test-{uuid.uuid4().hex}"
    yield name
    async for key in client.scan_iter(match=f"{name}:*"):
        await client.delete(key)
    await client.aclose()


async def read_all(streams: RedisLiveEvents, stream: str, until: str) -> list[dict[str, object]]:
    events = []
    async for event in tail(streams, stream, block_s=2.0):
        events.append(event)
        if event.get("type") == until or event.get("kind") == until:
            return events
    raise AssertionError("the stream ended")


async def test_a_calls_events_are_written_sealed_and_read_back_in_order(
    prefix: str, tmp_path: Path
) -> None:
    keyring = require_keyring(use_dev_secrets(Settings(data_dir=tmp_path)))
    hub = EventHub(streams=RedisLiveEvents.from_url(REDIS_URL, keyring, prefix))
    sent: list[CallEvent] = [CallStarted(call_id="c1", stream_sid="MZ1")]
    for seq in range(40):
        sent.append(CallerTurn(seq=seq, text=f"my bill is {100 + seq} dollars"))
        sent.append(
            AgentUtterance(
                utterance_id=f"u{seq}", text="Thanks.", state="qualify", tier="0", reason="slot"
            )
        )
    sent.append(CallEnded(reason="caller hung up"))
    for event in sent:
        hub.publish("c1", event)
    hub.publish("c1", CallerTurn(seq=99, text="after the end"))
    await hub.close()

    reader = RedisLiveEvents.from_url(REDIS_URL, keyring, prefix)
    try:
        got = [parse_event(raw) for raw in await read_all(reader, call_stream("c1"), "call_ended")]
        assert got == sent, "every event, in the order published, nothing after the end"
        raw: Any = await reader.client.xrange(reader.key(call_stream("c1")))
        assert len(raw) == len(sent)
        assert all(b"dollars" not in fields[b"e"] for _, fields in raw), "sealed at rest"
        assert 0 < await reader.client.ttl(reader.key(call_stream("c1"))) <= 24 * 3600
    finally:
        await reader.close()


async def test_a_campaigns_dials_and_results_are_streamed_through_redis(
    prefix: str, tmp_path: Path
) -> None:
    leads = [
        CampaignLead(lead_id="busy", phone="+12125550301"),
        CampaignLead(lead_id="stop", phone="+12125550302"),
        CampaignLead(lead_id="machine", phone="+12125550303"),
    ]
    playbook = load_playbook("solar_survey", Settings().playbooks_dir)
    campaign = CampaignInput(
        campaign_id="camp-live",
        script_name="solar_survey",
        playbook=playbook,
        leads=leads,
        retries={"max_attempts": 2},
        max_concurrent_calls=1,
    )
    async with campaign_rig(tmp_path, redis_url=REDIS_URL, redis_prefix=prefix) as rig:
        rig.line.behaviours = {
            "+12125550301": ["busy", "no-answer"],
            "+12125550302": ["stop"],
            "+12125550303": ["voicemail", "voicemail"],
        }
        handle = await rig.client.start_workflow(
            CampaignWorkflow.run, campaign, id="camp-live", task_queue=rig.task_queue
        )
        progress = await handle.result()
        reader = RedisLiveEvents.from_url(REDIS_URL, require_keyring(rig.settings), prefix)
        try:
            raw = await read_all(reader, campaign_stream("camp-live"), "finished")
        finally:
            await reader.close()
    events = [CampaignEvent.model_validate(item) for item in raw]
    assert events[0].kind == "started" and events[-1].kind == "finished"
    assert events[-1].progress == progress
    dialled = [e.call_id for e in events if e.kind == "dialled"]
    ended = {e.call_id: e.result for e in events if e.kind == "ended"}
    assert [d.call_id for d in rig.line.dials] == dialled, "each dial, in the order made"
    assert set(ended) == set(dialled)
    for call_id in dialled:
        dial_at = next(i for i, e in enumerate(events) if e.call_id == call_id)
        end_at = next(i for i, e in enumerate(events) if e.call_id == call_id and e.kind == "ended")
        assert dial_at < end_at
    assert ended["camp-live-busy-a1"] is AttemptResult.BUSY
    assert ended["camp-live-busy-a2"] is AttemptResult.NO_ANSWER
    assert ended["camp-live-stop-a1"] is AttemptResult.DO_NOT_CALL
    assert ended["camp-live-machine-a2"] is AttemptResult.VOICEMAIL
    counters = [e.progress.dialled for e in events]
    assert counters == sorted(counters) and counters[-1] == 5
