"""Where text is cut into sentences: the one splitter of the code base.

`boundaries` finds the cut points (sentence ends, pauses) knowing abbreviations ("Dr.", "e.g.")
and closing quotes. The knowledge base chunks passages with `sentences`, the workflow's spoken
answers take the first of them, and the edge's phrase chunker (`media_edge.phrases`) cuts script
lines and streamed LLM text on the same boundaries. Pure, so the workflow sandbox can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

SENTENCE_END = frozenset(".!?")
PAUSE = frozenset(",;:")
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


def _abbreviation(upto_dot: str) -> bool:
    """'Dr.' or 'e.g.' end no sentence; a single capital ('J.') neither."""
    if not upto_dot.endswith("."):
        return False
    found = _WORD_BEFORE.search(upto_dot[:-1])
    if found is None:
        return False
    word = found.group(1).lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and found.group(1).isupper())


def boundaries(
    text: str, marks: frozenset[str] = SENTENCE_END, limit: int | None = None
) -> Iterator[tuple[int, str]]:
    """`(end, mark)` for each of `marks` (before index `limit`) that ends a piece of `text`.

    A mark ends a piece when whitespace follows it (after any closing quotes or brackets, which
    stay with the piece; `end` is the index after them). A full stop after an abbreviation or
    an initial ends nothing. Text still being written cannot end at its last character, so the
    end of `text` is never a boundary.
    """
    stop = len(text) - 1 if limit is None else min(len(text) - 1, limit)
    for i in range(stop):
        char = text[i]
        if char not in marks:
            continue
        end = i + 1
        while end < len(text) and text[end] in _CLOSERS:
            end += 1
        if end >= len(text) or not text[end].isspace():
            continue
        if char == "." and _abbreviation(text[: i + 1]):
            continue
        yield end, char


def split_at(text: str, marks: frozenset[str] = SENTENCE_END) -> list[str]:
    """`text` cut at every boundary of `marks`, pieces stripped, empty ones dropped."""
    pieces: list[str] = []
    start = 0
    for end, _ in boundaries(text, marks):
        pieces.append(text[start:end].strip())
        start = end
    pieces.append(text[start:].strip())
    return [piece for piece in pieces if piece]


def sentences(text: str) -> list[str]:
    """The sentences of a complete text."""
    return split_at(text, SENTENCE_END)
