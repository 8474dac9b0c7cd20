"""Slot's worker with one change: its intent classifier holds every request until the process is
killed. The worker-kill test runs it to land a SIGKILL while a turn's Update is in flight (the
turn handler awaits the classifier), deterministically.

`python -m tests.integration.held_worker ADDRESS TASK_QUEUE MARKER`: MARKER is written when a
classification starts, so the test knows the turn is in flight.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from temporalio import activity
from temporalio.worker import Worker

from slot.settings import Settings
from slot.temporal import connect
from worker import STICKY_QUEUE_TIMEOUT, workflows
from workflows.router_messages import ClassifyRequest, IntentClassification


async def main(address: str, task_queue: str, marker: Path) -> None:
    @activity.defn(name="classify_intent")
    async def classify_intent(request: ClassifyRequest) -> IntentClassification:
        await asyncio.to_thread(marker.write_text, request.utterance, encoding="utf-8")
        await asyncio.Event().wait()
        raise AssertionError("held until killed")

    client = await connect(Settings(temporal_address=address))
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=workflows(),
        activities=[classify_intent],
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
    ):
        print("polling", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
