"""`slot watch CALL_ID | --campaign ID`: a live call or campaign, in the terminal.

A call shows its transcript (caller and agent lines), the script state of each agent line and
how the call ended; a campaign shows each dial, each call's result and the counters. With
`SLOT_REDIS_URL` both come from their Redis Streams (from the start, then live); without Redis a
call comes from the edge's internal listener and a campaign from its `progress` query.

Transcripts are personal data: they are shown here because the user asked, and never logged.
Watching needs the internal credential (`SLOT_INTERNAL_TOKEN`) and, with Redis, the payload keys
the entries are sealed with.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import websockets
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from media_edge.events import (
    AgentUtterance,
    BargeIn,
    CallEnded,
    CallerTurn,
    CallEvent,
    CallStarted,
    EdgeError,
    LLMResult,
    parse_event,
)
from slot.credentials import internal_token
from slot.live_events import (
    LiveEvents,
    RedisLiveEvents,
    call_stream,
    campaign_stream,
    tail,
)
from slot.payload_codec import require_keyring
from slot.settings import Settings
from slot.temporal import connect
from workflows.campaign import CampaignWorkflow
from workflows.campaign_plan import CampaignEvent, CampaignProgress

POLL_S = 1.0


class WatchError(RuntimeError):
    """What to watch is not there, or cannot be reached (one line for the user)."""


def call_line(event: CallEvent) -> str | None:
    """One event of a call as a terminal line (markup), or None for the ones not shown."""
    if isinstance(event, CallStarted):
        return "[dim]call connected[/]"
    if isinstance(event, CallerTurn):
        return f"[cyan]caller[/]  {escape(event.text)}"
    if isinstance(event, AgentUtterance):
        more = " …" if event.streaming else ""
        return (
            f"[green]agent[/]   {escape(event.text)}{more}  [dim]({event.state}, {event.tier})[/]"
        )
    if isinstance(event, LLMResult):
        return f"[green]agent[/]   {escape(event.text)}  [dim]({event.state}, llm)[/]"
    if isinstance(event, BargeIn):
        return "[yellow]caller interrupted the agent[/]"
    if isinstance(event, EdgeError):
        return f"[red]edge error[/] {escape(event.reason)}"
    if isinstance(event, CallEnded):
        return f"[bold]call ended[/]: {escape(event.reason)}"
    return None


def progress_line(progress: CampaignProgress) -> str:
    state = "cancelling" if progress.cancelling else "paused" if progress.paused else "running"
    return (
        f"[dim]{state}: leads {progress.leads_done}/{progress.leads} done, "
        f"{progress.in_flight} on the phone, {progress.waiting} waiting · dialled "
        f"{progress.dialled}, answered {progress.answered}, booked {progress.booked}, "
        f"call backs {progress.call_backs}, do-not-call {progress.do_not_call}, no answer "
        f"{progress.no_answer}, busy {progress.busy}, voicemail {progress.voicemail}, "
        f"failed {progress.failed}[/]"
    )


def campaign_line(event: CampaignEvent) -> str | None:
    if event.kind == "dialled":
        return f"dialling {event.lead_id} (attempt {event.attempt}, {event.call_id})"
    if event.kind == "ended":
        return f"{event.lead_id}: [bold]{event.result}[/] ({event.call_id})"
    if event.kind in ("started", "paused", "resumed", "cancelling", "finished"):
        return f"[bold]campaign {event.campaign_id} {event.kind}[/]"
    return None


def _streams(settings: Settings) -> LiveEvents:
    assert settings.redis_url
    return RedisLiveEvents.from_url(
        settings.redis_url, require_keyring(settings), settings.redis_prefix
    )


async def watch_call(settings: Settings, call_id: str, console: Console) -> int:
    """Print the call's events until it ends."""
    token = internal_token(settings)
    console.print(f"watching call {call_id} (Ctrl-C stops watching, not the call)")
    if settings.redis_url:
        streams = _streams(settings)
        try:
            async for raw in tail(streams, call_stream(call_id)):
                event = parse_event(raw)
                _print(console, call_line(event))
                if isinstance(event, CallEnded):
                    return 0
        finally:
            await streams.close()
    url = settings.edge_internal_url.replace("http", "ws", 1) + f"/calls/{call_id}/events"
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers) as socket:
        async for message in socket:
            event = parse_event(message)
            _print(console, call_line(event))
            if isinstance(event, CallEnded):
                return 0
    console.print("[yellow]the edge closed the stream before the call ended[/]")
    return 1


async def watch_campaign(
    settings: Settings,
    campaign_id: str,
    console: Console,
    client: Client | None = None,
    on_event: Callable[[CampaignEvent], None] | None = None,
) -> CampaignProgress:
    """Print the campaign's dials, results and counters until it finishes; its last counters."""
    internal_token(settings)
    client = client or await connect(settings)
    handle = client.get_workflow_handle_for(CampaignWorkflow.run, campaign_id)
    try:
        await handle.describe()
    except RPCError as error:
        where = settings.temporal_address
        raise WatchError(f"no campaign {campaign_id} on {where}: {error}") from None
    if settings.redis_url:
        streams = _streams(settings)
        try:
            async for raw in tail(streams, campaign_stream(campaign_id)):
                event = CampaignEvent.model_validate(raw)
                if on_event is not None:
                    on_event(event)
                _print(console, campaign_line(event))
                if event.kind in ("dialled", "ended", "finished"):
                    console.print(progress_line(event.progress))
                if event.kind == "finished":
                    return await handle.result()
        finally:
            await streams.close()
    last: dict[str, Any] | None = None
    while True:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return await handle.result()
        with contextlib.suppress(Exception):
            progress = await handle.query(CampaignWorkflow.progress)
            if progress.model_dump() != last:
                last = progress.model_dump()
                console.print(progress_line(progress))
        await asyncio.sleep(POLL_S)


def _print(console: Console, line: str | None) -> None:
    if line is not None:
        console.print(line)
