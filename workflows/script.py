"""A sales script (playbook) as a strict, pure state machine.

`Playbook` is the validated form of a YAML playbook. It travels inside the call workflow's
input as the script snapshot, so it is plain pydantic data, and this module imports nothing
that touches files, clocks or randomness: it runs inside Temporal's workflow sandbox.

`opening`, `respond`, `respond_dtmf` and `reprompt` are pure. Each returns a `ScriptStep` that
says which tier decided (built-in rule, intent match, slot filling, fallback) and why, in words a
person reading the call's transcript understands.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from string import Formatter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workflows.intents import MATCH_THRESHOLD, best_guess, is_negated, match_intent, normalize
from workflows.router_messages import LLMTurnRequest
from workflows.sentences import SENTENCE_END, split_at
from workflows.understanding import (
    DAYPARTS,
    WEEKDAYS,
    asks_for_a_person,
    asks_to_be_called_back,
    names_themselves,
    only_yes_or_no,
    polarity,
    read_daypart,
    read_money,
    read_weekday,
    says_it_is_them,
    says_they_are_away,
    says_wrong_person,
    without_echoed_name,
)


class Outcome(StrEnum):
    BOOKED = "booked"
    NOT_INTERESTED = "not_interested"
    CALL_BACK_LATER = "call_back_later"
    DO_NOT_CALL = "do_not_call"
    TRANSFER = "transfer"
    NO_RESPONSE = "no_response"
    HUNG_UP = "hung_up"
    WRONG_PERSON = "wrong_person"
    VOICEMAIL = "voicemail"
    """An answering machine took the call (a message left after the beep, or none)."""
    NO_ANSWER = "no_answer"
    BUSY = "busy"


REVERSIBLE_ENDINGS = frozenset(
    {Outcome.NOT_INTERESTED, Outcome.CALL_BACK_LATER, Outcome.WRONG_PERSON}
)
"""Goodbyes a caller's continuation may still take back before they are heard: "Not Monday...
Tuesday, I guess" is not a request to be called back, nor "Well, I've been thinking about solar
anyhow... sure, why not" a refusal. Never a do-not-call (the caller asked to be left alone), a
transfer or a booking. A caller's question read as one of them is asked again (`check_goodbye`)."""


class DecisionTier(StrEnum):
    """Which part of the router decided a turn (tier 0 rules and script, 1 classifiers, 2 LLM)."""

    SCRIPT = "script"
    RULE = "rule"
    INTENT = "intent"
    """The token matcher (`workflows.intents`)."""
    FALLBACK = "fallback"
    CLASSIFIER = "classifier"
    """The embedding intent classifier (local activity)."""
    KNOWLEDGE = "knowledge"
    """An answer read from the knowledge base (no LLM configured)."""
    LLM = "llm"


CONTEXT_VARIABLES = frozenset({"agent_name", "company", "lead_name"})
"""Placeholders every template may use without declaring a slot."""

_STRICT = ConfigDict(extra="forbid")


