"""CampaignWorkflow: call a list of leads with a playbook, within each lead's calling window, at
the shared pace, a few calls at a time, retrying unanswered lines and calling back those who
asked, never dialling a number on the do-not-call list.

Each call is a child `CallWorkflow`. Every wait is a durable timer (window, pace, backoff,
follow-up), so a worker restart loses nothing. A large campaign continues as new every
`dials_per_run` dials, after its calls in flight have ended, carrying its queue and counters;
leads not yet started travel in the input, already trimmed. A campaign started with `stored`
leads (the API's) reads them from the database a page at a time through an activity and
carries only its cursor and the rest of the current page, so 20,000 leads start as easily as
20; one started with inline leads runs exactly as before.

Every change (a dial, a call's result, a pause) also goes to the campaign's live stream through
a local activity, in order, batched while one is on its way (behind the patch
`campaign-live-events-v1`, so campaigns started before it replay as they ran).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.campaign import CampaignActivities
    from activities.lead_pages import LeadPages
    from activities.telephony import PlaceCall, TelephonyActivities
    from workflows.call import PLACE_CALL_RETRY, PLACE_CALL_TIMEOUT, CallWorkflow
    from workflows.campaign_plan import (
        AttemptResult,
        CampaignCarry,
        CampaignEvent,
        CampaignEventKind,
        CampaignInput,
        CampaignProgress,
        CancelCampaign,
        DncCheck,
        LeadJob,
        NextLeads,
        PauseCampaign,
        PublishCampaignEvents,
        ReserveDial,
        StoredLeads,
        attempt_result,
    )
    from workflows.details import call_summary
    from workflows.messages import CallInput, CallSnapshot, Direction, HangUp, Lead, WrapUp
    from workflows.search_attributes import initial_search_attributes

QUICK_ACTIVITY = timedelta(seconds=30)
QUICK_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


@workflow.defn
class CampaignWorkflow:
    @workflow.init
    def __init__(self, campaign: CampaignInput) -> None:
        self._campaign = campaign
        carried = campaign.carried or CampaignCarry()
        self._progress = carried.progress.model_copy()
        if campaign.carried is None:
            stored = campaign.stored.count if campaign.stored else 0
            self._progress.leads = len(campaign.leads) + stored
        self._stored = campaign.stored.model_copy() if campaign.stored else None
        self._fresh: deque[LeadJob] = deque(LeadJob(lead=lead) for lead in campaign.leads)
        self._queue: list[tuple[datetime, int, LeadJob]] = []
        self._order = 0
        for job in carried.queue:
            self._schedule(job)
        self._in_flight: dict[str, ChildWorkflowHandle[CallWorkflow, CallSnapshot]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changes = 0
        self._dials_this_run = 0
        self._cancel: CancelCampaign | None = None
        self._live = False
        self._outbox: list[CampaignEvent] = []
        self._sending = False
        self._sender: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, campaign: CampaignInput) -> CampaignProgress:
        if workflow.patched("campaign-live-events-v1"):
            self._live = True
            self._sender = asyncio.create_task(self._send_live_events())
        self._publish("started")
        while self._cancel is None:
            if self._run_is_full():
                await workflow.wait_condition(lambda: not self._in_flight)
                await self._live_events_sent()
                self._continue_as_new()
            await workflow.wait_condition(self._may_dial)
            if self._cancel is not None:
                break
            if not self._fresh and self._stored is not None and not self._stored.exhausted:
                await self._read_page(self._stored)
            job = self._next_due()
            if job is None:
                if not self._fresh and not self._queue and not self._in_flight:
                    break
                await self._wait_for_work()
                continue
            await self._try(job)
        if self._cancel is not None:
            await self._wind_down(self._cancel)
        await workflow.wait_condition(lambda: not self._in_flight)
        self._publish("finished")
        await self._live_events_sent()
        return self.progress()

    def _may_dial(self) -> bool:
        if self._cancel is not None:
            return True
        return not self._progress.paused and (
            len(self._in_flight) < self._campaign.max_concurrent_calls
        )

    def _run_is_full(self) -> bool:
        full = self._dials_this_run >= self._campaign.dials_per_run
        return full or workflow.info().is_continue_as_new_suggested()

    def _continue_as_new(self) -> None:
        self._progress.runs += 1
        queue = [job for _, _, job in sorted(self._queue, key=lambda item: (item[0], item[1]))]
        carried = CampaignCarry(queue=queue, progress=self._progress)
        leads = [job.lead for job in self._fresh]
        update = {"leads": leads, "carried": carried, "stored": self._stored}
        workflow.continue_as_new(self._campaign.model_copy(update=update))

    async def _read_page(self, stored: StoredLeads) -> None:
        """The next page of the campaign's stored leads into the fresh queue; an empty page
        means every stored lead has been read."""
        page = await workflow.execute_activity_method(
            LeadPages.next_leads,
            NextLeads(
                campaign_id=self._campaign.campaign_id, after=stored.after, limit=stored.page_size
            ),
            start_to_close_timeout=QUICK_ACTIVITY,
            retry_policy=QUICK_RETRY,
            summary=f"leads after row {stored.after}",
        )
        self._fresh.extend(LeadJob(lead=lead) for lead in page.leads)
        stored.read += len(page.leads)
        stored.after = page.last
        stored.exhausted = len(page.leads) < stored.page_size

    def _next_due(self) -> LeadJob | None:
        if self._queue and self._queue[0][0] <= workflow.now():
            return heapq.heappop(self._queue)[2]
        return self._fresh.popleft() if self._fresh else None

    async def _wait_for_work(self) -> None:
        """Until a queued call is due, a call ends, or a signal changes something."""
        seen = self._changes
        timeout = None
        if self._queue:
            timeout = max(self._queue[0][0] - workflow.now(), timedelta(0))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._changes != seen, timeout=timeout, timeout_summary="next call due"
            )

    def _schedule(self, job: LeadJob) -> None:
        assert job.due is not None
        self._order += 1
        heapq.heappush(self._queue, (job.due, self._order, job))

    async def _try(self, job: LeadJob) -> None:
        """Dial `job` now if its window is open, the pace allows and it is not on the DNC list;
        otherwise put it back for when its window opens."""
        lead, window = job.lead, self._campaign.window
        opens = window.next_open(workflow.now(), lead.time_zone)
        if opens > workflow.now():
            self._schedule(job.model_copy(update={"due": opens}))
            return
        slot = await workflow.execute_local_activity_method(
            CampaignActivities.reserve_dial,
            ReserveDial(at=workflow.now(), calls_per_second=self._campaign.calls_per_second),
            start_to_close_timeout=QUICK_ACTIVITY,
            retry_policy=QUICK_RETRY,
            summary="dialling slot",
        )
        if slot > workflow.now():
            await workflow.sleep(slot - workflow.now(), summary="pace")
        if self._cancel is not None or self._progress.paused:
            self._schedule(job.model_copy(update={"due": workflow.now()}))
            return
        if not window.is_open(workflow.now(), lead.time_zone):
            opens = window.next_open(workflow.now(), lead.time_zone)
            self._schedule(job.model_copy(update={"due": opens}))
            return
        listed = await workflow.execute_local_activity_method(
            CampaignActivities.is_do_not_call,
            DncCheck(phone=lead.phone),
            start_to_close_timeout=QUICK_ACTIVITY,
            retry_policy=QUICK_RETRY,
            summary=f"do-not-call check {lead.lead_id}",
        )
        if listed:
            self._progress.skipped_dnc += 1
            self._lead_done()
            return
        await self._dial(job)

    async def _dial(self, job: LeadJob) -> None:
        campaign = self._campaign
        call = CallInput(
            call_id=job.call_id(campaign.campaign_id),
            direction=Direction.OUTBOUND,
            lead=Lead(name=job.lead.name, phone=job.lead.phone),
            script_name=campaign.script_name,
            playbook=campaign.playbook,
            timers=campaign.timers,
            follow_up_of=job.follow_up_of,
            campaign_id=campaign.campaign_id,
        )
        handle = await workflow.start_child_workflow(
            CallWorkflow.run,
            call,
            id=call.call_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=initial_search_attributes(call),
            static_summary=call_summary(call),
        )
        self._in_flight[call.call_id] = handle
        self._dials_this_run += 1
        self._progress.dialled += 1
        self._publish("dialled", call.call_id, job)
        self._tasks[call.call_id] = asyncio.create_task(self._follow(job, call, handle))

    async def _follow(
        self,
        job: LeadJob,
        call: CallInput,
        handle: ChildWorkflowHandle[CallWorkflow, CallSnapshot],
    ) -> None:
        """Place the call, wait for it to end, and decide what comes next for its lead."""
        try:
            await workflow.execute_activity_method(
                TelephonyActivities.place_call,
                PlaceCall(call_id=call.call_id, to=call.lead.phone),
                start_to_close_timeout=PLACE_CALL_TIMEOUT,
                retry_policy=PLACE_CALL_RETRY,
                summary=f"dial {job.lead.lead_id}",
            )
        except ActivityError as error:
            workflow.logger.warning("call %s not placed: %s", call.call_id, error.cause or error)
            await handle.signal(CallWorkflow.hang_up, HangUp(reason="call failed to dial"))
        snapshot = await handle
        del self._in_flight[call.call_id]
        del self._tasks[call.call_id]
        self._changes += 1
        result = attempt_result(snapshot)
        self._settle(job, call, result)
        self._publish("ended", call.call_id, job, result)

    def _settle(self, job: LeadJob, call: CallInput, result: AttemptResult) -> None:
        progress, campaign, now = self._progress, self._campaign, workflow.now()
        progress.count(result)
        if self._cancel is not None:
            self._lead_done()
            return
        if result in campaign.retries.retry_on:
            delay = campaign.retries.delay_after(job.attempt)
            if delay is not None:
                progress.retries_scheduled += 1
                self._schedule(
                    job.model_copy(update={"attempt": job.attempt + 1, "due": now + delay})
                )
                return
        if result is AttemptResult.CALL_BACK and job.follow_ups < campaign.max_follow_ups:
            progress.follow_ups_scheduled += 1
            delay = timedelta(seconds=campaign.timers.follow_up_delay_s)
            follow_up = LeadJob(
                lead=job.lead,
                due=now + delay,
                follow_up_of=call.call_id,
                follow_ups=job.follow_ups + 1,
            )
            self._schedule(follow_up)
            return
        self._lead_done()

    def _lead_done(self) -> None:
        self._progress.leads_done += 1

    async def _wind_down(self, cancel: CancelCampaign) -> None:
        """Cancelled: no more dials; every call in flight says goodbye and hangs up."""
        wrap = WrapUp(reason=cancel.reason, goodbye=cancel.goodbye)
        for handle in list(self._in_flight.values()):
            try:
                await handle.signal(CallWorkflow.wrap_up, wrap)
            except ApplicationError as error:  # the call ended before the goodbye reached it
                workflow.logger.info("call %s ended before wrap-up: %s", handle.id, error)
        self._progress.leads_done += len(self._fresh) + len(self._queue) + self._unread()
        self._fresh.clear()
        self._queue.clear()
        if self._stored is not None:
            self._stored.exhausted = True

    @workflow.signal
    def pause(self, pause: PauseCampaign) -> None:
        """Stop dialling (calls in flight go on) until `resume`."""
        self._progress.paused = True
        self._changes += 1
        self._publish("paused")

    @workflow.signal
    def resume(self) -> None:
        self._progress.paused = False
        self._changes += 1
        self._publish("resumed")

    @workflow.signal
    def cancel(self, cancel: CancelCampaign) -> None:
        if self._cancel is None:
            self._cancel = cancel
            self._progress.cancelling = True
        self._changes += 1
        self._publish("cancelling")

    def _unread(self) -> int:
        return self._stored.unread if self._stored is not None else 0

    @workflow.query
    def progress(self) -> CampaignProgress:
        progress = self._progress.model_copy()
        progress.in_flight = len(self._in_flight)
        progress.waiting = len(self._fresh) + len(self._queue) + self._unread()
        return progress

    def _publish(
        self,
        kind: CampaignEventKind,
        call_id: str | None = None,
        job: LeadJob | None = None,
        result: AttemptResult | None = None,
    ) -> None:
        """Show the counters in the Web UI and queue the change for the live stream."""
        campaign, progress = self._campaign, self.progress()
        workflow.set_current_details(progress.details(campaign.campaign_id, campaign.script_name))
        if self._live:
            event = CampaignEvent(
                kind=kind,
                campaign_id=campaign.campaign_id,
                progress=progress,
                call_id=call_id,
                lead_id=job.lead.lead_id if job else None,
                attempt=job.attempt if job else None,
                result=result,
            )
            self._outbox.append(event)

    async def _send_live_events(self) -> None:
        """Hand queued changes to the live stream, one batch at a time, in order."""
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            batch, self._outbox = self._outbox, []
            self._sending = True
            await workflow.execute_local_activity_method(
                CampaignActivities.publish_campaign_events,
                PublishCampaignEvents(campaign_id=self._campaign.campaign_id, events=batch),
                start_to_close_timeout=QUICK_ACTIVITY,
                retry_policy=QUICK_RETRY,
                summary="live events",
            )
            self._sending = False

    async def _live_events_sent(self) -> None:
        """Until the live stream has every change (a campaign from before the patch sends none
        and does not wait, so it replays as it ran)."""
        if self._live:
            await workflow.wait_condition(lambda: not self._outbox and not self._sending)
