"""The edge's Cartesia voice (official SDK) against the local wire-protocol double, over real
WebSockets: what it sends, the audio and word timings it hands the speaker, the exact heard
text they give, cancel on barge-in, and every failure (refused, 401, a stream dropped
mid-utterance, a first audio later than the budget) spoken by the real embedded Piper instead.

The double runs in `fast` mode (a tone burst per word with exact timings), so a test can compare
the audio and timings the edge got with what the double rendered, byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from media_edge.audio import FRAME_SAMPLES, frames
from media_edge.cartesia_tts import CartesiaConfig, CartesiaVoice, check_key
from media_edge.playback import ChunkPlay, Playback
from media_edge.providers import SpokenText
from media_edge.tts import PhoneChunk, PhoneSpeech, PiperTTS
from media_edge.tts_stream import CallVoice, LineCache, VoiceConfigError
from simulator.cartesia_double import CartesiaDouble
from simulator.tts_double import fast_render
from slot.payload_codec import Keyring
from slot.settings import Settings
from tests.conftest import free_port
from workflows.messages import Decision
from workflows.script import DecisionTier

KEY = "sk_car_test-key-0123456789"
LINE = "Great, a technician can come by on Tuesday morning to check the roof."
log = logging.LoggerAdapter(logging.getLogger("tests.cartesia"), {})


@pytest.fixture(scope="module")
def piper() -> Iterator[PhoneSpeech]:
    with ThreadPoolExecutor(1) as executor:
        yield PhoneSpeech(PiperTTS(executor), executor)


@pytest.fixture
async def double() -> AsyncIterator[CartesiaDouble]:
    async with CartesiaDouble(api_key=KEY, mode="fast") as running:
        yield running


def config(url: str, key: str = KEY, **settings: Any) -> CartesiaConfig:
    return CartesiaConfig(Settings(**{"tts": "cartesia", "cartesia_url": url, **settings}), key)


@pytest.fixture
async def voices() -> AsyncIterator[list[tuple[CallVoice, asyncio.Task[None]]]]:
    running: list[tuple[CallVoice, asyncio.Task[None]]] = []
    yield running
    for voice, task in running:
        await voice.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def start(
    running: list[tuple[CallVoice, asyncio.Task[None]]], cfg: CartesiaConfig, piper: PhoneSpeech
) -> CartesiaVoice:
    voice = CartesiaVoice(cfg, fallback=piper, lines=LineCache(), log=log)
    running.append((voice, asyncio.create_task(voice.run())))
    return voice


async def collect(chunks: AsyncIterator[PhoneChunk]) -> list[PhoneChunk]:
    return [chunk async for chunk in chunks]


async def phrases(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


def cloud_audio(chunks: list[PhoneChunk]) -> bytes:
    return b"".join(c.audio for c in chunks if c.voice == "cartesia")


async def test_a_line_is_one_context_of_raw_mulaw_with_timestamps_and_the_key_in_a_header(
    double: CartesiaDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    voice = start(voices, config(double.url), piper)
    chunks = await collect(voice.render(LINE, cacheable=False))

    (connection,) = double.connections
    assert connection.headers["authorization"] == f"Bearer {KEY}"
    assert connection.headers["cartesia-version"]
    assert KEY not in connection.path and not connection.query
    (request,) = double.requests(connection)
    assert request["transcript"] == LINE and request["continue"] is False
    assert request["output_format"] == {
        "container": "raw",
        "encoding": "pcm_mulaw",
        "sample_rate": 8000,
    }
    assert request["add_timestamps"] is True
    assert request["model_id"] == "sonic-3"
    assert request["voice"]["id"] == Settings().cartesia_voice

    rendered = fast_render(LINE)
    assert {c.voice for c in chunks} == {"cartesia"} and all(c.fallback is None for c in chunks)
    assert b"".join(c.audio for c in chunks) == rendered.audio, "as sent, no resampling"
    assert all(len(c.audio) % FRAME_SAMPLES == 0 for c in chunks[:-1]), "whole 20 ms frames"
    spoken = chunks[0].spoken
    assert spoken is not None and all(c.spoken is spoken for c in chunks)
    assert spoken.text == LINE
    assert [(w.text, w.start_ms, w.end_ms) for w in spoken.words] == [
        (word, start * 1000, end * 1000) for word, start, end in rendered.words
    ]


async def test_llm_phrases_are_continuations_of_one_context_and_the_connection_is_reused(
    double: CartesiaDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    voice = start(voices, config(double.url), piper)
    first, second = "Sure, the warranty", "covers the panels for twenty five years."
    chunks = await collect(voice.stream(phrases(first, second)))
    again = await collect(voice.render("Does Tuesday work?", cacheable=False))

    (connection,) = double.connections
    requests = double.requests(connection)
    context = requests[0]["context_id"]
    assert [(r["context_id"], r["transcript"], r["continue"]) for r in requests[:3]] == [
        (context, f"{first} ", True),
        (context, f"{second} ", True),
        (context, "", False),
    ]
    assert requests[3]["context_id"] != context, "the next utterance is a new context"
    assert b"".join(c.audio for c in chunks) == (
        fast_render(f"{first} ").audio + fast_render(f"{second} ").audio
    )
    spoken = chunks[0].spoken
    assert spoken is not None and spoken.text == f"{first} {second}"
    offset = fast_render(first).seconds * 1000
    assert spoken.words[3].text == "covers" and spoken.words[3].start_ms == offset
    assert cloud_audio(again) == fast_render("Does Tuesday work?").audio


async def test_the_heard_text_after_a_barge_in_is_the_words_whose_end_has_played(
    double: CartesiaDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    voice = start(voices, config(double.url), piper)
    chunks = await collect(voice.render(LINE, cacheable=False))
    decision = Decision(
        utterance_id="c-u1", text=LINE, state="pitch", tier=DecisionTier.SCRIPT, reason="t"
    )
    playback = Playback(decision)
    for index, chunk in enumerate(chunks):
        play = ChunkPlay(f"c-u1:{index}", chunk.text, chunk.duration_ms, frames(chunk.audio))
        play.spoken = chunk.spoken
        playback.add(play, chunk.voice)
    playback.frame_sent(now=100.0)
    words = fast_render(LINE).words
    assert words[2][0] == "technician"
    cut_s = words[2][2] - 0.01  # 10 ms before the end of "technician"
    end_s = 0.0
    for play in playback.chunks:  # Twilio echoes each chunk's mark once it has played
        end_s += play.duration_ms / 1000
        if end_s <= cut_s:
            playback.on_mark(play.name, now=100.0 + end_s)

    heard, played_ms = playback.heard(now=100.0 + cut_s)

    assert heard == "Great, a"
    assert played_ms == round(cut_s * 1000)
    proportional = SpokenText(LINE).heard(played_ms, playback.total_ms)
    assert proportional != heard, "timestamps, not a share of the words"


async def test_a_barge_in_cancels_the_context_and_the_next_utterance_uses_the_same_socket(
    double: CartesiaDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    double.first_audio_delay_s = 0.0
    voice = start(voices, config(double.url), piper)
    llm_text: asyncio.Queue[str | None] = asyncio.Queue()

    async def llm() -> AsyncIterator[str]:
        while (text := await llm_text.get()) is not None:
            yield text

    speech = voice.stream(llm())
    llm_text.put_nowait("Solar panels cut most homes' bills by half,")
    first = await anext(speech)
    assert first.voice == "cartesia"
    await speech.aclose()  # the speaker closes the utterance's audio on a barge-in

    (connection,) = double.connections
    context = double.requests(connection)[0]["context_id"]
    await double.wait_for(lambda: double.cancels(connection) == [context])
    after = await collect(voice.render("Okay, go ahead.", cacheable=False))
    assert cloud_audio(after) == fast_render("Okay, go ahead.").audio
    assert len(double.connections) == 1


async def test_fixed_lines_are_cached_for_the_edges_calls(
    double: CartesiaDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    voice = start(voices, config(double.url), piper)
    once = await collect(voice.render("Hi, this is Sam from Sunny Roofs.", cacheable=True))
    twice = await collect(voice.render("Hi, this is Sam from Sunny Roofs.", cacheable=True))
    assert twice == once
    assert len(double.requests(double.connections[0])) == 1


async def test_a_refused_connection_is_spoken_by_piper_and_says_why(
    piper: PhoneSpeech, voices: list[Any]
) -> None:
    voice = start(voices, config(f"http://127.0.0.1:{free_port()}"), piper)
    chunks = await collect(voice.render(LINE, cacheable=False))
    assert chunks and {c.voice for c in chunks} == {"piper"}
    assert {c.fallback for c in chunks} == {"cartesia unreachable: connection refused"}
    assert " ".join(c.text for c in chunks) == LINE


async def test_a_rejected_key_is_spoken_by_piper_stops_retrying_and_is_never_logged(
    double: CartesiaDouble,
    piper: PhoneSpeech,
    voices: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "sk_car_wrong-key-9876543210"
    caplog.set_level(logging.DEBUG)
    voice = start(voices, config(double.url, wrong), piper)
    await asyncio.wait_for(voices[-1][1], timeout=10)
    assert voice.down == "CARTESIA_API_KEY was rejected by Cartesia (HTTP 401)"

    chunks = await collect(voice.render("Does Tuesday work?", cacheable=False))
    assert {(c.voice, c.fallback) for c in chunks} == {("piper", voice.down)}
    assert double.connections == [] and double.refused == 1
    edge_logs = "\n".join(
        r.getMessage()
        for r in caplog.records
        if r.name != "websockets.server"  # the double's
    )
    # the header is logged, its value redacted (by Slot's filter, or by websockets itself)
    assert "authorization: [redacted]" in edge_logs.lower(), "the handshake's headers were logged"
    assert wrong not in edge_logs
    assert "CARTESIA_API_KEY was rejected" in edge_logs


async def test_a_stream_dropped_mid_utterance_is_finished_by_piper_and_then_reconnects(
    double: CartesiaDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    double.drop_after_audio_ms = 900
    voice = start(voices, config(double.url), piper)
    chunks = await collect(voice.render(LINE, cacheable=True))

    cloud = [c for c in chunks if c.voice == "cartesia"]
    embedded = [c for c in chunks if c.voice == "piper"]
    assert cloud and embedded, [c.voice for c in chunks]
    assert {c.fallback for c in embedded} == {"cartesia stream dropped"}
    spoken = cloud[0].spoken
    assert spoken is not None
    heard_by_cartesia = spoken.text.split()
    spoken_by_piper = " ".join(c.text for c in embedded).split()
    assert heard_by_cartesia + spoken_by_piper == LINE.split(), "every word once, in order"
    assert 0 < len(heard_by_cartesia) < len(LINE.split())
    assert double.connections[0].closed_by == "double (dropped)"

    await double.wait_for(lambda: len(double.connections) == 2)
    after = await collect(voice.render(LINE, cacheable=True))
    assert cloud_audio(after) == fast_render(LINE).audio, "not cached from the broken render"


async def test_a_first_audio_later_than_the_budget_is_spoken_by_piper_and_cancelled(
    double: CartesiaDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    double.first_audio_delay_s = 5.0
    voice = start(voices, config(double.url, tts_first_audio_budget_ms=300), piper)
    chunks = await collect(voice.render(LINE, cacheable=False))

    assert {(c.voice, c.fallback) for c in chunks} == {
        ("piper", "cartesia first audio later than 300 ms")
    }
    assert " ".join(c.text for c in chunks) == LINE
    (connection,) = double.connections
    context = double.requests(connection)[0]["context_id"]
    await double.wait_for(lambda: double.cancels(connection) == [context])


async def test_start_up_check_accepts_the_key_and_names_the_variable_when_rejected(
    double: CartesiaDouble,
) -> None:
    await check_key(config(double.url))
    assert len(double.connections) == 1
    with pytest.raises(VoiceConfigError) as rejected:
        await check_key(config(double.url, "sk_car_wrong-key-9876543210"))
    assert str(rejected.value) == "CARTESIA_API_KEY was rejected by Cartesia (HTTP 401)"
    await check_key(config(f"http://127.0.0.1:{free_port()}"))  # unreachable: starts anyway


def test_the_edge_refuses_to_start_without_the_key_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CARTESIA_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "media_edge.app"],
        env={**env, "SLOT_TTS": "cartesia", "SLOT_PAYLOAD_KEYS": Keyring.new_entry("k1")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "media edge: SLOT_TTS=cartesia needs CARTESIA_API_KEY in the environment"
    ]
