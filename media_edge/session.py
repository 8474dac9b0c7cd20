"""One call's media session: a Twilio Media Streams WebSocket and the tasks that serve it.

Per call, one asyncio TaskGroup:
- receiver: parse each message, decode audio, VAD + endpointer, marks, DTMF, stop; at each
  pause the Smart Turn model (shared by the edge's calls, in the inference pool) judges whether
  the caller has finished, and caller speech over the agent is classified as a backchannel or
  an interruption (by duration, then by its first STT words);
- turn taker: transcribe each caller turn and send it to the call's workflow as the Update
  `turn` (retried with the same update id, so a worker crash never loses or doubles a turn);
- speaker: speak each decision as 20 ms mu-law frames paced in real time, with marks.
Barge-in is handled by the receiver the moment the endpointer reports it. Everything that goes
wrong inside a session stays inside it: it is logged with the call id and ends that call only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine, MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from starlette.websockets import WebSocket, WebSocketState
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from media_edge import twilio_protocol as tp
from media_edge.audio import PHONE_RATE, SampleWindows, frames, mulaw_decode
from media_edge.endpointing import BargeInClassifier, SmartTurnConfig, SmartTurnPolicy
from media_edge.events import EventHub
from media_edge.llm import LanguageModel
from media_edge.llm_speech import LLMUtterance
from media_edge.providers import PCM, SpeechToText, Transcript, VoiceActivityDetector
from media_edge.smart_turn import TurnDetector
from media_edge.tts import PhoneSpeech
from media_edge.turns import (
    Backchannel,
    BargeIn,
    EndOfTurn,
    Endpointer,
    EndpointerConfig,
    SilencePolicy,
    SpeculativePause,
    SpeechResumed,
    SpeechStarted,
    TurnEvent,
    WordsWanted,
)
from slot.settings import Settings
from workflows.messages import Decision, HangUp, Turn, TurnKind, UtterancePlayed
from workflows.router_messages import LLMTurnReport

logger = logging.getLogger("media_edge.session")

LEAD_S = 0.1
"""How far ahead of real time audio is sent, so `clear` silences the caller quickly."""
MARK_GRACE_S = 5.0
"""Extra wait for the final mark's echo before assuming the audio was played."""
UPDATE_RETRY_S = 120.0
SIGNAL_TIMEOUT_S = 10.0
_CALL_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,200}$")
_RETRYABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.INTERNAL,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.CANCELLED,
}


@dataclass
class EdgeServices:
    """What every session on this edge shares: loaded once per process."""

    settings: Settings
    client: Client
    stt: SpeechToText
    speech: PhoneSpeech
    vad_factory: Callable[[], VoiceActivityDetector]
    vad_executor: Executor
    events: EventHub
    turn_detector: TurnDetector | None = None
    """Smart Turn, shared by every call (required when settings.endpointing is smart_turn)."""
    llm: LanguageModel | None = None
    """Tier 2 of the router; None when no LLM is configured (calls then start without it)."""
    sessions: MutableMapping[str, CallSession] = field(default_factory=dict)


class _CallLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        call = (self.extra or {}).get("call_id") or "-"
        return f"call {call}: {msg}", kwargs


class StreamClosed(Exception):
    """The session must end: the reason is already logged and the socket closed."""


@dataclass
class PendingTurn:
    kind: TurnKind
    stt: asyncio.Task[tuple[Transcript, float]] | None = None
    digits: str = ""
    last_voiced_at: float | None = None
    pause_at: float | None = None
    """When the pause that ended the turn was found (the model was asked, or silence ran out)."""
    endpoint_at: float | None = None
    """When the turn was declared over: the model's verdict, or the end of the silence."""
    model_asked: bool = False


@dataclass
class SpeakRequest:
    decision: Decision
    decided_at: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    last_voiced_at: float | None = None
    llm: LLMUtterance | None = None
    """A tier-2 decision: its reply, already streaming from the LLM."""
    llm_report: asyncio.Task[Decision | None] | None = None
    """The Update `llm_result` once the reply is complete: the workflow's final decision."""


@dataclass
class ChunkPlay:
    name: str
    text: str
    duration_ms: float


