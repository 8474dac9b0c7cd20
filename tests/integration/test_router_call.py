"""Tier 2 on a whole call: the real workflow and worker, the real edge, the phone simulator
speaking real audio, and a local server speaking OpenAI's chat-completions protocol as the LLM.

One call covers the three things that only show up end to end:
- the LLM's reply is heard before it is complete: the server holds its stream mid-reply until
  the edge reports having sent that utterance's first audio frame (no timing involved);
- a caller talking over a streaming reply cancels the LLM stream, not just the audio;
- a reply taking a transition the script forbids is never spoken: the caller hears the safe
  line and the workflow stays in its state.

And without an LLM, issue 8's caller in their own words books (turns sent as the edge sends
them, through the real workflow and worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Replayer

from activities.knowledge import shared_knowledge_base
from media_edge.app import create_app
from media_edge.events import AgentUtterance, BargeIn, CallEnded, CallEvent, parse_event
from simulator.llm_server import OpenAIProtocolServer, Reply, tokenize
from simulator.persona import Persona, PersonaLine
from simulator.phone import SimulatedCall
from simulator.protocol import new_sid
from slot.llm.config import LLMSettings
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, Settings
from slot.temporal import start_call_workflow
from tests.conftest import edge_ports
from tests.integration.edge_fixtures import edge_events, serve
from worker import ACTIVITY_SLOTS, build_worker, warm_up_router
from workflows.call import CallWorkflow
from workflows.messages import CallInput, CallSnapshot, Lead, TranscriptEntry, Turn, UtterancePlayed
from workflows.script import DecisionTier, Outcome

CALL_TIMEOUT_S = 300.0
SAFE_LINE = "Sorry, could you say that again?"
ROOF = (
    "Most roofs in good condition work well, whether they are tiled, metal or shingled, "
    "and our surveyor checks the structure and the shading on the day of the visit. "
    "Would you like us to book your free survey?"
)
MESS = (
    "Hardly any at all, because the crew mounts the rails on the roof and runs the cables "
    "along the outside walls of the house without drilling through any of the rooms. "
    "They clean up before they leave. Would you like to book the survey?"
)
CITED = "solar_survey/installation.md#3"


def decision(next_state: str, say: str, cited: list[str]) -> dict[str, Any]:
    return {
        "next_state": next_state,
        "say": say,
        "slots": {},
        "end_call": False,
        "cited_ids": cited,
    }


def caller_words(body: dict[str, Any]) -> str:
    """The caller's utterance in a DecideTurn prompt ("Caller: ..." in the user message)."""
    for message in reversed(body["messages"]):
        content = message["content"]
        text = content if isinstance(content, str) else " ".join(p["text"] for p in content)
        found = re.search(r"Caller: (.*)", text)
        if found:
            return found.group(1).lower()
    return ""


def scripted_llm(body: dict[str, Any]) -> Reply:
    """Replies by what the caller asked (not by request order, so a turn split in two by
    endpointing cannot shift the script); every other question gets a forbidden transition."""
    words = caller_words(body)
    if "roof" in words:
        return held_after_first_sentence(decision("pitch", ROOF, [CITED]))
    if "mess" in words or "make" in words:
        return held_after_first_sentence(decision("pitch", MESS, []))
    return Reply.json(decision("booked", "You're all booked, goodbye!", []))


def held_after_first_sentence(value: dict[str, Any]) -> Reply:
    """Stream `value` and hold it once the first sentence of `say` (and the space after it)
    is out, so the phrase chunker has one phrase to speak while the rest is not written."""
    content = json.dumps(value)
    first = value["say"].split(". ")[0] + ". "
    written = ""
    for count, token in enumerate(tokenize(content), start=1):
        written += token
        if first in written:
            return Reply.paused_json(value, pause_after_tokens=count)
    raise AssertionError("the first sentence never ends")


CALLER = Persona(
    name="Jordan",
    phone="+15550100042",
    expect_outcome="not_interested",
    lines=(
        PersonaLine(say="Yes, this is Jordan."),
        PersonaLine(say="Yes, I own my home."),
        PersonaLine(say="What kind of roof do you need for the panels?"),
        PersonaLine(say="Does the installation make a big mess?"),
        PersonaLine(say="Hold on, who installs the panels?", interrupt_after_ms=1500),
        PersonaLine(say="No thanks, I'm not interested."),
    ),
)


