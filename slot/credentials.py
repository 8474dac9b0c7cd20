"""The secrets Slot's processes need, from the environment only, failing closed.

A process that lacks one refuses to start with a one-line error naming the variable. `slot dev`
generates both for the dev stack (`slot.devstack`), and the tests generate their own per run.
"""

from __future__ import annotations

from pydantic import SecretStr

from slot.settings import Settings

TWILIO_AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
INTERNAL_TOKEN_ENV = "SLOT_INTERNAL_TOKEN"
API_TOKEN_ENV = "SLOT_API_TOKEN"
MIN_INTERNAL_TOKEN_CHARS = 16


class MissingCredential(RuntimeError):
    """A process must not start: a secret it needs is not in the environment."""


def twilio_token(settings: Settings) -> str:
    """`TWILIO_AUTH_TOKEN`: checks Twilio's signatures on every request to the edge."""
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    if not token:
        raise MissingCredential(
            f"{TWILIO_AUTH_TOKEN_ENV} is not set: every Twilio request is checked against it "
            "(`slot dev` generates one for the dev stack)"
        )
    return token


def _bearer_secret(secret: SecretStr | None, variable: str, needed_for: str) -> str:
    """A shared bearer secret, long enough to resist guessing, or a one-line refusal."""
    token = secret.get_secret_value() if secret else ""
    if len(token) < MIN_INTERNAL_TOKEN_CHARS:
        state = "is not set" if not token else f"is shorter than {MIN_INTERNAL_TOKEN_CHARS} chars"
        raise MissingCredential(f"{variable} {state}: {needed_for}")
    return token


def internal_token(settings: Settings) -> str:
    """`SLOT_INTERNAL_TOKEN`: the bearer secret of the edge's internal listener."""
    return _bearer_secret(
        settings.internal_token,
        INTERNAL_TOKEN_ENV,
        "the edge's internal endpoints need a shared secret "
        "(`slot dev` generates one for the dev stack)",
    )


def api_token(settings: Settings) -> str:
    """`SLOT_API_TOKEN`: the bearer secret of the HTTP API."""
    return _bearer_secret(
        settings.api_token,
        API_TOKEN_ENV,
        "every API request must carry it as a Bearer token "
        "(`slot dev` generates one for the dev stack, in .slot-data/api-token)",
    )
