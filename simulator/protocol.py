"""Twilio's wire formats as the simulator speaks them, kept pure so they are testable alone.

Covers the TwiML that connects a call to a Media Stream, the JSON messages Twilio sends on the
Media Streams WebSocket, webhook request signing, and the caller's playback buffer (how Twilio
plays `media` from the server, echoes `mark`s once the audio before them has played, and empties
itself on `clear`, echoing every pending mark at once).
"""

from __future__ import annotations

import base64
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FRAME_MS = 20
FRAME_BYTES = 160
"""20 ms of 8 kHz mu-law: the size of every `media` payload Twilio sends."""
MULAW_SILENCE = 0xFF
SILENT_FRAME = bytes([MULAW_SILENCE]) * FRAME_BYTES


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two-letter prefix + 32 hex digits (CA call, MZ stream, AC account)."""
    return prefix + secrets.token_hex(16)


class TwimlError(ValueError):
    """TwiML the simulator cannot act on; the message says what was wrong."""


@dataclass(frozen=True)
class StreamInstruction:
    """`<Connect><Stream url=…>` with its `<Parameter>`s: where and how to open the media stream."""

    url: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class HangupInstruction:
    """`<Hangup/>` or `<Reject/>`: the call ends without a media stream."""

    verb: str


def parse_twiml(xml_text: str) -> StreamInstruction | HangupInstruction:
    """Find the first verb Twilio would act on; only bidirectional `<Connect><Stream>` streams."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise TwimlError(f"TwiML is not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML root element is <{root.tag}>, expected <Response>")
    for verb in root:
        if verb.tag in ("Hangup", "Reject"):
            return HangupInstruction(verb.tag)
        if verb.tag == "Start" and verb.find("Stream") is not None:
            raise TwimlError("<Start><Stream> is a one-way stream; Slot needs <Connect><Stream>")
        if verb.tag != "Connect":
            continue
        stream = verb.find("Stream")
        if stream is None:
            raise TwimlError("<Connect> has no <Stream> child")
        url = (stream.get("url") or "").strip()
        if not url.startswith(("ws://", "wss://")):
            raise TwimlError(f"<Stream url> must be a ws:// or wss:// URL, got {url!r}")
        params: dict[str, str] = {}
        for param in stream.findall("Parameter"):
            name = param.get("name")
            if not name:
                raise TwimlError("<Parameter> without a name attribute")
            params[name] = param.get("value", "")
        return StreamInstruction(url=url, parameters=params)
    raise TwimlError("TwiML has no <Connect><Stream>, <Hangup> or <Reject> verb")


@dataclass(frozen=True)
class DialInstruction:
    """`<Dial>` a number: the live call leaves its media stream for a person (a transfer)."""

    number: str


