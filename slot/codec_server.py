"""The codec server: Temporal's documented `/encode` and `/decode` endpoints over Slot's keys.

The Web UI (and `temporal ... --codec-endpoint`) sends payloads here to show them decrypted, so
what Temporal stores stays encrypted while a person who may see a call reads it in clear. Every
request must carry the codec token (`SLOT_CODEC_TOKEN`), either as `Authorization: Bearer
<token>` (the CLI's `--codec-auth`, or a proxy in front of the UI) or as the first path segment
(`http://host:port/<token>`, the endpoint the dev UI is given, since the dev server's UI sends
no credential of its own). CORS answers only the Web UI's origins. Nothing is logged per
request: paths carry the token and bodies carry personal data.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from slot.payload_codec import EncryptionCodec, PayloadKeyError, require_keyring
from slot.settings import Settings, get_settings

CODEC_TOKEN_ENV = "SLOT_CODEC_TOKEN"
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Temporal caps a payload at 2 MB; the UI sends one event's payloads at a time."""


class CodecServerError(RuntimeError):
    """The codec server cannot run as configured; the message names the variable."""


def ui_origins(settings: Settings) -> list[str]:
    """The Web UI's origins: configured, else the dev UI's (under both loopback names)."""
    configured = [o.strip().rstrip("/") for o in settings.codec_ui_origins.split(",") if o.strip()]
    if configured:
        return configured
    ui = urlsplit(settings.temporal_ui_url)
    origins = [f"{ui.scheme}://{ui.netloc}"]
    if ui.hostname in ("127.0.0.1", "localhost"):
        twin = "localhost" if ui.hostname == "127.0.0.1" else "127.0.0.1"
        origins.append(f"{ui.scheme}://{twin}:{ui.port}")
    return origins


def codec_url(settings: Settings) -> str:
    return f"http://{settings.codec_host}:{settings.codec_port}"


def ui_codec_endpoint(settings: Settings) -> str:
    """The endpoint the dev server's UI is started with: the token as its path."""
    assert settings.codec_token is not None
    return f"{codec_url(settings)}/{settings.codec_token.get_secret_value()}"


def create_codec_app(settings: Settings) -> FastAPI:
    """The app; CodecServerError (or PayloadKeyError) when a key or the token is missing."""
    codec = EncryptionCodec(require_keyring(settings))
    if settings.codec_token is None or not settings.codec_token.get_secret_value():
        raise CodecServerError(
            f"{CODEC_TOKEN_ENV} is not set: the codec server decrypts call data only for those "
            "who present it"
        )
    token = settings.codec_token.get_secret_value().encode()

    app = FastAPI(title="Slot payload codec", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=ui_origins(settings),
        allow_methods=["POST"],
        allow_headers=["Content-Type", "X-Namespace", "Authorization", "Authorization-Extras"],
        allow_credentials=True,
    )

    def bearer_ok(request: Request) -> bool:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token)

    async def convert(
        request: Request, allowed: bool, step: Callable[[list[Payload]], Awaitable[list[Payload]]]
    ) -> Response:
        if not allowed:
            raise HTTPException(401, "codec token required", {"WWW-Authenticate": "Bearer"})
        body = await read_body(request)
        try:
            payloads = json_format.Parse(body, Payloads())
        except json_format.ParseError:
            raise HTTPException(400, "body is not Temporal Payloads JSON") from None
        try:
            converted = await step(list(payloads.payloads))
        except PayloadKeyError as error:
            raise HTTPException(422, str(error)) from None
        return Response(
            json_format.MessageToJson(Payloads(payloads=converted)),
            media_type="application/json",
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await convert(request, bearer_ok(request), codec.encode)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await convert(request, bearer_ok(request), codec.decode)

    @app.post("/{credential}/encode")
    async def encode_at(credential: str, request: Request) -> Response:
        allowed = hmac.compare_digest(credential.encode(), token)
        return await convert(request, allowed, codec.encode)

    @app.post("/{credential}/decode")
    async def decode_at(credential: str, request: Request) -> Response:
        allowed = hmac.compare_digest(credential.encode(), token)
        return await convert(request, allowed, codec.decode)

    return app


async def read_body(request: Request) -> bytes:
    """The request body, refused past MAX_BODY_BYTES before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body over {MAX_BODY_BYTES} bytes")
    return bytes(body)


def main() -> None:
    """Serve on settings.codec_host:codec_port; a missing key or token stops it at once."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    try:
        app = create_codec_app(settings)
    except (CodecServerError, PayloadKeyError) as error:
        raise SystemExit(f"codec server: {error}") from None
    host, port = settings.codec_host, settings.codec_port
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
