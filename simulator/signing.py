"""Signing as Twilio signs: X-Twilio-Signature over a URL and its form fields, by Twilio's own
SDK. Webhooks are signed over their URL and fields, the Media Streams WebSocket upgrade over the
`<Stream>` URL with no fields. The simulator, the evals and the tests all sign through here."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, dict(form)))


def signature_headers(
    auth_token: str | None, url: str, form: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The header Twilio sends with a request to `url`; none without a token (an unsigned
    request, which an edge refuses)."""
    if not auth_token:
        return {}
    return {SIGNATURE_HEADER: twilio_signature(auth_token, url, form or {})}
