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

from evals.calls import CorpusPersona, run_call
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
from simulator.caller_audio import CallerAudio
from simulator.persona import load_reactive_persona
from slot.devstack import Stack
from slot.settings import REPO_ROOT, Settings
from tests.integration.edge_fixtures import STARTUP_S
from tests.integration.test_end_to_end import (
    caller_turns,
    place_inbound_call,
    snapshot,
    stack_settings,
)
from workflows.messages import CallSnapshot, TranscriptEntry
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
        stt_model="whisper-tiny",
    )
    """Its own task queue: this stack starts its own worker, never one another module left.
    Whisper tiny.en, not the default Moonshine: these tests are about when a turn ends, and
    their callers' words were chosen with it (with Moonshine, in two runs, the pausing caller's
    "Tuesday..." never became a turn of its own, so there was no early end for her to continue)."""
    running = Stack(settings, headless=True)
    await running.start(timeout_s=STARTUP_S)
    try:
        yield running
    finally:
        await running.stop()


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


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

    spoken = [e for e in agent_replies(transcript) if not (e.interrupted and not e.heard_text)]
    for reply in spoken:  # a reply withdrawn before it played (a continuation) has no stages
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


async def paused_call(
    stack: Stack, temporal_client: Client, persona_file: str
) -> tuple[CallSnapshot, str]:
    """One whole call of a test caller from personas/: the workflow's final snapshot, and its
    transcript beside the caller's timeline (the assertion message)."""
    path = REPO_ROOT / "personas" / persona_file
    caller = CorpusPersona("test", path, load_reactive_persona(path))
    audio = CallerAudio(stack.settings.data_dir / "caller-audio")
    await asyncio.to_thread(audio.prepare, [caller.persona])
    record = await asyncio.wait_for(
        run_call(stack.settings, caller, audio, stack.settings.default_script), timeout=240
    )
    assert record.error is None, record.notes
    final = await snapshot(temporal_client, record.call_id)
    lines = "\n".join(
        f"{e.speaker}: {e.text}{' (withdrawn)' * e.withdrawn}" for e in final.transcript
    )
    lines += "\nas the caller lived it:\n" + "\n".join(map(str, record.timeline))
    return final, lines


async def test_a_caller_who_goes_on_after_a_premature_end_of_turn_is_decided_as_one_turn(
    stack: Stack, temporal_client: Client
) -> None:
    """Ines says "Tuesday would be best", a complete answer, so the edge ends the turn; 300 ms
    into the agent's question about Tuesday she goes on: "no sorry, Thursday." Decided alone in
    that next state, "no sorry, Thursday" is a refusal (not_interested); as the turn's
    continuation, decided where the call was before, it is the day, and the call books."""
    final, lines = await paused_call(stack, temporal_client, "pausing_caller.yaml")
    assert (final.outcome, final.slots.get("survey_day")) == (Outcome.BOOKED, "Thursday"), lines

    withdrawn = [e for e in final.transcript if e.withdrawn]
    assert [e.speaker for e in withdrawn] == ["caller", "agent"], lines
    cut_short, premature = withdrawn
    # whisper tiny, prompted with "which weekday", sometimes hears "Tuesday" as "Wednesday":
    # the first day she named, whichever it was heard as, is what the premature reply asked about
    first_day = next((w for w in words(cut_short.text) if w in WEEKDAYS), None)
    assert first_day is not None and first_day != "thursday", lines
    assert premature.state == "ask_time" and first_day.title() in premature.text, lines
    joined = next(
        e for e in final.transcript if e.speaker == "caller" and e.seq == (cut_short.seq or 0) + 1
    )
    heard_first = words(cut_short.text)
    assert words(joined.text)[: len(heard_first)] == heard_first, lines
    assert "thursday" in words(joined.text), lines


async def test_a_caller_who_goes_on_over_a_goodbye_takes_it_back_and_the_call_goes_on(
    stack: Stack, temporal_client: Client
) -> None:
    """Wren says "Not this week.", which ends the call with a call back; 300 ms into the
    goodbye she goes on: "actually, Friday works." The edge withdraws the goodbye without
    hanging up, the workflow undoes it and decides both parts as one turn at the day question
    (before patch ending-continuation-v1 the call ended `call_back_later` over her words).
    What that turn then decides depends on how her words are heard, so the test asserts the
    goodbye taken back and the call going on, and the booking only when "Friday" was heard."""
    final, lines = await paused_call(stack, temporal_client, "goodbye_continuer.yaml")
    withdrawn = [e for e in final.transcript if e.withdrawn]
    assert [e.speaker for e in withdrawn] == ["caller", "agent"], lines
    cut_short, goodbye = withdrawn
    assert goodbye.state == "call_back_later" and goodbye.heard_text != goodbye.text, lines
    joined = next(
        e for e in final.transcript if e.speaker == "caller" and e.seq == (cut_short.seq or 0) + 1
    )
    assert words(joined.text)[: len(words(cut_short.text))] == words(cut_short.text), lines
    after = final.transcript[final.transcript.index(joined) + 1 :]
    assert any(e.speaker == "agent" and e.heard_text for e in after), lines
    if "friday" in words(joined.text):
        assert (final.outcome, final.slots.get("survey_day")) == (Outcome.BOOKED, "Friday"), lines
