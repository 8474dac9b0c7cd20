"""Understanding a caller's words without an LLM: amounts, weekdays, times of day, yes and no.

People on the phone say "one eighty a month", "Wednesdays are best", "after lunch" and "Yeah,
we've owned it for ten years"; a playbook's examples cannot list every such phrasing, so these
rules read them the way a person would. They are pure functions of the text (no clock, no I/O),
so the workflow, the edge's endpointing judgement (`workflows.expectations`) and the evals share
them and replay stays deterministic.

Every reader returns the value and the words it came from, so a decision's reason can say why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from workflows.intents import normalize

# --- numbers ---------------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "grand": 1000, "k": 1000}
_NUMBER_WORDS = {**_UNITS, **_TEENS, **_TENS}
_RANGE_WORDS = frozenset({"to", "or", "and"})
_VAGUE = frozenset({"few", "several", "couple", "many", "some", "of"})
_RESTATING = frozenset({
    "um", "uh", "er", "erm", "ah", "oh", "hmm", "hm", "mm", "well", "so", "like", "actually",
    "maybe", "probably", "i", "mean", "say",
})  # fmt: skip
"""Words between two numbers when the second restates the first ("sixty, maybe sixty-five")."""


@dataclass(frozen=True)
class Amount:
    """A number a caller said: `value` (a midpoint for a range), the words, and how it was read."""

    value: int
    words: str
    note: str = ""
    """Set when the value is not literally what was said ("midpoint of 100-200")."""


def _is_number_token(token: str) -> bool:
    return token.isdigit() or token in _NUMBER_WORDS or token in _SCALES


def _parse_run(tokens: list[str]) -> int | None:
    """The value of a run of number tokens ("a hundred and twenty", "one eighty", "2 fifty")."""
    tokens = [t for t in tokens if t != "and"]
    if not tokens:
        return None
    if tokens[0] == "a":
        tokens = ["one", *tokens[1:]]
    if len(tokens) == 1 and tokens[0].isdigit():
        return int(tokens[0])
    # Spoken hundreds without the word: "one eighty" = 180, "two seventy five" = 275,
    # "twelve fifty" = 1250; a unit or teen followed by a tens or teen word.
    if (
        len(tokens) >= 2
        and (tokens[0] in _NUMBER_WORDS)
        and (tokens[1] in _TENS or tokens[1] in _TEENS)
        and (tokens[0] not in _TENS or tokens[1] in _TEENS)
        and not any(t in _SCALES for t in tokens)
    ):
        head = _NUMBER_WORDS[tokens[0]]
        rest = _parse_run(tokens[1:])
        return None if rest is None or rest >= 100 else head * 100 + rest
    total, current = 0, 0
    for token in tokens:
        if token.isdigit():
            current += int(token)
        elif token in _NUMBER_WORDS:
            current += _NUMBER_WORDS[token]
        elif token in _SCALES:
            scale = _SCALES[token]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * scale
                current = 0
        else:
            return None
    return total + current


def _restates(previous: str, word: str) -> bool:
    """Two number tokens that cannot be one number: a tens word after a tens word, digits after
    digits, a unit after a unit ("sixty, sixty-five", "60 65"): the caller said a second one."""
    return (
        (previous in _TENS and word in _TENS)
        or (previous.isdigit() and word.isdigit())
        or (previous in _UNITS and word in _UNITS)
    )


def _runs(words: list[str], *, v5: bool = False, v6: bool = False) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of number tokens; "a" and "and" join inside a run.
    `v5` (patch understanding-v5): a restated number starts a run of its own (`_restates`).
    `v6` (understanding-v6): so does a second "hundred" ("a hundred and twenty, hundred and
    thirty" is two amounts, not 12030)."""
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        word = words[i]
        starts = _is_number_token(word) or (
            word == "a" and i + 1 < len(words) and words[i + 1] in _SCALES
        )
        if not starts or word in ("thousand", "grand", "k"):
            i += 1
            continue
        j = i + 1
        while j < len(words):
            nxt = words[j]
            if v5 and _restates(words[j - 1], nxt):
                break
            if v6 and nxt == "hundred" and "hundred" in words[i:j]:
                break
            if _is_number_token(nxt):
                j += 1
            elif (
                nxt == "and"
                and j + 1 < len(words)
                and _is_number_token(words[j + 1])
                and words[j - 1] in _SCALES
            ):
                j += 1  # "a hundred and twenty"
            else:
                break
        runs.append((i, j))
        i = j
    return runs