@pytest.fixture
async def llm_server() -> AsyncIterator[OpenAIProtocolServer]:
    async with OpenAIProtocolServer() as server:
        yield server


@contextlib.asynccontextmanager
async def router_stack(
    client: Client, settings: Settings, llm: LLMSettings
) -> AsyncIterator[Settings]:
    """The real worker and the real edge with an LLM configured, on loopback ports."""
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with (
            build_worker(client, settings, executor),
            serve(create_app(settings, llm), settings.edge_port),
        ):
            yield settings


async def test_llm_reply_streams_into_speech_barge_in_cancels_it_forbidden_is_refused(
    temporal_client: Client,
    temporal_settings: Settings,
    llm_server: OpenAIProtocolServer,
    tmp_path: Path,
) -> None:
    settings = temporal_settings.model_copy(
        update={"task_queue": f"router-{uuid.uuid4().hex[:8]}", **edge_ports()}
    )
    await asyncio.to_thread(
        shared_knowledge_base(settings).ingest,
        [REPO_ROOT / "knowledge" / "solar_survey"],
        settings.model_cache_path,
    )
    llm_server.set_responder(scripted_llm)
    llm = LLMSettings(
        base_url=llm_server.base_url,
        model="test-model",
        api_key="test-key",
        budget_s=30.0,
        first_token_timeout_ms=20_000,
        idle_timeout_ms=60_000,
        request_timeout_ms=120_000,
    )

    events: list[CallEvent] = []
    spoke_while_held: list[bool] = []
    async with asyncio.timeout(CALL_TIMEOUT_S), router_stack(temporal_client, settings, llm):
        call_sid = new_sid("CA")
        call_id = f"call-{call_sid}"
        call = SimulatedCall(
            settings.edge_url,
            CALLER,
            call_sid=call_sid,
            params={"script": "solar_survey", "lead_name": CALLER.name},
            status_callback=f"{settings.edge_url}/twilio/status",
            recording_path=tmp_path / "call.wav",
        )
        running = asyncio.create_task(call.run())
        async with edge_events(settings, call_id) as socket:
            async for raw in socket:
                event = parse_event(raw)
                events.append(event)
                if (
                    isinstance(event, AgentUtterance)
                    and event.tier == DecisionTier.LLM.value
                    and ROOF.startswith(event.text)
                ):
                    spoke_while_held.append(llm_server.paused.is_set())
                    llm_server.release_paused()
                if isinstance(event, CallEnded):
                    break
        result = await running
        snapshot: CallSnapshot = await temporal_client.get_workflow_handle(call_id).query(
            CallWorkflow.snapshot
        )

    assert result.error is None, result.error
    assert spoke_while_held == [True], "the first LLM audio left before its reply was complete"
    assert snapshot.outcome is Outcome.NOT_INTERESTED, snapshot.transcript

    llm_lines = [e for e in snapshot.transcript if e.tier is DecisionTier.LLM]

    def only(matching: list[TranscriptEntry], what: str) -> TranscriptEntry:
        said = [(e.speaker, e.text, e.reason) for e in snapshot.transcript]
        assert len(matching) == 1, f"expected one {what} among {said}"
        return matching[0]

    roof = only([e for e in llm_lines if e.text == ROOF], "streamed answer")
    mess = only(
        [e for e in llm_lines if "cancelled by barge-in" in (e.reason or "")], "cut-off reply"
    )
    refused = [e for e in llm_lines if "allowed next state" in (e.reason or "")]
    assert refused, "the reply with a forbidden transition was refused"

    assert roof.text == ROOF and not roof.interrupted
    assert " ".join((roof.heard_text or "").split()) == ROOF
    assert roof.citations == [CITED]
    assert roof.state == "pitch"
    streamed = next(
        e for e in events if isinstance(e, AgentUtterance) and e.utterance_id == roof.utterance_id
    )
    assert streamed.streaming is True
    assert {"llm_first_token", "first_audio_after_first_token", "total"} <= set(streamed.latency_ms)
    assert {"llm_first_token", "first_audio_after_first_token"} <= set(roof.latency_ms)

    assert mess.interrupted
    assert MESS.startswith(mess.text) and len(mess.text) < len(MESS)
    assert mess.state == "pitch"
    assert any(isinstance(e, BargeIn) and e.utterance_id == mess.utterance_id for e in events)

    for forbidden in refused:
        assert forbidden.text == SAFE_LINE
        assert forbidden.state == "pitch"
        assert "fallback line" in (forbidden.reason or "")
    # "Hold on, ..." can end a turn of its own under load; its safe line is then withdrawn
    # unheard when the caller goes on, and the joined turn is refused again and heard
    heard = [e for e in refused if e.heard_text]
    assert heard, "the safe line that replaced a refused reply was spoken"
    assert all(e.heard_text == SAFE_LINE for e in heard)
    assert "booked" not in [e.state for e in snapshot.transcript if e.speaker == "agent"]


