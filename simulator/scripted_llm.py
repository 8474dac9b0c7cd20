"""`slot llm-server`: the local OpenAI-protocol server playing a scripted LLM for demos.

Point the edge at it (`LLM_BASE_URL=http://127.0.0.1:8099/v1 LLM_MODEL=demo LLM_API_KEY=x`)
and the demo's open questions go through tier 2 for real: BAML builds the `DecideTurn` prompt,
this server reads it like a very literal model would (the state, the passages, the caller's
words) and streams back a `TurnDecision` token by token: stay in the state, answer from the best
passage, ask the state's question again. No model weights, no network; it shows the wire
protocol, the streaming into speech and the router, not language understanding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any

from simulator.llm_server import OpenAIProtocolServer, Reply
from workflows.llm_turn import spoken_answer

TOKEN_DELAY_S = 0.03
"""Between streamed tokens: roughly a hosted small model's pace."""
_STATE = re.compile(r'The call is in state "([^"]+)", where you said:\s*"([^"]*)"', re.S)
_PASSAGE = re.compile(r"^\[([^\]]+)\] [^\n]*?\): (.+)$", re.M)


def _text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content", "")
        if isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
        else:
            parts.append(str(content))
    return "\n".join(parts)


def _question(state_line: str) -> str:
    """The state's question: the last sentence of its line that asks something."""
    sentences = re.split(r"(?<=[.!?])\s+", state_line.strip())
    asked = [s for s in sentences if s.endswith("?")]
    return asked[-1] if asked else state_line


def decide(body: dict[str, Any]) -> dict[str, Any]:
    """A `TurnDecision` for a `DecideTurn` prompt: answer from the first passage, stay put."""
    prompt = _text(body)
    found = _STATE.search(prompt)
    state, state_line = (found.group(1), found.group(2)) if found else ("", "")
    passages = _PASSAGE.findall(prompt)
    if passages:
        cited, text = passages[0]
        answer, cited_ids = spoken_answer(text), [cited]
    else:
        answer = "Good question. I'll have a specialist follow up with the details."
        cited_ids = []
    return {
        "next_state": state,
        "say": f"{answer} {_question(state_line)}".strip(),
        "slots": {},
        "end_call": False,
        "cited_ids": cited_ids,
    }


def responder(body: dict[str, Any]) -> Reply:
    return Reply.json(decide(body), token_delay_s=TOKEN_DELAY_S)


async def serve(port: int) -> None:
    server = OpenAIProtocolServer(port=port, model="slot-demo")
    server.set_responder(responder)
    async with server:
        print(
            f"scripted LLM on {server.base_url} — run the demo with\n"
            f"  LLM_BASE_URL={server.base_url} LLM_MODEL=slot-demo LLM_API_KEY=local "
            "uv run slot demo",
            flush=True,
        )
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slot llm-server", description=__doc__)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