_TWO_HEARD_BEFORE_V7 = frozenset(_TENS) | {"hundred"}
_LEAD_INS_V7 = _RESTATING | {
    "about", "around", "roughly", "approximately", "like", "maybe", "probably", "its", "is",
    "was", "pay", "paying", "just", "over", "under", "almost", "nearly", "usually", "normally",
}  # fmt: skip


def _two_for_to(words: list[str]) -> list[str]:
    """understanding-v7: "to" or "too" right before a tens word or "hundred", with nothing but
    fillers and approximations before it, is a misheard "two": "About to fifty a month." is
    250 (Moonshine wrote "two fifty" so in four dev replies), where "up to fifty", "drops to
    fifty" and "one fifty to two hundred" keep their "to"."""
    read = list(words)
    for i, word in enumerate(words[:-1]):
        lead_in = i == 0 or words[i - 1] in _LEAD_INS_V7
        if word in ("to", "too") and words[i + 1] in _TWO_HEARD_BEFORE_V7 and lead_in:
            read[i] = "two"
    return read


def _digits_joined(text: str) -> str:
    """ "$1,200.50" -> "1200"; keeps the rest of the text for the word reader."""
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    return re.sub(r"(\d+)\.\d+", r"\1", text)


def read_amounts(
    text: str, *, v5: bool = False, v6: bool = False, v7: bool = False
) -> list[Amount]:
    """Every number in `text`, number words included; a range becomes its midpoint.

    "one eighty" -> 180, "a hundred and twenty" -> 120, "two fifty" -> 250, "between one and
    two hundred" -> 150 (noted as a midpoint), "150 to 200" -> 175. `v5` (patch
    understanding-v5): a number said again at once, with nothing but fillers between, replaces
    the one before ("Um, sixty? Sixty-five maybe." -> 65, not 125). `v7`: a "to" heard for
    "two" (`_two_for_to`).
    """
    words = normalize(_digits_joined(text)).split()
    if v7:
        words = _two_for_to(words)
    v6 = v6 or v7
    v5 = v5 or v6
    runs = _runs(words, v5=v5, v6=v6)
    amounts: list[Amount] = []
    used: set[int] = set()
    for n, (start, end) in enumerate(runs):
        if n in used:
            continue
        value = _parse_run(words[start:end])
        if value is None:
            continue
        if words[start] in _SCALES and start > 0 and words[start - 1] in _VAGUE:
            continue  # "several hundred", "a few hundred": an answer, but no number
        if n + 1 < len(runs):
            nxt_start, nxt_end = runs[n + 1]
            link = words[end:nxt_start]
            ranged = len(link) == 1 and link[0] in _RANGE_WORDS
            if link == ["and"]:
                ranged = start > 0 and words[start - 1] == "between"
            if ranged:
                high = _parse_run(words[nxt_start:nxt_end])
                if high is not None:
                    low = value
                    if low < 10 <= 100 <= high:
                        low *= 10 ** (len(str(high)) - 1)  # "one and two hundred"
                    if low < high:
                        used.add(n + 1)
                        midpoint = (low + high) // 2
                        said = " ".join(words[start:nxt_end])
                        amounts.append(Amount(midpoint, said, f"midpoint of {low}-{high}"))
                        continue
        restated = (
            v5 and n + 1 < len(runs) and all(w in _RESTATING for w in words[end : runs[n + 1][0]])
        )
        if not restated:
            amounts.append(Amount(value, " ".join(words[start:end])))
    return amounts


_MONEY_CONTEXT = re.compile(
    r"\b(dollars?|bucks?|a month|per month|each month|every month|monthly|a bill|"
    r"the bill|my bill|our bill|bill is|bill was|k a year)\b|\$"
)


def has_money_context(text: str) -> bool:
    """Words that make a number an amount of money ("bucks", "a month", "$", "bill")."""
    return bool(_MONEY_CONTEXT.search(text.lower()))


def read_money(
    text: str, *, asked: bool, v5: bool = False, v6: bool = False, v7: bool = False
) -> Amount | None:
    """An amount of money: a number with money words, or any number when the question asked for
    one (`asked`: the state collects it). "We bought it in twenty ten" is not a bill."""
    if not asked and not has_money_context(text):
        return None
    amounts = [a for a in read_amounts(text, v5=v5, v6=v6, v7=v7) if a.value >= 10]
    return amounts[0] if amounts else None


