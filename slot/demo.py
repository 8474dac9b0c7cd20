"""`slot demo`: one simulated inbound call through every real part, with a live view and a report.

The caller is the phone simulator, in this process; everything else (Temporal, worker, edge) runs
as the dev stack. The live transcript comes from the edge's event stream; the report's transcript
and outcome come from the call's workflow, the one place a call's state lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import websockets
from rich.console import Console
from temporalio.service import RPCError

from media_edge.events import (
    AgentUtterance,
    BargeIn,
    CallEnded,
    CallerTurn,
    EdgeError,
    LLMResult,
    parse_event,
)
from media_edge.events import CallEvent as EdgeEvent
from simulator.caller_audio import CallerAudio
from simulator.persona import AnyPersona, ReactivePersona, load_any_persona
from simulator.phone import CallEvent, CallResult, SimulatedCall, edge_access
from simulator.protocol import new_sid
from simulator.reactive import ReactivePolicy
from simulator.topics import script_topics
from slot.devstack import Stack, StackError
from slot.llm.config import LLMSettings
from slot.settings import Settings
from slot.temporal import connect
from workflows.call import CallWorkflow
from workflows.messages import CallSnapshot, CallStatus

STAGES = (
    "endpointing",
    "turn_model",
    "stt",
    "decision",
    "llm_first_token",
    "first_audio_after_first_token",
    "tts_first_audio",
    "send",
)
ROUTER_STAGES = ("classify", "retrieve")
"""Parts of `decision` spent in the workflow's local activities."""
DEMO_PERSONA = "demo_caller.yaml"
"""A reactive caller in its own words (a copy of a dev persona), not the playbook's examples."""
FINAL_STATUSES = {CallStatus.ENDED, CallStatus.FOLLOW_UP_SCHEDULED, CallStatus.COMPLETED}

QUERY_TIMEOUT = timedelta(seconds=10)


@dataclass
class LiveView:
    """Prints what happens on the call as it happens."""

    console: Console
    barge_ins: int = 0
    events: list[EdgeEvent] = field(default_factory=list)

    def on_simulator_event(self, event: CallEvent) -> None:
        if event.kind == "caller_line":
            self.console.print(f"[dim]{event.at_ms / 1000:6.1f}s  caller speaks:[/] {event.text}")
        elif event.kind == "caller_silent":
            self.console.print(f"[dim]{event.at_ms / 1000:6.1f}s  caller stays silent[/]")
        elif event.kind == "clear_received":
            self.console.print(f"[dim]{event.at_ms / 1000:6.1f}s  edge sent clear[/]")

    def on_edge_event(self, event: EdgeEvent) -> None:
        self.events.append(event)
        if isinstance(event, CallerTurn):
            self.console.print(f"[cyan]caller[/] › {event.text}")
        elif isinstance(event, AgentUtterance):
            streaming = " …[dim](streaming from the LLM)[/]" if event.streaming else ""
            self.console.print(
                f"[green]agent [/] › {event.text}{streaming}  "
                f"[dim]({event.tier}: {event.reason})[/]"
            )
            self.console.print(f"         [dim]{format_latency(event.latency_ms)}[/]")
        elif isinstance(event, LLMResult):
            self.console.print(
                f"[green]agent [/] ‹ {event.text}  [dim](LLM {event.model}: {event.reason})[/]"
            )
        elif isinstance(event, BargeIn):
            self.barge_ins += 1
            self.console.print(
                f"[yellow]barge-in[/] after {event.played_ms} ms; "
                f"the caller heard: “{event.heard_text}”"
            )
        elif isinstance(event, EdgeError):
            self.console.print(f"[red]edge error:[/] {event.reason}")


def active_tiers(llm_settings: LLMSettings | None = None) -> str:
    """The router's tiers as configured for this run (the edge reads the same variables)."""
    from media_edge.llm import BamlLanguageModel
    from workflows.router_messages import RouterConfig

    model = BamlLanguageModel.from_settings(llm_settings)
    config = RouterConfig()
    threshold = (
        config.understanding_intent_threshold
        if model is None
        else config.intent_confidence_threshold
    )
    head = (
        "tier 0 rules and script, tier 1 embedding classifier "
        f"(confidence ≥ {threshold:.2f}) then token matcher"
    )
    if model is None:
        return f"{head}; no LLM configured, so questions are answered from the knowledge base"
    return f"{head}; tier 2 LLM {model.description}, streamed into speech"


def format_latency(latency: dict[str, float]) -> str:
    if not latency:
        return "latency: n/a"
    parts = [f"{stage} {latency[stage]:.0f}" for stage in STAGES if stage in latency]
    inside = [f"{stage} {latency[stage]:.0f}" for stage in ROUTER_STAGES if stage in latency]
    if inside and "decision" in latency:
        at = next(i for i, part in enumerate(parts) if part.startswith("decision "))
        parts[at] += f" ({', '.join(inside)})"
    total = latency.get("total")
    head = f"turn latency {total:.0f} ms" if total is not None else "latency"
    return f"{head} = " + " · ".join(parts)


async def follow_edge_events(settings: Settings, call_id: str, view: LiveView) -> None:
    """The call's live events, from the edge's internal listener (bearer SLOT_INTERNAL_TOKEN)."""
    access = edge_access(settings)
    url = access["events_url"].replace("http", "ws", 1) + f"/calls/{call_id}/events"
    headers = {"Authorization": f"Bearer {access['internal_token'] or ''}"}
    async with websockets.connect(url, additional_headers=headers) as socket:
        async for raw in socket:
            event = parse_event(raw)
            view.on_edge_event(event)
            if isinstance(event, CallEnded):
                return


