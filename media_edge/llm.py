"""Tier 2 at the edge: stream the LLM's `DecideTurn` through BAML straight into speech.

The workflow decides that a turn needs the LLM and hands the edge an `LLMTurnRequest` (allowed
transitions, passages...). `BamlLanguageModel.decide_turn` starts BAML's stream with the
`NextState` enum narrowed to exactly those transitions (TypeBuilder), and the returned
`TurnStream` yields the `say` text as it is written, so phrases reach TTS before the reply is
complete. Nothing is spoken before `next_state` has been parsed (it comes first in the output
schema), so a forbidden transition is never voiced.

Failures never mean dead air: a timeout of the overall budget, an HTTP error of every client in
the route, a stream that stalls, output that does not parse or a transition the script forbids
all end in the request's safe `fallback_line`. `cancel()` (barge-in) aborts the HTTP stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Protocol

from baml_py import AbortController, BamlStream, Collector

import slot.llm  # noqa: F401  (sets BAML_LOG=off before the BAML runtime starts)
from baml_client import stream_types
from baml_client import types as baml_types
from baml_client.async_client import b
from baml_client.type_builder import TypeBuilder
from slot.llm.config import LLMSettings
from slot.llm.route import Route, route_from_settings
from workflows.router_messages import LLMTurnRequest, LLMTurnResult

log = logging.getLogger("slot.edge.llm")

_ABORT_GRACE_S = 2.0
"""How long an aborted BAML stream gets to wind down its worker thread."""


class TurnStream(Protocol):
    """One LLM turn in flight: `say` text deltas as they stream, then the final result."""

    def say_deltas(self) -> AsyncIterator[str]:
        """The text to speak, piece by piece (including the fallback line if one is needed)."""
        ...

    async def result(self) -> LLMTurnResult: ...

    def latency(self) -> dict[str, float]:
        """The LLM's own stages so far: `llm_first_token` (from the request to the first say
        text) once that text is out. Measured here only."""
        ...

    async def cancel(self) -> None:
        """Barge-in: stop the LLM stream now; `result()` then reports what was generated."""
        ...


class LanguageModel(Protocol):
    description: str
    """The route in words, e.g. 'fallback[OpenAICompatible:gpt-4o-mini, Anthropic:...]'."""

    def decide_turn(self, request: LLMTurnRequest) -> TurnStream: ...


def enum_value_names(states: list[str]) -> dict[str, str]:
    """BAML enum value name (uppercase identifier) for each state; the alias is the state."""
    names: dict[str, str] = {}
    for state in states:
        base = re.sub(r"\W", "_", state).upper()
        if not base or not base[0].isalpha():
            base = f"S_{base}"
        name, n = base, 2
        while name in names.values():
            name, n = f"{base}_{n}", n + 1
        names[state] = name
    return names


class BamlLanguageModel:
    """`LanguageModel` over BAML's `DecideTurn`, on a cheap-then-strong route."""

    def __init__(self, route: Route, *, budget_s: float) -> None:
        self.route = route
        self.budget_s = budget_s
        self.description = route.description

    @classmethod
    def from_settings(cls, settings: LLMSettings | None = None) -> BamlLanguageModel | None:
        """The configured model, or None when no LLM provider is configured."""
        settings = settings or LLMSettings()
        route = route_from_settings(settings)
        return cls(route, budget_s=settings.budget_s) if route is not None else None

    def decide_turn(self, request: LLMTurnRequest) -> BamlTurnStream:
        return BamlTurnStream(self, request)


