"""Messages of the decision router's tiers 1 and 2 (intent classifier, knowledge base, LLM).

Plain pydantic data with no I/O, so the call workflow can import it inside Temporal's sandbox
and pass it to local activities and back to the edge through the pydantic data converter.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from workflows.intents import MATCH_THRESHOLD

INTENT_CONFIDENCE_THRESHOLD = 0.65
"""Chosen by `slot eval router` on the held-out set: the most coverage (52.6 %) at a precision
of at least 95 % (96.7 %); rerun it after changing the playbook or the classifier's constants."""
TOKEN_CONFIDENT_SCORE = 0.65
"""A token-matcher score trusted when the embedding classifier is not confident. Chosen by
`slot eval router` ("router tier 1" table): classifier ≥ 0.65, then token matches ≥ 0.65, answer
56.1 % of held-out turns at 95.3 % precision (classifier alone: 52.6 % at 96.7 %; the token
matcher at its 0.45 match threshold is only 81 % precise). Weaker token matches go to the LLM,
and stand only when nothing else can answer (no LLM, no close knowledge-base passage)."""
UNDERSTANDING_INTENT_THRESHOLD = 0.55
"""The classifier's threshold on the understanding-v1 path, where a token match stands only with
the classifier's support and yes/no, slot and call-back rules answer first. Chosen by `slot eval
router` on the dev sets only (most accurate at precision >= 95 %: dev 91.1 % / 95.3 %; held-out
callers 69.8 % / 91.9 %, against 57.5 % / 83.0 % for the router before)."""
KNOWLEDGE_MIN_SCORE = 0.865
"""Without an LLM, a passage answers a question only with this score (e5 cosine, partly with the
section's own question: `activities.knowledge_base.QUESTION_WEIGHT`). Chosen with the weights
by `slot eval kb` on the dev questions, a wrong section counted as two missed answers: dev
right / wrong / missed 27 / 5 / 9 (cosine alone, 0.84) -> 27 / 1 / 13 (heading words, 0.87)
-> 29 / 0 / 12 (the section's question, 0.865)."""
PASSAGES_PER_TURN = 3


class RouterConfig(BaseModel):
    """Every threshold that steers a routing decision, snapshotted in the call's input.

    Like the playbook, it is fixed when the call starts, so retuning (a new default, a setting)
    never changes what a running call replays. Histories recorded before this existed carry
    none and get these defaults: change a default only together with a `workflow.patched` gate,
    or set the new value where calls are started.
    """

    intent_confidence_threshold: float = INTENT_CONFIDENCE_THRESHOLD
    """Tier 1: the embedding classifier's intent stands at or above this confidence."""
    understanding_intent_threshold: float = UNDERSTANDING_INTENT_THRESHOLD
    """The same on the understanding-v1 path without an LLM (measured there: a question the
    classifier takes for an intent only loses a knowledge-base answer); with an LLM, and for
    calls recorded before the patch, the one above."""
    token_confident_score: float = TOKEN_CONFIDENT_SCORE
    """Tier 1: else a token match this strong stands."""
    match_threshold: float = MATCH_THRESHOLD
    """Tier 0: the script engine's token matcher takes an intent at or above this score."""
    knowledge_min_score: float = KNOWLEDGE_MIN_SCORE
    passages_per_turn: int = PASSAGES_PER_TURN
    """Knowledge-base passages retrieved for a turn past tier 1."""


class Passage(BaseModel):
    """A chunk of the company's documents, as retrieved for one caller question."""

    id: str
    source: str
    heading: str
    text: str
    score: float = 0.0
    """Cosine similarity to the query (higher is closer)."""


class RetrieveRequest(BaseModel):
    """Input of the `retrieve_passages` local activity."""

    query: str
    k: int = 3


class Retrieval(BaseModel):
    """The passages closest to a caller's words, best first, and how long the search took."""

    passages: list[Passage] = Field(default_factory=list)
    elapsed_ms: float = 0.0


class IntentExamples(BaseModel):
    """A candidate intent for the classifier: its name and examples, in priority order."""

    name: str
    examples: list[str]


class ClassifyRequest(BaseModel):
    """Input of the `classify_intent` local activity.

    `intents` are the state's own intents followed by the global ones, exactly as the script
    engine orders them, so ties go to the more specific intent.
    """

    utterance: str
    intents: list[IntentExamples]


class IntentClassification(BaseModel):
    """The classifier's best intent for an utterance.

    `confidence` is the probability of the best intent against the others and a "none of
    these" alternative; `margin` is best minus runner-up probability. The workflow accepts the
    intent only when `confidence` >= the measured threshold (see `evals.router`).
    """

    intent: str | None
    index: int = -1
    """Position of `intent` in the request's `intents`, -1 when there were no candidates."""
    confidence: float = 0.0
    margin: float = 0.0
    similarity: float = 0.0
    """Raw cosine similarity to the closest example of the best intent."""
    example: str = ""
    elapsed_ms: float = 0.0


class AllowedTransition(BaseModel):
    """A state the LLM may move the call to, and what it means in words."""

    state: str
    description: str


class TranscriptLine(BaseModel):
    speaker: Literal["agent", "caller"]
    text: str


class LLMTurnRequest(BaseModel):
    """Everything tier 2 needs to decide one caller turn; built by the workflow, run by the edge."""

    company: str
    agent_name: str
    goal: str
    state: str
    state_line: str
    allowed: list[AllowedTransition]
    slots: dict[str, str] = Field(default_factory=dict)
    transcript: list[TranscriptLine] = Field(default_factory=list)
    utterance: str
    passages: list[Passage] = Field(default_factory=list)
    fallback_line: str = "Sorry, could you say that again?"


class LLMTurnResult(BaseModel):
    """Tier 2's final answer for a turn, as the edge reports it back to the workflow.

    `used_fallback` is true when the safe line was spoken instead of (or after part of) the
    model's reply; `said` is then what the caller was actually sent.
    """

    next_state: str
    say: str
    slots: dict[str, str] = Field(default_factory=dict)
    end_call: bool = False
    cited_ids: list[str] = Field(default_factory=list)
    used_fallback: bool = False
    cancelled: bool = False
    """Barge-in stopped the reply: `say` is what had been generated, not necessarily heard."""
    reason: str = ""
    model: str = ""
    """The BAML client that answered (e.g. `CheapThenStrong/OpenAICompatible`), if known."""
    latency_ms: dict[str, float] = Field(default_factory=dict)
    """`llm_first_token` (first say text), `llm_total`."""


class LLMTurnReport(BaseModel):
    """The edge's Update `llm_result`: how the LLM turn `utterance_id` ended."""

    utterance_id: str
    result: LLMTurnResult
