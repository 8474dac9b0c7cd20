"""The HTTP API a sales team uses (FastAPI; OpenAPI docs at /docs, the schema at
/openapi.json): create and list campaigns, upload their leads as CSV, start, pause, resume and
cancel them, read their progress (the workflow's query), list and fetch calls with their
transcript and recording link, and add to or remove from the do-not-call list.

Campaigns run as `CampaignWorkflow`s started through the Temporal client; the database keeps
what was asked (campaigns, leads) and what happened (call records). Every route but the docs
and /healthz needs `Authorization: Bearer $SLOT_API_TOKEN` (401 otherwise).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.sales_records import CampaignRow
from slot.api.leads_csv import BadLeadsFile, RowError, read_leads
from slot.api.store import CallDetail, CallSummary, Store
from slot.playbooks import load_playbook
from slot.settings import Settings
from workflows.campaign import CampaignWorkflow
from workflows.campaign_plan import (
    CallingWindow,
    CampaignInput,
    CampaignProgress,
    CancelCampaign,
    PauseCampaign,
    Retries,
    StoredLeads,
)

ID_PATTERN = r"^[A-Za-z0-9_.:@+-]{1,80}$"
BEARER = HTTPBearer(auto_error=False, description="SLOT_API_TOKEN")


class CampaignOptions(BaseModel):
    """How a campaign dials; the defaults are the issue's (08:00-21:00 weekdays, 1 call/s)."""

    window: CallingWindow = Field(default_factory=CallingWindow)
    calls_per_second: float = Field(default=1.0, gt=0)
    max_concurrent_calls: int = Field(default=5, ge=1)
    retries: Retries = Field(default_factory=Retries)
    max_follow_ups: int = Field(default=1, ge=0)


class NewCampaign(CampaignOptions):
    campaign_id: str = Field(pattern=ID_PATTERN)
    script_name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")
    """A playbook's bare name in the playbooks folder (`solar_survey`)."""


class Campaign(BaseModel):
    campaign_id: str
    script_name: str
    status: str
    """`draft` (leads may be uploaded) or `started` (the workflow has its state)."""
    leads: int
    options: CampaignOptions
    created_at: datetime
    started_at: datetime | None


class LeadsUploaded(BaseModel):
    added: int
    rejected: list[RowError]
    leads: int
    """The campaign's leads in all, after this upload."""


class DncRequest(BaseModel):
    phone: str = Field(min_length=1)
    reason: str = "added through the API"


class DncStatus(BaseModel):
    phone: str
    listed: bool
    reason: str | None = None


