"""What the workflow says outside a turn (a reprompt, a goodbye) goes to the edge holding the call.

With more than one edge, only the edge whose media stream carries the call can speak into it.
That edge already runs a worker on its own task queue (`Turn.edge_queue`, see `edge_hold`), so
the workflow schedules the activity `speak_on_edge` there: Temporal routes it to that edge and
no other, the edge needs no address a worker can reach, and the edge speaks exactly what the
activity carries, which is what the workflow recorded. If the edge is gone, nobody picks the
task up and its schedule-to-start timeout ends the call.

Calls whose history predates this (`EDGE_DELIVERY_PATCH`), or whose edge never named a queue,
keep the HTTP delivery to the edge's internal listener (`TelephonyActivities.deliver_utterance`).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.messages import CallTimers, Decision

EDGE_DELIVERY_PATCH = "edge-delivery-v1"
"""Utterances outside a turn go to the holding edge's task queue (before: HTTP to its URL)."""
SPEAK_ACTIVITY = "speak_on_edge"
SPEAK_TIMEOUT = timedelta(seconds=5)
SPEAK_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=200))
"""A retried delivery is spoken once: the edge keeps the utterance ids it has queued."""


class SpeakOnEdge(BaseModel):
    """The activity `speak_on_edge`'s input: a decision for the edge to speak on the call."""

    call_id: str
    decision: Decision


class SpokenOnEdge(BaseModel):
    queued: bool
    """False when the edge had already queued this utterance (a retried delivery)."""


async def speak_on_edge(
    call_id: str, queue: str, decision: Decision, timers: CallTimers, label: str
) -> SpokenOnEdge:
    """Hand `decision` to the edge polling `queue`; raises `ActivityError` when it cannot."""
    spoken: SpokenOnEdge = await workflow.execute_activity(
        SPEAK_ACTIVITY,
        SpeakOnEdge(call_id=call_id, decision=decision),
        result_type=SpokenOnEdge,
        task_queue=queue,
        start_to_close_timeout=SPEAK_TIMEOUT,
        schedule_to_start_timeout=timedelta(seconds=timers.edge_reattach_s),
        retry_policy=SPEAK_RETRY,
        summary=f"say {label} on media edge {queue}",
    )
    return spoken
