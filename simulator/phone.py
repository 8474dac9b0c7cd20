"""One simulated phone call: Twilio's side of the voice webhook and the Media Stream.

`SimulatedCall` does what Twilio does for a call whose TwiML says `<Connect><Stream>`: it POSTs
the voice webhook, opens the WebSocket, sends `connected` and `start`, then a 20 ms `media` frame
on a monotonic clock for the whole call (silence when the caller is not speaking). The agent's
audio plays through a real-time `PlaybackBuffer`, marks are echoed when their audio has played,
and `clear` empties the buffer. On top of that, a caller persona speaks its lines as synthesized
speech, waiting for the agent like a person would, interrupting when told to. A linear persona
says its lines in order; a reactive one answers the question the agent is asking, which it reads
from the edge's event stream (the script state of each `agent_utterance`; `simulator.reactive`
picks the reply). Everything is timed on the media clock, so the eval can measure on it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypedDict
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import numpy as np
from pydantic import SecretStr, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from media_edge.audio import PHONE_RATE, frames, mulaw_encode
from media_edge.events import AgentUtterance, CallEnded, UtteranceDone, parse_event
from media_edge.events import CallEvent as EdgeEvent
from simulator.caller_audio import CallerAudio, voiced_span
from simulator.caller_voice import CallerEngine, CallerVoice, synthesize_ahead
from simulator.persona import AnyPersona, Persona, PersonaLine, ReactivePersona, Reply
from simulator.protocol import (
    FRAME_BYTES,
    FRAME_MS,
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
from simulator.reactive import ReactivePolicy
from simulator.recorder import CallRecorder
from simulator.signing import signature_headers
from slot.settings import Settings

log = logging.getLogger(__name__)

RESUME_WAIT_MS = 10_000
"""How long a caller who resumes over the agent (`Reply.resume_on_agent_ms`) waits for it."""

CallDirection = Literal["inbound", "outbound-api"]
HungUpBy = Literal["caller", "agent", "error", "api"]
"""`api`: a REST update of the live call ended the stream (a transfer, a hang-up)."""
EventKind = Literal[
    "ringing",
    "answered",
    "stream_started",
    "caller_started_speaking",
    "caller_line",
    "caller_stopped_speaking",
    "caller_silent",
    "agent_audio_started",
    "agent_audio_stopped",
    "clear_received",
    "mark_echoed",
    "keys_pressed",
    "machine_detected",
    "transferred",
    "call_ended",
]


@dataclass(frozen=True)
class CallEvent:
    """Something that happened on the call; `at_ms` is on the media timeline (0 = stream start)."""

    kind: EventKind
    at_ms: int
    call_sid: str
    text: str = ""


@dataclass(frozen=True)
class SpokenLine:
    index: int
    text: str
    start_ms: int
    end_ms: int
    interrupting: bool
    """The line was meant to start while the agent was talking (`interrupt_after_ms`)."""
    backchannel: bool = False
    """An acknowledgement over the agent that expects no reply."""
    voiced_start_ms: int | None = None
    voiced_end_ms: int | None = None
    """Where the words are (synthesized audio has quiet padding); None when not measured."""
    topic: str = ""
    state: str = ""
    """A reactive caller: the topic it answered, the agent's script state it heard."""
    utterance_id: str | None = None
    """The agent utterance this line answered, interrupted or backchannelled over."""


@dataclass(frozen=True)
class AgentSegment:
    """A stretch of agent audio as heard by the caller; `cleared` if a `clear` cut it short."""

    start_ms: int
    end_ms: int
    cleared: bool


