"""`slot replay script`: re-decide stored calls with a changed playbook or router config.

Each call's recorded caller turns (speech, DTMF, silence) go through the same `CallState` and
`Router` the call workflow uses, in-process: the router's tools call the intent classifier and
the knowledge base directly and take every patch (today's code). No audio, no Temporal, and no
LLM unless `--llm`: then a turn the router hands to tier 2 is asked of the configured LLM
through the edge's own adapter (`media_edge.llm`), or, with no LLM configured, replayed with
the LLM answer the call recorded, else reported as "LLM would answer"; either answer is checked
by the changed script, as the workflow checks the edge's. The result is, per call, the recorded
decision and the new one for every turn, and the outcome before and after (`slot.script_diff`
renders them).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel, ConfigDict

from activities.intent_classifier import IntentClassifier, shared_classifier
from activities.knowledge_base import KnowledgeBase
from slot.playbooks import PlaybookError, load_playbook, load_playbook_file
from slot.settings import Settings
from slot.stored_calls import (
    RecordedDecision,
    RecordedTurn,
    StoredCall,
    StoredCallError,
    load_stored_calls,
)
from slot.yaml_models import YamlModel
from workflows.call_state import CallState
from workflows.messages import CallStatus, Turn, TurnKind
from workflows.router import Router
from workflows.router_messages import (
    ClassifyRequest,
    IntentClassification,
    Retrieval,
    RetrieveRequest,
    RouterConfig,
)
from workflows.script import DecisionTier, Playbook, ScriptStep

if TYPE_CHECKING:  # the LLM adapter loads BAML's runtime: only when `--llm` asks for it
    from media_edge.llm import LanguageModel

LLM_WOULD_ANSWER = "LLM would answer"
_MEMO_LIMIT = 20_000


# --- inputs: the changed playbook and router config ------------------------------------------


class RouterConfigError(ValueError):
    """A router config file that cannot be used; one line naming the file and the field."""


class _RouterConfigFile(RouterConfig):
    """The fields a config file may set; a misspelt one is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


_ROUTER_CONFIG = YamlModel(_RouterConfigFile, RouterConfigError, what="router config")


def load_router_config(path: Path) -> dict[str, object]:
    """The `RouterConfig` fields a YAML/JSON file sets (the rest stay as each call had them)."""
    config = _ROUTER_CONFIG.load(path)
    return {name: getattr(config, name) for name in config.model_fields_set}


