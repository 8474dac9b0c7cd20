"""What the caller's next answer is expected to look like, and whether a transcript is one.

The workflow attaches an `ExpectedAnswer` to each decision (the state's intents and the slots it
can fill); the edge judges a pause with `judge_answer` on the speculative transcript, locally and
without a round trip: a complete answer ends the turn at once, an unfinished one ("my bill is
around...") waits for the turn model. Pure, so the workflow, the edge and the evals share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, Field

from workflows.intents import STOPWORDS, match_intent, normalize, tokens
from workflows.script import (
    Intent,
    Playbook,
    SlotSpec,
    answer_polarity,
    extract_slot,
    lead_asked_for,
    rule_phrase,
)
from workflows.sentences import PAUSE, SENTENCE_END, split_at
from workflows.understanding import (
    asks_for_a_person,
    asks_to_be_called_back,
    names_themselves,
    says_it_is_them,
    says_they_are_away,
    says_wrong_person,
    without_echoed_name,
)

CONFIDENT_MATCH = 0.65
"""A token-match score at which a short answer counts as complete (the router's confident score)."""

_NEVER_LAST_TEXT = "a an the and or but because if my our your their um uh er erm uhm hmm mm i we"
_CONTRACTED_TEXT = (
    "it's that's there's he's she's what's i'm we're they're you're i'd we'd they'd you'd "
    "i've we've they've you've i'll we'll they'll you'll"
)
_NEVER_LAST = frozenset(_NEVER_LAST_TEXT.split()) | frozenset(_CONTRACTED_TEXT.split())
"""Words no sentence ends on, whatever punctuation the recognizer put after them ("We don't,
yeah, but.", "Um.", "I."), among them a verb contracted onto its subject: English never leaves
one last ("Yes, it is." but not "Yes, it's."), so "Um, in the summer, it's." stops mid-answer
(a dev caller's bill, cut there and asked again)."""
_RARELY_LAST_TEXT = "so about around like is was to of for with maybe probably think"
_RARELY_LAST = frozenset(_RARELY_LAST_TEXT.split())
"""Words a sentence ends on only when it is closed ("Yes, it is.", "I think so.", "What's this
about?"), not when the words just stop ("my bill is around", "it's like")."""
_WORD = re.compile(r"[a-z0-9']+")


_NAME = re.compile(r"(?<=\w[ ,] )[A-Z][a-z]+|(?<=\w )[A-Z][a-z]+")
"""A capitalised word after the first: a name in an example ("Yes, this is Jordan")."""
_NOT_CONTENT = frozenset({"not", "yes", "yeah", "yep", "nope", "nah", "never", "sure"})


class ExpectedAnswer(BaseModel):
    """The question the agent just asked and what an answer to it looks like."""

    state: str
    question: str = ""
    """The agent's line, as said (an STT prompt can carry it)."""
    intents: list[Intent] = Field(default_factory=list)
    """The state's own intents, then the global ones."""
    collect: str | None = None
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    """Slots an answer here can fill (the state's own and the script's choice slots)."""
    yes: str | None = None
    """The intent a plain yes answers here (the state's `yes`), if any."""
    no: str | None = None
    """The intent a plain no answers here (the state's `no`), if any."""
    own_intents: int | None = None
    """How many of `intents` are the state's own (None: not said, as in an older decision)."""
    lead_name: str | None = None
    """The name the question asks for ("Am I speaking with Omar?"), so a pause's "Omar here" or
    "there's no Omar here" is judged as the router reads it (None: it asks for nobody)."""

    def is_own_intent(self, name: str) -> bool:
        own = self.intents if self.own_intents is None else self.intents[: self.own_intents]
        return any(intent.name == name for intent in own)

    def answer_words(self) -> list[str]:
        """Content words of the examples of the intents a yes or a no means here ("own",
        "rent"): dev callers' "We own it" was heard as "We don't it" without them."""
        meant = {self.yes, self.no}
        examples = [e for intent in self.intents if intent.name in meant for e in intent.examples]
        names = {w.lower() for e in examples for w in _NAME.findall(e)}
        words = [
            word
            for example in examples
            for word in tokens(example)
            if len(word) > 2 and word not in STOPWORDS | _NOT_CONTENT | names
        ]
        return list(dict.fromkeys(words))

    def vocabulary(self) -> list[str]:
        """Words an answer here likely contains (the yes/no intents' words, then slot values),
        to bias speech recognition."""
        words: list[str] = self.answer_words()
        for spec in self.slots.values():
            for canonical, synonyms in spec.choices.items():
                words.extend([canonical, *synonyms])
        return list(dict.fromkeys(words))


class AnswerJudgement(BaseModel):
    complete: bool
    reason: str
    unfinished: bool = False
    """Words that stop where a sentence cannot: the caller is likely to go on."""
    meaning: str | None = None
    """What a complete answer says, as tier 0 reads it: `slot:NAME=VALUE`, `intent:NAME` (a
    confident match or a plain yes/no the state names), `rule:PHRASE`, `call back`."""
    answers_here: bool = False
    """It answers this question in the state's own terms (its slot, its own intents, its yes or
    no), not a built-in rule or a global intent: what a less likely reading of the audio may be
    taken for (`media_edge.moonshine_stt`'s second look)."""
    question: bool = False
    """Not an answer the script understands, but a question of the caller's own ("How long
    would they be here for?"): the caller has handed the turn over and waits for a reply."""


def expected_answer(
    playbook: Playbook,
    state: str,
    question: str = "",
    call_slots: Mapping[str, str] | None = None,
) -> ExpectedAnswer | None:
    """What an answer to `state`'s question looks like; None for a terminal state.
    `call_slots`: the call's, for the name a question asks for."""
    current = playbook.states.get(state)
    if current is None or current.terminal:
        return None
    lead = lead_asked_for(playbook, current, dict(call_slots)) if call_slots else None
    slots = {
        name: spec
        for name, spec in playbook.slots.items()
        if spec.kind in ("choice", "weekday", "daypart") or name == current.collect
    }
    return ExpectedAnswer(
        state=state,
        question=question,
        intents=[*current.intents, *playbook.global_intents],
        own_intents=len(current.intents),
        collect=current.collect,
        slots=slots,
        yes=current.yes,
        no=current.no,
        lead_name=lead,
    )


def sounds_unfinished(text: str) -> bool:
    """The words stop where a sentence cannot end ("it's around", "and", "um", "Well,")."""
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    if not words or words[-1] in _NEVER_LAST:
        return True
    ending = text.rstrip().rstrip(",").rstrip()  # "... if possible.," is closed
    if ending.endswith(("...", "…")):
        return True
    if ending.endswith((".", "?", "!")):
        return False
    return words[-1] in _RARELY_LAST or text.rstrip().endswith((",", "-", "—"))


_A_MOMENT = re.compile(
    r"(?:(?:um|uh|oh|okay|ok|so|well|sorry)\W+)*"
    r"(?:let me (?:check|think|see|look)|hold on|hang on|(?:one|just a|give me a|wait a) "
    r"(?:sec|second|moment|minute)\b)\W*"
)


def asks_for_a_moment(text: str) -> bool:
    """The turn's last clause asks the agent to wait ("Let me check my calendar.", "Hold on.",
    "Okay, one sec."): the caller will go on after looking or thinking, so a pause that has not
    answered the question is held like words that trail off (a dev caller's "Let me check my
    calendar... Thursday works." was ended at the first pause and read as no day working)."""
    clauses = split_at(text.lower(), SENTENCE_END | PAUSE)
    if not clauses:
        return False
    found = _A_MOMENT.match(clauses[-1])
    return found is not None and len(_WORD.findall(clauses[-1][found.end() :])) <= 2


def asks_a_question(text: str) -> bool:
    """The recognizer closed the words with a question mark, and they do not trail off."""
    return text.rstrip().endswith("?") and not sounds_unfinished(text)


def asks_something(text: str) -> bool:
    """Any sentence of the turn is a question ("Who is Sunny Solar exactly? I haven't heard of
    you."), wherever it stands."""
    return "?" in text


def _closed_where_a_comma_is(text: str) -> str | None:
    """The words closed with a full stop where the recognizer put a comma or dash after them,
    when that mark is all that sounds unfinished; None otherwise."""
    words = text.rstrip()
    bare = words.rstrip(",-\u2014").rstrip()
    if not bare or bare == words or sounds_unfinished(bare + "."):
        return None
    return bare + "."


def judge_answer(expect: ExpectedAnswer | None, text: str) -> AnswerJudgement:
    """Is `text` a complete answer to the question? Only one the router's tier 0 understands
    at once is (the same functions): a built-in rule, a request to be called back, the slot the
    state collects (number words, weekdays, times of day), a confident intent match, or a
    plain yes/no where the state says what it means; and no unfinished ending. With no
    question (`expect` None) it only says whether the words trail off. An answer that only a
    comma after it makes sound unfinished ("Early morning,", "Friday, like I said,": Moonshine
    closes some whole replies so) is not complete, but not held as trailing off either: Smart
    Turn or the maximum silence ends it, not the 2.5 s a caller looking for a word gets."""
    normalized = normalize(text)
    if not normalized:
        return AnswerJudgement(complete=False, reason="no words")
    if sounds_unfinished(text):
        closed = _closed_where_a_comma_is(text)
        if closed is not None and expect is not None and judge_answer(expect, closed).complete:
            return AnswerJudgement(complete=False, reason="an answer, closed with a comma")
        return AnswerJudgement(complete=False, reason="sounds unfinished", unfinished=True)
    if expect is None:
        return AnswerJudgement(complete=False, reason="no question")
    if (phrase := rule_phrase(normalized)) is not None:
        return AnswerJudgement(complete=True, reason=f"rule: '{phrase}'", meaning=f"rule:{phrase}")
    if expect.collect is not None and expect.collect in expect.slots:
        found = extract_slot(expect.slots[expect.collect], text, v5=True, v6=True, v7=True)
        if found is not None and expect.slots[expect.collect].kind != "text":
            return AnswerJudgement(
                complete=True,
                reason=f"slot '{expect.collect}' = '{found[0]}'",
                meaning=f"slot:{expect.collect}={found[0]}",
                answers_here=True,
            )
    if (words := asks_to_be_called_back(text, v5=True, v6=True)) is not None:
        return AnswerJudgement(
            complete=True, reason=f"asks for a call back: '{words}'", meaning="call back"
        )
    if (words := asks_for_a_person(text, v5=True)) is not None:
        return AnswerJudgement(
            complete=True, reason=f"asks for a person: '{words}'", meaning="a person"
        )
    if expect.lead_name is not None and (words := _who_answers(text, expect.lead_name)):
        return AnswerJudgement(
            complete=True, reason=f"says who is speaking: '{words}'", meaning="identity"
        )
    match = match_intent(text, expect.intents, CONFIDENT_MATCH, stemmed=True)
    if match is not None:
        return AnswerJudgement(
            complete=True,
            reason=f"intent '{match.name}' score {match.score:.2f}",
            meaning=f"intent:{match.name}",
            answers_here=expect.is_own_intent(match.name),
        )
    said = without_echoed_name(text, expect.lead_name) if expect.lead_name else text
    answered = answer_polarity(expect.yes, expect.no, said, refined=True, v5=True, v6=True)
    if answered is not None:
        return AnswerJudgement(
            complete=True,
            reason=f"'{answered[1]}' answers it: intent '{answered[0]}'",
            meaning=f"intent:{answered[0]}",
            answers_here=True,
        )
    if asks_for_a_moment(text):
        return AnswerJudgement(complete=False, reason="asks for a moment", unfinished=True)
    if asks_a_question(text):
        return AnswerJudgement(complete=False, reason="a question of the caller's", question=True)
    return AnswerJudgement(complete=False, reason="no confident intent or slot")


def _who_answers(text: str, lead_name: str) -> str | None:
    """The words saying who is on the line, as the router's identity readings take them: the
    wrong person, the lead away, the lead naming themselves or "you're talking to him"."""
    return (
        says_wrong_person(text, v4=True, v6=True)
        or says_they_are_away(text)
        or names_themselves(text, lead_name)
        or says_it_is_them(text)
    )


@dataclass(frozen=True)
class AnswerReadings:
    """The script's view of a speech model's readings of one answer (`SpeechContext.readings`):
    the likeliest reading is kept when it is understood at all or trails off; otherwise a less
    likely one may stand for it if it answers in the state's own terms. A rule ("stop calling")
    or a global intent is never read into the audio this way."""

    expect: ExpectedAnswer

    def settled(self, text: str) -> bool:
        judgement = judge_answer(self.expect, text)
        return judgement.complete or judgement.unfinished

    def answers(self, text: str) -> bool:
        return judge_answer(self.expect, text).answers_here

    def asks_a_day_or_time(self) -> bool:
        collect = self.expect.collect
        spec = self.expect.slots.get(collect) if collect is not None else None
        return spec is not None and spec.kind in ("weekday", "daypart")

    def gives_the_day_or_time(self, text: str) -> bool:
        if not self.asks_a_day_or_time():
            return False
        meaning = judge_answer(self.expect, text).meaning or ""
        return meaning.startswith(f"slot:{self.expect.collect}=")
