"""The shared dialling pace on the real Redis at 127.0.0.1:6379: users in separate processes,
each with its own client, draw from one bucket and together never exceed the rate.

Grants are counted per window on the limiter's own clock (the slots it hands out), never by
timing the test. The same users on per-process limiters (no Redis) break the pace, which shows
the check catches a limiter that is not shared. Two workers running two campaigns at once under
time skipping dial, together, at the one pace.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from temporalio.client import Client

from activities.redis_limiter import RedisDialLimiter
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, Settings
from tests.integration.campaign_fixtures import campaign_rig
from worker import build_worker
from workflows.campaign import CampaignWorkflow
from workflows.campaign_plan import CampaignInput, CampaignLead, Retries

REDIS_URL = "redis://127.0.0.1:6379/0"
RATE = 10.0
PER_USER = 150


@pytest.fixture
def redis_key() -> object:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {error}")
    key = f"slot-test:dial-pace:{uuid.uuid4().hex}"
    yield key
    client.delete(key)
    client.close()


def grants_of_users(url: str, key: str, users: int, start_us: int) -> list[list[int]]:
    """Each user's slots (microseconds), the users started together in their own processes."""
    argv = ["-m", "tests.integration.limiter_user", url, key, str(PER_USER), str(RATE)]
    procs = [
        subprocess.Popen(
            [sys.executable, *argv, str(start_us)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for _ in range(users)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        results.append([int(line) for line in out.split()])
    return results


def most_in_any_second(slots: list[int]) -> int:
    """The most grants in any one-second window [t, t + 1 s) on the limiter's clock."""
    ordered = sorted(slots)
    most, first = 0, 0
    for last, slot in enumerate(ordered):
        while ordered[first] <= slot - 1_000_000:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_two_processes_share_one_pace_through_redis(redis_key: str) -> None:
    start_us = round(datetime.now(UTC).timestamp() * 1_000_000)
    first, second = grants_of_users(REDIS_URL, redis_key, 2, start_us)
    slots = first + second
    assert len(first) == len(second) == PER_USER
    assert len(set(slots)) == 2 * PER_USER, "two users were given the same slot"
    assert most_in_any_second(slots) <= RATE
    gaps = [b - a for a, b in zip(sorted(slots), sorted(slots)[1:], strict=False)]
    assert min(gaps) >= 1_000_000 / RATE
    # no slot before it was asked for: the k-th request was at start + k ms
    for user in (first, second):
        assert all(slot >= start_us + k * 1000 for k, slot in enumerate(user))
    # the bucket drains at the rate: 300 grants at 10 a second span 29.9 s of slots
    assert max(slots) - min(slots) == (2 * PER_USER - 1) * 1_000_000 / RATE


def test_per_process_limiters_would_exceed_the_pace(redis_key: str) -> None:
    start_us = round(datetime.now(UTC).timestamp() * 1_000_000)
    first, second = grants_of_users("local", redis_key, 2, start_us)
    assert most_in_any_second(first + second) == 2 * RATE


def test_an_idle_bucket_grants_at_once_and_expires(redis_key: str) -> None:
    limiter = RedisDialLimiter.from_url(REDIS_URL, redis_key)
    now = datetime.now(UTC).replace(microsecond=0)
    assert limiter.reserve(now, 1.0) == now
    assert (limiter.reserve(now, 1.0) - now).total_seconds() == 1.0
    ttl = limiter.client.pttl(redis_key)
    assert 0 < ttl <= 62_000


async def test_two_workers_pace_two_campaigns_as_one(tmp_path: Path) -> None:
    """Two workers (a task queue each), each with its own Redis client, run a campaign each on
    the time-skipping server: their dials, together, keep to one a second."""
    prefix = f"slot-test-{uuid.uuid4().hex}"
    playbook = load_playbook("solar_survey", Settings().playbooks_dir)
    campaigns = [
        CampaignInput(
            campaign_id=f"camp-pace-{name}",
            script_name="solar_survey",
            playbook=playbook,
            leads=[CampaignLead(lead_id=f"l{i}", phone=f"+1212555{name}{i}") for i in range(5)],
            retries=Retries(max_attempts=1),
            max_concurrent_calls=5,
        )
        for name in ("100", "200")
    ]
    async with campaign_rig(tmp_path, redis_url=REDIS_URL, redis_prefix=prefix) as rig:
        second = await Client.connect(
            rig.client.service_client.config.target_host,
            namespace=rig.client.namespace,
            data_converter=rig.client.data_converter,
        )
        with ThreadPoolExecutor(4) as executor:
            async with build_worker(second, rig.settings, executor, task_queue="campaigns-2"):
                handles = [
                    await rig.client.start_workflow(
                        CampaignWorkflow.run, c, id=c.campaign_id, task_queue=queue
                    )
                    for c, queue in zip(campaigns, [rig.task_queue, "campaigns-2"], strict=True)
                ]
                results = [await handle.result() for handle in handles]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert client.get(f"{prefix}:dial-pace") is not None, "the pace went through Redis"
        client.delete(*client.scan_iter(match=f"{prefix}:*"))  # the pace and the live events
    finally:
        client.close()
    assert [r.dialled for r in results] == [5, 5]
    starts = sorted(dial.at for dial in rig.line.dials)
    assert len(starts) == 10
    # Each dial follows its slot after a workflow task's delay, which varies with the worker that
    # runs it: on the workflows' clock no second holds more than two dials, and ten dials at one
    # a second span nine seconds or so (two buckets, one a campaign, would span four).
    assert all(b - a > timedelta(seconds=1) for a, b in zip(starts, starts[2:], strict=False))
    assert starts[-1] - starts[0] >= timedelta(seconds=8)