# --- weekdays --------------------------------------------------------------------------------

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_FORMS = {
    "Monday": ("monday", "mondays", "mon"),
    "Tuesday": ("tuesday", "tuesdays", "tues", "tue"),
    "Wednesday": ("wednesday", "wednesdays", "wed", "weds", "wednes"),
    "Thursday": ("thursday", "thursdays", "thurs", "thur", "thu"),
    "Friday": ("friday", "fridays", "fri"),
    "Saturday": ("saturday", "saturdays", "sat"),
    "Sunday": ("sunday", "sundays", "sun"),
}
_NEGATORS = frozenset({"not", "no", "except", "but", "never", "nor", "without"})


@dataclass(frozen=True)
class Found:
    value: str
    words: str


_SPAN_WORDS = frozenset({"to", "through", "thru", "till", "until"})


def _day_of(word: str) -> str | None:
    return next((d for d, forms in _DAY_FORMS.items() if word in forms), None)


def _in_a_span(words: list[str], i: int) -> bool:
    """A day that opens or closes a span of days ("I work Monday to Friday"), not a pick."""
    after = words[i + 1 : i + 3]
    before = words[max(0, i - 2) : i]
    return (len(after) == 2 and after[0] in _SPAN_WORDS and _day_of(after[1]) is not None) or (
        len(before) == 2 and before[1] in _SPAN_WORDS and _day_of(before[0]) is not None
    )


def read_weekday(
    text: str, allowed: tuple[str, ...] = WEEKDAYS, *, v5: bool = False, v6: bool = False
) -> Found | None:
    """The weekday a caller picks: "Wednesdays are best", "Weds"; a day said with "not" before it
    is ruled out ("not Monday, not Tuesday... Wednesday's fine" -> Wednesday). The last day said
    wins when several are ("Tuesday, no, Thursday"). `v5` (patch understanding-v5): the days
    that bound a span ("I work Monday to Friday") are not picked."""
    v5 = v5 or v6
    words = normalize(text).split()
    picked: Found | None = None
    for i, word in enumerate(words):
        day = _day_of(word)
        if day is None or day not in allowed:
            continue
        if v5 and _in_a_span(words, i):
            continue
        if word in ("sat", "sun", "wed", "mon") and len(words) > 1 and not _day_context(words, i):
            continue  # "sat down", "the sun", "wed" as a verb: only as a day near day words
        before = words[max(0, i - 2) : i]
        if before and (
            before[-1] in _NEGATORS or (before[-1] in ("on", "the") and before[0] in _NEGATORS)
        ):
            continue
        picked = Found(day, word)
    return picked


def _day_context(words: list[str], i: int) -> bool:
    near = words[max(0, i - 2) : i + 3]
    return any(w in ("on", "next", "this", "day", "works", "is", "best", "good") for w in near)


# --- time of day -----------------------------------------------------------------------------

DAYPARTS = ("morning", "afternoon", "evening")
_DAYPART_PHRASES: tuple[tuple[str, str], ...] = (
    ("first thing", "morning"),
    ("early in the day", "morning"),
    ("early", "morning"),
    ("before noon", "morning"),
    ("before lunch", "morning"),
    ("in the am", "morning"),
    ("in the a m", "morning"),
    ("mornings", "morning"),
    ("morning", "morning"),
    ("after lunch", "afternoon"),
    ("after noon", "afternoon"),
    ("afternoons", "afternoon"),
    ("afternoon", "afternoon"),
    ("later in the day", "afternoon"),
    ("late in the day", "afternoon"),
    ("midday", "afternoon"),
    ("lunchtime", "afternoon"),
    ("in the pm", "afternoon"),
    ("evenings", "evening"),
    ("evening", "evening"),
    ("tonight", "evening"),
)
_HOUR = re.compile(
    r"\b(after|before|around|about|at|by|from|like|past|until|till|say)\s+"
    r"(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|noon)"
    r"(\s+(o clock|thirty|fifteen|forty five|am|a m|pm|p m))?\b"
    r"(?!\s+(years?|months?|weeks?|days?|hours?|minutes?|dollars?|bucks?|percent|of|kids|"
    r"people|times|hundred|thousand|\d|[a-z]+ty\b|[a-z]+teen\b))"
)
"""An hour after a preposition ("after two", "around nine"), not a count ("for about ten
years") or an amount ("around two hundred")."""
_CLOCK = re.compile(r"\b(\d{1,2})\s?(am|pm|a m|p m)\b")
_HOUR_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_BARE_HOUR_V6 = re.compile(
    rf"\b(\d{{1,2}}|{_HOUR_WORDS})\s?(oclock|o clock)( ish)?\b|\b(\d{{1,2}}|{_HOUR_WORDS})\s?ish\b"
)
"""understanding-v6: an hour said alone ("Three o'clock-ish", "ten-ish"), no preposition; the
normalized text spells o'clock "oclock"."""
_BARE_HOURS = re.compile(
    r"\b(eight|nine|ten|eleven|7|8|9|10|11)\s+or\s+(eight|nine|ten|eleven|8|9|10|11)\b"
)


