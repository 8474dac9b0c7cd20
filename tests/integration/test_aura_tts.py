"""The edge's Deepgram Aura-2 voice (official SDK's speak socket) against the local
wire-protocol double, over real WebSockets: Speak and Flush per phrase, mu-law 8 kHz as sent,
Clear on barge-in with the next utterance waiting for Cleared, Close at the end, and every
failure (refused, 401, a stream dropped mid-utterance, a late first audio) spoken by the real
embedded Piper instead. The double runs in `fast` mode, so audio compares byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from media_edge.aura_tts import AuraConfig, AuraVoice, check_key
from media_edge.tts import PhoneChunk, PhoneSpeech, PiperTTS
from media_edge.tts_stream import CallVoice, LineCache, VoiceConfigError
from simulator.aura_double import AuraDouble
from simulator.tts_double import fast_render
from slot.settings import Settings
from tests.conftest import free_port

KEY = "dg-aura-test-key-0123456789"
LINE = "Great, a technician can come by on Tuesday morning to check the roof."
log = logging.LoggerAdapter(logging.getLogger("tests.aura"), {})


@pytest.fixture(scope="module")
def piper() -> Iterator[PhoneSpeech]:
    with ThreadPoolExecutor(1) as executor:
        yield PhoneSpeech(PiperTTS(executor), executor)


@pytest.fixture
async def double() -> AsyncIterator[AuraDouble]:
    async with AuraDouble(api_key=KEY, mode="fast") as running:
        yield running


def config(url: str, key: str = KEY, **settings: Any) -> AuraConfig:
    return AuraConfig(Settings(**{"tts": "aura", "aura_url": url, **settings}), key)


@pytest.fixture
async def voices() -> AsyncIterator[list[tuple[CallVoice, asyncio.Task[None]]]]:
    running: list[tuple[CallVoice, asyncio.Task[None]]] = []
    yield running
    for voice, task in running:
        await voice.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def start(running: list[Any], cfg: AuraConfig, piper: PhoneSpeech) -> AuraVoice:
    voice = AuraVoice(cfg, fallback=piper, lines=LineCache(), log=log)
    running.append((voice, asyncio.create_task(voice.run())))
    return voice


async def collect(chunks: AsyncIterator[PhoneChunk]) -> list[PhoneChunk]:
    return [chunk async for chunk in chunks]


async def phrases(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def test_each_phrase_is_speak_and_flush_in_mulaw_8k_with_the_key_in_a_header(
    double: AuraDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    voice = start(voices, config(double.url), piper)
    first, second = "Sure, the warranty", "covers the panels for twenty five years."
    reply = await collect(voice.stream(phrases(first, second)))
    line = await collect(voice.render(LINE, cacheable=False))

    (connection,) = double.connections
    assert connection.path == "/v1/speak"
    assert connection.query == {
        "model": "aura-2-thalia-en",
        "encoding": "mulaw",
        "sample_rate": "8000",
    }
    assert connection.headers["authorization"] == f"Token {KEY}"
    assert connection.received == [
        {"type": "Speak", "text": first},
        {"type": "Flush"},
        {"type": "Speak", "text": second},
        {"type": "Flush"},
        {"type": "Speak", "text": LINE},
        {"type": "Flush"},
    ], "one connection for the call's utterances"
    assert {(c.voice, c.fallback) for c in reply + line} == {("aura", None)}
    assert b"".join(c.audio for c in reply) == fast_render(first).audio + fast_render(second).audio
    assert b"".join(c.audio for c in line) == fast_render(LINE).audio, "as sent, no resampling"
    spoken = line[0].spoken
    assert spoken is not None and spoken.text == LINE and spoken.words == [], "no timestamps"

    await voice.close()
    assert double.controls(connection)[-1] == "Close"
    assert connection.closed_by == "client (Close)"


async def test_a_barge_in_clears_and_the_next_utterance_hears_none_of_the_old_audio(
    double: AuraDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    double.chunk_bytes = 160
    voice = start(voices, config(double.url), piper)
    speech = voice.render(LINE, cacheable=False)
    first = await anext(speech)
    assert first.voice == "aura"
    await speech.aclose()  # the speaker closes the utterance's audio on a barge-in

    (connection,) = double.connections
    await double.wait_for(lambda: "Clear" in double.controls(connection))
    after = await collect(voice.render("Okay, go ahead.", cacheable=False))
    assert b"".join(c.audio for c in after) == fast_render("Okay, go ahead.").audio
    assert double.controls(connection) == ["Speak", "Flush", "Clear", "Speak", "Flush"]


async def test_a_refused_connection_is_spoken_by_piper_and_says_why(
    piper: PhoneSpeech, voices: list[Any]
) -> None:
    voice = start(voices, config(f"http://127.0.0.1:{free_port()}"), piper)
    chunks = await collect(voice.render(LINE, cacheable=False))
    assert {(c.voice, c.fallback) for c in chunks} == {
        ("piper", "aura unreachable: connection refused")
    }
    assert " ".join(c.text for c in chunks) == LINE


async def test_a_rejected_key_is_spoken_by_piper_and_stops_retrying(
    double: AuraDouble, piper: PhoneSpeech, voices: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "dg-wrong-key-9876543210"
    caplog.set_level(logging.DEBUG)
    voice = start(voices, config(double.url, wrong), piper)
    await asyncio.wait_for(voices[-1][1], timeout=10)
    assert voice.down == "DEEPGRAM_API_KEY was rejected by Deepgram Aura (HTTP 401)"
    chunks = await collect(voice.render("Does Tuesday work?", cacheable=False))
    assert {(c.voice, c.fallback) for c in chunks} == {("piper", voice.down)}
    assert double.connections == [] and double.refused == 1
    edge_logs = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.server")
    assert wrong not in edge_logs


async def test_a_stream_dropped_mid_utterance_is_finished_by_piper_and_then_reconnects(
    double: AuraDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    first, second = "Sure, the warranty", "covers the panels for twenty five years."
    double.drop_after_audio_ms = len(fast_render(first).audio) // 8 + 300  # in the second
    voice = start(voices, config(double.url), piper)
    chunks = await collect(voice.stream(phrases(first, second)))

    cloud = [c for c in chunks if c.voice == "aura"]
    embedded = [c for c in chunks if c.voice == "piper"]
    assert cloud and embedded
    assert {c.fallback for c in embedded} == {"aura stream dropped"}
    assert " ".join(c.text for c in embedded) == second, "the phrase Aura had not finished"
    assert double.connections[0].closed_by == "double (dropped)"

    await double.wait_for(lambda: len(double.connections) == 2)
    after = await collect(voice.render("Okay.", cacheable=False))
    assert {(c.voice, c.fallback) for c in after} == {("aura", None)}


async def test_a_first_audio_later_than_the_budget_is_spoken_by_piper_and_cleared(
    double: AuraDouble, piper: PhoneSpeech, voices: list[Any]
) -> None:
    double.first_audio_delay_s = 5.0
    voice = start(voices, config(double.url, tts_first_audio_budget_ms=300), piper)
    chunks = await collect(voice.render(LINE, cacheable=False))
    assert {(c.voice, c.fallback) for c in chunks} == {
        ("piper", "aura first audio later than 300 ms")
    }
    (connection,) = double.connections
    await double.wait_for(lambda: "Clear" in double.controls(connection))


async def test_start_up_check_accepts_the_key_and_names_the_variable_when_rejected(
    double: AuraDouble,
) -> None:
    await check_key(config(double.url))
    (connection,) = double.connections
    assert double.controls(connection) == ["Close"]
    with pytest.raises(VoiceConfigError) as rejected:
        await check_key(config(double.url, "dg-wrong-key-9876543210"))
    assert str(rejected.value) == "DEEPGRAM_API_KEY was rejected by Deepgram Aura (HTTP 401)"
