"""`slot eval router`: the router's whole decision on labelled caller turns, dev vs held-out.

Each utterance is said once in its state, right after the agent asked that state's question,
and goes through `workflows.router.Router.speech` exactly as the call workflow runs it (tier 0
rules and slots, then the embedding classifier, then the token matcher), with the classifier
in-process and no knowledge base or LLM. A decision is right when it takes the expected intent,
slot value or rule outcome, or, for a question, takes none (stays for tiers 2/knowledge).
Wrong = the script moved the wrong way (worst); missed = it fell back when it should have
understood.

Honest: the router's thresholds are
chosen on the DEV sets only (`dev_playbook.yaml`, `dev_callers*.yaml`; the
classifier's is
`understanding_intent_threshold` on the new path): the most accurate pair
whose precision (right among the turns it answered) is at least `--min-precision`. The held-out
callers (`heldout_callers.yaml`, written blind) are then reported with those thresholds, beside
dev. "before" is the router of main before issue 8 (the older script engine and the sample
playbook as it was, `data/router/solar_survey_before.yaml`) at its default thresholds; "after"
is the `understanding-v1` path with today's playbook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from activities.intent_classifier import IntentClassifier
from evals.router_labels import (
    BEFORE_PLAYBOOK,
    DEV_CALLERS,
    DEV_CALLERS2,
    DEV_CALLERS3,
    DEV_PLAYBOOK,
    HELDOUT_CALLERS,
    Case,
    load_cases,
)
from slot.playbooks import load_playbook, load_playbook_file
from slot.settings import REPO_ROOT, get_settings
from workflows.messages import CallInput, TranscriptEntry
from workflows.router import UNDERSTANDING_PATCH, Router
from workflows.router_messages import (
    ClassifyRequest,
    IntentClassification,
    Retrieval,
    RetrieveRequest,
    RouterConfig,
)
from workflows.script import DecisionTier, Playbook, ScriptStep, render

INTENT_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
TOKEN_THRESHOLDS = tuple(round(0.55 + 0.05 * i, 2) for i in range(8))
LEAD = {"lead_name": "Jordan"}
REPORTS = REPO_ROOT / "reports"
DEV_SETS = ("dev_playbook", "dev_callers", "dev_callers2", "dev_callers3")
"""The sets thresholds and rules may be chosen on; heldout_callers only reports."""


class EvalTools:
    """The router's tools in-process: the real classifier (cached per utterance and state), no
    knowledge base; `understanding` says whether the understanding-v1 patch is on."""

    def __init__(self, classifier: IntentClassifier, *, understanding: bool) -> None:
        self._classifier = classifier
        self.understanding = understanding
        self._cache: dict[tuple[str, tuple[str, ...]], IntentClassification] = {}

    def patched(self, patch_id: str) -> bool:
        return self.understanding or patch_id != UNDERSTANDING_PATCH

    async def classify(self, request: ClassifyRequest) -> IntentClassification | None:
        key = (request.utterance, tuple(i.name for i in request.intents))
        if key not in self._cache:
            self._cache[key] = self._classifier.classify(request.utterance, request.intents)
        return self._cache[key]

    async def retrieve(self, request: RetrieveRequest) -> Retrieval | None:
        return None


def router_for(playbook: Playbook, config: RouterConfig, tools: EvalTools) -> Router:
    call = CallInput.model_construct(
        call_id="eval-router",
        script_name=playbook.name,
        playbook=playbook,
        router=config,
        llm_enabled=False,
        follow_up_of=None,
    )
    return Router(call, tools)


async def decide(router: Router, playbook: Playbook, case: Case) -> ScriptStep:
    question = render(playbook, playbook.state(case.state).say, LEAD)
    transcript = [
        TranscriptEntry(speaker="agent", text=question, state=case.state, tier=DecisionTier.SCRIPT),
        TranscriptEntry(speaker="caller", text=case.text, seq=1),
    ]
    return await router.speech(case.state, dict(LEAD), case.text, transcript)


def _same_move(playbook: Playbook, state: str, intent: str, taken: str | None) -> bool:
    """Two intents of a state that lead to the same next state make the same decision
    ("not_available" and "call_back_later" in the greeting both end in a call back)."""
    if taken is None:
        return False
    current = playbook.state(state)
    targets = {i.name: i.next for i in [*current.intents, *playbook.global_intents]}
    return intent in targets and targets.get(taken) == targets[intent]


def verdict(case: Case, step: ScriptStep, playbook: Playbook) -> str:
    """right, wrong (moved the script the wrong way) or missed (fell back instead)."""
    expected = case.expected
    if expected.kind == "intent":
        right = step.intent == expected.name or _same_move(
            playbook, case.state, expected.name, step.intent
        )
    elif expected.kind == "outcome":
        right = step.outcome is not None and step.outcome.value == expected.name
    elif expected.kind == "slot":
        right = step.slots.get(expected.name) == expected.value and step.state != case.state
    else:
        right = step.state == case.state and step.intent is None and step.outcome is None
    if right:
        return "right"
    answered = step.intent is not None or step.outcome is not None or step.state != case.state
    return "wrong" if answered else "missed"


def taken(step: ScriptStep, case: Case) -> str:
    if step.outcome is not None and step.intent is None:
        return step.outcome.value
    if step.intent is not None:
        return step.intent
    if case.expected.kind == "slot" and step.slots.get(case.expected.name):
        return f"{case.expected.name}={step.slots[case.expected.name]}"
    return "pass" if step.state == case.state else f"-> {step.state}"


@dataclass(frozen=True)
class Score:
    cases: int
    right: int
    wrong: int
    missed: int
    answered: int
    right_answered: int

    @property
    def accuracy(self) -> float:
        return self.right / self.cases if self.cases else 0.0

    @property
    def precision(self) -> float:
        return self.right_answered / self.answered if self.answered else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "accuracy": self.accuracy, "precision": self.precision}


def score(results: Iterable[tuple[Case, ScriptStep, str]]) -> Score:
    counts: Counter[str] = Counter()
    answered = right_answered = 0
    for case, _, result in results:
        counts[result] += 1
        is_answer = result == "wrong" or (result == "right" and case.expected.kind != "pass")
        answered += is_answer
        right_answered += is_answer and result == "right"
    total = sum(counts.values())
    return Score(
        total, counts["right"], counts["wrong"], counts["missed"], answered, right_answered
    )


async def run(
    playbook: Playbook, config: RouterConfig, tools: EvalTools, cases: Sequence[Case]
) -> list[tuple[Case, ScriptStep, str]]:
    out = []
    router = router_for(playbook, config, tools)
    for case in cases:
        step = await decide(router, playbook, case)
        out.append((case, step, verdict(case, step, playbook)))
    return out


@dataclass(frozen=True)
class Choice:
    config: RouterConfig
    dev: Score


async def choose_thresholds(
    playbook: Playbook, tools: EvalTools, dev: Sequence[Case], min_precision: float
) -> tuple[Choice, list[Choice]]:
    """The most accurate threshold pair on `dev` with precision >= min_precision (ties: the
    higher thresholds); else the most precise."""
    grid = []
    for intent in INTENT_THRESHOLDS:
        for token in TOKEN_THRESHOLDS:
            config = RouterConfig(
                understanding_intent_threshold=intent, token_confident_score=token
            )
            grid.append(Choice(config, score(await run(playbook, config, tools, dev))))

    def key(c: Choice) -> tuple[float, float, float]:
        return (
            c.dev.accuracy,
            c.config.understanding_intent_threshold,
            c.config.token_confident_score,
        )

    good = [c for c in grid if c.dev.precision >= min_precision]
    best = max(good, key=key) if good else max(grid, key=lambda c: (c.dev.precision, *key(c)))
    return best, grid


def by_topic(results: Sequence[tuple[Case, ScriptStep, str]]) -> dict[str, Score]:
    topics: dict[str, list[tuple[Case, ScriptStep, str]]] = {}
    for item in results:
        topics.setdefault(item[0].topic, []).append(item)
    return {t: score(items) for t, items in sorted(topics.items())}


def _row(name: str, s: Score) -> str:
    return (
        f"| {name} | {s.cases} | {s.accuracy:.1%} | {s.precision:.1%} | {s.right} | {s.wrong} "
        f"| {s.missed} |"
    )


async def evaluate(min_precision: float) -> tuple[str, dict[str, object]]:
    """The report (markdown) and its figures (for router.json)."""
    playbook = load_playbook("solar_survey", get_settings().playbooks_dir)
    classifier = IntentClassifier()
    classifier.prepare(playbook)
    sets = {
        "dev_playbook": load_cases(DEV_PLAYBOOK),
        "dev_callers": load_cases(DEV_CALLERS),
        "dev_callers2": load_cases(DEV_CALLERS2),
        "dev_callers3": load_cases(DEV_CALLERS3),
        "heldout_callers": load_cases(HELDOUT_CALLERS),
    }
    dev = [case for name in DEV_SETS for case in sets[name]]
    before_tools = EvalTools(classifier, understanding=False)
    after_tools = EvalTools(classifier, understanding=True)
    legacy = load_playbook_file(BEFORE_PLAYBOOK)
    chosen, grid = await choose_thresholds(playbook, after_tools, dev, min_precision)
    shipped = RouterConfig()
    results: dict[str, dict[str, list[tuple[Case, ScriptStep, str]]]] = {}
    for name, cases in sets.items():
        results[name] = {
            "before": await run(legacy, shipped, before_tools, cases),
            "after": await run(playbook, chosen.config, after_tools, cases),
            "shipped": await run(playbook, shipped, after_tools, cases),
        }

    config = chosen.config
    lines = [
        "# Router: the whole decision on labelled caller turns",
        "",
        "`slot eval router` (evals/router_decisions.py). Each utterance is said in its state "
        "right after the agent's question and goes through `Router.speech` as the workflow "
        "runs it (tier 0 rules and slots, the embedding classifier, the token matcher; no "
        "knowledge base, no LLM). Right = the expected intent, slot value or rule outcome, or "
        "for a question no intent at all; wrong = moved the script the wrong way; missed = "
        "fell back when it should have understood. Precision = right among the turns it "
        "answered. Caller utterances about `interest` count twice (states pitch and cost).",
        "",
        f"Thresholds chosen on DEV only ({' + '.join(DEV_SETS)}, "
        f"{len(dev)} turns, "
        f"precision ≥ {min_precision:.0%}, most accurate): understanding_intent_threshold "
        f"{config.understanding_intent_threshold:.2f}, token_confident_score "
        f"{config.token_confident_score:.2f} (dev accuracy {chosen.dev.accuracy:.1%}, "
        f"precision {chosen.dev.precision:.1%}). Held-out was not used to choose anything. "
        f"*Shipped* rows are the router with the thresholds Slot runs with (`RouterConfig`: "
        f"{shipped.understanding_intent_threshold:.2f}, {shipped.token_confident_score:.2f}).",
        "",
        "| set | turns | accuracy | precision | right | wrong | missed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sets:
        for when in ("before", "after", "shipped"):
            lines.append(_row(f"{name} {when}", score(results[name][when])))
    lines += ["", "Accuracy by topic (before → after):", ""]
    lines += ["| topic | dev_callers | heldout_callers |", "|---|---|---|"]
    dev_topics = {w: by_topic(results["dev_callers"][w]) for w in ("before", "after")}
    held_topics = {w: by_topic(results["heldout_callers"][w]) for w in ("before", "after")}
    for topic in sorted(set(dev_topics["after"]) | set(held_topics["after"])):
        cells = []
        for topics in (dev_topics, held_topics):
            if topic in topics["after"]:
                b, a = topics["before"][topic], topics["after"][topic]
                cells.append(f"{b.accuracy:.0%} → {a.accuracy:.0%} ({a.cases})")
            else:
                cells.append("-")
        lines.append(f"| {topic} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Dev turns the new router still gets wrong or misses (tuning may read these):",
        "",
    ]
    for name in DEV_SETS:
        for case, step, result in results[name]["after"]:
            if result != "right":
                lines.append(
                    f'- {name} `{case.state}` "{case.text}": expected {case.expected}, '
                    f"took {taken(step, case)} ({result})"
                )
    text = "\n".join(lines) + "\n"
    summary: dict[str, object] = {
        "min_precision": min_precision,
        "chosen": {
            "understanding_intent_threshold": config.understanding_intent_threshold,
            "token_confident_score": config.token_confident_score,
            "dev": chosen.dev.as_dict(),
        },
        "sets": {
            name: {w: score(results[name][w]).as_dict() for w in ("before", "after", "shipped")}
            for name in sets
        },
        "grid": [
            {
                "understanding_intent_threshold": c.config.understanding_intent_threshold,
                "token_confident_score": c.config.token_confident_score,
                **c.dev.as_dict(),
            }
            for c in grid
        ],
    }
    return text, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slot eval router", description=__doc__)
    parser.add_argument("--min-precision", type=float, default=0.95)
    parser.add_argument("--reports", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    try:
        text, summary = asyncio.run(evaluate(args.min_precision))
        args.reports.mkdir(parents=True, exist_ok=True)
        (args.reports / "router.md").write_text(text, encoding="utf-8")
        (args.reports / "router.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(text)
    except (OSError, ValueError) as error:
        print(f"slot: eval router: {error}", file=sys.stderr)
        return 1
    return 0