@dataclass
class Playback:
    """One utterance on its way to the caller, and what the echoed marks say was heard."""

    decision: Decision
    latency_ms: dict[str, float] = field(default_factory=dict)
    chunks: list[ChunkPlay] = field(default_factory=list)
    first_frame_at: float | None = None
    heard_chunks: int = 0
    last_echo_at: float | None = None
    end_echoed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False
    cancel_hooks: list[Callable[[], object]] = field(default_factory=list)

    @property
    def utterance_id(self) -> str:
        return self.decision.utterance_id

    def on_cancel(self, hook: Callable[[], object]) -> None:
        """Run `hook` when a barge-in cuts this utterance off: the place to stop what still
        produces its words (an LLM stream, a remote TTS request). The speaking task itself is
        cancelled right after the hooks, which closes the TTS stream it was reading."""
        self.cancel_hooks.append(hook)

    def on_mark(self, name: str, now: float) -> None:
        suffix = name.removeprefix(self.utterance_id + ":")
        if suffix == "end":
            self.heard_chunks = len(self.chunks)
            self.end_echoed.set()
        elif suffix.isdigit():
            self.heard_chunks = max(self.heard_chunks, int(suffix) + 1)
            self.last_echo_at = now

    def heard(self, now: float) -> tuple[str, int]:
        """Whole chunks whose marks came back, plus the words of the next one by played time."""
        done = min(self.heard_chunks, len(self.chunks))
        texts = [c.text for c in self.chunks[:done]]
        played_ms = sum(c.duration_ms for c in self.chunks[:done])
        started = self.last_echo_at if done else self.first_frame_at
        if done < len(self.chunks) and started is not None:
            chunk = self.chunks[done]
            elapsed_ms = min(max(0.0, (now - started) * 1000.0), chunk.duration_ms)
            words = chunk.text.split()
            fraction = elapsed_ms / chunk.duration_ms if chunk.duration_ms else 0.0
            partial = words[: int(len(words) * fraction)]
            if partial:
                texts.append(" ".join(partial))
            played_ms += elapsed_ms
        return " ".join(texts), round(played_ms)


def _ms(later: float, earlier: float) -> float:
    return round(max(0.0, later - earlier) * 1000.0, 1)


