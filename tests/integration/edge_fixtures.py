"""Running the real media edge (and a worker) in this test process, on loopback ports, and
talking to it as Twilio does (signed webhooks, a signed stream upgrade, the TwiML's stream token)
and as Slot's own parts do (the internal listener's bearer token)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from media_edge.app import create_app
from media_edge.audio import silence_frame
from media_edge.limits import server_config
from media_edge.twiml import stream_url
from simulator import signing
from simulator.phone import edge_access
from simulator.protocol import StreamInstruction, parse_twiml
from slot.settings import Settings
from worker import ACTIVITY_SLOTS, build_worker

STARTUP_S = 120.0
"""Patience for a stack to come up: xdist workers load their speech models at the same time."""
SILENCE = base64.b64encode(silence_frame()).decode()


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int) -> AsyncIterator[str]:
    """Run `app` with uvicorn until the block exits; logging is left to pytest (log_config=None)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    async with serve_config(config) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_config(config: uvicorn.Config) -> AsyncIterator[str]:
    """Run a uvicorn server with `config` until the block exits."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(STARTUP_S):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.05)
    try:
        yield f"http://{config.host}:{config.port}"
    finally:
        server.should_exit = True
        grace = config.timeout_graceful_shutdown
        try:
            await asyncio.wait_for(asyncio.shield(task), grace / 2 if grace else None)
        except TimeoutError:
            _warn_stuck(server)
            await task


def _warn_stuck(server: uvicorn.Server) -> None:
    """Name what the server still waits on halfway through its shutdown grace: a handler that
    does not return when its socket closes (CI hung on one before the grace existed)."""
    chains: list[str] = []
    for task in server.server_state.tasks:
        awaiting: list[str] = []
        coroutine: Any = task.get_coro()
        while coroutine is not None:
            frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                awaiting.append(f"{code.co_name} ({code.co_filename}:{frame.f_lineno})")
            coroutine = getattr(coroutine, "cr_await", None) or getattr(
                coroutine, "gi_yieldfrom", None
            )
        chains.append(" <- ".join(reversed(awaiting[-8:])))  # the innermost awaits
    warnings.warn(
        f"edge shutdown still waiting on {len(chains)} handler(s): {chains}", stacklevel=2
    )


@contextlib.asynccontextmanager
async def edge_stack(client: Client, settings: Settings) -> AsyncIterator[Settings]:
    """A real worker and the real edge (on settings.edge_port, with the edge's own server
    limits) for the block's duration."""
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with (
            build_worker(client, settings, executor),
            serve_config(
                server_config(create_app(settings), settings, log_config=None, lifespan="on")
            ),
        ):
            yield settings


def edge_events(settings: Settings, call_id: str) -> connect:
    """The call's live events on the edge's internal listener, with the bearer token."""
    access = edge_access(settings)
    url = access["events_url"].replace("http", "ws", 1) + f"/calls/{call_id}/events"
    headers = {"Authorization": f"Bearer {access['internal_token']}"}
    return connect(url, additional_headers=headers)


def twilio_signature(settings: Settings, url: str, form: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it (`simulator.signing`), with the run's token."""
    return signing.twilio_signature(edge_access(settings)["auth_token"] or "", url, form)


def signed_by(settings: Settings, url: str, form: dict[str, str]) -> dict[str, str]:
    """The X-Twilio-Signature header Twilio would send with this request."""
    return {signing.SIGNATURE_HEADER: twilio_signature(settings, url, form)}


async def post_webhook(
    settings: Settings, path_and_query: str, form: dict[str, str], *, signed: bool = True
) -> httpx.Response:
    """A Twilio webhook to the edge, signed over its public URL unless `signed` is False."""
    url = settings.edge_url + path_and_query
    headers = signed_by(settings, url, form) if signed else {}
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
    headers = signed_by(settings, url, {}) if signed else {}
    return connect(url, additional_headers=headers)


def start_message(
    call: str | dict[str, str], stream_sid: str, call_sid: str | None = None, **media_format: Any
) -> str:
    """Twilio's `start`: `call` is the TwiML's parameters, or a bare call id (no token)."""
    parameters = {"call_id": call} if isinstance(call, str) else call
    call_id = parameters["call_id"]
    fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **media_format}
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC0",
                "streamSid": stream_sid,
                "callSid": call_sid or call_id.removeprefix("call-"),
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": fmt,
            },
        }
    )


def media_message(stream_sid: str, seq: int, payload: str = SILENCE) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": str(seq), "timestamp": "0", "payload": payload},
        }
    )


async def stream_silence(ws: ClientConnection, stream_sid: str) -> None:
    """Real Twilio streams caller audio continuously, 20 ms at a time."""
    seq = 2
    with_socket = True
    while with_socket:
        try:
            await ws.send(media_message(stream_sid, seq))
        except ConnectionClosed:
            with_socket = False
        seq += 1
        await asyncio.sleep(0.02)
