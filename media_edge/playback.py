"""One agent utterance on its way to the caller: its frames, where playing has got to, and what
the caller heard of it, paused and resumed in place.

The speaker sends the frames slightly ahead of real time, a mark after each chunk (phrase).
Twilio echoes a mark once the audio before it has played, so the played position is the end of
the last echoed chunk plus the time since its echo (or since the first frame), never past the
chunk in progress. A pause (`clear` sent at caller speech onset) freezes that position and
keeps every frame; the marks Twilio then echoes for the audio it dropped are ignored. A resume
rewinds the sending cursor to the frame where the caller stopped hearing, so the rest of the
utterance, marks included, is sent again from there.

What the caller heard of the chunk in progress comes from the voice's word timestamps where it
gave them (Cartesia: the words whose end has played), else from a share of its words by played
time. Chunks of one streamed utterance share their text (`SpokenText`), so they count as one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from media_edge.audio import FRAME_MS
from media_edge.providers import SpokenText
from workflows.messages import Decision


@dataclass
class ChunkPlay:
    name: str
    text: str
    duration_ms: float
    frames: list[bytes] = field(default_factory=list, repr=False)
    """The chunk's 20 ms mu-law frames, kept so a paused utterance can resume."""
    spoken: SpokenText | None = None
    """The text of the stream this chunk is part of (then `text` is empty), timed if it can be."""


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
    cursor: int = 0
    """Index of the next frame to send, over the frames of all chunks."""
    paused_at_ms: float | None = None
    """Where the caller stopped hearing the utterance, while it is paused."""
    playing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set unless paused: the sender waits on it before each frame."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on every pause and resume, to wake a sender waiting for the end mark's echo."""
    generation: int = 0
    """Number of resumes so far."""
    rendered: bool = False
    """Every chunk is known (TTS or the LLM stream has finished)."""
    frames: list[bytes] = field(default_factory=list, repr=False)
    """The frames of all chunks so far, in order."""
    voice: str = ""
    """Who synthesized the utterance's first audio."""
    tts_fallback: str | None = None
    """Why the embedded voice spoke it, or part of it, instead of the call's streaming voice."""
    play_from_ms: float = 0.0
    play_from_at: float | None = None
    """Where and when playing (re)started: the anchor of the played time before any echo."""

    def __post_init__(self) -> None:
        self.playing.set()

    @property
    def utterance_id(self) -> str:
        return self.decision.utterance_id

    @property
    def paused(self) -> bool:
        return self.paused_at_ms is not None

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    def add(self, chunk: ChunkPlay, voice: str = "", fallback: str | None = None) -> None:
        """The next chunk of the utterance, rendered (by `voice`, or by the fallback)."""
        self.voice = self.voice or voice
        self.tts_fallback = self.tts_fallback or fallback
        self.chunks.append(chunk)
        self.frames.extend(chunk.frames)

    @property
    def total_ms(self) -> float:
        return sum(c.duration_ms for c in self.chunks)

    def on_cancel(self, hook: Callable[[], object]) -> None:
        """Run `hook` when a barge-in cuts this utterance off: the place to stop what still
        produces its words (an LLM stream, a remote TTS request). The speaking task itself is
        cancelled right after the hooks, which closes the TTS stream it was reading."""
        self.cancel_hooks.append(hook)

    def on_mark(self, name: str, now: float) -> None:
        """An echoed mark; ignored while paused (Twilio echoes the dropped audio's marks on
        `clear`, which says nothing about what was played)."""
        if self.paused:
            return
        suffix = name.removeprefix(self.utterance_id + ":")
        if suffix == "end":
            self.heard_chunks = len(self.chunks)
            self.end_echoed.set()
        elif suffix.isdigit():
            self.heard_chunks = max(self.heard_chunks, int(suffix) + 1)
            self.last_echo_at = now

    def frame_sent(self, now: float) -> None:
        """The frame at the cursor has left: advance, and date the start of playing."""
        self.cursor += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        if self.play_from_at is None:
            self.play_from_at = now

    def mark_after(self, frame: int) -> str | None:
        """The mark to send after frame number `frame`, if it is the last of a chunk."""
        end = 0
        for chunk in self.chunks:
            end += len(chunk.frames)
            if frame == end - 1:
                return chunk.name
            if frame < end:
                return None
        return None

    def _chunk_end_ms(self, index: int) -> float:
        return sum(c.duration_ms for c in self.chunks[: index + 1])

    def position_ms(self, now: float) -> float:
        """How much of the utterance the caller has heard by `now` (frozen while paused)."""
        if self.paused_at_ms is not None:
            return self.paused_at_ms
        done = min(self.heard_chunks, len(self.chunks))
        base_ms, base_at = self.play_from_ms, self.play_from_at
        if base_at is None and self.generation == 0:
            base_at = self.first_frame_at
        if done and self.last_echo_at is not None:
            base_ms, base_at = self._chunk_end_ms(done - 1), self.last_echo_at
        if done >= len(self.chunks):
            return self.total_ms if done else base_ms
        if base_at is None:
            return base_ms
        elapsed_ms = max(0.0, (now - base_at) * 1000.0)
        return min(base_ms + elapsed_ms, self._chunk_end_ms(done))

    def _spans(self) -> list[tuple[str, SpokenText | None, float]]:
        """The chunks as spans of speech: a chunk on its own, or the run of chunks of one
        stream; each with its text, its timing if any, and its duration (ms)."""
        spans: list[tuple[str, SpokenText | None, float]] = []
        for chunk in self.chunks:
            if chunk.spoken is not None and spans and spans[-1][1] is chunk.spoken:
                text, spoken, duration = spans[-1]
                spans[-1] = (text, spoken, duration + chunk.duration_ms)
            else:
                spans.append((chunk.text, chunk.spoken, chunk.duration_ms))
        return spans

    def text_until(self, position_ms: float) -> str:
        """Whole spans before `position_ms`, plus the words of the next one heard by then."""
        texts: list[str] = []
        start = 0.0
        for text, spoken, duration_ms in self._spans():
            end = start + duration_ms
            whole = spoken.text if spoken is not None else text
            if position_ms >= end:
                texts.append(whole)
            else:
                timing = spoken if spoken is not None else SpokenText(text)
                partial = timing.heard(position_ms - start, duration_ms)
                if partial:
                    texts.append(partial)
                break
            start = end
        return " ".join(t for t in texts if t)

    def heard(self, now: float) -> tuple[str, int]:
        """What the caller heard by `now`, and for how long (ms)."""
        position = self.position_ms(now)
        return self.text_until(position), round(position)

    def pause(self, now: float) -> float:
        """Freeze what was heard (the caller talks); the sender stops before its next frame.
        Never past the audio sent: under load the sender can fall behind the clock, and the
        frames it has not sent yet were not heard (resuming past them skipped them)."""
        position = min(self.position_ms(now), self._sent_ms())
        self.paused_at_ms = position
        self.playing.clear()
        self.changed.set()
        return position

    def _sent_ms(self) -> float:
        """How much of the utterance has been sent: the chunks whose frames all left, and the
        frames sent of the next."""
        sent_ms, start = 0.0, 0
        for chunk in self.chunks:
            count = len(chunk.frames)
            if self.cursor >= start + count:
                sent_ms += chunk.duration_ms
            else:
                return sent_ms + (self.cursor - start) * FRAME_MS
            start += count
        return sent_ms

    def resume(self) -> float:
        """Rewind the sending cursor to where the caller stopped hearing; returns that place."""
        assert self.paused_at_ms is not None
        position = self.paused_at_ms
        start_ms, start_frame, whole = 0.0, 0, 0
        for chunk in self.chunks:
            if position < start_ms + chunk.duration_ms:
                break
            start_ms += chunk.duration_ms
            start_frame += len(chunk.frames)
            whole += 1
        offset = int((position - start_ms) // FRAME_MS) if whole < len(self.chunks) else 0
        self.cursor = start_frame + offset
        self.play_from_ms = start_ms + offset * FRAME_MS
        self.play_from_at = None
        self.heard_chunks = whole
        self.last_echo_at = None
        self.paused_at_ms = None
        self.generation += 1
        self.playing.set()
        self.changed.set()
        return self.play_from_ms
