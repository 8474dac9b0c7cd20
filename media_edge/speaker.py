"""The agent's voice on one call: utterances to 20 ms mu-law frames paced in real time, with marks.

Each decision is spoken from cached audio (fixed lines), TTS phrase by phrase, or an LLM stream
(`LLMUtterance`, started as soon as the decision arrives). Audio is sent slightly ahead of real
time (`LEAD_S`), each chunk followed by a mark named `<utterance>:<n>`, the utterance by
`<utterance>:end`. Twilio echoes a mark once the audio before it has played, so the speaker
knows what the caller actually heard from the echoed marks plus the played time of the chunk in
progress (`Playback.heard`).

When the caller starts talking over the agent, `pause()` sends `clear` at once and keeps the
unplayed audio; `resume()` (the speech was a backchannel) plays on from where the caller stopped
hearing; `interrupt()` (real speech) cuts the utterance off and reports what was heard.
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
    AgentPaused,
    AgentResumed,
    AgentUtterance,
    BargeIn,
    CallEvent,
    LLMResult,
    UtteranceDone,
    ms_between,
)
from media_edge.llm import LanguageModel
from media_edge.llm_speech import LLMUtterance
from media_edge.playback import ChunkPlay, Playback
from media_edge.tts import Voice
from media_edge.workflow_link import WorkflowLink
from workflows.messages import Decision, UtterancePlayed
from workflows.router_messages import LLMTurnReport

LEAD_S = 0.1
"""How far ahead of real time audio is sent, so `clear` silences the caller quickly."""
MARK_GRACE_S = 5.0
"""Extra wait for the final mark's echo before assuming the audio was played."""
PAUSE_TAIL_MS = 300.0
"""A fully rendered utterance with less than this left unplayed is not paused: the caller is
answering its last words, and the answer must be a turn, not a backchannel to a paused agent."""

