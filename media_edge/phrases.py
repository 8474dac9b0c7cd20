"""Turn a stream of text deltas (an LLM writing) into speakable phrases for TTS.

TTS sounds natural per phrase and its first audio comes sooner for a short one, so the LLM's
words are cut at sentence ends, at commas and other pauses once a phrase is long enough, and
at the last space before `max_chars` when nothing else comes. Pure and synchronous; the async
helper `phrases` wraps it around any async stream of deltas.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

_SENTENCE_END = frozenset(".!?")
_PAUSE = frozenset(",;:")
_CLOSERS = frozenset("\"')]\u201d\u2019")
_ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "jr",
        "sr",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "a.m",
        "p.m",
        "approx",
        "inc",
    }
)
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


@dataclass
class PhraseChunker:
    """Feed deltas, get phrases.

    `min_chars`: a pause (comma...) ends a phrase only past this length; sentence ends always
    do. `first_min_chars` is the same for the first phrase, kept short so speech starts early.
    `max_chars`: longest phrase; cut at the last space before it.
    """

    min_chars: int = 40
    first_min_chars: int = 20
    max_chars: int = 160
    _buffer: str = field(default="", init=False)
    _emitted: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if (
            not 0 < self.first_min_chars <= self.max_chars
            or not 0 < self.min_chars <= self.max_chars
        ):
            raise ValueError("phrase lengths must satisfy 0 < min_chars <= max_chars")

    def feed(self, delta: str) -> list[str]:
        """Phrases completed by `delta` (possibly none)."""
        self._buffer += delta
        out: list[str] = []
        while (cut := self._find_cut()) is not None:
            phrase, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if phrase:
                out.append(phrase)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        """The rest of the text, once the stream has ended."""
        rest, self._buffer = self._buffer.strip(), ""
        if not rest:
            return []
        self._emitted += 1
        return [rest]

    def _minimum(self) -> int:
        return self.first_min_chars if self._emitted == 0 else self.min_chars

    def _find_cut(self) -> int | None:
        text = self._buffer
        minimum = self._minimum()
        for i in range(min(len(text) - 1, self.max_chars)):
            char = text[i]
            if char not in _SENTENCE_END and char not in _PAUSE:
                continue
            end = i + 1
            while end < len(text) and text[end] in _CLOSERS:
                end += 1
            if end >= len(text) or not text[end].isspace():
                continue
            if char in _SENTENCE_END:
                if not self._abbreviation(text[: i + 1]):
                    return end
            elif len(text[:end].strip()) >= minimum:
                return end
        if len(text) > self.max_chars:
            space = text.rfind(" ", 0, self.max_chars + 1)
            return space if space > 0 else self.max_chars
        return None

    @staticmethod
    def _abbreviation(upto_dot: str) -> bool:
        """'Dr.' or 'e.g.' end no sentence; a single capital ('J.') neither."""
        if not upto_dot.endswith("."):
            return False
        found = _WORD_BEFORE.search(upto_dot[:-1])
        if found is None:
            return False
        word = found.group(1).lower()
        return word in _ABBREVIATIONS or (len(word) == 1 and found.group(1).isupper())


async def phrases(
    deltas: AsyncIterable[str], chunker: PhraseChunker | None = None
) -> AsyncIterator[str]:
    """Speakable phrases from an async stream of text deltas, as soon as each is complete."""
    chunker = chunker or PhraseChunker()
    async for delta in deltas:
        for phrase in chunker.feed(delta):
            yield phrase
    for phrase in chunker.flush():
        yield phrase
