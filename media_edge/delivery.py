"""The edge's side of `workflows.edge_delivery`: speak what a call's workflow says outside a turn.

The workflow schedules `speak_on_edge` on this edge's own task queue, so the task reaches the
edge whose media stream carries the call. The edge speaks exactly the decision the task carries,
and only for the workflow of that call: the activity's own workflow id must be the call's. A
retried task is spoken once (`CallSession.say` keeps the utterance ids it queued).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.edge_delivery import SPEAK_ACTIVITY, SpeakOnEdge, SpokenOnEdge
from workflows.messages import Decision


class Speaks(Protocol):
    def say(self, decision: Decision) -> bool: ...


class EdgeDelivery:
    """Speaks onto the calls this edge carries (`sessions`, by call id)."""

    def __init__(self, sessions: Mapping[str, Speaks], queue: str) -> None:
        self._sessions = sessions
        self._queue = queue

    @activity.defn(name=SPEAK_ACTIVITY)
    async def speak_on_edge(self, request: SpeakOnEdge) -> SpokenOnEdge:
        sender = activity.info().workflow_id
        if sender != request.call_id:
            raise ApplicationError(
                f"workflow {sender} may not speak on call {request.call_id}",
                type="NotThisCall",
                non_retryable=True,
            )
        session = self._sessions.get(request.call_id)
        if session is None:
            raise ApplicationError(
                f"call {request.call_id} has no media stream on edge {self._queue}",
                type="CallNotOnEdge",
                non_retryable=True,
            )
        return SpokenOnEdge(queued=session.say(request.decision))
