"""`slot eval router`: the router's whole decision on labelled caller turns (dev and held-out).

The report itself is `evals.router_decisions`; this module keeps the per-classifier sweeps
(coverage, precision, recall and out-of-scope leak at each confidence threshold) that it and
the unit tests use on the playbook-labelled dev set `data/router/dev_playbook.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel

from activities.intent_classifier import IntentClassifier
from evals.router_decisions import main as decisions_main
from evals.router_labels import DEV_PLAYBOOK
from slot.playbooks import load_playbook
from slot.settings import get_settings
from workflows.intents import best_guess
from workflows.llm_turn import playbook_intents

HELDOUT = DEV_PLAYBOOK
"""The playbook-labelled utterances (a DEV set: thresholds were chosen on it)."""
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


class Labelled(BaseModel):
    state: str
    text: str
    intent: str | None


class HeldOut(BaseModel):
    playbook: str
    utterances: list[Labelled]


@dataclass(frozen=True)
class Prediction:
    expected: str | None
    predicted: str | None
    score: float


@dataclass(frozen=True)
class Row:
    threshold: float
    coverage: float
    precision: float
    recall: float
    oos_leak: float
    answered: int


def load_heldout(path: Path = HELDOUT) -> HeldOut:
    return HeldOut.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


Predictor = Callable[[Labelled], tuple[str | None, float]]


def predict(data: HeldOut, predictor: Predictor) -> list[Prediction]:
    out = []
    for item in data.utterances:
        predicted, score = predictor(item)
        out.append(Prediction(item.intent, predicted, score))
    return out


def sweep(predictions: Sequence[Prediction], thresholds: Sequence[float] = THRESHOLDS) -> list[Row]:
    in_scope = sum(1 for p in predictions if p.expected is not None)
    out_scope = len(predictions) - in_scope
    rows = []
    for threshold in thresholds:
        answered = [p for p in predictions if p.predicted is not None and p.score >= threshold]
        right = sum(1 for p in answered if p.predicted == p.expected)
        leaked = sum(1 for p in answered if p.expected is None)
        rows.append(
            Row(
                threshold=threshold,
                coverage=len(answered) / len(predictions) if predictions else 0.0,
                precision=right / len(answered) if answered else 1.0,
                recall=right / in_scope if in_scope else 0.0,
                oos_leak=leaked / out_scope if out_scope else 0.0,
                answered=len(answered),
            )
        )
    return rows


def choose(rows: Sequence[Row], min_precision: float) -> Row:
    """Most coverage with precision >= min_precision (ties: the lower threshold); else the most
    precise row."""
    good = [r for r in rows if r.precision >= min_precision and r.answered > 0]
    if good:
        return max(good, key=lambda r: (r.coverage, -r.threshold))
    return max(rows, key=lambda r: (r.precision, r.coverage))


def cascade(
    embedding: Sequence[Prediction], token: Sequence[Prediction], threshold: float
) -> list[Prediction]:
    """Tier 1 as the workflow runs it: the classifier's intent when its confidence reaches
    `threshold`, else the token matcher's, scored by the token score (which a sweep thresholds;
    the classifier's answers score above every threshold)."""
    out = []
    for by_embedding, by_token in zip(embedding, token, strict=True):
        if by_embedding.predicted is not None and by_embedding.score >= threshold:
            out.append(Prediction(by_embedding.expected, by_embedding.predicted, 2.0))
        else:
            out.append(by_token)
    return out


def top1_accuracy(predictions: Sequence[Prediction]) -> float:
    in_scope = [p for p in predictions if p.expected is not None]
    return sum(p.predicted == p.expected for p in in_scope) / len(in_scope) if in_scope else 0.0


def format_table(name: str, rows: Sequence[Row], chosen: Row) -> str:
    lines = [
        f"{name}",
        "  threshold  coverage  precision  recall  oos-leak  answered",
    ]
    for r in rows:
        mark = "  <- chosen" if r is chosen else ""
        lines.append(
            f"  {r.threshold:9.2f}  {r.coverage:8.1%}  {r.precision:9.1%}  {r.recall:6.1%}"
            f"  {r.oos_leak:8.1%}  {r.answered:8d}{mark}"
        )
    return "\n".join(lines)


def token_predictor(data: HeldOut) -> Predictor:
    playbook = load_playbook(data.playbook, get_settings().playbooks_dir)

    def run(item: Labelled) -> tuple[str | None, float]:
        state = playbook.state(item.state)
        guess = best_guess(item.text, [*state.intents, *playbook.global_intents])
        return (guess.name, guess.score) if guess else (None, 0.0)

    return run


def embedding_predictor(data: HeldOut, classifier: IntentClassifier | None = None) -> Predictor:
    playbook = load_playbook(data.playbook, get_settings().playbooks_dir)
    classifier = classifier or IntentClassifier()
    classifier.prepare(playbook)

    def run(item: Labelled) -> tuple[str | None, float]:
        result = classifier.classify(item.text, playbook_intents(playbook, item.state))
        return result.intent, result.confidence

    return run


def main(argv: Sequence[str] | None = None) -> int:
    return decisions_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
