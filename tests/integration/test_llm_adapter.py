"""The BAML tier-2 adapter against a local server speaking OpenAI's chat-completions protocol.

Real BAML runtime, real HTTP, real SSE: only the cloud LLM is replaced by the scripted server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from media_edge.llm import BamlLanguageModel, TurnStream
from media_edge.phrases import PhraseChunker
from simulator.llm_server import OpenAIProtocolServer, Reply
from slot.llm.config import LLMSettings
from slot.llm.route import Endpoint, build_route
from slot.playbooks import load_playbook
from slot.settings import get_settings
from workflows.llm_turn import apply_llm_turn, llm_turn_request
from workflows.router_messages import LLMTurnRequest, Passage

FALLBACK = "Sorry, could you say that again?"
ANSWER = (
    "Our panels carry a twenty-five year performance warranty, and the installation work is "
    "covered for ten years. Would you like us to book your free survey?"
)

# Small budgets and BAML timeouts so a failing turn ends quickly in the tests.
FAST = LLMSettings(
    budget_s=2.0,
    connect_timeout_ms=500,
    first_token_timeout_ms=1500,
    idle_timeout_ms=1000,
    request_timeout_ms=4000,
)


def reply(next_state: str = "pitch", say: str = ANSWER) -> dict[str, Any]:
    return {
        "next_state": next_state,
        "say": say,
        "slots": {},
        "end_call": False,
        "cited_ids": ["warranty.md#0"],
    }


@pytest.fixture
async def server() -> AsyncIterator[OpenAIProtocolServer]:
    async with OpenAIProtocolServer() as running:
        yield running


@pytest.fixture
async def backup_server() -> AsyncIterator[OpenAIProtocolServer]:
    async with OpenAIProtocolServer() as running:
        yield running


def model_for(*servers: OpenAIProtocolServer, settings: LLMSettings = FAST) -> BamlLanguageModel:
    """First server cheap, the others strong: a fallback chain like production's."""
    endpoints = [
        Endpoint(
            f"Local{i}",
            "openai-generic",
            "test-model",
            "test-key",
            s.base_url,
            tier="cheap" if i == 0 else "strong",
        )
        for i, s in enumerate(servers)
    ]
    return BamlLanguageModel(build_route(endpoints, settings), budget_s=settings.budget_s)


def request() -> LLMTurnRequest:
    playbook = load_playbook("solar_survey", get_settings().playbooks_dir)
    passage = Passage(
        id="warranty.md#0",
        source="warranty.md",
        heading="Warranty",
        text="Panels have a 25-year performance warranty.",
    )
    return llm_turn_request(
        playbook, "pitch", {}, [], "how long is the warranty on the panels?", [passage]
    )


async def collect(turn: TurnStream) -> list[str]:
    return [delta async for delta in turn.say_deltas()]


async def test_say_streams_in_several_deltas_before_the_reply_completes(
    server: OpenAIProtocolServer,
) -> None:
    server.enqueue(Reply.paused_json(reply(), pause_after_tokens=30))
    turn = model_for(server).decide_turn(request())
    chunker = PhraseChunker()
    deltas: list[str] = []
    phrases: list[str] = []
    async for delta in turn.say_deltas():
        deltas.append(delta)
        phrases += chunker.feed(delta)
        if phrases:
            break
    assert server.paused.is_set() and server.completed == 0, "spoke only after the reply ended"
    assert phrases and ANSWER.startswith(phrases[0])
    server.release_paused()
    async for delta in turn.say_deltas():
        deltas.append(delta)
        phrases += chunker.feed(delta)
    assert len(deltas) >= 2
    result = await turn.result()
    assert server.completed == 1
    assert not result.used_fallback
    assert result.next_state == "pitch"
    assert "".join(deltas) == ANSWER == result.say
    assert result.cited_ids == ["warranty.md#0"]
    assert result.model == "Local0"
    assert "llm_first_token" in result.latency_ms
    phrases += chunker.flush()
    assert len(phrases) >= 2
    assert " ".join(phrases) == ANSWER


