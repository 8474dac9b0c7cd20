"""The media edge under a flood: does a good call keep its audio on time while others misbehave?

The far ends here speak Twilio's Media Streams protocol over real WebSockets, each from its own
loopback address (127.0.0.0/8 is all loopback on Linux), so the per-source caps see them apart:

- `good_call`: what Twilio does for one inbound call (a signed voice webhook, a signed upgrade,
  `connected`, `start` with the TwiML's stream token, 20 ms of caller audio at a time, every
  mark echoed), recording when each agent frame arrived;
- `oversized`: one message of `size` bytes (the probe that took an edge to 1.3 GB used 10 MB);
- `half_sent`: a fragmented message whose rest never comes, to show what the edge buffers;
- `idle`: a socket that never sends `start`;
- `junk`: messages of the largest size the edge reads, that are not Twilio messages.

A flood socket is signed with the edge's Twilio token (`Wave(..., auth_token=...)`), as one
holding a leaked token would be, to reach the limits behind the signature check; an attacker
without it sends its upgrade unsigned, and the edge refuses that (HTTP 403) before accepting
the socket or counting it against any cap.

`evals/edge_flood_bench.py` runs a flood of these next to good calls and reports the figures;
`tests/integration/test_edge_limits.py` checks what the edge does to each kind of socket.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from media_edge.audio import silence_frame
from simulator.protocol import StreamInstruction, parse_twiml
from simulator.signing import signature_headers

SILENCE = base64.b64encode(silence_frame()).decode()
FRAME_S = 0.02
LEAD_FRAMES = 6
"""The speaker sends its first ~100 ms at once (`media_edge.speaker.LEAD_S`): no gap to time."""
LATE_JITTER_MS = 40.0


@dataclass
class StreamPlan:
    """What the voice webhook's TwiML tells Twilio: where to stream, with which parameters."""

    url: str
    parameters: dict[str, str]
    call_sid: str


@dataclass
class GoodCall:
    call_id: str
    arrivals: list[float] = field(default_factory=list)
    """When each agent media frame arrived (monotonic s)."""
    marks: list[str] = field(default_factory=list)
    close_code: int | None = None

    def jitter_ms(self) -> list[float]:
        """Each frame's gap after the previous one, minus the 20 ms it should be."""
        paced = self.arrivals[LEAD_FRAMES:]
        return [(b - a - FRAME_S) * 1000.0 for a, b in itertools.pairwise(paced)]


@dataclass(frozen=True)
class Outcome:
    """How the edge ended one flood socket: refused (HTTP status) or closed (close code)."""

    kind: str
    code: int
    reason: str


def local(source: str, url: str, auth_token: str | None) -> dict[str, object]:
    """Client options: from `source`, the upgrade to `url` signed with `auth_token` (None:
    unsigned), uncompressed (as Twilio sends; a compressed 10 MB of one letter would cross the
    wire as a few KiB)."""
    return {
        "local_addr": (source, 0),
        "open_timeout": 30,
        "max_size": None,
        "compression": None,
        "additional_headers": signature_headers(auth_token, url),
    }


async def place_inbound_call(edge_url: str, call_sid: str, auth_token: str) -> StreamPlan:
    """The signed voice webhook; where the TwiML says to stream, with its stream token."""
    url = edge_url.rstrip("/") + "/twilio/voice"
    form = {
        "CallSid": call_sid,
        "AccountSid": "AC00000000000000000000000000000000",
        "From": "+15550001111",
        "To": "+15550100000",
        "Direction": "inbound",
        "CallStatus": "ringing",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(url, data=form, headers=signature_headers(auth_token, url, form))
    reply.raise_for_status()
    stream = parse_twiml(reply.text)
    if not isinstance(stream, StreamInstruction):
        raise RuntimeError(f"no <Stream> in the TwiML: {reply.text[:200]}")
    return StreamPlan(stream.url, stream.parameters, call_sid)


def start_message(plan: StreamPlan, stream_sid: str) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC00000000000000000000000000000000",
                "streamSid": stream_sid,
                "callSid": plan.call_sid,
                "tracks": ["inbound"],
                "customParameters": plan.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media_message(stream_sid: str, seq: int, payload: str = SILENCE) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": str(seq), "timestamp": "0", "payload": payload},
        }
    )


async def _stream_silence(ws: ClientConnection, stream_sid: str) -> None:
    seq = 2
    while True:
        try:
            await ws.send(media_message(stream_sid, seq))
        except ConnectionClosed:
            return
        seq += 1
        await asyncio.sleep(FRAME_S)


