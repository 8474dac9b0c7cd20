"""Turn-taking on whole calls: the simulated caller talks over the agent, once to interrupt it and
once to acknowledge it ("uh-huh"), and the call workflow's record says what the caller heard.

Real processes throughout (Temporal dev server, worker, edge with Smart Turn endpointing and the
barge-in classifier, the phone simulator speaking synthesized audio in real time).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client

from media_edge.barge_in import is_backchannel_text
from media_edge.events import AgentUtterance, Backchannel, BargeIn, CallEvent
from slot.devstack import Stack
from slot.settings import Settings
from tests.integration.edge_fixtures import STARTUP_S
from tests.integration.test_end_to_end import (
    caller_turns,
    place_inbound_call,
    snapshot,
    stack_settings,
)
from workflows.messages import TranscriptEntry
from workflows.script import Outcome

STAGES = ("endpointing", "turn_model", "stt", "decision", "tts_first_audio", "send", "total")


@pytest.fixture(scope="module")
async def stack(
    temporal_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    settings = stack_settings(
        temporal_settings,
        tmp_path_factory.mktemp("turn-taking"),
        endpointing="smart_turn",
        task_queue="slot-calls-turn-taking",
    )
    """Its own task queue: this stack starts its own worker, never one another module left."""
    running = Stack(settings, headless=True)
    await running.start(timeout_s=STARTUP_S)
    try:
        yield running
    finally:
        await running.stop()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def agent_replies(transcript: list[TranscriptEntry]) -> list[TranscriptEntry]:
    """Agent lines that answer a caller turn (the greeting answers none)."""
    return [e for e in transcript[1:] if e.speaker == "agent"]


async def test_interruption_cuts_the_agent_off_and_becomes_the_next_turn(
    stack: Stack, temporal_client: Client
) -> None:
    events: list[CallEvent] = []
    call_id, call = await place_inbound_call(stack.settings, "booked_caller.yaml", events)
    result = await asyncio.wait_for(call, timeout=240)
    assert result.error is None
    assert result.clears_received >= 1
    final = await snapshot(temporal_client, call_id)
    assert final.outcome == Outcome.BOOKED

    transcript = final.transcript
    cut = [i for i, e in enumerate(transcript) if e.interrupted]
    assert cut, [(e.speaker, e.text, e.interrupted) for e in transcript]
    agent = transcript[cut[0]]
    heard = agent.heard_text
    assert heard, "the caller heard the start of the pitch"
    assert agent.text.startswith(heard) and len(heard) < len(agent.text), (heard, agent.text)
    barge = next(e for e in events if isinstance(e, BargeIn))
    assert barge.utterance_id == agent.utterance_id and barge.heard_text == heard

    interrupting = transcript[cut[0] + 1]
    assert interrupting.speaker == "caller"
    assert words(interrupting.text)[0] == "sounds", "the interruption's first words were kept"

    for reply in agent_replies(transcript):
        for stage in STAGES:
            assert stage in reply.latency_ms, (stage, reply.text, reply.latency_ms)


async def test_backchannels_do_not_interrupt_and_are_not_turns(
    stack: Stack, temporal_client: Client
) -> None:
    events: list[CallEvent] = []
    call_id, call = await place_inbound_call(stack.settings, "backchannel_caller.yaml", events)
    result = await asyncio.wait_for(call, timeout=240)
    assert result.error is None
    assert [line.text for line in result.lines_spoken if line.backchannel] == [
        "Uh-huh.",
        "Yeah, right.",
    ]
    assert result.clears_received == 0, "no clear: the agent talked through the backchannels"
    final = await snapshot(temporal_client, call_id)
    assert final.outcome == Outcome.BOOKED

    acknowledged = [e.utterance_id for e in events if isinstance(e, Backchannel)]
    assert len(acknowledged) == 2, [e for e in events if not isinstance(e, AgentUtterance)]
    by_id = {e.utterance_id: e for e in final.transcript if e.speaker == "agent"}
    for utterance_id in acknowledged:
        entry = by_id[utterance_id]
        assert not entry.interrupted
        assert entry.heard_text == entry.text
    assert not any(e.interrupted for e in final.transcript)
    assert [e for e in events if isinstance(e, BargeIn)] == []

    turns = [text for _, text in caller_turns(final)]
    assert len(turns) == 6, turns
    assert not any(is_backchannel_text(text) for text in turns), turns
