"""The LLM budget: when the LLM stalls, the caller hears the safe line within the budget.

The OpenAI-protocol double stalls (no byte at all, or silence mid-stream); BAML's own HTTP
timeouts are set far beyond the budget, so only the budget can end the wait. The turn is spoken
as the edge speaks it (`LLMUtterance` into real speech synthesis) and timed on the test's clock,
from the moment the turn starts until the whole safe line is audio ready to play.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from media_edge.llm import BamlLanguageModel
from media_edge.llm_speech import LLMUtterance
from media_edge.tts import EspeakTTS, PhoneSpeech
from simulator.llm_server import OpenAIProtocolServer, Reply
from slot.llm.config import LLMSettings
from slot.llm.route import Endpoint, build_route
from slot.playbooks import load_playbook
from slot.settings import get_settings
from workflows.llm_turn import llm_turn_request
from workflows.router_messages import LLMTurnRequest

BUDGET_S = 1.0
MARGIN_S = 3.0
"""Speech synthesis of one short line plus scheduling on a loaded two-core CI machine."""
PATIENT_HTTP = LLMSettings(
    budget_s=BUDGET_S,
    connect_timeout_ms=60_000,
    first_token_timeout_ms=120_000,
    idle_timeout_ms=120_000,
    request_timeout_ms=300_000,
)
ANSWER = {
    "next_state": "pitch",
    "say": "Our panels carry a twenty-five year performance warranty, and the installation work "
    "is covered for ten years.",
    "slots": {},
    "end_call": False,
    "cited_ids": [],
}


@pytest.fixture
async def server() -> AsyncIterator[OpenAIProtocolServer]:
    async with OpenAIProtocolServer() as running:
        yield running


@pytest.fixture(scope="module")
def speech() -> Iterator[PhoneSpeech]:
    with ThreadPoolExecutor(1) as executor:
        yield PhoneSpeech(EspeakTTS(), executor)


def request() -> LLMTurnRequest:
    playbook = load_playbook("solar_survey", get_settings().playbooks_dir)
    return llm_turn_request(playbook, "pitch", {}, [], "how long is the warranty?", [])


@pytest.mark.parametrize(
    "stall",
    [Reply.stall(), Reply.stall_mid_stream(json.dumps(ANSWER), tokens_before_stall=24)],
    ids=["before-the-first-byte", "mid-stream"],
)
async def test_a_stalled_llm_costs_no_more_than_the_budget(
    server: OpenAIProtocolServer, speech: PhoneSpeech, stall: Reply
) -> None:
    server.set_default(stall)
    route = build_route(
        [Endpoint("Local", "openai-generic", "test-model", "test-key", server.base_url)],
        PATIENT_HTTP,
    )
    turn = request()
    started = time.monotonic()
    utterance = LLMUtterance(BamlLanguageModel(route, budget_s=BUDGET_S), turn, speech)
    spoken: list[str] = []
    safe_line_at: float | None = None
    """When the whole safe line is synthesized (a phrase cut may split it)."""
    try:
        async with asyncio.timeout(BUDGET_S + MARGIN_S):
            async for chunk in utterance.chunks():
                assert chunk.audio
                spoken.append(chunk.text)
                if turn.fallback_line in " ".join(spoken):
                    safe_line_at = time.monotonic() - started
                    break
    except TimeoutError:
        pytest.fail(f"no safe line within {BUDGET_S + MARGIN_S:g} s of a stalled LLM")
    assert safe_line_at is not None, f"the reply ended without the safe line: {spoken}"
    result = await utterance.result()

    assert result.used_fallback
    assert result.reason == f"no complete reply within the {BUDGET_S:g} s budget"
    assert safe_line_at <= BUDGET_S + MARGIN_S
    assert len(server.requests) == 1
