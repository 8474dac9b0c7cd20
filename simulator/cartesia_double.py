"""A local stand-in for Cartesia's TTS WebSocket: its wire protocol, not its model.

`/tts/websocket`, as Cartesia documents it: the handshake needs `Authorization: Bearer <key>`
(or `X-API-Key`) and a `Cartesia-Version` header, else 401 / 400. Each client message is a
generation request (`context_id`, `model_id`, `transcript`, `voice`, `output_format`,
`continue`, `add_timestamps`) or a cancel (`{context_id, cancel: true}`). A context's
transcripts are spoken in order as they come (continuations), each as `timestamps` (words
with start/end seconds, counted from the context's first audio) and `chunk` messages (base64
audio in the requested format: only raw `pcm_mulaw` at 8 kHz is served), then `done` once a
request with `continue: false` has been spoken. A cancelled context sends nothing more. A
request it cannot serve gets an `error` message. Rendering and failures: `simulator.tts_double`.

`python -m simulator.cartesia_double --key K [--mode piper]` serves it for a dev stack.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from simulator.tts_double import RATE, RenderMode, TTSConnection, TTSDouble

SERVED_FORMAT = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": RATE}


@dataclass
class _Context:
    id: str
    texts: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    offset_s: float = 0.0
    ending: bool = False


class CartesiaDouble(TTSDouble):
    path = "/tts/websocket"
    service = "cartesia"

    def authorized(self, request: Request) -> bool:
        headers = request.headers
        return (
            headers.get("Authorization") == f"Bearer {self.api_key}"
            or headers.get("X-API-Key") == self.api_key
        ) and bool(headers.get("Cartesia-Version"))

    def cancels(self, connection: TTSConnection) -> list[str]:
        """Contexts the client cancelled on `connection`."""
        return [m["context_id"] for m in connection.received if m.get("cancel")]

    def requests(self, connection: TTSConnection) -> list[dict[str, Any]]:
        return [m for m in connection.received if not m.get("cancel")]

    async def serve(self, ws: ServerConnection, record: TTSConnection) -> None:
        session = _Session(self, ws, record)
        try:
            async for raw in ws:
                message = json.loads(raw)
                record.received.append(message)
                self.touch()
                await session.take(message)
        except ConnectionClosed:
            pass
        finally:
            session.stop()


class _Session:
    def __init__(self, double: CartesiaDouble, ws: ServerConnection, record: TTSConnection) -> None:
        self.double = double
        self.ws = ws
        self.record = record
        self.contexts: dict[str, _Context] = {}

    def stop(self) -> None:
        for context in self.contexts.values():
            if context.task is not None:
                context.task.cancel()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def error(self, context_id: str | None, message: str) -> None:
        await self.send(
            {
                "type": "error",
                "context_id": context_id,
                "status_code": 400,
                "done": True,
                "title": "Invalid request",
                "message": message,
                "error_code": "invalid_request",
            }
        )

    async def take(self, message: dict[str, Any]) -> None:
        context_id = str(message.get("context_id") or "")
        if message.get("cancel"):
            context = self.contexts.get(context_id)
            if context is not None and context.task is not None:
                context.task.cancel()
            return
        for required in ("context_id", "model_id", "voice", "output_format"):
            if not message.get(required):
                await self.error(context_id or None, f"missing {required}")
                return
        if message["output_format"] != SERVED_FORMAT:
            await self.error(context_id, "this double serves raw pcm_mulaw at 8000 Hz only")
            return
        context = self.contexts.get(context_id)
        if context is None or context.task is None or context.task.done():
            if context is not None and context.ending:
                await self.error(context_id, "context already finished")
                return
            context = _Context(context_id)
            self.contexts[context_id] = context
            context.task = asyncio.create_task(self.speak(context))
        transcript = str(message.get("transcript", ""))
        if transcript.strip():
            context.texts.put_nowait(transcript)
        if not message.get("continue", False):
            context.ending = True
            context.texts.put_nowait(None)

    async def speak(self, context: _Context) -> None:
        """The context's transcripts in order, as timestamps and audio chunks, then `done`."""
        first = True
        try:
            while (text := await context.texts.get()) is not None:
                rendered = await self.double.render(text)
                if first and self.double.first_audio_delay_s:
                    await asyncio.sleep(self.double.first_audio_delay_s)
                stamps = rendered.words
                await self.send(
                    {
                        "type": "timestamps",
                        "context_id": context.id,
                        "status_code": 206,
                        "done": False,
                        "word_timestamps": {
                            "words": [w for w, _, _ in stamps],
                            "start": [round(context.offset_s + s, 3) for _, s, _ in stamps],
                            "end": [round(context.offset_s + e, 3) for _, _, e in stamps],
                        },
                    }
                )
                context.offset_s += rendered.seconds
                sent = await self.double.send_audio(
                    self.ws,
                    self.record,
                    rendered.audio,
                    self._chunk(context),
                    first_of_utterance=first,
                )
                first = False
                if not sent:
                    return
            await self.send(
                {"type": "done", "context_id": context.id, "status_code": 206, "done": True}
            )
        except ConnectionClosed:
            return

    def _chunk(self, context: _Context) -> Any:
        async def send(piece: bytes) -> None:
            await self.send(
                {
                    "type": "chunk",
                    "context_id": context.id,
                    "status_code": 206,
                    "done": False,
                    "step_time": 1.0,
                    "data": base64.b64encode(piece).decode(),
                }
            )

        return send


def main() -> None:
    """Serve the double until interrupted (the edge then runs with SLOT_CARTESIA_URL=...)."""
    parser = argparse.ArgumentParser(description="Local Cartesia TTS wire-protocol double")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8096)
    parser.add_argument("--key", required=True, help="the CARTESIA_API_KEY it accepts")
    parser.add_argument("--mode", choices=["fast", "piper"], default="fast")
    args = parser.parse_args()
    mode: RenderMode = args.mode

    async def serve_forever() -> None:
        double = CartesiaDouble(api_key=args.key, mode=mode)
        print(f"Cartesia double at {await double.start(args.host, args.port)}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())


if __name__ == "__main__":
    main()