async def final_snapshot(settings: Settings, call_id: str, timeout_s: float) -> CallSnapshot:
    """The workflow's view once the call is over (it may still wait on a follow-up timer)."""
    client = await connect(settings)
    handle = client.get_workflow_handle(call_id)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            snapshot: CallSnapshot = await handle.query(
                CallWorkflow.snapshot, rpc_timeout=QUERY_TIMEOUT
            )
        except RPCError as error:
            # a query waits for a worker to answer it; a busy worker may miss one, not all
            if time.monotonic() > deadline:
                raise StackError(f"the call's workflow did not answer a query: {error}") from error
            continue
        if snapshot.status in FINAL_STATUSES or time.monotonic() > deadline:
            return snapshot
        await asyncio.sleep(0.2)


def build_report(
    settings: Settings, call_id: str, snapshot: CallSnapshot, result: CallResult, barge_ins: int
) -> dict[str, Any]:
    turns: list[dict[str, Any]] = []
    for entry in snapshot.transcript:
        turn: dict[str, Any] = {"speaker": entry.speaker, "text": entry.text}
        if entry.speaker == "agent":
            turn["latency_ms"] = dict(entry.latency_ms)
            turn["tier"] = entry.tier
            turn["reason"] = entry.reason
            if entry.citations:
                turn["citations"] = list(entry.citations)
            if entry.interrupted:
                turn["interrupted"] = True
                turn["heard"] = entry.heard_text
        turns.append(turn)
    heard = [
        e.heard_text for e in snapshot.transcript if e.interrupted and e.heard_text is not None
    ]
    return {
        "outcome": snapshot.outcome.value if snapshot.outcome else None,
        "workflow_id": call_id,
        "ui_url": settings.workflow_url(call_id),
        "recording": str(result.recording_path) if result.recording_path else None,
        "turns": turns,
        "barge_ins": barge_ins,
        "heard": heard[0] if len(heard) == 1 else heard,
        "status": snapshot.status.value,
        "duration_ms": result.duration_ms,
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


async def run_demo(
    settings: Settings,
    *,
    persona_path: Path | None = None,
    script: str | None = None,
    expect: str | None = None,
    report_path: Path | None = None,
) -> int:
    console = Console(highlight=False)
    persona: AnyPersona = load_any_persona(persona_path or settings.personas_dir / DEMO_PERSONA)
    expected = expect or persona.expect_outcome
    script_name = script or settings.default_script
    console.print(f"decisions: {active_tiers()}")
    stack = Stack(settings)
    with console.status("starting the embedded stack (Temporal, worker, edge, simulator)..."):
        try:
            await stack.start()
        except StackError as error:
            console.print(f"[red]error:[/] {error}")
            return 1
    for note in stack.notes:
        console.print(f"[dim]{note}[/]")
    settings = stack.settings
    try:
        call_sid = new_sid("CA")
        call_id = f"call-{call_sid}"
        console.print(
            f"calling Slot as {persona.name} ({persona.phone}), script {script_name}; "
            f"expecting outcome {expected or '(any)'}"
        )
        view = LiveView(console)
        params = {"script": script_name}
        policy: ReactivePolicy | None = None
        caller_audio: CallerAudio | None = None
        if isinstance(persona, ReactivePersona):
            # the agent greets the caller by name, and the caller answers what it is asked
            params["lead_name"] = persona.name
            policy = ReactivePolicy(persona, script_topics(script_name, settings.playbooks_dir))
            caller_audio = CallerAudio(settings.data_dir / "caller-audio")
        simulated = SimulatedCall(
            settings.edge_url,
            persona,
            **edge_access(settings),
            call_sid=call_sid,
            account_sid=settings.twilio_account_sid,
            agent_number=settings.agent_phone_number,
            params=params,
            policy=policy,
            caller_audio=caller_audio,
            status_callback=f"{settings.edge_url}/twilio/status",
            recording_path=settings.data_dir / "recordings" / f"{call_sid}.wav",
            on_event=view.on_simulator_event,
        )
        follower = asyncio.create_task(follow_edge_events(settings, call_id, view))
        result = await simulated.run()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(follower, timeout=15)
        if result.error:
            console.print(f"[red]the call failed:[/] {result.error}")
            return 1
        try:
            snapshot = await final_snapshot(settings, call_id, timeout_s=60)
        except StackError as error:
            console.print(f"[red]error:[/] {error}")
            return 1
    finally:
        with console.status("stopping what the demo started..."):
            await stack.stop()

    report = build_report(settings, call_id, snapshot, result, view.barge_ins)
    outcome = report["outcome"]
    ok = expected is None or outcome == expected
    console.print()
    console.print(f"outcome    [bold {'green' if ok else 'red'}]{outcome}[/]")
    console.print(f"recording  {report['recording']}")
    console.print(f"workflow   {report['ui_url']}")
    if report_path is not None:
        await asyncio.to_thread(write_report, report_path, report)
        console.print(f"report     {report_path}")
    if not ok:
        console.print(f"[red]expected outcome {expected}, got {outcome}[/]")
    return 0 if ok else 1
