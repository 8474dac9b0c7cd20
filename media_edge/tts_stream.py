"""One call's connection to a streaming text-to-speech service, whatever the service (Cartesia
Sonic, Deepgram Aura-2).

Opened when the call starts and kept for the whole call (reopened after a drop). The speaker
speaks through it as through the embedded voice (`Voice`): a whole line (`render`) or an LLM's
phrases as they are written (`stream`, each phrase a continuation of the same utterance). Each
utterance is one request stream on the connection (a Cartesia context, an Aura run of Speak and
Flush); its audio is the service's 8 kHz mu-law as sent (no resampling on the hot path), cut
into whole 20 ms frames, with the service's word timestamps where it gives them, so the caller's
heard text after a barge-in is exact. A barge-in closes the utterance's audio generator, which
cancels it at the service (Cartesia `cancel`, Aura `Clear`).

Failures never leave dead air: while the service is unreachable or refuses the key, when its
first audio comes later than `first_audio_s` after the first text, when the stream drops or
stalls mid-utterance, the embedded voice (Piper) speaks the utterance, or the words the service
had not yet spoken, and each chunk it speaks says why (`PhoneChunk.fallback`); the speaker
records that on the turn's events. The service's wire messages are a subclass's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Coroutine
from dataclasses import replace
from typing import Any

from media_edge.audio import FRAME_SAMPLES
from media_edge.auth import redact_websocket_credentials
from media_edge.stt_stream import describe
from media_edge.tts import PhoneChunk, PhoneSpeech
from media_edge.tts_parts import (
    Audio,
    Done,
    End,
    Failed,
    Inbox,
    LineCache,
    PhraseDone,
    ServiceEvent,
    Text,
    TextError,
    Utterance,
    VoiceTimings,
    Words,
    feed,
    one,
)

__all__ = [
    "Audio",
    "CallVoice",
    "Done",
    "Failed",
    "LineCache",
    "PhraseDone",
    "Utterance",
    "VoiceConfigError",
    "VoiceRejected",
    "VoiceTimings",
    "Words",
]

redact_websocket_credentials()


class VoiceConfigError(Exception):
    """The voice cannot be used as configured; the message is one line naming what to fix."""


class VoiceRejected(Exception):
    """The service refused the credentials (401/403): retrying the same key will not help."""


class CallVoice(ABC):
    """One call's connection to a streaming voice; `run()` for the call's lifetime."""

    provider = "tts"

    def __init__(
        self,
        *,
        fallback: PhoneSpeech,
        lines: LineCache,
        log: logging.LoggerAdapter[logging.Logger],
        timings: VoiceTimings | None = None,
    ) -> None:
        self._fallback = fallback
        self._lines = lines
        self.log = log
        self.timings = timings or VoiceTimings()
        self.down: str | None = None
        """Why the service cannot be used right now (None: connected or connecting)."""
        self.connections = 0
        self._socket: Any = None
        self._closing = asyncio.Event()
        self._finished = asyncio.Event()
        self._changed = asyncio.Event()
        self._active: dict[str, Inbox] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # ----- what the speaker uses -------------------------------------------------------------

    def render(
        self, text: str, cacheable: bool, *, one_phrase: bool = False
    ) -> AsyncGenerator[PhoneChunk]:
        return self._render(" ".join(text.split()), cacheable)

    def stream(self, phrases: AsyncIterable[str]) -> AsyncGenerator[PhoneChunk]:
        return self._speak(phrases, cacheable=False)

    async def close(self) -> None:
        """End of the call: close the connection and let go."""
        self._closing.set()
        self._notify()
        socket = self._socket
        if socket is not None:
            with contextlib.suppress(Exception):
                await self.send_close(socket)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timings.close_timeout_s):
                await self._finished.wait()

    # ----- connection lifecycle --------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect after a drop (at once, then backing off) until `close`."""
        delay = 0.0
        try:
            while not self._closing.is_set():
                opened = False
                try:
                    async with self.connect() as socket:
                        opened = True
                        self._opened(socket)
                        async for message in self.messages(socket):
                            self.handle(message)
                    if not self._closing.is_set():
                        self.log.warning("%s stream closed by the service", self.provider)
                except VoiceRejected as rejected:
                    self._set_down(str(rejected))
                    self.log.error("%s; utterances use the embedded voice", rejected)
                    return
                except Exception as error:
                    if self._closing.is_set():
                        return
                    if opened:
                        self.log.warning("%s stream dropped (%s)", self.provider, describe(error))
                    else:
                        self._set_down(f"{self.provider} unreachable: {describe(error)}")
                        self.log.warning("%s; retrying in %.2f s", self.down, delay)
                finally:
                    self._lost()
                if opened:
                    delay = 0.0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._closing.wait()
                delay = min(max(delay * 2, 0.25), 8.0)
        finally:
            self._finished.set()
            self._notify()

    def _opened(self, socket: Any) -> None:
        self._socket = socket
        self.connections += 1
        self.down = None
        self._reset_connection()
        self._notify()

    def _lost(self) -> None:
        """The connection is gone: every utterance still on it fails (the rest by Piper)."""
        if self._socket is None:
            return
        self._socket = None
        for inbox in self._active.values():
            inbox.put(Failed(f"{self.provider} stream dropped"))
        self._notify()

    def _set_down(self, reason: str) -> None:
        self.down = reason
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _connected(self, deadline: float) -> str | None:
        """Wait (until `deadline`) for the connection; None once there, else why not."""
        while self._socket is None:
            if self.down is not None:
                return self.down
            if self._closing.is_set():
                return f"{self.provider} closed"
            changed = self._changed
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await changed.wait()
            except TimeoutError:
                return f"{self.provider} not connected in time"
        return None

    def deliver(self, utterance_id: str | None, event: ServiceEvent) -> None:
        """A service event for one utterance (ignored once the utterance is gone)."""
        inbox = self._active.get(utterance_id) if utterance_id is not None else None
        if inbox is not None:
            inbox.put(event)

    def in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----- one utterance ---------------------------------------------------------------------

    async def _render(self, line: str, cacheable: bool) -> AsyncGenerator[PhoneChunk]:
        hit = self._lines.get(line) if cacheable else None
        if hit is not None:
            for chunk in hit:
                yield chunk
            return
        kept: list[PhoneChunk] = []
        speech = self._speak(one(line), cacheable=cacheable, whole_line=True)
        async with contextlib.aclosing(speech):  # closed with this one, not left to the GC
            async for chunk in speech:
                kept.append(chunk)
                yield chunk
        if cacheable and kept and all(c.fallback is None for c in kept):
            self._lines.put(line, tuple(kept))

    async def _speak(
        self, texts: AsyncIterable[str], *, cacheable: bool, whole_line: bool = False
    ) -> AsyncGenerator[PhoneChunk]:
        utterance = Utterance(uuid.uuid4().hex)
        inbox = Inbox()
        feeder = asyncio.get_running_loop().create_task(feed(texts, inbox, whole_line))
        try:
            async with contextlib.aclosing(self._drive(utterance, inbox, cacheable)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            feeder.cancel()
            self._active.pop(utterance.id, None)
            self._end(utterance, cancel=not utterance.closed)

    def _end(self, utterance: Utterance, *, cancel: bool) -> None:
        """Let the service know the utterance is over for the speaker, once."""
        if utterance.opened_on is None or utterance.finished:
            return
        utterance.finished = True
        self.in_background(self._finish(utterance.opened_on, utterance, cancel=cancel))

    async def _finish(self, socket: Any, utterance: Utterance, *, cancel: bool) -> None:
        try:
            await self.finish(socket, utterance, cancelled=cancel)
        except Exception as error:
            self.log.info("%s: ending utterance failed (%s)", self.provider, describe(error))

    async def _drive(
        self, utterance: Utterance, inbox: Inbox, cacheable: bool
    ) -> AsyncGenerator[PhoneChunk]:
        fallback: str | None = None
        while True:
            try:
                item = await inbox.get(self._wait_s(utterance))
            except TimeoutError:
                item = Failed(self._late(utterance))
            if isinstance(item, TextError):
                raise item.error
            if isinstance(item, Text):
                if fallback is not None:
                    embedded = self._embedded(item.text, fallback, cacheable=False)
                    async with contextlib.aclosing(embedded):
                        async for chunk in embedded:
                            yield chunk
                    if item.last:
                        return
                    continue
                if utterance.first_text_at is None:
                    utterance.first_text_at = time.monotonic()
                reason = await self._send_text(utterance, inbox, item)
                if reason is not None:
                    fallback = reason
                    rest = self._give_up(utterance, reason, item.text, cacheable)
                    async with contextlib.aclosing(rest):
                        async for chunk in rest:
                            yield chunk
                    if item.last:
                        return
                continue
            if isinstance(item, End):
                if fallback is not None or not utterance.pushed:
                    return
                utterance.ended = True
                try:
                    await self.send_end(utterance.opened_on, utterance)
                except Exception as error:
                    inbox.put(Failed(f"{self.provider} stream dropped ({describe(error)})"))
                continue
            if isinstance(item, Failed):
                if fallback is not None or utterance.closed:
                    continue
                fallback = item.reason
                rest = self._give_up(utterance, item.reason, None, cacheable)
                async with contextlib.aclosing(rest):
                    async for chunk in rest:
                        yield chunk
                if utterance.ended:
                    return
                continue
            if isinstance(item, Done):
                if fallback is not None:
                    continue
                utterance.closed = True
                if utterance.pending:
                    yield self._chunk(utterance, bytes(utterance.pending))
                return
            for event in [item, *inbox.take_audio()]:
                self._take(utterance, event)
            whole = len(utterance.pending) // FRAME_SAMPLES * FRAME_SAMPLES
            if whole and fallback is None:
                audio = bytes(utterance.pending[:whole])
                del utterance.pending[:whole]
                yield self._chunk(utterance, audio)

    def _take(self, utterance: Utterance, event: ServiceEvent) -> None:
        if isinstance(event, Audio):
            utterance.pending += event.data
            utterance.received += len(event.data)
        elif isinstance(event, Words):
            utterance.spoken.words.extend(event.words)
        elif isinstance(event, PhraseDone):
            utterance.phrases_done += 1

    def _chunk(self, utterance: Utterance, audio: bytes) -> PhoneChunk:
        return PhoneChunk(audio=audio, text="", spoken=utterance.spoken, voice=self.provider)

    def _wait_s(self, utterance: Utterance) -> float | None:
        """How long the next item may take: the first audio's budget, or a stall's."""
        if utterance.closed or utterance.first_text_at is None or not utterance.pushed:
            return None
        if utterance.received == 0:
            deadline = utterance.first_text_at + self.timings.first_audio_s
            return max(0.0, deadline - time.monotonic())
        return self.timings.stall_s if utterance.ended else None

    def _late(self, utterance: Utterance) -> str:
        if utterance.received == 0:
            budget = round(self.timings.first_audio_s * 1000)
            return f"{self.provider} first audio later than {budget} ms"
        return f"{self.provider} stalled mid-utterance"

    async def _send_text(self, utterance: Utterance, inbox: Inbox, item: Text) -> str | None:
        """Start the utterance if needed and send it `item`; why not, if it could not be."""
        assert utterance.first_text_at is not None
        deadline = utterance.first_text_at + self.timings.first_audio_s
        if utterance.opened_on is None:
            reason = await self._connected(deadline)
            if reason is not None:
                return reason
            socket = self._socket
            self._active[utterance.id] = inbox
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self.begin(socket, utterance)
            except TimeoutError:
                self._active.pop(utterance.id, None)
                return f"{self.provider} busy with the previous utterance"
            utterance.opened_on = socket
        elif utterance.opened_on is not self._socket:
            return f"{self.provider} stream dropped"
        try:
            await self.send_text(utterance.opened_on, utterance, item.text, last=item.last)
        except Exception as error:
            return f"{self.provider} stream dropped ({describe(error)})"
        utterance.pushed.append(item.text)
        utterance.spoken.text = " ".join(utterance.pushed)
        utterance.ended = item.last
        return None

    async def _give_up(
        self, utterance: Utterance, reason: str, extra: str | None, cacheable: bool
    ) -> AsyncGenerator[PhoneChunk]:
        """The service failed the utterance: hand out the audio it did send, then the embedded
        voice speaks the words it had not spoken (and `extra`, text not yet sent)."""
        self.log.warning("utterance spoken by the embedded voice: %s", reason)
        self._end(utterance, cancel=not utterance.closed)
        utterance.closed = True
        if utterance.pending:
            yield self._chunk(utterance, bytes(utterance.pending))
            utterance.pending.clear()
        words = " ".join(utterance.pushed).split()
        spoken = utterance.spoken
        if spoken.words:
            heard = [w for w in spoken.words if w.end_ms <= utterance.received_ms]
            said = len(heard)
            spoken.words[:] = heard
            spoken.text = " ".join(w.text for w in heard)
        else:
            said = len(" ".join(utterance.pushed[: utterance.phrases_done]).split())
            spoken.text = " ".join(words[:said])
        rest = " ".join([*words[said:], *([extra] if extra else [])])
        if rest:
            whole_line = cacheable and said == 0
            embedded = self._embedded(rest, reason, cacheable=whole_line)
            async with contextlib.aclosing(embedded):
                async for chunk in embedded:
                    yield chunk

    async def _embedded(
        self, text: str, reason: str, *, cacheable: bool
    ) -> AsyncGenerator[PhoneChunk]:
        speech = self._fallback.render(text, cacheable)
        try:
            async for chunk in speech:
                yield replace(chunk, fallback=reason)
        finally:
            aclose = getattr(speech, "aclose", None)
            if aclose is not None:
                await aclose()

    # ----- what a service implements ---------------------------------------------------------

    @abstractmethod
    def connect(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A new connection (raises `VoiceRejected` for a refused key)."""

    @abstractmethod
    def messages(self, socket: Any) -> AsyncIterator[Any]:
        """The service's messages until it closes the connection."""

    @abstractmethod
    def handle(self, message: Any) -> None:
        """Route one message to its utterance (`deliver`)."""

    async def begin(self, socket: Any, utterance: Utterance) -> None:
        """Before an utterance's first text (e.g. wait for the socket to be free)."""
        return None

    @abstractmethod
    async def send_text(self, socket: Any, utterance: Utterance, text: str, *, last: bool) -> None:
        """Send one phrase of the utterance (`last`: no more text follows)."""

    @abstractmethod
    async def send_end(self, socket: Any, utterance: Utterance) -> None:
        """No more text for the utterance (its last phrase was sent without `last`)."""

    @abstractmethod
    async def finish(self, socket: Any, utterance: Utterance, *, cancelled: bool) -> None:
        """The utterance is over for the speaker; `cancelled`: stop generating it."""

    @abstractmethod
    async def send_close(self, socket: Any) -> None: ...

    def _reset_connection(self) -> None:
        """A new connection started: forget per-connection state."""
        return None
