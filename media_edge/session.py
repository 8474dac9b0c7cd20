"""One call's media session: a Twilio Media Streams WebSocket and the parts that serve it.

The session dispatches the protocol's messages and owns the call's lifecycle (start, stop, the
task group). It wires three parts: the `Listener` (frames to caller events, reported to the
session as its `ListenerHooks`), the `Speaker` (decisions to paced frames; `pause()` when the
caller starts talking over the agent, `resume()` after a backchannel, `interrupt()` on barge-in)
and the `WorkflowLink` (the Update `turn` and the signals: all its Temporal traffic). Each
decision's `expect` goes to the listener, which judges the caller's pauses against it.
Whatever goes wrong inside a session is logged with the call id and ends that call only.
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
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState
from temporalio.client import Client

from media_edge import twilio_protocol as tp
from media_edge.audio import mulaw_decode
from media_edge.auth import STREAM_TOKEN_PARAMETER, StreamTokens
from media_edge.call_hold import CallHolds
from media_edge.continuation import ContinuationRule, EndedTurn, undoable_reply
from media_edge.events import (
    Backchannel,
    CallEnded,
    CallerTurn,
    CallEvent,
    CallStarted,
    EdgeError,
    EventHub,
    ms_between,
)
from media_edge.listener import Listener, TurnEnded
from media_edge.llm import LanguageModel
from media_edge.providers import SpeechToText
from media_edge.smart_turn import TurnDetector
from media_edge.speaker import Speaker, SpeakRequest
from media_edge.stt_stream import CallStream
from media_edge.tts import PhoneSpeech, Voice
from media_edge.tts_stream import CallVoice
from media_edge.vad import SileroVAD, VADPool
from media_edge.workflow_link import LinkError, UpdateRefused, WorkflowLink, WorkflowNotFound
from slot.settings import Settings
from workflows.messages import Decision, Turn, TurnKind

logger = logging.getLogger("media_edge.session")

_CALL_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,200}$")


@dataclass
class EdgeServices:
    """What every session on this edge shares: loaded once per process."""

    settings: Settings
    client: Client
    stt: SpeechToText
    speech: PhoneSpeech
    vads: VADPool
    """Each call's VAD, reused from call to call (`vad_executor` runs them)."""
    vad_executor: Executor
    events: EventHub
    stream_tokens: StreamTokens
    """Checks each stream's per-call token before its media is accepted."""
    turn_detector: TurnDetector | None = None
    """Smart Turn, shared by every call (required when settings.endpointing is smart_turn)."""
    llm: LanguageModel | None = None
    """Tier 2 of the router; None when no LLM is configured (calls then start without it)."""
    stt_stream: Callable[[logging.LoggerAdapter[logging.Logger]], CallStream] | None = None
    """Opens each call's streaming recognizer (SLOT_STT=deepgram|flux); `stt` is its fallback."""
    voice: Callable[[logging.LoggerAdapter[logging.Logger]], CallVoice] | None = None
    """Opens each call's streaming voice (SLOT_TTS=cartesia|aura); `speech` is its fallback."""
    sessions: MutableMapping[str, CallSession] = field(default_factory=dict)
    holds: CallHolds = field(default_factory=CallHolds)
    """The calls this edge holds, as their workflows see it (`media_edge.call_hold`)."""


class _CallLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        call = (self.extra or {}).get("call_id") or "-"
        return f"call {call}: {msg}", kwargs


class StreamClosed(Exception):
    """The session must end: the reason is already logged and the socket closed."""


@dataclass
class PendingTurn:
    kind: TurnKind
    speech: TurnEnded | None = None
    digits: str = ""
    continues: EndedTurn | None = None
    """The turn this speech goes on with (its reply withdrawn when the speech started)."""
    ended: EndedTurn | None = None
    """This speech turn, as a later one may continue it."""