def resolve_playbook(spec: str, settings: Settings) -> Playbook:
    """A playbook file path, or the name of one in the playbooks folder."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file() or "/" in spec:
        return load_playbook_file(path)
    return load_playbook(spec, settings.playbooks_dir)


# --- the router's tools, in-process -------------------------------------------------------------


class InProcessTools:
    """`RouterTools` without a workflow: every patch taken (today's code), the classifier and
    the knowledge base called directly. A knowledge base that cannot be opened (e.g. the local
    Qdrant folder is held by a running worker) answers None, as a failed local activity does,
    and `knowledge_problem` says why. Answers are remembered by request: replaying the same
    calls with several variants of a playbook asks mostly the same questions."""

    def __init__(
        self,
        classifier: IntentClassifier,
        knowledge: Callable[[], KnowledgeBase] | None,
    ) -> None:
        self._classifier = classifier
        self._open_knowledge = knowledge
        self._knowledge: KnowledgeBase | None = None
        self._classified: dict[str, IntentClassification] = {}
        self._retrieved: dict[str, Retrieval] = {}
        self.knowledge_problem: str | None = None if knowledge else "no knowledge base given"

    def patched(self, patch_id: str) -> bool:
        return True

    async def classify(self, request: ClassifyRequest) -> IntentClassification | None:
        key = request.model_dump_json()
        if key not in self._classified:
            _remember(self._classified, key)
            self._classified[key] = self._classifier.classify(request.utterance, request.intents)
        return self._classified[key]

    async def retrieve(self, request: RetrieveRequest) -> Retrieval | None:
        knowledge = self._knowledge_base()
        if knowledge is None:
            return None
        key = request.model_dump_json()
        if key not in self._retrieved:
            started = time.perf_counter()
            passages = knowledge.search(request.query, request.k)
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            _remember(self._retrieved, key)
            self._retrieved[key] = Retrieval(passages=passages, elapsed_ms=elapsed)
        return self._retrieved[key]

    def _knowledge_base(self) -> KnowledgeBase | None:
        if self._knowledge is None and self.knowledge_problem is None:
            assert self._open_knowledge is not None
            try:
                self._knowledge = self._open_knowledge()
            except Exception as error:  # any failure to open: tier 2 runs without passages
                self.knowledge_problem = f"knowledge base unavailable ({error})"
        return self._knowledge


def _remember(memo: dict[str, Any], key: str) -> None:
    """Make room for `key` (a bounded memo: cleared when full)."""
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()


def default_tools(settings: Settings) -> InProcessTools:
    """The worker's classifier and knowledge base (opened on first use)."""
    from activities.knowledge import shared_knowledge_base

    return InProcessTools(shared_classifier(), lambda: shared_knowledge_base(settings))


# --- re-deciding one call ------------------------------------------------------------------------


class NewDecision(BaseModel):
    """What the changed script decides for a turn."""

    state: str
    text: str
    tier: str
    reason: str = ""
    end_call: bool = False
    outcome: str | None = None


@dataclass
class TurnReplay:
    """One recorded turn: what was decided then, and now (None: the call ended before it)."""

    number: int
    turn: RecordedTurn
    was: RecordedDecision | None
    now: NewDecision | None

    @property
    def changed(self) -> bool:
        """The caller would now hear another line, or the call would be elsewhere."""
        if self.was is None or self.now is None:
            return (self.was is None) != (self.now is None)
        return (self.was.state, self.was.text) != (self.now.state, self.now.text)

    @property
    def tier_changed(self) -> bool:
        """Another tier decided (e.g. the classifier where the token matcher did); counted, but
        the same line in the same state is no difference to the caller."""
        return self.was is not None and self.now is not None and self.was.tier != self.now.tier


@dataclass
class CallReplay:
    """A stored call re-decided: every turn, and the outcome then and now."""

    call: StoredCall
    turns: list[TurnReplay] = field(default_factory=list)
    outcome_now: str | None = None
    ended_now: str = ""
    """How the re-run ended: the agent's goodbye, the caller as recorded, or still open."""

    @property
    def outcome_was(self) -> str | None:
        return self.call.outcome

    @property
    def outcome_changed(self) -> bool:
        return self.outcome_was != self.outcome_now

    @property
    def changed(self) -> bool:
        return self.outcome_changed or any(t.changed for t in self.turns)


async def redecide(
    stored: StoredCall,
    playbook: Playbook,
    router_config: dict[str, object],
    tools: InProcessTools,
    *,
    llm: bool = False,
    model: LanguageModel | None = None,
) -> CallReplay:
    """Run the recorded turns of `stored` through `playbook` and the router, in order; with
    `llm`, tier 2 asks `model` (else the recorded answer)."""
    config = RouterConfig.model_validate({**stored.call.router.model_dump(), **router_config})
    call = stored.call.model_copy(
        update={"playbook": playbook, "router": config, "llm_enabled": llm}
    )
    now, router = CallState(call), Router(call, tools)
    replay = CallReplay(call=stored)
    ended = False
    silent = 0
    for number, turn in enumerate(stored.turns):
        if turn.decision is None:
            continue  # refused by the workflow (the call had ended): nobody heard an answer
        if ended:
            replay.turns.append(TurnReplay(number, turn, turn.decision, None))
            continue
        silent = silent + 1 if turn.kind == "silence" else 0
        step, new = await _decide(now, router, turn, silent, model)
        replay.turns.append(TurnReplay(number, turn, turn.decision, new))
        ended = step.end_call
    if ended:
        replay.ended_now = "agent ended the call"
    elif stored.ended_by_caller is not None or stored.status == CallStatus.NO_ANSWER:
        now.end(CallStatus.ENDED, stored.ended_by_caller or "not answered")
        replay.ended_now = stored.ended_by_caller or "not answered"
    else:
        replay.ended_now = f"still open in state '{now.state}': the recorded caller said no more"
    replay.outcome_now = now.outcome.value if now.outcome is not None else None
    return replay


async def _decide(
    now: CallState, router: Router, turn: RecordedTurn, silent: int, model: LanguageModel | None
) -> tuple[ScriptStep, NewDecision]:
    """One turn through the router and the call state, as the workflow's `turn` does."""
    if turn.kind == "silence":
        step = router.silence(now.state, now.slots, silent)
    else:
        kind: TurnKind = turn.kind if turn.kind in ("start", "dtmf") else "speech"
        now.hear(Turn(seq=turn.seq, kind=kind, text=turn.text, digits=turn.digits))
        if turn.kind == "start":
            step = router.opening(now.slots)
        elif turn.kind == "dtmf":
            step = router.keys(now.state, now.slots, turn.digits)
        else:
            step = await router.speech(now.state, now.slots, turn.text, now.transcript)
    decision = now.apply(step)
    if step.llm_request is not None:
        if model is not None:
            answer, source = await model.decide_turn(step.llm_request).result(), "LLM now"
        elif turn.llm_result is not None:
            answer, source = turn.llm_result, "recorded LLM answer"
        else:
            return step, NewDecision(
                state=decision.state,
                text=LLM_WOULD_ANSWER,
                tier=DecisionTier.LLM.value,
                reason=f"{step.reason}; no LLM configured and none recorded for this turn",
            )
        pending = now.pending_llm
        assert pending is not None
        step = router.settle_llm(pending.state, pending.slots, answer)
        decision = now.settle_llm(step, {})
        decision = decision.model_copy(update={"reason": f"{source}; {step.reason}"})
    return step, NewDecision(
        state=decision.state,
        text=decision.text,
        tier=decision.tier.value,
        reason=decision.reason,
        end_call=decision.end_call,
        outcome=decision.outcome.value if decision.outcome is not None else None,
    )


# --- the command -------------------------------------------------------------------------------


@dataclass
class ScriptReplay:
    """Everything one run found: the calls re-decided and what could not be used."""

    playbook: Playbook
    router_config: dict[str, object]
    source: str
    calls: list[CallReplay]
    skipped: dict[str, int] = field(default_factory=dict)
    """Script name -> calls of other scripts, left out."""
    notes: list[str] = field(default_factory=list)


async def replay_script(
    stored: Sequence[StoredCall],
    playbook: Playbook,
    router_config: dict[str, object],
    tools: InProcessTools,
    *,
    source: str,
    llm: bool = False,
    model: LanguageModel | None = None,
) -> ScriptReplay:
    """Re-decide the stored calls made with `playbook`'s script (by name)."""
    result = ScriptReplay(playbook, router_config, source, calls=[])
    for call in stored:
        if call.call.script_name != playbook.name:
            result.skipped[call.call.script_name] = result.skipped.get(call.call.script_name, 0) + 1
            continue
        result.calls.append(
            await redecide(call, playbook, router_config, tools, llm=llm, model=model)
        )
    if tools.knowledge_problem and any(
        t.was is not None and t.was.tier == DecisionTier.KNOWLEDGE.value
        for c in result.calls
        for t in c.turns
    ):
        result.notes.append(f"{tools.knowledge_problem}: knowledge answers cannot be reproduced")
    if llm and model is not None:
        result.notes.append(f"--llm: tier 2 turns asked {model.description}")
    elif llm:
        result.notes.append(
            "--llm without an LLM configured: tier 2 turns replay the LLM answer the call "
            f"recorded, checked by this script; turns that had none show '{LLM_WOULD_ANSWER}'"
        )
    return result


def main(
    settings: Settings,
    *,
    playbook: str,
    router_config: Path | None,
    calls: Path | None,
    since: str | None,
    json_out: Path | None,
    llm: bool,
    address: str | None = None,
    out: TextIO | None = None,
    tools: InProcessTools | None = None,
    model: LanguageModel | None = None,
) -> int:
    """Exit 0 when it ran (differences are information), 2 without calls, 1 for bad input.
    With `llm`, tier 2 asks `model`, by default the LLM the settings configure, if any."""
    from slot.script_diff import render_json, render_text

    out = out or sys.stdout
    try:
        changed = resolve_playbook(playbook, settings)
        overrides = load_router_config(router_config) if router_config else {}
        stored = asyncio.run(load_stored_calls(settings, changed, calls, since, address))
    except (PlaybookError, RouterConfigError, StoredCallError) as problem:
        print(problem, file=out)
        return 1
    except OSError as unreadable:
        print(f"cannot read stored calls: {unreadable}", file=out)
        return 1
    if not stored.calls:
        print(f"no stored calls in {stored.source}", file=out)
        for note in stored.notes:
            print(f"note: {note}", file=out)
        return 2
    tools = tools or default_tools(settings)
    if llm and model is None:
        from media_edge.llm import BamlLanguageModel

        model = BamlLanguageModel.from_settings()
    result = asyncio.run(
        replay_script(
            stored.calls, changed, overrides, tools, source=stored.source, llm=llm, model=model
        )
    )
    result.notes[:0] = stored.notes
    render_text(result, out)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(render_json(result))
    return 0 if result.calls else 2