def parse_call_update(xml_text: str) -> DialInstruction | HangupInstruction:
    """The TwiML a live call is updated with (`Calls/{sid}.json` `Twiml`): `<Dial>` a number
    (its text or a `<Number>` child), or `<Hangup/>`."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise TwimlError(f"TwiML is not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML root element is <{root.tag}>, expected <Response>")
    for verb in root:
        if verb.tag in ("Hangup", "Reject"):
            return HangupInstruction(verb.tag)
        if verb.tag == "Dial":
            number = verb.find("Number")
            text = (number.text if number is not None else verb.text) or ""
            if not text.strip():
                raise TwimlError("<Dial> names no number")
            return DialInstruction(text.strip())
    raise TwimlError("the simulator updates a live call only with <Dial> or <Hangup>")


@dataclass
class StreamIdentity:
    account_sid: str
    call_sid: str
    stream_sid: str = field(default_factory=lambda: new_sid("MZ"))


class MediaStreamMessages:
    """Builds the messages Twilio sends, numbering them exactly as Twilio does.

    `sequenceNumber` counts every message after `connected` from "1"; media `chunk` counts media
    messages from "1"; `timestamp` is ms since the stream started. All three are strings.
    """

    def __init__(self, identity: StreamIdentity) -> None:
        self.identity = identity
        self._sequence = 0
        self._chunk = 0

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    @staticmethod
    def connected() -> dict[str, Any]:
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    def start(self, custom_parameters: Mapping[str, str]) -> dict[str, Any]:
        ident = self.identity
        return {
            "event": "start",
            "sequenceNumber": self._next_sequence(),
            "start": {
                "accountSid": ident.account_sid,
                "streamSid": ident.stream_sid,
                "callSid": ident.call_sid,
                "tracks": ["inbound"],
                "customParameters": dict(custom_parameters),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": ident.stream_sid,
        }

    def media(self, payload: bytes, timestamp_ms: int) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media",
            "sequenceNumber": self._next_sequence(),
            "media": {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode(),
            },
            "streamSid": self.identity.stream_sid,
        }

    def mark(self, name: str) -> dict[str, Any]:
        return {
            "event": "mark",
            "sequenceNumber": self._next_sequence(),
            "streamSid": self.identity.stream_sid,
            "mark": {"name": name},
        }

    def dtmf(self, digit: str) -> dict[str, Any]:
        return {
            "event": "dtmf",
            "streamSid": self.identity.stream_sid,
            "sequenceNumber": self._next_sequence(),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }

    def stop(self) -> dict[str, Any]:
        ident = self.identity
        return {
            "event": "stop",
            "sequenceNumber": self._next_sequence(),
            "streamSid": ident.stream_sid,
            "stop": {"accountSid": ident.account_sid, "callSid": ident.call_sid},
        }


@dataclass(frozen=True)
class _Mark:
    name: str


@dataclass(frozen=True)
class PlayedFrame:
    """One 20 ms tick of playback: the agent audio heard (None: nothing queued) and the marks
    whose audio finished playing before this tick, to be echoed now, in order."""

    audio: bytes | None
    marks: list[str]


class PlaybackBuffer:
    """The caller's loudspeaker: server `media` queued and played 20 ms per tick.

    A mark is echoed once all audio queued before it has played (a mark sent with nothing queued
    is echoed on the next tick). A frame never spans a mark: audio before a mark that does not
    fill a frame is padded with silence, so echo timing stays exact.
    """

    def __init__(self) -> None:
        self._items: deque[bytes | _Mark] = deque()
        self._queued_bytes = 0

    def push_audio(self, audio: bytes) -> None:
        if audio:
            self._items.append(audio)
            self._queued_bytes += len(audio)

    def push_mark(self, name: str) -> None:
        self._items.append(_Mark(name))

    def clear(self) -> list[str]:
        """Drop queued audio; return every pending mark, to be echoed at once."""
        marks = [item.name for item in self._items if isinstance(item, _Mark)]
        self._items.clear()
        self._queued_bytes = 0
        return marks

    @property
    def queued_ms(self) -> int:
        return self._queued_bytes * FRAME_MS // FRAME_BYTES

    @property
    def pending_marks(self) -> list[str]:
        return [item.name for item in self._items if isinstance(item, _Mark)]

    @property
    def idle(self) -> bool:
        """Nothing left to play and no mark waiting to be echoed."""
        return not self._items

    def next_frame(self) -> PlayedFrame:
        marks: list[str] = []
        while self._items and isinstance(head := self._items[0], _Mark):
            marks.append(head.name)
            self._items.popleft()
        if not self._items:
            return PlayedFrame(None, marks)
        frame = bytearray()
        while self._items and len(frame) < FRAME_BYTES:
            head = self._items[0]
            if isinstance(head, _Mark):
                break
            take = FRAME_BYTES - len(frame)
            frame += head[:take]
            if len(head) > take:
                self._items[0] = head[take:]
            else:
                self._items.popleft()
        self._queued_bytes -= len(frame)
        frame += bytes([MULAW_SILENCE]) * (FRAME_BYTES - len(frame))
        return PlayedFrame(bytes(frame), marks)


QUIET_MULAW = bytes(b for b in range(256) if (~b & 0x7F) < 0x10)
"""The mu-law codes in the lowest segment, either sign."""


def is_quiet_mulaw(frame: bytes) -> bool:
    """True if every sample of a mu-law frame is within the lowest segment (about -48 dBFS).

    Lets the caller tell the agent's speech from silence the edge might send as padding. Run
    on every frame of every simulated call: deleting the quiet codes is one C pass, where a
    Python loop over the bytes took ~20 us a frame.
    """
    return not frame.translate(None, QUIET_MULAW)
