"""The edge's internal listener: what changes or reveals a live call, for Slot's own parts only.

Served on its own host and port (127.0.0.1 by default), never on the listener Twilio reaches,
and every route wants `Authorization: Bearer $SLOT_INTERNAL_TOKEN`:
- POST /calls/{id}/say     the workflow's own utterance (a reprompt, a goodbye) for calls recorded
                           before it came by the edge's task queue (`media_edge.delivery`);
                           spoken only if the workflow confirms it is delivering that decision
- WS   /calls/{id}/events  the call's live events (replay first): caller words, personal data
- GET  /healthz
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import JSONResponse

from media_edge.auth import bearer_ok
from media_edge.session import EdgeServices
from media_edge.twilio_protocol import CLOSE_POLICY_VIOLATION
from media_edge.workflow_link import LinkError, decision_being_delivered
from workflows.messages import Decision

logger = logging.getLogger("media_edge.internal")


def create_internal_app(services: EdgeServices, token: str) -> FastAPI:
    """The internal routes over the edge's shared `services`, behind the bearer `token`."""

    def authorized(request: Request) -> None:
        if not bearer_ok(request.headers.get("authorization"), token):
            raise HTTPException(401, "internal endpoint: missing or wrong bearer token")

    app = FastAPI(title="Slot media edge (internal)")
    routes = APIRouter(dependencies=[Depends(authorized)])

    @routes.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "calls": len(services.sessions)}

    @routes.post("/calls/{call_id}/say", status_code=202)
    async def say(call_id: str, decision: Decision) -> JSONResponse:
        session = services.sessions.get(call_id)
        if session is None:
            raise HTTPException(404, f"call {call_id} has no media stream on this edge")
        try:
            recorded = await decision_being_delivered(
                services.client, call_id, decision.utterance_id
            )
        except LinkError as error:
            raise HTTPException(503, f"cannot confirm the decision: {error.reason}") from None
        if recorded is None or recorded != decision:
            logger.warning(
                "call %s: refused to say %s: not what the workflow is delivering",
                call_id,
                decision.utterance_id,
            )
            raise HTTPException(409, f"{decision.utterance_id} is not what the workflow delivers")
        queued = session.say(recorded)
        return JSONResponse({"queued": recorded.utterance_id, "again": not queued}, 202)

    app.include_router(routes)

    @app.websocket("/calls/{call_id}/events")
    async def call_events(websocket: WebSocket, call_id: str) -> None:
        if not bearer_ok(websocket.headers.get("authorization"), token):
            await websocket.close(CLOSE_POLICY_VIOLATION)
            return
        events = services.events.call(call_id)
        await websocket.accept()

        async def forward() -> None:
            async for event in events.subscribe():
                await websocket.send_text(event.model_dump_json())

        async def watch_disconnect() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

        forwarder = asyncio.create_task(forward())
        watcher = asyncio.create_task(watch_disconnect())
        done, _ = await asyncio.wait({forwarder, watcher}, return_when=asyncio.FIRST_COMPLETED)
        for task in (forwarder, watcher):
            task.cancel()
        await asyncio.gather(forwarder, watcher, return_exceptions=True)
        if forwarder in done:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(1000)

    return app


class _Embedded(uvicorn.Server):
    """A uvicorn server inside another one's process: the outer server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def internal_listener(
    app: FastAPI, host: str, port: int, shutdown_grace_s: int = 10
) -> AsyncIterator[None]:
    """Serve `app` on host:port for the block's duration; a port in use is a one-line error.
    On the way out, requests and event streams still open after `shutdown_grace_s` are
    cancelled (uvicorn would otherwise wait for them for ever)."""
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as error:
        raise RuntimeError(f"internal listener cannot bind {host}:{port}: {error}") from None
    config = uvicorn.Config(
        app, log_config=None, lifespan="off", timeout_graceful_shutdown=shutdown_grace_s
    )
    server = _Embedded(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"internal listener on {host}:{port} exited during start-up")
            await asyncio.sleep(0.01)
        logger.info("internal listener on http://%s:%d", host, port)
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()
