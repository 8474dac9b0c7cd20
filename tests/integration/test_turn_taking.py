"""Turn-taking on whole calls: the simulated caller talks over the agent, once to interrupt it and
once to acknowledge it ("uh-huh"), and the call workflow's record says what the caller heard.
Either way the agent is paused at the speech's onset; an acknowledgement resumes it.

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
from media_edge.events import (
    AgentPaused,
    AgentResumed,
    AgentUtterance,
    Backchannel,
    BargeIn,
    CallerTurn,
    CallEvent,
    UtteranceDone,
)
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
    # The persona's planned interruption is the one over the pitch that heard its first words
    # (a caller still talking after a premature endpoint can also cut a reply at its start).
    cut = [i for i, e in enumerate(transcript) if e.interrupted and e.heard_text]
    assert cut, [(e.speaker, e.text, e.interrupted) for e in transcript]
    agent = transcript[cut[0]]
    heard = agent.heard_text
    assert heard, "the caller heard the start of the pitch"
    assert agent.text.startswith(heard) and len(heard) < len(agent.text), (heard, agent.text)
    barge = next(
        e for e in events if isinstance(e, BargeIn) and e.utterance_id == agent.utterance_id
    )
    assert barge.heard_text == heard
    paused = [
        e for e in events if isinstance(e, AgentPaused) and e.utterance_id == agent.utterance_id
    ]
    assert paused, "paused at speech onset"
    assert events.index(paused[0]) < events.index(barge)
    assert paused[0].heard_text == heard, "what was heard is what was heard at the pause"

    interrupting = transcript[cut[0] + 1]
    assert interrupting.speaker == "caller"
    assert words(interrupting.text)[0] == "sounds", "the interruption's first words were kept"

    for reply in agent_replies(transcript):
        for stage in STAGES:
            assert stage in reply.latency_ms, (stage, reply.text, reply.latency_ms)
    reasons = {e.end_reason for e in events if isinstance(e, CallerTurn)}
    assert "script" in reasons, "complete answers to the script's questions end at the pause"


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
    final = await snapshot(temporal_client, call_id)
    assert final.outcome == Outcome.BOOKED

    acknowledged = [e.utterance_id for e in events if isinstance(e, Backchannel)]
    assert len(acknowledged) == 2, [e for e in events if not isinstance(e, AgentUtterance)]
    # Each acknowledgement paused the agent at its onset (a clear), then the agent resumed the
    # same utterance from where it stopped and played it to its end.
    paused = [e.utterance_id for e in events if isinstance(e, AgentPaused)]
    resumed = [e for e in events if isinstance(e, AgentResumed)]
    assert paused == acknowledged, [e for e in events if not isinstance(e, AgentUtterance)]
    assert [e.utterance_id for e in resumed] == acknowledged
    assert result.clears_received == len(paused)
    for event in resumed:
        done = next(
            e
            for e in events[events.index(event) :]
            if isinstance(e, UtteranceDone) and e.utterance_id == event.utterance_id
        )
        assert not done.interrupted
    cleared = [i for i, s in enumerate(result.agent_segments) if s.cleared]
    assert len(cleared) == 2 and all(i + 1 < len(result.agent_segments) for i in cleared)
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
