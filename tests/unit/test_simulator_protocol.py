"""The simulator's Twilio wire formats and its playback buffer, as pure logic."""

from __future__ import annotations

import base64
import wave
from pathlib import Path

import pytest

from media_edge.audio import mulaw_encode
from simulator.persona import Persona, PersonaLine
from simulator.phone import SimulatedCall
from simulator.protocol import (
    FRAME_BYTES,
    SILENT_FRAME,
    HangupInstruction,
    MediaStreamMessages,
    PlaybackBuffer,
    StreamIdentity,
    StreamInstruction,
    TwimlError,
    is_quiet_mulaw,
    new_sid,
    parse_twiml,
)
from simulator.recorder import CallRecorder

TWIML = """<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Connect>
    <Stream url="wss://edge.example/twilio/media">
      <Parameter name="call_id" value="call-CA123"/>
      <Parameter name="script" value="solar_survey"/>
    </Stream>
  </Connect>
</Response>"""


def test_parses_connect_stream_with_parameters() -> None:
    instruction = parse_twiml(TWIML)
    assert instruction == StreamInstruction(
        url="wss://edge.example/twilio/media",
        parameters={"call_id": "call-CA123", "script": "solar_survey"},
    )


def test_hangup_and_reject_end_the_call() -> None:
    assert parse_twiml("<Response><Hangup/></Response>") == HangupInstruction("Hangup")
    assert parse_twiml("<Response><Reject/></Response>") == HangupInstruction("Reject")


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        ("<Response><Connect>", "not well-formed"),
        ("<Reply/>", "root element is <Reply>"),
        ("<Response><Connect/></Response>", "no <Stream>"),
        ('<Response><Connect><Stream url="https://x"/></Connect></Response>', "ws:// or wss://"),
        ('<Response><Start><Stream url="wss://x"/></Start></Response>', "one-way stream"),
        ("<Response><Say>hi</Say></Response>", "no <Connect><Stream>"),
        (
            '<Response><Connect><Stream url="wss://x"><Parameter value="v"/></Stream>'
            "</Connect></Response>",
            "without a name",
        ),
    ],
)
def test_rejects_twiml_it_cannot_act_on(xml: str, reason: str) -> None:
    with pytest.raises(TwimlError, match=reason):
        parse_twiml(xml)


def test_messages_are_numbered_like_twilio() -> None:
    identity = StreamIdentity(account_sid="AC" + "0" * 32, call_sid="CA" + "1" * 32)
    messages = MediaStreamMessages(identity)
    assert MediaStreamMessages.connected() == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    start = messages.start({"call_id": "c1"})
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": identity.account_sid,
            "streamSid": identity.stream_sid,
            "callSid": identity.call_sid,
            "tracks": ["inbound"],
            "customParameters": {"call_id": "c1"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": identity.stream_sid,
    }
    first = messages.media(SILENT_FRAME, 0)
    second = messages.media(SILENT_FRAME, 20)
    assert first["sequenceNumber"] == "2" and second["sequenceNumber"] == "3"
    assert first["media"]["chunk"] == "1" and second["media"]["chunk"] == "2"
    assert second["media"]["timestamp"] == "20"
    assert first["media"]["track"] == "inbound"
    assert base64.b64decode(first["media"]["payload"]) == SILENT_FRAME
    mark = messages.mark("u1:end")
    assert mark == {
        "event": "mark",
        "sequenceNumber": "4",
        "streamSid": identity.stream_sid,
        "mark": {"name": "u1:end"},
    }
    assert messages.stop()["stop"] == {
        "accountSid": identity.account_sid,
        "callSid": identity.call_sid,
    }
    assert identity.stream_sid.startswith("MZ") and len(identity.stream_sid) == 34


def test_sids_have_twilio_shape() -> None:
    sid = new_sid("CA")
    assert sid.startswith("CA") and len(sid) == 34
    int(sid[2:], 16)


