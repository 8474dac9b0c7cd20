"""A whole simulated call with SLOT_STT=deepgram and SLOT_TTS=cartesia, against the two
doubles (the suite's one whole call through each): real Temporal, the real worker and edge (in
this process), the simulated caller speaking synthesized audio in real time and barging in once.
Caller words go through the Deepgram stream (the double transcribes with Whisper what the edge
streamed to it), agent words through the call's Cartesia connection, opened at the call's start
(the double in `fast` mode: a tone per word, exactly timed); the barge-in's heard text is the
words Cartesia's timestamps say had ended; the connection drops once mid-utterance, Piper says
the rest and the call goes on.

The budgets are raised (Whisper in the Deepgram double answers in up to 1.5 s on this shared
machine, more under heavy load): this test is about the speech flowing through both services
for a whole call; the budgets and the fallbacks past them are test_deepgram_stream's and
test_cartesia_tts's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from media_edge.events import AgentUtterance, BargeIn, CallerTurn, CallEvent, UtteranceDone
from simulator.cartesia_double import CartesiaDouble
from simulator.deepgram_double import DeepgramDouble
from simulator.tts_double import fast_render
from slot.settings import Settings
from tests.integration.edge_fixtures import edge_stack
from tests.integration.test_end_to_end import place_inbound_call, snapshot, stack_settings
from workflows.script import Outcome

DEEPGRAM_KEY = "dg-call-test-key-0123456789"
DROPPED = 1
"""The call's Cartesia connection drops halfway through the audio of its first utterance (the
greeting, which the caller always hears out): Piper says the rest, and the next utterance is
Cartesia's again, on a new connection."""
CARTESIA_KEY = "sk_car_call-test-key-0123456789"


@pytest.fixture
async def doubles() -> AsyncIterator[tuple[DeepgramDouble, CartesiaDouble]]:
    async with (
        DeepgramDouble(api_key=DEEPGRAM_KEY) as deepgram,
        CartesiaDouble(api_key=CARTESIA_KEY, mode="fast") as cartesia,
    ):
        yield deepgram, cartesia


async def test_a_call_heard_by_deepgram_and_spoken_by_cartesia_books(
    temporal_client: Client,
    temporal_settings: Settings,
    tmp_path: Path,
    doubles: tuple[DeepgramDouble, CartesiaDouble],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deepgram, cartesia = doubles
    monkeypatch.setenv("DEEPGRAM_API_KEY", DEEPGRAM_KEY)
    monkeypatch.setenv("CARTESIA_API_KEY", CARTESIA_KEY)
    settings = stack_settings(
        temporal_settings,
        tmp_path,
        stt="deepgram",
        deepgram_url=deepgram.url,
        deepgram_keepalive_s=1.0,
        deepgram_final_timeout_ms=5000,
        tts="cartesia",
        cartesia_url=cartesia.url,
        tts_first_audio_budget_ms=5000,
        presynthesize_lines=False,
    )
    events: list[CallEvent] = []
    async with edge_stack(temporal_client, settings):
        assert deepgram.key_checks == 1, "the edge checked its Deepgram key at start-up"
        assert len(cartesia.connections) == 1, "the edge checked its Cartesia key at start-up"
        cartesia.drop_in_utterance = DROPPED  # the call's connection drops once, mid-utterance
        call_id, call = await place_inbound_call(settings, "booked_caller.yaml", events)
        result = await asyncio.wait_for(call, timeout=240)
        final = await snapshot(temporal_client, call_id)

    turns = [e for e in events if isinstance(e, CallerTurn)]
    spoken = [e for e in events if isinstance(e, AgentUtterance)]
    assert result.error is None
    assert final.outcome == Outcome.BOOKED, [
        (e.type, getattr(e, "text", ""), getattr(e, "stt_fallback", getattr(e, "tts", "")))
        for e in events
        if isinstance(e, CallerTurn | AgentUtterance | BargeIn)
    ]
    assert {t.stt for t in turns if t.stt_fallback is None} == {"deepgram"}
    # The double's Whisper can miss even the raised budget when the machine is loaded (load
    # 13 on 2 cores seen): such a turn is Whisper's, and says why; never unrecorded.
    assert all(t.stt == "whisper" for t in turns if t.stt_fallback is not None)
    assert len(turns) >= 5
    for turn in turns:
        assert {"endpointing", "stt"} <= set(turn.latency_ms), turn.latency_ms
    (stream,) = [c for c in deepgram.connections if c.path == "/v1/listen"]
    assert stream.query["encoding"] == "mulaw" and stream.query["model"] == "nova-3"
    assert stream.controls[0] == "KeepAlive", "open from the call's start, kept over the greeting"
    assert "Finalize" in stream.controls
    assert stream.controls[-1] == "CloseStream"
    assert stream.closed_by == "client (CloseStream)"
    assert len(spoken) >= 6
    assert [(u.tts, u.tts_fallback) for u in spoken] == [("cartesia", None)] * len(spoken)
    for utterance in spoken:
        assert "tts_first_audio" in utterance.latency_ms, utterance.latency_ms
    done = {e.utterance_id: e.tts_fallback for e in events if isinstance(e, UtteranceDone)}
    finished_by_piper = [u.utterance_id for u in spoken if done.get(u.utterance_id)]
    assert finished_by_piper == [spoken[DROPPED - 1].utterance_id], done
    assert done[finished_by_piper[0]] == "cartesia stream dropped"

    startup, call_socket, reopened = cartesia.connections
    assert startup.received == [], "the start-up check only connects"
    assert call_socket.closed_by == "double (dropped)"
    assert len(cartesia.requests(call_socket)) == DROPPED, "one context per line until the drop"
    later = cartesia.requests(reopened)
    assert len(later) >= len(spoken) - DROPPED - 1, "the rest on the new one (a repeat is cached)"
    assert len({r["context_id"] for r in later}) == len(later)

    barge_ins = [e for e in events if isinstance(e, BargeIn)]
    assert barge_ins, "the caller cut the pitch off"
    assert cartesia.cancels(reopened), "the cut-off context was cancelled"
    for barge_in in barge_ins:  # the persona's, and any the timing of a loaded machine adds
        (cut,) = [u for u in spoken if u.utterance_id == barge_in.utterance_id]
        if done.get(cut.utterance_id):
            continue  # partly Piper's: not timed by Cartesia
        timings = fast_render(" ".join(cut.text.split())).words
        ended = {
            " ".join(w for w, _, end in timings if end * 1000 <= barge_in.played_ms + slack)
            for slack in (-1, 1)
        }
        assert barge_in.heard_text in ended, (barge_in.heard_text, barge_in.played_ms, timings)
    # a reply withdrawn a few ms in, as a turn's continuation withdraws one, is reported as a
    # barge-in with nothing heard (CI: 6 and 50 ms); the persona's own comes later
    assert any(b.heard_text for b in barge_ins), "the caller heard the pitch's first words"
