"""Bad Media Streams input is rejected call by call, and a good call next to it is not disturbed.

The real edge runs on a loopback port against the session's Temporal dev server and a real
worker; the far end of each WebSocket is played by the `websockets` client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from temporalio.client import Client
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from media_edge.auth import STREAM_TOKEN_PARAMETER, StreamTokens
from media_edge.events import AgentUtterance, CallEnded, CallEvent, UtteranceDone, parse_event
from simulator.phone import edge_access
from slot.settings import Settings
from tests.conftest import edge_ports
from tests.integration.edge_fixtures import (
    answer,
    edge_events,
    edge_stack,
    media_message,
    media_socket,
    post_webhook,
    start_message,
    stream_silence,
    twilio_signature,
)
from workflows.messages import CallSnapshot, CallStatus

WAIT_S = 60.0


@pytest.fixture(scope="module")
async def edge(
    temporal_client: Client, temporal_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    settings = temporal_settings.model_copy(
        update={
            **edge_ports(),
            "task_queue": f"edge-bad-input-{uuid.uuid4().hex[:8]}",
            "data_dir": tmp_path_factory.mktemp("edge-bad-input"),
            "reprompt_after_s": 120.0,
        }
    )
    async with edge_stack(temporal_client, settings):
        yield settings


async def place_inbound_call(settings: Settings, call_sid: str) -> dict[str, str]:
    """What Twilio does first: the voice webhook. Returns the `<Parameter>`s the TwiML carries."""
    stream = await answer(settings, call_sid)
    assert stream.url == f"ws://127.0.0.1:{settings.edge_port}/twilio/media"
    return stream.parameters


@dataclass
class Heard:
    media_frames: int = 0
    marks: list[str] = field(default_factory=list)


async def listen_until_greeted(ws: ClientConnection, stream_sid: str) -> Heard:
    """Collect agent audio, echo every mark as Twilio does, stop at the utterance's end mark."""
    heard = Heard()
    while True:
        message = json.loads(await ws.recv())
        assert message["streamSid"] == stream_sid
        if message["event"] == "media":
            assert len(base64.b64decode(message["media"]["payload"])) == 160
            heard.media_frames += 1
        elif message["event"] == "mark":
            name = message["mark"]["name"]
            heard.marks.append(name)
            await ws.send(
                json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
            )
            if name.endswith(":end"):
                return heard


async def good_call(settings: Settings, client: Client) -> tuple[str, Heard, list[CallEvent]]:
    """A well-behaved stream: greeted, marks echoed, then the caller hangs up."""
    stream = await place_inbound_call(settings, f"CAgood{uuid.uuid4().hex[:8]}")
    call_id = stream["call_id"]
    sid = "MZgood"
    async with edge_events(settings, call_id) as events_ws, media_socket(settings) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start_message(stream, sid))
        streamer = asyncio.create_task(stream_silence(ws, sid))
        heard = await listen_until_greeted(ws, sid)
        events: list[CallEvent] = []
        while not events or not isinstance(events[-1], UtteranceDone):
            events.append(parse_event(await events_ws.recv()))
        await ws.send(json.dumps({"event": "stop", "streamSid": sid, "stop": {"callSid": call_id}}))
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        assert ws.close_code == 1000
        streamer.cancel()
        async for message in events_ws:
            events.append(parse_event(message))
    return call_id, heard, events


async def noisy_call(settings: Settings) -> tuple[str, Heard]:
    """A started stream that also sends garbage: each bad message is dropped, the call goes on."""
    stream = await place_inbound_call(settings, f"CAnoisy{uuid.uuid4().hex[:8]}")
    call_id = stream["call_id"]
    sid = "MZnoisy"
    async with media_socket(settings) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start_message(stream, sid))
        await ws.send("{this is not json")
        await ws.send(json.dumps({"event": "bogus", "streamSid": sid}))
        await ws.send(media_message(sid, 2, payload="%%%not-base64%%%"))
        await ws.send(media_message(sid, 3, payload=base64.b64encode(b"\xff" * 100).decode()))
        await ws.send(json.dumps({"event": "mark", "streamSid": sid}))
        heard = await listen_until_greeted(ws, sid)
        await ws.send(json.dumps({"event": "stop", "streamSid": sid}))
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        assert ws.close_code == 1000
    return call_id, heard


def issued(settings: Settings, call_sid: str) -> dict[str, str]:
    """The parameters an edge of this deployment would put in the TwiML for `call-<sid>`."""
    tokens = StreamTokens(edge_access(settings)["internal_token"] or "", 60.0)
    call_id = f"call-{call_sid}"
    return {
        "call_id": call_id,
        STREAM_TOKEN_PARAMETER: tokens.issue(call_sid, call_id, time.time()),
    }


async def rejected(settings: Settings, *messages: str | bytes) -> tuple[int | None, str | None]:
    """Send `messages`, then wait for the edge to close the stream; its close code and reason."""
    async with media_socket(settings) as ws:
        for message in messages:
            await ws.send(message)
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        return ws.close_code, ws.close_reason