@dataclass
class CallResult:
    call_sid: str
    stream_sid: str | None
    direction: CallDirection
    status: str
    """Final Twilio CallStatus: completed, failed or busy."""
    hung_up_by: HungUpBy
    duration_ms: int
    recording_path: Path | None
    lines_spoken: list[SpokenLine] = field(default_factory=list)
    silent_turns: int = 0
    agent_segments: list[AgentSegment] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears_received: int = 0
    clears_ms: list[int] = field(default_factory=list)
    edge_events: list[tuple[int, EdgeEvent]] = field(default_factory=list)
    """A reactive call: the edge's events for this call, with the media time they arrived."""
    stream_parameters: dict[str, str] = field(default_factory=dict)
    close_code: int | None = None
    protocol_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Where the caller could not follow the conversation as planned (e.g. no agent reply)."""
    error: str | None = None
    keys_pressed: list[str] = field(default_factory=list)
    answered_by: str | None = None
    """What machine detection reported (when it was asked for)."""
    beep_end_ms: int | None = None
    """An answering machine: when its beep ended (recording starts)."""
    transferred_to: str | None = None
    """The number a REST update `<Dial>`ed: the call left for a person."""

    def summary(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid,
            "status": self.status,
            "hung_up_by": self.hung_up_by,
            "duration_ms": self.duration_ms,
            "recording": str(self.recording_path) if self.recording_path else None,
            "lines_spoken": [line.text for line in self.lines_spoken],
            "silent_turns": self.silent_turns,
            "agent_segments": len(self.agent_segments),
            "marks_echoed": len(self.marks_echoed),
            "clears_received": self.clears_received,
            "close_code": self.close_code,
            "protocol_errors": self.protocol_errors,
            "notes": self.notes,
            "error": self.error,
            "keys_pressed": self.keys_pressed,
            "answered_by": self.answered_by,
            "beep_end_ms": self.beep_end_ms,
            "transferred_to": self.transferred_to,
        }


class _CallOver(Exception):
    """The media stream ended while the caller was waiting or speaking."""


@dataclass
class _Heard:
    """Where a reactive caller is: the agent utterance it last answered, and when it finished."""

    answered: str | None = None
    since: int = 0


@dataclass
class CallerTiming:
    """How the simulated caller paces itself (ms on the media timeline)."""

    agent_quiet_ms: int = 700
    """Agent silence a caller takes as the end of its turn; under load the edge can leave gaps
    between phrases of one utterance, and a shorter wait makes the caller talk over them."""
    human_pause_ms: int = 300
    agent_reply_timeout_ms: int = 30_000
    """Speak anyway if the agent says nothing for this long (reprompts come within this)."""
    unfinished_grace_ms: int = 3_000
    """A reactive caller: quiet this long ends the agent's turn even if its utterance is not
    reported played (a cut-off or lost event)."""
    hangup_grace_ms: int = 5_000
    """After the last reply, how long the caller waits for the agent to hang up first."""
    max_call_ms: int = 600_000


class EdgeAccess(TypedDict):
    """What a simulated call needs to reach an edge: Twilio's signing token, and the internal
    listener (URL, bearer token) a reactive caller follows the call's events on."""

    auth_token: str | None
    events_url: str
    internal_token: str | None


def edge_access(settings: Settings) -> EdgeAccess:
    """`SimulatedCall(..., **edge_access(settings))`: the edge of `settings`, with its secrets."""

    def reveal(secret: SecretStr | None) -> str | None:
        return secret.get_secret_value() if secret is not None else None

    return EdgeAccess(
        auth_token=reveal(settings.twilio_auth_token),
        events_url=settings.edge_internal_url,
        internal_token=reveal(settings.internal_token),
    )


def _with_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(dict(params))) if q)
    return urlunsplit(parts._replace(query=query))


