"""Is caller speech over the agent an interruption or a backchannel? A pure classifier.

The endpointer asks it on every voiced frame while the agent talks, with the voiced time so far
and, once STT has them, the speech's first words; no clocks or models here, so the edge and
`slot eval turns` run the same rule and tests feed it made-up durations and words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BargeInVerdict = Literal["interrupt", "backchannel", "undecided"]

BACKCHANNEL_WORDS = frozenset(
    {
        "uh-huh", "uh", "huh", "uhhuh", "mm-hmm", "mmhmm", "mhm", "mm", "hmm", "hm", "um",
        "yeah", "yea", "yep", "yes", "ya", "right", "okay", "ok", "sure", "alright", "all",
        "got", "it", "i", "see", "oh", "ah", "cool", "great", "nice", "fine", "good",
        "exactly", "true", "indeed", "totally", "wow",
    }
)  # fmt: skip
"""Words that, alone, acknowledge rather than take the floor ("uh-huh", "yeah right", "I see")."""

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_HUM = re.compile(r"[mh]+|(?:u+h+)+|a+h+|o+h+|h?u+m+")
"""Hums as Whisper spells them, any length: "mmmm", "mm-m-m", "uh-uh", "hmmm", "ummm"."""
_NOISE_ONLY = frozenset({"you"})
"""What Whisper hears in line noise alone (measured: white noise and hiss give "You")."""


FLOOR_WORDS = frozenset(
    {
        "wait", "stop", "hold", "hang", "sorry", "pardon", "excuse", "what", "who", "why",
        "how", "where", "when", "hello", "hey", "no", "not", "nope",
    }
)  # fmt: skip
"""Words that claim the turn even alone ("Wait.", "Sorry?", "Who's this?", "No.")."""
SHORT_READING_WORDS = 3
"""At most this many words, none of them a backchannel, is a short reading ("A memo.")."""


def is_backchannel_word(word: str) -> bool:
    return word in BACKCHANNEL_WORDS or _HUM.fullmatch(word.replace("-", "")) is not None


def is_backchannel_text(text: str) -> bool:
    """True when every word of the first STT words is an acknowledgement or a hum, the words
    are only what Whisper hears in noise, or there are none."""
    words = _WORD.findall(text.lower())
    if " ".join(words) in _NOISE_ONLY:
        return True
    return all(is_backchannel_word(word) for word in words)


def takes_the_floor(text: str, answers: bool = False) -> bool:
    """Whether words heard over the agent claim the turn: an answer the script understands
    (`answers`), a question, a word that stops or asks ("wait", "sorry", "what"), or more than
    a short reading. A short reading that is none of these is most likely a hum or a cough
    misheard ("Mm-hmm" read as "A memo."), not a reason to silence the agent."""
    if answers or "?" in text:
        return True
    words = _WORD.findall(text.lower())
    if any(word in FLOOR_WORDS for word in words):
        return True
    return sum(not is_backchannel_word(word) for word in words) > SHORT_READING_WORDS


@dataclass(frozen=True)
class BargeInClassifier:
    """Tells an interruption from a backchannel while the agent is speaking.

    By duration: caller speech shorter than `min_interrupt_ms` (of voiced time) never
    interrupts: "uh-huh", "yeah", a cough. With `use_words`, speech past that length is held
    "undecided" until its first STT words arrive: all acknowledgements ("okay, yeah") or
    nothing recognisable (a cough) is a backchannel, anything else interrupts. Speech that goes
    on past `max_backchannel_ms` interrupts whatever the words, so a slow STT cannot keep a
    real interruption waiting for long.
    """

    min_interrupt_ms: int = 500
    """Default chosen by `slot eval turns` (with `use_words`)."""
    max_backchannel_ms: int = 1200
    use_words: bool = True
    unclear_is_backchannel: bool = False
    """With `use_words`: first words that do not take the floor (`takes_the_floor`) are a
    backchannel too, not only words that all acknowledge."""

    def wants_words(self, voiced_ms: float) -> bool:
        """Whether to transcribe the caller's speech so far now (its first words decide)."""
        return self.use_words and self.min_interrupt_ms <= voiced_ms < self.max_backchannel_ms

    def classify(
        self,
        voiced_ms: float,
        words: str | None = None,
        *,
        ended: bool = False,
        answers: bool = False,
    ) -> BargeInVerdict:
        """Verdict on the caller's speech so far over the agent.

        `voiced_ms`: voiced time since this caller speech started; `words`: its first words once
        STT has them; `ended`: the caller has stopped (the segment closed); `answers`: the
        script understands the words as an answer to its question. "undecided" means keep the
        agent talking and ask again at the next frame.
        """
        if voiced_ms >= self.max_backchannel_ms:
            return "interrupt"
        if voiced_ms < self.min_interrupt_ms:
            return "backchannel" if ended else "undecided"
        if not self.use_words:
            return "interrupt"
        if words is None:
            return "backchannel" if ended else "undecided"
        if is_backchannel_text(words):
            return "backchannel"
        if self.unclear_is_backchannel and not takes_the_floor(words, answers):
            return "backchannel"
        return "interrupt"