class Intent(BaseModel):
    """A way out of a state: what the caller might say, and where the script goes then."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    examples: list[str] = Field(min_length=1)
    next: str
    set: dict[str, str] = Field(default_factory=dict)
    """Slot values this answer implies ("either is fine" -> survey_time: morning)."""


class SlotSpec(BaseModel):
    """A value the script collects from the caller (or gets from the call's context)."""

    model_config = _STRICT

    kind: Literal["text", "choice", "pattern", "money", "weekday", "daypart"] = "text"
    """`money`: an amount, number words too ("one eighty a month" -> 180); `weekday` and
    `daypart`: a day or a time of day as people say them ("Wednesdays are best", "after
    lunch"), limited to the canonical values of `choices` when it has any."""
    choices: dict[str, list[str]] = Field(default_factory=dict)
    """Canonical value -> synonyms; the canonical value itself always matches too."""
    pattern: str | None = None
    """Regular expression for `pattern` slots; group 1 (or the whole match) is the value."""
    default: str = ""
    """Rendered when the slot has no value yet, so a line never reads 'with ?'."""


class State(BaseModel):
    model_config = _STRICT

    say: str = Field(min_length=1)
    reprompt: str | None = None
    rephrase: str | None = None
    """The question asked differently (a yes/no or either/or form) after a second miss."""
    yes: str | None = None
    """The intent a plain yes answers ("Yeah, we've owned it ten years" -> owns_home)."""
    no: str | None = None
    """The intent a plain no answers ("No, we rent" -> rents)."""
    intents: list[Intent] = Field(default_factory=list)
    collect: str | None = None
    """Slot filled from the caller's reply; on a valid value the script moves to `next`."""
    next: str | None = None
    dtmf: dict[str, str] = Field(default_factory=dict)
    """Keys pressed -> next state."""
    outcome: Outcome | None = None
    """Set on terminal states: their `say` is the call's last line."""
    on_confusion: str | None = None
    """Where a third miss in this state goes instead of the playbook's `on_confusion`: a question
    the call can do without (the power bill) moves on rather than giving up on the call."""

    @property
    def terminal(self) -> bool:
        return self.outcome is not None


class VoicemailPolicy(BaseModel):
    """What an outbound call does when Twilio's answering-machine detection hears a machine."""

    model_config = _STRICT

    action: Literal["leave_message", "hang_up"]
    message: str | None = None
    """`leave_message`: the line said after the beep (placeholders as in `say`)."""


class Playbook(BaseModel):
    model_config = _STRICT

    name: str
    description: str = ""
    agent_name: str = "Alex"
    company: str = ""
    start: str
    follow_up_start: str | None = None
    """Opening state for a follow-up call the script promised (a callback)."""
    states: dict[str, State]
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    global_intents: list[Intent] = Field(default_factory=list)
    """Intents recognised in every non-terminal state, after the state's own."""
    fallback_line: str = "Sorry, could you say that again?"
    no_input_goodbye: str = "I can't seem to hear you, so I'll try again another time. Goodbye!"
    max_reprompts: int = Field(default=2, ge=0)
    on_confusion: str | None = None
    """The state a call goes to after a third miss in a state (transfer, offer a call back, or a
    goodbye); without it the fallback line and the rephrased question alternate."""
    acknowledge: str = "Got it."
    """Said before the question again when a turn gave details for later but did not answer."""
    unanswered: str = "Good question. I'm afraid I don't have that detail to hand."
    """Said before the state's question again when the caller asked something that neither the
    script nor the knowledge base answers (patch understanding-v6): "Sorry, could you say that
    again?" to a question heard well asks the caller to repeat what was understood."""
    voicemail: VoicemailPolicy | None = None
    """An answering machine on an outbound call; without it the call hangs up on the machine."""

    @model_validator(mode="after")
    def _check(self) -> Playbook:
        problem = next(iter(playbook_problems(self)), None)
        if problem is not None:
            raise ValueError(problem)
        return self

    def state(self, name: str) -> State:
        try:
            return self.states[name]
        except KeyError:
            raise ValueError(f"playbook '{self.name}' has no state '{name}'") from None

    def state_with_outcome(self, outcome: Outcome) -> str | None:
        return next((n for n, s in self.states.items() if s.outcome == outcome), None)


class ScriptStep(BaseModel):
    """The answer to one event, whichever tier gave it: where the call goes and what is said.

    The script engine returns it for its own tiers, the router (`workflows.router`) for the
    classifier, the knowledge base and the LLM; the call workflow applies it. `slots` is the
    complete slot map after this step (the input slots plus any collected now).
    """

    state: str
    text: str
    tier: DecisionTier
    reason: str
    end_call: bool = False
    outcome: Outcome | None = None
    slots: dict[str, str] = {}
    citations: list[str] = []
    """Knowledge-base passages the text is based on."""
    latency_ms: dict[str, float] = {}
    """Time the router spent on the step's local activities (`classify`, `retrieve`)."""
    llm_request: LLMTurnRequest | None = None
    """Tier 2: the edge streams the LLM's reply for this request; `text` is the safe line."""
    intent: str | None = None
    """The intent this step followed, if it followed one (evals read it)."""


@dataclass(frozen=True)
class TurnContext:
    """What the call knows beyond its state and slots, for the understanding of patch
    `understanding-v1` (the router builds it from the transcript; None is the older engine)."""

    asked: frozenset[str] = frozenset()
    """States whose question the agent has already asked in this call: a slot filled earlier
    skips only a state not asked yet (a caller who changes the day is asked again)."""
    misses: int = 0
    """Turns in a row in the current state that the script did not understand."""
    last_line: str = ""
    """The agent's last line, which the next fallback must not repeat."""
    refined: bool = False
    """Patch understanding-v2: corrections of a detail already given, and the refined yes/no
    reading (`understanding.polarity`)."""
    do_not_call_v3: bool = False
    """Patch understanding-v3: "do not call us" heard anywhere in the turn (`_DO_NOT_CALL_V3`)."""
    goodbye_checked: bool = False
    """The agent has asked its question again in the current state instead of a goodbye it
    read weakly (`check_goodbye`): the next such reading is taken."""
    state_answers_v4: bool = False
    """Patch understanding-v4: a plain yes or no means what the state says it means, even where
    a global intent has that bare word as an example ("No." to "Am I speaking with Omar?" is
    the wrong person, not "not interested"), and after the caller echoes their name ("Omar?
    No."); "there's no NAME here" reads a two-word name."""
    understanding_v5: bool = False
    """Patch understanding-v5: "mm-hmm" is a yes; a number said again replaces the one before;
    a span of days is no pick; an hour said before a daypart word in another clause stands;
    someone answering for the person asked for ("this is his son") means they are away; a
    question matches no answer whose example rests on a yes or no the caller did not say, a
    yes that asks nothing is not taken for an example that is a question, and a bare "No."
    example stands only for a turn that says yes or no (`fits_the_turn`); a goodbye check
    (`check_goodbye`) never says the agent's last line again; "try me Thursday", "call Friday"
    ask for a call back, "transfer me" for a person; a turn not understood whole may be by one
    of its sentences; the token match compares words without inflections (`intents.stem`)."""
    understanding_v6: bool = False
    """Patch understanding-v6 (a third dev set of caller turns, `dev_callers3.yaml`): "a hundred
    and twenty, hundred and thirty" is two amounts; an hour alone ("three o'clock-ish") and a
    daypart ruled out ("not the morning") answer a morning-or-afternoon question; more
    acknowledgements and go-aheads are a yes ("Lovely.", "Sign me up.", "see you then");
    "give me a ring next week" and a bad time with a later one ask for a call back; "she moved
    out" is the wrong person and "you're talking to him" the right one; "no-call list", "stop
    ringing" ask not to be called; a new day or time with a word of change ("make it the
    afternoon instead", "can we move it to Friday?") at a read-back is a no that keeps it; a
    question nothing answers gets `Playbook.unanswered` and the question, not "Sorry, could you
    say that again?" (`recover`)."""
    understanding_v7: bool = False
    """Patch understanding-v7: "to" or "too" before a tens word or "hundred", after nothing but
    fillers, is a misheard "two" ("About to fifty a month." is 250, not 50)."""
    questions_v6: bool = False
    """Patch goodbye-check-v2: a goodbye read by the token match or the classifier from a turn
    that only asks ("Will they call before they come?" as a call back) asks the state's
    question once more (`check_goodbye`)."""


# --- validation ------------------------------------------------------------------------------


def _where(state: str | None, field: str | None) -> str:
    parts = []
    if state is not None:
        parts.append(f"state '{state}'")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


def placeholders(template: str) -> list[str]:
    """Names used as `{name}` in a template; raises ValueError on malformed braces."""
    names = []
    for _, field, spec, conversion in Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder '{{{field}}}' must be a plain name like {{lead_name}}")
        names.append(field)
    return names


def playbook_problems(playbook: Playbook) -> list[str]:
    """Every semantic problem, each as "state 'x', field 'y': what is wrong"."""
    problems: list[str] = []
    states = playbook.states
    known_names = CONTEXT_VARIABLES | set(playbook.slots)

    def check_target(target: str | None, state: str | None, field: str) -> None:
        if target is not None and target not in states:
            problems.append(f"{_where(state, field)}: unknown state '{target}'")

    def check_template(template: str | None, state: str | None, field: str) -> None:
        if template is None:
            return
        try:
            names = placeholders(template)
        except ValueError as error:
            problems.append(f"{_where(state, field)}: {error}")
            return
        for name in names:
            if name not in known_names:
                problems.append(
                    f"{_where(state, field)}: unknown placeholder '{{{name}}}' "
                    f"(declare it under slots, or use one of {sorted(CONTEXT_VARIABLES)})"
                )

    if not states:
        problems.append("field 'states': a playbook needs at least one state")
    check_target(playbook.start, None, "start")
    check_target(playbook.follow_up_start, None, "follow_up_start")
    check_target(playbook.on_confusion, None, "on_confusion")
    for field in ("fallback_line", "no_input_goodbye", "acknowledge", "unanswered"):
        check_template(getattr(playbook, field), None, field)
    problems += voicemail_problems(playbook.voicemail)
    if playbook.voicemail is not None:
        check_template(playbook.voicemail.message, None, "voicemail.message")

    def check_intent(intent: Intent, state: str | None, field: str) -> None:
        check_target(intent.next, state, f"{field}.next")
        for slot in intent.set:
            if slot not in playbook.slots:
                problems.append(f"{_where(state, field + '.set')}: unknown slot '{slot}'")

    for i, intent in enumerate(playbook.global_intents):
        check_intent(intent, None, f"global_intents[{i}]")

    for slot_name, slot in playbook.slots.items():
        where = f"slot '{slot_name}'"
        if slot.kind == "choice" and not slot.choices:
            problems.append(f"{where}, field 'choices': a choice slot needs choices")
        for kind, known in (("weekday", WEEKDAYS), ("daypart", DAYPARTS)):
            unknown = [c for c in slot.choices if c not in known] if slot.kind == kind else []
            if unknown:
                problems.append(
                    f"{where}, field 'choices': a {kind} slot's values are among "
                    f"{list(known)}, not {unknown}"
                )
        if slot.kind == "pattern":
            if not slot.pattern:
                problems.append(f"{where}, field 'pattern': a pattern slot needs a pattern")
            else:
                try:
                    re.compile(slot.pattern)
                except re.error as error:
                    problems.append(
                        f"{where}, field 'pattern': invalid regular expression: {error}"
                    )

    for name, state in states.items():
        check_template(state.say, name, "say")
        check_template(state.reprompt, name, "reprompt")
        check_template(state.rephrase, name, "rephrase")
        for i, intent in enumerate(state.intents):
            check_intent(intent, name, f"intents[{i}]")
        answerable = {i.name for i in [*state.intents, *playbook.global_intents]}
        for field in ("yes", "no"):
            meant = getattr(state, field)
            if meant is not None and meant not in answerable:
                problems.append(
                    f"{_where(name, field)}: unknown intent '{meant}' (one of this state's or "
                    f"the global intents: {sorted(answerable)})"
                )
        for digits, target in state.dtmf.items():
            check_target(target, name, f"dtmf.{digits}")
        check_target(state.next, name, "next")
        check_target(state.on_confusion, name, "on_confusion")
        if state.on_confusion is not None and state.on_confusion == name:
            problems.append(f"{_where(name, 'on_confusion')}: a state cannot be its own way out")
        if state.collect is not None and state.collect not in playbook.slots:
            problems.append(f"{_where(name, 'collect')}: unknown slot '{state.collect}'")
        if state.terminal:
            for field, present in (
                ("intents", bool(state.intents)),
                ("collect", state.collect is not None),
                ("next", state.next is not None),
                ("dtmf", bool(state.dtmf)),
                ("rephrase", state.rephrase is not None),
                ("yes", state.yes is not None),
                ("no", state.no is not None),
                ("on_confusion", state.on_confusion is not None),
            ):
                if present:
                    problems.append(
                        f"{_where(name, field)}: a terminal state (outcome "
                        f"'{state.outcome}') ends the call and cannot have {field}"
                    )
        else:
            if state.collect is not None and state.next is None:
                problems.append(f"{_where(name, 'next')}: required when the state collects a slot")
            if state.next is not None and state.collect is None:
                problems.append(f"{_where(name, 'next')}: only used with 'collect'")
            if not state.intents and state.collect is None:
                problems.append(
                    f"{_where(name, 'intents')}: a state without an outcome needs intents or "
                    "a slot to collect, or it can never be left"
                )

    if not problems:
        reachable = reachable_states(playbook)
        for name in states:
            if name not in reachable:
                problems.append(
                    f"state '{name}': unreachable from the start state '{playbook.start}'"
                )
    return problems


def voicemail_problems(policy: VoicemailPolicy | None) -> list[str]:
    """A message exactly when the policy leaves one."""
    if policy is None:
        return []
    has_message = bool(policy.message and policy.message.strip())
    if policy.action == "leave_message" and not has_message:
        return ["field 'voicemail.message': required when the action is 'leave_message'"]
    if policy.action == "hang_up" and policy.message is not None:
        return ["field 'voicemail.message': only used when the action is 'leave_message'"]
    return []


_RULE_OUTCOMES = (Outcome.DO_NOT_CALL, Outcome.TRANSFER, Outcome.HUNG_UP, Outcome.NO_RESPONSE)
"""Terminal outcomes built-in rules reach from any state."""


def reachable_states(playbook: Playbook) -> set[str]:
    """States some conversation can reach, counting the built-in rules' targets."""
    roots = [playbook.start, *([playbook.follow_up_start] if playbook.follow_up_start else [])]
    roots += [playbook.on_confusion] if playbook.on_confusion else []
    roots += [n for n, s in playbook.states.items() if s.outcome in _RULE_OUTCOMES]
    seen: set[str] = set()
    queue = deque(r for r in roots if r in playbook.states)
    while queue:
        name = queue.popleft()
        if name in seen:
            continue
        seen.add(name)
        state = playbook.states[name]
        if state.terminal:
            continue
        targets = [i.next for i in state.intents] + [i.next for i in playbook.global_intents]
        targets += list(state.dtmf.values()) + ([state.next] if state.next else [])
        targets += [state.on_confusion] if state.on_confusion else []
        queue.extend(t for t in targets if t in playbook.states and t not in seen)
    return seen


def reachable_outcomes(playbook: Playbook) -> set[Outcome]:
    return {
        s.outcome
        for n, s in playbook.states.items()
        if s.outcome is not None and n in reachable_states(playbook)
    }


# --- rendering -------------------------------------------------------------------------------

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")


def render(playbook: Playbook, template: str, slots: dict[str, str]) -> str:
    """Fill `{name}` placeholders; a missing value renders as the slot's default, never raises."""
    values = {"agent_name": playbook.agent_name, "company": playbook.company}
    values.update({name: spec.default for name, spec in playbook.slots.items()})
    values.update({k: v for k, v in slots.items() if v})
    parts: list[str] = []
    try:
        parsed = list(Formatter().parse(template))
    except ValueError:
        return template
    for literal, field, _, _ in parsed:
        parts.append(literal)
        if field is not None:
            parts.append(values.get(field, ""))
    text = " ".join("".join(parts).split())
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


# --- built-in rules --------------------------------------------------------------------------

_DO_NOT_CALL = [
    r"\bstop calling\b",
    r"\b(take|remove|delete|scratch|cross) (me|us|my number|this number|my name) (off|from|out)\b",
    r"\bdo not (ever )?call (me|us|here|this number)? ?(again|anymore|any more|ever)\b",
    r"\bdo not call list\b",
    r"^(please )?do not call( me| us)?( please)?$",
    r"\bnever call (me|us|here|this number)\b",
    r"\blose (my|this) number\b",
    r"\bno more calls\b",
]
_DO_NOT_CALL_V1 = [
    *_DO_NOT_CALL,
    r"\b(put|add) (me|us|my number|this number) (on|to) (your|the) do not call\b",
    r"\bdo not call (list|register|registry)\b",
]
"""understanding-v1 also hears the list asked for by name, even when the last word is lost."""
_DO_NOT_CALL_V3 = [
    *_DO_NOT_CALL_V1,
    r"\bdo not call (me|us|this number|here)\b(?! (before|after|until|till|during|at|on|in|"
    r"between|tomorrow|today|tonight|this|next|later|back|when|while|if))",
    r"\bdo not call$",
]
"""understanding-v3: "do not call us" anywhere in the turn ("Look, please just put me under. Do
not call us.": the list's name misheard), unless a time or condition follows ("do not call me
before five" asks for a later call); and "do not call" as the turn's last words."""
_HANG_UP = [
    r"^(ok |okay |alright |well )?(bye|goodbye|bye bye)( now| then)?$",
    r"\b(i am|i will be) hanging up\b",
    r"\bhang(ing)? up( now)? (on you|bye|goodbye)\b",
]
REPEAT_REASON = "rule repeat"
"""The decision reason's prefix when the caller asked to hear the line again (it is said again)."""

_REPEAT = [
    r"\b(can|could|would) you (please )?(repeat|say) (that|it|this)( again)?\b",
    r"\bsay (that|it) again\b",
    r"^(sorry |i am sorry )?(what|pardon|come again|excuse me)( was that)?( please)?$",
    r"\bwhat did you (just )?say\b",
    r"\bi (did not|could not|can not) (hear|catch|understand) (you|that)\b",
]

_BUILTIN_LINES = {
    Outcome.DO_NOT_CALL: "Understood. I'll make sure we don't call you again. Goodbye.",
    Outcome.HUNG_UP: "Okay, thanks for your time. Goodbye!",
}


def _first_rule(patterns: list[str], text: str) -> str | None:
    for pattern in patterns:
        found = re.search(pattern, text)
        if found:
            return found.group(0).strip()
    return None


def _with_slots(slots: dict[str, str], new: dict[str, str] | None = None) -> dict[str, str]:
    merged = dict(slots)
    merged.update(new or {})
    return merged


def _goto(
    playbook: Playbook,
    target: str,
    slots: dict[str, str],
    tier: DecisionTier,
    reason: str,
) -> ScriptStep:
    state = playbook.state(target)
    return ScriptStep(
        state=target,
        text=render(playbook, state.say, slots),
        tier=tier,
        reason=reason,
        end_call=state.terminal,
        outcome=state.outcome,
        slots=slots,
    )


def _end_with(
    playbook: Playbook, outcome: Outcome, slots: dict[str, str], reason: str
) -> ScriptStep:
    """End the call with `outcome`: the playbook's own terminal state for it, or a built-in line."""
    target = playbook.state_with_outcome(outcome)
    if target is not None:
        return _goto(playbook, target, slots, DecisionTier.RULE, reason)
    text = (
        playbook.no_input_goodbye
        if outcome == Outcome.NO_RESPONSE
        else _BUILTIN_LINES.get(outcome, "Thanks for your time. Goodbye!")
    )
    return ScriptStep(
        state=outcome.value,
        text=render(playbook, text, slots),
        tier=DecisionTier.RULE,
        reason=reason,
        end_call=True,
        outcome=outcome,
        slots=slots,
    )


def _stay(
    playbook: Playbook,
    name: str,
    template: str,
    slots: dict[str, str],
    tier: DecisionTier,
    reason: str,
) -> ScriptStep:
    return ScriptStep(
        state=name, text=render(playbook, template, slots), tier=tier, reason=reason, slots=slots
    )


def _ended(playbook: Playbook, name: str, slots: dict[str, str]) -> ScriptStep | None:
    """The step for an event arriving after the call's last line, or None while it goes on."""
    if name in playbook.states:
        state = playbook.states[name]
        if not state.terminal:
            return None
        text, outcome = render(playbook, state.say, slots), state.outcome
    elif name in {o.value for o in Outcome}:
        text, outcome = "", Outcome(name)
    else:
        raise ValueError(f"playbook '{playbook.name}' has no state '{name}'")
    return ScriptStep(
        state=name,
        text=text,
        tier=DecisionTier.RULE,
        reason=f"the call already ended in state '{name}'",
        end_call=True,
        outcome=outcome,
        slots=dict(slots),
    )


# --- slot filling ----------------------------------------------------------------------------


_CHOICE_LIKE = ("choice", "weekday", "daypart")
"""Slot kinds read from any turn, whatever the state asks."""


def _negated_before(text: str, at: int) -> bool:
    return any(w in ("not", "no") for w in text[:at].split()[-2:])


def extract_slot(
    spec: SlotSpec,
    utterance: str,
    *,
    asked: bool = True,
    v5: bool = False,
    v6: bool = False,
    v7: bool = False,
) -> tuple[str, str] | None:
    """(value, the words it came from) for the slot, if the utterance has one.

    `asked`: the current question asks for this slot; a `money` slot takes a bare number only
    then ("We bought it in twenty ten" is not a bill). `v5`, `v6`, `v7`: the readers of
    patches understanding-v5 to -v7."""
    if spec.kind == "money":
        amount = read_money(utterance, asked=asked, v5=v5, v6=v6, v7=v7)
        if amount is None:
            return None
        words = f"{amount.words} ({amount.note})" if amount.note else amount.words
        return str(amount.value), words
    if spec.kind in ("weekday", "daypart"):
        reader = read_weekday if spec.kind == "weekday" else read_daypart
        known = WEEKDAYS if spec.kind == "weekday" else DAYPARTS
        read = reader(utterance, tuple(spec.choices) or known, v5=v5, v6=v6)
        if read is not None:
            return read.value, read.words
        text = f" {normalize(utterance)} "
        for canonical, synonyms in spec.choices.items():
            for phrase in synonyms:
                needle = normalize(phrase)
                at = text.find(f" {needle} ") if needle else -1
                if at >= 0 and not _negated_before(text, at):
                    return canonical, needle
        return None
    if spec.kind == "choice":
        text = f" {normalize(utterance)} "
        best: tuple[int, str, str] | None = None
        for canonical, synonyms in spec.choices.items():
            for phrase in [canonical, *synonyms]:
                needle = normalize(phrase)
                if not needle:
                    continue
                at = text.find(f" {needle} ")
                if at >= 0 and (best is None or at < best[0]):
                    best = (at, canonical, needle)
        return (best[1], best[2]) if best else None
    if spec.kind == "pattern" and spec.pattern:
        found = re.search(spec.pattern, utterance, re.IGNORECASE)
        if found is None:
            return None
        value = found.group(1) if found.re.groups and found.group(1) else found.group(0)
        return value.strip(), found.group(0).strip()
    text = utterance.strip()
    return (text, text) if text else None


def _skip_filled(
    playbook: Playbook,
    target: str,
    filled_now: set[str],
    reasons: list[str],
    earlier: dict[str, str] | None = None,
    context: TurnContext | None = None,
) -> str:
    """Skip states asking for a slot the caller already gave in this same reply, and with
    `context` (understanding-v1) one given in any earlier turn whose state was not asked yet."""
    seen = set()
    given_before = {n for n, v in (earlier or {}).items() if v} if context is not None else set()
    while target not in seen:
        seen.add(target)
        state = playbook.states[target]
        if state.terminal or state.next is None or state.collect is None:
            return target
        if state.collect in filled_now:
            reasons.append(f"skipped '{target}': '{state.collect}' already given")
        elif context is not None and state.collect in given_before and target not in context.asked:
            reasons.append(f"skipped '{target}': '{state.collect}' given earlier")
        else:
            return target
        target = state.next
    return target


def _slots_in(
    playbook: Playbook, current: State, utterance: str, context: TurnContext | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Choice-like slots (and the state's own pattern or money slot) the utterance gives, with
    their words; with `context` (understanding-v1) also an amount said with money words in any
    state ("our bill is about two hundred a month")."""
    filled: dict[str, str] = {}
    evidence: dict[str, str] = {}
    for name, spec in playbook.slots.items():
        own = name == current.collect
        wanted = spec.kind in _CHOICE_LIKE or (own and spec.kind in ("pattern", "money"))
        if context is not None and spec.kind == "money":
            wanted = True
        if wanted:
            v5 = context is not None and context.understanding_v5
            v6 = context is not None and context.understanding_v6
            v7 = context is not None and context.understanding_v7
            found = extract_slot(spec, utterance, asked=own, v5=v5, v6=v6, v7=v7)
            if found is not None:
                filled[name], evidence[name] = found
    return filled, evidence


def _take_intent(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    filled_now: dict[str, str],
    index: int,
    tier: DecisionTier,
    why: str,
    context: TurnContext | None = None,
) -> ScriptStep:
    current = playbook.state(state)
    intent = (current.intents + playbook.global_intents)[index]
    filled_now = dict(filled_now)
    reasons = [why]
    reasons += [f"also '{n}' = '{v}'" for n, v in filled_now.items()]
    filled_now.update(intent.set)
    reasons += [f"sets '{n}' = '{v}'" for n, v in intent.set.items()]
    target = _skip_filled(playbook, intent.next, set(filled_now), reasons, slots, context)
    step = _goto(playbook, target, _with_slots(slots, filled_now), tier, "; ".join(reasons))
    return step.model_copy(update={"intent": intent.name})


def take_intent(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    utterance: str,
    index: int,
    tier: DecisionTier,
    why: str,
    *,
    context: TurnContext | None = None,
) -> ScriptStep:
    """Follow intent `index` of `state` (its own intents, then the global ones) as `respond`
    would have: slots the utterance gives are kept, states asking for them are skipped.

    Used when a classifier outside the token matcher picked the intent; `why` says how.
    `context` selects the understanding of patch understanding-v1 (see `respond`).
    """
    ended = _ended(playbook, state, slots)
    if ended is not None:
        return ended
    current = playbook.state(state)
    candidates = current.intents + playbook.global_intents
    if not 0 <= index < len(candidates):
        raise ValueError(f"state '{state}' has no intent number {index}")
    filled_now, _ = _slots_in(playbook, current, utterance, context)
    return _take_intent(playbook, state, dict(slots), filled_now, index, tier, why, context)


# --- the four entry points -------------------------------------------------------------------


def opening_state(playbook: Playbook, *, follow_up: bool = False) -> str:
    """The state a call starts in: a follow-up call opens at `follow_up_start` if there is one."""
    return playbook.follow_up_start if follow_up and playbook.follow_up_start else playbook.start


def opening(playbook: Playbook, slots: dict[str, str], *, follow_up: bool = False) -> ScriptStep:
    """The agent's first line: the start state's `say`, rendered with `slots`.

    A follow-up call (one the script promised) opens at `follow_up_start` when the playbook has it.
    """
    start = opening_state(playbook, follow_up=follow_up)
    kind = "follow-up call" if start != playbook.start else "call"
    return _goto(
        playbook,
        start,
        dict(slots),
        DecisionTier.SCRIPT,
        f"opening line of the {kind}: state '{start}'",
    )


def respond(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    utterance: str,
    *,
    match_threshold: float = MATCH_THRESHOLD,
    context: TurnContext | None = None,
    confident_score: float = 0.65,
) -> ScriptStep:
    """Next step after the caller said `utterance` in `state`.

    Order: built-in rules (do not call, hang-up, repeat), the slot the state collects, the
    state's intents (token matches at or above `match_threshold`) then the global ones, and
    finally a fallback that stays in the state.

    With `context` (patch understanding-v1, `respond_v1`): slots from any turn, yes/no answers
    with content, and recovery that never loops.
    """
    if context is not None:
        return respond_v1(
            playbook,
            state,
            slots,
            utterance,
            context,
            match_threshold=match_threshold,
            confident_score=confident_score,
        )
    ended = _ended(playbook, state, slots)
    if ended is not None:
        return ended
    current = playbook.state(state)
    slots = dict(slots)
    text = normalize(utterance)
    if not text:
        return _stay(
            playbook,
            state,
            current.reprompt or playbook.fallback_line,
            slots,
            DecisionTier.FALLBACK,
            "empty transcript",
        )

    if (phrase := _first_rule(_DO_NOT_CALL, text)) is not None:
        return _end_with(playbook, Outcome.DO_NOT_CALL, slots, f"rule do_not_call: '{phrase}'")
    if (phrase := _first_rule(_HANG_UP, text)) is not None:
        return _end_with(playbook, Outcome.HUNG_UP, slots, f"rule hang_up: '{phrase}'")
    if (phrase := _first_rule(_REPEAT, text)) is not None:
        return _stay(
            playbook, state, current.say, slots, DecisionTier.RULE, f"{REPEAT_REASON}: '{phrase}'"
        )

    filled_now, evidence = _slots_in(playbook, current, utterance)
    if current.collect is not None:
        collect = current.collect
        if collect in filled_now and current.next is not None:
            reasons = [f"slot '{collect}' = '{filled_now[collect]}' from '{evidence[collect]}'"]
            reasons += [f"also '{n}' = '{v}'" for n, v in filled_now.items() if n != collect]
            target = _skip_filled(playbook, current.next, set(filled_now), reasons)
            return _goto(
                playbook,
                target,
                _with_slots(slots, filled_now),
                DecisionTier.SCRIPT,
                "; ".join(reasons),
            )

    candidates = current.intents + playbook.global_intents
    match = match_intent(utterance, candidates, match_threshold)
    if match is not None:
        scope = "" if match.index < len(current.intents) else "global "
        return _take_intent(
            playbook,
            state,
            slots,
            filled_now,
            match.index,
            DecisionTier.INTENT,
            f"{scope}intent '{match.name}' score {match.score:.2f} ≥ {match_threshold:.2f} "
            f"(like '{match.example}')",
        )

    if current.collect is not None and playbook.slots[current.collect].kind == "text":
        value = utterance.strip()
        target = _skip_filled(playbook, current.next or state, set(), [])
        return _goto(
            playbook,
            target,
            _with_slots(slots, {current.collect: value}),
            DecisionTier.SCRIPT,
            f"slot '{current.collect}' = '{value}'",
        )

    guess = best_guess(utterance, candidates)
    hint = f" (best '{guess.name}' {guess.score:.2f})" if guess else ""
    if current.collect is not None:
        return _stay(
            playbook,
            state,
            current.reprompt or current.say,
            slots,
            DecisionTier.FALLBACK,
            f"no value for slot '{current.collect}' and no intent ≥ {match_threshold:.2f}{hint}",
        )
    return _stay(
        playbook,
        state,
        playbook.fallback_line,
        slots,
        DecisionTier.FALLBACK,
        f"no intent scored ≥ {match_threshold:.2f}{hint}",
    )


def respond_dtmf(playbook: Playbook, state: str, slots: dict[str, str], digits: str) -> ScriptStep:
    """Next step after the caller pressed keys: the state's own keys, then 0 for a person."""
    ended = _ended(playbook, state, slots)
    if ended is not None:
        return ended
    current = playbook.state(state)
    slots = dict(slots)
    digits = digits.strip()
    if digits in current.dtmf:
        return _goto(
            playbook,
            current.dtmf[digits],
            slots,
            DecisionTier.RULE,
            f"rule dtmf: '{digits}' in state '{state}'",
        )
    if digits == "0":
        transfer = playbook.state_with_outcome(Outcome.TRANSFER)
        if transfer is not None:
            return _goto(playbook, transfer, slots, DecisionTier.RULE, "rule dtmf: '0' -> transfer")
        return _stay(
            playbook,
            state,
            current.say,
            slots,
            DecisionTier.RULE,
            "rule dtmf: '0' but the playbook has no transfer state, repeating",
        )
    return _stay(
        playbook,
        state,
        current.say,
        slots,
        DecisionTier.RULE,
        f"rule dtmf: '{digits}' means nothing in state '{state}', repeating",
    )


def reprompt(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    attempt: int,
    *,
    max_reprompts: int | None = None,
    last_line: str | None = None,
) -> ScriptStep:
    """The caller said nothing: attempt 1..max_reprompts re-asks, beyond that a polite goodbye.

    `max_reprompts` overrides the playbook's (the workflow passes its configured timers).
    With `last_line` (patch reprompt-varied-v1) a re-ask is never the agent's last line again:
    a caller who did not hear one wording gets the next (reprompt, rephrase, the state's line),
    and the second reprompt opens with the rephrased question.
    """
    ended = _ended(playbook, state, slots)
    if ended is not None:
        return ended
    limit = playbook.max_reprompts if max_reprompts is None else max_reprompts
    current = playbook.state(state)
    if attempt <= limit:
        question = current.reprompt or current.say
        reason = f"no input (reprompt {attempt} of {limit})"
        if last_line is None:
            return _stay(playbook, state, question, dict(slots), DecisionTier.RULE, reason)
        wordings = [question, current.rephrase or question, current.say]
        if attempt % 2 == 0:
            wordings = [wordings[1], wordings[0], wordings[2]]
        last = " ".join(last_line.split())
        rendered = [render(playbook, w, slots) for w in wordings]
        text = next((t for t in rendered if t != last), rendered[0])
        return ScriptStep(
            state=state, text=text, tier=DecisionTier.RULE, reason=reason, slots=dict(slots)
        )
    return _end_with(
        playbook,
        Outcome.NO_RESPONSE,
        dict(slots),
        f"no input after {limit} reprompts: goodbye",
    )


# --- understanding-v1 ------------------------------------------------------------------------


_DO_NOT_CALL_V6 = [
    *_DO_NOT_CALL_V3,
    r"\b(no|do not|don t) call (list|register|registry)\b",
    r"\bstop (ringing|phoning|calling|contacting)\b",
]
"""understanding-v6: the list by its other name ("put me on your no-call list") and "stop
ringing this number"."""


def _builtin_rule(
    playbook: Playbook,
    state: str,
    current: State,
    slots: dict[str, str],
    text: str,
    context: TurnContext,
) -> ScriptStep | None:
    do_not_call = _DO_NOT_CALL_V3 if context.do_not_call_v3 else _DO_NOT_CALL_V1
    if context.understanding_v6:
        do_not_call = _DO_NOT_CALL_V6
    if (phrase := _first_rule(do_not_call, text)) is not None:
        return _end_with(playbook, Outcome.DO_NOT_CALL, slots, f"rule do_not_call: '{phrase}'")
    if (phrase := _first_rule(_HANG_UP, text)) is not None:
        return _end_with(playbook, Outcome.HUNG_UP, slots, f"rule hang_up: '{phrase}'")
    if (phrase := _first_rule(_REPEAT, text)) is not None:
        return _stay(
            playbook, state, current.say, slots, DecisionTier.RULE, f"{REPEAT_REASON}: '{phrase}'"
        )
    return None


def answer_polarity(
    yes: str | None,
    no: str | None,
    utterance: str,
    *,
    refined: bool = False,
    v5: bool = False,
    v6: bool = False,
) -> tuple[str, str] | None:
    """(intent, the words) when `utterance` is a plain yes or no and the state names the intent
    each means (`yes`, `no`): "Yeah, we've owned it ten years" -> owns_home. `refined`, `v5`,
    `v6`: the readings of patches understanding-v2, -v5 and -v6 (`polarity`)."""
    said = polarity(utterance, refined=refined, v5=v5, v6=v6)
    if said is None:
        return None
    meant = yes if said[0] == "yes" else no
    return (meant, said[1]) if meant is not None else None


def intent_ending_in(playbook: Playbook, intents: list[Intent], outcome: Outcome) -> int | None:
    """The first of `intents` that leads to the playbook's ending with `outcome` (the call back
    later, the transfer to a person, the wrong person)."""
    return next(
        (
            i
            for i, c in enumerate(intents)
            if c.next in playbook.states and playbook.states[c.next].outcome is outcome
        ),
        None,
    )


def lead_asked_for(playbook: Playbook, current: State, slots: dict[str, str]) -> str | None:
    """The lead's name when the state's line asks for them by it (not the slot's default, such
    as "the homeowner", which is nobody's name)."""
    name, spec = slots.get("lead_name"), playbook.slots.get("lead_name")
    if "{lead_name}" not in current.say or not name or (spec and name == spec.default):
        return None
    return name


def _identity(
    playbook: Playbook,
    current: State,
    slots: dict[str, str],
    utterance: str,
    *,
    v4: bool = False,
    v5: bool = False,
    v6: bool = False,
) -> tuple[int, str] | None:
    """(intent, the words) when a state asking for the lead by name hears "wrong number" (the
    intent leading to the wrong-person ending), that the lead is away (`v5`: the first intent
    leading to a call back) or the caller naming themselves (its `yes`; `v6`: or saying "you're
    talking to him")."""
    name = lead_asked_for(playbook, current, slots)
    if name is None:
        return None
    candidates = current.intents + playbook.global_intents
    if (words := says_wrong_person(utterance, v4=v4, v6=v6)) is not None:
        wrong = intent_ending_in(playbook, candidates, Outcome.WRONG_PERSON)
        return None if wrong is None else (wrong, words)
    if v5 and (words := says_they_are_away(utterance)) is not None:
        away = intent_ending_in(playbook, candidates, Outcome.CALL_BACK_LATER)
        if away is not None and polarity(utterance, refined=True, v5=True) is None:
            return away, words
    words = names_themselves(utterance, name)
    if words is None and v6:
        words = says_it_is_them(utterance)
    if current.yes is None or words is None:
        return None
    index = next((i for i, c in enumerate(candidates) if c.name == current.yes), None)
    return None if index is None else (index, words)


_YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "sure", "okay", "ok", "speaking", "mhm"})


def fits_the_turn(current: State, utterance: str, example: str) -> bool:
    """Whether an intent read from its nearest example (token match or classifier) can stand for
    the caller's turn (patch understanding-v5). A question whose only yes or no is the
    example's ("Who is this, please?" against "Yes, who's calling?") answers nothing; a yes that
    asks nothing, where the state says what a yes means ("Sure, if it's free, why not."), is
    that yes, not the example's question ("Is it really free?"). A no is left to the match: a
    question heard without its mark ("No, what does it cost") must not end the call. An
    example that is a bare no ("No.", "Nope.") stands only for a turn that says yes or no."""
    said = polarity(utterance, refined=True, v5=True)
    if said is None and only_yes_or_no(example) and is_negated(normalize(example)):
        return False  # "There is no catch." shares only "no" with the example "No."
    if "?" in utterance and said is None:
        meant = polarity(example, refined=True, v5=True)
        if meant is None:
            return True
        words = normalize(utterance)
        if meant[0] == "no":
            return is_negated(words)  # "Why would I want that? Not interested."
        return bool(_YES_WORDS & set(words.split()))
    yes = said is not None and said[0] == "yes" and current.yes is not None
    return not (yes and "?" in example)


def rule_phrase(text: str) -> str | None:
    """The words of a built-in rule (do not call, hang up, repeat) in a normalized utterance, as
    the newest script reads them (the edge's judgement of a pause)."""
    for patterns in (_DO_NOT_CALL_V6, _HANG_UP, _REPEAT):
        if (phrase := _first_rule(patterns, text)) is not None:
            return phrase
    return None


def respond_v1(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    utterance: str,
    context: TurnContext,
    *,
    match_threshold: float = MATCH_THRESHOLD,
    confident_score: float = 0.65,
) -> ScriptStep:
    """`respond` with the understanding of patch understanding-v1.

    Order: built-in rules; the slot the state collects (number words, weekdays and times of
    day as people say them); a confident token match (`confident_score`); a yes or no with
    content when the state names the intents they mean; a token match at `match_threshold`
    (tier 1 may overrule it); else recovery (`recover`). Slots any turn gives are kept, and a
    state whose slot was given earlier is skipped when the script reaches it.
    """
    ended = _ended(playbook, state, slots)
    if ended is not None:
        return ended
    current = playbook.state(state)
    slots = dict(slots)
    text = normalize(utterance)
    if not text:
        return recover(playbook, state, slots, {}, context, "empty transcript")
    rule = _builtin_rule(playbook, state, current, slots, text, context)
    if rule is not None:
        return rule
    candidates = current.intents + playbook.global_intents

    def take(index: int, why: str, filled: dict[str, str] | None = None) -> ScriptStep:
        """Intent `index`, taken by the script's own reading (`why`: the words that say it)."""
        reason = f"{why}: intent '{candidates[index].name}'"
        return _take_intent(
            playbook, state, slots, filled or {}, index, DecisionTier.SCRIPT, reason, context
        )

    v4, v5, v6 = context.state_answers_v4, context.understanding_v5, context.understanding_v6
    if (words := asks_to_be_called_back(utterance, v5=v5, v6=v6)) is not None:
        index = intent_ending_in(playbook, candidates, Outcome.CALL_BACK_LATER)
        if index is not None:
            return take(index, f"'{words}' asks for a call back")

    if context.refined and (
        named := _identity(playbook, current, slots, utterance, v4=v4, v5=v5, v6=v6)
    ):
        return take(named[0], f"'{named[1]}' answers who is speaking")
    person = asks_for_a_person(utterance, v5=v5) if context.refined else None
    index = intent_ending_in(playbook, candidates, Outcome.TRANSFER) if person is not None else None
    if person is not None and index is not None:
        return take(index, f"'{person}' asks for a person")

    filled_now, evidence = _slots_in(playbook, current, utterance, context)
    if current.collect is not None and current.collect in filled_now and current.next:
        collect = current.collect
        reasons = [f"slot '{collect}' = '{filled_now[collect]}' from '{evidence[collect]}'"]
        reasons += [f"also '{n}' = '{v}'" for n, v in filled_now.items() if n != collect]
        target = _skip_filled(playbook, current.next, set(filled_now), reasons, slots, context)
        return _goto(
            playbook,
            target,
            _with_slots(slots, filled_now),
            DecisionTier.SCRIPT,
            "; ".join(reasons),
        )

    correction = (
        _correction(playbook, current, slots, filled_now, utterance, v6=v6)
        if context.refined
        else None
    )
    if correction is not None:
        index, changed = correction
        return take(index, f"'{changed}' changes a detail given before", filled_now)
    match = match_intent(utterance, candidates, match_threshold, stemmed=v5)
    scope = "" if match is None or match.index < len(current.intents) else "global "
    lead = lead_asked_for(playbook, current, slots) if v4 else None
    said = without_echoed_name(utterance, lead) if lead else utterance
    answered = answer_polarity(current.yes, current.no, said, refined=context.refined, v5=v5, v6=v6)
    if v4 and match is not None and scope and answered and only_yes_or_no(match.example):
        match = None  # a global intent's bare "No." gives way to what the state says a no means
    if v5 and match is not None and not fits_the_turn(current, utterance, match.example):
        match = None
    if match is not None and match.score >= confident_score:
        return _take_intent(
            playbook,
            state,
            slots,
            filled_now,
            match.index,
            DecisionTier.SCRIPT,
            f"{scope}intent '{match.name}' score {match.score:.2f} ≥ {confident_score:.2f} "
            f"(like '{match.example}')",
            context,
        )
    if answered is not None:
        meant, words = answered
        index = next(i for i, c in enumerate(candidates) if c.name == meant)
        return _take_intent(
            playbook,
            state,
            slots,
            filled_now,
            index,
            DecisionTier.SCRIPT,
            f"'{words}' answers the question: intent '{meant}'",
            context,
        )
    if v5 and (
        sentence := _a_sentence_understood(
            playbook,
            state,
            slots,
            utterance,
            context,
            match_threshold=match_threshold,
            confident_score=confident_score,
        )
    ):
        return sentence
    if match is not None:
        return _take_intent(
            playbook,
            state,
            slots,
            filled_now,
            match.index,
            DecisionTier.INTENT,
            f"{scope}intent '{match.name}' score {match.score:.2f} ≥ {match_threshold:.2f} "
            f"(like '{match.example}')",
            context,
        )
    if current.collect is not None and playbook.slots[current.collect].kind == "text":
        value = utterance.strip()
        target = _skip_filled(playbook, current.next or state, set(), [], slots, context)
        return _goto(
            playbook,
            target,
            _with_slots(slots, {**filled_now, current.collect: value}),
            DecisionTier.SCRIPT,
            f"slot '{current.collect}' = '{value}'",
        )
    guess = best_guess(utterance, candidates, stemmed=v5)
    hint = f" (best '{guess.name}' {guess.score:.2f})" if guess else ""
    what = f"no value for slot '{current.collect}' and no" if current.collect else "no"
    return recover(
        playbook,
        state,
        slots,
        filled_now,
        context,
        f"{what} intent ≥ {match_threshold:.2f}{hint}",
        utterance,
    )


def _a_sentence_understood(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    utterance: str,
    context: TurnContext,
    *,
    match_threshold: float,
    confident_score: float,
) -> ScriptStep | None:
    """The script's own reading of one sentence of a turn it did not understand whole, the last
    such sentence first (patch understanding-v5): a question or a remark around the answer
    dilutes it ("Is this about the roof? I just rent the downstairs unit.", "Well, I've been
    thinking about solar. Sure, why not?"). Only a reading as sure as the script's own (a rule,
    a slot, a confident match, a yes or no the state gives a meaning) stands for the turn, and
    only when the sentences so read agree on where the call goes."""
    parts = [part for part in split_at(utterance, SENTENCE_END) if normalize(part)]
    if len(parts) < 2:
        return None
    read: list[tuple[str, ScriptStep]] = []
    for part in reversed(parts):
        step = respond_v1(
            playbook,
            state,
            slots,
            part,
            context,
            match_threshold=match_threshold,
            confident_score=confident_score,
        )
        if step.tier is DecisionTier.SCRIPT:
            read.append((part.strip(), step))
    if not read or len({step.state for _, step in read}) > 1:
        return None  # none, or "Is it really free? There is no catch." read two ways
    part, step = read[0]
    return step.model_copy(update={"reason": f"sentence '{part}': {step.reason}"})


GOODBYE_CHECK_REASON = "goodbye check"
"""How a line that checks a weakly read goodbye begins its reason (the record, `turn_context`)."""


def check_goodbye(
    playbook: Playbook, state: str, step: ScriptStep, context: TurnContext, utterance: str = ""
) -> ScriptStep | None:
    """The state's question again, yes-or-no form first, instead of `step` when it ends the call
    as not interested on a weak reading: a token match of a global intent below the confident
    score, which the classifier did not overrule ("Who is Sunny Solar exactly. I haven't heard
    of you." at 0.49). A sales team would rather ask once more than lose a lead to a misheard
    word; a refusal the script or the classifier reads for itself ("No, I'm not interested",
    "We looked into it and decided against it") or a second weak one in the state ends it.
    With `questions_v6`, also any goodbye a caller's question was read as (`only_asks`)."""
    if context.goodbye_checked:
        return None
    if not (
        _weak_refusal(playbook, state, step) or _question_read_as_goodbye(step, utterance, context)
    ):
        return None
    current = playbook.state(state)
    asks = [render(playbook, q, step.slots) for q in (current.rephrase, current.reprompt) if q]
    asks.append(render(playbook, current.say, step.slots))
    if context.understanding_v5:  # never the agent's last line again (a rephrase just said)
        last = " ".join(context.last_line.split())
        asks = [a for a in asks if " ".join(a.split()) != last] or asks
    return ScriptStep(
        state=state,
        text=asks[0],
        tier=DecisionTier.FALLBACK,
        reason=f"{GOODBYE_CHECK_REASON} instead of {step.state}: {step.reason}",
        slots=step.slots,
        latency_ms=step.latency_ms,
    )


def _weak_refusal(playbook: Playbook, state: str, step: ScriptStep) -> bool:
    """A not-interested goodbye from a token match of a global intent (the classifier did not
    take the turn)."""
    own = {i.name for i in playbook.state(state).intents}
    global_intent = (
        step.intent is not None
        and step.intent not in own
        and any(i.name == step.intent for i in playbook.global_intents)
    )
    return (
        step.end_call
        and step.outcome is Outcome.NOT_INTERESTED
        and step.tier is DecisionTier.INTENT
        and global_intent
    )


_PUTS_OFF = re.compile(
    r"\b(later|(an)?other (time|day)|tomorrow|tonight|next (week|month)|some other)\b"
)
"""Words that put the call off ("can we do this another time?"): a question with them asks for a
call back."""


def _question_read_as_goodbye(step: ScriptStep, utterance: str, context: TurnContext) -> bool:
    """A goodbye the token match or the classifier read from a turn that only asks: a caller
    asking about the visit ("Will they call before they come?", read as a call back at 0.70)
    is still in the call. Not when the question puts the call off ("Can we do this another
    time?") or asks to be called back in so many words ("Can you try me Friday?")."""
    return (
        context.questions_v6
        and step.end_call
        and step.outcome in REVERSIBLE_ENDINGS
        and step.tier in (DecisionTier.INTENT, DecisionTier.CLASSIFIER)
        and only_asks(utterance)
        and asks_to_be_called_back(utterance, v5=True) is None
        and _PUTS_OFF.search(normalize(utterance)) is None
    )


def only_asks(text: str) -> bool:
    """Every sentence of `text` is a question (closed by a question mark)."""
    pieces = split_at(text, SENTENCE_END)
    return bool(pieces) and all(piece.endswith("?") for piece in pieces)


_CHANGE_WORDS_V6 = re.compile(
    r"\b(instead|rather|change it|move it|switch it|make it|swap it|push it|different)\b"
)


def _correction(
    playbook: Playbook,
    current: State,
    slots: dict[str, str],
    filled_now: dict[str, str],
    utterance: str = "",
    *,
    v6: bool = False,
) -> tuple[int, str] | None:
    """(the state's `no` intent, the slot) when a state reading back a detail (its line names
    the slot) and asking a yes/no question hears a new value for it ("Actually Thursday's
    better" when Monday was read back): the answer is a no, and the new value is kept, so the
    script skips re-asking it. `v6` (understanding-v6): a value said with a word of change
    ("make it the afternoon instead", "can we move it to Friday?") is one too, whether or not
    it differs from the one read back, since the caller asks to change something."""
    if current.collect is not None or current.no is None:
        return None
    read_back = [n for n in filled_now if f"{{{n}}}" in current.say]
    changed = next((n for n in read_back if slots.get(n) and slots[n] != filled_now[n]), None)
    if changed is None and v6 and _CHANGE_WORDS_V6.search(normalize(utterance)) is not None:
        changed = next(iter(read_back), None)
    if changed is None:
        return None
    index = next((i for i, c in enumerate(current.intents) if c.name == current.no), None)
    return None if index is None else (index, f"{changed} = {filled_now[changed]}")


def recover(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    filled_now: dict[str, str],
    context: TurnContext,
    why: str,
    utterance: str = "",
) -> ScriptStep:
    """A turn the script did not understand, without ever looping on one line.

    The first miss in a state says the fallback line (a state collecting a slot asks its
    reprompt); the second asks the question differently (`rephrase`); the third goes to the
    state's `on_confusion`, else the playbook's, and a miss there ends the call politely.
    Never the agent's last line again. Details the turn gave for later are kept and
    acknowledged; a question of the caller's (`utterance` only asks; understanding-v6) is
    acknowledged as one (`Playbook.unanswered`) before the state's question. Tier FALLBACK, so
    the router's tiers 1 and 2 may still answer the turn instead.
    """
    current = playbook.state(state)
    new_slots = _with_slots(slots, filled_now)
    noted = {n: v for n, v in filled_now.items() if slots.get(n) != v}
    reasons = [why, *(f"noted '{n}' = '{v}' for later" for n, v in noted.items())]
    misses = context.misses
    reasons.append(f"miss {misses + 1} in '{state}'")
    question = current.reprompt or current.say
    second = current.rephrase or question
    on_confusion = current.on_confusion or playbook.on_confusion
    if misses >= 2 and on_confusion is not None:
        if on_confusion != state:
            reasons.append(f"on_confusion: '{on_confusion}'")
            step = _goto(playbook, on_confusion, new_slots, DecisionTier.FALLBACK, "")
            return step.model_copy(update={"reason": "; ".join(reasons)})
        reasons.append("still not understood in the on_confusion state: goodbye")
        ended = _end_with(playbook, Outcome.NO_RESPONSE, new_slots, "")
        return ended.model_copy(
            update={"tier": DecisionTier.FALLBACK, "reason": "; ".join(reasons)}
        )
    if context.understanding_v6 and misses == 0 and only_asks(utterance):
        reasons.append("a question not answered")
        options = [f"{playbook.unanswered} {question}", second, playbook.fallback_line]
    elif noted and misses == 0:
        options = [f"{playbook.acknowledge} {question}", second, playbook.fallback_line]
    elif misses == 0:
        first = question if current.collect is not None else playbook.fallback_line
        options = [first, second, question]
    elif misses % 2 == 1:
        options = [second, question, playbook.fallback_line]
    else:
        options = [playbook.fallback_line, second, question]
    last = " ".join(context.last_line.split())
    text = next(
        (t for t in (render(playbook, o, new_slots) for o in options) if t != last),
        render(playbook, current.say, new_slots),
    )
    return ScriptStep(
        state=state,
        text=text,
        tier=DecisionTier.FALLBACK,
        reason="; ".join(reasons),
        slots=new_slots,
    )
