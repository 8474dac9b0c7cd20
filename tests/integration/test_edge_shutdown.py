"""The edge's listeners stop even when a request handler is stuck (CI once sat 14 minutes in a
test's teardown with the edge's internal listener waiting for one)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect

from media_edge.internal import internal_listener
from tests.conftest import free_port


async def test_a_stuck_handler_is_cancelled_after_the_grace_and_the_listener_stops() -> None:
    app = FastAPI()
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    @app.websocket("/stuck")
    async def stuck(websocket: WebSocket) -> None:
        await websocket.accept()
        entered.set()
        try:
            await asyncio.Event().wait()  # ignores the client going away
        except asyncio.CancelledError:
            cancelled.set()
            raise

    port = free_port()
    async with asyncio.timeout(60):  # without the grace, uvicorn waits for the handler for ever
        async with (
            internal_listener(app, "127.0.0.1", port, shutdown_grace_s=1),
            connect(f"ws://127.0.0.1:{port}/stuck"),
        ):
            await entered.wait()
    assert cancelled.is_set()
