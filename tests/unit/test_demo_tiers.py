"""The demo's first line says which router tiers run, with the classifier threshold they use."""

from __future__ import annotations

from slot.demo import active_tiers
from slot.llm.config import LLMSettings
from workflows.router_messages import RouterConfig


def test_the_demo_states_the_classifier_threshold_the_router_uses() -> None:
    config = RouterConfig()
    without = active_tiers(LLMSettings(base_url="", api_key="", model=""))
    assert f"confidence ≥ {config.understanding_intent_threshold:.2f}" in without
    assert "no LLM configured" in without
    local = LLMSettings(base_url="http://127.0.0.1:9/v1", api_key="test-key", model="small")
    with_llm = active_tiers(local)
    assert f"confidence ≥ {config.intent_confidence_threshold:.2f}" in with_llm
    assert "tier 2 LLM" in with_llm
