"""A small, deterministic intent matcher for caller utterances.

Pure Python with no dependencies so it runs inside Temporal's workflow sandbox and replays
identically. It scores an utterance against each intent's example phrases; a later embedding
tier can replace it behind the same `match_intent` interface.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MATCH_THRESHOLD = 0.45
"""Below this score an utterance matches no intent and the script falls back."""

NEGATION_PENALTY = 0.5
"""Multiplier when exactly one of utterance and example is negated ("interested" vs "not")."""

_CONTRACTIONS = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "shan't": "shall not",
    "ain't": "am not",
    "let's": "let us",
    "y'all": "you all",
    "gonna": "going to",
    "wanna": "want to",
    "gotta": "got to",
}
_SUFFIXES = (
    ("n't", " not"),
    ("'re", " are"),
    ("'m", " am"),
    ("'ll", " will"),
    ("'ve", " have"),
    ("'d", " would"),
    ("'s", " is"),
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_WORD = re.compile(r"[a-z0-9']+")
_NON_WORD = re.compile(r"[^a-z0-9' ]+")

_STOPWORD_TEXT = (
    "a an the i me my you your we us our it its is am are was be been to of in on at for "
    "and or so that this just um uh oh well okay ok please really very do does"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words that carry little meaning alone; they still count, with a lower weight."""
_STOPWORD_WEIGHT = 0.3

_NEGATIONS = frozenset({"not", "no", "never", "nope", "nah", "nothing", "neither", "nor"})
_NOT_NEGATIONS = (
    "no problem",
    "not a problem",
    "no worries",
    "why not",
    "no doubt",
    "not bad",
    "no no problem",
)
"""Idioms that contain a negation word but mean yes."""


class IntentLike(Protocol):
    """Anything with a name and example utterances (the playbook's `Intent`)."""

    @property
    def name(self) -> str: ...

    @property
    def examples(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class IntentMatch:
    """The best intent for an utterance: `index` is its position in the candidates given."""

    name: str
    score: float
    example: str
    index: int


def normalize(text: str) -> str:
    """Lowercase, expand contractions, drop punctuation: 'I'm NOT interested!' -> 'i am not ...'."""
    text = text.lower().translate(_APOSTROPHES)
    text = _NON_WORD.sub(" ", text)
    words: list[str] = []
    for word in _WORD.findall(text):
        if word in _CONTRACTIONS:
            words.append(_CONTRACTIONS[word])
            continue
        for suffix, expansion in _SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix):
                words.append(word[: -len(suffix)] + expansion)
                break
        else:
            words.append(word.replace("'", ""))
    return " ".join(" ".join(words).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def is_negated(normalized: str) -> bool:
    """Whether a normalized utterance says no, ignoring idioms like 'no problem'."""
    padded = f" {normalized} "
    for idiom in _NOT_NEGATIONS:
        padded = padded.replace(f" {idiom} ", " ")
    return any(word in _NEGATIONS for word in padded.split())


_ENDINGS = ("ing", "ers", "er", "ed", "s")


def stem(word: str) -> str:
    """A word without the ending that only inflects it, so "renting", "renter", "rented" and
    "rents" meet "rent" (patch understanding-v5); stopwords and short words stay as they are."""
    if word in STOPWORDS or len(word) < 4:
        return word
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            base = word[: -len(ending)]
            if ending != "s" and len(base) > 3 and base[-1] == base[-2]:
                base = base[:-1]  # "getting" -> "get"
            return base
    return word


def _weight(word: str) -> float:
    return _STOPWORD_WEIGHT if word in STOPWORDS else 1.0


def _token_score(utterance: set[str], example: set[str]) -> float:
    """Weighted Dice overlap, or the share of the example the utterance covers if higher."""
    if not utterance or not example:
        return 0.0
    shared = sum(_weight(w) for w in utterance & example)
    total = sum(_weight(w) for w in utterance) + sum(_weight(w) for w in example)
    dice = 2 * shared / total
    coverage = shared / sum(_weight(w) for w in example)
    return max(dice, 0.85 * coverage)


def _bigrams(text: str) -> Counter[str]:
    padded = f" {text} "
    return Counter(padded[i : i + 2] for i in range(len(padded) - 1))


def _bigram_score(utterance: str, example: str) -> float:
    a, b = _bigrams(utterance), _bigrams(example)
    total = sum(a.values()) + sum(b.values())
    return 2 * sum((a & b).values()) / total if total else 0.0


def similarity(utterance: str, example: str, *, stemmed: bool = False) -> float:
    """Score in [0, 1] of how close two texts are; both are normalized first. `stemmed`: words
    are compared without their inflections (`stem`)."""
    u, e = normalize(utterance), normalize(example)
    if not u or not e:
        return 0.0
    if u == e:
        return 1.0
    words_u, words_e = set(u.split()), set(e.split())
    if stemmed:
        words_u, words_e = {stem(w) for w in words_u}, {stem(w) for w in words_e}
    score = 0.65 * _token_score(words_u, words_e) + 0.35 * _bigram_score(u, e)
    if is_negated(u) != is_negated(e):
        score *= NEGATION_PENALTY
    return round(score, 4)


def match_intent(
    utterance: str,
    intents: Sequence[IntentLike],
    threshold: float = MATCH_THRESHOLD,
    *,
    stemmed: bool = False,
) -> IntentMatch | None:
    """The intent whose closest example best matches `utterance`, if it scores >= `threshold`.

    Ties go to the earlier intent, so callers list the most specific candidates first.
    """
    best: IntentMatch | None = None
    for index, intent in enumerate(intents):
        for example in intent.examples:
            score = similarity(utterance, example, stemmed=stemmed)
            if best is None or score > best.score:
                best = IntentMatch(intent.name, score, example, index)
    if best is None or best.score < threshold:
        return None
    return best


def best_guess(
    utterance: str, intents: Sequence[IntentLike], *, stemmed: bool = False
) -> IntentMatch | None:
    """The best intent regardless of threshold: explains a fallback ("best was 'yes' 0.21")."""
    return match_intent(utterance, intents, threshold=0.0, stemmed=stemmed)
