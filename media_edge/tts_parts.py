"""The parts of one streaming-TTS utterance (`media_edge.tts_stream`): what the service reports
(`Audio`, `Words`, `PhraseDone`, `Done`, `Failed`), the texts to send, the inbox where both
meet in arrival order, what was sent and received (`Utterance`), and the fixed lines a voice
has spoken (`LineCache`). Pure bookkeeping on asyncio primitives, no sockets.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from media_edge.providers import SpokenText, TimedWord
from media_edge.tts import PhoneChunk

# ----- what a service reports about one utterance ---------------------------------------------


@dataclass(frozen=True)
class Audio:
    data: bytes
    """8 kHz mu-law, following the utterance's audio so far."""


@dataclass(frozen=True)
class Words:
    words: tuple[TimedWord, ...]
    """Timed from the start of the utterance's audio."""


@dataclass(frozen=True)
class PhraseDone:
    """The audio of the next phrase sent is complete (Aura's `Flushed`)."""


@dataclass(frozen=True)
class Done:
    """All the utterance's audio has come."""


@dataclass(frozen=True)
class Failed:
    reason: str


ServiceEvent = Audio | Words | PhraseDone | Done | Failed


@dataclass(frozen=True)
class Text:
    text: str
    last: bool


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class TextError:
    error: BaseException


Item = ServiceEvent | Text | End | TextError


class Inbox:
    """One utterance's texts to send and the service's events, in arrival order."""

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._event = asyncio.Event()

    def put(self, item: Item) -> None:
        self._items.append(item)
        self._event.set()

    async def get(self, timeout_s: float | None) -> Item:
        """The next item; TimeoutError if none comes within `timeout_s`."""
        while not self._items:
            self._event.clear()
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        return self._items.popleft()

    def take_audio(self) -> list[Audio | Words | PhraseDone]:
        """The audio (and timings) that has already come after the item just taken."""
        taken: list[Audio | Words | PhraseDone] = []
        while self._items and isinstance(self._items[0], Audio | Words | PhraseDone):
            item = self._items.popleft()
            assert isinstance(item, Audio | Words | PhraseDone)
            taken.append(item)
        return taken


@dataclass
class Utterance:
    """One utterance on the service: what was sent, what came back."""

    id: str
    spoken: SpokenText = field(default_factory=SpokenText)
    pushed: list[str] = field(default_factory=list)
    opened_on: Any = None
    """The connection the utterance was started on."""
    ended: bool = False
    """All its text has been sent."""
    closed: bool = False
    """Done, or given up (cancelled, failed): nothing more is wanted from the service."""
    finished: bool = False
    """The service was told the utterance is over (`CallVoice.finish`)."""
    first_text_at: float | None = None
    received: int = 0
    """Audio bytes (= samples) received."""
    pending: bytearray = field(default_factory=bytearray)
    """Received audio not yet handed out (less than a frame, between chunks)."""
    phrases_done: int = 0

    @property
    def received_ms(self) -> float:
        return self.received / 8.0


@dataclass(frozen=True)
class VoiceTimings:
    first_audio_s: float = 0.8
    stall_s: float = 2.0
    """Once all text is sent, the longest wait for the next audio before giving up."""
    close_timeout_s: float = 2.0


class LineCache:
    """Fixed lines as the streaming voice spoke them, shared by an edge's calls (LRU), so the
    same greeting is synthesized (and paid for) once per process."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lines: OrderedDict[str, tuple[PhoneChunk, ...]] = OrderedDict()

    def get(self, line: str) -> tuple[PhoneChunk, ...] | None:
        chunks = self._lines.get(line)
        if chunks is not None:
            self._lines.move_to_end(line)
        return chunks

    def put(self, line: str, chunks: tuple[PhoneChunk, ...]) -> None:
        self._lines[line] = chunks
        while len(self._lines) > self._size:
            self._lines.popitem(last=False)


async def one(line: str) -> AsyncIterator[str]:
    yield line


async def feed(texts: AsyncIterable[str], inbox: Inbox, whole_line: bool) -> None:
    """The utterance's texts into its inbox as they come: a whole line as its last text, an
    LLM's phrases each at once (the stream's end follows as `End`)."""
    try:
        async for text in texts:
            inbox.put(Text(text, last=whole_line))
        if not whole_line:
            inbox.put(End())
    except Exception as error:
        inbox.put(TextError(error))