def create_app(settings: Settings, client: Client, store: Store, token: str) -> FastAPI:
    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                status_code=401,
                detail="a valid Authorization: Bearer token (SLOT_API_TOKEN) is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(title="Slot API", version="1", description=(__doc__ or "").split("\n\n")[0])
    api = APIRouter(dependencies=[Depends(authorized)])

    async def campaign_row(campaign_id: str) -> CampaignRow:
        row = await run_in_threadpool(store.campaign, campaign_id)
        if row is None:
            raise HTTPException(404, f"no campaign {campaign_id!r}")
        return row

    async def view(row: CampaignRow) -> Campaign:
        return Campaign(
            campaign_id=row.campaign_id,
            script_name=row.script_name,
            status=row.status,
            leads=await run_in_threadpool(store.lead_count, row.campaign_id),
            options=CampaignOptions.model_validate_json(row.options_json),
            created_at=row.created_at,
            started_at=row.started_at,
        )

    async def started(campaign_id: str) -> WorkflowHandle[CampaignWorkflow, CampaignProgress]:
        row = await campaign_row(campaign_id)
        if row.status != "started":
            raise HTTPException(409, f"campaign {campaign_id!r} has not been started")
        return client.get_workflow_handle_for(CampaignWorkflow.run, campaign_id)

    @api.post("/campaigns", status_code=201, response_model=Campaign)
    async def create_campaign(new: NewCampaign) -> Campaign:
        """A draft campaign: upload its leads, then start it."""
        try:
            load_playbook(new.script_name, settings.playbooks_dir)
        except Exception as error:
            raise HTTPException(422, f"script {new.script_name!r}: {error}") from None
        options = CampaignOptions.model_validate(new.model_dump(exclude={"campaign_id"}))
        row = CampaignRow(
            campaign_id=new.campaign_id,
            script_name=new.script_name,
            status="draft",
            options_json=options.model_dump_json(),
            created_at=datetime.now(UTC),
        )
        if not await run_in_threadpool(store.add_campaign, row):
            raise HTTPException(409, f"campaign {new.campaign_id!r} exists already")
        return await view(row)

    @api.get("/campaigns", response_model=list[Campaign])
    async def list_campaigns() -> list[Campaign]:
        return [await view(row) for row in await run_in_threadpool(store.campaigns)]

    @api.get("/campaigns/{campaign_id}", response_model=Campaign)
    async def get_campaign(campaign_id: str) -> Campaign:
        return await view(await campaign_row(campaign_id))

    @api.post(
        "/campaigns/{campaign_id}/leads",
        response_model=LeadsUploaded,
        responses={422: {"description": "bad rows (the good ones are kept) or a bad file"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
    )
    async def upload_leads(campaign_id: str, request: Request) -> Any:
        """Leads as CSV (`phone`, `name`, `time_zone`, `lead_id`): good rows are kept; if any
        row is bad the answer is 422 listing each bad row's line and what is wrong with it."""
        row = await campaign_row(campaign_id)
        if row.status != "draft":
            raise HTTPException(409, f"campaign {campaign_id!r} has started: leads are fixed")
        body = await request.body()
        if len(body) > settings.api_max_upload_bytes:
            raise HTTPException(413, f"the CSV is over {settings.api_max_upload_bytes} bytes")
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise HTTPException(422, "the CSV is not UTF-8 text") from None
        known = await run_in_threadpool(store.leads, campaign_id)
        try:
            parsed = read_leads(
                text,
                known_phones={lead.phone for lead in known},
                known_ids={lead.lead_id for lead in known},
            )
        except BadLeadsFile as error:
            raise HTTPException(422, str(error)) from None
        await run_in_threadpool(store.add_leads, campaign_id, parsed.leads)
        result = LeadsUploaded(
            added=len(parsed.leads),
            rejected=parsed.rejected,
            leads=len(known) + len(parsed.leads),
        )
        if parsed.rejected:
            lines = ", ".join(str(bad.line) for bad in parsed.rejected)
            detail = {
                "message": f"{len(parsed.rejected)} rows rejected (lines {lines}); "
                f"{result.added} good rows kept",
                **result.model_dump(),
            }
            raise HTTPException(422, detail)
        return result

    @api.post("/campaigns/{campaign_id}/start", status_code=202, response_model=CampaignProgress)
    async def start_campaign(campaign_id: str) -> CampaignProgress:
        row = await campaign_row(campaign_id)
        if row.status != "draft":
            raise HTTPException(409, f"campaign {campaign_id!r} has started already")
        count = await run_in_threadpool(store.lead_count, campaign_id)
        if not count:
            raise HTTPException(409, f"campaign {campaign_id!r} has no leads: upload some first")
        options = CampaignOptions.model_validate_json(row.options_json)
        campaign = CampaignInput(
            campaign_id=campaign_id,
            script_name=row.script_name,
            playbook=load_playbook(row.script_name, settings.playbooks_dir),
            stored=StoredLeads(count=count),  # read in pages: the input stays small
            timers=settings.call_timers(),
            **options.model_dump(),
        )
        try:
            await client.start_workflow(
                CampaignWorkflow.run,
                campaign,
                id=campaign_id,
                task_queue=settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except RPCError as error:
            if error.status is not RPCStatusCode.ALREADY_EXISTS:
                raise
        await run_in_threadpool(store.mark_started, campaign_id)
        return CampaignProgress(leads=count, waiting=count)

    @api.get("/campaigns/{campaign_id}/progress", response_model=CampaignProgress)
    async def campaign_progress(campaign_id: str) -> CampaignProgress:
        """The campaign workflow's `progress` query: dialled, answered, booked, ..."""
        handle = await started(campaign_id)
        return await handle.query(CampaignWorkflow.progress)

    @api.post("/campaigns/{campaign_id}/pause", status_code=202)
    async def pause_campaign(campaign_id: str) -> dict[str, str]:
        """No new dials until resumed; calls on the phone go on."""
        await (await started(campaign_id)).signal(CampaignWorkflow.pause, PauseCampaign())
        return {"campaign_id": campaign_id, "sent": "pause"}

    @api.post("/campaigns/{campaign_id}/resume", status_code=202)
    async def resume_campaign(campaign_id: str) -> dict[str, str]:
        await (await started(campaign_id)).signal(CampaignWorkflow.resume)
        return {"campaign_id": campaign_id, "sent": "resume"}

    @api.post("/campaigns/{campaign_id}/cancel", status_code=202)
    async def cancel_campaign(campaign_id: str, cancel: CancelCampaign | None = None) -> Any:
        """No more dials; each call on the phone hears `goodbye` and ends."""
        handle = await started(campaign_id)
        await handle.signal(CampaignWorkflow.cancel, cancel or CancelCampaign())
        return {"campaign_id": campaign_id, "sent": "cancel"}

    @api.get("/calls", response_model=list[CallSummary])
    async def list_calls(
        campaign_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[CallSummary]:
        """Call records, newest first."""
        return await run_in_threadpool(store.calls, campaign_id, limit)

    @api.get("/calls/{call_id}", response_model=CallDetail)
    async def get_call(call_id: str, request: Request) -> CallDetail:
        """A call with its transcript, slots and recording link (when a recording exists)."""
        link = None
        if recording_path(settings, call_id) is not None:
            link = str(request.url_for("get_recording", call_id=call_id))
        call = await run_in_threadpool(store.call, call_id, link)
        if call is None:
            raise HTTPException(404, f"no call {call_id!r}")
        return call

    @api.get("/calls/{call_id}/recording", response_class=FileResponse, name="get_recording")
    async def get_recording(call_id: str) -> FileResponse:
        path = recording_path(settings, call_id)
        if path is None:
            raise HTTPException(404, f"no recording of call {call_id!r}")
        return FileResponse(path, media_type="audio/wav")

    @api.post("/dnc", status_code=201, response_model=DncStatus)
    async def add_dnc(request: DncRequest) -> DncStatus:
        """Never call this number again (checked before every dial, retries included)."""
        await run_in_threadpool(store.dnc.add, request.phone, request.reason)
        return await dnc_status(request.phone)

    @api.get("/dnc/{phone}", response_model=DncStatus)
    async def dnc_status(phone: str) -> DncStatus:
        entry = await run_in_threadpool(store.dnc_entry, phone)
        reason = entry.reason if entry else None
        return DncStatus(phone=phone, listed=entry is not None, reason=reason)

    @api.delete("/dnc/{phone}", status_code=204)
    async def remove_dnc(phone: str) -> Response:
        await run_in_threadpool(store.dnc.remove, phone)
        return Response(status_code=204)

    @app.exception_handler(RPCError)
    async def temporal_failed(request: Request, error: RPCError) -> JSONResponse:
        """Temporal's refusals as HTTP: an unknown workflow is 404, the rest 503, one line."""
        status = 404 if error.status is RPCStatusCode.NOT_FOUND else 503
        message = str(error).strip().splitlines()[0] if str(error).strip() else error.status.name
        return JSONResponse(status_code=status, content={"detail": f"Temporal: {message}"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(api)
    return app


def recording_path(settings: Settings, call_id: str) -> Path | None:
    """The WAV of a call whose Twilio CallSid is known from its id (`call-CA...`, inbound)."""
    sid = call_id.removeprefix("call-")
    if not sid.startswith("CA") or not sid.isalnum():
        return None
    path = settings.recordings_dir / f"{sid}.wav"
    return path if path.is_file() else None
