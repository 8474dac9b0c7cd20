"""The edge's side of `workflows.edge_hold`: which calls this edge holds, told to their workflows.

Each call's workflow runs the activity `hold_call` on this edge's own task queue; the edge
heartbeats it (with the time, the workflow's "last seen alive") while the call's media stream
is up, and completes it when the stream ends. If this process dies the heartbeats stop, and the
workflow ends the call as dropped. The edge's worker runs only this activity, on the edge's own
event loop: a heartbeat is a few bytes, so it costs the audio path nothing. The same worker
takes what the calls' workflows say outside a turn (`media_edge.delivery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from media_edge.delivery import EdgeDelivery
from workflows.edge_hold import HOLD_ACTIVITY, HoldCall, HoldReleased, last_alive_of

ENDED_REMEMBERED = 10_000
"""Calls that ended here, remembered so a late hold attempt still hears how they ended."""
HEARTBEATS_PER_TIMEOUT = 4
MAX_HELD_CALLS = 2_000
"""Activity slots of the edge's worker: one per call on this edge."""
UNVERSIONED = WorkerDeploymentConfig(
    version=WorkerDeploymentVersion(deployment_name="slot-edge", build_id="hold-call-v1"),
    use_worker_versioning=False,
)
"""A fixed identity: without one the SDK hashes the bytecode of every loaded module to make a
build id, which blocked the edge's event loop for 5-18 s at start-up here."""


class CallHolds:
    """The calls this edge holds: opened when a media stream starts, closed when it ends."""

    def __init__(self) -> None:
        self._open: dict[str, asyncio.Event] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self.attempts: dict[str, int] = {}
        """The latest `hold_call` attempt each open call runs (a retry after missed heartbeats)."""

    def open(self, call_id: str) -> None:
        self._open[call_id] = asyncio.Event()

    def close(self, call_id: str, reason: str) -> None:
        """The call's stream ended (after its last signal went out): release its hold."""
        self._ended[call_id] = reason
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)
        self.attempts.pop(call_id, None)
        ended = self._open.pop(call_id, None)
        if ended is not None:
            ended.set()

    @activity.defn(name=HOLD_ACTIVITY)
    async def hold_call(self, hold: HoldCall) -> HoldReleased:
        """Heartbeat while the call is open here; how it ended once it has."""
        info = activity.info()
        ended = self._open.get(hold.call_id)
        if ended is None:
            reason = self._ended.get(hold.call_id)
            if reason is not None:
                return HoldReleased(held=True, reason=reason)
            return HoldReleased(
                held=False,
                reason="does not hold the call (restarted since?)",
                last_alive=last_alive_of(info.heartbeat_details),
            )
        self.attempts[hold.call_id] = info.attempt
        every = (info.heartbeat_timeout or timedelta(seconds=4)) / HEARTBEATS_PER_TIMEOUT
        while not ended.is_set():
            activity.heartbeat(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), every.total_seconds())
        return HoldReleased(held=True, reason=self._ended.get(hold.call_id, "stream ended"))


@contextlib.asynccontextmanager
async def edge_worker(
    client: Client, queue: str, holds: CallHolds, delivery: EdgeDelivery | None = None
) -> AsyncIterator[Worker]:
    """The edge's own worker, polling `queue` for the holds of its calls and (with `delivery`)
    for what their workflows say outside a turn."""
    speaks = [delivery.speak_on_edge] if delivery is not None else []
    worker = Worker(
        client,
        task_queue=queue,
        activities=[holds.hold_call, *speaks],
        max_concurrent_activities=MAX_HELD_CALLS,
        deployment_config=UNVERSIONED,
    )
    async with worker:
        yield worker
