"""The media edge: a FastAPI app speaking Twilio's webhooks and Media Streams protocol.

Routes:
- POST /twilio/voice       Twilio's voice webhook: starts the call workflow (inbound), returns TwiML
- WS   /twilio/media       Media Streams: one `CallSession` per connection
- POST /twilio/status      status callback: signals `call_status`
- POST /calls/{id}/say     a decision the workflow delivers outside a turn (404 if not on this edge)
- WS   /calls/{id}/events  the call's live events (replay first)
- GET  /healthz            calls and open media sockets (`media_edge.limits`)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from string import Formatter
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from twilio.request_validator import RequestValidator

from activities.knowledge_base import KBSettings
from media_edge.call_hold import edge_worker
from media_edge.deepgram_stt import DeepgramConfig, DeepgramConfigError, NovaStream, check_key
from media_edge.events import EventHub
from media_edge.flux import FluxStream
from media_edge.limits import MediaGate, server_config
from media_edge.llm import BamlLanguageModel
from media_edge.providers import SpeechToText
from media_edge.session import CallSession, EdgeServices
from media_edge.smart_turn import SmartTurnModel, TurnDetector
from media_edge.stt_models import embedded_stt
from media_edge.stt_stream import CallStream
from media_edge.tts import PhoneSpeech, make_tts
from media_edge.twiml import connect_stream, stream_url
from media_edge.vad import SileroVAD
from media_edge.workflow_link import LinkError, connect_temporal, send_call_status, start_call
from slot.llm.config import LLMSettings
from slot.payload_codec import PayloadKeyError, require_keyring
from slot.playbooks import PlaybookError, list_playbooks, load_playbook
from slot.settings import Settings, get_settings
from workflows import script
from workflows.messages import CallInput, CallStatusUpdate, Decision, Direction, Lead
from workflows.router_messages import RouterConfig

logger = logging.getLogger("media_edge.app")

_CALL_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,200}$")
WARM_UP_LINE = "Hello."


@dataclass
class Edge:
    """Everything the routes share; built once in the app's lifespan."""

    settings: Settings
    services: EdgeServices
    inference_executor: ThreadPoolExecutor
    vad_executor: ThreadPoolExecutor
    call_sids: OrderedDict[str, str]
    deliveries: set[asyncio.Task[bool]] = field(default_factory=set)
    """Status callbacks still being signalled (retried through a Temporal outage)."""

    def deliver_status(self, call_id: str, update: CallStatusUpdate) -> None:
        """Signal `call_status` in the background: Twilio need not wait out an outage."""
        task = asyncio.create_task(send_call_status(self.services.client, call_id, update, logger))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    def remember_call_sid(self, call_sid: str, call_id: str) -> None:
        self.call_sids[call_sid] = call_id
        while len(self.call_sids) > 10_000:
            self.call_sids.popitem(last=False)


def stream_config(settings: Settings) -> DeepgramConfig | None:
    """Deepgram's configuration when SLOT_STT names it (raises `DeepgramConfigError`, one line,
    when its key is missing)."""
    return None if settings.stt == "whisper" else DeepgramConfig.from_env(settings)


def stream_factory(
    config: DeepgramConfig | None, fallback: SpeechToText
) -> Callable[[logging.LoggerAdapter[logging.Logger]], CallStream] | None:
    if config is None:
        return None
    kind = NovaStream if config.settings.stt == "deepgram" else FluxStream

    def open_stream(log: logging.LoggerAdapter[logging.Logger]) -> CallStream:
        return kind(config, fallback=fallback, log=log)

    return open_stream