class BamlTurnStream:
    """Runs one `DecideTurn` stream in a task; created inside a running event loop."""

    def __init__(self, model: BamlLanguageModel, request: LLMTurnRequest) -> None:
        self._model = model
        self._request = request
        self._deltas: asyncio.Queue[str | None] = asyncio.Queue()
        self._abort = AbortController()
        self._collector = Collector(name="decide-turn")
        self._emitted = ""
        self._started = time.monotonic()
        self._first_token_ms: float | None = None
        self._cancelled = False
        self._task = asyncio.create_task(self._run(), name=f"llm-turn-{request.state}")

    # --- public ------------------------------------------------------------------------------

    async def say_deltas(self) -> AsyncIterator[str]:
        while (delta := await self._deltas.get()) is not None:
            yield delta

    async def result(self) -> LLMTurnResult:
        return await asyncio.shield(self._task)

    async def cancel(self) -> None:
        self._cancelled = True
        self._abort.abort()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # --- the stream --------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self._first_token_ms is None:
            self._first_token_ms = (time.monotonic() - self._started) * 1000
        self._emitted += text
        self._deltas.put_nowait(text)

    async def _run(self) -> LLMTurnResult:
        request = self._request
        names = enum_value_names([t.state for t in request.allowed])
        states_by_name = {name: state for state, name in names.items()}
        tb = TypeBuilder()  # type: ignore[no-untyped-call]
        for transition in request.allowed:
            tb.NextState.add_value(names[transition.state]).alias(transition.state).description(
                transition.description
            )
        stream = b.stream.DecideTurn(
            script=baml_types.ScriptContext(
                company=request.company,
                agent_name=request.agent_name,
                goal=request.goal,
                state=request.state,
                state_line=request.state_line,
            ),
            slots=request.slots,
            transcript=[
                baml_types.Message(speaker=m.speaker, text=m.text) for m in request.transcript
            ],
            utterance=request.utterance,
            passages=[
                baml_types.Passage(id=p.id, source=p.source, heading=p.heading, text=p.text)
                for p in request.passages
            ],
            baml_options={
                "tb": tb,
                "client_registry": self._model.route.registry,
                "abort_controller": self._abort,
                "collector": self._collector,
            },
        )
        partials: asyncio.Queue[stream_types.TurnDecision | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(stream, partials))
        next_state: str | None = None
        diverged = False
        try:
            async with asyncio.timeout(self._model.budget_s):
                while (partial := await partials.get()) is not None:
                    if next_state is None and partial.next_state is not None:
                        next_state = states_by_name.get(_enum_name(partial.next_state))
                        if next_state is None:
                            return self._fallback(f"forbidden transition {partial.next_state!r}")
                    if next_state is None or diverged:
                        continue
                    say = partial.say or ""
                    if say.startswith(self._emitted):
                        self._emit(say[len(self._emitted) :])
                    else:
                        diverged = True
                final: baml_types.TurnDecision = await pump
        except TimeoutError:
            return self._fallback(f"no complete reply within the {self._model.budget_s:g} s budget")
        except asyncio.CancelledError:
            if self._cancelled:
                return self._cancelled_result(next_state)
            raise
        except Exception as error:
            return self._fallback(_describe_error(error))
        finally:
            await self._stop(pump)
        final_state = states_by_name.get(_enum_name(final.next_state))
        if final_state is None:
            return self._fallback(f"forbidden transition {final.next_state!r}")
        if final.say.startswith(self._emitted):
            self._emit(final.say[len(self._emitted) :])
        if not self._emitted.strip():
            return self._fallback("the reply had nothing to say")
        self._deltas.put_nowait(None)
        return LLMTurnResult(
            next_state=final_state,
            say=self._emitted,
            slots=dict(final.slots),
            end_call=final.end_call,
            cited_ids=list(final.cited_ids),
            reason="streamed reply" + (" (retried stream diverged)" if diverged else ""),
            model=self._client_name(),
            latency_ms=self._latency(),
        )

    async def _pump(
        self,
        stream: BamlStream[stream_types.TurnDecision, baml_types.TurnDecision],
        partials: asyncio.Queue[stream_types.TurnDecision | None],
    ) -> baml_types.TurnDecision:
        """Moves BAML's partials onto a queue so the budget and cancel never wait inside BAML."""
        try:
            async for partial in stream:
                partials.put_nowait(partial)
            final: baml_types.TurnDecision = await stream.get_final_response()  # type: ignore[no-untyped-call]
            return final
        finally:
            partials.put_nowait(None)

    async def _stop(self, pump: asyncio.Task[baml_types.TurnDecision]) -> None:
        """Abort the HTTP stream first, so BAML's worker thread ends before it is joined."""
        if pump.done():
            if not pump.cancelled():
                pump.exception()
            return
        self._abort.abort()
        done, _ = await asyncio.wait({pump}, timeout=_ABORT_GRACE_S)
        if not done:
            pump.cancel()
        with contextlib.suppress(BaseException):
            await pump

    # --- results -----------------------------------------------------------------------------

    def _fallback(self, reason: str) -> LLMTurnResult:
        line = self._request.fallback_line
        log.warning("llm turn fell back to the safe line: %s", reason)
        self._emit(f" {line}" if self._emitted else line)
        self._deltas.put_nowait(None)
        return LLMTurnResult(
            next_state=self._request.state,
            say=self._emitted.strip(),
            used_fallback=True,
            reason=reason,
            model=self._client_name(),
            latency_ms=self._latency(),
        )

    def _cancelled_result(self, next_state: str | None) -> LLMTurnResult:
        self._deltas.put_nowait(None)
        return LLMTurnResult(
            next_state=next_state or self._request.state,
            say=self._emitted,
            cancelled=True,
            reason="cancelled by barge-in",
            model=self._client_name(),
            latency_ms=self._latency(),
        )

    def latency(self) -> dict[str, float]:
        if self._first_token_ms is None:
            return {}
        return {"llm_first_token": round(self._first_token_ms, 1)}

    def _latency(self) -> dict[str, float]:
        return {"llm_total": round((time.monotonic() - self._started) * 1000, 1), **self.latency()}

    def _client_name(self) -> str:
        """The leaf client that answered (or was last tried), from BAML's collector."""
        try:
            last = self._collector.last
            if last is None:
                return self._model.route.primary
            selected = last.selected_call
            calls = last.calls
            call = selected or (calls[-1] if calls else None)
            return call.client_name if call is not None else self._model.route.primary
        except Exception:
            return self._model.route.primary


def _enum_name(value: object) -> str:
    return str(getattr(value, "value", value))


def _describe_error(error: Exception) -> str:
    """The failure's kind and HTTP status, never its message: that can quote the prompt or reply,
    and both carry the caller's words."""
    status = getattr(error, "status_code", None)
    if status:
        return f"{type(error).__name__} (HTTP {status})"
    if type(error).__name__ == "BamlValidationError":
        return "reply does not parse as a decision with an allowed next state (BamlValidationError)"
    return type(error).__name__
