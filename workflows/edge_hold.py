"""Whether the media edge that holds a call is still alive, learnt by the call's workflow.

The edge runs a small Temporal worker on its own task queue (`Turn.edge_queue`). Once the call
is answered, the workflow starts one long-running activity, `hold_call`, on that queue: the edge
heartbeats it while the media stream is up and completes it when the stream ends. History pays
two or three events per call; the heartbeats themselves are not recorded.

A missed heartbeat is not yet a dead edge: a Temporal restart also misses them. It is retried,
so a live edge picks the call up again at once (its `hold_call` finds the call still open). A dead
edge cannot: the retry is not started in time (schedule-to-start timeout), or an edge restarted
on the same queue answers that it does not hold the call. Either way the call is `dropped`, and
it ended when the edge was last known alive: the time in its last heartbeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError, TimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from workflows.messages import CallTimers

EDGE_HOLD_PATCH = "edge-hold-v1"
"""Calls whose edge names its task queue are held by the edge (`hold_call`)."""
HOLD_ACTIVITY = "hold_call"
HOLD_ATTEMPT_LIMIT = timedelta(hours=1)
"""One attempt's length; a longer call is simply picked up again by the next attempt."""
HOLD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=0,
)
"""Every missed heartbeat is retried: only an edge that cannot take the call back is dead."""


class HoldCall(BaseModel):
    """The activity `hold_call`'s input: the call the edge should say it holds."""

    call_id: str


class HoldReleased(BaseModel):
    """How `hold_call` ended on the edge: the stream closed (`held`), or this edge (a restart of
    the one that died) never had the call, and when the edge was last seen holding it."""

    held: bool
    reason: str
    last_alive: float | None = None
    """Unix time of the last heartbeat any attempt sent, if any."""


def last_alive_of(details: Sequence[Any]) -> float | None:
    """The time a heartbeat carried (the edge heartbeats the Unix time it was alive)."""
    if details and isinstance(details[-1], int | float):
        return float(details[-1])
    return None


EdgeLost = Callable[[str, datetime], None]
EdgeReleased = Callable[[str], None]


class EdgeHold:
    """The workflow's side: start the hold on the edge's queue, report how it ended."""

    def __init__(self, call_id: str, timers: CallTimers) -> None:
        self._call_id = call_id
        self._timers = timers
        self._task: asyncio.Task[None] | None = None
        self._released = False

    def start(self, queue: str, lost: EdgeLost, released: EdgeReleased) -> None:
        """Hold the call on `queue`; `lost` (reason, last alive) if the edge dies with it,
        `released` (reason) if the edge closed the stream itself."""
        if self._task is None and workflow.patched(EDGE_HOLD_PATCH):
            self._task = asyncio.create_task(self._hold(queue, workflow.now(), lost, released))

    def release(self) -> None:
        """The call is over: the edge need not hold it any longer."""
        self._released = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _hold(
        self, queue: str, since: datetime, lost: EdgeLost, released: EdgeReleased
    ) -> None:
        timers = self._timers
        try:
            result = await workflow.execute_activity(
                HOLD_ACTIVITY,
                HoldCall(call_id=self._call_id),
                result_type=HoldReleased,
                task_queue=queue,
                start_to_close_timeout=HOLD_ATTEMPT_LIMIT,
                heartbeat_timeout=timedelta(seconds=timers.edge_heartbeat_s),
                schedule_to_start_timeout=timedelta(seconds=timers.edge_reattach_s),
                retry_policy=HOLD_RETRY,
                cancellation_type=ActivityCancellationType.TRY_CANCEL,
                summary=f"media edge {queue} holds the call",
            )
        except asyncio.CancelledError:
            if self._released:
                return
            raise
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, CancelledError):
                if not self._released:
                    lost(f"media edge {queue} shut down with the call", workflow.now())
                return
            seen = None
            if isinstance(cause, TimeoutError):
                seen = last_alive_of(cause.last_heartbeat_details)
            lost(f"media edge {queue} stopped answering", _last_alive(since, seen))
            return
        if result.held:
            released(result.reason)
        else:
            lost(f"media edge {queue} {result.reason}", _last_alive(since, result.last_alive))


def _last_alive(since: datetime, seen: float | None) -> datetime:
    """The edge's last heartbeat, never before the hold began nor after the workflow's now."""
    if seen is None:
        return since
    return min(max(since, datetime.fromtimestamp(seen, UTC)), workflow.now())