async def start_edge(settings: Settings, llm_settings: LLMSettings | None = None) -> Edge:
    """Check the speech service's key, connect to Temporal, load the speech models once (Whisper
    also as the streaming recognizer's fallback) and warm them up."""
    deepgram = stream_config(settings)
    if deepgram is not None:
        await check_key(deepgram)
    client = await connect_temporal(settings)
    inference = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="inference")
    vad_executor = ThreadPoolExecutor(1, thread_name_prefix="vad")
    loop = asyncio.get_running_loop()
    stt, tts = await asyncio.gather(
        loop.run_in_executor(
            inference, embedded_stt, settings.stt_model, inference, settings.inference_threads
        ),
        loop.run_in_executor(inference, make_tts, settings, inference),
    )
    speech = PhoneSpeech(tts, inference)
    await stt.transcribe(np.zeros(8000, dtype=np.int16), 8000)
    detector: TurnDetector | None = None
    if settings.endpointing == "smart_turn":
        model = await loop.run_in_executor(inference, SmartTurnModel.shared)
        await loop.run_in_executor(inference, model.predict, np.zeros(8000, dtype=np.int16))
        detector = TurnDetector(model, inference)
    lines = opening_lines(settings)
    if settings.presynthesize_lines:
        lines = sorted({*lines, *fixed_lines(settings)})
    started = time.perf_counter()
    await speech.warm_up(lines or [WARM_UP_LINE])
    logger.info("%d fixed lines synthesized in %.1f s", len(lines), time.perf_counter() - started)
    SileroVAD()
    services = EdgeServices(
        settings=settings,
        client=client,
        stt=stt,
        speech=speech,
        vad_factory=SileroVAD,
        vad_executor=vad_executor,
        events=EventHub(),
        turn_detector=detector,
        llm=BamlLanguageModel.from_settings(llm_settings),
        stt_stream=stream_factory(deepgram, stt),
    )
    logger.info(
        "media edge ready at %s (STT %s, TTS %s, Temporal %s, LLM %s)",
        settings.edge_url,
        f"{settings.stt}/{settings.stt_model}",
        getattr(tts, "name", type(tts).__name__),
        settings.temporal_address,
        services.llm.description if services.llm else "none: router tiers 0-1 and knowledge",
    )
    return Edge(settings, services, inference, vad_executor, OrderedDict())


def opening_lines(settings: Settings) -> list[str]:
    """The default script's first lines, synthesized at start-up so no caller waits for them."""
    try:
        playbook = load_playbook(settings.default_script, settings.playbooks_dir)
        lines = {script.opening(playbook, {}, follow_up=f).text for f in (False, True)}
    except Exception as error:
        logger.warning("no opening lines to pre-synthesize: %s", error)
        return []
    return sorted(lines)


def fixed_lines(settings: Settings) -> list[str]:
    """Every playbook line the same for every call (no per-call placeholders), as spoken."""
    fixed = {"agent_name", "company"}
    lines: set[str] = set()
    for name in list_playbooks(settings.playbooks_dir):
        try:
            playbook = load_playbook(name, settings.playbooks_dir)
        except PlaybookError as error:
            logger.warning("playbook %s not pre-synthesized: %s", name, error)
            continue
        templates = [playbook.fallback_line, playbook.no_input_goodbye]
        for state in playbook.states.values():
            templates += [state.say, *([state.reprompt] if state.reprompt else [])]
        for template in templates:
            try:
                fields = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
            except ValueError:
                fields = set()
            if fields - fixed:
                continue
            lines.add(script.render(playbook, template, {}))
    return sorted(lines)


def _twilio_signature_ok(request: Request, form: dict[str, str], token: str, edge_url: str) -> bool:
    """Twilio's X-Twilio-Signature over the edge's public URL (not the proxy's) and the form."""
    signature = request.headers.get("X-Twilio-Signature", "")
    url = edge_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return bool(RequestValidator(token).validate(url, form, signature))


