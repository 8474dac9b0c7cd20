"""The one place where the edge talks to Temporal: a call's Updates and signals, typed.

Updates and signals are referenced through `CallWorkflow`'s methods, so a renamed handler or a
changed argument type is a type error here, not a silent mismatch on the wire. Updates carry an
id derived from what they report (`<call>-turn-<seq>`, `<utterance>-llm`) and are retried under
one policy (`Retry`) with that same id, so a worker crash or a server restart never loses or
doubles a turn. Signals are retried the same way until delivered or the call is over (its
workflow gone), each with one request id that Temporal deduplicates, so a signal whose first
attempt did land is not recorded twice. They go out in the background, and the next Update
waits for them, so the workflow sees them in order; a hang-up sent during a Temporal outage
arrives after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.converter import WorkflowSerializationContext
from temporalio.service import RPCError, RPCStatusCode

from slot.settings import Settings
from slot.temporal import connect, start_call_workflow
from workflows.call import CallWorkflow
from workflows.messages import (
    CallInput,
    CallStatusUpdate,
    Decision,
    HangUp,
    MachineDetection,
    Turn,
    UtterancePlayed,
)
from workflows.router_messages import LLMTurnReport

SIGNAL_TIMEOUT_S = 10.0
"""RPC timeout of one attempt of a signal or of an LLM report."""
UPDATE_RPC_TIMEOUT_S = 30.0
_SIGNAL_RPC = timedelta(seconds=SIGNAL_TIMEOUT_S)
SIGNAL_BUDGET_S = 3600.0
"""A signal is retried this long at most: longer than any Temporal outage a call outlives (the
edge's hold ends a call whose edge cannot reach Temporal, and then the signal is not needed)."""

RETRYABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.CANCELLED,
    }
)
"""RPC failures that a later attempt with the same update id may get past."""

T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """The edge's one retry policy for Updates and signals: exponential backoff within a time
    budget, each attempt waiting at most `update_rpc_timeout_s` for an Update's answer."""

    first_delay_s: float = 0.2
    max_delay_s: float = 2.0
    update_rpc_timeout_s: float = UPDATE_RPC_TIMEOUT_S


TURN_BUDGET_S = 120.0
"""A caller turn waits this long for the workflow (a worker restart, a server failover)."""
REPORT_BUDGET_S = 2.0
"""An LLM report is off the critical path: a few quick attempts, then it is given up."""


class LinkError(Exception):
    """An Update the workflow did not answer; `reason` says why, for the call's log and events."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpdateRefused(LinkError):
    """The workflow's validator or handler rejected the Update."""

    def __init__(self, reason: str, cause: BaseException | None) -> None:
        super().__init__(reason)
        self.cause = cause


class WorkflowNotFound(LinkError):
    """No such workflow, or it is no longer running."""


class WorkflowUnreachable(LinkError):
    """Retryable failures until the budget ran out."""


async def connect_temporal(settings: Settings) -> Client:
    """The edge's Temporal client; a start-up error names the address it could not reach."""
    try:
        return await connect(settings)
    except Exception as error:
        raise RuntimeError(
            f"media edge cannot reach Temporal at {settings.temporal_address}: {error}"
        ) from error


async def start_call(client: Client, call_input: CallInput, settings: Settings) -> None:
    """Start an inbound call's workflow (or join the running one with that id)."""
    try:
        await start_call_workflow(client, call_input, settings)
    except RPCError as error:
        raise WorkflowUnreachable(f"cannot start the call workflow: {error.message}") from error


async def send_call_status(
    client: Client, call_id: str, update: CallStatusUpdate, log: logging.Logger
) -> bool:
    """Twilio's status callback as the signal `call_status`; False if the call is not running."""
    signal = Signal(client, call_id, CallWorkflow.call_status, update)
    return await signal.deliver(log, Retry())


async def send_machine_detection(
    client: Client, call_id: str, amd: MachineDetection, log: logging.Logger
) -> bool:
    """Twilio's answering-machine detection callback as the signal `machine_detection`."""
    signal = Signal(client, call_id, CallWorkflow.machine_detection, amd)
    return await signal.deliver(log, Retry())


class Signal:
    """One signal to a call's workflow, with the request id every attempt of it carries.

    Temporal drops a signal whose request id it has already recorded, so a retry after an
    attempt that landed but whose answer was lost does not signal twice. (The SDK's
    `WorkflowHandle.signal` draws a new request id per call, so it cannot be retried safely.)
    """

    def __init__(
        self, client: Client, call_id: str, handler: Callable[..., None], arg: BaseModel
    ) -> None:
        self.client = client
        self.call_id = call_id
        self.name = workflow._SignalDefinition.must_name_from_fn_or_str(handler)
        self.arg = arg
        self.request_id = str(uuid.uuid4())

    async def send_once(self) -> None:
        client = self.client
        converter = client.data_converter.with_context(
            WorkflowSerializationContext(namespace=client.namespace, workflow_id=self.call_id)
        )
        request = SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=self.call_id),
            signal_name=self.name,
            identity=client.identity,
            request_id=self.request_id,
        )
        request.input.payloads.extend(await converter.encode([self.arg]))
        await client.workflow_service.signal_workflow_execution(request, timeout=_SIGNAL_RPC)

    async def deliver(
        self, log: logging.Logger | logging.LoggerAdapter[logging.Logger], retry: Retry
    ) -> bool:
        """Send until delivered (True) or the workflow is gone or refuses it (False)."""
        deadline = time.monotonic() + SIGNAL_BUDGET_S
        delay = retry.first_delay_s
        while True:
            try:
                await self.send_once()
                return True
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    log.info("signal %s: call %s is not running", self.name, self.call_id)
                    return False
                if error.status not in RETRYABLE or time.monotonic() + delay > deadline:
                    log.warning("signal %s not delivered: %s", self.name, error.message)
                    return False
                failure = f"{error.status.name}: {error.message}"
            except Exception as error:
                log.warning("signal %s not delivered: %r", self.name, error)
                return False
            log.warning("signal %s: %s; retrying in %.1f s", self.name, failure, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry.max_delay_s)


