"""The edge's limits under a flood: oversized messages, idle sockets, too many from one source.

A good call runs while other clients misbehave, each from its own loopback address, against the
real edge and worker on the session's Temporal dev server. The misbehaving sockets that should
meet a limit are signed with the edge's Twilio token (one holding a leaked token), since an
unsigned upgrade is refused before any limit is reached; one flood is left unsigned, as an
attacker sends it, to show it refused at the upgrade without taking a place under any cap.
Frame timing under the flood is measured by `python -m evals.edge_flood_bench`, not asserted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from temporalio.client import Client
from websockets.asyncio.client import connect

from evals.edge_flood import (
    GoodCall,
    HalfSent,
    Idle,
    Oversized,
    Wave,
    good_call,
    media_message,
    tally,
)
from media_edge.limits import server_config
from media_edge.twiml import stream_url
from simulator.phone import edge_access
from slot.settings import Settings
from tests.conftest import edge_ports, free_port
from tests.integration.edge_fixtures import edge_stack, serve_config

WAIT_S = 90.0
MAX_MESSAGE = 16 * 1024
PER_SOURCE = 3
MAX_STREAMS = 20
START_TIMEOUT_S = 4.0


@pytest.fixture(scope="module")
async def edge(
    temporal_client: Client, temporal_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    settings = temporal_settings.model_copy(
        update={
            **edge_ports(),
            "task_queue": f"edge-limits-{uuid.uuid4().hex[:8]}",
            "data_dir": tmp_path_factory.mktemp("edge-limits"),
            "reprompt_after_s": 120.0,
            "media_max_message_bytes": MAX_MESSAGE,
            "media_max_streams": MAX_STREAMS,
            "media_max_streams_per_source": PER_SOURCE,
            "media_start_timeout_s": START_TIMEOUT_S,
        }
    )
    async with edge_stack(temporal_client, settings):
        yield settings


def twilio_token(settings: Settings) -> str:
    token = edge_access(settings)["auth_token"]
    assert token
    return token


async def health(settings: Settings) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=settings.edge_url, timeout=WAIT_S) as http:
        reply = await http.get("/healthz")
    assert reply.status_code == 200
    body: dict[str, int] = reply.json()
    return body


async def no_media_sockets(settings: Settings) -> dict[str, int]:
    """/healthz once the edge has let go of every socket: it counts one until its session has
    finished, a moment after the client saw the close."""
    for _ in range(400):
        body = await health(settings)
        if body["media_sockets"] == 0:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"media sockets still counted: {body}")


def same_audio(call: GoodCall, baseline: GoodCall) -> None:
    """The same greeting, every frame and every mark of it, in order."""
    assert call.close_code == 1000
    assert len(call.arrivals) == len(baseline.arrivals) > 50
    uid = call.marks[-1].removesuffix(":end")
    base_uid = baseline.marks[-1].removesuffix(":end")
    assert call.marks == [m.replace(base_uid, uid) for m in baseline.marks]
    assert call.marks == [f"{uid}:{i}" for i in range(len(call.marks) - 1)] + [f"{uid}:end"]


async def test_a_good_call_keeps_all_its_audio_while_others_flood(
    edge: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="media_edge")
    url, token = stream_url(edge.edge_url), twilio_token(edge)
    async with asyncio.timeout(WAIT_S):
        baseline = await good_call(edge.edge_url, token)
        call = asyncio.create_task(good_call(edge.edge_url, token))
        oversized = [
            Wave(url, f"127.0.0.{10 + i}", Oversized(10_000_000), auth_token=token)
            for i in range(12)
        ]
        idle = Wave(url, "127.0.0.31", Idle(), count=12, auth_token=token)
        unsigned = Wave(url, "127.0.0.32", Oversized(10_000_000), count=12, auth_token=None)
        flooded = await call
        big = [o for wave in oversized for o in await wave.outcomes()]
        # After the flood: in it, a loaded CI machine once read the fragments later than the
        # 4 s wait for `start` (closed 1008, not 1009).
        half_sent = Wave(url, "127.0.0.30", HalfSent(chunk=10_000, fragments=2), auth_token=token)
        half = await half_sent.outcomes()
        idled = await idle.outcomes()
        refused = await unsigned.outcomes()

    same_audio(flooded, baseline)
    assert tally(big) == Counter({"closed 1009": 12})
    size = len(media_message("MZflood", 1, "A" * 10_000_000))
    assert {o.reason for o in big} == {f"frame with {size} bytes exceeds limit of 16384 bytes"}
    assert tally(half) == Counter({"closed 1009": 1})
    assert "exceeds limit of 16384 bytes" in half[0].reason
    assert tally(idled) == Counter({"closed 1008": PER_SOURCE, "refused 429": 12 - PER_SOURCE})
    assert {o.reason for o in idled} == {
        "no start within 4 s",
        f"too many media streams from 127.0.0.31 (limit {PER_SOURCE})",
    }
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("media_edge"))
    assert f"media stream closed (1009): frame with {size} bytes exceeds limit" in logged
    assert "closing media stream (1008): no start within 4 s" in logged
    assert "refusing media streams from 127.0.0.31: too many media streams" in logged
    assert tally(refused) == Counter({"refused 403": 12}), "12 > PER_SOURCE, none counted"
    assert "127.0.0.32" not in logged


async def test_healthz_counts_open_sockets_and_the_edge_refuses_past_its_cap(
    edge: Settings,
) -> None:
    url, token = stream_url(edge.edge_url), twilio_token(edge)
    async with asyncio.timeout(WAIT_S):
        await no_media_sockets(edge)
        sources = [f"127.0.1.{i}" for i in range(MAX_STREAMS // PER_SOURCE + 1)]
        waves = [
            Wave(url, s, Idle(say_connected=True), count=PER_SOURCE, auth_token=token)
            for s in sources
        ]
        for wave in waves:
            await wave.opened()
        unsigned = await Wave(
            url, "127.0.1.99", Idle(), count=PER_SOURCE, auth_token=None
        ).outcomes()
        during = await health(edge)
        outcomes = [o for wave in waves for o in await wave.outcomes()]
        after = await no_media_sockets(edge)

    assert during["media_sockets"] == MAX_STREAMS
    assert during["media_sources"] == len(sources)
    assert tally(unsigned) == Counter({"refused 403": PER_SOURCE}), "checked before the cap"
    assert during["calls"] == 0
    assert tally(outcomes) == Counter(
        {"closed 1008": MAX_STREAMS, "refused 503": len(sources) * PER_SOURCE - MAX_STREAMS}
    )
    refused = [o.reason for o in outcomes if o.kind == "refused"]
    assert set(refused) == {f"media edge at its limit of {MAX_STREAMS} open media streams"}
    assert after["media_sockets"] == 0 and after["media_sources"] == 0


async def test_the_edge_sends_media_uncompressed_even_to_a_client_asking_for_deflate() -> None:
    """As Twilio sends it: a client offering permessage-deflate gets plain frames."""
    app = Starlette(routes=[WebSocketRoute("/echo", _echo)])
    settings = Settings(edge_port=free_port())
    async with (
        serve_config(server_config(app, settings, log_config=None)) as url,
        connect(url.replace("http", "ws", 1) + "/echo", compression="deflate") as ws,
    ):
        await ws.send("x" * 4000)
        assert await ws.recv() == "x" * 4000
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def _echo(socket: WebSocket) -> None:
    await socket.accept()
    await socket.send_text(await socket.receive_text())
    await socket.close()