def _hour_daypart(hour: int, preposition: str) -> str:
    """Daytime hours a visit could take: 7-11 are the morning, 12-6 the afternoon, 7+ pm the
    evening; "after eleven" is late morning still, "before two" is not the morning."""
    if hour == 12:
        return "morning" if preposition in ("before", "until", "till", "by") else "afternoon"
    if 7 <= hour <= 11:
        return "morning"
    if 1 <= hour <= 6:
        return "afternoon"
    return "evening"


def read_daypart(
    text: str, allowed: tuple[str, ...] = DAYPARTS, *, v5: bool = False, v6: bool = False
) -> Found | None:
    """Morning, afternoon or evening from what a caller says: "mornings, ideally", "after lunch",
    "first thing", "any time after two" (afternoon), "early, like eight or nine" (morning).

    A daypart word beats an hour it qualifies ("around seven tonight"). Before `v5` (patch
    understanding-v5) it beat any hour; with it, an hour said first stands when the daypart
    word comes later in another clause ("After two, I've got a class in the morning").
    `v6` (understanding-v6): an hour said alone ("three o'clock-ish") is read too, and where
    the question offers two dayparts, ruling one out picks the other ("Not the morning, I do the
    school run" -> afternoon)."""
    v5 = v5 or v6
    normalized = f" {normalize(text)} "
    best: tuple[int, Found] | None = None
    first_daypart: int | None = None
    ruled_out: set[str] = set()
    for phrase, value in _DAYPART_PHRASES:
        at = normalized.find(f" {phrase} ")
        if at < 0:
            continue
        first_daypart = at if first_daypart is None else min(first_daypart, at)
        if value not in allowed:
            continue
        before = normalized[:at].split()[-2:]
        if any(w in ("not", "no") for w in before):
            ruled_out.add(value)
            continue
        if best is None or at < best[0]:
            best = (at, Found(value, phrase))
    if first_daypart is not None:
        hour = _hour_reading(normalized, allowed) if v5 else None
        if hour is not None and hour[0] < first_daypart:
            between = normalized[hour[1] : first_daypart].split()
            if len(between) > 2:
                return hour[2]
        if best is None and v6:
            return _the_other_daypart(ruled_out, allowed)
        return best[1] if best else None
    hour = _hour_reading(normalized, allowed, v6=v6)
    return hour[2] if hour else None


def _the_other_daypart(ruled_out: set[str], allowed: tuple[str, ...]) -> Found | None:
    """Of two dayparts offered, the one not ruled out ("not the morning" -> afternoon)."""
    left = [d for d in allowed if d not in ruled_out]
    if len(allowed) != 2 or len(left) != 1 or not ruled_out:
        return None
    return Found(left[0], f"not {next(iter(ruled_out))}")