__all__ = ["ChunkPlay", "Cut", "Playback", "SpeakRequest", "Speaker"]


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
        speech: Voice,
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
        self.hand_over = False
        """The agent's last utterance handed the call over (a transfer): keep the line open."""
        self.started_at: dict[str, float] = {}
        """When each utterance's first audio left for the caller."""
        self._withdrawn: set[str] = set()

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

    async def finish_heard(self, timeout_s: float = 1.0) -> None:
        """The call is ending: an utterance whose end mark already came back is reported as
        played (to the events and the workflow) before the speaker is stopped."""
        playback, task = self._playback, self._task
        if playback is None or task is None or task.done() or not playback.end_echoed.is_set():
            return
        await asyncio.wait([task], timeout=timeout_s)

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

    async def pause(self, now: float) -> bool:
        """Caller speech over the agent: stop its audio now (`clear`), keep the rest. False
        when there is nothing to pause, or only the utterance's last words are left."""
        playback = self._playback
        if not self.speaking or playback is None or playback.finished or playback.paused:
            return False
        if playback.rendered and playback.total_ms - playback.position_ms(now) < PAUSE_TAIL_MS:
            return False
        async with self._lock:
            position = playback.pause(now)
            await self._send_text(tp.clear_message(self.stream_sid))
        self._play_end = time.monotonic()
        heard_text, played_ms = playback.heard(now)
        self.log.info("paused %s after %d ms (caller speech)", playback.utterance_id, position)
        self.publish(
            AgentPaused(
                utterance_id=playback.utterance_id, heard_text=heard_text, played_ms=played_ms
            )
        )
        return True

    def resume(self) -> bool:
        """The speech that paused the agent was a backchannel: play on from where it stopped."""
        playback = self._playback
        if playback is None or playback.finished or not playback.paused:
            return False
        position = playback.resume()
        self.log.info("resumed %s at %d ms", playback.utterance_id, position)
        self.publish(AgentResumed(utterance_id=playback.utterance_id, played_ms=round(position)))
        return True

    async def interrupt(self, now: float, *, withdrawn: bool = False) -> Cut | None:
        """Barge-in: silence the agent now (already done if it was paused) and report what the
        caller actually heard. Queued utterances are dropped (reported as not heard at all).
        `withdrawn`: cut off for the caller's continuation of the turn it answered, so a
        goodbye cut this way does not end the call (the continuation decides)."""
        playback = self._playback
        if not self.speaking or playback is None or playback.finished:
            return None
        playback.finished = True
        self._playback = None
        if not playback.paused:
            await self._send(tp.clear_message(self.stream_sid))
            self._play_end = time.monotonic()
        self._cancel(playback)
        heard_text, played_ms = playback.heard(now)
        uid = playback.utterance_id
        self.log.info("barge-in on %s after %d ms", uid, played_ms)
        self.publish(BargeIn(utterance_id=uid, heard_text=heard_text, played_ms=played_ms))
        self.publish(
            UtteranceDone(utterance_id=uid, interrupted=True, tts_fallback=playback.tts_fallback)
        )
        played = UtterancePlayed(
            utterance_id=uid,
            interrupted=True,
            heard_text=heard_text,
            played_ms=played_ms,
            latency_ms=playback.latency_ms,
            withdrawn=withdrawn,
        )
        self.link.utterance_played(played)
        self._drop_queued()
        ends = playback.decision.end_call and not withdrawn
        if ends:
            self.hand_over = playback.decision.hand_over
            self.on_end_call()
        return Cut(played, ends)

    async def withdraw(self, utterance_id: str, now: float) -> bool:
        """Take back a reply the caller's continuation made premature: cut off if it is playing
        (barge-in rules), dropped as not heard if it is still being rendered or queued."""
        self._withdrawn.add(utterance_id)
        playback = self._playback
        if playback is not None and playback.utterance_id == utterance_id:
            if self.speaking:
                return await self.interrupt(now, withdrawn=True) is not None
            if playback.finished:
                return False
            playback.finished = True
            self._playback = None
            self._cancel(playback)
            self._not_heard(utterance_id, withdrawn=True)
            return True
        kept: list[SpeakRequest] = []
        found = False
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            if queued.decision.utterance_id != utterance_id:
                kept.append(queued)
                continue
            found = True
            if queued.llm is not None:
                queued.llm.cancel()
            self._not_heard(utterance_id, withdrawn=True)
        for queued in kept:
            self._queue.put_nowait(queued)
        return found

    async def cut_in(self, decision: Decision, now: float) -> None:
        """Say `decision` at once: the utterance being heard is cut off (barge-in rules), one
        still being rendered and any queued are dropped as not heard."""
        if self.speaking:
            await self.interrupt(now)
        playback = self._playback
        if playback is not None and not playback.finished:
            playback.finished = True
            self._playback = None
            self._cancel(playback)
            self._not_heard(playback.utterance_id)
        self._drop_queued()
        self.say(decision)

    def _drop_queued(self) -> None:
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            if queued.llm is not None:
                queued.llm.cancel()
            self._not_heard(queued.decision.utterance_id)

    def not_heard(self, utterance_id: str) -> None:
        """Report an utterance the caller never heard a word of (withdrawn before it played)."""
        self._not_heard(utterance_id, withdrawn=True)

    def _not_heard(self, utterance_id: str, *, withdrawn: bool = False) -> None:
        self.publish(UtteranceDone(utterance_id=utterance_id, interrupted=True, heard=False))
        self.link.utterance_played(
            UtterancePlayed(
                utterance_id=utterance_id,
                interrupted=True,
                heard_text="",
                played_ms=0,
                withdrawn=withdrawn,
            )
        )

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
        if decision.utterance_id in self._withdrawn:
            self._not_heard(decision.utterance_id, withdrawn=True)
            return False
        playback = Playback(decision, {**decision.latency_ms, **request.latency_ms})
        self._playback = playback
        latency = playback.latency_ms
        llm = self._start_llm(request)
        if llm is not None:
            playback.on_cancel(llm.cancel)
            audio = llm.chunks()
        else:
            audio = self.speech.render(decision.text, decision.cacheable)
        first_audio_at: float | None = None
        index = 0
        try:
            async for chunk in audio:
                if first_audio_at is None:
                    first_audio_at = time.monotonic()
                play = ChunkPlay(
                    f"{decision.utterance_id}:{index}",
                    chunk.text,
                    chunk.duration_ms,
                    frames(chunk.audio),
                    chunk.spoken,
                )
                playback.add(play, chunk.voice, chunk.fallback)
                index += 1
                if not await self._play(playback, request, first_audio_at, llm):
                    return False
        finally:
            aclose = getattr(audio, "aclose", None)
            if aclose is not None:
                await aclose()
        if request.llm_report is not None:
            final = await asyncio.shield(request.llm_report)
            if final is not None:
                decision = final
        playback.rendered = True
        if not await self._play_to_end(playback, request, first_audio_at, llm):
            return False
        if playback.finished:
            return False
        playback.finished = True
        self._playback = None
        played = UtterancePlayed(
            utterance_id=decision.utterance_id,
            interrupted=False,
            heard_text=playback.text_until(playback.total_ms) if llm else decision.text,
            played_ms=round(playback.total_ms),
            latency_ms=latency,
        )
        self.publish(
            UtteranceDone(
                utterance_id=decision.utterance_id,
                interrupted=False,
                tts_fallback=playback.tts_fallback,
            )
        )
        if decision.end_call:
            self.hand_over = decision.hand_over
            self.on_end_call()
            await self.link.send_utterance_played(played)
            return True
        self.link.utterance_played(played)
        return False

    async def _play_to_end(
        self,
        playback: Playback,
        request: SpeakRequest,
        first_audio_at: float | None,
        llm: LLMUtterance | None,
    ) -> bool:
        """Send what is left and the end mark, then wait for its echo; a pause in between
        holds the wait, a resume sends the rest again. False when the utterance was cut off."""
        uid = playback.utterance_id
        while True:
            if not await self._play(playback, request, first_audio_at, llm):
                return False
            generation = playback.generation
            if not await self._send(tp.mark_message(self.stream_sid, f"{uid}:end"), playback):
                return False
            while not playback.end_echoed.is_set() and playback.generation == generation:
                playback.changed.clear()
                if playback.paused:
                    await playback.changed.wait()
                    continue
                wait = max(0.0, self._play_end - time.monotonic()) + MARK_GRACE_S
                waiters = [
                    asyncio.ensure_future(playback.end_echoed.wait()),
                    asyncio.ensure_future(playback.changed.wait()),
                ]
                try:
                    done, _ = await asyncio.wait(
                        waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                if not done:
                    self.log.warning(
                        "no echo of mark %s:end after %.1f s; treating it as played", uid, wait
                    )
                    return True
            if playback.end_echoed.is_set():
                return True

    async def _play(
        self,
        playback: Playback,
        request: SpeakRequest,
        first_audio_at: float | None,
        llm: LLMUtterance | None,
    ) -> bool:
        """Send the frames from the cursor to the last one rendered, paced in real time, each
        chunk's mark after its last frame; waits while paused. False once cut off."""
        while playback.cursor < playback.frame_count:
            await playback.playing.wait()
            ahead = self._play_end - time.monotonic() - LEAD_S
            if ahead > 0:
                await asyncio.sleep(ahead)
            async with self._lock:
                if playback.finished:
                    return False
                if playback.paused or playback.cursor >= playback.frame_count:
                    continue  # a resume may have moved the cursor while this sender waited
                frame = playback.cursor
                first = playback.first_frame_at is None
                await self._send_text(tp.media_message(self.stream_sid, playback.frames[frame]))
                now = time.monotonic()
                playback.frame_sent(now)
                mark = playback.mark_after(frame)
                if mark is not None:
                    await self._send_text(tp.mark_message(self.stream_sid, mark))
            self._play_end = max(self._play_end, now) + 0.02
            if first:
                self._first_frame(playback, request, first_audio_at or now, now, llm)
        return True

    def _first_frame(
        self,
        playback: Playback,
        request: SpeakRequest,
        first_audio_at: float,
        now: float,
        llm: LLMUtterance | None,
    ) -> None:
        """The utterance's first audio left: its latency stages, and `agent_utterance`."""
        decision = request.decision
        self.started_at[decision.utterance_id] = now
        latency = playback.latency_ms
        latency["tts_first_audio"] = ms_between(first_audio_at, request.decided_at)
        latency["send"] = ms_between(now, first_audio_at)
        if request.last_voiced_at is not None:
            latency["total"] = ms_between(now, request.last_voiced_at)
        if llm is not None:
            latency.update(llm.latency())
        self.publish(
            AgentUtterance(
                utterance_id=decision.utterance_id,
                text=first_text(playback.chunks[0]) if llm is not None else decision.text,
                streaming=llm is not None,
                state=decision.state,
                tier=decision.tier.value,
                reason=decision.reason,
                latency_ms=dict(latency),
                tts=playback.voice or None,
                tts_fallback=playback.tts_fallback,
            )
        )

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


def first_text(chunk: ChunkPlay) -> str:
    """The text of a streamed reply's first audio: its phrase, or what its stream says so far."""
    return chunk.spoken.text if chunk.spoken is not None else chunk.text