async def decision_being_delivered(
    client: Client, call_id: str, utterance_id: str
) -> Decision | None:
    """The decision the call's workflow is delivering now with this id (query `delivering`);
    None if it is not delivering it, or if the call or the query is unknown;
    `WorkflowUnreachable` if Temporal cannot say."""
    handle = client.get_workflow_handle_for(CallWorkflow.run, call_id)
    try:
        return await handle.query(CallWorkflow.delivering, utterance_id, rpc_timeout=_SIGNAL_RPC)
    except WorkflowQueryFailedError:
        return None
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise WorkflowUnreachable(f"query delivering: {error.message}") from error
        return None


class WorkflowLink:
    """One call's link to its workflow."""

    def __init__(
        self,
        client: Client,
        call_id: str,
        log: logging.LoggerAdapter[logging.Logger],
        retry: Retry = Retry(),
    ) -> None:
        self.call_id = call_id
        self.log = log
        self.retry = retry
        self.known = False
        """The workflow has answered (or refused) an Update: it exists."""
        self._client = client
        self._handle: WorkflowHandle[CallWorkflow, Any] = client.get_workflow_handle_for(
            CallWorkflow.run, call_id
        )
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def turn(self, turn: Turn) -> Decision:
        """The Update `turn`, after the signals sent before it; raises `LinkError`."""
        await self.settle()
        try:
            return await self._update(
                lambda: self._handle.execute_update(
                    CallWorkflow.turn,
                    turn,
                    id=f"{self.call_id}-turn-{turn.seq}",
                    rpc_timeout=timedelta(seconds=self.retry.update_rpc_timeout_s),
                ),
                f"turn {turn.seq}",
                TURN_BUDGET_S,
            )
        except WorkflowNotFound:
            if turn.kind == "start":
                raise WorkflowNotFound(f"unknown call {self.call_id}: no such workflow") from None
            raise WorkflowNotFound(f"call {self.call_id} is no longer running") from None

    async def llm_result(self, report: LLMTurnReport) -> Decision | None:
        """The Update `llm_result`: the workflow checks the streamed reply and records it."""
        try:
            return await self._update(
                lambda: self._handle.execute_update(
                    CallWorkflow.llm_result,
                    report,
                    id=f"{report.utterance_id}-llm",
                    rpc_timeout=timedelta(seconds=SIGNAL_TIMEOUT_S),
                ),
                f"llm result {report.utterance_id}",
                REPORT_BUDGET_S,
            )
        except (LinkError, RPCError) as error:
            self.log.warning("llm result %s not delivered: %s", report.utterance_id, error)
            return None

    def in_background(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` (a report to the workflow) so that the next turn waits for it."""
        task = asyncio.create_task(coro)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    def utterance_played(self, played: UtterancePlayed) -> None:
        """The signal `utterance_played`, in the background, before the next turn."""
        self.in_background(self.send_utterance_played(played))

    async def send_utterance_played(self, played: UtterancePlayed) -> None:
        await self._signal(CallWorkflow.utterance_played, played)

    async def hang_up(self, reason: str) -> None:
        await self._signal(CallWorkflow.hang_up, HangUp(reason=reason))

    async def settle(self) -> None:
        """Wait for the reports and signals still on their way (each retries within a budget)."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _signal(self, handler: Callable[..., None], arg: BaseModel) -> None:
        await Signal(self._client, self.call_id, handler, arg).deliver(self.log, self.retry)

    async def _update(
        self, send: Callable[[], Awaitable[Decision]], what: str, budget_s: float
    ) -> Decision:
        deadline = time.monotonic() + budget_s
        delay = self.retry.first_delay_s
        while True:
            try:
                decision = await send()
                self.known = True
                return decision
            except WorkflowUpdateFailedError as error:
                self.known = True
                raise UpdateRefused(
                    f"{what} refused by the workflow: {error.cause}", error.cause
                ) from None
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    raise WorkflowNotFound(f"{what}: no such workflow {self.call_id}") from None
                if error.status not in RETRYABLE:
                    raise
                failure = f"{error.status.name}: {error.message}"
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                failure = "update timed out"
            if time.monotonic() + delay > deadline:
                raise WorkflowUnreachable(f"workflow did not answer {what} ({failure})")
            self.log.warning("%s: %s; retrying in %.1f s", what, failure, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry.max_delay_s)