async def good_call(edge_url: str, auth_token: str, source: str = "127.0.0.1") -> GoodCall:
    """One inbound call, signed as Twilio signs it with `auth_token`, until the agent's
    greeting has played (its end mark echoed), then stop."""
    plan = await place_inbound_call(edge_url, f"CAgood{uuid.uuid4().hex[:12]}", auth_token)
    call = GoodCall(call_id=plan.parameters.get("call_id", ""))
    sid = f"MZ{uuid.uuid4().hex}"
    async with connect(plan.url, **local(source, plan.url, auth_token)) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start_message(plan, sid))
        streamer = asyncio.create_task(_stream_silence(ws, sid))
        try:
            while not call.marks or not call.marks[-1].endswith(":end"):
                message = json.loads(await ws.recv())
                if message["event"] == "media":
                    call.arrivals.append(time.monotonic())
                elif message["event"] == "mark":
                    name = message["mark"]["name"]
                    call.marks.append(name)
                    echo = {"event": "mark", "streamSid": sid, "mark": {"name": name}}
                    await ws.send(json.dumps(echo))
            await ws.send(json.dumps({"event": "stop", "streamSid": sid}))
            async for _ in ws:
                pass
        finally:
            streamer.cancel()
        call.close_code = ws.close_code
    return call


class Behaviour:
    """What one flood socket does once open; then it waits for the edge to close it."""

    async def __call__(self, ws: ClientConnection) -> None:
        return None


class Idle(Behaviour):
    """Never sends `start` (with `say_connected`, sends Twilio's first message and no more)."""

    def __init__(self, say_connected: bool = False) -> None:
        self.say_connected = say_connected

    async def __call__(self, ws: ClientConnection) -> None:
        if self.say_connected:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))


class Oversized(Behaviour):
    def __init__(self, size: int) -> None:
        self.size = size

    async def __call__(self, ws: ClientConnection) -> None:
        await ws.send(media_message("MZflood", 1, payload="A" * self.size))


class HalfSent(Behaviour):
    """`fragments` fragments of `chunk` bytes of one message, then nothing: it never ends."""

    def __init__(self, chunk: int, fragments: int) -> None:
        self.chunk = chunk
        self.fragments = fragments

    async def __call__(self, ws: ClientConnection) -> None:
        async def parts() -> AsyncIterator[str]:
            for _ in range(self.fragments):
                yield "A" * self.chunk
            await asyncio.Event().wait()

        sender = asyncio.create_task(ws.send(parts()))
        try:
            await ws.wait_closed()
        finally:
            sender.cancel()


class Junk(Behaviour):
    """Messages of `size` bytes that are not JSON, as fast as the edge reads them."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def __call__(self, ws: ClientConnection) -> None:
        while True:
            await ws.send("{" + "x" * (self.size - 1))


async def _socket(
    url: str, source: str, behave: Behaviour, opened: asyncio.Event, auth_token: str | None
) -> Outcome:
    try:
        async with connect(url, **local(source, url, auth_token)) as ws:  # type: ignore[arg-type]
            opened.set()
            try:
                await behave(ws)
                async for _ in ws:
                    pass
            except ConnectionClosed:
                pass
            return Outcome("closed", ws.close_code or 0, ws.close_reason or "")
    except InvalidStatus as refused:
        body = refused.response.body or b""
        return Outcome("refused", refused.response.status_code, body.decode(errors="replace"))
    finally:
        opened.set()


class Wave:
    """`count` sockets from `source` opened at once, each ended by the edge; their upgrades
    signed with `auth_token`, or unsigned (None) as an attacker without it sends them."""

    def __init__(
        self,
        url: str,
        source: str,
        behaviour: Behaviour,
        count: int = 1,
        *,
        auth_token: str | None,
    ) -> None:
        self._opened = [asyncio.Event() for _ in range(count)]
        self._tasks = [
            asyncio.create_task(_socket(url, source, behaviour, opened, auth_token))
            for opened in self._opened
        ]

    async def opened(self) -> None:
        """Every socket of the wave was accepted or refused."""
        await asyncio.gather(*(opened.wait() for opened in self._opened))

    async def outcomes(self) -> list[Outcome]:
        return list(await asyncio.gather(*self._tasks))


def tally(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(f"{o.kind} {o.code}" for o in outcomes)
