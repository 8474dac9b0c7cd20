"""Limits on the Media Streams listener, so one bad client never silences the other calls.

Every call on an edge shares one event loop: a client that sends huge messages, or holds many
sockets open without ever starting a stream, must be turned away before it costs the loop time
or the process memory. Three limits do it:

- message size, enforced by the WebSocket server itself (`server_config`), which reads a frame's
  header and closes with 1009 before it buffers the payload;
- open media sockets, overall and per remote address (`MediaGate`), refused before the
  WebSocket is accepted (HTTP 503 / 429 with a one-line reason);
- the wait for `start`, enforced by the session (`Settings.media_start_timeout_s`).

Parsing stays on the loop: a Twilio media frame parses in 9-22 us and the largest message the
edge reads in 18-51 us (quiet / busy machine), where a round trip to a thread costs 150-200 us
(`python -m evals.edge_flood_bench --parse`). What stalled the loop was the unbounded size: one
10 MB message took 42-250 ms to parse.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from slot.settings import Settings

logger = logging.getLogger("media_edge.limits")

TWILIO_MEDIA_MESSAGE_BYTES = 400
"""A Twilio media message: 160 bytes of mu-law (20 ms at 8 kHz) as base64 in ~390 bytes of JSON.
`start`, the largest message Twilio sends, is under 2 KiB with the edge's own parameters."""


@dataclass(frozen=True)
class Refusal:
    """Why a media socket was turned away, as an HTTP status and a one-line reason."""

    status_code: int
    reason: str


class StreamCounts:
    """Open media sockets, in all and by remote address, against the edge's caps."""

    def __init__(self, max_streams: int, max_per_source: int) -> None:
        self.max_streams = max_streams
        self.max_per_source = max_per_source
        self.by_source: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_source.values())

    def open(self, source: str) -> Refusal | None:
        """Count a new socket from `source`, or say why it may not open."""
        if self.total >= self.max_streams:
            return Refusal(503, f"media edge at its limit of {self.max_streams} open media streams")
        if self.by_source[source] >= self.max_per_source:
            return Refusal(
                429, f"too many media streams from {source} (limit {self.max_per_source})"
            )
        self.by_source[source] += 1
        return None

    def close(self, source: str) -> None:
        self.by_source[source] -= 1
        if self.by_source[source] <= 0:
            del self.by_source[source]


class MediaGate:
    """Admits media sockets within the caps; what /healthz reports about them."""

    def __init__(self, settings: Settings) -> None:
        self.counts = StreamCounts(
            settings.media_max_streams, settings.media_max_streams_per_source
        )
        self.refused = 0
        self._refusing: set[str] = set()

    @asynccontextmanager
    async def admit(self, websocket: WebSocket) -> AsyncIterator[bool]:
        """Yields True with the socket counted until the block ends, or False once refused."""
        source = websocket.client.host if websocket.client else "unknown"
        refusal = self.counts.open(source)
        if refusal is not None:
            await self._refuse(websocket, source, refusal)
            yield False
            return
        self._refusing.discard(source)
        try:
            yield True
        finally:
            self.counts.close(source)

    async def _refuse(self, websocket: WebSocket, source: str, refusal: Refusal) -> None:
        self.refused += 1
        if source not in self._refusing:
            self._refusing.add(source)
            logger.warning("refusing media streams from %s: %s", source, refusal.reason)
        response = PlainTextResponse(refusal.reason, status_code=refusal.status_code)
        try:
            await websocket.send_denial_response(response)
        except RuntimeError:
            await websocket.close(1013, refusal.reason)

    def health(self) -> dict[str, int]:
        return {
            "media_sockets": self.counts.total,
            "media_sources": len(self.counts.by_source),
            "media_sockets_refused": self.refused,
        }


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The edge's uvicorn config: the message size cap lives in the WebSocket server, the only
    place that can refuse a frame from its header instead of after buffering it. No
    per-message compression: Twilio never asks for it, and a client that did would cost the
    edge a zlib context per socket and a deflate per 20 ms frame each way."""
    options: dict[str, Any] = {
        "host": settings.edge_host,
        "port": settings.edge_port,
        "ws_max_size": settings.media_max_message_bytes,
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": settings.edge_shutdown_grace_s,
        **overrides,
    }
    return uvicorn.Config(app, **options)
