"""`slot bench`'s split of a turn's Update: the workflow task that accepted it, from history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from evals.bench_updates import UpdateTasks

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(kind: EventType.ValueType, ms: float, update: str | None = None) -> HistoryEvent:
    made = HistoryEvent(event_type=kind)
    made.event_time.FromDatetime(T0 + timedelta(milliseconds=ms))
    if update is not None:
        attributes = made.workflow_execution_update_accepted_event_attributes
        attributes.accepted_request.input.name = update
    return made


def task(at: float, queued: float, ran: float) -> list[HistoryEvent]:
    return [
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, at),
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, at + queued),
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, at + queued + ran),
    ]


def test_only_the_tasks_that_accepted_a_turn_are_timed() -> None:
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    history = [
        event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 0),
        *task(0, 50, 300),
        *task(1000, 2, 40),
        event(accepted, 1042, "turn"),
        event(EventType.EVENT_TYPE_MARKER_RECORDED, 1042),
        event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, 2000),
        *task(2000, 10, 20),
        *task(3000, 1, 15),
        event(accepted, 3016, "llm_result"),
        *task(4000, 5, 60),
        event(EventType.EVENT_TYPE_MARKER_RECORDED, 4065),
        event(accepted, 4065, "turn"),
    ]
    tasks = UpdateTasks()
    tasks.add_history(history)
    assert tasks.queue_ms == [2.0, 5.0]
    assert tasks.task_ms == [40.0, 60.0]