def _hour_reading(
    normalized: str, allowed: tuple[str, ...], *, v6: bool = False
) -> tuple[int, int, Found] | None:
    """(start, end, daypart) of the first hour said ("after two", "9 am", "eight or nine");
    `v6`: also an hour alone ("three o'clock", "ten-ish")."""
    best: tuple[int, int, Found] | None = None
    for clock in _CLOCK.finditer(normalized):
        hour, suffix = int(clock.group(1)), clock.group(2).replace(" ", "")
        value = (
            "morning" if suffix == "am" else "afternoon" if hour < 6 or hour == 12 else "evening"
        )
        if value in allowed:
            best = (clock.start(), clock.end(), Found(value, clock.group(0)))
            break
    if best is not None:
        return best
    for found in _HOUR.finditer(normalized):
        word = found.group(2)
        hour = 12 if word == "noon" else int(word) if word.isdigit() else _NUMBER_WORDS[word]
        suffix = (found.group(4) or "").replace(" ", "")
        if word == "noon":
            value = (
                "morning" if found.group(1) in ("before", "until", "till", "by") else "afternoon"
            )
        elif suffix == "am":
            value = "morning"
        elif suffix == "pm":
            value = "afternoon" if hour < 6 or hour == 12 else "evening"
        else:
            value = _hour_daypart(hour, found.group(1))
        if value in allowed and (best is None or found.start() < best[0]):
            best = (found.start(), found.end(), Found(value, found.group(0).strip()))
    bare = _BARE_HOURS.search(normalized)
    if bare and "morning" in allowed and (best is None or bare.start() < best[0]):
        best = (bare.start(), bare.end(), Found("morning", bare.group(0).strip()))
    alone = _BARE_HOUR_V6.search(normalized) if v6 and best is None else None
    if alone is not None:
        word = alone.group(1) or alone.group(4)
        hour = int(word) if word.isdigit() else _NUMBER_WORDS[word]
        value = _hour_daypart(hour, "")
        if value in allowed:
            best = (alone.start(), alone.end(), Found(value, alone.group(0).strip()))
    return best


# --- yes and no ------------------------------------------------------------------------------

Polarity = Literal["yes", "no"]

_FILLER_TEXT = "um uh er erm ah oh hmm hm mm well so look listen like actually honestly"
_FILLERS = frozenset(_FILLER_TEXT.split())
_YES_PHRASES = (
    "yes", "yeah", "yea", "yep", "yup", "ya", "yah", "aye", "sure", "surely", "certainly",
    "absolutely", "definitely", "of course", "course", "correct", "that is right",
    "that is correct", "indeed", "mhm", "mm hmm", "mm hm", "uh huh", "um hmm", "mm mm hmm",
    "go ahead", "go on", "sounds good", "sounds great", "that works", "works for me", "i do",
    "we do", "you bet", "why not",
)  # fmt: skip
_WEAK_YES = ("okay", "ok", "alright", "all right", "right", "fine", "great", "perfect", "cool")
"""Acknowledgements that are a yes only alone ("Okay, do it."), not before other content
("Okay, Thursday afternoon would work for me" answers another question)."""
_WEAK_TAIL = 2
_NO_PHRASES = (
    "no", "nope", "nah", "naw", "not really", "negative", "i do not", "we do not",
    "i am not", "we are not", "it is not", "not at all", "never",
)  # fmt: skip
_CLOSING_YES = ("so yes", "so yeah", "so okay", "so sure", "so go ahead", "go ahead", "so ok")
_CONTRAST = frozenset({"but", "though", "however", "although"})


def _starts_with(words: list[str], phrases: tuple[str, ...]) -> str | None:
    text = " ".join(words)
    for phrase in sorted(phrases, key=len, reverse=True):
        if text == phrase or text.startswith(phrase + " "):
            return phrase
    return None


_LEADING_V2 = frozenset({"then", "and", "ok", "okay", "alright", "hi", "hello", "hey"})
"""Openers before a yes or no ("Then no, I'll pass", "Okay, no thanks") read by
understanding-v2; alone they are still a weak yes."""
_GO_AHEAD = (
    "send", "book", "put me down", "sign me up", "let us do", "lets do", "do it", "go for it",
    "go ahead", "count me in",
)  # fmt: skip
"""After "okay", "alright": a go-ahead, so a yes however long the rest ("Alright, send them
out")."""
_NOT_A_NO = frozenset({"idea", "clue"})
"""Words that make "no" part of another answer ("No idea, my wife pays it")."""


_WEAK_YES_V6 = (*_WEAK_YES, "grand", "lovely", "brilliant", "excellent", "wonderful", "super")
"""understanding-v6: more acknowledgements that are a yes alone ("Lovely.", "Grand.")."""
_YES_PHRASES_V6 = (*_YES_PHRASES, "spot on", "might as well", "i suppose")
_CLOSING_YES_V6 = (*_CLOSING_YES, "see you then", "see them then", "see him then", "see her then")
"""understanding-v6: a turn that ends by expecting the visit ("Grand, see you then") says yes."""
_GO_AHEAD_ALONE = ("sign me up", "count me in", "go for it", "book it", "put me down", "book me in")
"""understanding-v6: go-aheads that are a yes without an "okay" before them ("Sign me up.")."""


