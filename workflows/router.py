"""The decision router: which tier answers a caller's turn, and why (runs inside the workflow).

Tier 0 is the script engine itself (rules, DTMF, slots, silence); tier 1 the embedding intent
classifier (a local activity), then a confident token match; tier 2 the LLM at the edge (the
step carries its request), or without one the knowledge base (a local activity), or the
script's own answer. Every step it returns is a `ScriptStep` naming its tier and the reasons,
with the time its local activities took; the call workflow applies it.

Every threshold comes from the call's `RouterConfig`, never from a constant, so a retune does
not change what a running call replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from activities.intent_classifier import IntentClassifierActivities
    from activities.knowledge import KnowledgeActivities
    from workflows import script
    from workflows.expectations import asks_something
    from workflows.intents import match_intent
    from workflows.llm_turn import (
        apply_llm_turn,
        knowledge_answer,
        llm_turn_request,
        playbook_intents,
    )
    from workflows.messages import CallInput, EarlierTranscript, TranscriptEntry
    from workflows.router_messages import (
        ClassifyRequest,
        IntentClassification,
        LLMTurnResult,
        Retrieval,
        RetrieveRequest,
        TranscriptLine,
    )
    from workflows.script import REVERSIBLE_ENDINGS, DecisionTier, ScriptStep, TurnContext

ROUTER_PATCH = "router-v1"
"""Speech turns go through the router's local activities (classifier, knowledge base)."""
UNDERSTANDING_PATCH = "understanding-v1"
"""Speech turns use `script.respond_v1`: slots from every turn, yes/no answers with content,
number words, recovery that never loops (calls recorded before it keep the older engine)."""
UNDERSTANDING_V2_PATCH = "understanding-v2"
"""On top of understanding-v1: a new value for a detail given before answers a yes/no question
with its `no` intent, and yes/no is read after openers ("Then no") but not in "no idea"."""
UNDERSTANDING_V3_PATCH = "understanding-v3"
"""On top of understanding-v2: "do not call us" anywhere in a turn is a do-not-call request."""
UNDERSTANDING_V4_PATCH = "understanding-v4"
"""On top of understanding-v3: the state's own meaning of a plain yes or no comes before a global
intent matched only on a bare "No." example, and "there's no NAME here" reads a two-word name."""
UNDERSTANDING_V5_PATCH = "understanding-v5"
"""On top of understanding-v4: the readings of `TurnContext.understanding_v5` (a second dev set
of caller turns, `evals/data/router/dev_callers2.yaml`, showed them missing)."""
UNDERSTANDING_V6_PATCH = "understanding-v6"
"""On top of understanding-v5: the readings of `TurnContext.understanding_v6` (a third dev set
of caller turns, `evals/data/router/dev_callers3.yaml`, showed them missing)."""
UNDERSTANDING_V7_PATCH = "understanding-v7"
"""On top of understanding-v6: the readings of `TurnContext.understanding_v7` (a misheard "two"
in an amount, from the dev calls' replies)."""
QUESTIONS_FIRST_PATCH = "questions-first-v1"
"""A caller's question that the classifier or the token matcher reads as a goodbye ("Who is Sunny
Solar exactly? I haven't heard of you." as not interested) is answered from the knowledge base
when it has the answer; the goodbye is taken only when it does not."""
LOCAL_FAILURE_PATCH = "router-local-failure-v1"
"""A local activity that fails (it raises `ApplicationError` or `TimeoutError`, not
`ActivityError`) lets the next tier answer instead of failing the turn (before: the turn's Update
failed and the edge dropped the caller's words)."""
REPROMPT_PATCH = "reprompt-varied-v1"
"""A no-input reprompt is never the agent's last line again, and the second is the state's
question rephrased (before: the same reprompt twice, heard as a loop)."""
GOODBYE_CHECK_PATCH = "goodbye-check-v1"
"""A not-interested goodbye read weakly (a token match of a global intent below the confident
score) asks the state's question once more instead (`script.check_goodbye`)."""
GOODBYE_CHECK_V2_PATCH = "goodbye-check-v2"
"""On top of goodbye-check-v1: a goodbye the token match or the classifier read from a turn that
only asks ("Will they call before they come?" as a call back) asks the state's question once
more (`TurnContext.questions_v6`)."""
ROUTER_TIMEOUT = timedelta(seconds=10)
"""Per local activity; the first call of a worker loads the embedding model (~3 s)."""
ROUTER_RETRY = RetryPolicy(maximum_attempts=1)
"""A failed classification or search is not retried on the hot path: the next tier answers."""