class SimulatedCall:
    """Plays Twilio's side of one call against a media edge and returns what happened."""

    def __init__(
        self,
        edge_url: str,
        persona: AnyPersona,
        *,
        direction: CallDirection = "inbound",
        call_sid: str | None = None,
        account_sid: str = "AC00000000000000000000000000000000",
        from_number: str | None = None,
        to_number: str | None = None,
        agent_number: str = "+15550100000",
        voice_url: str | None = None,
        voice_method: str = "POST",
        params: Mapping[str, str] | None = None,
        status_callback: str | None = None,
        status_callback_events: frozenset[str] = frozenset({"completed"}),
        status_callback_method: str = "POST",
        recording_path: Path | None = None,
        auth_token: str | None = None,
        events_url: str | None = None,
        internal_token: str | None = None,
        voice: CallerVoice | None = None,
        voice_engine: CallerEngine = "piper",
        timing: CallerTiming | None = None,
        events: asyncio.Queue[CallEvent] | None = None,
        on_event: Callable[[CallEvent], None] | None = None,
        policy: ReactivePolicy | None = None,
        caller_audio: CallerAudio | None = None,
        amd_callback: str | None = None,
    ) -> None:
        """`voice_url` (an outbound call's Url) replaces `{edge_url}/twilio/voice`; `params` are
        added to its query string. Inbound: From is the persona's phone, To the agent's number;
        outbound-api: the reverse, as Twilio reports them. A reactive persona needs its
        `policy` and the `caller_audio` its voice speaks from, and follows the call on the edge's
        internal listener (`events_url`, with `internal_token`; default SLOT_INTERNAL_TOKEN).
        Requests, and the media stream's upgrade, are signed with `auth_token` (default
        TWILIO_AUTH_TOKEN) as Twilio signs them. `amd_callback` (an outbound call's
        AsyncAmdStatusCallback) receives machine detection's result, as Twilio posts it."""
        if isinstance(persona, ReactivePersona) and (
            policy is None or caller_audio is None or events_url is None
        ):
            raise ValueError(
                "a reactive persona needs a ReactivePolicy, a CallerAudio and events_url"
            )
        self.edge_url = edge_url.rstrip("/")
        self.persona = persona
        self.direction: CallDirection = direction
        self.call_sid = call_sid or new_sid("CA")
        self.account_sid = account_sid
        caller_side, agent_side = persona.phone, agent_number
        if direction == "inbound":
            self.from_number = from_number or caller_side
            self.to_number = to_number or agent_side
        else:
            self.from_number = from_number or agent_side
            self.to_number = to_number or caller_side
        self.voice_url = _with_query(voice_url or f"{self.edge_url}/twilio/voice", params or {})
        self.voice_method = voice_method.upper()
        self.status_callback = status_callback
        self.status_callback_events = status_callback_events
        self.status_callback_method = status_callback_method.upper()
        self.recording_path = recording_path
        self.auth_token = (
            auth_token if auth_token is not None else os.environ.get("TWILIO_AUTH_TOKEN")
        )
        self.events_url = (events_url or "").rstrip("/")
        self.internal_token = (
            internal_token if internal_token is not None else os.environ.get("SLOT_INTERNAL_TOKEN")
        )
        self.timing = timing or CallerTiming()
        self.amd_callback = amd_callback
        self._voice = voice
        self._voice_engine: CallerEngine = voice_engine
        self._events = events
        self._on_event = on_event
        self._policy = policy
        self._audio = caller_audio
        self._utterance: AgentUtterance | None = None
        self._utterance_heard_ms = 0
        self._played: set[str] = set()
        """Agent utterances the edge reported played to their end (`utterance_played`)."""

        self._playback = PlaybackBuffer()
        self._recorder = CallRecorder()
        self._messages: MediaStreamMessages | None = None
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._tick = asyncio.Condition()
        self._now_ms = 0
        self._closed = False
        self._hung_up_by: HungUpBy | None = None
        self._caller_frames: deque[bytes] = deque()
        self._caller_speaking = False
        self._agent_speaking = False
        self._agent_segment_start = 0
        self._last_agent_audio_ms = -1
        self._last_clear_ms = -1
        self._callback_sequence = 0
        self._started_wall = time.time()
        self.result = CallResult(
            call_sid=self.call_sid,
            stream_sid=None,
            direction=direction,
            status="queued",
            hung_up_by="error",
            duration_ms=0,
            recording_path=None,
        )

    # ---- events -----------------------------------------------------------------------------

    def _emit(self, kind: EventKind, text: str = "") -> None:
        event = CallEvent(kind=kind, at_ms=self._now_ms, call_sid=self.call_sid, text=text)
        if self._events is not None:
            self._events.put_nowait(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("call event callback failed")

    # ---- the call ---------------------------------------------------------------------------

    async def run(self) -> CallResult:
        """Place the call and play it out; never raises for call-level failures (see `error`)."""
        speech: list[asyncio.Future[list[bytes]]] = []
        if isinstance(self.persona, Persona):
            lines = self.persona.lines
            texts = [line.text for line in lines] or self.persona.spoken_lines
            spoken = [i for i, line in enumerate(lines) if line.spoken] if lines else [0]
            speech = synthesize_ahead([texts[i] for i in spoken], self._voice_engine, self._voice)
            self._speech = dict(zip(spoken, speech, strict=True))
        elif self._audio is not None:
            await asyncio.to_thread(self._audio.prepare, [self.persona])
        async with httpx.AsyncClient(timeout=15.0, verify=_tls()) as http:
            self._http = http
            try:
                await self._status_callback("initiated", "queued")
                await self._status_callback("ringing", "ringing")
                self._emit("ringing")
                instruction = await self._fetch_twiml()
                self.result.status = "in-progress"
                await self._status_callback("answered", "in-progress")
                self._emit("answered")
                if isinstance(instruction, HangupInstruction):
                    self._hung_up_by = "agent"
                    self.result.status = "busy" if instruction.verb == "Reject" else "completed"
                else:
                    self.result.stream_parameters = instruction.parameters
                    await self._stream(instruction.url, instruction.parameters)
                    self.result.status = "completed"
            except (httpx.HTTPError, TwimlError, OSError, _WebhookError) as exc:
                self.result.error = f"{type(exc).__name__}: {exc}"
                self.result.status = "failed"
                self._hung_up_by = "error"
                log.warning("simulated call %s failed: %s", self.call_sid, self.result.error)
            finally:
                for future in speech:
                    future.cancel()
            self.result.hung_up_by = self._hung_up_by or "error"
            self.result.duration_ms = self._recorder.duration_ms
            if self.recording_path is not None and self._recorder.frame_count:
                self.result.recording_path = await asyncio.to_thread(
                    self._recorder.write, self.recording_path
                )
            self._emit("call_ended", self.result.hung_up_by)
            await self._status_callback("completed", self.result.status)
        return self.result

    def _webhook_fields(self, status: str) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": status,
            "Called": self.to_number,
            "CalledCountry": "US",
            "Caller": self.from_number,
            "CallerCountry": "US",
            "Direction": self.direction,
            "From": self.from_number,
            "FromCountry": "US",
            "To": self.to_number,
            "ToCountry": "US",
        }

    async def _request(self, method: str, url: str, fields: dict[str, str]) -> httpx.Response:
        if method == "GET":
            url = _with_query(url, fields)
            headers = self._signature_headers(url, {})
            return await self._http.get(url, headers=headers)
        return await self._http.post(url, data=fields, headers=self._signature_headers(url, fields))

    def _signature_headers(self, url: str, fields: Mapping[str, str]) -> dict[str, str]:
        return signature_headers(self.auth_token, url, fields)

    async def _fetch_twiml(self) -> StreamInstruction | HangupInstruction:
        status = "ringing" if self.direction == "inbound" else "in-progress"
        response = await self._request(
            self.voice_method, self.voice_url, self._webhook_fields(status)
        )
        if response.status_code >= 400:
            reason = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            raise _WebhookError(f"voice webhook answered HTTP {response.status_code}: {reason}")
        return parse_twiml(response.text)

    async def _status_callback(self, event: str, status: str) -> None:
        """Twilio's call progress callback, sent only for the events that were asked for."""
        if not self.status_callback or event not in self.status_callback_events:
            return
        fields = self._webhook_fields(status)
        fields["Timestamp"] = formatdate(usegmt=True).replace("GMT", "+0000")
        fields["CallbackSource"] = "call-progress-events"
        fields["SequenceNumber"] = str(self._callback_sequence)
        self._callback_sequence += 1
        if event == "completed":
            seconds = str(self._recorder.duration_ms // 1000)
            fields["CallDuration"] = seconds
            fields["Duration"] = str(-(-self._recorder.duration_ms // 60_000))
        try:
            response = await self._request(
                self.status_callback_method, self.status_callback, fields
            )
            if response.status_code >= 400:
                log.warning("status callback answered HTTP %s", response.status_code)
        except httpx.HTTPError as exc:
            log.warning("status callback to %s failed: %s", self.status_callback, exc)

    # ---- media stream -----------------------------------------------------------------------

    async def _stream(self, url: str, parameters: dict[str, str]) -> None:
        identity = StreamIdentity(account_sid=self.account_sid, call_sid=self.call_sid)
        self._messages = MediaStreamMessages(identity)
        self.result.stream_sid = identity.stream_sid
        headers = self._signature_headers(url, {})
        async with connect(
            url, open_timeout=10, max_size=2**20, compression=None, additional_headers=headers
        ) as ws:  # Twilio asks for no per-message compression
            self._ws = ws
            await self._send(MediaStreamMessages.connected())
            await self._send(self._messages.start(parameters))
            self._emit("stream_started", identity.stream_sid)
            tasks = [
                asyncio.create_task(self._send_media(), name="sim-media"),
                asyncio.create_task(self._receive(), name="sim-receive"),
            ]
            follower: asyncio.Task[None] | None = None
            if isinstance(self.persona, ReactivePersona):
                call_id = parameters.get("call_id") or f"call-{self.call_sid}"
                follower = asyncio.create_task(self._follow_events(call_id), name="sim-events")
                tasks.append(asyncio.create_task(self._converse_reactive(), name="sim-caller"))
            elif self.persona.machine is not None:
                tasks.append(asyncio.create_task(self._answering_machine(), name="sim-machine"))
            else:
                tasks.append(asyncio.create_task(self._converse(), name="sim-caller"))
            if self.amd_callback and not (
                isinstance(self.persona, Persona) and self.persona.machine is not None
            ):
                tasks.append(asyncio.create_task(self._detect_person(), name="sim-amd"))
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    failure = None if task.cancelled() else task.exception()
                    if failure is not None:
                        raise failure
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if self._agent_speaking:  # the agent's last words, cut by the hang-up
                    self._end_agent_segment(cleared=False)
                if follower is not None:
                    # the last events (the goodbye played, call_ended) come just after the close
                    with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
                        await asyncio.wait_for(asyncio.shield(follower), timeout=3)
                    follower.cancel()
                    await asyncio.gather(follower, return_exceptions=True)
            self.result.close_code = ws.close_code

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._closed:
            return
        async with self._send_lock:
            try:
                await self._ws.send(json.dumps(message))
            except ConnectionClosed:
                await self._edge_closed()

    async def _send_built(self, build: Callable[[MediaStreamMessages], dict[str, Any]]) -> None:
        """Build and send under one lock so sequence numbers go out in order."""
        if self._ws is None or self._messages is None or self._closed:
            return
        async with self._send_lock:
            try:
                await self._ws.send(json.dumps(build(self._messages)))
            except ConnectionClosed:
                await self._edge_closed()

    async def _send_media_frame(self, frame: bytes) -> None:
        timestamp = self._now_ms
        await self._send_built(lambda m: m.media(frame, timestamp))

    async def _edge_closed(self) -> None:
        if not self._closed:
            self._closed = True
            self._hung_up_by = self._hung_up_by or "agent"
        async with self._tick:
            self._tick.notify_all()

    async def _send_media(self) -> None:
        """One `media` message per 20 ms on the monotonic clock; the agent's audio plays in step."""
        loop = asyncio.get_running_loop()
        origin = loop.time()
        tick = 0
        while not self._closed:
            delay = origin + tick * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._closed:
                break
            self._now_ms = tick * FRAME_MS
            caller_frame = self._next_caller_frame()
            played = self._playback.next_frame()
            for name in played.marks:
                await self._echo_mark(name)
            await self._send_media_frame(caller_frame)
            self._recorder.add_frame(caller_frame, played.audio)
            self._track_agent(played.audio)
            tick += 1
            if self._now_ms >= self.timing.max_call_ms:
                log.warning("call %s reached max_call_ms; caller hangs up", self.call_sid)
                await self._hang_up()
            async with self._tick:
                self._tick.notify_all()

    def _next_caller_frame(self) -> bytes:
        if self._caller_frames:
            if not self._caller_speaking:
                self._caller_speaking = True
                self._emit("caller_started_speaking")
            frame = self._caller_frames.popleft()
            if not self._caller_frames:
                self._caller_speaking = False
                self._emit("caller_stopped_speaking")
            return frame
        return SILENT_FRAME

    def _track_agent(self, audio: bytes | None) -> None:
        now = self._now_ms
        if audio is not None and not is_quiet_mulaw(audio):
            if not self._agent_speaking:
                self._agent_speaking = True
                self._agent_segment_start = now
                self._emit("agent_audio_started")
            self._last_agent_audio_ms = now + FRAME_MS
        elif self._agent_speaking and now - self._last_agent_audio_ms >= self.timing.agent_quiet_ms:
            self._end_agent_segment(cleared=False)

    def _end_agent_segment(self, cleared: bool) -> None:
        end = self._now_ms if cleared else self._last_agent_audio_ms
        self._agent_speaking = False
        self.result.agent_segments.append(AgentSegment(self._agent_segment_start, end, cleared))
        self._emit("agent_audio_stopped", "cleared" if cleared else "")

    async def _echo_mark(self, name: str) -> None:
        await self._send_built(lambda m: m.mark(name))
        self.result.marks_echoed.append(name)
        self._emit("mark_echoed", name)

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                await self._handle(raw)
        except ConnectionClosed:
            pass
        await self._edge_closed()

    async def _handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self._protocol_error("binary WebSocket message (Twilio expects JSON text)")
            return
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            self._protocol_error("message is not JSON")
            return
        if not isinstance(message, dict):
            self._protocol_error("message is not a JSON object")
            return
        event = message.get("event")
        if event in ("media", "mark", "clear") and message.get("streamSid") != (
            self.result.stream_sid
        ):
            self._protocol_error(f"{event} with streamSid {message.get('streamSid')!r}")
            return
        if event == "media":
            payload = (message.get("media") or {}).get("payload")
            try:
                audio = base64.b64decode(payload or "", validate=True)
            except (binascii.Error, TypeError):
                self._protocol_error("media payload is not valid base64")
                return
            self._playback.push_audio(audio)
        elif event == "mark":
            name = (message.get("mark") or {}).get("name")
            if not isinstance(name, str):
                self._protocol_error("mark without mark.name")
                return
            self._playback.push_mark(name)
        elif event == "clear":
            self.result.clears_received += 1
            self.result.clears_ms.append(self._now_ms)
            self._last_clear_ms = self._now_ms + FRAME_MS  # after this tick's frame played
            self._emit("clear_received")
            if self._agent_speaking:
                self._end_agent_segment(cleared=True)
            for name in self._playback.clear():
                await self._echo_mark(name)
        else:
            self._protocol_error(f"unknown event {event!r}")

    def _protocol_error(self, reason: str) -> None:
        log.warning("call %s: edge sent %s", self.call_sid, reason)
        self.result.protocol_errors.append(reason)

    async def _hang_up(self, by: HungUpBy = "caller") -> None:
        """The caller hangs up (or a REST update ends the stream): `stop`, then Twilio closes
        the WebSocket."""
        if self._closed or self._ws is None:
            return
        self._hung_up_by = by
        await self._send_built(lambda m: m.stop())
        self._closed = True
        with contextlib.suppress(ConnectionClosed):
            await self._ws.close(1000)
        async with self._tick:
            self._tick.notify_all()

    async def press(self, digits: str) -> None:
        """Send DTMF key presses as Twilio reports them, one `dtmf` message per digit."""
        bad = [digit for digit in digits if digit not in "0123456789*#"]
        if bad:
            raise ValueError(f"not DTMF digits: {''.join(bad)!r}")
        for digit in digits:
            await self._send_dtmf(digit)

    async def _send_dtmf(self, digit: str) -> None:
        await self._send_built(lambda m: m.dtmf(digit))

    # ---- the caller -------------------------------------------------------------------------

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait, tick by tick, for a condition on the call; `_CallOver` if the stream ends."""
        async with self._tick:
            await self._tick.wait_for(lambda: self._closed or predicate())
        if self._closed:
            raise _CallOver

    def _heard_agent_since(self, since_ms: int) -> bool:
        """Agent audio played after `since_ms` and after the last `clear` (a cut-off reply
        does not count: the agent still owes one)."""
        return self._last_agent_audio_ms > max(since_ms, self._last_clear_ms)

    def _agent_turn_done(self, since_ms: int) -> bool:
        t = self.timing
        if not self._heard_agent_since(since_ms):
            return self._now_ms - since_ms >= t.agent_reply_timeout_ms
        return (
            self._playback.idle
            and not self._agent_speaking
            and self._now_ms - self._last_agent_audio_ms >= t.agent_quiet_ms
        )

    async def _converse(self) -> None:
        assert isinstance(self.persona, Persona)
        try:
            since = 0
            for index, line in enumerate(self.persona.lines):
                since = await self._take_turn(index, line, since)
            await self._wait_for_agent(since, "after the last line")
            grace_end = self._now_ms + self.timing.hangup_grace_ms
            await self._wait_until(lambda: self._now_ms >= grace_end)
            self.result.notes.append(
                f"the agent had not hung up {self.timing.hangup_grace_ms} ms after its last "
                "reply; the caller hung up"
            )
            await self._hang_up()
        except _CallOver:
            return

    async def _take_turn(self, index: int, line: PersonaLine, since: int) -> int:
        """One persona line, answering the agent utterance that follows `since`; returns when
        the caller's turn ended (the new `since`)."""
        if line.backchannel:
            await self._backchannel(index, line, since)
            return since
        if line.interrupt_after_ms is not None:
            await self._wait_until(
                lambda: (
                    (self._agent_speaking and self._agent_segment_start >= since)
                    or self._agent_turn_done(since)
                )
            )
            target = self._agent_segment_start + line.interrupt_after_ms
            await self._wait_until(lambda: self._now_ms >= target or self._agent_turn_done(since))
            if self._now_ms < target or not self._agent_speaking:
                self.result.notes.append(
                    f"line {index}: the agent was not speaking {line.interrupt_after_ms} ms "
                    "into its reply, so the line did not interrupt it"
                )
            return await self._say(index, line.say, interrupting=True)
        await self._wait_for_agent(since, f"before line {index}")
        if line.press:
            pause_end = self._now_ms + self.timing.human_pause_ms
            await self._wait_until(lambda: self._now_ms >= pause_end)
            await self.press(line.press)
            self.result.keys_pressed.append(line.press)
            self._emit("keys_pressed", line.press)
            return self._now_ms
        if line.silent:
            self.result.silent_turns += 1
            self._emit("caller_silent")
            return self._now_ms
        pause_end = self._now_ms + self.timing.human_pause_ms
        await self._wait_until(lambda: self._now_ms >= pause_end)
        return await self._say(index, line.say, interrupting=False)

    async def _backchannel(self, index: int, line: PersonaLine, since: int) -> None:
        """Say "uh-huh" `after_ms` into the agent's next utterance, and expect no reply to it."""
        await self._wait_until(
            lambda: (
                (self._agent_speaking and self._agent_segment_start >= since)
                or self._agent_turn_done(since)
            )
        )
        target = self._agent_segment_start + line.after_ms
        await self._wait_until(lambda: self._now_ms >= target or self._agent_turn_done(since))
        if not self._agent_speaking:
            self.result.notes.append(
                f"line {index}: the agent was not speaking {line.after_ms} ms into its reply, "
                "so the backchannel was not said"
            )
            return
        await self._say(index, line.backchannel, interrupting=False, backchannel=True)

    async def _wait_for_agent(self, since: int, where: str) -> None:
        await self._wait_until(lambda: self._agent_turn_done(since))
        if not self._heard_agent_since(since):
            self.result.notes.append(
                f"{where}: no agent reply within {self.timing.agent_reply_timeout_ms} ms"
            )

    async def _say(
        self, index: int, text: str, interrupting: bool, *, backchannel: bool = False
    ) -> int:
        speech = await self._speech[index]
        line = SpokenLine(index, text, 0, 0, interrupting, backchannel)
        return await self._speak(speech, line)

    async def _speak(self, speech: list[bytes], line: SpokenLine) -> int:
        """Play `speech` as the caller and record `line` with its times; returns when done."""
        if self._closed:
            raise _CallOver
        self._emit("caller_line", line.text)
        start = self._now_ms + FRAME_MS
        first, last = voiced_span(speech)
        self._caller_frames.extend(speech)
        await self._wait_until(lambda: not self._caller_frames and not self._caller_speaking)
        self.result.lines_spoken.append(
            replace(
                line,
                start_ms=start,
                end_ms=self._now_ms + FRAME_MS,
                voiced_start_ms=start + first * FRAME_MS,
                voiced_end_ms=start + last * FRAME_MS,
            )
        )
        return self._now_ms

    # ---- the reactive caller ----------------------------------------------------------------

    async def _follow_events(self, call_id: str) -> None:
        """The edge's events for this call, stamped with the media time they arrived."""
        url = self.events_url.replace("http", "ws", 1) + f"/calls/{call_id}/events"
        headers = {"Authorization": f"Bearer {self.internal_token or ''}"}
        async with connect(url, open_timeout=10, additional_headers=headers) as socket:
            async for raw in socket:
                try:
                    event = parse_event(raw)
                except ValidationError:  # an event kind newer than this simulator
                    continue
                self.result.edge_events.append((self._now_ms, event))
                if isinstance(event, AgentUtterance):
                    self._utterance = event
                    self._utterance_heard_ms = self._now_ms
                if isinstance(event, UtteranceDone) and not event.interrupted:
                    self._played.add(event.utterance_id)
                if isinstance(event, CallEnded):
                    return

    def _utterance_finished(self, since: int) -> bool:
        """The agent is quiet and its latest utterance was played to its end: a gap between
        phrases of one slow utterance (a loaded edge) is not the end of the agent's turn, as a
        person hears from the unfinished sentence. Quiet for `unfinished_grace_ms` also ends it."""
        if not self._agent_turn_done(since):
            return False
        if self._utterance is None or self._utterance.utterance_id in self._played:
            return True
        return self._now_ms - self._last_agent_audio_ms >= self.timing.unfinished_grace_ms

    def _new_utterance(self, answered: str | None) -> bool:
        """An agent utterance other than `answered` has started and its audio is being heard."""
        return (
            self._utterance is not None
            and self._utterance.utterance_id != answered
            and self._agent_speaking
        )

    async def _into_utterance(self, ms: int, since: int) -> bool:
        """Wait until `ms` into the agent utterance being heard; False if it ended first."""
        target = max(self._agent_segment_start, self._utterance_heard_ms) + ms
        await self._wait_until(lambda: self._now_ms >= target or self._agent_turn_done(since))
        return self._agent_speaking and self._now_ms >= target

    async def _converse_reactive(self) -> None:
        """Answer each agent utterance by its script state until the call ends."""
        heard = _Heard()
        try:
            while await self._reactive_turn(heard):
                pass
        except _CallOver:
            return

    async def _pause_then_agent_quiet(self) -> bool:
        """A person's short pause before answering; False if the agent spoke again meanwhile."""
        pause_end = self._now_ms + self.timing.human_pause_ms
        await self._wait_until(lambda: self._now_ms >= pause_end)
        return not self._agent_speaking

    async def _reactive_turn(self, heard: _Heard) -> bool:
        """Hear the agent's next utterance and answer it; False once the call is over."""
        assert self._policy is not None and self._audio is not None
        assert isinstance(self.persona, ReactivePersona)
        since = heard.since
        await self._wait_until(
            lambda: self._new_utterance(heard.answered) or self._agent_turn_done(since)
        )
        utterance = self._utterance
        if utterance is None:
            self.result.notes.append("the agent never spoke; the caller hung up")
            await self._hang_up()
            return False
        if self._policy.ends_call(utterance.state):
            if await self._wait_for_hang_up(since, utterance.utterance_id):
                heard.answered = utterance.utterance_id
                return True
            return False
        planned = self._policy.peek(utterance.state)
        if planned is None:
            self.result.notes.append(f"no reply for state {utterance.state!r}: stays silent")
            self.result.silent_turns += 1
            await self._wait_until(lambda: self._agent_turn_done(since))
            heard.answered, heard.since = utterance.utterance_id, self._now_ms
            return True
        reply = planned.reply
        if reply.backchannel.strip() and await self._into_utterance(reply.after_ms, since):
            text = reply.backchannel.strip()
            line = SpokenLine(
                -1, text, 0, 0, False, True, topic=planned.topic, state=utterance.state
            )
            line = replace(line, utterance_id=utterance.utterance_id)
            await self._speak(self._audio.said(self.persona.voice, text), line)
        interrupting = reply.interrupt_after_ms is not None
        if reply.interrupt_after_ms is not None:
            if not await self._into_utterance(reply.interrupt_after_ms, since):
                interrupting = False
                self.result.notes.append(
                    f"{planned.topic}: the agent was not speaking "
                    f"{reply.interrupt_after_ms} ms into its line; no interruption"
                )
        else:
            await self._wait_until(lambda: self._utterance_finished(since))
            if not await self._pause_then_agent_quiet():
                return True  # the agent went on (an answer, then its question): hear it out
        current = self._utterance or utterance
        taken = self._policy.take(current.state)
        if taken is None:
            return True
        heard.since = await self._answer(taken.reply, current, taken.topic, interrupting)
        heard.answered = current.utterance_id
        if taken.reply.hang_up:
            if not taken.reply.say.strip():
                self.result.notes.append(
                    f"asked about {taken.topic} {taken.phrasing + 1} times: the caller gave up"
                )
            await self._hang_up()
            return False
        return True

    async def _answer(
        self, reply: Reply, utterance: AgentUtterance, topic: str, interrupting: bool
    ) -> int:
        assert self._audio is not None and isinstance(self.persona, ReactivePersona)
        if not reply.say.strip():
            return self._now_ms
        line = SpokenLine(
            len(self.result.lines_spoken),
            reply.say,
            0,
            0,
            interrupting,
            topic=topic,
            state=utterance.state,
            utterance_id=utterance.utterance_id,
        )
        if reply.resume_on_agent_ms is not None:
            return await self._resume_over_agent(reply, line)
        return await self._speak(self._audio.reply_frames(self.persona.voice, reply), line)

    async def _resume_over_agent(self, reply: Reply, line: SpokenLine) -> int:
        """Say `reply` up to its first pause, stay quiet until the agent starts replying (at most
        `RESUME_WAIT_MS`), then say the rest `resume_on_agent_ms` into the agent's reply."""
        assert self._audio is not None and isinstance(self.persona, ReactivePersona)
        assert reply.resume_on_agent_ms is not None
        first, rest = reply.resumed
        answered = line.utterance_id
        line = replace(line, text=first)
        since = await self._speak(self._audio.said(self.persona.voice, first), line)
        give_up = since + RESUME_WAIT_MS
        await self._wait_until(lambda: self._new_utterance(answered) or self._now_ms >= give_up)
        if self._new_utterance(answered):
            await self._into_utterance(reply.resume_on_agent_ms, since)
        speech = self._audio.said(self.persona.voice, rest, reply.pause_ms)
        line = replace(line, index=len(self.result.lines_spoken), text=rest)
        return await self._speak(speech, line)

    async def _wait_for_hang_up(self, since: int, goodbye: str) -> bool:
        """The agent's last line: hear it out, then give the agent time to hang up first. True
        when the agent goes on instead, with a line of a state that does not end the call (it
        took the goodbye back, as it does when the caller talked over it to finish a sentence):
        the caller answers that line, as a person would."""

        def went_on() -> bool:
            assert self._policy is not None
            current = self._utterance
            return (
                self._new_utterance(goodbye)
                and current is not None
                and not self._policy.ends_call(current.state)
            )

        await self._wait_until(lambda: went_on() or self._agent_turn_done(since))
        grace_end = self._now_ms + self.timing.hangup_grace_ms
        await self._wait_until(lambda: went_on() or self._now_ms >= grace_end)
        if went_on():
            return True
        self.result.notes.append(
            f"the agent had not hung up {self.timing.hangup_grace_ms} ms after its last line; "
            "the caller hung up"
        )
        await self._hang_up()
        return False

    # ---- Twilio's line control: machine detection, call updates ------------------------------

    async def _answering_machine(self) -> None:
        """A voicemail box: greeting, beep, machine detection's result, then it records until
        the agent hangs up (or its `record_ms` run out and it hangs up itself)."""
        assert isinstance(self.persona, Persona) and self.persona.machine is not None
        machine = self.persona.machine
        try:
            greeting = await self._speech[0]
            await self._speak(greeting, SpokenLine(0, machine.greeting, 0, 0, False))
            self._caller_frames.extend(beep_frames(machine.beep_ms))
            await self._wait_until(lambda: not self._caller_frames and not self._caller_speaking)
            self.result.beep_end_ms = self._now_ms
            await self._report_detection(machine.answered_by)
            stop_at = self._now_ms + machine.record_ms
            await self._wait_until(lambda: self._now_ms >= stop_at)
            self.result.notes.append(f"the machine stopped recording after {machine.record_ms} ms")
            await self._hang_up()
        except _CallOver:
            return

    async def _detect_person(self) -> None:
        """Machine detection on a person: `human` once they have spoken, as Twilio reports it
        (`unknown` if they said nothing within its default 30 s `MachineDetectionTimeout`)."""
        try:
            await self._wait_until(
                lambda: bool(self.result.lines_spoken) or self._now_ms >= AMD_TIMEOUT_MS
            )
        except _CallOver:
            return
        await self._report_detection("human" if self.result.lines_spoken else "unknown")

    async def _report_detection(self, answered_by: str) -> None:
        """Twilio's AsyncAmdStatusCallback, signed like its other webhooks."""
        self.result.answered_by = answered_by
        self._emit("machine_detected", answered_by)
        if not self.amd_callback:
            return
        fields = {
            "AccountSid": self.account_sid,
            "CallSid": self.call_sid,
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": str(self._now_ms),
        }
        try:
            response = await self._request("POST", self.amd_callback, fields)
            if response.status_code >= 400:
                log.warning("AMD callback answered HTTP %s", response.status_code)
        except httpx.HTTPError as exc:
            log.warning("AMD callback to %s failed: %s", self.amd_callback, exc)

    @property
    def live(self) -> bool:
        """The media stream is up: a REST update can still act on the call."""
        return self._ws is not None and not self._closed

    async def transfer(self, number: str) -> None:
        """A REST update `<Dial>`ed `number`: Twilio ends the stream, the caller goes there."""
        self.result.transferred_to = number
        self._emit("transferred", number)
        await self._hang_up("api")

    async def end_by_api(self) -> None:
        """A REST update set the call `completed`: Twilio hangs up."""
        await self._hang_up("api")


AMD_TIMEOUT_MS = 30_000


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every call of the process: an HTTP client building its own loads the
    CA bundle each time (70-380 ms of the bench's loop per call start on the shared machine)."""
    return ssl.create_default_context()


def beep_frames(duration_ms: int) -> list[bytes]:
    """A voicemail beep: a 1 kHz tone, as 20 ms mu-law frames."""
    samples = PHONE_RATE * duration_ms // 1000
    tone = 0.3 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(samples) / PHONE_RATE)
    return frames(mulaw_encode(tone.astype(np.int16)), FRAME_BYTES)


class _WebhookError(Exception):
    """The voice webhook failed; Twilio would play its application-error message and hang up."""
