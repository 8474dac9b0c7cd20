"""Word error rate with a normaliser fit for phone answers (numbers, fillers, spelling).

Whisper writes "$140" where the caller said "one forty", "10" for "ten" and drops "um". Before
counting errors both sides are lower-cased, stripped of punctuation and fillers, and each number
Whisper wrote is read the way that best matches what was said ("one hundred forty", "one
hundred and forty", "one forty", "one four zero", with or without "dollars"). The same
normaliser scores every condition, so it moves all figures alike.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

FILLERS = frozenset({"um", "uh", "uhm", "umm", "er", "erm", "hmm", "hm", "mm", "mmm", "mhm", "ah"})
_SPELLING = {"ok": "okay", "alright": "all right", "yeah": "yeah", "yea": "yeah", "mr": "mister"}
_ONES_TEXT = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TENS_TEXT = "_ _ twenty thirty forty fifty sixty seventy eighty ninety"
_ONES = _ONES_TEXT.split()
_TENS = _TENS_TEXT.split()
_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_NUMBER = re.compile(r"^(\$?)(\d[\d,]*)(?:\.(\d+))?(%|st|nd|rd|th|s)?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
MAX_COMBINATIONS = 256


def number_words(n: int, *, use_and: bool = False) -> str:
    """`n` in words, American style ("one hundred forty"; with `use_and`, "... and forty")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for size, name in (
        (10**9, "billion"),
        (10**6, "million"),
        (1000, "thousand"),
        (100, "hundred"),
    ):
        if n >= size:
            head, rest = divmod(n, size)
            words = f"{number_words(head, use_and=use_and)} {name}"
            if rest == 0:
                return words
            joiner = " and " if use_and and rest < 100 else " "
            return words + joiner + number_words(rest, use_and=use_and)
    raise AssertionError(n)


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINALS:
        last = _ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def number_readings(token: str) -> list[str]:
    """Ways a number Whisper wrote may have been said; the token itself if it is none."""
    time = _TIME.match(token)
    if time:
        hour, minute = int(time[1]), int(time[2])
        if minute == 0:
            return [number_words(hour), f"{number_words(hour)} o'clock"]
        middle = "oh " if minute < 10 else ""
        return [f"{number_words(hour)} {middle}{number_words(minute)}"]
    match = _NUMBER.match(token)
    if match is None:
        return [token]
    dollar, digits, fraction, suffix = match.groups()
    n = int(digits.replace(",", ""))
    readings = [number_words(n), number_words(n, use_and=True)]
    if 100 <= n < 10000 and n % 100 != 0:
        high, low = divmod(n, 100)
        readings.append(f"{number_words(high)} {'oh ' if low < 10 else ''}{number_words(low)}")
    if len(digits) >= 3:
        readings.append(" ".join(_ONES[int(d)] for d in digits if d.isdigit()))
    readings += [r.replace("one hundred", "a hundred", 1) for r in readings if "one hundred" in r]
    if fraction:
        point = " point " + " ".join(_ONES[int(d)] for d in fraction)
        readings = [r + point for r in readings]
    if suffix in ("st", "nd", "rd", "th"):
        readings = [_ordinal(number_words(n))]
    elif suffix == "s":
        readings = [r + "s" for r in readings]
    elif suffix == "%":
        readings = [r + " percent" for r in readings]
    if dollar:
        readings += [r + " dollars" for r in readings] + [r + " bucks" for r in readings]
    return list(dict.fromkeys(readings))


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("\u2014", " ").replace("\u2013", " ")
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)
    raw = re.findall(r"\$?\d[\d,:.]*%?(?:st|nd|rd|th|s)?|[a-z]+(?:'[a-z]+)*", text)
    words: list[str] = []
    for token in raw:
        token = token.rstrip(".,")
        if token in FILLERS:
            continue
        words.extend(_SPELLING.get(token, token).split())
    return words


def normalize_reference(text: str) -> list[str]:
    """What the caller said, as words (the corpus writes numbers as words)."""
    words: list[str] = []
    for token in _tokens(text):
        words.extend(number_readings(token)[0].split())
    return words


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions (word-level Levenshtein)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class Scored:
    reference: list[str]
    hypothesis: list[str]
    errors: int


def score(reference: str, hypothesis: str) -> Scored:
    """Errors of `hypothesis` against `reference`, each number read the most favourable way."""
    ref = normalize_reference(reference)
    options = [number_readings(token) for token in _tokens(hypothesis)]
    best: Scored | None = None
    combos = itertools.islice(itertools.product(*options), MAX_COMBINATIONS)
    for combo in combos:
        hyp = " ".join(combo).split()
        errors = edit_distance(ref, hyp)
        if best is None or errors < best.errors:
            best = Scored(ref, hyp, errors)
    assert best is not None
    return best