class RouterTools(Protocol):
    """What the router needs from outside the script: patches, the classifier, the knowledge
    base. In the workflow they are `workflow.patched` and local activities (`WorkflowTools`);
    `slot replay script` runs the same router in-process with direct calls."""

    def patched(self, patch_id: str) -> bool: ...

    async def classify(self, request: ClassifyRequest) -> IntentClassification | None:
        """None when the classifier failed (the next tier answers)."""
        ...

    async def retrieve(self, request: RetrieveRequest) -> Retrieval | None:
        """None when the knowledge base failed."""
        ...


class WorkflowTools:
    """The router's tools inside the call workflow: local activities, one attempt each."""

    def __init__(self, call_id: str) -> None:
        self._call_id = call_id

    def patched(self, patch_id: str) -> bool:
        return workflow.patched(patch_id)

    def _unavailable(self, tool: str, error: FailureError) -> None:
        """A tool failed: the next tier answers (calls recorded before the patch re-raise)."""
        if not isinstance(error, ActivityError) and not workflow.patched(LOCAL_FAILURE_PATCH):
            raise error
        workflow.logger.warning("call %s: %s: %s", self._call_id, tool, error.cause or error)

    async def classify(self, request: ClassifyRequest) -> IntentClassification | None:
        try:
            return await workflow.execute_local_activity_method(
                IntentClassifierActivities.classify_intent,
                request,
                start_to_close_timeout=ROUTER_TIMEOUT,
                retry_policy=ROUTER_RETRY,
                summary="classify intent",
            )
        except (ActivityError, ApplicationError, ActivityTimeout) as error:
            self._unavailable("classifier", error)
            return None

    async def retrieve(self, request: RetrieveRequest) -> Retrieval | None:
        try:
            return await workflow.execute_local_activity_method(
                KnowledgeActivities.retrieve_passages,
                request,
                start_to_close_timeout=ROUTER_TIMEOUT,
                retry_policy=ROUTER_RETRY,
                summary="search knowledge base",
            )
        except (ActivityError, ApplicationError, ActivityTimeout) as error:
            self._unavailable("knowledge", error)
            return None