class CallSession:
    def __init__(self, websocket: WebSocket, services: EdgeServices) -> None:
        self.ws = websocket
        self.services = services
        self.settings = services.settings
        self.stream = tp.StreamState()
        self.call_id: str | None = None
        self.log = _CallLog(logger, {"call_id": None})
        self._done = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._turns: asyncio.Queue[PendingTurn] = asyncio.Queue()
        self._seq = 0
        self.listener: Listener | None = None
        self.speaker: Speaker | None = None
        self.link: WorkflowLink | None = None
        self.stt_stream: CallStream | None = None
        self.voice: CallVoice | None = None
        self._registered = False
        self._agent_ended = False
        self._end_reason = "media stream closed"
        self._said: set[str] = set()
        self._continuation = (
            ContinuationRule(self.settings.continuation_after_reply_ms)
            if self.settings.turn_continuation
            else None
        )
        self._last_turn: EndedTurn | None = None
        """The last speech turn sent, while the caller's next words may still continue it."""
        self._continuing: EndedTurn | None = None
        """The turn the caller's speech in progress continues."""
        self._vad: SileroVAD | None = None

    # ----- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                receiver = tg.create_task(self._receive())
                await self._done.wait()
                if self.speaker is not None:
                    await self.speaker.finish_heard()
                if self.stt_stream is not None:
                    await self.stt_stream.close()
                if self.voice is not None:
                    await self.voice.close()
                receiver.cancel()
                for task in self._workers:
                    task.cancel()
        except* StreamClosed:
            pass
        except* Exception as group:
            for exc in group.exceptions:
                self.log.error("session failed: %r", exc, exc_info=exc)
            self._end_reason = f"edge error: {type(group.exceptions[0]).__name__}"
            self._publish(EdgeError(reason=self._end_reason))
            await self._close(tp.CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            await self._finish()

    async def _finish(self) -> None:
        """Tell the workflow (signals retried until delivered), then release the call's hold."""
        try:
            if self._registered and self.call_id is not None:
                self.services.sessions.pop(self.call_id, None)
            if self.link is not None:
                await self.link.settle()
                if self.link.known and not self._agent_ended:
                    await self.link.hang_up(self._end_reason)
            if self.call_id is not None:
                self._publish(CallEnded(reason=self._end_reason))
            await self._close(tp.CLOSE_NORMAL, "call ended")
            self.log.info("media session ended: %s", self._end_reason)
        finally:
            if self._registered and self.call_id is not None:
                self.services.holds.close(self.call_id, self._end_reason)
            if self._vad is not None:
                self.services.vads.release(self._vad)
                self._vad = None

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason[:120])

    async def _reject(self, error: tp.ProtocolError) -> None:
        """A fatal protocol error: log it, tell the subscribers, close with its code."""
        self.log.warning("closing media stream (%d): %s", error.close_code, error.reason)
        self._end_reason = error.reason
        self._publish(EdgeError(reason=error.reason))
        await self._close(error.close_code, error.reason)
        self._done.set()

    def _publish(self, event: CallEvent) -> None:
        if self.call_id is not None:
            self.services.events.publish(self.call_id, event)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        assert self._tg is not None
        return self._tg.create_task(coro)

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except Exception as error:
            self.log.info("media stream send failed (%s); ending the session", type(error).__name__)
            if not self._agent_ended:
                self._end_reason = "media stream closed without stop"
            self._done.set()
            raise StreamClosed from error

    def _agent_ends_call(self) -> None:
        self._agent_ended = True
        self._end_reason = "agent ended the call"

    # ----- protocol dispatch -----------------------------------------------------------------

    async def _receive(self) -> None:
        start_by = asyncio.get_running_loop().time() + self.settings.media_start_timeout_s
        while True:
            try:
                message = await self._next_message(start_by)
            except tp.ProtocolError as error:
                await self._reject(error)
                return
            if message["type"] == "websocket.disconnect":
                self._disconnected(message)
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
                assert self.listener is not None
                await self.listener.on_frame(mulaw_decode(event.audio), event.audio)
            elif isinstance(event, tp.Mark):
                assert self.speaker is not None
                self.speaker.on_mark(event.mark.name)
            elif isinstance(event, tp.Dtmf):
                self._last_turn = None
                if self.agent_speaking():
                    await self.on_barge_in(time.monotonic())
                self._turns.put_nowait(PendingTurn(kind="dtmf", digits=event.dtmf.digit))
            elif isinstance(event, tp.Start):
                if not await self._on_start(event):
                    return
            elif isinstance(event, tp.Stop):
                self._end_reason = "caller hung up"
                self._done.set()
                return

    async def _next_message(self, start_by: float) -> Message:
        """The next ASGI message; until the stream has started, no later than `start_by`."""
        if self.stream.start is not None:
            return await self.ws.receive()
        try:
            async with asyncio.timeout_at(start_by):
                return await self.ws.receive()
        except TimeoutError:
            timeout = self.settings.media_start_timeout_s
            raise tp.ProtocolError(f"no start within {timeout:g} s", fatal=True) from None

    def _disconnected(self, message: Message) -> None:
        """The client (or the server, for a message over the size limit) closed the socket."""
        if message.get("code") == tp.CLOSE_MESSAGE_TOO_BIG:
            reason = message.get("reason") or "message too big"
            self.log.warning("media stream closed (1009): %s", reason)
            self._end_reason = f"message too big: {reason}"
        elif not self.stream.stopped and not self._agent_ended:
            self._end_reason = "media stream closed without stop"
        self._done.set()

    async def _on_start(self, start: tp.Start) -> bool:
        info = start.start
        call_id = info.custom_parameters.get("call_id") or f"call-{info.call_sid}"
        if not _CALL_ID.match(call_id):
            await self._reject(tp.ProtocolError(f"invalid call id {call_id[:60]!r} in start"))
            return False
        token = info.custom_parameters.get(STREAM_TOKEN_PARAMETER)
        refusal = self.services.stream_tokens.refusal(token, info.call_sid, call_id, time.time())
        if refusal is not None:
            await self._reject(tp.ProtocolError(f"{refusal} (call {call_id})"))
            return False
        if call_id in self.services.sessions:
            await self._reject(
                tp.ProtocolError(f"call {call_id} already has a media stream on this edge")
            )
            return False
        services = self.services
        self.call_id = call_id
        self.log = _CallLog(logger, {"call_id": call_id})
        services.sessions[call_id] = self
        services.holds.open(call_id)
        self._registered = True
        services.events.start_call(call_id)
        self.link = WorkflowLink(services.client, call_id, self.log)
        speech: Voice = services.speech
        if services.voice is not None:
            self.voice = services.voice(self.log)
            voice_task = self._spawn(self.voice.run())
            speech = self.voice
        self.speaker = Speaker(
            send=self._send,
            stream_sid=start.stream_sid,
            speech=speech,
            llm=services.llm,
            link=self.link,
            publish=self._publish,
            on_end_call=self._agent_ends_call,
            log=self.log,
        )
        if services.stt_stream is not None:
            self.stt_stream = services.stt_stream(self.log)
            stream_task = self._spawn(self.stt_stream.run())
        self._vad = await services.vads.acquire()
        self.listener = Listener(
            settings=self.settings,
            vad=self._vad,
            vad_executor=services.vad_executor,
            stt=services.stt,
            turn_detector=services.turn_detector,
            hooks=self,
            spawn=self._spawn,
            call_id=call_id,
            log=self.log,
            stream=self.stt_stream,
        )
        self._workers = [self._spawn(self._turn_taker()), self._spawn(self._speak())]
        if self.stt_stream is not None:
            self._workers.append(stream_task)
        if self.voice is not None:
            self._workers.append(voice_task)
        self._turns.put_nowait(PendingTurn(kind="start"))
        self._publish(CallStarted(call_id=call_id, stream_sid=start.stream_sid))
        self.log.info("media stream started (stream %s)", start.stream_sid)
        return True

    # ----- listener hooks --------------------------------------------------------------------

    def agent_speaking(self) -> bool:
        return self.speaker is not None and self.speaker.speaking

    async def on_speech_started(self, at: float) -> None:
        """Speech soon after the last turn ended continues it: its reply is withdrawn (cut off
        like a barge-in, or never played) and the listener judges by the question before."""
        ended, rule = self._last_turn, self._continuation
        if ended is None or rule is None or self.speaker is None:
            return
        uid = ended.reply.utterance_id if ended.reply is not None else None
        reply_started_at = self.speaker.started_at.get(uid) if uid is not None else None
        if not rule.continues(ended, at, reply_started_at):
            return
        ended.withdrawn = True
        self._continuing = ended
        if self.listener is not None:
            self.listener.expect = ended.expect_before
        self.log.info("caller speech continues the last turn; its reply is withdrawn")
        if uid is not None:
            await self.speaker.withdraw(uid, at)

    async def on_agent_paused(self, at: float) -> None:
        """Caller speech started over the agent: stop its audio now, keep the rest."""
        assert self.speaker is not None
        await self.speaker.pause(at)

    async def on_barge_in(self, at: float) -> None:
        """Caller talks over the agent: silence it now; the speaker reports what was heard."""
        assert self.speaker is not None
        cut = await self.speaker.interrupt(at)
        if cut is not None and cut.end_call:
            if self.speaker.hand_over:
                self._spawn(self._hold_then_end())
            else:
                self._done.set()

    def on_backchannel(self, voiced_ms: int) -> None:
        self._continuing = None
        uid = self.speaker.utterance_id if self.speaker is not None else None
        self._publish(Backchannel(utterance_id=uid, voiced_ms=voiced_ms))
        if self.speaker is not None:
            self.speaker.resume()

    def on_turn_ended(self, turn: TurnEnded) -> None:
        """The turn goes to the workflow; from now on the caller's next words may continue it
        (even while it is still being transcribed)."""
        continues, self._continuing = self._continuing, None
        expect = continues.expect_before if continues is not None else None
        if continues is None and self.listener is not None:
            expect = self.listener.expect
        ended = EndedTurn(turn.endpoint_at, expect)
        self._last_turn = ended
        self._turns.put_nowait(
            PendingTurn(kind="speech", speech=turn, continues=continues, ended=ended)
        )

    def on_error(self, reason: str) -> None:
        self._publish(EdgeError(reason=reason))

    # ----- turns and speech ------------------------------------------------------------------

    def say(self, decision: Decision) -> bool:
        """Speak a decision the workflow delivered outside a turn (a reprompt, a goodbye), once:
        False if it was already queued (a retried delivery)."""
        if self.speaker is None or decision.utterance_id in self._said:
            return False
        self._said.add(decision.utterance_id)
        self._last_turn = None
        self._expect(decision)
        if decision.cut_in:
            self._spawn(self.speaker.cut_in(decision, time.monotonic()))
        else:
            self.speaker.say(decision)
        return True

    def _expect(self, decision: Decision) -> None:
        """The caller's next words answer this decision's line: the listener judges by it."""
        if self.listener is not None:
            self.listener.expect = decision.expect

    async def _speak(self) -> None:
        assert self.speaker is not None
        await self.speaker.run()
        if self.speaker.hand_over:
            await self._hold_for_hand_over()
        await self._close(tp.CLOSE_NORMAL, "call ended")
        self._done.set()

    async def _hold_then_end(self) -> None:
        await self._hold_for_hand_over()
        await self._close(tp.CLOSE_NORMAL, "call ended")
        self._done.set()

    async def _hold_for_hand_over(self) -> None:
        """After the transfer line the line stays open: the workflow moves the call to a person
        and Twilio ends this stream. Closing it first would hang the caller up."""
        wait_s = self.settings.hand_over_wait_s
        self.log.info("transfer line over; holding the line up to %g s for the transfer", wait_s)
        try:
            await asyncio.wait_for(self._done.wait(), wait_s)
        except TimeoutError:
            self.log.warning("no transfer within %g s; hanging up", wait_s)
            self._end_reason = "transfer did not happen"

    async def _turn_taker(self) -> None:
        assert self.speaker is not None
        while True:
            pending = await self._turns.get()
            turn = Turn(
                seq=self._seq,
                kind=pending.kind,
                edge_url=self.settings.edge_url,
                edge_queue=self.settings.edge_queue,
                internal_url=self.settings.edge_internal_url,
                call_sid=self.stream.start.start.call_sid if self.stream.start else None,
            )
            latency: dict[str, float] = {}
            ended: EndedTurn | None = None
            if pending.speech is not None:
                transcript, latency = await pending.speech.transcript()
                continued = self._continued(pending)
                text = transcript.text
                if continued is not None:
                    text = ContinuationRule.joined(continued, text)
                    turn.continues = continued.seq
                if not text:
                    self.log.info("caller turn had no recognisable words; ignored")
                    continue
                turn.text = text
                if self.settings.log_transcripts:
                    self.log.info("caller said: %s", text)
                self._publish(
                    CallerTurn(
                        seq=turn.seq,
                        text=text,
                        latency_ms=latency,
                        end_reason=pending.speech.reason,
                        turn_model_p=pending.speech.turn_model_p,
                        stt=transcript.provider or None,
                        stt_fallback=transcript.fallback,
                        continues=turn.continues,
                    )
                )
                ended = pending.ended
                if ended is not None:
                    ended.seq, ended.text = turn.seq, text
            elif pending.kind == "dtmf":
                turn.digits = pending.digits
            sent_at = time.monotonic()
            decision = await self._send_turn(turn)
            if decision is None:
                continue
            decided_at = time.monotonic()
            self._seq += 1
            latency["decision"] = ms_between(decided_at, sent_at)
            if ended is not None:
                ended.reply = decision
                if ended.withdrawn and undoable_reply(decision):
                    self.log.info("reply to turn %d withdrawn before it played", ended.seq)
                    self.speaker.not_heard(decision.utterance_id)
                    continue
                ended.withdrawn = False
            last_voiced_at = pending.speech.last_voiced_at if pending.speech else None
            self._expect(decision)
            self.speaker.reply(SpeakRequest(decision, decided_at, latency, last_voiced_at))

    @staticmethod
    def _continued(pending: PendingTurn) -> EndedTurn | None:
        """The turn `pending` continues, if its reply was withdrawn and the workflow can undo it;
        else `pending` is a normal next turn."""
        continued = pending.continues
        if continued is None or not continued.withdrawn or continued.reply is None:
            return None
        return continued if undoable_reply(continued.reply) else None

    async def _send_turn(self, turn: Turn) -> Decision | None:
        """The Update `turn`; a refused turn is skipped, a lost workflow ends the call."""
        assert self.link is not None
        try:
            return await self.link.turn(turn)
        except UpdateRefused as refused:
            if turn.kind != "start":
                self.log.warning("%s", refused.reason)
                self._publish(EdgeError(reason=refused.reason))
                return None
            error = tp.ProtocolError(refused.reason)
        except WorkflowNotFound as gone:
            error = tp.ProtocolError(gone.reason)
        except LinkError as lost:
            error = tp.ProtocolError(lost.reason, tp.CLOSE_INTERNAL_ERROR, fatal=True)
        await self._reject(error)
        raise StreamClosed
