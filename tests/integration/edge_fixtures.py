"""Running the real media edge (and a worker) in this test process, on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from media_edge.app import create_app
from media_edge.limits import server_config
from slot.settings import Settings
from worker import ACTIVITY_SLOTS, build_worker

STARTUP_S = 120.0
"""Patience for a stack to come up: xdist workers load their speech models at the same time."""


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
        await task


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