_SOUNDED_YES = tuple(p for p in _YES_PHRASES if p.split()[0] in _FILLERS)
"""The yes phrases that open with a filler sound ("mm hmm", "uh huh"), which filler stripping
would otherwise eat ("Mm-hmm, we own")."""


def polarity(
    text: str, *, refined: bool = False, v5: bool = False, v6: bool = False
) -> tuple[Polarity, str] | None:
    """Whether an answer opens (or closes) with yes or no, and the words that say it.

    "Yeah, we've owned the place for ten years" -> yes; "No, we rent" -> no; "Um, I've been
    meaning to look into that, so okay" -> yes. An answer that turns with "but" ("Yeah it's me,
    but call me tonight") or says both is not a plain yes or no: None.

    `refined` (patch understanding-v2): a no may follow "then", "and", "okay" ("Then no, I'll
    pass"), and "no idea", "no clue" are not a no. `v5` (patch understanding-v5): "mm-hmm" and
    "uh-huh" are a yes, not fillers to skip. `v6` (understanding-v6): more acknowledgements and
    go-aheads ("Lovely.", "Sign me up.", "Might as well"), and "see you then" at the end.
    """
    if v6:
        refined, v5 = True, True
    yes_phrases = _YES_PHRASES_V6 if v6 else _YES_PHRASES
    weak_yes = _WEAK_YES_V6 if v6 else _WEAK_YES
    closing_yes = _CLOSING_YES_V6 if v6 else _CLOSING_YES
    words = normalize(text).split()
    if v5 and (sounded := _starts_with(words, _SOUNDED_YES)) is not None:
        rest = words[len(sounded.split()) :]
        if any(w in _CONTRAST or w in ("not", "no", "never", "nope", "nah") for w in rest):
            return None  # "Mm-hmm. Well, we don't own it": an acknowledgement, then the answer
        return "yes", sounded
    while words and words[0] in _FILLERS:
        words = words[1:]
    if not words:
        return None
    if refined:
        if len(words) > 1 and words[0] == "no" and words[1] in _NOT_A_NO:
            return None
        opened = words
        while len(opened) > 1 and (opened[0] in _LEADING_V2 or opened[0] in _FILLERS):
            opened = opened[1:]
        if opened != words and (
            _starts_with(opened, _NO_PHRASES) or _starts_with(opened, yes_phrases)
        ):
            words = opened
        weak = _starts_with(words, weak_yes)
        rest = words[len(weak.split()) :] if weak else []
        while rest and rest[0] in _FILLERS | {"then", "just"}:
            rest = rest[1:]
        if weak and rest and _starts_with(rest, _GO_AHEAD):
            return "yes", f"{weak} {_starts_with(rest, _GO_AHEAD)}"
    yes, no = _starts_with(words, yes_phrases), _starts_with(words, _NO_PHRASES)
    if yes is None and no is None:
        weak = _starts_with(words, weak_yes)
        if weak is not None and len(words) - len(weak.split()) <= _WEAK_TAIL:
            yes = weak
    if yes is None and no is None and v6:
        yes = _starts_with(words, _GO_AHEAD_ALONE)
    if yes == "no":  # never: "no" is only a no
        yes = None
    if yes and no:
        yes, no = (yes, None) if len(yes) > len(no) else (None, no)
    if no in ("no",) and len(words) > 1 and words[1] in ("problem", "worries", "doubt"):
        no, yes = None, "no problem"
    if yes is None and no is None:
        tail = " ".join(words[-3:])
        closing = next((p for p in closing_yes if tail.endswith(p)), None)
        if closing is None:
            return None
        yes = closing
    if any(w in _CONTRAST for w in words):
        return None
    if yes is not None:
        rest = words[len(yes.split()) :]
        if any(w in ("not", "no", "never") for w in rest[:1]):
            return None
        return "yes", yes
    assert no is not None
    return "no", no


# --- asking to be called back ----------------------------------------------------------------

