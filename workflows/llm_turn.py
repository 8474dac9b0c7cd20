"""Pure glue between the script state machine and the LLM tier, safe inside the workflow sandbox.

`llm_turn_request` builds what the LLM sees for a turn (only the transitions the state allows),
`apply_llm_turn` checks what it answered against the script again, and `knowledge_answer` is the
no-LLM answer to a question: the best passage, then the state's question again.
"""

from __future__ import annotations

from collections.abc import Sequence

from workflows.router_messages import (
    AllowedTransition,
    IntentExamples,
    LLMTurnRequest,
    LLMTurnResult,
    Passage,
    TranscriptLine,
)
from workflows.script import DecisionTier, Playbook, ScriptStep, render
from workflows.sentences import sentences

STAY_DESCRIPTION = "stay in this state: answer the caller, then ask this state's question again"


def playbook_intents(playbook: Playbook, state: str) -> list[IntentExamples]:
    """The candidates of `state` as the script engine orders them: its own, then the global ones
    (the `classify_intent` local activity's input)."""
    current = playbook.state(state)
    return [
        IntentExamples(name=i.name, examples=list(i.examples))
        for i in [*current.intents, *playbook.global_intents]
    ]


def allowed_transitions(playbook: Playbook, state: str) -> list[AllowedTransition]:
    """The states a turn in `state` may lead to: itself, its intents' and the global targets."""
    current = playbook.state(state)
    allowed: dict[str, list[str]] = {state: [STAY_DESCRIPTION]}
    if current.collect is not None and current.next is not None:
        allowed.setdefault(current.next, []).append(f"the caller gave '{current.collect}'")
    for intent in [*current.intents, *playbook.global_intents]:
        example = intent.examples[0]
        allowed.setdefault(intent.next, []).append(
            f"{intent.name.replace('_', ' ')} (like '{example}')"
        )
    result = []
    for target, meanings in allowed.items():
        target_state = playbook.state(target)
        ends = f"; ends the call ({target_state.outcome})" if target_state.terminal else ""
        result.append(AllowedTransition(state=target, description="; ".join(meanings) + ends))
    return result


def llm_turn_request(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    transcript: Sequence[TranscriptLine],
    utterance: str,
    passages: Sequence[Passage] = (),
    *,
    max_transcript_lines: int = 12,
) -> LLMTurnRequest:
    return LLMTurnRequest(
        company=playbook.company,
        agent_name=playbook.agent_name,
        goal=playbook.description or playbook.name,
        state=state,
        state_line=render(playbook, playbook.state(state).say, slots),
        allowed=allowed_transitions(playbook, state),
        slots=dict(slots),
        transcript=list(transcript)[-max_transcript_lines:],
        utterance=utterance,
        passages=list(passages),
        fallback_line=render(playbook, playbook.fallback_line, slots),
    )


def apply_llm_turn(
    playbook: Playbook, state: str, slots: dict[str, str], result: LLMTurnResult
) -> ScriptStep:
    """The script's own check of the LLM's answer: a forbidden state or unknown slot is dropped.

    A forbidden transition keeps the call in `state` (the caller has already heard `say`, so the
    text stays what was spoken); only slots the playbook declares are kept.
    """
    allowed = {t.state for t in allowed_transitions(playbook, state)}
    new_slots = dict(slots)
    kept = {k: v for k, v in result.slots.items() if k in playbook.slots and v.strip()}
    new_slots.update(kept)
    cause = "fallback line" if result.used_fallback else f"llm {result.model}".strip()
    reasons = [cause + (f": {result.reason}" if result.reason else "")]
    target = result.next_state
    if target not in allowed:
        reasons.append(f"rejected transition to '{target}' (not allowed from '{state}')")
        target = state
    target_state = playbook.state(target)
    if kept:
        reasons.append(", ".join(f"'{k}' = '{v}'" for k, v in kept.items()))
    if result.cited_ids:
        reasons.append("cited " + ", ".join(result.cited_ids))
    return ScriptStep(
        state=target,
        text=result.say,
        tier=DecisionTier.LLM,
        reason="; ".join(reasons),
        end_call=target_state.terminal,
        outcome=target_state.outcome,
        slots=new_slots,
        citations=list(result.cited_ids),
    )


KNOWLEDGE_ANSWER_SENTENCES = 1
"""A passage's first sentence answers the question; the caller can ask for more, and a long
generated answer is a long stretch of uncached speech before the script's question."""


def spoken_answer(text: str, max_sentences: int = 2) -> str:
    """The first sentences of a passage: a phone answer, not a document read aloud."""
    paragraph = text.strip().split("\n\n", 1)[0]
    parts = sentences(" ".join(paragraph.split()))
    return " ".join(parts[:max_sentences])


def knowledge_answer(
    playbook: Playbook,
    state: str,
    slots: dict[str, str],
    passages: Sequence[Passage],
    *,
    min_score: float,
) -> ScriptStep | None:
    """Without an LLM: answer with the best passage (if close enough), then re-ask the question."""
    if not passages:
        return None
    best = max(passages, key=lambda p: p.score)
    if best.score < min_score:
        return None
    current = playbook.state(state)
    question = render(playbook, current.reprompt or current.say, slots)
    return ScriptStep(
        state=state,
        text=f"{spoken_answer(best.text, KNOWLEDGE_ANSWER_SENTENCES)} {question}",
        tier=DecisionTier.KNOWLEDGE,
        reason=(
            f"knowledge base (no LLM configured): '{best.heading}' from {best.source} "
            f"score {best.score:.2f}"
        ),
        slots=dict(slots),
        citations=[best.id],
    )
