"""Telephony activities: the workflow's only way to reach a phone network or a media edge.

Twilio is reached through its official SDK (`twilio.rest.Client` on the SDK's aiohttp client,
its API domain pointed at `SLOT_TWILIO_API_BASE`, so the phone simulator serves it in tests):
placing a call with answering-machine detection, and live-call control (transfer with
`<Dial>`, hang up). The edge is reached over HTTP. Errors a retry cannot fix (a call not on
that edge, a request Twilio rejected, missing configuration) are non-retryable, so the
workflow hears about them at once.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode, urlsplit

import aiohttp
import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from slot.credentials import INTERNAL_TOKEN_ENV, TWILIO_AUTH_TOKEN_ENV
from slot.settings import Settings
from workflows.messages import Decision

TRANSFER_NUMBER_ENV = "SLOT_TRANSFER_NUMBER"
TWILIO_TIMEOUT_S = 10.0
_SDK_LOG = logging.getLogger("slot.twilio_sdk")
_SDK_LOG.setLevel(logging.WARNING)
"""The SDK logs every request at INFO (URLs with call ids); Slot's logs keep only failures."""
_TWILIO_ERRORS = (TwilioRestException, aiohttp.ClientError, TimeoutError)


class PlaceCall(BaseModel):
    """An outbound call to place: who to dial and which call workflow answers it."""

    call_id: str
    to: str
    edge_url: str | None = None
    """Edge that serves the call; defaults to the configured edge URL."""
    detect_machine: bool = True
    """Twilio's answering-machine detection (DetectMessageEnd, asynchronous): the call is
    connected at once and the result reaches the call's workflow when the greeting ends."""


class PlacedCall(BaseModel):
    call_sid: str
    status: str


class TransferCall(BaseModel):
    """Hand a live call to a person (cold transfer) with the summary they get."""

    call_id: str
    call_sid: str
    summary: str


class TransferredCall(BaseModel):
    to: str


class EndCall(BaseModel):
    """Hang up a live call (an answering machine the playbook leaves no message on)."""

    call_id: str
    call_sid: str
    reason: str


class DeliverUtterance(BaseModel):
    """A decision the workflow made on its own (a reprompt) for the edge to speak, by HTTP: the
    delivery of calls recorded before `workflows.edge_delivery` (now the edge's task queue)."""

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


def _twilio_failure(error: Exception, what: str) -> ApplicationError:
    """Twilio's refusal (4xx but 408/429) is final; its outages and timeouts are retried."""
    if isinstance(error, TwilioRestException):
        message = f"{what}: Twilio answered HTTP {error.status} (code {error.code}): {error.msg}"
        if 400 <= error.status < 500 and error.status not in (408, 429):
            return ApplicationError(message, type="TelephonyRejected", non_retryable=True)
        return ApplicationError(message, type="TelephonyUnavailable")
    return ApplicationError(
        f"{what}: Twilio unreachable ({type(error).__name__}: {error})", type="TelephonyUnavailable"
    )


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

    @asynccontextmanager
    async def twilio(self) -> AsyncIterator[Client]:
        """The SDK's client for one activity, on its async HTTP client, against the configured
        API base (the simulator by default); the SDK reads nothing from the environment."""
        account_sid, token = self.twilio_auth()
        http = AsyncTwilioHttpClient(timeout=TWILIO_TIMEOUT_S, logger=_SDK_LOG)
        client = Client(account_sid, token, http_client=http, environment={})
        client.api.base_url = self.settings.twilio_base.rstrip("/")
        try:
            yield client
        finally:
            await http.close()

    def transfer_number(self) -> str:
        number = self.settings.transfer_number
        if not number:
            raise ApplicationError(
                f"{TRANSFER_NUMBER_ENV} is not set; it names the person calls are transferred to",
                type="MissingConfiguration",
                non_retryable=True,
            )
        return number

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
        """Dial out through Twilio (or the simulator that speaks its API); Twilio's webhooks for
        the call (voice, status, machine detection) name the call's workflow."""
        if not request.to:
            raise ApplicationError(
                f"call {request.call_id} has no phone number to dial",
                type="TelephonyRejected",
                non_retryable=True,
            )
        edge = (request.edge_url or self.settings.edge_url).rstrip("/")
        query = urlencode({"call_id": request.call_id})
        amd: dict[str, str] = {}
        if request.detect_machine:
            amd = {
                "machine_detection": "DetectMessageEnd",
                "async_amd": "true",
                "async_amd_status_callback": f"{edge}/twilio/amd?{query}",
            }
        what = f"placing call {request.call_id}"
        try:
            async with self.twilio() as client:
                call = await client.calls.create_async(
                    to=request.to,
                    from_=self.settings.agent_phone_number,
                    url=f"{edge}/twilio/voice?{query}",
                    status_callback=f"{edge}/twilio/status?{query}",
                    **amd,
                )
        except _TWILIO_ERRORS as error:
            raise _twilio_failure(error, what) from error
        return PlacedCall(call_sid=call.sid or "", status=str(call.status or ""))

    @activity.defn(name="transfer_call")
    async def transfer_call(self, request: TransferCall) -> TransferredCall:
        """Cold transfer: the live call's TwiML becomes `<Dial>` to the configured number, so
        Twilio ends the media stream and connects the caller to the person."""
        number = self.transfer_number()
        twiml = VoiceResponse()
        twiml.dial(number)
        what = f"transferring call {request.call_id}"
        try:
            async with self.twilio() as client:
                await client.calls(request.call_sid).update_async(twiml=str(twiml))
        except _TWILIO_ERRORS as error:
            raise _twilio_failure(error, what) from error
        activity.logger.info("call %s transferred", request.call_id)
        return TransferredCall(to=number)

    @activity.defn(name="end_call")
    async def end_call(self, request: EndCall) -> None:
        """Hang up the live call (Twilio's `Status=completed` on the call)."""
        what = f"ending call {request.call_id} ({request.reason})"
        try:
            async with self.twilio() as client:
                await client.calls(request.call_sid).update_async(status="completed")
        except _TWILIO_ERRORS as error:
            raise _twilio_failure(error, what) from error

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
