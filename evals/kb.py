"""`slot eval kb`: does the knowledge base answer callers' questions with the right section?

Without an LLM the agent speaks the best passage when its score reaches the router's
`knowledge_min_score`, so a question either gets the right section (right), a wrong one
(wrong: the caller hears an answer to something else), or none (missed: "Sorry, could you say
that again?"). A question the documents do not answer is right when it gets none. Labelled
questions: `data/kb/dev_questions.yaml` (retrieval settings may be chosen on it) and
`data/kb/heldout_questions.yaml` (written first, from personas/BUSINESS.md, never tuned on).
The sample knowledge base is ingested into a local Qdrant folder of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from activities.embeddings import Embedder, Vector
from activities.knowledge_base import (
    LEXICAL_WEIGHT,
    QUESTION_WEIGHT,
    KnowledgeBase,
    open_knowledge_base,
)
from slot.settings import REPO_ROOT
from workflows.router_messages import KNOWLEDGE_MIN_SCORE

DATA = Path(__file__).parent / "data" / "kb"
SETS = {"dev": DATA / "dev_questions.yaml", "heldout": DATA / "heldout_questions.yaml"}
QUESTION_WEIGHTS = (0.0, 0.3, 0.5)
WEIGHTS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)
THRESHOLDS = tuple(round(0.82 + 0.005 * i, 3) for i in range(15))
Setting = tuple[float, float, float]
"""(question weight, lexical weight, threshold)."""
BEFORE: Setting = (0.0, 0.0, 0.84)
"""The retrieval before `slot eval kb` existed: the vectors' cosine alone, answered at 0.84."""
HEADING_WORDS: Setting = (0.0, 0.04, 0.87)
"""The thirteenth session's: the cosine plus 0.04 x the heading's share of the words, at 0.87."""


@dataclass(frozen=True)
class Question:
    text: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Score:
    right: int
    wrong: int
    missed: int

    @property
    def total(self) -> int:
        return self.right + self.wrong + self.missed

    def row(self, name: str) -> str:
        share = self.right / self.total if self.total else 0.0
        counts = f"{self.right} | {self.wrong} | {self.missed}"
        return f"| {name} | {self.total} | {share:.1%} | {counts} |"


class RememberingEmbedder(Embedder):
    """The grid asks each question once per setting: embed it once."""

    def __init__(self) -> None:
        super().__init__()
        self._asked: dict[str, Vector] = {}

    def query(self, text: str) -> Vector:
        if text not in self._asked:
            self._asked[text] = super().query(text)
        return self._asked[text]


def load_questions(path: Path) -> list[Question]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Question(q["text"], tuple(q["answers"])) for q in data["questions"]]


def verdict(question: Question, heading: str | None) -> str:
    """right, wrong or missed for the section the agent would speak (None: no answer)."""
    if heading is None:
        return "right" if not question.answers else "missed"
    if any(heading.endswith(answer) for answer in question.answers):
        return "right"
    return "wrong"


def answered(kb: KnowledgeBase, text: str, setting: Setting) -> str | None:
    question_weight, weight, threshold = setting
    passages = kb.search(text, k=3, lexical_weight=weight, question_weight=question_weight)
    if not passages or passages[0].score < threshold:
        return None
    return passages[0].heading


def score(
    kb: KnowledgeBase, questions: Sequence[Question], setting: Setting
) -> tuple[Score, list[str]]:
    counts = {"right": 0, "wrong": 0, "missed": 0}
    failures = []
    for question in questions:
        heading = answered(kb, question.text, setting)
        result = verdict(question, heading)
        counts[result] += 1
        if result != "right":
            failures.append(f'- "{question.text}": {result}, got {heading or "no answer"}')
    return Score(**counts), failures


def _describe(setting: Setting) -> str:
    question_weight, weight, threshold = setting
    return f"question {question_weight}, heading words {weight}, threshold {threshold}"


def evaluate() -> tuple[str, dict[str, object]]:
    sets = {name: load_questions(path) for name, path in SETS.items()}
    with tempfile.TemporaryDirectory(prefix="slot-eval-kb-") as folder:
        kb = open_knowledge_base(path=Path(folder), embedder=RememberingEmbedder())
        kb.ingest([REPO_ROOT / "knowledge" / "solar_survey"])
        grid = {
            (q, w, t): score(kb, sets["dev"], (q, w, t))[0]
            for q in QUESTION_WEIGHTS
            for w in WEIGHTS
            for t in THRESHOLDS
        }
        # A wrong answer costs two right ones (the caller hears about something else, where
        # "no answer" asks again); ties go to the least change.
        best = max(
            grid,
            key=lambda s: (grid[s].right - 2 * grid[s].wrong, -s[0], -s[1], -abs(s[2] - 0.84)),
        )
        shipped: Setting = (QUESTION_WEIGHT, LEXICAL_WEIGHT, KNOWLEDGE_MIN_SCORE)
        rows = {
            "before: cosine only, threshold 0.84": BEFORE,
            "session 13: heading words 0.04, threshold 0.87": HEADING_WORDS,
            f"chosen on dev ({_describe(best)})": best,
            f"shipped ({_describe(shipped)})": shipped,
        }
        results = {
            (name, label): score(kb, sets[name], setting)
            for name in sets
            for label, setting in rows.items()
        }
        kb.close()
    lines = [
        "# Knowledge base: the section a caller's question gets",
        "",
        "`slot eval kb` (evals/kb.py). Right = the section that answers it, or none for a "
        "question the documents do not answer; wrong = another section; missed = none.",
        "",
        "| set, retrieval | questions | right (share) | right | wrong | missed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (name, label), (result, _) in results.items():
        lines.append(result.row(f"{name}, {label}"))
    shipped_row = next(label for label in rows if label.startswith("shipped"))
    lines += ["", "Dev questions the shipped retrieval gets wrong or misses:", ""]
    lines += results[("dev", shipped_row)][1]
    summary = {
        "chosen": {"question_weight": best[0], "lexical_weight": best[1], "threshold": best[2]},
        "results": {
            f"{name}, {label}": vars(result) for (name, label), (result, _) in results.items()
        },
        "grid": [
            {"question_weight": q, "lexical_weight": w, "threshold": t, **vars(s)}
            for (q, w, t), s in grid.items()
        ],
    }
    return "\n".join(lines) + "\n", summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slot eval kb", description=__doc__)
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports")
    args = parser.parse_args(list(argv) if argv is not None else None)
    text, summary = evaluate()
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / "kb.md").write_text(text, encoding="utf-8")
    (args.reports / "kb.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    sys.stdout.write(text)
    sys.stdout.write(f"\nwrote {args.reports / 'kb.md'}, {args.reports / 'kb.json'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
