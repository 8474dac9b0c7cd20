"""Who may talk to the edge, failing closed: Twilio (signed requests, a signed stream token per
call) on the public listener, Slot's own workers and tools (a bearer token) on the internal one.

Pure checks with no I/O; the routes in `media_edge.app` and `media_edge.internal` apply them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

from slot.credentials import internal_token, twilio_token
from slot.settings import Settings

STREAM_TOKEN_PARAMETER = "stream_token"
"""The `<Parameter>` that carries the token: Twilio drops a `<Stream>` URL's query string and
hands `<Parameter>`s to the WebSocket in the `start` message's `customParameters`."""
_STREAM_KEY_LABEL = b"slot media stream token v1"


@dataclass(frozen=True)
class EdgeCredentials:
    twilio_token: str
    internal_token: str

    def __repr__(self) -> str:
        return "EdgeCredentials(<secrets>)"


def require_credentials(settings: Settings) -> EdgeCredentials:
    """Both secrets the edge needs, or `MissingCredential` naming the first one missing."""
    return EdgeCredentials(twilio_token(settings), internal_token(settings))


def twilio_signature_ok(token: str, url: str, params: dict[str, str], signature: str) -> bool:
    """Twilio's X-Twilio-Signature over `url` and the form fields, by Twilio's own SDK."""
    return bool(signature) and bool(RequestValidator(token).validate(url, params, signature))


def stream_handshake_ok(token: str, stream_url: str, signature: str) -> bool:
    """Twilio signs the Media Streams WebSocket upgrade like a webhook with no parameters, over
    the `<Stream>` URL (wss); its https spelling is accepted too, as the same secret proves it."""
    https = urlunsplit(urlsplit(stream_url)._replace(scheme="https"))
    http = urlunsplit(urlsplit(stream_url)._replace(scheme="http"))
    candidates = {stream_url, https if stream_url.startswith("wss:") else http}
    return any(twilio_signature_ok(token, url, {}, signature) for url in candidates)


def bearer_ok(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def bearer_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class StreamTokens:
    """Per-call media stream tokens: HMAC-SHA256 over CallSid, call id and expiry.

    The key is derived from the internal secret, so any edge of a deployment can check a
    token another edge issued (a load balancer may send the stream elsewhere).
    """

    def __init__(self, internal_secret: str, ttl_s: float) -> None:
        self._key = hmac.new(internal_secret.encode(), _STREAM_KEY_LABEL, hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _mac(self, call_sid: str, call_id: str, expires: int) -> str:
        message = f"{call_sid}\n{call_id}\n{expires}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, call_sid: str, call_id: str, now: float) -> str:
        expires = int(now + self.ttl_s)
        return f"{expires}.{self._mac(call_sid, call_id, expires)}"

    def refusal(self, token: str | None, call_sid: str, call_id: str, now: float) -> str | None:
        """Why this stream may not carry this call's media, or None if the token is good."""
        if not token:
            return "media stream has no stream token"
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or not mac:
            return "media stream token is malformed"
        expected = self._mac(call_sid, call_id, int(expires_text))
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return "media stream token does not match this call"
        if int(expires_text) < now:
            return "media stream token has expired"
        return None


CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "sec-websocket-protocol"})


class RedactCredentialHeaders(logging.Filter):
    """The websockets client logs each handshake header at DEBUG: never a credential's value
    (the speech services' keys travel in these headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 2
            and str(args[0]).lower() in (CREDENTIAL_HEADERS)
        ):
            record.args = (args[0], "[redacted]")
        return True


def redact_websocket_credentials() -> None:
    """Install `RedactCredentialHeaders` on the websockets client's logger (once)."""
    client = logging.getLogger("websockets.client")
    if not any(isinstance(f, RedactCredentialHeaders) for f in client.filters):
        client.addFilter(RedactCredentialHeaders())


class RedactQueryStrings(logging.Filter):
    """Access log lines keep the path, never the query string (lead names, call ids)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if "?" in path:
                record.args = (*args[:2], path.split("?", 1)[0] + "?…", *args[3:])
        return True
