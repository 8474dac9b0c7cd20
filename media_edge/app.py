"""The media edge: a FastAPI app speaking Twilio's webhooks and Media Streams protocol.

Routes (the public listener; every Twilio request is signed, see `media_edge.auth`):
- POST /twilio/voice       Twilio's voice webhook: starts the call workflow (inbound), returns TwiML
- WS   /twilio/media       Media Streams: one `CallSession` per connection
- POST /twilio/status      status callback: signals `call_status`
- POST /twilio/amd         answering-machine detection callback: signals `machine_detection`
- GET  /healthz            calls and open media sockets (`media_edge.limits`)
What changes or reveals a call (`say`, `events`) is on the internal listener (`internal`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from string import Formatter
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import PlainTextResponse, Response

from activities.knowledge_base import KBSettings
from media_edge.auth import (
    STREAM_TOKEN_PARAMETER,
    EdgeCredentials,
    RedactQueryStrings,
    StreamTokens,
    require_credentials,
    stream_handshake_ok,
    twilio_signature_ok,
)
from media_edge.call_hold import edge_worker
from media_edge.deepgram_stt import DeepgramConfig, DeepgramConfigError, NovaStream, check_key
from media_edge.delivery import EdgeDelivery
from media_edge.events import EventHub
from media_edge.flux import FluxStream
from media_edge.internal import create_internal_app, internal_listener
from media_edge.limits import MediaGate, server_config
from media_edge.line_store import LineStore
from media_edge.llm import BamlLanguageModel
from media_edge.providers import SpeechToText
from media_edge.session import CallSession, EdgeServices
from media_edge.smart_turn import SmartTurnModel, TurnDetector
from media_edge.stt_models import embedded_stt
from media_edge.stt_stream import CallStream
from media_edge.tts import PhoneSpeech, make_tts
from media_edge.tts_stream import VoiceConfigError
from media_edge.twilio_protocol import CLOSE_POLICY_VIOLATION
from media_edge.twiml import connect_stream, stream_url
from media_edge.vad import VADPool
from media_edge.voices import check_voice_key, voice_config, voice_factory
from media_edge.workflow_link import (
    LinkError,
    connect_temporal,
    send_call_status,
    send_machine_detection,
    start_call,
)
from slot.credentials import MissingCredential
from slot.live_events import live_events_for
from slot.llm.config import LLMSettings
from slot.payload_codec import PayloadKeyError, require_keyring
from slot.playbooks import PlaybookError, list_playbooks, load_playbook
from slot.settings import Settings, get_settings
from workflows import script
from workflows.messages import CallInput, CallStatusUpdate, Direction, Lead, MachineDetection
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
        self._in_background(send_call_status(self.services.client, call_id, update, logger))

    def deliver_machine_detection(self, call_id: str, amd: MachineDetection) -> None:
        """Signal `machine_detection` in the background, like a status callback."""
        self._in_background(send_machine_detection(self.services.client, call_id, amd, logger))

    def _in_background(self, signal: Coroutine[Any, Any, bool]) -> None:
        task = asyncio.create_task(signal)
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    def call_id_for(self, request: Request, call_sid: str) -> str:
        """The call a Twilio callback is about: named in its URL (outbound calls), or the call
        this edge answered for its CallSid."""
        return (
            request.query_params.get("call_id")
            or self.call_sids.get(call_sid)
            or f"call-{call_sid}"
        )

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
    client = config.client()

    def open_stream(log: logging.LoggerAdapter[logging.Logger]) -> CallStream:
        return kind(config, fallback=fallback, log=log, client=client)

    return open_stream


async def start_edge(
    settings: Settings, credentials: EdgeCredentials, llm_settings: LLMSettings | None = None
) -> Edge:
    """Check the speech services' keys, connect to Temporal, load the speech models once
    (Whisper and Piper also as the streaming services' fallbacks) and warm them up."""
    deepgram = stream_config(settings)
    voice = voice_config(settings)
    if deepgram is not None:
        await check_key(deepgram)
    if voice is not None:
        await check_voice_key(voice)
    client = await connect_temporal(settings)
    inference = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="inference")
    vad_executor = ThreadPoolExecutor(1, thread_name_prefix="vad")
    loop = asyncio.get_running_loop()
    stt, tts = await asyncio.gather(
        loop.run_in_executor(
            inference,
            embedded_stt,
            settings.stt_model,
            inference,
            settings.inference_threads,
            settings.model_cache_path,
            settings.stt_second_look and settings.stt_second_opinion,
        ),
        loop.run_in_executor(inference, make_tts, settings, inference),
    )
    identity = getattr(tts, "identity", None)
    store = LineStore(settings.line_store_path, identity) if identity else None
    speech = PhoneSpeech(tts, inference, store=store)
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
    await speech.warm_up(lines)
    async for _ in speech.render(WARM_UP_LINE, cacheable=False):
        pass  # the voice's model itself, when every line came from the store
    logger.info("%d fixed lines ready in %.1f s", len(lines), time.perf_counter() - started)
    vads = VADPool(vad_executor)
    vads.release(await vads.acquire())
    streams = None
    if settings.redis_url:
        streams = live_events_for(
            settings.redis_url, require_keyring(settings), settings.redis_prefix
        )
    services = EdgeServices(
        settings=settings,
        client=client,
        stt=stt,
        speech=speech,
        vads=vads,
        vad_executor=vad_executor,
        events=EventHub(streams=streams),
        stream_tokens=StreamTokens(credentials.internal_token, settings.stream_token_ttl_s),
        turn_detector=detector,
        llm=BamlLanguageModel.from_settings(llm_settings),
        stt_stream=stream_factory(deepgram, stt),
        voice=voice_factory(voice, speech),
    )
    logger.info(
        "media edge ready at %s (STT %s, TTS %s, Temporal %s, LLM %s)",
        settings.edge_url,
        f"{settings.stt}/{settings.stt_model}",
        f"{settings.tts}, fallback {speech.name}" if voice else speech.name,
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


async def _twilio_form(request: Request, settings: Settings, token: str) -> dict[str, str]:
    """The webhook's form fields, once Twilio's signature over the edge's public URL (not the
    proxy's) and the form checks out; 403 otherwise."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    url = settings.edge_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if not twilio_signature_ok(token, url, form, request.headers.get("X-Twilio-Signature", "")):
        raise HTTPException(403, "missing or invalid X-Twilio-Signature")
    return form


def create_app(
    settings: Settings | None = None, llm_settings: LLMSettings | None = None
) -> FastAPI:
    """The edge's public app, which runs the internal listener alongside; `llm_settings`
    default to the environment (`LLM_BASE_URL`...). Raises `MissingCredential` without the
    secrets it needs."""
    settings = settings or get_settings()
    stream_config(settings)
    voice_config(settings)
    media_gate = MediaGate(settings)
    credentials = require_credentials(settings)
    media_url = stream_url(settings.edge_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        edge = await start_edge(settings, credentials, llm_settings)
        app.state.edge = edge
        services = edge.services
        internal = create_internal_app(services, credentials.internal_token)
        host, port = settings.edge_internal_host, settings.edge_internal_port
        try:
            async with (
                edge_worker(
                    services.client,
                    settings.edge_queue,
                    services.holds,
                    EdgeDelivery(services.sessions, settings.edge_queue),
                ),
                internal_listener(internal, host, port, settings.edge_shutdown_grace_s),
            ):
                yield
        finally:
            await services.events.close()
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
        form = await _twilio_form(request, settings, credentials.twilio_token)
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
            lead = Lead(name=params.get("lead_name", ""), phone=form.get("From", ""))
            if params.get("lead_name") and not lead.name:
                logger.warning("call %s: lead_name dropped: not a plain name", call_id)
            call_input = CallInput(
                call_id=call_id,
                direction=Direction.INBOUND,
                lead=lead,
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
        token = edge.services.stream_tokens.issue(call_sid, call_id, time.time())
        parameters = {"call_id": call_id, STREAM_TOKEN_PARAMETER: token}
        twiml = connect_stream(media_url, parameters)
        return Response(twiml, media_type="application/xml")

    @app.post("/twilio/status")
    async def twilio_status(request: Request) -> Response:
        edge = edge_of(request)
        form = await _twilio_form(request, settings, credentials.twilio_token)
        call_sid = form.get("CallSid", "")
        status = form.get("CallStatus", "")
        if not call_sid or not status:
            return PlainTextResponse("missing CallSid or CallStatus form field", status_code=400)
        update = CallStatusUpdate(
            status=status, call_sid=call_sid, answered_by=form.get("AnsweredBy", "")
        )
        edge.deliver_status(edge.call_id_for(request, call_sid), update)
        return Response(status_code=204)

    @app.post("/twilio/amd")
    async def twilio_amd(request: Request) -> Response:
        """Twilio's `AsyncAmdStatusCallback`: who (or what) answered an outbound call."""
        edge = edge_of(request)
        form = await _twilio_form(request, settings, credentials.twilio_token)
        call_sid, answered_by = form.get("CallSid", ""), form.get("AnsweredBy", "")
        if not call_sid or not answered_by:
            return PlainTextResponse("missing CallSid or AnsweredBy form field", status_code=400)
        duration = form.get("MachineDetectionDuration", "")
        amd = MachineDetection(
            answered_by=answered_by,
            call_sid=call_sid,
            detection_ms=int(duration) if duration.isdigit() else None,
        )
        call_id = edge.call_id_for(request, call_sid)
        logger.info("call %s: answered by %s", call_id, answered_by)
        edge.deliver_machine_detection(call_id, amd)
        return Response(status_code=204)

    @app.websocket("/twilio/media")
    async def twilio_media(websocket: WebSocket) -> None:
        signature = websocket.headers.get("X-Twilio-Signature", "")
        if not stream_handshake_ok(credentials.twilio_token, media_url, signature):
            await websocket.close(CLOSE_POLICY_VIOLATION)
            return
        async with media_gate.admit(websocket) as admitted:
            if admitted:
                await CallSession(websocket, edge_of(websocket).services).run()

    return app


def main() -> None:
    """Run the edge with uvicorn on settings.edge_host:edge_port (and its internal listener)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("uvicorn.access").addFilter(RedactQueryStrings())
    settings = get_settings()
    try:
        require_keyring(settings)
        app = create_app(settings)
    except PayloadKeyError as error:
        raise SystemExit(f"media edge: {error}") from None
    except (DeepgramConfigError, VoiceConfigError) as error:
        raise SystemExit(f"media edge: {error}") from None
    except MissingCredential as error:
        raise SystemExit(f"media edge not started: {error}") from None
    uvicorn.Server(server_config(app, settings, log_level="info")).run()


if __name__ == "__main__":
    main()
