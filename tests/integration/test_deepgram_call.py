"""A whole simulated call with SLOT_STT=deepgram, against the Deepgram double: real Temporal, the
real worker and edge (in this process), the simulated caller speaking synthesized audio in real
time. The double transcribes with the embedded Whisper the audio the edge streamed to it, so
every caller word in the workflow went through the Deepgram stream.

The double's Whisper answers a `Finalize` in 0.1-1.5 s on this shared machine, where Deepgram
takes tens of ms, so the call waits up to 5 s for final words: this test is about the words
flowing through the stream; the budget and the fallback past it are test_deepgram_stream's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from media_edge.events import CallerTurn, CallEvent
from simulator.deepgram_double import DeepgramDouble
from slot.settings import Settings
from tests.integration.edge_fixtures import edge_stack
from tests.integration.test_end_to_end import place_inbound_call, snapshot, stack_settings
from workflows.script import Outcome

KEY = "dg-call-test-key-0123456789"


@pytest.fixture
async def double() -> AsyncIterator[DeepgramDouble]:
    async with DeepgramDouble(api_key=KEY) as running:
        yield running


async def test_a_call_transcribed_by_the_deepgram_stream_books(
    temporal_client: Client,
    temporal_settings: Settings,
    tmp_path: Path,
    double: DeepgramDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", KEY)
    settings = stack_settings(
        temporal_settings,
        tmp_path,
        stt="deepgram",
        deepgram_url=double.url,
        deepgram_keepalive_s=1.0,
        deepgram_final_timeout_ms=5000,
    )
    events: list[CallEvent] = []
    async with edge_stack(temporal_client, settings):
        assert double.key_checks == 1, "the edge checked its key at start-up"
        call_id, call = await place_inbound_call(settings, "booked_caller.yaml", events)
        result = await asyncio.wait_for(call, timeout=240)
        final = await snapshot(temporal_client, call_id)

    turns = [e for e in events if isinstance(e, CallerTurn)]
    assert result.error is None
    assert final.outcome == Outcome.BOOKED, [(t.text, t.stt, t.stt_fallback) for t in turns]
    assert len(turns) >= 5
    assert [(t.stt, t.stt_fallback) for t in turns] == [("deepgram", None)] * len(turns)
    for turn in turns:
        assert {"endpointing", "stt"} <= set(turn.latency_ms), turn.latency_ms

    (stream,) = [c for c in double.connections if c.path == "/v1/listen"]
    assert stream.query["encoding"] == "mulaw" and stream.query["model"] == "nova-3"
    assert stream.controls[0] == "KeepAlive", (
        "open from the call's start, kept alive over the greeting"
    )
    assert "Finalize" in stream.controls
    assert stream.controls[-1] == "CloseStream"
    assert stream.closed_by == "client (CloseStream)"
