"""The agent's voice on one call: utterances to 20 ms mu-law frames paced in real time, with marks.

Each decision is spoken from cached audio (fixed lines), TTS phrase by phrase, or an LLM stream
(`LLMUtterance`, started as soon as the decision arrives). Audio is sent slightly ahead of real
time (`LEAD_S`), each chunk followed by a mark named `<utterance>:<n>`, the utterance by
`<utterance>:end`. Twilio echoes a mark once the audio before it has played, so on barge-in
`interrupt()` sends `clear` at once and works out what the caller actually heard from the
echoed marks plus the played time of the chunk in progress (`Playback.heard`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from media_edge import twilio_protocol as tp
from media_edge.audio import frames
from media_edge.events import (
    AgentUtterance,
    BargeIn,
    CallEvent,
    LLMResult,
    UtteranceDone,
    ms_between,
)
from media_edge.llm import LanguageModel
from media_edge.llm_speech import LLMUtterance
from media_edge.tts import PhoneSpeech
from media_edge.workflow_link import WorkflowLink
from workflows.messages import Decision, UtterancePlayed
from workflows.router_messages import LLMTurnReport

LEAD_S = 0.1
"""How far ahead of real time audio is sent, so `clear` silences the caller quickly."""
MARK_GRACE_S = 5.0
"""Extra wait for the final mark's echo before assuming the audio was played."""


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


@dataclass(frozen=True)
class Cut:
    """What `Speaker.interrupt` stopped: what the caller heard of it, and whether it was the
    agent's last utterance (then the call is over)."""

    played: UtterancePlayed
    end_call: bool