async def _twilio_form(request: Request, settings: Settings) -> dict[str, str]:
    """The webhook's form fields, after checking Twilio's signature when a token is set."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if token and not _twilio_signature_ok(request, form, token, settings.edge_url):
        raise HTTPException(403, "invalid X-Twilio-Signature (TWILIO_AUTH_TOKEN is set)")
    return form


def create_app(
    settings: Settings | None = None, llm_settings: LLMSettings | None = None
) -> FastAPI:
    """The edge app; `llm_settings` default to the environment (`LLM_BASE_URL`...)."""
    settings = settings or get_settings()
    stream_config(settings)
    media_gate = MediaGate(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        edge = await start_edge(settings, llm_settings)
        app.state.edge = edge
        services = edge.services
        try:
            async with edge_worker(services.client, settings.edge_queue, services.holds):
                yield
        finally:
            edge.inference_executor.shutdown(wait=False, cancel_futures=True)
            edge.vad_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Slot media edge", lifespan=lifespan)

    def edge_of(request: Request | WebSocket) -> Edge:
        edge: Edge = request.app.state.edge
        return edge

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        edge = edge_of(request)
        return {"status": "ok", "calls": len(edge.services.sessions), **media_gate.health()}

    @app.post("/twilio/voice")
    async def twilio_voice(request: Request) -> Response:
        edge = edge_of(request)
        form = await _twilio_form(request, settings)
        call_sid = form.get("CallSid", "")
        if not call_sid:
            return PlainTextResponse("missing CallSid form field", status_code=400)
        params = request.query_params
        call_id = params.get("call_id") or f"call-{call_sid}"
        if not _CALL_ID.match(call_id):
            return PlainTextResponse(f"invalid call_id {call_id[:60]!r}", status_code=400)
        if not params.get("call_id"):
            script = params.get("script") or settings.default_script
            try:
                playbook = load_playbook(script, settings.playbooks_dir)
            except PlaybookError as error:
                return PlainTextResponse(str(error).splitlines()[0], status_code=400)
            call_input = CallInput(
                call_id=call_id,
                direction=Direction.INBOUND,
                lead=Lead(name=params.get("lead_name", ""), phone=form.get("From", "")),
                script_name=script,
                playbook=playbook,
                timers=settings.call_timers(),
                llm_enabled=edge.services.llm is not None,
                router=RouterConfig(knowledge_min_score=KBSettings().kb_answer_min_score),
                edge_url=settings.edge_url,
            )
            try:
                await start_call(edge.services.client, call_input, settings)
            except LinkError as error:
                logger.error("call %s: %s", call_id, error)
                return PlainTextResponse(str(error), status_code=503)
            logger.info("call %s: inbound call %s, script %s", call_id, call_sid, script)
        edge.remember_call_sid(call_sid, call_id)
        twiml = connect_stream(stream_url(settings.edge_url), {"call_id": call_id})
        return Response(twiml, media_type="application/xml")

    @app.post("/twilio/status")
    async def twilio_status(request: Request) -> Response:
        edge = edge_of(request)
        form = await _twilio_form(request, settings)
        call_sid = form.get("CallSid", "")
        status = form.get("CallStatus", "")
        if not call_sid or not status:
            return PlainTextResponse("missing CallSid or CallStatus form field", status_code=400)
        call_id = (
            request.query_params.get("call_id")
            or edge.call_sids.get(call_sid)
            or f"call-{call_sid}"
        )
        edge.deliver_status(call_id, CallStatusUpdate(status=status, call_sid=call_sid))
        return Response(status_code=204)

    @app.post("/calls/{call_id}/say", status_code=202)
    async def say(call_id: str, decision: Decision, request: Request) -> JSONResponse:
        session = edge_of(request).services.sessions.get(call_id)
        if session is None:
            raise HTTPException(404, f"call {call_id} has no media stream on this edge")
        session.say(decision)
        return JSONResponse({"queued": decision.utterance_id}, status_code=202)

    @app.websocket("/twilio/media")
    async def twilio_media(websocket: WebSocket) -> None:
        async with media_gate.admit(websocket) as admitted:
            if admitted:
                await CallSession(websocket, edge_of(websocket).services).run()

    @app.websocket("/calls/{call_id}/events")
    async def call_events(websocket: WebSocket, call_id: str) -> None:
        events = edge_of(websocket).services.events.call(call_id)
        await websocket.accept()

        async def forward() -> None:
            async for event in events.subscribe():
                await websocket.send_text(event.model_dump_json())

        async def watch_disconnect() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

        forwarder = asyncio.create_task(forward())
        watcher = asyncio.create_task(watch_disconnect())
        done, _ = await asyncio.wait({forwarder, watcher}, return_when=asyncio.FIRST_COMPLETED)
        for task in (forwarder, watcher):
            task.cancel()
        await asyncio.gather(forwarder, watcher, return_exceptions=True)
        if forwarder in done:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(1000)

    return app


def main() -> None:
    """Run the edge with uvicorn on settings.edge_host:edge_port."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    try:
        require_keyring(settings)
        app = create_app(settings)
    except PayloadKeyError as error:
        raise SystemExit(f"media edge: {error}") from None
    except DeepgramConfigError as error:
        raise SystemExit(f"media edge: {error}") from None
    uvicorn.Server(server_config(app, settings, log_level="info")).run()


if __name__ == "__main__":
    main()
