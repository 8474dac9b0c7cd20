"""The edge's Deepgram clients (Nova-3 and Flux, through the official SDK) against the local
wire-protocol double, over real WebSockets: what they send, what they make of what comes back,
and what happens when the service refuses, rejects the key or drops the stream mid-utterance.

The streams are driven as the listener drives them (20 ms mu-law frames, then a transcript of
the segment at a pause); the words are tone bursts the double reads back from the audio it
actually received (`deepgram_audio`), and the fallback is the real embedded Whisper.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from media_edge.audio import PHONE_RATE, mulaw_decode
from media_edge.deepgram_stt import DeepgramConfig, DeepgramConfigError, NovaStream, check_key
from media_edge.flux import FluxStream
from media_edge.stt import WhisperSTT
from media_edge.stt_stream import (
    CallStream,
    StreamEndOfTurn,
    StreamEvent,
    StreamSpeechStarted,
    StreamUtteranceEnd,
    StreamWords,
)
from simulator.caller_voice import caller_voice
from simulator.deepgram_double import DeepgramDouble
from slot.payload_codec import Keyring
from slot.settings import Settings
from tests.conftest import free_port
from tests.integration.deepgram_audio import frames, said, silence, tone, tone_recognizer

KEY = "dg-test-key-0123456789"
log = logging.LoggerAdapter(logging.getLogger("tests.deepgram"), {})


@pytest.fixture(scope="module")
def whisper() -> WhisperSTT:
    return WhisperSTT(ThreadPoolExecutor(1))


@pytest.fixture
async def double() -> AsyncIterator[DeepgramDouble]:
    async with DeepgramDouble(api_key=KEY, recognize=tone_recognizer) as running:
        yield running


def config(url: str, key: str = KEY, **settings: Any) -> DeepgramConfig:
    return DeepgramConfig(Settings(**{"stt": "deepgram", "deepgram_url": url, **settings}), key)


class Running:
    """A stream's `run()` in the background, and the events it reported."""

    def __init__(self, stream: CallStream) -> None:
        self.stream = stream
        self.events: list[StreamEvent] = []
        self._changed = asyncio.Event()
        stream.listen(self._event)
        self.task = asyncio.create_task(stream.run())

    def _event(self, event: StreamEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for_event(self, kind: type[Any], timeout_s: float = 10.0) -> Any:
        """The first event of `kind` the stream reported, once it has."""
        async with asyncio.timeout(timeout_s):
            while not (found := [e for e in self.events if isinstance(e, kind)]):
                self._changed.clear()
                await self._changed.wait()
        return found[0]

    def say(self, audio: bytes, *, agent_speaking: bool = False, audible: bool = True) -> bytes:
        for frame in frames(audio):
            self.stream.push(frame, agent_speaking=agent_speaking, caller_audible=audible)
        return audio

    async def stop(self) -> None:
        await self.stream.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def streams() -> AsyncIterator[list[Running]]:
    running: list[Running] = []
    yield running
    for one in running:
        await one.stop()


def start(streams: list[Running], stream: CallStream) -> Running:
    streams.append(Running(stream))
    return streams[-1]


def pcm(audio: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    return mulaw_decode(audio)


async def test_one_stream_per_call_with_deepgrams_parameters_and_the_key_only_in_a_header(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    run = start(streams, NovaStream(config(double.url), fallback=whisper, log=log))
    connection = (await double.wait_for(lambda: double.connections))[0]
    assert connection.path == "/v1/listen"
    assert connection.query == {
        "model": "nova-3",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "interim_results": "true",
        "vad_events": "true",
        "punctuate": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
    }
    assert connection.authorization == f"Token {KEY}"
    assert KEY not in str(connection.query)

    caller = run.say(silence(400) + said("yes", "we", "own", "it") + silence(200))
    await double.wait_for(lambda: len(connection.audio) == len(caller))
    assert bytes(connection.audio) == caller, "mu-law sent as Twilio sent it, not re-encoded"


async def test_a_pause_finalizes_and_the_turn_gets_the_streams_words(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    run = start(streams, NovaStream(config(double.url), fallback=whisper, log=log))
    run.say(silence(500))
    segment = run.say(silence(200) + said("yes", "we", "own", "it") + silence(200))

    transcript = await run.stream.transcribe(pcm(segment), PHONE_RATE)

    assert transcript.text == "yes we own it"
    assert (transcript.provider, transcript.fallback) == ("deepgram", None)
    connection = double.connections[0]
    assert connection.controls == ["Finalize"]
    finals = [m for m in connection.sent if m["type"] == "Results" and m["is_final"]]
    assert finals[-1].get("from_finalize") is True
    assert any(isinstance(e, StreamSpeechStarted) for e in run.events)
    assert [e.text for e in run.events if isinstance(e, StreamWords) and e.final][-1] == (
        "yes we own it"
    )
    assert len(double.connections) == 1


async def test_speech_final_and_utterance_end_reach_the_listener(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    run = start(streams, NovaStream(config(double.url), fallback=whisper, log=log))
    segment = run.say(said("sure") + silence(1200))
    end = await run.wait_for_event(StreamUtteranceEnd)
    assert end.last_word_end == len(tone("sure"))
    finals = [e for e in run.events if isinstance(e, StreamWords) and e.final]
    assert finals[0] == StreamWords("sure", final=True, speech_final=True)

    transcript = await run.stream.transcribe(pcm(segment), PHONE_RATE)
    assert transcript.text == "sure"


async def test_interim_words_tell_speech_over_the_agent_before_it_ends(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    run = start(streams, NovaStream(config(double.url), fallback=whisper, log=log))
    run.say(silence(300))
    speech = run.say(said("yes", "we", "own", "sure"), agent_speaking=True)

    words = await run.stream.first_words(pcm(speech), PHONE_RATE)

    assert words.text.startswith("yes we")
    assert double.connections[0].controls == [], "interim words, no Finalize, no second pass"


async def test_keepalive_while_the_agent_talks_and_closestream_at_the_end(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    quick = config(double.url, deepgram_keepalive_s=0.3)
    run = start(streams, NovaStream(quick, fallback=whisper, log=log))
    connection = (await double.wait_for(lambda: double.connections))[0]
    held = run.say(silence(1000), agent_speaking=True, audible=False)
    await double.wait_for(lambda: "KeepAlive" in connection.controls)
    assert len(connection.audio) == 0, "caller silence is not streamed while the agent talks"

    onset = run.say(tone("yes"), agent_speaking=True, audible=True)
    kept = held[-int(0.4 * PHONE_RATE) :]
    await double.wait_for(lambda: len(connection.audio) == len(kept) + len(onset))
    assert bytes(connection.audio) == kept + onset, "the moment before the onset goes first"

    await run.stop()
    assert connection.controls[-1] == "CloseStream"
    assert connection.closed_by == "client (CloseStream)"
    assert connection.sent[-1]["type"] == "Metadata"


async def test_a_stream_dropped_mid_utterance_reconnects_and_resends_the_words_in_flight(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    double.drop_after_speech_ms = 300
    run = start(streams, NovaStream(config(double.url), fallback=whisper, log=log))
    run.say(silence(300))
    segment = run.say(said("yes", "we", "own", "it") + silence(200))

    transcript = await run.stream.transcribe(pcm(segment), PHONE_RATE)

    first, second = double.connections
    assert first.closed_by == "double (dropped)"
    assert tone("yes") in bytes(second.audio), "the first word was resent to the new stream"
    assert transcript.text == "yes we own it"
    assert (transcript.provider, transcript.fallback) == ("deepgram", None)


async def test_a_stream_that_drops_and_cannot_reconnect_falls_back_to_whisper(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    double.drop_after_speech_ms = 300
    double.max_connections = 1
    run = start(streams, NovaStream(config(double.url), fallback=whisper, log=log))
    line = b"".join(caller_voice("piper").synthesize("Thursday afternoon is fine."))
    segment = run.say(silence(300) + line + silence(200))

    transcript = await run.stream.transcribe(pcm(segment), PHONE_RATE)

    assert transcript.provider == "whisper"
    assert transcript.fallback == "deepgram unreachable: HTTP 503"
    words = transcript.text.lower().replace(".", "").split()
    # the whole line, from its first word: what the dropped stream had was not lost (Whisper
    # tiny may hear "Thursday" as "First day", so the first word itself is not asserted)
    assert len(words) >= 4 and words[-2:] == ["is", "fine"], transcript.text


async def test_a_refused_connection_falls_back_to_whisper_and_says_why(
    whisper: WhisperSTT, streams: list[Running]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    run = start(streams, NovaStream(config(nowhere), fallback=whisper, log=log))
    line = b"".join(caller_voice("piper").synthesize("Wednesday mornings work best."))
    segment = run.say(line + silence(200))

    transcript = await run.stream.transcribe(pcm(segment), PHONE_RATE)

    assert transcript.fallback == "deepgram unreachable: connection refused"
    assert "wednesday" in transcript.text.lower(), transcript.text


async def test_a_rejected_key_falls_back_stops_retrying_and_never_logs_the_key(
    double: DeepgramDouble,
    whisper: WhisperSTT,
    streams: list[Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "dg-wrong-key-9876543210"
    caplog.set_level(logging.DEBUG)
    run = start(streams, NovaStream(config(double.url, wrong), fallback=whisper, log=log))
    await asyncio.wait_for(run.task, timeout=10)
    assert run.stream.down == "DEEPGRAM_API_KEY was rejected by Deepgram (HTTP 401)"

    transcript = await run.stream.transcribe(pcm(run.say(said("yes"))), PHONE_RATE)
    assert transcript.fallback == run.stream.down
    assert double.connections == [], "the double refused the handshake"
    assert wrong not in caplog.text
    assert "DEEPGRAM_API_KEY was rejected" in caplog.text


async def test_start_up_check_accepts_the_key_and_names_the_variable_when_rejected(
    double: DeepgramDouble,
) -> None:
    await check_key(config(double.url))
    assert double.key_checks == 1
    with pytest.raises(DeepgramConfigError) as rejected:
        await check_key(config(double.url, "dg-wrong-key-9876543210"))
    assert str(rejected.value) == "DEEPGRAM_API_KEY was rejected by Deepgram (HTTP 401)"


async def test_flux_turn_events_feed_the_listener_and_end_the_turn(
    double: DeepgramDouble, whisper: WhisperSTT, streams: list[Running]
) -> None:
    flux = FluxStream(config(double.url, stt="flux"), fallback=whisper, log=log)
    run = start(streams, flux)
    connection = (await double.wait_for(lambda: double.connections))[0]
    assert connection.path == "/v2/listen"
    assert connection.query == {
        "model": "flux-general-en",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "eot_threshold": "0.7",
        "eot_timeout_ms": "5000",
    }
    assert connection.authorization == f"Token {KEY}"

    run.say(silence(300))
    segment = run.say(said("yes", "we") + silence(400) + said("own", "it") + silence(200))
    transcript = await run.stream.transcribe(pcm(segment), PHONE_RATE)
    assert (transcript.text, transcript.provider) == ("yes we own it", "flux")

    run.say(silence(800))
    end = await run.wait_for_event(StreamEndOfTurn)
    assert end.text == "yes we own it"
    events = [m["event"] for m in connection.sent if m["type"] == "TurnInfo"]
    assert events[0] == "StartOfTurn"
    assert {"EagerEndOfTurn", "TurnResumed"} <= set(events)
    assert events[-1] == "EndOfTurn"
    assert connection.sent[0]["type"] == "Connected"


def test_the_edge_refuses_to_start_without_the_key_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEEPGRAM_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "media_edge.app"],
        env={**env, "SLOT_STT": "deepgram", "SLOT_PAYLOAD_KEYS": Keyring.new_entry("k1")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "media edge: SLOT_STT=deepgram needs DEEPGRAM_API_KEY in the environment"
    ]
