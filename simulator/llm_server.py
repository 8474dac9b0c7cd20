"""A local server speaking OpenAI's chat-completions protocol, scripted per test.

It stands in for a cloud LLM API that cannot be reached from here: `POST /v1/chat/completions`
answers as OpenAI does, as one JSON body or, with `"stream": true`, as server-sent events
(`data: {chat.completion.chunk}` lines, then `data: [DONE]`). Each request takes the next
scripted `Reply` (or asks a `responder`), which can answer, stream token by token with a delay,
fail with an HTTP status and OpenAI's error body, stall before answering or mid-stream, or send
garbage. Tests wait on `wait_for_requests`, never on sleeps.

Run standalone (for the demo with `LLM_BASE_URL`):
`uv run python -m simulator.llm_server --port 8099 --content '{"next_state": ...}'`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

ReplyKind = Literal["content", "error", "stall", "stall_mid_stream", "garbage"]
_TOKEN = re.compile(r"\s*\S{1,6}|\s+")


@dataclass(frozen=True)
class Reply:
    """How the server answers one request.

    - `content`: answer with `content` (streamed token by token when the request streams).
    - `error`: HTTP `status` with an OpenAI-style error body (429 adds `Retry-After`).
    - `stall`: accept the request and never send a byte until the server stops.
    - `stall_mid_stream`: stream the first `tokens_before_stall` tokens, then go silent.
    - `garbage`: a 200 whose body is not the protocol (not JSON / not SSE chunks).
    """

    kind: ReplyKind = "content"
    content: str = ""
    status: int = 500
    token_delay_s: float = 0.0
    tokens_before_stall: int = 3
    pause_after_tokens: int | None = None
    """Streaming only: after this many tokens, wait for `release_paused()` before the rest."""

    @classmethod
    def text(cls, content: str, token_delay_s: float = 0.0) -> Reply:
        return cls("content", content=content, token_delay_s=token_delay_s)

    @classmethod
    def json(cls, value: Any, token_delay_s: float = 0.0) -> Reply:
        return cls("content", content=json.dumps(value), token_delay_s=token_delay_s)

    @classmethod
    def paused_json(cls, value: Any, pause_after_tokens: int) -> Reply:
        return cls("content", content=json.dumps(value), pause_after_tokens=pause_after_tokens)

    @classmethod
    def error(cls, status: int = 500) -> Reply:
        return cls("error", status=status)

    @classmethod
    def stall(cls) -> Reply:
        return cls("stall")

    @classmethod
    def stall_mid_stream(cls, content: str, tokens_before_stall: int = 3) -> Reply:
        return cls("stall_mid_stream", content=content, tokens_before_stall=tokens_before_stall)

    @classmethod
    def garbage(cls) -> Reply:
        return cls("garbage")


Responder = Callable[[dict[str, Any]], Reply]


def tokenize(content: str) -> list[str]:
    """Small pieces like an LLM's tokens; joined they give `content` back exactly."""
    return _TOKEN.findall(content)


@dataclass
class _Script:
    queue: deque[Reply] = field(default_factory=deque)
    default: Reply | None = None
    responder: Responder | None = None

    def next(self, body: dict[str, Any]) -> Reply:
        if self.queue:
            return self.queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        if self.default is not None:
            return self.default
        return Reply.error(500)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


class OpenAIProtocolServer:
    """The scripted server; `async with OpenAIProtocolServer() as server: server.base_url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = "local-test") -> None:
        self.host = host
        self.port = port
        self.model = model
        self.requests: list[dict[str, Any]] = []
        """Bodies of the chat-completion requests received, in order."""
        self._script = _Script()
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        self.paused = asyncio.Event()
        """Set while a `pause_after_tokens` stream is held (so its reply is not complete)."""
        self.completed = 0
        """Replies sent in full (a streamed one counts after `data: [DONE]`)."""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = self._build_app()

    @property
    def base_url(self) -> str:
        """What a client uses as `base_url` (OpenAI's includes `/v1`)."""
        return f"http://{self.host}:{self.port}/v1"

    # --- scripting ---------------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Replies for the next requests, in order; after them the default or the responder."""
        self._script.queue.extend(replies)

    def set_default(self, reply: Reply | None) -> None:
        self._script.default = reply

    def set_responder(self, responder: Responder | None) -> None:
        """A function of the request body choosing the reply, when the queue is empty."""
        self._script.responder = responder

    def release_paused(self) -> None:
        """Let the held stream go on (or the next one pass its pause, if none is held yet)."""
        self._released.set()

    async def wait_for_requests(self, count: int, within_s: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("OpenAI protocol server did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> OpenAIProtocolServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- protocol ----------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="OpenAI chat-completions test double")

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": self.model, "object": "model"}]}

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "request body is not JSON")
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return _error(400, "'messages' is required and must be an array")
            async with self._changed:
                self.requests.append(body)
                self._changed.notify_all()
            reply = self._script.next(body)
            model = str(body.get("model") or self.model)
            return await self._answer(reply, model, bool(body.get("stream")))

        return app

    async def _answer(self, reply: Reply, model: str, stream: bool) -> Response:
        if reply.kind == "error":
            response = _error(reply.status, f"scripted failure {reply.status}")
            if reply.status == 429:
                response.headers["retry-after"] = "1"
            return response
        if reply.kind == "stall":
            await self._stopping.wait()
            return _error(503, "server stopping")
        if reply.kind == "garbage":
            if stream:
                return StreamingResponse(
                    _once(b"data: {this is not json\n\nnot even sse\n\n"),
                    media_type="text/event-stream",
                )
            return Response(b"<html>502 Bad Gateway</html>", media_type="application/json")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if not stream:
            if reply.kind == "stall_mid_stream":
                await self._stopping.wait()
                return _error(503, "server stopping")
            self.completed += 1
            return JSONResponse(_completion(completion_id, created, model, reply.content))
        return StreamingResponse(
            self._chunks(reply, completion_id, created, model),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def _chunks(
        self, reply: Reply, completion_id: str, created: int, model: str
    ) -> AsyncIterator[bytes]:
        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        yield event({"role": "assistant", "content": ""})
        for i, token in enumerate(tokenize(reply.content)):
            if reply.kind == "stall_mid_stream" and i >= reply.tokens_before_stall:
                await self._stopping.wait()
                return
            if reply.pause_after_tokens is not None and i == reply.pause_after_tokens:
                self.paused.set()
                try:
                    await _first(self._released.wait(), self._stopping.wait())
                finally:
                    self.paused.clear()
                self._released.clear()
                if self._stopping.is_set():
                    return
            if reply.token_delay_s > 0 and i > 0:
                await asyncio.sleep(reply.token_delay_s)
            yield event({"content": token})
        yield event({}, "stop")
        yield b"data: [DONE]\n\n"
        self.completed += 1


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": _ERROR_TYPES.get(status, "server_error"),
                "param": None,
                "code": None,
            }
        },
        status_code=status,
    )


def _completion(completion_id: str, created: int, model: str, content: str) -> dict[str, Any]:
    words = len(content.split())
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words},
    }


async def _serve_forever(port: int, reply: Reply) -> None:
    server = OpenAIProtocolServer(port=port)
    server.set_default(reply)
    async with server:
        print(f"OpenAI-protocol test server on {server.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--content", default="", help="reply content for every request")
    parser.add_argument("--token-delay", type=float, default=0.02, help="seconds between tokens")
    args = parser.parse_args(argv)
    reply = Reply.text(args.content, token_delay_s=args.token_delay)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.port, reply))


if __name__ == "__main__":
    main()
