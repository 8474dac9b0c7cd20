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

from activities.records import RecordsActivities
from activities.telephony import TelephonyActivities
from slot.settings import Settings, get_settings
from slot.temporal import connect
from workflows.call import CallWorkflow

log = logging.getLogger("slot.worker")

STICKY_QUEUE_TIMEOUT = timedelta(seconds=1)
ACTIVITY_SLOTS = 32
"""Concurrent activities, and threads for the sync ones (call records), so neither starves."""
GRACEFUL_SHUTDOWN = timedelta(seconds=10)


def workflows() -> list[type]:
    return [CallWorkflow]


def activities(settings: Settings) -> Sequence[Any]:
    """Activity callables bound to `settings`; the record activity is sync and needs a thread."""
    telephony = TelephonyActivities(settings)
    records = RecordsActivities(settings.database_url)
    return [telephony.place_call, telephony.deliver_utterance, records.save_call_record]


def build_worker(
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    *,
    task_queue: str | None = None,
) -> Worker:
    """The worker `python worker.py` runs; tests build the same one in-process."""
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=workflows(),
        activities=activities(settings),
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
            await stop.wait()
            log.info("worker stopping: finishing in-flight tasks")
    log.info("worker stopped")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(get_settings()))


if __name__ == "__main__":
    main()