class CallSession:
    def __init__(self, websocket: WebSocket, services: EdgeServices) -> None:
        self.ws = websocket
        self.services = services
        self.settings = services.settings
        self.stream = tp.StreamState()
        self.call_id: str | None = None
        self.stream_sid = ""
        self.log = _CallLog(logger, {"call_id": None})
        self._send_lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._signals: set[asyncio.Task[None]] = set()
        self._turns: asyncio.Queue[PendingTurn] = asyncio.Queue()
        self._decisions: asyncio.Queue[SpeakRequest] = asyncio.Queue()
        self._seq = 0
        self._playback: Playback | None = None
        self._speak_task: asyncio.Task[None] | None = None
        self._play_end = 0.0
        self._speculative: asyncio.Task[tuple[Transcript, float]] | None = None
        self._vad: VoiceActivityDetector | None = None
        self._windows: SampleWindows | None = None
        self._probability = 0.0
        settings = self.settings
        self._smart: SmartTurnPolicy | None = None
        if settings.endpointing == "smart_turn":
            if services.turn_detector is None:
                raise RuntimeError("endpointing is smart_turn but the edge has no turn detector")
            self._smart = SmartTurnPolicy(
                SmartTurnConfig(
                    threshold=settings.smart_turn_threshold,
                    min_pause_ms=settings.smart_turn_min_pause_ms,
                    max_silence_ms=settings.max_endpoint_silence_ms,
                )
            )
        self._endpointer = Endpointer(
            EndpointerConfig(
                threshold=settings.vad_threshold,
                speculative_after_ms=settings.speculative_stt_after_ms,
                barge_in_min_speech_ms=settings.barge_in_min_speech_ms,
                max_turn_ms=int(settings.max_turn_s * 1000),
            ),
            self._smart or SilencePolicy(settings.endpoint_silence_ms),
            BargeInClassifier(
                min_interrupt_ms=settings.barge_in_min_speech_ms,
                max_backchannel_ms=max(
                    settings.barge_in_max_backchannel_ms, settings.barge_in_min_speech_ms
                ),
                use_words=settings.barge_in_confirm_words,
            ),
        )
        self._model_pause: tuple[int, float] | None = None
        """(pause number, when it was found) of the pause the model was last asked about."""
        self._registered = False
        self._workflow_known = False
        self._agent_ended = False
        self._end_reason = "media stream closed"

    # ----- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                receiver = tg.create_task(self._receive())
                await self._done.wait()
                receiver.cancel()
                for task in self._workers:
                    task.cancel()
        except* StreamClosed:
            pass
        except* Exception as group:
            for exc in group.exceptions:
                self.log.error("session failed: %r", exc, exc_info=exc)
            self._end_reason = f"edge error: {type(group.exceptions[0]).__name__}"
            self._publish({"type": "error", "reason": self._end_reason})
            await self._close(tp.CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            await self._finish()

    async def _finish(self) -> None:
        if self._registered and self.call_id is not None:
            self.services.sessions.pop(self.call_id, None)
        if self._signals:
            await asyncio.wait(set(self._signals), timeout=SIGNAL_TIMEOUT_S)
        if self.call_id is not None and self._workflow_known and not self._agent_ended:
            await self._send_signal("hang_up", HangUp(reason=self._end_reason))
        if self.call_id is not None:
            self._publish({"type": "call_ended", "reason": self._end_reason})
        await self._close(tp.CLOSE_NORMAL, "call ended")
        self.log.info("media session ended: %s", self._end_reason)

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason[:120])

    async def _reject(self, error: tp.ProtocolError) -> None:
        """A fatal protocol error: log it, tell the subscribers, close with its code."""
        self.log.warning("closing media stream (%d): %s", error.close_code, error.reason)
        self._end_reason = error.reason
        self._publish({"type": "error", "reason": error.reason})
        await self._close(error.close_code, error.reason)
        self._done.set()

    def _publish(self, event: dict[str, Any]) -> None:
        if self.call_id is not None:
            self.services.events.publish(self.call_id, event)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        assert self._tg is not None
        return self._tg.create_task(coro)

    # ----- receiver --------------------------------------------------------------------------

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                if not self.stream.stopped and not self._agent_ended:
                    self._end_reason = "media stream closed without stop"
                self._done.set()
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                event = self.stream.accept(raw)
            except tp.ProtocolError as error:
                if error.fatal:
                    await self._reject(error)
                    return
                self.log.warning("message dropped: %s", error.reason)
                continue
            if isinstance(event, tp.Media):
                await self._on_media(event)
            elif isinstance(event, tp.Mark):
                self._on_mark(event.mark.name)
            elif isinstance(event, tp.Dtmf):
                await self._on_dtmf(event.dtmf.digit)
            elif isinstance(event, tp.Start):
                if not await self._on_start(event):
                    return
            elif isinstance(event, tp.Stop):
                self._end_reason = "caller hung up"
                self._done.set()
                return

    async def _on_start(self, start: tp.Start) -> bool:
        info = start.start
        call_id = info.custom_parameters.get("call_id") or f"call-{info.call_sid}"
        if not _CALL_ID.match(call_id):
            await self._reject(tp.ProtocolError(f"invalid call id {call_id[:60]!r} in start"))
            return False
        if call_id in self.services.sessions:
            await self._reject(
                tp.ProtocolError(f"call {call_id} already has a media stream on this edge")
            )
            return False
        self.call_id = call_id
        self.stream_sid = start.stream_sid
        self.log = _CallLog(logger, {"call_id": call_id})
        self.services.sessions[call_id] = self
        self._registered = True
        self.services.events.start_call(call_id)
        self._vad = self.services.vad_factory()
        self._windows = SampleWindows(self._vad.window_samples)
        self._workers = [self._spawn(self._turn_taker()), self._spawn(self._speaker())]
        self._turns.put_nowait(PendingTurn(kind="start"))
        self._publish({"type": "call_started", "call_id": call_id, "stream_sid": self.stream_sid})
        self.log.info("media stream started (stream %s)", self.stream_sid)
        return True

    async def _on_media(self, media: tp.Media) -> None:
        assert self._vad is not None and self._windows is not None
        pcm = mulaw_decode(media.audio)
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        for window in self._windows.push(pcm):
            self._probability = await loop.run_in_executor(
                self.services.vad_executor, self._vad.speech_probability, window
            )
        for event in self._endpointer.push(pcm, self._probability, now, self.agent_speaking):
            await self._on_turn_event(event)
        if self._smart is not None:
            pause_id = self._smart.take_request()
            if pause_id is not None and self._endpointer.paused:
                self._ask_turn_model(pause_id, now)

    def _ask_turn_model(self, pause_id: int, found_at: float) -> None:
        """Run Smart Turn once on this pause (last 8 s of the segment), off the event loop."""
        segment, pause = self._endpointer.segment, self._endpointer.pause
        self._model_pause = (pause, found_at)
        self._spawn(self._turn_verdict(pause_id, segment, pause, self._endpointer.audio()))

    async def _turn_verdict(self, pause_id: int, segment: int, pause: int, audio: PCM) -> None:
        detector = self.services.turn_detector
        assert detector is not None and self._smart is not None
        try:
            probability = await detector.probability((self.call_id, segment, pause), audio)
        except Exception as error:
            self.log.error("turn model failed (the pause waits for max silence): %r", error)
            return
        now = time.monotonic()
        endpointer = self._endpointer
        if endpointer.segment != segment or endpointer.pause != pause or not endpointer.paused:
            return
        self._smart.set_verdict(pause_id, probability)
        if not self._smart.verdict_ends_turn(pause_id):
            return
        event = endpointer.force_end_of_turn(now, self.agent_speaking)
        self._smart.reset()
        if event is not None:
            await self._on_turn_event(event)

    async def _on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, SpeculativePause):
            self._speculative = self._spawn(self._transcribe(event.audio))
        elif isinstance(event, SpeechResumed):
            self._speculative = None
        elif isinstance(event, BargeIn):
            await self._barge_in(event.at)
        elif isinstance(event, WordsWanted):
            self._spawn(self._first_words(event))
        elif isinstance(event, EndOfTurn):
            self._end_of_turn(event)
        elif isinstance(event, SpeechStarted):
            self._speculative = None
            self.log.debug("caller speech started")
        elif isinstance(event, Backchannel):
            self._speculative = None
            self._reset_turn_model()
            playback = self._playback
            self._publish(
                {
                    "type": "backchannel",
                    "utterance_id": playback.utterance_id if playback else None,
                    "voiced_ms": event.voiced_ms,
                }
            )
            self.log.debug("backchannel of %d ms over the agent ignored", event.voiced_ms)

    def _reset_turn_model(self) -> None:
        if self._smart is not None:
            self._smart.reset()
        self._model_pause = None

    def _end_of_turn(self, event: EndOfTurn) -> None:
        stt = self._speculative or self._spawn(self._transcribe(event.audio))
        self._speculative = None
        pause_at, model_asked = event.endpoint_at, False
        if event.reason == "forced" and self._model_pause is not None:
            pause_at, model_asked = self._model_pause[1], True
        self._reset_turn_model()
        self._turns.put_nowait(
            PendingTurn(
                kind="speech",
                stt=stt,
                last_voiced_at=event.last_voiced_at,
                pause_at=pause_at,
                endpoint_at=event.endpoint_at,
                model_asked=model_asked,
            )
        )

    async def _first_words(self, wanted: WordsWanted) -> None:
        """Caller speech over the agent: its first words tell a backchannel from an interruption."""
        transcript, _ = await self._transcribe(wanted.audio)
        if self.settings.log_transcripts:
            self.log.info("first words over the agent: %s", transcript.text)
        self._endpointer.set_words(wanted.segment, transcript.text)
        for event in self._endpointer.check_barge_in(time.monotonic(), self.agent_speaking):
            await self._on_turn_event(event)

    async def _transcribe(self, audio: PCM) -> tuple[Transcript, float]:
        """A failed transcription loses one turn, never the call."""
        try:
            transcript = await self.services.stt.transcribe(audio, PHONE_RATE)
        except Exception as error:
            self.log.error("speech-to-text failed: %r", error, exc_info=error)
            self._publish({"type": "error", "reason": f"speech-to-text failed: {error}"})
            transcript = Transcript(text="")
        return transcript, time.monotonic()

    def _on_mark(self, name: str) -> None:
        playback = self._playback
        if playback is not None and name.startswith(playback.utterance_id + ":"):
            playback.on_mark(name, time.monotonic())

    async def _on_dtmf(self, digit: str) -> None:
        if self.agent_speaking:
            await self._barge_in(time.monotonic())
        self._turns.put_nowait(PendingTurn(kind="dtmf", digits=digit))

    # ----- turn taker ------------------------------------------------------------------------

    async def _turn_taker(self) -> None:
        while True:
            pending = await self._turns.get()
            turn = Turn(seq=self._seq, kind=pending.kind, edge_url=self.settings.edge_url)
            latency: dict[str, float] = {}
            if pending.kind == "speech":
                assert pending.stt is not None and pending.endpoint_at is not None
                assert pending.last_voiced_at is not None and pending.pause_at is not None
                transcript, finished_at = await pending.stt
                latency["endpointing"] = _ms(pending.pause_at, pending.last_voiced_at)
                if self._smart is not None:
                    latency["turn_model"] = (
                        _ms(pending.endpoint_at, pending.pause_at) if pending.model_asked else 0.0
                    )
                latency["stt"] = _ms(finished_at, pending.endpoint_at)
                if not transcript.text:
                    self.log.info("caller turn had no recognisable words; ignored")
                    continue
                turn.text = transcript.text
                if self.settings.log_transcripts:
                    self.log.info("caller said: %s", transcript.text)
                self._publish(
                    {
                        "type": "caller_turn",
                        "seq": turn.seq,
                        "text": transcript.text,
                        "latency_ms": dict(latency),
                    }
                )
            elif pending.kind == "dtmf":
                turn.digits = pending.digits
            sent_at = time.monotonic()
            decision = await self._send_turn(turn)
            if decision is None:
                continue
            decided_at = time.monotonic()
            self._seq += 1
            latency["decision"] = _ms(decided_at, sent_at)
            request = SpeakRequest(decision, decided_at, latency, pending.last_voiced_at)
            self._start_llm(request)
            self._decisions.put_nowait(request)

    async def _send_turn(self, turn: Turn) -> Decision | None:
        """The Update `turn`, retried with the same id until the workflow answers."""
        assert self.call_id is not None
        if self._signals:
            await asyncio.wait(set(self._signals), timeout=SIGNAL_TIMEOUT_S)
        handle = self.services.client.get_workflow_handle(self.call_id)
        update_id = f"{self.call_id}-turn-{turn.seq}"
        deadline = time.monotonic() + UPDATE_RETRY_S
        delay = 0.2
        while True:
            try:
                decision: Decision = await handle.execute_update(
                    "turn",
                    turn,
                    id=update_id,
                    result_type=Decision,
                    rpc_timeout=timedelta(seconds=30),
                )
                self._workflow_known = True
                return decision
            except WorkflowUpdateFailedError as error:
                self._workflow_known = True
                reason = f"turn {turn.seq} refused by the workflow: {error.cause}"
                if turn.kind == "start":
                    await self._reject(tp.ProtocolError(reason))
                    raise StreamClosed from None
                self.log.warning("%s", reason)
                self._publish({"type": "error", "reason": reason})
                return None
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    if turn.kind == "start":
                        await self._reject(
                            tp.ProtocolError(f"unknown call {self.call_id}: no such workflow")
                        )
                    else:
                        await self._reject(
                            tp.ProtocolError(f"call {self.call_id} is no longer running")
                        )
                    raise StreamClosed from None
                if error.status not in _RETRYABLE:
                    raise
                failure = f"{error.status.name}: {error.message}"
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                failure = "update timed out"
            if time.monotonic() + delay > deadline:
                reason = f"workflow did not answer turn {turn.seq} ({failure})"
                await self._reject(tp.ProtocolError(reason, tp.CLOSE_INTERNAL_ERROR, fatal=True))
                raise StreamClosed
            self.log.warning("turn %d: %s; retrying in %.1f s", turn.seq, failure, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _signal(self, name: str, arg: Any) -> None:
        """Send a signal in the background; the next turn waits for it, so order is kept."""
        task = asyncio.create_task(self._send_signal(name, arg))
        self._signals.add(task)
        task.add_done_callback(self._signals.discard)

    async def _send_signal(self, name: str, arg: Any) -> None:
        assert self.call_id is not None
        handle = self.services.client.get_workflow_handle(self.call_id)
        try:
            await handle.signal(name, arg, rpc_timeout=timedelta(seconds=SIGNAL_TIMEOUT_S))
        except Exception as error:
            self.log.warning("signal %s failed: %s", name, error)

    # ----- speaker ---------------------------------------------------------------------------

    def say(self, decision: Decision) -> None:
        """Speak a decision the workflow delivered outside a turn (a reprompt, a goodbye)."""
        self._decisions.put_nowait(SpeakRequest(decision, time.monotonic()))

    @property
    def agent_speaking(self) -> bool:
        """Agent audio has been sent and its final mark has not come back yet."""
        playback = self._playback
        return (
            playback is not None
            and playback.first_frame_at is not None
            and not playback.end_echoed.is_set()
        )

    async def _speaker(self) -> None:
        while True:
            request = await self._decisions.get()
            task = self._spawn(self._speak(request))
            self._speak_task = task
            await asyncio.wait([task])
            self._speak_task = None
            if self._agent_ended:
                self._done.set()
                return

    async def _send_media(self, playback: Playback, frame: bytes) -> bool:
        async with self._send_lock:
            if playback.finished:
                return False
            await self._send_locked(tp.media_message(self.stream_sid, frame))
        return True

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            await self._send_locked(text)

    async def _send_locked(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except Exception as error:
            self.log.info("media stream send failed (%s); ending the session", type(error).__name__)
            if not self._agent_ended:
                self._end_reason = "media stream closed without stop"
            self._done.set()
            raise StreamClosed from error

    async def _speak(self, request: SpeakRequest) -> None:
        decision = request.decision
        playback = Playback(decision, {**decision.latency_ms, **request.latency_ms})
        self._playback = playback
        latency = playback.latency_ms
        first_audio_at: float | None = None
        index = 0
        llm = self._start_llm(request)
        if llm is not None:
            playback.on_cancel(llm.cancel)
            audio = llm.chunks()
        else:
            audio = self.services.speech.render(decision.text, decision.cacheable)
        async for chunk in audio:
            if first_audio_at is None:
                first_audio_at = time.monotonic()
            playback.chunks.append(
                ChunkPlay(f"{decision.utterance_id}:{index}", chunk.text, chunk.duration_ms)
            )
            for frame in frames(chunk.audio):
                ahead = self._play_end - time.monotonic() - LEAD_S
                if ahead > 0:
                    await asyncio.sleep(ahead)
                if not await self._send_media(playback, frame):
                    return
                now = time.monotonic()
                self._play_end = max(self._play_end, now) + 0.02
                if playback.first_frame_at is None:
                    playback.first_frame_at = now
                    latency["tts_first_audio"] = _ms(first_audio_at, request.decided_at)
                    latency["send"] = _ms(now, first_audio_at)
                    if request.last_voiced_at is not None:
                        latency["total"] = _ms(now, request.last_voiced_at)
                    if llm is not None:
                        latency.update(llm.latency())
                    self._publish(
                        {
                            "type": "agent_utterance",
                            "utterance_id": decision.utterance_id,
                            "text": chunk.text if llm is not None else decision.text,
                            "streaming": llm is not None,
                            "state": decision.state,
                            "tier": decision.tier.value,
                            "reason": decision.reason,
                            "latency_ms": dict(latency),
                        }
                    )
            await self._send(tp.mark_message(self.stream_sid, playback.chunks[-1].name))
            index += 1
        if request.llm_report is not None:
            final = await asyncio.shield(request.llm_report)
            if final is not None:
                decision = final
        await self._send(tp.mark_message(self.stream_sid, f"{decision.utterance_id}:end"))
        wait = max(0.0, self._play_end - time.monotonic()) + MARK_GRACE_S
        try:
            await asyncio.wait_for(playback.end_echoed.wait(), timeout=wait)
        except TimeoutError:
            self.log.warning(
                "no echo of mark %s:end after %.1f s; treating it as played",
                decision.utterance_id,
                wait,
            )
        if playback.finished:
            return
        playback.finished = True
        self._playback = None
        played_ms = round(sum(c.duration_ms for c in playback.chunks))
        played = UtterancePlayed(
            utterance_id=decision.utterance_id,
            interrupted=False,
            heard_text=" ".join(c.text for c in playback.chunks) if llm else decision.text,
            played_ms=played_ms,
            latency_ms=latency,
        )
        self._publish(
            {
                "type": "utterance_played",
                "utterance_id": decision.utterance_id,
                "interrupted": False,
            }
        )
        if decision.end_call:
            self._agent_ended = True
            self._end_reason = "agent ended the call"
            await self._send_signal("utterance_played", played)
            await self._close(tp.CLOSE_NORMAL, "call ended")
        else:
            self._signal("utterance_played", played)

    def _start_llm(self, request: SpeakRequest) -> LLMUtterance | None:
        """Start streaming a tier-2 decision's reply now (once), and its report to the workflow."""
        decision = request.decision
        if decision.llm_request is None:
            return None
        if request.llm is None:
            request.llm = LLMUtterance(
                self.services.llm,
                decision.llm_request,
                self.services.speech,
                started_at=request.decided_at,
            )
            report = asyncio.create_task(self._report_llm(decision, request.llm))
            request.llm_report = report
            self._signals.add(report)  # type: ignore[arg-type]
            report.add_done_callback(self._signals.discard)
        return request.llm

    async def _report_llm(self, decision: Decision, llm: LLMUtterance) -> Decision | None:
        """Update `llm_result` once the reply is complete (or cut off): the workflow checks it
        against the script and records it. Off the critical path: the caller already hears it.
        The next turn waits for it, like for the signals."""
        assert self.call_id is not None
        try:
            result = await llm.result()
        except Exception as error:
            self.log.error("llm turn %s failed: %r", decision.utterance_id, error)
            return None
        handle = self.services.client.get_workflow_handle(self.call_id)
        report = LLMTurnReport(utterance_id=decision.utterance_id, result=result)
        delay = 0.2
        for attempt in range(4):
            try:
                final: Decision = await handle.execute_update(
                    "llm_result",
                    report,
                    id=f"{decision.utterance_id}-llm",
                    result_type=Decision,
                    rpc_timeout=timedelta(seconds=SIGNAL_TIMEOUT_S),
                )
                break
            except WorkflowUpdateFailedError as error:
                self.log.warning("llm result %s refused: %s", decision.utterance_id, error.cause)
                return None
            except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
                if attempt == 3:
                    self.log.warning(
                        "llm result %s not delivered: %s", decision.utterance_id, error
                    )
                    return None
                await asyncio.sleep(delay)
                delay *= 2
        self._publish(
            {
                "type": "llm_result",
                "utterance_id": decision.utterance_id,
                "text": final.text,
                "state": final.state,
                "reason": final.reason,
                "used_fallback": result.used_fallback,
                "cancelled": result.cancelled,
                "model": result.model,
                "citations": final.citations,
                "latency_ms": result.latency_ms,
            }
        )
        return final

    def _cancel_speech(self, playback: Playback) -> None:
        """Stop producing the cut-off utterance: its cancel hooks, then the speaking task."""
        for hook in playback.cancel_hooks:
            try:
                hook()
            except Exception as error:
                self.log.warning("cancel hook of %s failed: %r", playback.utterance_id, error)
        if self._speak_task is not None:
            self._speak_task.cancel()

    async def _barge_in(self, now: float) -> None:
        """Caller talks over the agent: silence it now and record what was actually heard."""
        playback = self._playback
        if not self.agent_speaking or playback is None or playback.finished:
            return
        playback.finished = True
        self._playback = None
        await self._send(tp.clear_message(self.stream_sid))
        self._cancel_speech(playback)
        self._play_end = time.monotonic()
        heard_text, played_ms = playback.heard(now)
        uid = playback.utterance_id
        self.log.info("barge-in on %s after %d ms", uid, played_ms)
        self._publish(
            {
                "type": "barge_in",
                "utterance_id": uid,
                "heard_text": heard_text,
                "played_ms": played_ms,
            }
        )
        self._publish({"type": "utterance_played", "utterance_id": uid, "interrupted": True})
        self._signal(
            "utterance_played",
            UtterancePlayed(
                utterance_id=uid,
                interrupted=True,
                heard_text=heard_text,
                played_ms=played_ms,
                latency_ms=playback.latency_ms,
            ),
        )
        if playback.decision.end_call:
            self._agent_ended = True
            self._end_reason = "agent ended the call"
            self._done.set()
        while not self._decisions.empty():
            queued = self._decisions.get_nowait()
            if queued.llm is not None:
                queued.llm.cancel()
            dropped = queued.decision
            self._signal(
                "utterance_played",
                UtterancePlayed(
                    utterance_id=dropped.utterance_id, interrupted=True, heard_text="", played_ms=0
                ),
            )
