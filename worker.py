"""Slot's Temporal worker: runs call workflows and their activities.

`python worker.py` connects with the `SLOT_*` settings and runs until SIGINT or SIGTERM, then
finishes in-flight tasks and exits. A short sticky-queue timeout lets a replacement worker pick
up a call within about a second when this one crashes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.campaign import (
    CampaignActivities,
    DialLimiter,
    DoNotCallList,
    LocalDialLimiter,
)
from activities.intent_classifier import IntentClassifierActivities
from activities.knowledge import KnowledgeActivities
from activities.lead_pages import LeadPages
from activities.records import RecordsActivities
from activities.redis_limiter import RedisDialLimiter
from activities.telephony import TelephonyActivities
from slot.credentials import MissingCredential, internal_token
from slot.database import SchemaBehind, check_at_start
from slot.live_events import live_events_for
from slot.payload_codec import PayloadKeyError, require_keyring
from slot.settings import Settings, get_settings
from slot.temporal import connect
from workflows.call import CallWorkflow
from workflows.campaign import CampaignWorkflow

log = logging.getLogger("slot.worker")

STICKY_QUEUE_TIMEOUT = timedelta(seconds=1)
ACTIVITY_SLOTS = 32
"""Concurrent activities, and threads for the sync ones (call records), so neither starves."""
GRACEFUL_SHUTDOWN = timedelta(seconds=10)
LOCAL_DIAL_LIMITER = LocalDialLimiter()
"""One pace for every campaign this worker runs, when there is no Redis to share it."""


def dial_limiter(settings: Settings) -> DialLimiter:
    """The pace every campaign shares: through Redis across workers, else this process's."""
    if settings.redis_url:
        return RedisDialLimiter.from_url(settings.redis_url, f"{settings.redis_prefix}:dial-pace")
    return LOCAL_DIAL_LIMITER


def workflows() -> list[type]:
    return [CallWorkflow, CampaignWorkflow]


def activities(settings: Settings, limiter: DialLimiter | None = None) -> Sequence[Any]:
    """Activity callables bound to `settings`; the sync ones (records, and the router's local
    activities: intent classifier, knowledge base) run on the activity threads."""
    telephony = TelephonyActivities(settings)
    records = RecordsActivities(settings.database_url, require_keyring(settings))
    classifier = IntentClassifierActivities()
    knowledge = KnowledgeActivities(settings)
    streams = live_events_for(settings.redis_url, require_keyring(settings), settings.redis_prefix)
    lead_pages = LeadPages(settings.database_url, require_keyring(settings))
    campaign = CampaignActivities(
        limiter or dial_limiter(settings), DoNotCallList(settings.database_url), streams
    )
    return [
        telephony.place_call,
        telephony.deliver_utterance,
        telephony.transfer_call,
        telephony.end_call,
        records.save_call_record,
        classifier.classify_intent,
        knowledge.retrieve_passages,
        campaign.reserve_dial,
        campaign.is_do_not_call,
        campaign.add_do_not_call,
        campaign.publish_campaign_events,
        lead_pages.next_leads,
    ]


def warm_up_router(settings: Settings) -> None:
    """Load the embedding model and the knowledge base before the first caller turn needs them."""
    from activities.intent_classifier import shared_classifier
    from activities.knowledge import shared_knowledge_base
    from slot.playbooks import load_playbook

    try:
        playbook = load_playbook(settings.default_script, settings.playbooks_dir)
        shared_classifier().prepare(playbook, settings.model_cache_path / "embeddings")
        shared_knowledge_base(settings).prepare(settings.model_cache_path)
    except Exception as error:
        log.warning("router warm-up failed (the first turns will pay for it): %s", error)


def build_worker(
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    *,
    task_queue: str | None = None,
    limiter: DialLimiter | None = None,
) -> Worker:
    """The worker `python worker.py` runs; tests build the same one in-process (with a
    limiter of their own when their Temporal's clock is not the wall clock)."""
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=workflows(),
        activities=activities(settings, limiter),
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_SLOTS,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
    )


async def run(settings: Settings) -> None:
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS, thread_name_prefix="activity") as executor:
        worker = build_worker(client, settings, executor)
        log.info(
            "worker polling %s on %s (namespace %s)",
            settings.task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        async with worker:
            warm_up = asyncio.create_task(asyncio.to_thread(warm_up_router, settings))
            await stop.wait()
            warm_up.cancel()
            log.info("worker stopping: finishing in-flight tasks")
    log.info("worker stopped")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    try:
        require_keyring(settings)
        internal_token(settings)
        check_at_start(settings.database_url)
    except SchemaBehind as error:
        raise SystemExit(f"worker not started: {error}") from None
    except PayloadKeyError as error:
        raise SystemExit(f"worker: {error}") from None
    except MissingCredential as error:
        raise SystemExit(f"worker not started: {error}") from None
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