async def test_bad_streams_are_rejected_and_a_concurrent_call_is_not_disturbed(
    edge: Settings, temporal_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="media_edge")
    connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    async with asyncio.timeout(WAIT_S):
        good_task = asyncio.create_task(good_call(edge, temporal_client))
        noisy_task = asyncio.create_task(noisy_call(edge))
        before_start, wrong_encoding, wrong_rate, unknown, binary = await asyncio.gather(
            rejected(edge, connected, media_message("MZearly", 1)),
            rejected(edge, connected, start_message("call-x", "MZenc", encoding="audio/l16")),
            rejected(edge, start_message("call-x", "MZrate", sampleRate=16000)),
            rejected(edge, connected, start_message(issued(edge, "nobody-knows"), "MZunknown")),
            rejected(edge, b"\x00\x01\x02"),
        )
        good = await good_task
        noisy = await noisy_task

    assert before_start == (1008, "media before start")
    assert wrong_encoding[0] == 1003 and "unsupported encoding 'audio/l16'" in str(
        wrong_encoding[1]
    )
    assert wrong_rate[0] == 1003 and "unsupported sample rate 16000" in str(wrong_rate[1])
    assert unknown == (1008, "unknown call call-nobody-knows: no such workflow")
    assert binary[0] == 1003 and "binary" in str(binary[1])

    call_id, heard, events = good
    assert heard.media_frames > 50  # a spoken greeting, more than a second of 20 ms frames
    uid = heard.marks[-1].removesuffix(":end")
    assert heard.marks == [f"{uid}:{i}" for i in range(len(heard.marks) - 1)] + [f"{uid}:end"]
    kinds = [e.type for e in events]
    assert kinds == ["call_started", "agent_utterance", "utterance_played", "call_ended"]
    utterance = events[1]
    assert isinstance(utterance, AgentUtterance) and utterance.utterance_id == uid
    assert {"decision", "tts_first_audio", "send"} <= set(utterance.latency_ms)
    assert events[2] == UtteranceDone(utterance_id=uid, interrupted=False)
    assert events[3] == CallEnded(reason="caller hung up")

    noisy_id, noisy_heard = noisy
    assert noisy_heard.media_frames > 50 and noisy_heard.marks[-1].endswith(":end")

    for cid in (call_id, noisy_id):
        handle = temporal_client.get_workflow_handle(cid, result_type=CallSnapshot)
        async with asyncio.timeout(WAIT_S):
            final = await handle.result()
        assert final.status == CallStatus.ENDED
        greeting = next(e for e in final.transcript if e.speaker == "agent")
        assert greeting.heard_text == greeting.text and not greeting.interrupted

    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("media_edge"))
    for reason in (
        f"call {noisy_id}: message dropped: malformed JSON",
        f"call {noisy_id}: message dropped: unknown event 'bogus' ignored",
        f"call {noisy_id}: message dropped: media payload is not valid base64",
        f"call {noisy_id}: message dropped: media payload is 100 bytes, expected 160",
        f"call {noisy_id}: message dropped: invalid mark message: mark: Field required",
        "closing media stream (1008): media before start",
        "closing media stream (1003): unsupported encoding 'audio/l16'",
        "closing media stream (1003): unsupported sample rate 16000",
        "call call-nobody-knows: closing media stream (1008): unknown call call-nobody-knows",
        "closing media stream (1003): binary WebSocket frame",
    ):
        assert reason in logged, f"not logged: {reason}"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_voice_webhook_rejects_an_unknown_script(edge: Settings) -> None:
    form = {"CallSid": "CAnoscript", "From": "+1555", "To": "+1666", "Direction": "inbound"}
    reply = await post_webhook(edge, "/twilio/voice?script=no_such_script", form)
    assert reply.status_code == 400
    assert "unknown playbook 'no_such_script'" in reply.text
    assert "\n" not in reply.text.strip()


async def test_say_for_a_call_not_on_this_edge_is_404(edge: Settings) -> None:
    decision = {
        "utterance_id": "call-elsewhere-u1",
        "text": "Are you still there?",
        "state": "greeting",
        "tier": "rule",
        "reason": "no input",
    }
    bearer = {"Authorization": f"Bearer {edge_access(edge)['internal_token']}"}
    async with httpx.AsyncClient(base_url=edge.edge_internal_url, headers=bearer) as http:
        reply = await http.post("/calls/call-elsewhere/say", json=decision)
        health = await http.get("/healthz")
    assert reply.status_code == 404
    assert "call-elsewhere" in reply.json()["detail"]
    assert health.json()["status"] == "ok"


async def test_webhooks_need_twilio_signature(edge: Settings) -> None:
    form = {"CallSid": "CAsigned", "CallStatus": "completed"}
    path = "/twilio/status?call_id=call-not-running"
    url = edge.edge_url + path
    forged = RequestValidator("not-the-token").compute_signature(url, form)
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(url, data=form)
        wrong = await http.post(url, data=form, headers={"X-Twilio-Signature": str(forged)})
    signed = await post_webhook(edge, path, form)
    assert unsigned.status_code == 403 and "X-Twilio-Signature" in unsigned.text
    assert wrong.status_code == 403
    assert signed.status_code == 204
    assert twilio_signature(edge, url, form) != forged


async def test_machine_detection_callback_is_signed_and_complete(edge: Settings) -> None:
    """Twilio's AsyncAmdStatusCallback: unsigned is refused, one without AnsweredBy is named."""
    path = "/twilio/amd?call_id=call-not-running"
    form = {"CallSid": "CAamd", "AnsweredBy": "machine_end_beep"}
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(edge.edge_url + path, data=form)
    incomplete = await post_webhook(edge, path, {"CallSid": "CAamd"})
    signed = await post_webhook(edge, path, form)
    assert unsigned.status_code == 403
    assert incomplete.status_code == 400 and "AnsweredBy" in incomplete.text
    assert signed.status_code == 204
