"""Twilio Media Streams parsing: every malformed case names what is wrong and how bad it is."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from media_edge import twilio_protocol as tp
from media_edge.audio import silence_frame
from media_edge.twiml import connect_stream, stream_url

SID = "MZ00000000000000000000000000000000"


def start(**fmt: Any) -> dict[str, Any]:
    media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **fmt}
    return {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": SID,
        "start": {
            "accountSid": "AC1",
            "streamSid": SID,
            "callSid": "CA1",
            "tracks": ["inbound"],
            "customParameters": {"call_id": "call-1"},
            "mediaFormat": media_format,
        },
    }


def media(payload: str | None = None) -> dict[str, Any]:
    if payload is None:
        payload = base64.b64encode(silence_frame()).decode()
    return {
        "event": "media",
        "sequenceNumber": "2",
        "streamSid": SID,
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": payload},
    }


def raw(message: dict[str, Any]) -> str:
    return json.dumps(message)


def error_of(message: str | bytes, state: tp.StreamState | None = None) -> tp.ProtocolError:
    with pytest.raises(tp.ProtocolError) as info:
        if state is None:
            tp.parse_message(message)
        else:
            state.accept(message)
    return info.value


def test_valid_messages_parse_to_typed_events() -> None:
    connected = tp.parse_message('{"event":"connected","protocol":"Call","version":"1.0.0"}')
    assert isinstance(connected, tp.Connected)
    started = tp.parse_message(raw(start()))
    assert isinstance(started, tp.Start)
    assert started.start.custom_parameters == {"call_id": "call-1"}
    assert started.start.media_format.sample_rate == 8000
    frame = tp.parse_message(raw(media()))
    assert isinstance(frame, tp.Media) and frame.audio == silence_frame()
    mark = tp.parse_message(raw({"event": "mark", "streamSid": SID, "mark": {"name": "u1:0"}}))
    assert isinstance(mark, tp.Mark) and mark.mark.name == "u1:0"
    dtmf = tp.parse_message(raw({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "5"}}))
    assert isinstance(dtmf, tp.Dtmf) and dtmf.dtmf.digit == "5"
    stop = tp.parse_message(raw({"event": "stop", "streamSid": SID, "stop": {"callSid": "CA1"}}))
    assert isinstance(stop, tp.Stop)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "JSON list"),
        ('{"foo": 1}', "no 'event'"),
        ('{"event": "hello"}', "unknown event 'hello'"),
        (raw(media("***not base64***")), "not valid base64"),
        (raw(media(base64.b64encode(b"\xff" * 10).decode())), "10 bytes, expected 160"),
        (raw({"event": "media", "streamSid": SID}), "invalid media message: media"),
        (raw({"event": "mark", "streamSid": SID, "mark": {}}), "invalid mark message: mark.name"),
        (raw({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "x"}}), "dtmf.digit"),
    ],
)
def test_non_fatal_errors_drop_only_the_message(message: str, reason: str) -> None:
    error = error_of(message)
    assert reason in error.reason
    assert not error.fatal


@pytest.mark.parametrize(
    ("fmt", "reason"),
    [
        ({"encoding": "audio/l16"}, "unsupported encoding 'audio/l16'"),
        ({"sampleRate": 16000}, "unsupported sample rate 16000"),
        ({"channels": 2}, "unsupported channel count 2"),
    ],
)
def test_wrong_media_format_in_start_is_fatal_1003(fmt: dict[str, Any], reason: str) -> None:
    error = error_of(raw(start(**fmt)))
    assert reason in error.reason
    assert error.fatal and error.close_code == tp.CLOSE_UNSUPPORTED_DATA


def test_start_without_call_sid_is_fatal() -> None:
    message = start()
    del message["start"]["callSid"]
    error = error_of(raw(message))
    assert "start.callSid" in error.reason
    assert error.fatal and error.close_code == tp.CLOSE_POLICY_VIOLATION


def test_binary_frames_are_fatal_1003() -> None:
    error = error_of(b"\x00\x01")
    assert error.fatal and error.close_code == tp.CLOSE_UNSUPPORTED_DATA


@pytest.mark.parametrize("event", ["media", "mark", "dtmf", "stop"])
def test_anything_but_connected_before_start_is_fatal_1008(event: str) -> None:
    messages = {
        "media": media(),
        "mark": {"event": "mark", "streamSid": SID, "mark": {"name": "x"}},
        "dtmf": {"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "1"}},
        "stop": {"event": "stop", "streamSid": SID},
    }
    state = tp.StreamState()
    state.accept('{"event":"connected"}')
    error = error_of(raw(messages[event]), state)
    assert error.reason == f"{event} before start"
    assert error.fatal and error.close_code == tp.CLOSE_POLICY_VIOLATION


def test_stream_state_orders_a_good_stream() -> None:
    state = tp.StreamState()
    state.accept('{"event":"connected"}')
    assert isinstance(state.accept(raw(start())), tp.Start)
    assert isinstance(state.accept(raw(media())), tp.Media)
    assert "second start" in error_of(raw(start()), state).reason
    other = media()
    other["streamSid"] = "MZother"
    assert "ignored" in error_of(raw(other), state).reason
    assert isinstance(state.accept(raw({"event": "stop", "streamSid": SID})), tp.Stop)
    assert "after stop" in error_of(raw(media()), state).reason


def test_connected_counts_once_so_a_flood_of_it_before_start_ends_the_stream() -> None:
    state = tp.StreamState()
    assert isinstance(state.accept('{"event":"connected"}'), tp.Connected)
    for _ in range(tp.StreamState.MAX_ERRORS - 1):
        assert "second connected" in error_of('{"event":"connected"}', state).reason
    error = error_of('{"event":"connected"}', state)
    assert error.fatal and "too many protocol errors" in error.reason


def test_a_flood_of_bad_messages_becomes_fatal() -> None:
    state = tp.StreamState()
    for _ in range(tp.StreamState.MAX_ERRORS - 1):
        assert not error_of("{bad", state).fatal
    error = error_of("{bad", state)
    assert error.fatal and "too many protocol errors" in error.reason


def test_outbound_messages() -> None:
    sent = json.loads(tp.media_message(SID, b"\x01\x02"))
    assert sent == {"event": "media", "streamSid": SID, "media": {"payload": "AQI="}}
    assert json.loads(tp.mark_message(SID, "u:end")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "u:end"},
    }
    assert json.loads(tp.clear_message(SID)) == {"event": "clear", "streamSid": SID}


def test_twiml_connects_the_stream_with_escaped_parameters() -> None:
    url = stream_url("https://edge.example.com/")
    assert url == "wss://edge.example.com/twilio/media"
    assert stream_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/twilio/media"
    xml = connect_stream(url, {"call_id": 'a<b>&"c'})
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == url
    param = stream.find("Parameter")
    assert param is not None and param.get("value") == 'a<b>&"c'