_CALL_BACK = re.compile(
    r"\b(call|ring|phone|try|reach|catch) (me |us )?(back|again)\b"
    r"|\b(call|ring|phone|try|catch) (me|us) (later|tomorrow|tonight|next week|another time|"
    r"some other time|after|around|at|in the|on|this evening|this afternoon)\b"
    r"|\bcall back\b"
)


_DAY_WORDS = "|".join(form for forms in _DAY_FORMS.values() for form in forms if len(form) > 3)
_CALL_BACK_V5 = re.compile(
    r"\b(call|ring|phone|try|catch) (me |us )?(again |back )?(on |next |this )?"
    rf"({_DAY_WORDS}|weekend|tomorrow|tonight|later|first thing|some ?time|another day)\b"
    r"|\btry (me|us)\b"
)
"""understanding-v5: a day or a time right after "call" ("could you call Friday around noon"),
and "try me" whatever follows ("try me Thursday after five", as BUSINESS.md says callers ask)."""


_LATER = (
    r"(later|tomorrow|tonight|this (morning|afternoon|evening)|next week|in an hour|in a bit|"
    r"another (time|day)|some other time|at the weekend|on the weekend)"
)
_CALL_BACK_V6 = re.compile(
    r"\b(give|gimme) (me|us) a (bell|ring|call|buzz|shout)\b"
    rf"|\b(bad|not a good|awkward|busy|terrible) (time|moment)\b.*\b{_LATER}\b"
    r"|\b(do|finish|continue|talk about|discuss|have) this (another|some other) (time|day)\b"
)
"""understanding-v6: "give me a bell next week", a bad time with a later one named ("Sorry,
bad time, I'm at the school gate. Later this afternoon?"), and "can we do this another time?"
(before, the classifier alone read it, at 0.546-0.55 depending on the machine's arithmetic)."""


def asks_to_be_called_back(text: str, *, v5: bool = False, v6: bool = False) -> str | None:
    """The words of a request to be called back ("ring back this evening", "try me tomorrow
    after four"), which outranks any day or time in the same breath: they are for the call
    back, not the visit. `v5`: also with a weekday ("try me Thursday after five"); `v6`: "give
    me a ring", a bad time with a later one."""
    normalized = normalize(text)
    found = _CALL_BACK.search(normalized)
    if found is None and (v5 or v6):
        found = _CALL_BACK_V5.search(normalized)
    if found is None and v6:
        found = _CALL_BACK_V6.search(normalized)
    return found.group(0) if found else None


# --- asking for a person ---------------------------------------------------------------------

_PERSON_WORDS = (
    r"(manager|supervisor|human|real person|live person|actual person|someone in charge|"
    r"your boss|representative|someone (on|from) your team|a person)"
)
_A_PERSON = re.compile(
    rf"\b(speak|talk|get|put|transfer|connect|pass|hand)\b.{{0,30}}?\b{_PERSON_WORDS}\b"
    rf"|^(just )?(a |an )?(real |live )?{_PERSON_WORDS}( please)?$"
)


_TRANSFER_ME = re.compile(r"\b(transfer|connect) me\b|\bput me (through|over)\b")
"""understanding-v5: asking to be passed on without naming a person ("Can you transfer me?")."""


def asks_for_a_person(text: str, *, v5: bool = False) -> str | None:
    """The words of a request to speak to a person ("Can I get a manager on the phone?", "put
    me through to a human"), which a playbook answers with its transfer (understanding-v2);
    `v5`: also "transfer me", "put me through" alone."""
    normalized = normalize(text)
    found = _A_PERSON.search(normalized)
    if found is None and v5:
        found = _TRANSFER_ME.search(normalized)
    return found.group(0) if found else None


# --- who answered ----------------------------------------------------------------------------

_NOT_A_NAME = r"(?!one\b|body\b|way\b|need\b|point\b|time\b|rush\b)"
_NOT_THEM_ELSE = (
    r"|\b(no one|nobody|no body) (here |lives here )?(by|called|with) that name\b"
    r"|\bi am not (him|her|them)\b"
    r"|\bwrong (number|person|house)\b"
)
_NOT_THEM = re.compile(rf"\bthere is no {_NOT_A_NAME}\w+ (here|living here)\b{_NOT_THEM_ELSE}")
_NOT_THEM_V4 = re.compile(
    rf"\bthere is no (no )?{_NOT_A_NAME}\w+( \w+)? (here|living here)\b{_NOT_THEM_ELSE}"
)
"""understanding-v4: the name may be two words or come after a repeated no ("there's no, no
Mar here", as "Omar" was heard)."""


