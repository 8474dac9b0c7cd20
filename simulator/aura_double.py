"""A local stand-in for Deepgram Aura-2's speak WebSocket: its wire protocol, not its model.

`/v1/speak?model=…&encoding=mulaw&sample_rate=8000`, as Deepgram documents it: the handshake
needs `Authorization: Token <key>` (else 401). On connecting it sends `Metadata`; `Speak`
messages add text to a buffer, `Flush` speaks the buffer (binary audio frames) and answers
`Flushed` with its sequence id, `Clear` drops the buffer and any audio not yet sent and answers
`Cleared`, `Close` ends the connection. Anything else gets a `Warning`. Only mu-law at 8 kHz is
served. Rendering and failures: `simulator.tts_double`.

`python -m simulator.aura_double --key K [--mode piper]` serves it for a dev stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from simulator.tts_double import RATE, RenderMode, TTSConnection, TTSDouble


class AuraDouble(TTSDouble):
    path = "/v1/speak"
    service = "aura"

    def authorized(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Token {self.api_key}"

    def controls(self, connection: TTSConnection) -> list[str]:
        """Types of the JSON messages the client sent on `connection`, in order."""
        return [str(m.get("type")) for m in connection.received]

    async def serve(self, ws: ServerConnection, record: TTSConnection) -> None:
        session = _Session(self, ws, record)
        await session.send(
            {
                "type": "Metadata",
                "request_id": str(uuid.uuid4()),
                "model_name": record.query.get("model", "aura-2-thalia-en"),
                "model_version": "double",
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            }
        )
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    await session.send({"type": "Warning", "description": "binary", "code": "X"})
                    continue
                message = json.loads(raw)
                record.received.append(message)
                self.touch()
                if not await session.take(message):
                    return
        except ConnectionClosed:
            pass
        finally:
            session.stop()


class _Session:
    def __init__(self, double: AuraDouble, ws: ServerConnection, record: TTSConnection) -> None:
        self.double = double
        self.ws = ws
        self.record = record
        self.buffer: list[str] = []
        self.flushes: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self.sequence = 0
        self.first = True
        self.worker = asyncio.create_task(self.speak())
        self.served = record.query.get("encoding") == "mulaw" and record.query.get(
            "sample_rate"
        ) == str(RATE)

    def stop(self) -> None:
        self.worker.cancel()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def take(self, message: dict[str, Any]) -> bool:
        """One client message; False when the connection is to end."""
        kind = message.get("type")
        if kind == "Speak":
            self.buffer.append(str(message.get("text", "")))
        elif kind == "Flush":
            self.sequence += 1
            self.flushes.put_nowait((self.sequence, " ".join(self.buffer)))
            self.buffer.clear()
        elif kind == "Clear":
            self.buffer.clear()
            self.worker.cancel()
            while not self.flushes.empty():
                self.flushes.get_nowait()
            self.worker = asyncio.create_task(self.speak())
            await self.send({"type": "Cleared", "sequence_id": self.sequence})
        elif kind == "Close":
            self.record.closed_by = "client (Close)"
            await self.ws.close()
            return False
        else:
            await self.send(
                {"type": "Warning", "description": f"unknown type {kind!r}", "code": "UNKNOWN"}
            )
        return True

    async def speak(self) -> None:
        """Each flush in order: its audio as binary frames, then `Flushed`."""
        try:
            while True:
                sequence, text = await self.flushes.get()
                if not self.served:
                    await self.send(
                        {"type": "Warning", "description": "mulaw 8000 only", "code": "FORMAT"}
                    )
                    continue
                rendered = await self.double.render(text) if text.strip() else None
                if rendered is not None:
                    if self.first and self.double.first_audio_delay_s:
                        await asyncio.sleep(self.double.first_audio_delay_s)
                    self.first = False
                    if not await self.double.send_audio(
                        self.ws, self.record, rendered.audio, self.ws.send, first_of_utterance=True
                    ):
                        return
                await self.send({"type": "Flushed", "sequence_id": sequence})
        except ConnectionClosed:
            return


def main() -> None:
    """Serve the double until interrupted (the edge then runs with SLOT_AURA_URL=...)."""
    parser = argparse.ArgumentParser(description="Local Deepgram Aura-2 wire-protocol double")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--key", required=True, help="the DEEPGRAM_API_KEY it accepts")
    parser.add_argument("--mode", choices=["fast", "piper"], default="fast")
    args = parser.parse_args()
    mode: RenderMode = args.mode

    async def serve_forever() -> None:
        double = AuraDouble(api_key=args.key, mode=mode)
        print(f"Aura double at {await double.start(args.host, args.port)}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())


if __name__ == "__main__":
    main()