async def test_workflow_side_accepts_the_transition(server: OpenAIProtocolServer) -> None:
    server.enqueue(Reply.json(reply("qualify", "Great, let's get you booked. What's your bill?")))
    turn = model_for(server).decide_turn(request())
    await collect(turn)
    result = await turn.result()
    playbook = load_playbook("solar_survey", get_settings().playbooks_dir)
    step = apply_llm_turn(playbook, "pitch", {}, result)
    assert step.state == "qualify" and not step.end_call


async def test_forbidden_transition_falls_back_without_speaking_it(
    server: OpenAIProtocolServer,
) -> None:
    server.set_default(Reply.json(reply("booked", "You're all booked, goodbye!")))
    turn = model_for(server).decide_turn(request())
    deltas = await collect(turn)
    result = await turn.result()
    assert result.used_fallback
    assert deltas == [FALLBACK]
    assert result.say == FALLBACK and result.next_state == "pitch"


@pytest.mark.parametrize(
    "failure",
    [Reply.error(500), Reply.error(429), Reply.garbage(), Reply.stall()],
    ids=["http-500", "http-429", "garbage", "stall"],
)
async def test_failures_end_in_the_safe_line(server: OpenAIProtocolServer, failure: Reply) -> None:
    server.set_default(failure)
    turn = model_for(server).decide_turn(request())
    deltas = await collect(turn)
    result = await turn.result()
    assert result.used_fallback, result
    assert "".join(deltas) == FALLBACK == result.say
    assert result.next_state == "pitch"
    assert len(server.requests) >= 1


async def test_stall_mid_stream_keeps_what_was_said_then_the_safe_line(
    server: OpenAIProtocolServer,
) -> None:
    server.set_default(Reply.stall_mid_stream(json.dumps(reply()), 24))
    turn = model_for(server).decide_turn(request())
    deltas = await collect(turn)
    result = await turn.result()
    assert result.used_fallback
    assert deltas[-1].strip() == FALLBACK
    assert len(deltas) >= 2, "the words before the stall were streamed"
    assert ANSWER.startswith(result.say.removesuffix(FALLBACK).strip())


async def test_fallback_client_answers_when_the_first_fails(
    server: OpenAIProtocolServer, backup_server: OpenAIProtocolServer
) -> None:
    server.set_default(Reply.error(500))
    backup_server.set_default(Reply.json(reply()))
    model = model_for(server, backup_server)
    assert model.description.startswith("fallback[")
    turn = model.decide_turn(request())
    deltas = await collect(turn)
    result = await turn.result()
    assert not result.used_fallback, result.reason
    assert "".join(deltas) == ANSWER
    assert result.model == "Local1"
    assert len(server.requests) >= 1 and len(backup_server.requests) == 1


async def test_barge_in_cancels_the_stream(server: OpenAIProtocolServer) -> None:
    server.enqueue(Reply.paused_json(reply(), pause_after_tokens=30))
    turn = model_for(server).decide_turn(request())
    async for _ in turn.say_deltas():
        break
    await server.wait_for_requests(1)
    await turn.cancel()
    result = await turn.result()
    assert result.reason == "cancelled by barge-in"
    assert not result.used_fallback
    assert ANSWER.startswith(result.say) and result.say
    assert server.completed == 0


async def test_no_provider_configured_means_no_model() -> None:
    assert BamlLanguageModel.from_settings(LLMSettings(base_url="", model="")) is None


def test_route_uses_only_configured_providers() -> None:
    everything = LLMSettings(
        base_url="http://127.0.0.1:9/v1",
        model="cheap",
        strong_model="strong",
        groq_api_key="g",
        anthropic_api_key="a",
    )
    model = BamlLanguageModel.from_settings(everything)
    assert model is not None
    assert model.description == (
        "fallback[round-robin[OpenAICompatible:cheap, Groq:llama-3.1-8b-instant], "
        "OpenAICompatibleStrong:strong, Anthropic:claude-sonnet-4-20250514]"
    )
    only_groq = BamlLanguageModel.from_settings(LLMSettings(groq_api_key="g"))
    assert only_groq is not None and only_groq.description == "Groq:llama-3.1-8b-instant"
