"""Where sentences end in text read aloud or stored as passages: one rule for the knowledge base's
chunker and its spoken answers. Pure (a regular expression), so the workflow sandbox can use it.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
"""A sentence ends at '.', '!' or '?' followed by white space."""


def split_sentences(text: str) -> list[str]:
    """`text` cut after each sentence end; the white space between sentences is dropped."""
    return _SENTENCE_END.split(text)
