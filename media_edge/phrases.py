"""Where text is cut into speakable phrases, on the sentence boundaries of `workflows.sentences`.

TTS sounds natural per phrase and its first audio comes sooner for a short one. `boundaries`
finds the cut points (sentence ends, pauses) knowing abbreviations ("Dr.", "e.g.") and closing
quotes; on it stand `sentences` (the knowledge base's chunks), `split_sentences` (a whole line
of the script, into phrases synthesized one by one) and `PhraseChunker` (an LLM's streamed
words, cut as they arrive: at sentence ends, at commas and other pauses once a phrase is long
enough, and at the last space before `max_chars` when nothing else comes). Pure and
synchronous; the async helper `phrases` wraps the chunker around any async stream of deltas.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from workflows.sentences import PAUSE, SENTENCE_END, boundaries, split_at

HARD_STOP = SENTENCE_END | frozenset(";:")
"""Where a script line is cut into phrases: sentence ends, semicolons and colons."""
COMMA = frozenset(",")
LONG_SENTENCE_WORDS = 12
MIN_PHRASE_WORDS = 4
FIRST_PHRASE_MAX_WORDS = 6
"""A first sentence this short is the first phrase on its own ("Perfect.", "Great, thanks!")."""
FIRST_CLAUSE_MIN_WORDS = 2


def _first_phrase(text: str) -> tuple[str, str]:
    """A short opening phrase and the rest, or ("", text) when there is none worth cutting.

    The first phrase is what the caller waits for, so it is kept short: the first sentence if it
    has at most a few words, else its first clause of two words or more. The next phrase is
    synthesized at the same time (see `media_edge.tts`), so no gap opens after it.
    """
    cut: tuple[str, str] | None = None
    first_sentence = next(boundaries(text, HARD_STOP), None)
    if first_sentence is not None:
        head = text[: first_sentence[0]]
        if len(head.split()) <= FIRST_PHRASE_MAX_WORDS:
            cut = head, text[first_sentence[0] :]
    if cut is None:
        for end, _ in boundaries(text, COMMA):
            if first_sentence is not None and end > first_sentence[0]:
                break
            head = text[:end]
            if len(head.split()) >= FIRST_CLAUSE_MIN_WORDS:
                cut = head, text[end:]
                break
    if cut is None or len(cut[0].split()) > LONG_SENTENCE_WORDS:
        return "", text
    head, rest = cut[0].strip(), cut[1].strip()
    if len(rest.split()) < MIN_PHRASE_WORDS:
        return "", text
    return head, rest


def split_sentences(text: str) -> list[str]:
    """A whole line of text as phrases to synthesize one by one, so the first audio is early.

    A short first phrase (see `_first_phrase`), then sentences, long sentences further cut at
    commas, which also makes the heard text after a barge-in finer-grained. Later pieces under
    a few words join their neighbour: a tiny piece would play out before the next one is
    synthesized and leave a gap a caller hears as the end of the agent's turn.
    """
    first, rest = _first_phrase(" ".join(text.split()))
    return [first, *_phrases(rest)] if first else _phrases(rest)


def _phrases(text: str) -> list[str]:
    phrases: list[str] = []
    carry = ""
    for part in split_at(text, HARD_STOP):
        sentence = f"{carry} {part}" if carry else part
        carry = ""
        if len(sentence.split()) < MIN_PHRASE_WORDS:
            carry = sentence
            continue
        if len(sentence.split()) <= LONG_SENTENCE_WORDS:
            phrases.append(sentence)
            continue
        pieces: list[str] = []
        for clause in split_at(sentence, COMMA):
            if pieces and len(pieces[-1].split()) < MIN_PHRASE_WORDS:
                pieces[-1] = f"{pieces[-1]} {clause}"
            else:
                pieces.append(clause)
        if len(pieces) > 1 and len(pieces[-1].split()) < MIN_PHRASE_WORDS:
            last = pieces.pop()
            pieces[-1] = f"{pieces[-1]} {last}"
        phrases.extend(pieces)
    if carry:
        if phrases:
            phrases[-1] = f"{phrases[-1]} {carry}"
        else:
            phrases.append(carry)
    return phrases


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
        for end, mark in boundaries(text, SENTENCE_END | PAUSE, limit=self.max_chars):
            if mark in SENTENCE_END or len(text[:end].strip()) >= minimum:
                return end
        if len(text) > self.max_chars:
            space = text.rfind(" ", 0, self.max_chars + 1)
            return space if space > 0 else self.max_chars
        return None


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
