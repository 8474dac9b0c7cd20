"""Telephony activities: the workflow's only way to reach a phone network or a media edge.

Thin HTTP adapters. Errors a retry cannot fix (a call not on that edge, a rejected request,
missing credentials) are non-retryable, so the workflow hears about them at once.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from slot.credentials import INTERNAL_TOKEN_ENV, TWILIO_AUTH_TOKEN_ENV
from slot.settings import Settings
from workflows.messages import Decision


class PlaceCall(BaseModel):
    """An outbound call to place: who to dial and which call workflow answers it."""

    call_id: str
    to: str
    edge_url: str | None = None
    """Edge that serves the call; defaults to the configured edge URL."""


class PlacedCall(BaseModel):
    call_sid: str
    status: str


class DeliverUtterance(BaseModel):
    """A decision the workflow made on its own (a reprompt) for the edge to speak."""

    call_id: str
    edge_url: str
    decision: Decision


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reject_or_retry(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    detail = response.text[:200].replace("\n", " ")
    message = f"{what} failed: HTTP {response.status_code} {detail}"
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise ApplicationError(message, type="TelephonyRejected", non_retryable=True)
    raise ApplicationError(message, type="TelephonyUnavailable")


class TelephonyActivities:
    """Holds the settings the activities need, so tests and the worker pass their own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def twilio_auth(self) -> tuple[str, str]:
        """Basic auth for the Twilio REST API; the local simulator needs no real token."""
        secret = self.settings.twilio_auth_token
        token = secret.get_secret_value() if secret else ""
        base = self.settings.twilio_base
        if not token and not (self.settings.twilio_api_base is None or _is_local(base)):
            raise ApplicationError(
                f"{TWILIO_AUTH_TOKEN_ENV} is not set; it is required to place calls through {base}",
                type="MissingCredentials",
                non_retryable=True,
            )
        return self.settings.twilio_account_sid, token

    def edge_auth(self) -> dict[str, str]:
        """The bearer credential of the edge's internal listener."""
        secret = self.settings.internal_token
        if secret is None or not secret.get_secret_value():
            raise ApplicationError(
                f"{INTERNAL_TOKEN_ENV} is not set; it is required to speak through an edge",
                type="MissingCredentials",
                non_retryable=True,
            )
        return {"Authorization": f"Bearer {secret.get_secret_value()}"}

    @activity.defn(name="place_call")
    async def place_call(self, request: PlaceCall) -> PlacedCall:
        """Dial out through Twilio's REST API (or the simulator that speaks it)."""
        if not request.to:
            raise ApplicationError(
                f"call {request.call_id} has no phone number to dial",
                type="TelephonyRejected",
                non_retryable=True,
            )
        settings = self.settings
        edge = (request.edge_url or settings.edge_url).rstrip("/")
        sid = settings.twilio_account_sid
        url = f"{settings.twilio_base.rstrip('/')}/2010-04-01/Accounts/{sid}/Calls.json"
        form = {
            "To": request.to,
            "From": settings.agent_phone_number,
            "Url": f"{edge}/twilio/voice?call_id={request.call_id}",
            # the call id, so a call nobody answers (no voice webhook) still reaches its workflow
            "StatusCallback": f"{edge}/twilio/status?call_id={request.call_id}",
        }
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.post(url, data=form, auth=self.twilio_auth())
        except httpx.HTTPError as error:
            raise ApplicationError(
                f"placing call {request.call_id}: {url} unreachable ({error})",
                type="TelephonyUnavailable",
            ) from error
        _reject_or_retry(response, f"placing call {request.call_id} through {url}")
        body = response.json()
        return PlacedCall(call_sid=str(body.get("sid", "")), status=str(body.get("status", "")))

    @activity.defn(name="deliver_utterance")
    async def deliver_utterance(self, request: DeliverUtterance) -> None:
        """Hand the edge a decision to speak on the live call."""
        url = f"{request.edge_url.rstrip('/')}/calls/{request.call_id}/say"
        body = request.decision.model_dump(mode="json")
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.post(url, json=body, headers=self.edge_auth())
        except httpx.HTTPError as error:
            raise ApplicationError(
                f"delivering {request.decision.utterance_id}: edge {url} unreachable ({error})",
                type="EdgeUnavailable",
            ) from error
        if response.status_code == 404:
            raise ApplicationError(
                f"call {request.call_id} is not on edge {request.edge_url}",
                type="CallNotOnEdge",
                non_retryable=True,
            )
        _reject_or_retry(response, f"delivering {request.decision.utterance_id} to {url}")
