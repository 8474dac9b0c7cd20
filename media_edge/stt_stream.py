"""One call's streaming speech-to-text connection, whatever the service (Nova-3, Flux).

Opened when the call starts and kept for the whole call: the listener pushes every caller frame
(mu-law, as Twilio sent it) and, at a pause, asks for the transcript of the segment it holds
(`transcribe`, the `SpeechToText` interface, so the listener's turn-taking is unchanged); the
service's words are already there or arrive moments later, with no second STT pass. What the
service says on its own (speech started, interim words, the end of an utterance or of a turn)
reaches the listener as typed `StreamEvent`s.

Failures never leave dead air: a connection that drops is reopened at once and sent again the
audio it had not finalized, so words in flight are not lost; while the service is unreachable
or refuses the key, or its words do not come within `final_timeout_s`, the segment is
transcribed by the embedded fallback (Whisper) from the audio the listener keeps, and the
transcript says so (`Transcript.fallback`). The service and its wire messages are a subclass's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from media_edge.audio import PHONE_RATE
from media_edge.providers import PCM, SpeechContext, SpeechToText, Transcript
from media_edge.stt_ledger import AudioGate, AudioLedger, Word, WordLog


@dataclass(frozen=True)
class StreamSpeechStarted:
    """The service heard speech begin (`at`: sample offset in the call's audio)."""

    at: int


@dataclass(frozen=True)
class StreamWords:
    """Words the service recognized: interim (may change), final, and final at a pause."""

    text: str
    final: bool
    speech_final: bool = False


@dataclass(frozen=True)
class StreamUtteranceEnd:
    """No word for the service's utterance gap since `last_word_end` (a sample offset)."""

    last_word_end: int


@dataclass(frozen=True)
class StreamEndOfTurn:
    """The service decided the caller's turn is over (Flux), with the turn's transcript."""

    text: str
    confidence: float


StreamEvent = StreamSpeechStarted | StreamWords | StreamUtteranceEnd | StreamEndOfTurn


class StreamRejected(Exception):
    """The service refused the credentials (401/403): retrying the same key will not help."""


@dataclass(frozen=True)
class StreamTimings:
    keepalive_s: float = 4.0
    final_timeout_s: float = 0.8
    words_timeout_s: float = 0.6
    keep_s: float = 30.0
    hold_s: float = 0.4
    """Caller audio kept while held back: more than the listener's pre-roll and onset."""
    close_timeout_s: float = 2.0


class CallStream(ABC):
    """One call's connection to a streaming recognizer; `run()` for the call's lifetime."""

    provider = "stream"
    tolerance = PHONE_RATE // 10
    """Words this close to the end of the audio count as covering it (a pause is longer)."""
    gated = True
    """Whether caller audio is held back while the agent talks (see `AudioGate`)."""

    def __init__(
        self,
        *,
        fallback: SpeechToText,
        log: logging.LoggerAdapter[logging.Logger],
        timings: StreamTimings = StreamTimings(),
    ) -> None:
        self._fallback = fallback
        self.log = log
        self.timings = timings
        self.ledger = AudioLedger(int(timings.keep_s * PHONE_RATE))
        self.words = WordLog()
        self._gate = AudioGate(int(timings.hold_s * PHONE_RATE))
        self._listeners: list[Callable[[StreamEvent], None]] = []
        self.down: str | None = None
        """Why the service cannot be used right now (None: connected or reconnecting)."""
        self.connections = 0
        self._connection_base = 0
        self._closing = asyncio.Event()
        self._finished = asyncio.Event()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._waiting = 0
        self._last_sent = time.monotonic()

    # ----- what the listener uses ------------------------------------------------------------

    def listen(self, listener: Callable[[StreamEvent], None]) -> None:
        self._listeners.append(listener)

    def push(self, mulaw: bytes, *, agent_speaking: bool, caller_audible: bool) -> None:
        """One caller frame, as Twilio sent it; streamed soon, or held back (see `AudioGate`)."""
        if self.gated:
            mulaw = self._gate.push(
                mulaw, agent_speaking=agent_speaking, caller_audible=caller_audible
            )
        if mulaw:
            self.ledger.append(mulaw)
            self._wake.set()

    async def transcribe(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        """The service's words for `audio`, the last samples streamed; the fallback's if the
        service is down or its words are late."""
        end = self.ledger.end
        start = end - len(audio) * PHONE_RATE // sample_rate
        reason = self.down
        if reason is None:
            if await self._covered(end, self.timings.final_timeout_s):
                return Transcript(text=self._text(start, end), provider=self.provider)
            reason = self.down or "no final words in time"
        return await self._fall_back(audio, sample_rate, context, reason)

    async def first_words(self, audio: PCM, sample_rate: int) -> Transcript:
        """The first words of speech still going on (to tell a backchannel from an
        interruption): interim words as soon as there are any, else a final transcript."""
        end = self.ledger.end
        start = end - len(audio) * PHONE_RATE // sample_rate
        deadline = time.monotonic() + self.timings.words_timeout_s
        while self.down is None:
            text = self.words.text(start, self.ledger.end + PHONE_RATE, interim=True)
            if text:
                return Transcript(text=text, provider=self.provider)
            if not await self._progress_until(deadline):
                break
        return await self.transcribe(audio, sample_rate)

    async def close(self) -> None:
        """End of the call: tell the service (it sends its last results) and let go."""
        self._closing.set()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timings.close_timeout_s):
                await self._finished.wait()

    # ----- connection lifecycle --------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stream, reconnect after a drop (at once, then backing off) until `close`."""
        delay = 0.0
        try:
            while not self._closing.is_set():
                opened = False
                try:
                    async with self.connect() as socket:
                        opened = True
                        self._opened()
                        await self._serve(socket)
                    if not self._closing.is_set():
                        self.log.warning("%s stream closed by the service", self.provider)
                except StreamRejected as rejected:
                    self._set_down(str(rejected))
                    self.log.error("%s; turns use the fallback", rejected)
                    return
                except Exception as error:
                    if self._closing.is_set():
                        return
                    if opened:
                        self.log.warning("%s stream dropped (%s)", self.provider, describe(error))
                    else:
                        self._set_down(f"{self.provider} unreachable: {describe(error)}")
                        self.log.warning("%s; retrying in %.2f s", self.down, delay)
                if opened:
                    delay = 0.0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._closing.wait()
                delay = min(max(delay * 2, 0.25), 8.0)
        finally:
            self._finished.set()
            self._notify()

    def _opened(self) -> None:
        self._connection_base = self.ledger.rewind()
        self.connections += 1
        self.down = None
        self._reset_connection()
        if self._waiting:
            self._want_final()
        self._wake.set()

    async def _serve(self, socket: Any) -> None:
        sender = asyncio.create_task(self._send_loop(socket))
        try:
            async for message in self.messages(socket):
                self.handle(message)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self, socket: Any) -> None:
        """Audio as it comes; requests between audio; a keep-alive when no audio flows."""
        while True:
            idle = self.timings.keepalive_s - (time.monotonic() - self._last_sent)
            woken = True
            if not self._wake.is_set():
                try:
                    async with asyncio.timeout(max(idle, 0.0)):
                        await self._wake.wait()
                except TimeoutError:
                    woken = False
            self._wake.clear()
            chunk = self.ledger.unsent()
            if chunk:
                await self.send_audio(socket, chunk)
                self._last_sent = time.monotonic()
            elif not woken:
                await self.send_keepalive(socket)
                self._last_sent = time.monotonic()
            await self.send_requests(socket)
            if self._closing.is_set():
                await self.send_close(socket)
                return

    # ----- shared helpers for subclasses -----------------------------------------------------

    def offset(self, seconds: float) -> int:
        """A time on the current connection as a sample offset in the call's audio."""
        return self._connection_base + round(seconds * PHONE_RATE)

    def emit(self, event: StreamEvent) -> None:
        for listener in self._listeners:
            listener(event)

    def _notify(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def _set_down(self, reason: str) -> None:
        self.down = reason
        self._notify()

    async def _progress_until(self, deadline: float) -> bool:
        """Wait for news from the service; False once `deadline` has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        progress = self._progress
        try:
            async with asyncio.timeout(remaining):
                await progress.wait()
        except TimeoutError:
            return False
        return True

    async def _covered(self, end: int, timeout_s: float) -> bool:
        """Wait until the service's words cover the audio up to `end` (asking it to finalize
        what it holds); False if it is down or does not answer in time."""
        deadline = time.monotonic() + timeout_s
        self._waiting += 1
        try:
            asked = False
            while self.down is None:
                if self.covered_through() >= end - self.tolerance:
                    return True
                if not asked:
                    asked = True
                    self._want_final()
                if not await self._progress_until(deadline):
                    return False
            return False
        finally:
            self._waiting -= 1

    def _text(self, start: int, end: int) -> str:
        return self.words.text(start, end)

    async def _fall_back(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None, reason: str
    ) -> Transcript:
        self.log.warning("segment transcribed by the fallback: %s", reason)
        transcript = await self._fallback.transcribe(audio, sample_rate, context)
        return Transcript(
            text=transcript.text,
            confidence=transcript.confidence,
            provider=transcript.provider or "whisper",
            fallback=reason,
        )

    def words_at(self, items: list[tuple[str, float, float]]) -> list[Word]:
        return [Word(text, self.offset(start), self.offset(end)) for text, start, end in items]

    # ----- what a service implements ---------------------------------------------------------

    @abstractmethod
    def connect(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A new connection (raises `StreamRejected` for a refused key)."""

    @abstractmethod
    def messages(self, socket: Any) -> AsyncIterator[Any]:
        """The service's messages until it closes the connection."""

    @abstractmethod
    def handle(self, message: Any) -> None:
        """Take one message: words into `self.words`, events to `emit`, then `_notify()`."""

    @abstractmethod
    def covered_through(self) -> int:
        """Sample offset up to which the service has reported all its words."""

    @abstractmethod
    async def send_audio(self, socket: Any, audio: bytes) -> None: ...

    async def send_keepalive(self, socket: Any) -> None:
        await self.send_audio(socket, b"\xff" * (PHONE_RATE // 50))

    async def send_requests(self, socket: Any) -> None:
        """Control messages asked for since the last send (e.g. Finalize)."""
        return None

    @abstractmethod
    async def send_close(self, socket: Any) -> None: ...

    def _want_final(self) -> None:
        """A segment waits for final words: ask the service for them (if it can be asked)."""
        self._wake.set()

    def _reset_connection(self) -> None:
        """A new connection started: forget per-connection state."""
        return None


def describe(error: BaseException) -> str:
    """A failure in a few words, never with headers or URLs (they could carry a key)."""
    status = getattr(error, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