ISSUE_CALLER = (
    "Yes, this is Jordan.",
    "Okay, Thursday afternoon would work for me",
    "Yeah, we've owned the place for about ten years now",
    "Sure, why not.",
    "Oh, one eighty a month, give or take",
    "Yep, go ahead",
)
"""Issue 8's caller in their own words: a detail given early, yes with content, number words."""


async def test_a_caller_in_their_own_words_books_without_an_llm(
    temporal_client: Client, temporal_settings: Settings
) -> None:
    """The real workflow and worker, turns sent as the edge sends them (no audio): the early
    "Thursday afternoon" is kept and its questions skipped, "Yeah, we've owned the place..."
    answers the homeowner question, "one eighty" is 180, and the call books."""
    settings = temporal_settings.model_copy(
        update={"task_queue": f"understand-{uuid.uuid4().hex[:8]}"}
    )
    await asyncio.to_thread(warm_up_router, settings)
    call = CallInput(
        call_id=f"call-{uuid.uuid4().hex[:12]}",
        lead=Lead(name="Jordan", phone="+15550001234"),
        script_name="solar_survey",
        playbook=load_playbook("solar_survey", settings.playbooks_dir),
    )
    with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
        async with build_worker(temporal_client, settings, executor):
            handle = await start_call_workflow(temporal_client, call, settings)
            turns = [Turn(seq=0, kind="start")]
            turns += [
                Turn(seq=n, kind="speech", text=text) for n, text in enumerate(ISSUE_CALLER, 1)
            ]
            decisions = []
            for turn in turns:
                decisions.append(
                    await handle.execute_update(
                        CallWorkflow.turn, turn, id=f"{handle.id}-turn-{turn.seq}"
                    )
                )
            last = decisions[-1]
            await handle.signal(
                CallWorkflow.utterance_played,
                UtterancePlayed(utterance_id=last.utterance_id, heard_text=last.text, played_ms=1),
            )
            snapshot = await handle.result()

    states = [d.state for d in decisions]
    assert states == ["greeting", "homeowner", "homeowner", "pitch", "qualify", "confirm", "booked"]
    assert decisions[2].text == "Got it, thanks. Do you own your home, or do you rent?"
    assert decisions[3].tier is DecisionTier.SCRIPT
    assert "'yeah' answers the question: intent 'owns_home'" in decisions[3].reason
    assert "given earlier" in decisions[5].reason
    assert decisions[5].text.startswith("Perfect. That's a free solar survey on Thursday afternoon")
    assert snapshot.outcome is Outcome.BOOKED
    assert snapshot.slots["monthly_bill"] == "180"
    assert (snapshot.slots["survey_day"], snapshot.slots["survey_time"]) == (
        "Thursday",
        "afternoon",
    )
    agent_lines = [e.text for e in snapshot.transcript if e.speaker == "agent"]
    assert all(a != b for a, b in itertools.pairwise(agent_lines))
    history = await handle.fetch_history()
    await Replayer(
        workflows=[CallWorkflow], data_converter=temporal_client.data_converter
    ).replay_workflow(history)
