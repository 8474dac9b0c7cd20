"""LLM configuration from the environment.

The provider variables are the conventional unprefixed ones (`LLM_BASE_URL`, `LLM_API_KEY`,
`LLM_MODEL`, `GROQ_API_KEY`, `ANTHROPIC_API_KEY`); Slot's own knobs use the `SLOT_` prefix.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LLMSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    base_url: str = Field(default="", validation_alias=AliasChoices("LLM_BASE_URL", "base_url"))
    api_key: str = Field(default="", validation_alias=AliasChoices("LLM_API_KEY", "api_key"))
    model: str = Field(default="", validation_alias=AliasChoices("LLM_MODEL", "model"))
    strong_model: str = Field(
        default="", validation_alias=AliasChoices("LLM_STRONG_MODEL", "strong_model")
    )
    """A stronger model on the same OpenAI-compatible endpoint, tried when the cheap ones fail."""
    groq_api_key: str = Field(
        default="", validation_alias=AliasChoices("GROQ_API_KEY", "groq_api_key")
    )
    groq_model: str = Field(
        default="llama-3.1-8b-instant", validation_alias=AliasChoices("GROQ_MODEL", "groq_model")
    )
    anthropic_api_key: str = Field(
        default="", validation_alias=AliasChoices("ANTHROPIC_API_KEY", "anthropic_api_key")
    )
    anthropic_model: str = Field(
        default="claude-sonnet-4-20250514",
        validation_alias=AliasChoices("ANTHROPIC_MODEL", "anthropic_model"),
    )

    budget_s: float = Field(
        default=6.0, gt=0, validation_alias=AliasChoices("SLOT_LLM_BUDGET_S", "budget_s")
    )
    """Longest a turn may wait on the whole LLM route before the safe line is spoken."""
    connect_timeout_ms: int = Field(
        default=1500,
        validation_alias=AliasChoices("SLOT_LLM_CONNECT_TIMEOUT_MS", "connect_timeout_ms"),
    )
    first_token_timeout_ms: int = Field(
        default=3000,
        validation_alias=AliasChoices("SLOT_LLM_FIRST_TOKEN_TIMEOUT_MS", "first_token_timeout_ms"),
    )
    idle_timeout_ms: int = Field(
        default=2000, validation_alias=AliasChoices("SLOT_LLM_IDLE_TIMEOUT_MS", "idle_timeout_ms")
    )
    request_timeout_ms: int = Field(
        default=10000,
        validation_alias=AliasChoices("SLOT_LLM_REQUEST_TIMEOUT_MS", "request_timeout_ms"),
    )

    @property
    def configured(self) -> bool:
        """Whether any provider is set up; without one the router stops at tier 1 + knowledge."""
        return bool((self.base_url and self.model) or self.groq_api_key or self.anthropic_api_key)
