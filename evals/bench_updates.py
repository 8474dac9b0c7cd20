"""Where a turn's Update round trip goes, read from the calls' histories after a bench step.

The edge times the whole round trip (`decision`). The workflow task that accepted each `turn`
Update splits it: `queue` is the task's wait for the worker (scheduled to started: the worker's
poll, a sticky-queue miss, a busy worker), `task` is the worker's handling of it (started to
completed: activation, the router's local activities, the payload codec, the reply). What is
left of the round trip is the edge's and the server's: the RPCs, the server admitting the
Update and the edge's event loop. Only task events are read: no Slot code runs for this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError

from evals.call_metrics import percentile
from slot.settings import Settings
from slot.temporal import connect

TURN_UPDATE = "turn"


@dataclass
class UpdateTasks:
    """Per accepted `turn` Update, its workflow task's queue wait and run time (ms)."""

    queue_ms: list[float] = field(default_factory=list)
    task_ms: list[float] = field(default_factory=list)

    def add_history(self, events: Sequence[HistoryEvent]) -> None:
        """The tasks in one history that accepted a `turn` Update (one task may accept a few:
        counted once)."""
        for index, event in enumerate(events):
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED or index < 2:
                continue
            if not _accepts_turn(events[index + 1 :]):
                continue
            scheduled, started = events[index - 2], events[index - 1]
            if (
                scheduled.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
                or started.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
            ):
                continue
            self.queue_ms.append(_ms_between(scheduled, started))
            self.task_ms.append(_ms_between(started, event))

    def figures(self) -> dict[str, float | None]:
        return {
            "update_queue_p50_ms": percentile(self.queue_ms, 50),
            "update_queue_p99_ms": percentile(self.queue_ms, 99),
            "update_task_p50_ms": percentile(self.task_ms, 50),
            "update_task_p99_ms": percentile(self.task_ms, 99),
        }


def _accepts_turn(after: Sequence[HistoryEvent]) -> bool:
    """The events a task's completion recorded (up to the next task) accept a `turn` Update."""
    for event in after:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            return False
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes
            if accepted.accepted_request.input.name == TURN_UPDATE:
                return True
    return False


def _ms_between(earlier: HistoryEvent, later: HistoryEvent) -> float:
    delta = later.event_time.ToDatetime() - earlier.event_time.ToDatetime()
    return delta.total_seconds() * 1000.0


async def update_tasks(client: Client, call_ids: Sequence[str]) -> UpdateTasks:
    """The split over every call that Temporal still has (a call it cannot read is left out)."""
    tasks = UpdateTasks()

    async def one(call_id: str) -> None:
        try:
            history = await client.get_workflow_handle(call_id).fetch_history()
        except RPCError:
            return
        tasks.add_history(history.events)

    await asyncio.gather(*(one(call_id) for call_id in call_ids))
    return tasks


async def update_split(settings: Settings, call_ids: Sequence[str]) -> dict[str, float | None]:
    """`UpdateTasks.figures` for a bench step's calls (all None if Temporal is down)."""
    try:
        client = await connect(settings)
    except RuntimeError:
        return UpdateTasks().figures()
    return (await update_tasks(client, call_ids)).figures()
