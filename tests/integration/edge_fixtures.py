"""Running the real media edge (and a worker) in this test process, on loopback ports, and
talking to it as Twilio does (signed webhooks, a signed stream upgrade, the TwiML's stream token)
and as Slot's own parts do (the internal listener's bearer token)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect

from media_edge.app import create_app
from media_edge.twiml import stream_url
from simulator.phone import edge_access
from simulator.protocol import StreamInstruction, parse_twiml
from slot.settings import Settings
from worker import ACTIVITY_SLOTS, build_worker

STARTUP_S = 120.0
"""Patience for a stack to come up: xdist workers load their speech models at the same time."""


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int) -> AsyncIterator[str]:
    """Run `app` with uvicorn until the block exits; logging is left to pytest (log_config=None)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(STARTUP_S):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def edge_stack(client: Client, settings: Settings) -> AsyncIterator[Settings]:
    """A real worker and the real edge (on settings.edge_port) for the block's duration."""
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with (
            build_worker(client, settings, executor),
            serve(create_app(settings), settings.edge_port),
        ):
            yield settings


def edge_events(settings: Settings, call_id: str) -> connect:
    """The call's live events on the edge's internal listener, with the bearer token."""
    access = edge_access(settings)
    url = access["events_url"].replace("http", "ws", 1) + f"/calls/{call_id}/events"
    headers = {"Authorization": f"Bearer {access['internal_token']}"}
    return connect(url, additional_headers=headers)


def twilio_signature(settings: Settings, url: str, form: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it, by Twilio's own SDK, with the run's token."""
    token = edge_access(settings)["auth_token"] or ""
    return str(RequestValidator(token).compute_signature(url, form))


async def post_webhook(
    settings: Settings, path_and_query: str, form: dict[str, str], *, signed: bool = True
) -> httpx.Response:
    """A Twilio webhook to the edge, signed over its public URL unless `signed` is False."""
    url = settings.edge_url + path_and_query
    headers = {"X-Twilio-Signature": twilio_signature(settings, url, form)} if signed else {}
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=form, headers=headers)


async def answer(settings: Settings, call_sid: str, query: str = "") -> StreamInstruction:
    """The voice webhook for a ringing call; the TwiML's `<Stream>` (URL and parameters)."""
    form = {"CallSid": call_sid, "From": "+15550001111", "To": settings.agent_phone_number}
    reply = await post_webhook(settings, f"/twilio/voice{query}", form)
    assert reply.status_code == 200, reply.text
    instruction = parse_twiml(reply.text)
    assert isinstance(instruction, StreamInstruction), reply.text
    return instruction


def media_socket(settings: Settings, *, signed: bool = True) -> connect:
    """Open the Media Streams WebSocket as Twilio does: the upgrade signed over the stream URL."""
    url = stream_url(settings.edge_url)
    headers = {"X-Twilio-Signature": twilio_signature(settings, url, {})} if signed else {}
    return connect(url, additional_headers=headers)