class Speaker:
    """Speaks one call's decisions in order; `run()` returns once the agent has ended the call."""

    def __init__(
        self,
        *,
        send: Callable[[str], Awaitable[None]],
        stream_sid: str,
        speech: PhoneSpeech,
        llm: LanguageModel | None,
        link: WorkflowLink,
        publish: Callable[[CallEvent], None],
        on_end_call: Callable[[], None],
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self._send_text = send
        self.stream_sid = stream_sid
        self.speech = speech
        self.llm = llm
        self.link = link
        self.publish = publish
        self.on_end_call = on_end_call
        """Called as soon as the agent's last utterance is over (played or cut off)."""
        self.log = log
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[SpeakRequest] = asyncio.Queue()
        self._playback: Playback | None = None
        self._task: asyncio.Task[bool] | None = None
        self._play_end = 0.0

    @property
    def speaking(self) -> bool:
        """Agent audio has been sent and its final mark has not come back yet."""
        playback = self._playback
        return (
            playback is not None
            and playback.first_frame_at is not None
            and not playback.end_echoed.is_set()
        )

    @property
    def utterance_id(self) -> str | None:
        """The utterance on its way to the caller, if any."""
        return self._playback.utterance_id if self._playback is not None else None

    def say(self, decision: Decision) -> None:
        """Speak a decision the workflow delivered outside a turn (a reprompt, a goodbye)."""
        self._queue.put_nowait(SpeakRequest(decision, time.monotonic()))

    def reply(self, request: SpeakRequest) -> None:
        """Speak the answer to a caller turn; a tier-2 reply starts streaming now."""
        self._start_llm(request)
        self._queue.put_nowait(request)

    def on_mark(self, name: str) -> None:
        playback = self._playback
        if playback is not None and name.startswith(playback.utterance_id + ":"):
            playback.on_mark(name, time.monotonic())

    async def run(self) -> None:
        while True:
            request = await self._queue.get()
            task = asyncio.create_task(self._speak(request))
            self._task = task
            try:
                await asyncio.wait([task])
            finally:
                task.cancel()
                self._task = None
            if task.cancelled():
                continue
            if task.result():
                return

    async def interrupt(self, now: float) -> Cut | None:
        """Barge-in: silence the agent now and report what the caller actually heard. Queued
        utterances are dropped (reported as not heard at all)."""
        playback = self._playback
        if not self.speaking or playback is None or playback.finished:
            return None
        playback.finished = True
        self._playback = None
        await self._send(tp.clear_message(self.stream_sid))
        self._cancel(playback)
        self._play_end = time.monotonic()
        heard_text, played_ms = playback.heard(now)
        uid = playback.utterance_id
        self.log.info("barge-in on %s after %d ms", uid, played_ms)
        self.publish(BargeIn(utterance_id=uid, heard_text=heard_text, played_ms=played_ms))
        self.publish(UtteranceDone(utterance_id=uid, interrupted=True))
        played = UtterancePlayed(
            utterance_id=uid,
            interrupted=True,
            heard_text=heard_text,
            played_ms=played_ms,
            latency_ms=playback.latency_ms,
        )
        self.link.utterance_played(played)
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            if queued.llm is not None:
                queued.llm.cancel()
            self.link.utterance_played(
                UtterancePlayed(
                    utterance_id=queued.decision.utterance_id,
                    interrupted=True,
                    heard_text="",
                    played_ms=0,
                )
            )
        if playback.decision.end_call:
            self.on_end_call()
        return Cut(played, playback.decision.end_call)

    def _cancel(self, playback: Playback) -> None:
        """Stop producing the cut-off utterance: its cancel hooks, then the speaking task."""
        for hook in playback.cancel_hooks:
            try:
                hook()
            except Exception as error:
                self.log.warning("cancel hook of %s failed: %r", playback.utterance_id, error)
        if self._task is not None:
            self._task.cancel()

    async def _send(self, text: str, playback: Playback | None = None) -> bool:
        async with self._lock:
            if playback is not None and playback.finished:
                return False
            await self._send_text(text)
        return True

    async def _speak(self, request: SpeakRequest) -> bool:
        """Play one utterance to its end; True when it was the agent's last (the call ends)."""
        decision = request.decision
        playback = Playback(decision, {**decision.latency_ms, **request.latency_ms})
        self._playback = playback
        latency = playback.latency_ms
        first_audio_at: float | None = None
        llm = self._start_llm(request)
        if llm is not None:
            playback.on_cancel(llm.cancel)
            audio = llm.chunks()
        else:
            audio = self.speech.render(decision.text, decision.cacheable)
        index = 0
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
                if not await self._send(tp.media_message(self.stream_sid, frame), playback):
                    return False
                now = time.monotonic()
                self._play_end = max(self._play_end, now) + 0.02
                if playback.first_frame_at is None:
                    playback.first_frame_at = now
                    latency["tts_first_audio"] = ms_between(first_audio_at, request.decided_at)
                    latency["send"] = ms_between(now, first_audio_at)
                    if request.last_voiced_at is not None:
                        latency["total"] = ms_between(now, request.last_voiced_at)
                    if llm is not None:
                        latency.update(llm.latency())
                    self.publish(
                        AgentUtterance(
                            utterance_id=decision.utterance_id,
                            text=chunk.text if llm is not None else decision.text,
                            streaming=llm is not None,
                            state=decision.state,
                            tier=decision.tier.value,
                            reason=decision.reason,
                            latency_ms=dict(latency),
                        )
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
            return False
        playback.finished = True
        self._playback = None
        played = UtterancePlayed(
            utterance_id=decision.utterance_id,
            interrupted=False,
            heard_text=" ".join(c.text for c in playback.chunks) if llm else decision.text,
            played_ms=round(sum(c.duration_ms for c in playback.chunks)),
            latency_ms=latency,
        )
        self.publish(UtteranceDone(utterance_id=decision.utterance_id, interrupted=False))
        if decision.end_call:
            self.on_end_call()
            await self.link.send_utterance_played(played)
            return True
        self.link.utterance_played(played)
        return False

    def _start_llm(self, request: SpeakRequest) -> LLMUtterance | None:
        """Start streaming a tier-2 decision's reply now (once), and its report to the workflow."""
        decision = request.decision
        if decision.llm_request is None:
            return None
        if request.llm is None:
            request.llm = LLMUtterance(self.llm, decision.llm_request, self.speech)
            request.llm_report = self.link.in_background(self._report_llm(decision, request.llm))
        return request.llm

    async def _report_llm(self, decision: Decision, llm: LLMUtterance) -> Decision | None:
        """Update `llm_result` once the reply is complete (or cut off): the workflow checks it
        against the script and records it. Off the critical path: the caller already hears it.
        The next turn waits for it, like for the signals."""
        try:
            result = await llm.result()
        except Exception as error:
            self.log.error("llm turn %s failed: %r", decision.utterance_id, error)
            return None
        report = LLMTurnReport(utterance_id=decision.utterance_id, result=result)
        final = await self.link.llm_result(report)
        if final is None:
            return None
        self.publish(
            LLMResult(
                utterance_id=decision.utterance_id,
                text=final.text,
                state=final.state,
                reason=final.reason,
                used_fallback=result.used_fallback,
                cancelled=result.cancelled,
                model=result.model,
                citations=final.citations,
                latency_ms=result.latency_ms,
            )
        )
        return final
