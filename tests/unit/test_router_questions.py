"""A caller's question that reads like a goodbye is answered when the knowledge base can.

The real router with its real tools in-process (the classifier, a local Qdrant holding the
sample knowledge base), as `slot replay script` runs it; patches on or off per test.
"""

from __future__ import annotations

from activities.intent_classifier import shared_classifier
from activities.knowledge_base import KnowledgeBase
from slot.playbooks import load_playbook
from slot.replay_script import InProcessTools
from slot.settings import REPO_ROOT
from workflows.messages import CallInput, Lead, TranscriptEntry
from workflows.router import (
    GOODBYE_CHECK_PATCH,
    QUESTIONS_FIRST_PATCH,
    UNDERSTANDING_V5_PATCH,
    Router,
)
from workflows.script import DecisionTier, Outcome, ScriptStep, render

PLAYBOOK = load_playbook("solar_survey", REPO_ROOT / "playbooks")
SLOTS = {"lead_name": "Priya"}


class Tools(InProcessTools):
    """Every patch but the ones switched off."""

    def __init__(self, knowledge: KnowledgeBase, off: frozenset[str] = frozenset()) -> None:
        super().__init__(shared_classifier(), lambda: knowledge)
        self.off = off

    def patched(self, patch_id: str) -> bool:
        return patch_id not in self.off


async def decide(tools: Tools, state: str, utterance: str) -> ScriptStep:
    call = CallInput(
        call_id="call-q", lead=Lead(name="Priya"), script_name="solar_survey", playbook=PLAYBOOK
    )
    question = render(PLAYBOOK, PLAYBOOK.state(state).say, SLOTS)
    transcript = [
        TranscriptEntry(speaker="agent", text=question, state=state, tier=DecisionTier.SCRIPT),
        TranscriptEntry(speaker="caller", text=utterance, seq=1),
    ]
    return await Router(call, tools).speech(state, dict(SLOTS), utterance, transcript)


QUESTION = "Who is Sunny Solar exactly? I haven't heard of you."


async def test_a_question_read_as_a_goodbye_is_answered_from_the_knowledge_base(
    knowledge: KnowledgeBase,
) -> None:
    older = frozenset({QUESTIONS_FIRST_PATCH, GOODBYE_CHECK_PATCH, UNDERSTANDING_V5_PATCH})
    before = await decide(Tools(knowledge, older), "homeowner", QUESTION)
    assert before.end_call and before.outcome is Outcome.NOT_INTERESTED, before.reason
    now = await decide(Tools(knowledge), "homeowner", QUESTION)
    assert (now.tier, now.state, now.end_call) == (DecisionTier.KNOWLEDGE, "homeowner", False)
    assert "12,000" in now.text and now.reason.startswith("a question, not a goodbye"), now.reason


async def test_a_goodbye_that_is_no_question_or_that_asks_for_no_answer_stands(
    knowledge: KnowledgeBase,
) -> None:
    tools = Tools(knowledge)
    plain = await decide(tools, "pitch", "No thanks, I'm not interested.")
    assert plain.outcome is Outcome.NOT_INTERESTED
    unanswerable = await decide(tools, "pitch", "Why would I want that? Not interested.")
    assert unanswerable.outcome is Outcome.NOT_INTERESTED, unanswerable.reason


async def test_who_is_calling_is_answered_from_the_knowledge_base(knowledge: KnowledgeBase) -> None:
    """The commonest question of a cold call; before the company page said who calls and why,
    "Who's calling?" got "Sorry, could you say that again?"."""
    step = await decide(Tools(knowledge), "greeting", "Who's calling?")
    assert (step.tier, step.state, step.end_call) == (DecisionTier.KNOWLEDGE, "greeting", False)
    assert "Sunny Solar" in step.text and "survey" in step.text, step.text