def test_simulated_phone_signs_webhooks_as_twilio_documents() -> None:
    """Twilio's published request-validation vector (auth token 12345)."""
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    persona = Persona(name="Sam", phone="+14158675309", lines=(PersonaLine(say="Hello."),))
    phone = SimulatedCall("http://edge", persona, auth_token="12345")
    headers = phone._signature_headers(url, params)
    assert headers == {"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="}
    assert (
        SimulatedCall("http://edge", persona, auth_token="")._signature_headers(url, params) == {}
    )


def audio(n_frames: int, code: int = 0x10) -> bytes:
    return bytes([code]) * (FRAME_BYTES * n_frames)


def test_mark_is_echoed_after_the_audio_before_it_has_played() -> None:
    buffer = PlaybackBuffer()
    buffer.push_audio(audio(2))
    buffer.push_mark("u1:0")
    buffer.push_audio(audio(1, 0x20))
    buffer.push_mark("u1:end")
    played = [buffer.next_frame() for _ in range(5)]
    assert [p.audio is not None for p in played] == [True, True, True, False, False]
    assert [p.marks for p in played] == [[], [], ["u1:0"], ["u1:end"], []]
    assert played[2].audio == audio(1, 0x20)
    assert buffer.idle


def test_mark_with_nothing_queued_is_echoed_on_the_next_tick() -> None:
    buffer = PlaybackBuffer()
    buffer.push_mark("m")
    assert not buffer.idle
    assert buffer.next_frame().marks == ["m"]
    assert buffer.idle


def test_partial_frames_are_padded_and_never_span_a_mark() -> None:
    buffer = PlaybackBuffer()
    buffer.push_audio(b"\x10" * 100)
    buffer.push_mark("a")
    buffer.push_audio(b"\x20" * 200)
    first = buffer.next_frame()
    assert first.audio == b"\x10" * 100 + b"\xff" * 60
    second = buffer.next_frame()
    assert second.marks == ["a"] and second.audio == b"\x20" * 160
    third = buffer.next_frame()
    assert third.audio == b"\x20" * 40 + b"\xff" * 120
    assert buffer.queued_ms == 0


def test_clear_drops_audio_and_returns_every_pending_mark_in_order() -> None:
    buffer = PlaybackBuffer()
    buffer.push_audio(audio(3))
    buffer.push_mark("u1:0")
    buffer.push_audio(audio(3))
    buffer.push_mark("u1:end")
    assert buffer.queued_ms == 120
    buffer.next_frame()
    assert buffer.pending_marks == ["u1:0", "u1:end"]
    assert buffer.clear() == ["u1:0", "u1:end"]
    assert buffer.idle and buffer.queued_ms == 0
    assert buffer.next_frame().audio is None
    assert buffer.clear() == []


def test_quiet_frames_are_told_apart_from_speech() -> None:
    assert is_quiet_mulaw(SILENT_FRAME)
    import numpy as np

    tone = (8000 * np.sin(np.arange(160) / 3)).astype(np.int16)
    assert not is_quiet_mulaw(mulaw_encode(tone))
    for code in range(256):
        lowest_segment = (~code & 0x7F) < 0x10
        assert is_quiet_mulaw(bytes([code]) * 160) is lowest_segment, f"code {code:#04x}"
    assert not is_quiet_mulaw(SILENT_FRAME[:80] + bytes([0x00]) + SILENT_FRAME[81:])


def test_recorder_writes_both_sides_on_one_timeline(tmp_path: Path) -> None:
    recorder = CallRecorder()
    speech = audio(1, 0x10)
    recorder.add_frame(speech, None)
    recorder.add_frame(SILENT_FRAME, speech)
    path = recorder.write(tmp_path / "call.wav")
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        assert wav.getnframes() == 320
    stereo = recorder.stereo_pcm()
    assert stereo[:160, 0].any() and not stereo[:160, 1].any()
    assert not stereo[160:, 0].any() and stereo[160:, 1].any()
    assert recorder.duration_ms == 40
