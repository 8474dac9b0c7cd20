"""The cheap-then-strong LLM route, built from the providers that are actually configured.

baml_src/clients.baml declares the full production route (`CheapThenStrong`). Here the same
shape is assembled at run time through a BAML `ClientRegistry` from only the configured
providers, so a missing key never costs a failed request: cheap endpoints share the load in a
`round-robin`, strong ones follow in a `fallback`. Leaf clients carry BAML HTTP timeouts and the
`QuickRetry` policy from clients.baml.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from baml_py import ClientRegistry

from slot.llm.config import LLMSettings

Provider = Literal["openai-generic", "anthropic"]
GROQ_BASE_URL = "https://api.groq.com/openai/v1"
LEAF_RETRY_POLICY = "QuickRetry"
POOL_RETRY_POLICY = "RotateOnce"


@dataclass(frozen=True)
class Endpoint:
    """One leaf client: a provider, a model, and whether it is a cheap or a strong one."""

    name: str
    provider: Provider
    model: str
    api_key: str = ""
    base_url: str | None = None
    tier: Literal["cheap", "strong"] = "cheap"

    def describe(self) -> str:
        return f"{self.name}:{self.model}"


@dataclass(frozen=True)
class Route:
    """A client registry ready for `b.with_options(client_registry=...)`, and how it reads."""

    registry: ClientRegistry
    primary: str
    description: str


def endpoints_from_settings(settings: LLMSettings) -> list[Endpoint]:
    """Configured endpoints, cheap first: OpenAI-compatible, Groq, then the strong ones."""
    endpoints: list[Endpoint] = []
    if settings.base_url and settings.model:
        endpoints.append(
            Endpoint(
                "OpenAICompatible",
                "openai-generic",
                settings.model,
                settings.api_key,
                settings.base_url,
            )
        )
    if settings.groq_api_key:
        endpoints.append(
            Endpoint(
                "Groq", "openai-generic", settings.groq_model, settings.groq_api_key, GROQ_BASE_URL
            )
        )
    if settings.base_url and settings.strong_model:
        endpoints.append(
            Endpoint(
                "OpenAICompatibleStrong",
                "openai-generic",
                settings.strong_model,
                settings.api_key,
                settings.base_url,
                tier="strong",
            )
        )
    if settings.anthropic_api_key:
        endpoints.append(
            Endpoint(
                "Anthropic",
                "anthropic",
                settings.anthropic_model,
                settings.anthropic_api_key,
                tier="strong",
            )
        )
    return endpoints


def _leaf_options(endpoint: Endpoint, settings: LLMSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "model": endpoint.model,
        "temperature": 0.2,
        "max_tokens": 300,
        "http": {
            "connect_timeout_ms": settings.connect_timeout_ms,
            "time_to_first_token_timeout_ms": settings.first_token_timeout_ms,
            "idle_timeout_ms": settings.idle_timeout_ms,
            "request_timeout_ms": settings.request_timeout_ms,
        },
    }
    if endpoint.api_key:
        options["api_key"] = endpoint.api_key
    if endpoint.base_url:
        options["base_url"] = endpoint.base_url.rstrip("/")
    return options


def build_route(endpoints: Sequence[Endpoint], settings: LLMSettings | None = None) -> Route:
    """round-robin over the cheap endpoints, then fallback to each strong one in order."""
    if not endpoints:
        raise ValueError("no LLM endpoint configured (set LLM_BASE_URL and LLM_MODEL, or a key)")
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"LLM endpoint names must be unique, got {names}")
    settings = settings or LLMSettings()
    registry = ClientRegistry()
    for endpoint in endpoints:
        registry.add_llm_client(
            endpoint.name,
            endpoint.provider,
            _leaf_options(endpoint, settings),
            retry_policy=LEAF_RETRY_POLICY,
        )
    cheap = [e for e in endpoints if e.tier == "cheap"]
    strong = [e for e in endpoints if e.tier == "strong"]
    chain: list[tuple[str, str]] = []
    if len(cheap) > 1:
        registry.add_llm_client(
            "CheapRoundRobin",
            "round-robin",
            {"strategy": [e.name for e in cheap]},
            retry_policy=POOL_RETRY_POLICY,
        )
        chain.append(
            ("CheapRoundRobin", "round-robin[" + ", ".join(e.describe() for e in cheap) + "]")
        )
    elif cheap:
        chain.append((cheap[0].name, cheap[0].describe()))
    chain += [(e.name, e.describe()) for e in strong]
    if len(chain) == 1:
        primary, description = chain[0]
    else:
        primary = "CheapThenStrong"
        registry.add_llm_client(primary, "fallback", {"strategy": [name for name, _ in chain]})
        description = "fallback[" + ", ".join(d for _, d in chain) + "]"
    registry.set_primary(primary)
    return Route(registry=registry, primary=primary, description=description)


def route_from_settings(settings: LLMSettings | None = None) -> Route | None:
    """The route for the configured providers, or None when no LLM is configured."""
    settings = settings or LLMSettings()
    endpoints = endpoints_from_settings(settings)
    return build_route(endpoints, settings) if endpoints else None