class Router:
    """Decides the turns of one call from its input snapshot (playbook, router config)."""

    def __init__(self, call: CallInput, tools: RouterTools | None = None) -> None:
        self._call = call
        self._playbook = call.playbook
        self._config = call.router
        self._tools: RouterTools = tools or WorkflowTools(call.call_id)

    def opening(self, slots: dict[str, str]) -> ScriptStep:
        return script.opening(self._playbook, slots, follow_up=self._call.follow_up_of is not None)

    def keys(self, state: str, slots: dict[str, str], digits: str) -> ScriptStep:
        return script.respond_dtmf(self._playbook, state, slots, digits)

    def silence(
        self, state: str, slots: dict[str, str], attempt: int, last_line: str = ""
    ) -> ScriptStep:
        """A silent caller is re-asked, never with the agent's `last_line` again (calls
        recorded before patch reprompt-varied-v1 repeat the state's reprompt)."""
        varied = self._tools.patched(REPROMPT_PATCH)
        return script.reprompt(
            self._playbook,
            state,
            slots,
            attempt,
            max_reprompts=self._call.timers.max_reprompts,
            last_line=last_line if varied else None,
        )

    def settle_llm(self, state: str, slots: dict[str, str], result: LLMTurnResult) -> ScriptStep:
        """Tier 2's answer checked by the script: a transition the state does not allow is
        rejected, and a reply cut off by barge-in stays in `state` (the caller did not hear
        where it was going)."""
        if result.cancelled:
            result = result.model_copy(update={"next_state": state, "end_call": False})
        return apply_llm_turn(self._playbook, state, slots, result)

    async def speech(
        self,
        state: str,
        slots: dict[str, str],
        utterance: str,
        transcript: Sequence[TranscriptEntry],
        earlier: EarlierTranscript | None = None,
    ) -> ScriptStep:
        """Tier 0, then tiers 1 and 2 for a turn the script's rules and slots did not settle.

        `transcript` ends with the caller's `utterance`; it is read after the local activities,
        so the LLM sees what the caller heard of the agent's lines by then. `earlier` sums up
        the lines before it that a long call moved into its record.
        """
        if self._tools.patched(UNDERSTANDING_PATCH):
            context = turn_context(transcript, state, earlier)
            if self._tools.patched(UNDERSTANDING_V2_PATCH):
                context = replace(context, refined=True)
            if self._tools.patched(UNDERSTANDING_V3_PATCH):
                context = replace(context, do_not_call_v3=True)
            if self._tools.patched(UNDERSTANDING_V4_PATCH):
                context = replace(context, state_answers_v4=True)
            if self._tools.patched(UNDERSTANDING_V5_PATCH):
                context = replace(context, understanding_v5=True)
            if self._tools.patched(GOODBYE_CHECK_V2_PATCH):
                context = replace(context, questions_v6=True)
            if self._tools.patched(UNDERSTANDING_V6_PATCH):
                context = replace(context, understanding_v6=True)
            if self._tools.patched(UNDERSTANDING_V7_PATCH):
                context = replace(context, understanding_v7=True)
            step = script.respond(
                self._playbook,
                state,
                slots,
                utterance,
                match_threshold=self._config.match_threshold,
                confident_score=self._config.token_confident_score,
                context=context,
            )
            if step.tier in (DecisionTier.RULE, DecisionTier.SCRIPT) or not self._tools.patched(
                ROUTER_PATCH
            ):
                return step
            step = await self._past_the_script(
                state, dict(slots), utterance, step, transcript, context
            )
            check = script.check_goodbye(self._playbook, state, step, context, utterance)
            if check is not None and self._tools.patched(GOODBYE_CHECK_PATCH):
                return check
            return step
        step = script.respond(
            self._playbook, state, slots, utterance, match_threshold=self._config.match_threshold
        )
        if step.tier in (DecisionTier.RULE, DecisionTier.SCRIPT) or not self._tools.patched(
            ROUTER_PATCH
        ):
            return step
        return await self._past_the_script(state, dict(slots), utterance, step, transcript)

    async def _past_the_script(
        self,
        state: str,
        slots: dict[str, str],
        utterance: str,
        script_step: ScriptStep,
        transcript: Sequence[TranscriptEntry],
        context: TurnContext | None = None,
    ) -> ScriptStep:
        playbook, config = self._playbook, self._config
        latency: dict[str, float] = {}
        notes: list[str] = []
        found = await self._classify(utterance, state)
        if found is not None:
            latency["classify"] = found.elapsed_ms
            threshold = (
                config.understanding_intent_threshold
                if context is not None and not self._call.llm_enabled
                else config.intent_confidence_threshold
            )
            confident = found.intent is not None and found.confidence >= threshold
            fits = (
                not confident
                or context is None
                or not context.understanding_v5
                or script.fits_the_turn(playbook.state(state), utterance, found.example)
            )
            if confident and fits:
                step = script.take_intent(
                    playbook,
                    state,
                    slots,
                    utterance,
                    found.index,
                    DecisionTier.CLASSIFIER,
                    f"classifier intent '{found.intent}' confidence {found.confidence:.2f} "
                    f"≥ {threshold:.2f} (like '{found.example}')",
                    context=context,
                )
                answered = await self._answer_before_goodbye(state, slots, utterance, step, latency)
                return (answered or step).model_copy(update={"latency_ms": latency})
            best = f"'{found.intent}' {found.confidence:.2f}" if found.intent else "none"
            if fits:
                notes.append(f"classifier {best} < {threshold:.2f}")
            else:
                notes.append(f"classifier {best} like '{found.example}' does not fit the turn")
        else:
            notes.append("classifier unavailable")
        if context is not None and script_step.tier is DecisionTier.INTENT:
            agreed = found is not None and found.intent == script_step.intent
            if agreed:
                reason = f"{script_step.reason}; the classifier's best is the same intent"
                step = script_step.model_copy(update={"reason": reason})
                answered = await self._answer_before_goodbye(state, slots, utterance, step, latency)
                return (answered or step).model_copy(update={"latency_ms": latency})
            notes.append(f"token match '{script_step.intent}' without the classifier's support")
            filled_now = {k: v for k, v in script_step.slots.items() if slots.get(k) != v}
            script_step = script.recover(
                playbook, state, slots, filled_now, context, script_step.reason, utterance
            )
        elif script_step.tier is DecisionTier.INTENT:
            current = playbook.state(state)
            match = match_intent(
                utterance, current.intents + playbook.global_intents, config.match_threshold
            )
            if match is not None and match.score >= config.token_confident_score:
                reason = f"{script_step.reason}; {notes[0]}"
                return script_step.model_copy(update={"reason": reason, "latency_ms": latency})
        retrieval = await self._retrieve(utterance)
        passages = retrieval.passages if retrieval is not None else []
        if retrieval is not None:
            latency["retrieve"] = retrieval.elapsed_ms
        else:
            notes.append("knowledge base unavailable")
        if self._call.llm_enabled:
            lines = [
                TranscriptLine(speaker=e.speaker, text=e.heard_text or e.text)
                for e in transcript[:-1]
                if e.text
            ]
            request = llm_turn_request(playbook, state, slots, lines, utterance, passages)
            cited = ", ".join(f"{p.id} {p.score:.2f}" for p in request.passages) or "none"
            return ScriptStep(
                state=state,
                text=request.fallback_line,
                tier=DecisionTier.LLM,
                reason="; ".join([*notes, f"LLM streams the reply (passages: {cited})"]),
                slots=slots,
                latency_ms=latency,
                llm_request=request,
            )
        min_score = config.knowledge_min_score
        answer = knowledge_answer(playbook, state, slots, passages, min_score=min_score)
        if answer is not None:
            reason = "; ".join([*notes, answer.reason])
            return answer.model_copy(update={"reason": reason, "latency_ms": latency})
        if passages:
            best_passage = max(passages, key=lambda p: p.score)
            notes.append(f"best passage {best_passage.score:.2f} < {min_score:.2f}")
        reason = "; ".join([script_step.reason, *notes, "no LLM configured"])
        return script_step.model_copy(update={"reason": reason, "latency_ms": latency})

    async def _answer_before_goodbye(
        self,
        state: str,
        slots: dict[str, str],
        utterance: str,
        goodbye: ScriptStep,
        latency: dict[str, float],
    ) -> ScriptStep | None:
        """The knowledge base's answer to a caller's question read as a goodbye (`goodbye`, an
        intent of `REVERSIBLE_ENDINGS`), or None: not a question, no answer, or calls decided
        before patch `questions-first-v1`."""
        ending = goodbye.end_call and goodbye.outcome in REVERSIBLE_ENDINGS
        if not ending or not asks_something(utterance):
            return None
        if self._call.llm_enabled or not self._tools.patched(QUESTIONS_FIRST_PATCH):
            return None
        retrieval = await self._retrieve(utterance)
        if retrieval is None:
            return None
        latency["retrieve"] = retrieval.elapsed_ms
        min_score = self._config.knowledge_min_score
        answer = knowledge_answer(
            self._playbook, state, slots, retrieval.passages, min_score=min_score
        )
        if answer is None:
            return None
        reason = f"a question, not a goodbye ({goodbye.reason}); {answer.reason}"
        return answer.model_copy(update={"reason": reason})

    async def _classify(self, utterance: str, state: str) -> IntentClassification | None:
        request = ClassifyRequest(
            utterance=utterance, intents=playbook_intents(self._playbook, state)
        )
        if not request.intents:
            return None
        return await self._tools.classify(request)

    async def _retrieve(self, utterance: str) -> Retrieval | None:
        return await self._tools.retrieve(
            RetrieveRequest(query=utterance, k=self._config.passages_per_turn)
        )


def turn_context(
    transcript: Sequence[TranscriptEntry], state: str, earlier: EarlierTranscript | None = None
) -> TurnContext:
    """What the script's understanding needs from the call so far (`earlier`, then
    `transcript`): the states already asked, the misses since the call entered `state`, and the
    agent's last line."""
    earlier = earlier or EarlierTranscript()
    asked = frozenset(earlier.asked) | {
        e.state for e in transcript if e.speaker == "agent" and e.state
    }
    agent_lines = [e for e in transcript if e.speaker == "agent"]
    misses = 0
    checked = False
    for entry in reversed(agent_lines):
        if entry.state != state:
            break
        if entry.tier is DecisionTier.FALLBACK:
            misses += 1
        checked = checked or (entry.reason or "").startswith(script.GOODBYE_CHECK_REASON)
    else:
        if earlier.last_state == state:
            misses += earlier.last_state_misses
    last_line = agent_lines[-1].text if agent_lines else earlier.last_line
    return TurnContext(asked=asked, misses=misses, last_line=last_line, goodbye_checked=checked)
