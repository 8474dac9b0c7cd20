"""Shared fixtures: one real Temporal dev server per test session, on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client

from slot.settings import Settings
from slot.temporal import TemporalDevServer, connect


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
async def temporal_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TemporalDevServer]:
    """A headless dev server with Slot's search attributes registered, stopped after the session."""
    folder = tmp_path_factory.mktemp("temporal")
    server = TemporalDevServer(
        address=f"127.0.0.1:{free_port()}",
        db_path=folder / "temporal.db",
        log_path=folder / "temporal.log",
        headless=True,
    )
    async with server:
        yield server


@pytest.fixture(scope="session")
def temporal_settings(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings pointing at the session's dev server, with data in a temporary folder."""
    return Settings(
        temporal_address=temporal_server.address,
        data_dir=tmp_path_factory.mktemp("slot-data"),
    )


@pytest.fixture(scope="session")
async def temporal_client(temporal_settings: Settings) -> Client:
    return await connect(temporal_settings)
