"""The parts of Twilio's REST API that Slot uses, answered by simulated callers.

`POST /2010-04-01/Accounts/{AccountSid}/Calls.json` places an outbound call exactly as Twilio's
API takes it (form fields, HTTP basic auth, Twilio's JSON and error shapes); the simulator then
"answers" it in the background with the persona registered for the `To` number, or does what
the line registered for it does (`POST /sim/lines`: rings out unanswered, is busy, fails, or is
picked up by a voicemail machine), reporting asynchronous machine detection (`MachineDetection`
with `AsyncAmd=true`) to its callback. `POST .../Calls/{CallSid}.json` updates a live call as
Twilio does: `Twiml` with `<Dial>` (a transfer, recorded with the call) or `<Hangup/>`, or
`Status=completed`. `/sim/...` routes are the simulator's own controls: register personas and
lines, start inbound calls, read results.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from simulator.persona import Persona, PersonaError, load_persona
from simulator.phone import CallDirection, CallEvent, CallResult, SimulatedCall
from simulator.protocol import (
    DialInstruction,
    TwimlError,
    new_sid,
    parse_call_update,
)
from simulator.signing import signature_headers
from slot.credentials import MissingCredential, twilio_token
from slot.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
PROGRESS_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
MACHINE_DETECTION = frozenset({"Enable", "DetectMessageEnd"})


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's REST error body."""
    return JSONResponse(
        status_code=status,
        content={
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def _rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment).replace("-0000", "+0000")


def _formatted(number: str) -> str:
    digits = number.removeprefix("+1")
    if number.startswith("+1") and len(digits) == 10 and digits.isdigit():
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    return number


@dataclass
class SimCall:
    sid: str
    account_sid: str
    direction: CallDirection
    to: str
    from_: str
    persona_path: Path | None
    recording_path: Path
    status: str = "queued"
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    date_updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_time: datetime | None = None
    end_time: datetime | None = None
    status_callback: str | None = None
    status_callback_events: frozenset[str] = frozenset({"completed"})
    result: CallResult | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    line: SimulatedCall | None = None
    """The simulated call, while a REST update can still reach it."""

    def set_status(self, status: str) -> None:
        self.status = status
        self.date_updated = datetime.now(UTC)

    def resource(self) -> dict[str, Any]:
        """The Call resource as Twilio's API returns it."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        duration = None
        if self.result is not None and self.status == "completed":
            duration = str(self.result.duration_ms // 1000)
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": _rfc2822(self.date_created),
            "date_updated": _rfc2822(self.date_updated),
            "direction": self.direction,
            "duration": duration,
            "end_time": _rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": _formatted(self.from_),
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": _rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {
                "notifications": f"{uri}/Notifications.json",
                "recordings": f"{uri}/Recordings.json",
                "payments": f"{uri}/Payments.json",
                "events": f"{uri}/Events.json",
                "siprec": f"{uri}/Siprec.json",
                "streams": f"{uri}/Streams.json",
                "user_defined_message_subscriptions": f"{uri}/UserDefinedMessageSubscriptions.json",
                "user_defined_messages": f"{uri}/UserDefinedMessages.json",
            },
            "to": self.to,
            "to_formatted": _formatted(self.to),
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }

    def summary(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "direction": self.direction,
            "status": self.status,
            "to": self.to,
            "from": self.from_,
            "recording": str(self.result.recording_path)
            if self.result and self.result.recording_path
            else None,
            "result": self.result.summary() if self.result else None,
            "error": self.error,
        }


class RegisterPersona(BaseModel):
    phone: str = Field(min_length=1)
    persona_path: str = Field(min_length=1)


LineBehaviour = Literal["no-answer", "busy", "failed", "voicemail"]


class RegisterLine(BaseModel):
    """A number whose calls no person answers: it rings out, is busy, fails, or a voicemail
    machine picks up."""

    phone: str = Field(min_length=1)
    answer: LineBehaviour


class StartInboundCall(BaseModel):
    persona_path: str = Field(min_length=1)
    edge_url: str | None = None
    script: str | None = None
    lead_name: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    to: str | None = None
    status_callback: str | None = None
    """Defaults to `{edge_url}/twilio/status`, as configured on the agent's phone number."""


class TwilioSimulator:
    """Calls and personas held by one simulator app."""

    def __init__(
        self, settings: Settings, default_persona: Path | None, auth_token: str | None
    ) -> None:
        self.settings = settings
        self.default_persona = default_persona
        self.auth_token = auth_token
        self.calls: dict[str, SimCall] = {}
        self.personas: dict[str, Path] = {}
        self.lines: dict[str, LineBehaviour] = {}
        """Numbers no person answers, and what happens instead (`POST /sim/lines`)."""

    def recording_path(self, sid: str) -> Path:
        return self.settings.data_dir / "recordings" / f"{sid}.wav"

    def persona_for(self, number: str) -> Path | None:
        if number in self.lines:
            return None
        return self.personas.get(number) or self.default_persona

    def start(self, call: SimCall, simulated: SimulatedCall | None) -> None:
        self.calls[call.sid] = call
        call.line = simulated
        call.task = asyncio.create_task(self._play(call, simulated), name=f"sim-call-{call.sid}")

    async def _play(self, call: SimCall, simulated: SimulatedCall | None) -> None:
        try:
            if simulated is None:
                line = self.lines.get(call.to, "no-answer")
                status = "completed" if line == "voicemail" else line
                call.set_status(status)
                answered_by = "machine_end_beep" if line == "voicemail" else ""
                await self._report_unanswered(call, status, answered_by)
                return
            call.result = await simulated.run()
            call.set_status(call.result.status)
            call.error = call.result.error
        except Exception as exc:
            log.exception("simulated call %s crashed", call.sid)
            call.error = f"{type(exc).__name__}: {exc}"
            call.set_status("failed")
        finally:
            call.end_time = datetime.now(UTC)
            call.done.set()

    async def _report_unanswered(self, call: SimCall, status: str, answered_by: str) -> None:
        """Twilio's `completed` progress callback for a call no person picked up: `status`
        no-answer, busy or failed, or completed with `AnsweredBy` machine_... (a voicemail)."""
        if not call.status_callback or "completed" not in call.status_callback_events:
            return
        fields = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
            "CallDuration": "0",
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
            "Timestamp": _rfc2822(datetime.now(UTC)) or "",
        }
        if answered_by:
            fields["AnsweredBy"] = answered_by
        headers = signature_headers(self.auth_token, call.status_callback, fields)
        try:
            async with httpx.AsyncClient(timeout=15.0) as http:
                await http.post(call.status_callback, data=fields, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("status callback to %s failed: %s", call.status_callback, exc)

    def track(self, call: SimCall) -> Callable[[CallEvent], None]:
        def on_event(event: CallEvent) -> None:
            if event.kind == "ringing":
                call.set_status("ringing")
            elif event.kind == "answered":
                call.start_time = datetime.now(UTC)
                call.set_status("in-progress")

        return on_event

    async def shutdown(self) -> None:
        tasks = [c.task for c in self.calls.values() if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _basic_auth(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username, password


def create_app(
    settings: Settings | None = None,
    *,
    default_persona: Path | None = None,
    auth_token: str | None = None,
) -> FastAPI:
    """The simulator app. `auth_token` (default: env TWILIO_AUTH_TOKEN) is checked when set;
    `default_persona` answers outbound calls to numbers with no registered persona (none: the
    call is not answered, status `no-answer`)."""
    settings = settings or get_settings()
    sim = TwilioSimulator(
        settings,
        default_persona,
        auth_token if auth_token is not None else os.environ.get("TWILIO_AUTH_TOKEN"),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await sim.shutdown()

    app = FastAPI(title="Slot phone simulator (Twilio API)", lifespan=lifespan)
    app.state.simulator = sim

    def authenticate(request: Request, account_sid: str) -> JSONResponse | None:
        creds = _basic_auth(request)
        if creds is None:
            return twilio_error(401, 20003, "Authentication Error - No credentials provided")
        username, password = creds
        if username != account_sid:
            return twilio_error(
                401, 20003, "Authentication Error - AccountSid does not match credentials"
            )
        if sim.auth_token and not secrets.compare_digest(password, sim.auth_token):
            return twilio_error(401, 20003, "Authentication Error - invalid username or password")
        return None

    @app.post(f"/{API_VERSION}/Accounts/{{account_sid}}/Calls.json", response_model=None)
    async def create_call(account_sid: str, request: Request) -> JSONResponse:
        denied = authenticate(request, account_sid)
        if denied is not None:
            return denied
        form = await request.form()
        fields = {key: str(value) for key, value in form.multi_items()}
        to, from_, url = fields.get("To", ""), fields.get("From", ""), fields.get("Url", "")
        if not to:
            return twilio_error(400, 21201, "No 'To' number is specified")
        if not from_:
            return twilio_error(400, 21213, "No 'From' number is specified")
        if not url:
            return twilio_error(400, 21205, "Url parameter is required")
        if not url.startswith(("http://", "https://")):
            return twilio_error(400, 21205, f"Url is not a valid URL: {url}")
        methods = {
            name: fields.get(name, "POST").upper() for name in ("Method", "StatusCallbackMethod")
        }
        for name, method in methods.items():
            if method not in ("GET", "POST"):
                return twilio_error(400, 21200, f"{name} must be GET or POST, got {method}")
        requested = {
            event.lower()
            for value in form.getlist("StatusCallbackEvent")
            for event in str(value).replace(",", " ").split()
        }
        unknown = requested - PROGRESS_EVENTS
        if unknown:
            return twilio_error(
                400, 21626, f"Invalid StatusCallbackEvent: {', '.join(sorted(unknown))}"
            )
        detection = fields.get("MachineDetection")
        if detection is not None and detection not in MACHINE_DETECTION:
            return twilio_error(400, 21200, f"Invalid MachineDetection: {detection}")
        amd_callback = None
        if detection and fields.get("AsyncAmd", "").lower() == "true":
            amd_callback = fields.get("AsyncAmdStatusCallback") or None
        sid = new_sid("CA")
        persona_path = sim.persona_for(to)
        call = SimCall(
            sid=sid,
            account_sid=account_sid,
            direction="outbound-api",
            to=to,
            from_=from_,
            persona_path=persona_path,
            recording_path=sim.recording_path(sid),
            status_callback=fields.get("StatusCallback") or None,
            status_callback_events=frozenset(requested or {"completed"}),
        )
        simulated = None
        if persona_path is not None:
            try:
                persona = load_persona(persona_path)
            except PersonaError as exc:
                log.warning("call %s not answered: %s", sid, exc)
                call.error = str(exc)
            else:
                simulated = SimulatedCall(
                    settings.edge_url,
                    persona,
                    direction="outbound-api",
                    call_sid=sid,
                    account_sid=account_sid,
                    from_number=from_,
                    to_number=to,
                    voice_url=url,
                    voice_method=methods["Method"],
                    status_callback=call.status_callback,
                    status_callback_events=call.status_callback_events,
                    status_callback_method=methods["StatusCallbackMethod"],
                    recording_path=call.recording_path,
                    auth_token=sim.auth_token,
                    on_event=sim.track(call),
                    amd_callback=amd_callback,
                )
        sim.start(call, simulated)
        return JSONResponse(status_code=201, content=call.resource())

    @app.post(f"/{API_VERSION}/Accounts/{{account_sid}}/Calls/{{sid}}.json", response_model=None)
    async def update_call(account_sid: str, sid: str, request: Request) -> JSONResponse:
        """Live-call control: new TwiML (`<Dial>`, `<Hangup/>`) or `Status=completed`."""
        denied = authenticate(request, account_sid)
        if denied is not None:
            return denied
        call = sim.calls.get(sid)
        if call is None or call.account_sid != account_sid:
            return twilio_error(404, 20404, f"The requested call {sid} was not found")
        fields = {key: str(value) for key, value in (await request.form()).items()}
        line = call.line
        if line is None or not line.live:
            return twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
        status, twiml = fields.get("Status", "").lower(), fields.get("Twiml", "")
        if status in ("completed", "canceled"):
            await line.end_by_api()
        elif twiml:
            try:
                instruction = parse_call_update(twiml)
            except TwimlError as exc:
                return twilio_error(400, 12100, f"Document parse failure: {exc}")
            if isinstance(instruction, DialInstruction):
                await line.transfer(instruction.number)
            else:
                await line.end_by_api()
        else:
            return twilio_error(400, 21218, "The simulator updates a call with Twiml or Status")
        call.date_updated = datetime.now(UTC)
        return JSONResponse(content=call.resource())

    @app.get(f"/{API_VERSION}/Accounts/{{account_sid}}/Calls/{{sid}}.json", response_model=None)
    async def fetch_call(account_sid: str, sid: str, request: Request) -> JSONResponse:
        denied = authenticate(request, account_sid)
        if denied is not None:
            return denied
        call = sim.calls.get(sid)
        if call is None or call.account_sid != account_sid:
            return twilio_error(
                404,
                20404,
                f"The requested resource /{API_VERSION}/Accounts/{account_sid}/Calls/{sid}.json "
                "was not found",
            )
        return JSONResponse(content=call.resource())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "phone-simulator"}

    @app.post("/sim/personas", response_model=None)
    async def register_persona(body: RegisterPersona) -> JSONResponse:
        try:
            persona = load_persona(body.persona_path)
        except PersonaError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        sim.personas[body.phone] = Path(body.persona_path)
        sim.lines.pop(body.phone, None)
        return JSONResponse(content={"phone": body.phone, "persona": persona.name})

    @app.post("/sim/lines", response_model=None)
    async def register_line(body: RegisterLine) -> JSONResponse:
        sim.lines[body.phone] = body.answer
        return JSONResponse(content={"phone": body.phone, "answer": body.answer})

    @app.post("/sim/calls", response_model=None)
    async def start_inbound_call(body: StartInboundCall) -> JSONResponse:
        try:
            persona: Persona = load_persona(body.persona_path)
        except PersonaError as exc:
            return JSONResponse(status_code=400, content={"error": str(exc)})
        edge_url = (body.edge_url or settings.edge_url).rstrip("/")
        params = dict(body.params)
        if body.script:
            params["script"] = body.script
        if body.lead_name:
            params["lead_name"] = body.lead_name
        sid = new_sid("CA")
        to = body.to or settings.agent_phone_number
        call = SimCall(
            sid=sid,
            account_sid=settings.twilio_account_sid,
            direction="inbound",
            to=to,
            from_=persona.phone,
            persona_path=Path(body.persona_path),
            recording_path=sim.recording_path(sid),
        )
        simulated = SimulatedCall(
            edge_url,
            persona,
            direction="inbound",
            call_sid=sid,
            account_sid=settings.twilio_account_sid,
            to_number=to,
            params=params,
            status_callback=body.status_callback or f"{edge_url}/twilio/status",
            recording_path=call.recording_path,
            auth_token=sim.auth_token,
            on_event=sim.track(call),
        )
        sim.start(call, simulated)
        return JSONResponse(status_code=201, content={"sid": sid, "status": call.status})

    @app.get("/sim/calls/{sid}", response_model=None)
    async def sim_call(sid: str, wait_s: float = 0.0) -> JSONResponse:
        """Status, recording and result; `wait_s` long-polls until the call has ended."""
        call = sim.calls.get(sid)
        if call is None:
            return JSONResponse(status_code=404, content={"error": f"no simulated call {sid}"})
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.done.wait(), timeout=min(wait_s, 600.0))
        return JSONResponse(content=call.summary())

    @app.get("/sim/calls", response_model=None)
    async def sim_calls() -> JSONResponse:
        return JSONResponse(content=[call.summary() for call in sim.calls.values()])

    return app


def main() -> None:
    """Run the simulator; like Twilio, it signs every request it makes to the edge."""
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        token = twilio_token(settings)
    except MissingCredential as error:
        sys.exit(f"phone simulator not started: {error}")
    app = create_app(settings, auth_token=token)
    uvicorn.run(app, host=settings.simulator_host, port=settings.simulator_port)


if __name__ == "__main__":
    main()
