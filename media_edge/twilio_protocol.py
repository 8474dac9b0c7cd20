"""Twilio Media Streams messages, parsed and checked at the edge of the system.

Inbound: connected, start, media, mark, dtmf, stop. Outbound: media, mark, clear.
Anything that does not follow the protocol becomes a `ProtocolError` that says what is wrong and
whether the stream can go on (`fatal` with a WebSocket close code) or only the message is dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from media_edge.audio import FRAME_SAMPLES, PHONE_RATE

CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

SUPPORTED_ENCODING = "audio/x-mulaw"


class ProtocolError(Exception):
    """A message that breaks the Media Streams protocol.

    `fatal` errors end the stream with `close_code`; the others drop one message.
    """

    def __init__(self, reason: str, close_code: int = CLOSE_POLICY_VIOLATION, fatal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code
        self.fatal = fatal


class _Message(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Connected(_Message):
    event: Literal["connected"]
    protocol: str = "Call"
    version: str = ""


class MediaFormat(_Message):
    encoding: str
    sample_rate: int = Field(alias="sampleRate")
    channels: int = 1


class StartInfo(_Message):
    stream_sid: str = Field(default="", alias="streamSid")
    account_sid: str = Field(default="", alias="accountSid")
    call_sid: str = Field(alias="callSid")
    tracks: list[str] = Field(default_factory=lambda: ["inbound"])
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")
    media_format: MediaFormat = Field(alias="mediaFormat")


class Start(_Message):
    event: Literal["start"]
    sequence_number: str = Field(default="", alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid")
    start: StartInfo


class MediaInfo(_Message):
    track: str = "inbound"
    chunk: str = ""
    timestamp: str = ""
    payload: str


class Media(_Message):
    event: Literal["media"]
    sequence_number: str = Field(default="", alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid")
    media: MediaInfo
    audio: bytes = b""
    """Decoded payload, filled in by `parse_message`."""


class MarkInfo(_Message):
    name: str


class Mark(_Message):
    event: Literal["mark"]
    sequence_number: str = Field(default="", alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid")
    mark: MarkInfo


class DtmfInfo(_Message):
    track: str = "inbound_track"
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")


class Dtmf(_Message):
    event: Literal["dtmf"]
    sequence_number: str = Field(default="", alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid")
    dtmf: DtmfInfo


class StopInfo(_Message):
    account_sid: str = Field(default="", alias="accountSid")
    call_sid: str = Field(default="", alias="callSid")


class Stop(_Message):
    event: Literal["stop"]
    sequence_number: str = Field(default="", alias="sequenceNumber")
    stream_sid: str = Field(default="", alias="streamSid")
    stop: StopInfo = Field(default_factory=StopInfo)


InboundEvent = Connected | Start | Media | Mark | Dtmf | Stop
_INBOUND: TypeAdapter[InboundEvent] = TypeAdapter(
    Annotated[InboundEvent, Field(discriminator="event")]
)
KNOWN_EVENTS = frozenset({"connected", "start", "media", "mark", "dtmf", "stop"})


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"][1:]) or "message"
    return f"{where}: {err['msg']}"


def parse_message(raw: str | bytes) -> InboundEvent:
    """One WebSocket text message to a typed event, or a `ProtocolError` saying why not."""
    if isinstance(raw, bytes):
        raise ProtocolError(
            "binary WebSocket frame: Media Streams messages are JSON text",
            CLOSE_UNSUPPORTED_DATA,
            fatal=True,
        )
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"message is a JSON {type(data).__name__}, expected an object")
    event = data.get("event")
    if not isinstance(event, str):
        raise ProtocolError("message has no 'event' field")
    if event not in KNOWN_EVENTS:
        raise ProtocolError(f"unknown event {event[:40]!r} ignored")
    try:
        message = _INBOUND.validate_python(data)
    except ValidationError as exc:
        fatal = event == "start"
        raise ProtocolError(
            f"invalid {event} message: {_first_error(exc)}",
            CLOSE_POLICY_VIOLATION,
            fatal=fatal,
        ) from None
    if isinstance(message, Media):
        message.audio = _decode_payload(message.media.payload)
    if isinstance(message, Start):
        _check_format(message.start.media_format)
    return message


def _decode_payload(payload: str) -> bytes:
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("media payload is not valid base64; frame dropped") from None
    if len(audio) != FRAME_SAMPLES:
        raise ProtocolError(
            f"media payload is {len(audio)} bytes, expected {FRAME_SAMPLES} (20 ms of 8 kHz "
            "mu-law); frame dropped"
        )
    return audio


def _check_format(fmt: MediaFormat) -> None:
    if fmt.encoding != SUPPORTED_ENCODING:
        raise ProtocolError(
            f"unsupported encoding {fmt.encoding!r} in start; only {SUPPORTED_ENCODING} is "
            "supported",
            CLOSE_UNSUPPORTED_DATA,
            fatal=True,
        )
    if fmt.sample_rate != PHONE_RATE:
        raise ProtocolError(
            f"unsupported sample rate {fmt.sample_rate} in start; only {PHONE_RATE} Hz is "
            "supported",
            CLOSE_UNSUPPORTED_DATA,
            fatal=True,
        )
    if fmt.channels != 1:
        raise ProtocolError(
            f"unsupported channel count {fmt.channels} in start; only mono is supported",
            CLOSE_UNSUPPORTED_DATA,
            fatal=True,
        )


class StreamState:
    """Checks the order of events on one stream: nothing but one `connected` before `start`."""

    MAX_ERRORS = 100
    """Non-fatal errors tolerated on one stream before it is treated as broken."""

    def __init__(self) -> None:
        self.start: Start | None = None
        self.connected = False
        self.stopped = False
        self.errors = 0

    def accept(self, raw: str | bytes) -> InboundEvent:
        try:
            message = self._accept(raw)
        except ProtocolError as exc:
            self.errors += 1
            if not exc.fatal and self.errors >= self.MAX_ERRORS:
                raise ProtocolError(
                    f"too many protocol errors ({self.errors}); last: {exc.reason}",
                    CLOSE_POLICY_VIOLATION,
                    fatal=True,
                ) from None
            raise
        return message

    def _accept(self, raw: str | bytes) -> InboundEvent:
        message = parse_message(raw)
        if self.stopped:
            raise ProtocolError(f"{message.event} after stop ignored")
        if isinstance(message, Connected):
            if self.connected:
                raise ProtocolError("second connected on the same stream ignored")
            self.connected = True
            return message
        if isinstance(message, Start):
            if self.start is not None:
                raise ProtocolError("second start on the same stream ignored")
            self.start = message
            return message
        if self.start is None:
            raise ProtocolError(f"{message.event} before start", CLOSE_POLICY_VIOLATION, fatal=True)
        if message.stream_sid and message.stream_sid != self.start.stream_sid:
            raise ProtocolError(
                f"{message.event} for stream {message.stream_sid[:40]!r}, this stream is "
                f"{self.start.stream_sid!r}; ignored"
            )
        if isinstance(message, Stop):
            self.stopped = True
        return message


def media_message(stream_sid: str, audio: bytes) -> str:
    payload = base64.b64encode(audio).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