_GONE_V6 = re.compile(
    r"\b(he|she|they) (is |has |are |have )?moved (out|away|house|on)\b"
    r"|\b(he|she|they) (is|has|are|have) moved\b(?! (in|here|the|it|my|our|his|her))"
    r"|\b(he|she|they) (does not|do not|no longer) lives? here\b"
)
"""understanding-v6: the person asked for no longer lives here ("Oh, she moved out years ago")."""


def says_wrong_person(text: str, *, v4: bool = False, v6: bool = False) -> str | None:
    """The words saying the caller is not the person asked for ("there's no Omar here", "I'm
    not him"), read by understanding-v2 where the state has an intent for it; `v6`: also that
    they moved away."""
    normalized = normalize(text)
    found = (_NOT_THEM_V4 if v4 or v6 else _NOT_THEM).search(normalized)
    if found is None and v6:
        found = _GONE_V6.search(normalized)
    return found.group(0) if found else None


_SPEAKING_TO_THEM_V6 = re.compile(
    r"\byou are (talking|speaking) (to|with) (him|her|them|me)\b"
    r"|\byou (have )?(got|found) (him|her|them|me)\b"
)
"""understanding-v6: "You're talking to him.", "You've got her." answer who is speaking."""


def says_it_is_them(text: str) -> str | None:
    """The words saying the caller is the person asked for without a yes or their name ("You're
    talking to him."), read by understanding-v6."""
    normalized = normalize(text)
    if any(w in ("no", "not", "never") for w in normalized.split()):
        return None
    found = _SPEAKING_TO_THEM_V6.search(normalized)
    return found.group(0) if found else None


_RELATIONS = (
    r"(wife|husband|son|daughter|mother|mom|mum|father|dad|partner|brother|sister|roommate|"
    r"flatmate|boyfriend|girlfriend|grandson|granddaughter|kid|boy|girl|neighbou?r)"
)
_AWAY = re.compile(
    r"\b(he|she|they) (is|are) (not (here|home|in|around|available|back)|out\b|away|"
    r"at (work|school|church|the )|asleep|sleeping|busy|working|on (holiday|vacation|a trip))"
    rf"|\b(this is|it is|i am) (his|her|their) {_RELATIONS}\b"
)


def says_they_are_away(text: str) -> str | None:
    """The words saying someone else answered for the person asked for ("He's at work till
    six, this is his son"), read by understanding-v5 in a state asking for them by name: the
    person exists but is not on the line."""
    found = _AWAY.search(normalize(text))
    return found.group(0) if found else None


def without_echoed_name(text: str, name: str) -> str:
    """The answer without the caller's echo of their own name first ("Omar? No." -> "no"): read
    for its yes or no, as if the name had not been said."""
    words, own = normalize(text).split(), normalize(name).split()
    if own and words[:1] == own[:1]:
        return " ".join(words[1:])
    return " ".join(words)


def only_yes_or_no(example: str) -> bool:
    """An intent example that is one word of yes or no and nothing else ("No.", "Nope.")."""
    words = normalize(example).split()
    said = polarity(example, refined=True)
    return len(words) == 1 and said is not None and said[1] == words[0]


_IDENTITY = ("here", "speaking")
_YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "ya", "yah", "speaking"})


def names_themselves(text: str, name: str) -> str | None:
    """The words when a caller answers "Am I speaking with NAME?" with their name ("Frank
    here", "Yeah, Raj, I was asleep", "This is Beth"), without a no or not in the turn."""
    own = normalize(name).split()
    words = normalize(text).split()
    if not own or any(w in ("no", "not", "nope", "never") for w in words):
        return None
    first = own[0]
    if first not in words:
        return None
    at = words.index(first)
    after = words[at + 1 : at + 2]
    before = words[max(0, at - 3) : at]
    if after and after[0] in _IDENTITY:
        return f"{first} {after[0]}"
    if " ".join(before[-2:]) in ("this is", "it is", "is it") or before[-1:] == ["me"]:
        return " ".join([*before[-2:], first])
    if _YES_WORDS & set(words[: at + 3]):
        return " ".join(words[: at + 1])
    return None
