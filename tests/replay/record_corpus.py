"""Record the replay corpus: real call histories made by the current CallWorkflow.

`uv run python -m tests.replay.record_corpus OUT_DIR` starts a Temporal dev server and the real
worker, plus a loopback stand-in for the two HTTP endpoints the workflow's activities call (the
edge's `/calls/{id}/say` and Twilio's `Calls.json`). It drives one call per scenario the way the
media edge does: the Update `turn` (DTMF as a turn of kind "dtmf"), the signal `utterance_played`
(interrupted, with the heard text, for barge-in), and for tier 2 the Update `llm_result` carrying
what the real LLM adapter got from a local OpenAI-protocol server. Each call's history is written
to OUT_DIR/<scenario>.json, and the workflow id is the scenario's name. One scenario instead runs
the real media edge and the phone simulator speaking real audio, as `slot demo` does (its call id
comes from the edge; the file still bears the scenario's name).

The committed corpus (tests/replay/histories) was recorded before the redesign of issue 7: its
point is that older code made it, so re-record only on purpose and keep the old files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from temporalio.client import Client, WorkflowHandle, WorkflowHistory

from activities.knowledge import shared_knowledge_base
from media_edge.app import create_app
from media_edge.call_hold import CallHolds, edge_worker
from media_edge.delivery import EdgeDelivery
from media_edge.llm import BamlLanguageModel
from simulator.llm_server import OpenAIProtocolServer, Reply
from simulator.persona import load_persona
from simulator.phone import SimulatedCall
from simulator.protocol import new_sid
from slot.dev_secrets import use_dev_secrets
from slot.llm.config import LLMSettings
from slot.payload_codec import decryptor_of
from slot.playbooks import load_playbook
from slot.replay import save_histories
from slot.settings import REPO_ROOT, Settings
from slot.temporal import TemporalDevServer, connect, start_call_workflow
from tests.conftest import edge_ports, free_port
from tests.integration.edge_fixtures import serve
from worker import ACTIVITY_SLOTS, build_worker, warm_up_router
from workflows.call import CallWorkflow
from workflows.messages import (
    CallInput,
    CallSnapshot,
    CallStatus,
    CallStatusUpdate,
    CallTimers,
    Decision,
    Direction,
    HangUp,
    Lead,
    MachineDetection,
    RunLimits,
    Turn,
    TurnKind,
    UtterancePlayed,
)
from workflows.router_messages import LLMTurnReport, LLMTurnResult
from workflows.script import DecisionTier, Outcome, Playbook, VoicemailPolicy

WAIT_S = 60.0
EDGE_CALL_S = 300.0
TIMERS = CallTimers(reprompt_after_s=30.0, follow_up_delay_s=1.0, answer_timeout_s=120.0)
"""Long enough that no reprompt fires between the recorder's turns, short for the follow-up."""
ROOF = (
    "Most roofs in good condition work well, whether tiled, metal or shingled, and our "
    "surveyor checks the structure on the day. Would you like us to book your free survey?"
)
HOME = "You'd need to be home for about an hour. What's your monthly power bill?"
MESS = (
    "Hardly any, because the crew mounts the rails on the roof and runs the cables along the "
    "outside walls without drilling through the rooms. Would you like to book the survey?"
)


class RecordingFailed(RuntimeError):
    """A scenario did not reach what it is named after; the corpus would lie about it."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise RecordingFailed(what)


def llm_reply(next_state: str, say: str, cited: list[str] | None = None) -> dict[str, Any]:
    return {
        "next_state": next_state,
        "say": say,
        "slots": {},
        "end_call": False,
        "cited_ids": cited or [],
    }


@dataclass
class Edge:
    """The edge's `say` endpoint and Twilio's `Calls.json`, recording what the workflow sent."""

    spoken: dict[str, asyncio.Queue[Decision]] = field(default_factory=dict)
    dialled: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    """Live calls the workflow changed through Twilio (transfer, hang-up), by CallSid."""

    def queue(self, call_id: str) -> asyncio.Queue[Decision]:
        return self.spoken.setdefault(call_id, asyncio.Queue())

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/calls/{call_id}/say")
        async def say(call_id: str, decision: Decision) -> dict[str, str]:
            self.queue(call_id).put_nowait(decision)
            return {"queued": decision.utterance_id}

        @app.post("/2010-04-01/Accounts/{sid}/Calls.json", status_code=201)
        async def place_call(sid: str) -> dict[str, str]:
            self.dialled.append(sid)
            return {"sid": "CA" + uuid.uuid4().hex, "status": "queued"}

        @app.post("/2010-04-01/Accounts/{sid}/Calls/{call_sid}.json")
        async def update_call(sid: str, call_sid: str) -> dict[str, str]:
            self.updated.append(call_sid)
            return {"sid": call_sid, "status": "in-progress"}

        return app


@dataclass
class QueuedSpeech:
    """Stands for the edge's session of one call: what `speak_on_edge` hands it is queued."""

    spoken: asyncio.Queue[Decision]

    def say(self, decision: Decision) -> bool:
        self.spoken.put_nowait(decision)
        return True


@dataclass
class Call:
    """One call driven as the edge drives it: turns in order, then what the caller heard."""

    handle: WorkflowHandle[Any, CallSnapshot]
    edge_url: str
    spoken: asyncio.Queue[Decision]
    seq: int = -1
    edge_queue: str | None = None
    """The edge's own task queue, where the workflow holds the call (None: not held)."""
    call_sid: str | None = None
    """Twilio's CallSid, as the stream's start gives it (None: as the edge sent before)."""

    async def turn(
        self,
        text: str = "",
        *,
        digits: str = "",
        played: bool = True,
        continues: int | None = None,
    ) -> Decision:
        self.seq += 1
        kind: TurnKind = "start" if self.seq == 0 else "dtmf" if digits else "speech"
        turn = Turn(
            seq=self.seq,
            kind=kind,
            text=text,
            digits=digits,
            edge_url=self.edge_url,
            edge_queue=self.edge_queue,
            call_sid=self.call_sid,
            continues=continues,
        )
        decision = await self.handle.execute_update(
            CallWorkflow.turn, turn, id=f"{self.handle.id}-turn-{self.seq}"
        )
        if played:
            await self.played(decision)
        return decision

    async def played(self, decision: Decision, *, heard: str | None = None) -> None:
        """The signal the edge sends once an utterance ended; `heard` when the caller cut in."""
        text = decision.text if heard is None else heard
        await self.handle.signal(
            CallWorkflow.utterance_played,
            UtterancePlayed(
                utterance_id=decision.utterance_id,
                interrupted=heard is not None,
                heard_text=text,
                played_ms=60 * len(text),
            ),
        )

    async def said_unprompted(self) -> Decision:
        """An utterance the workflow sent through the edge on its own (reprompt, goodbye)."""
        return await asyncio.wait_for(self.spoken.get(), WAIT_S)

    async def hang_up(self) -> CallSnapshot:
        await self.handle.signal(CallWorkflow.hang_up, HangUp())
        return await self.result()

    async def result(self) -> CallSnapshot:
        return await asyncio.wait_for(self.handle.result(), WAIT_S)


@dataclass
class Recorder:
    client: Client
    settings: Settings
    edge: Edge
    edge_url: str
    llm_server: OpenAIProtocolServer
    model: BamlLanguageModel
    histories: list[WorkflowHistory] = field(default_factory=list)

    async def call(
        self,
        name: str,
        *,
        timers: CallTimers = TIMERS,
        llm: bool = False,
        direction: Direction = Direction.INBOUND,
        limits: RunLimits | None = None,
        playbook: Playbook | None = None,
    ) -> Call:
        call = CallInput(
            call_id=name,
            direction=direction,
            lead=Lead(name="Jordan", phone="+15550001111"),
            script_name="solar_survey",
            playbook=playbook or load_playbook("solar_survey", self.settings.playbooks_dir),
            timers=timers,
            llm_enabled=llm,
            limits=limits or RunLimits(),
        )
        handle = await start_call_workflow(self.client, call, self.settings)
        return Call(handle, self.edge_url, self.edge.queue(name))

    async def keep(self, call: Call) -> None:
        self.histories.append(await call.handle.fetch_history())

    async def walk_to_pitch(self, call: Call) -> None:
        await call.turn()
        await call.turn("Yes, speaking.")
        decision = await call.turn("Yes, I own my home.")
        expect(decision.state == "pitch", f"{call.handle.id}: not at the pitch: {decision}")

    async def finish(self, call: Call, outcome: Outcome) -> None:
        """Wait for the call's end, check its outcome, and keep its history."""
        result = await call.result()
        expect(result.outcome is outcome, f"{call.handle.id}: {result.outcome} is not {outcome}")
        await self.keep(call)

    async def llm_turn(
        self, call: Call, text: str, reply: Reply, *, cut_in: bool = False
    ) -> Decision:
        """Tier 2 as the edge runs it: the workflow hands over the request, the real adapter
        streams the local server's reply, and the Update `llm_result` settles the turn."""
        decision = await call.turn(text, played=False)
        request = decision.llm_request
        expect(decision.tier is DecisionTier.LLM and request is not None, f"not LLM: {decision}")
        assert request is not None
        self.llm_server.enqueue(reply)
        stream = self.model.decide_turn(request)
        heard = ""
        async for delta in stream.say_deltas():
            heard += delta
            if cut_in:
                break
        if cut_in:
            await self.llm_server.wait_for_requests(1)
            await stream.cancel()
            await call.played(decision, heard=heard)
        result = await stream.result()
        expect(result.cancelled == cut_in, f"{call.handle.id}: cancelled={result.cancelled}")
        final = await self.report(call, decision, result)
        if not cut_in:
            await call.played(final)
        self.llm_server.release_paused()
        return final

    async def report(self, call: Call, decision: Decision, result: LLMTurnResult) -> Decision:
        return await call.handle.execute_update(
            CallWorkflow.llm_result,
            LLMTurnReport(utterance_id=decision.utterance_id, result=result),
            id=f"{decision.utterance_id}-llm",
        )

    # --- scenarios: one call each, named after what it covers ---------------------------------

    async def booked(self) -> None:
        """Script and classifier tiers all the way to a booked survey."""
        call = await self.call("booked")
        await call.turn()
        identity = await call.turn("Yep, you've got him.")
        expect(identity.tier is DecisionTier.CLASSIFIER, f"not the classifier: {identity}")
        for text, state in [
            ("Yes, I own my home.", "pitch"),
            ("Sure, that sounds good.", "qualify"),
            ("About 200 dollars a month.", "ask_day"),
            ("Tuesday works for me.", "ask_time"),
            ("In the morning, please.", "confirm"),
            ("Yes, that works.", "booked"),
        ]:
            decision = await call.turn(text)
            expect(decision.state == state, f"booked: {text!r} went to {decision.state}")
        await self.finish(call, Outcome.BOOKED)

    async def understood_in_own_words(self) -> None:
        """Patch understanding-v1: a detail given early, a miss asked again differently, yes
        with content, number words, questions answered earlier skipped; books without an LLM."""
        call = await self.call("understood_in_own_words")
        await call.turn()
        steps = [
            ("Yes, this is Jordan.", "homeowner"),
            ("Okay, Thursday afternoon would work for me", "homeowner"),
            ("Purple elephants, honestly.", "homeowner"),
            ("Yeah, we've owned the place for about ten years now", "pitch"),
            ("Sure, why not.", "qualify"),
            ("Oh, one eighty a month, give or take", "confirm"),
            ("Yep, go ahead", "booked"),
        ]
        said = []
        for text, state in steps:
            decision = await call.turn(text)
            said.append(decision.text)
            expect(decision.state == state, f"own words: {text!r} went to {decision.state}")
        expect(said[1] != said[2], "the same recovery line twice in a row")
        await self.finish(call, Outcome.BOOKED)

    async def turn_continued(self) -> None:
        """Patch turn-continuation-v1: "Tuesday" was ended too early, its reply withdrawn before
        it played, and "Tuesday no sorry, Thursday" is decided where the call stood before."""
        call = await self.call("turn_continued")
        await self.walk_to_pitch(call)
        await call.turn("Sure, that sounds good.")
        await call.turn("About 200 dollars a month.")
        premature = await call.turn("Tuesday", played=False)
        expect(premature.state == "ask_time", f"turn_continued: {premature}")
        await call.played(premature, heard="")
        continued = await call.turn("Tuesday no sorry, Thursday", continues=call.seq)
        expect("Thursday" in continued.text, f"turn_continued: not rewound: {continued}")
        await call.turn("In the afternoon, please.")
        await call.turn("Yes, that works.")
        await self.finish(call, Outcome.BOOKED)

    async def not_interested(self) -> None:
        call = await self.call("not_interested")
        await self.walk_to_pitch(call)
        await call.turn("No thanks, I'm not interested.")
        await self.finish(call, Outcome.NOT_INTERESTED)

    async def call_back_later(self) -> None:
        """The caller asks for a call back: a durable timer, then the follow-up child call,
        which this recorder answers and books (its history is kept too)."""
        call = await self.call("call_back_later")
        await call.turn()
        await call.turn("Sorry, I'm busy right now. Can you call me back later?")
        result = await call.result()
        expect(result.outcome is Outcome.CALL_BACK_LATER, f"call back later: {result.outcome}")
        expect(result.follow_up_call_id is not None, "no follow-up call")
        assert result.follow_up_call_id is not None
        await self.keep(call)
        child_id = result.follow_up_call_id
        child = Call(
            self.client.get_workflow_handle_for(CallWorkflow.run, child_id),
            self.edge_url,
            self.edge.queue(child_id),
        )
        opening = await child.turn()
        expect(opening.state == "follow_up", f"follow-up opened at {opening.state}")
        for text in ["Yes, now works.", "Tuesday.", "In the morning.", "Yes, that works."]:
            await child.turn(text)
        await self.finish(child, Outcome.BOOKED)

    async def do_not_call(self) -> None:
        call = await self.call("do_not_call")
        await call.turn()
        decision = await call.turn("Stop calling me.")
        expect(decision.tier is DecisionTier.RULE, f"do not call is a rule: {decision}")
        await self.finish(call, Outcome.DO_NOT_CALL)

    async def transfer(self) -> None:
        call = await self.call("transfer")
        await call.turn()
        await call.turn("Yes, speaking.")
        await call.turn("Can I talk to a real person?")
        await self.finish(call, Outcome.TRANSFER)

    async def dtmf(self) -> None:
        """Keys as the edge sends them (turns of kind "dtmf"): one the state does not know,
        then 0 for a person."""
        call = await self.call("dtmf")
        await call.turn()
        await call.turn(digits="5")
        decision = await call.turn(digits="0")
        expect(decision.state == "transfer", f"0 did not transfer: {decision}")
        await self.finish(call, Outcome.TRANSFER)

    async def silent_caller_released(self) -> None:
        """Nobody speaks: the workflow's timer reprompts twice, then says goodbye."""
        timers = TIMERS.model_copy(update={"reprompt_after_s": 0.5, "max_reprompts": 2})
        call = await self.call("silent_caller_released", timers=timers)
        await call.turn()
        while True:
            decision = await call.said_unprompted()
            await call.played(decision)
            if decision.end_call:
                break
        await self.finish(call, Outcome.NO_RESPONSE)

    async def silent_then_answers(self) -> None:
        """One reprompt, then the caller answers and the call goes on (then hangs up)."""
        timers = TIMERS.model_copy(update={"reprompt_after_s": 2.0})
        call = await self.call("silent_then_answers", timers=timers)
        await call.turn()
        reprompt = await call.said_unprompted()
        expect(not reprompt.end_call, "the first silence ended the call")
        await call.played(reprompt)
        decision = await call.turn("Yes, speaking.", played=False)
        expect(decision.state == "homeowner", f"after a reprompt: {decision}")
        await call.played(decision)
        result = await call.hang_up()
        expect(result.reprompts == 1, f"reprompts: {result.reprompts}")
        await self.keep(call)

    async def barge_in(self) -> None:
        """The caller cuts in on the pitch: the edge reports what was heard, then the turn."""
        call = await self.call("barge_in")
        await call.turn()
        await call.turn("Yes, speaking.")
        pitch = await call.turn("Yes, I own my home.", played=False)
        await call.played(pitch, heard=" ".join(pitch.text.split()[:6]))
        decision = await call.turn("Sounds good, I'm interested.")
        expect(decision.state == "qualify", f"after barge-in: {decision}")
        result = await call.hang_up()
        expect(result.outcome is Outcome.HUNG_UP, f"barge-in call: {result.outcome}")
        await self.keep(call)

    async def knowledge_answer(self) -> None:
        """No LLM: a question the script does not foresee is answered from the knowledge base."""
        call = await self.call("knowledge_answer")
        await self.walk_to_pitch(call)
        answer = await call.turn("How long is the warranty?")
        expect(answer.tier is DecisionTier.KNOWLEDGE, f"not a knowledge answer: {answer}")
        await call.turn("Sure, that sounds good.")
        await call.hang_up()
        await self.keep(call)

    async def token_match_then_nothing_answers(self) -> None:
        """Tier 1's second half and the end of the router without an LLM: the classifier is
        unsure (0.60) but the token matcher is confident; later a question neither the script
        nor the knowledge base can answer gets the script's own line."""
        call = await self.call("token_match_then_nothing_answers")
        await call.turn()
        identity = await call.turn("yes this is the phone")
        expect(identity.tier is DecisionTier.INTENT, f"not the token matcher: {identity}")
        await call.turn("Yes, I own my home.")
        unanswered = await call.turn("What's your favourite colour?")
        expect("no LLM configured" in unanswered.reason, f"answered: {unanswered}")
        await call.hang_up()
        await self.keep(call)

    async def llm_turn_accepted(self) -> None:
        """Tier 2 against the local server: an answer that stays, then one that moves on."""
        call = await self.call("llm_turn_accepted", llm=True)
        await self.walk_to_pitch(call)
        answer = await self.llm_turn(
            call,
            "What kind of roof do you need for the panels?",
            Reply.json(llm_reply("pitch", ROOF, ["solar_survey/installation.md#3"])),
        )
        expect(answer.text == ROOF and answer.state == "pitch", f"roof answer: {answer}")
        moved = await self.llm_turn(
            call, "Do I need to be home for it?", Reply.json(llm_reply("qualify", HOME))
        )
        expect(moved.state == "qualify", f"LLM transition refused: {moved}")
        await call.turn("About 200 dollars a month.")
        await call.hang_up()
        await self.keep(call)

    async def llm_forbidden_transition(self) -> None:
        """The LLM proposes `booked` from the pitch: the adapter speaks the safe line instead;
        a result that still carries the forbidden state is refused by the workflow itself."""
        call = await self.call("llm_forbidden_transition", llm=True)
        await self.walk_to_pitch(call)
        forbidden = llm_reply("booked", "You're all booked, goodbye!")
        safe = await self.llm_turn(call, "Hold on, who installs the panels?", Reply.json(forbidden))
        expect(safe.state == "pitch", f"forbidden transition taken: {safe}")
        decision = await call.turn("And who pays for the permits?", played=False)
        expect(decision.tier is DecisionTier.LLM, f"not LLM: {decision}")
        final = await self.report(
            call,
            decision,
            LLMTurnResult(
                next_state="booked", say=forbidden["say"], end_call=True, model="unchecked"
            ),
        )
        expect("rejected transition" in final.reason, f"workflow took it: {final}")
        await call.played(final)
        result = await call.hang_up()
        expect(result.state == "pitch", f"call moved to {result.state}")
        await self.keep(call)

    async def llm_turn_cut_off_by_barge_in(self) -> None:
        """The caller talks over a streaming LLM reply: the edge cancels the stream and the
        workflow keeps the call where it was."""
        call = await self.call("llm_turn_cut_off_by_barge_in", llm=True)
        await self.walk_to_pitch(call)
        held = Reply.paused_json(llm_reply("qualify", MESS), pause_after_tokens=30)
        cut = await self.llm_turn(call, "Does the installation make a big mess?", held, cut_in=True)
        expect(cut.state == "pitch", f"a cut-off reply moved the call: {cut}")
        await call.turn("No thanks, I'm not interested.")
        await self.finish(call, Outcome.NOT_INTERESTED)

    async def outbound_no_answer(self) -> None:
        timers = TIMERS.model_copy(update={"answer_timeout_s": 0.5})
        call = await self.call("outbound_no_answer", timers=timers, direction=Direction.OUTBOUND)
        result = await call.result()
        expect(result.transcript == [], "an unanswered call has no transcript")
        await self.keep(call)

    async def transfer_handed_over(self) -> None:
        """A transfer on a live call: its line keeps the line open, then `<Dial>` (patch
        transfer-v1) with the handoff's summary."""
        call = await self.call("transfer_handed_over")
        call.call_sid = "CA" + uuid.uuid4().hex
        await call.turn()
        await call.turn("Yes, speaking.")
        decision = await call.turn("Can I talk to a real person?")
        expect(decision.hand_over, f"the transfer line does not hand over: {decision}")
        await self.finish(call, Outcome.TRANSFER)
        expect(call.call_sid in self.edge.updated, "the live call was not transferred")

    async def voicemail_left(self) -> None:
        """Machine detection says machine: the voicemail line cuts in; the machine's words get
        no answer."""
        call = await self.call("voicemail_left", direction=Direction.OUTBOUND)
        call.call_sid = "CA" + uuid.uuid4().hex
        await call.turn()
        amd = MachineDetection(answered_by="machine_end_beep", call_sid=call.call_sid)
        await call.handle.signal(CallWorkflow.machine_detection, amd)
        decision = await call.said_unprompted()
        expect(decision.cut_in and decision.outcome is Outcome.VOICEMAIL, f"{decision}")
        await call.played(decision)
        await self.finish(call, Outcome.VOICEMAIL)

    async def voicemail_hung_up(self) -> None:
        """A playbook that leaves no message: the call is hung up through Twilio."""
        playbook = load_playbook("solar_survey", self.settings.playbooks_dir)
        silent = playbook.model_copy(update={"voicemail": VoicemailPolicy(action="hang_up")})
        call = await self.call("voicemail_hung_up", direction=Direction.OUTBOUND, playbook=silent)
        call.call_sid = "CA" + uuid.uuid4().hex
        await call.turn()
        amd = MachineDetection(answered_by="machine_end_silence", call_sid=call.call_sid)
        await call.handle.signal(CallWorkflow.machine_detection, amd)
        await self.finish(call, Outcome.VOICEMAIL)
        expect(call.call_sid in self.edge.updated, "the machine was not hung up on")

    async def outbound_busy(self) -> None:
        """Twilio's status callback says busy before anyone answered (patch line-outcomes-v1)."""
        call = await self.call("outbound_busy", direction=Direction.OUTBOUND)
        busy = CallStatusUpdate(status="busy", call_sid="CA" + uuid.uuid4().hex)
        await call.handle.signal(CallWorkflow.call_status, busy)
        await self.finish(call, Outcome.BUSY)

    async def edge_hold_released(self) -> None:
        """The edge's worker holds the call (`hold_call` on its own queue) until the stream
        ends, and its release ends the call."""
        holds, queue = CallHolds(), "edge-replay-corpus"
        async with edge_worker(self.client, queue, holds):
            call = await self.call("edge_hold_released")
            call.edge_queue = queue
            holds.open(call.handle.id)
            await call.turn()
            await call.turn("Yes, speaking.")
            holds.close(call.handle.id, "media stream closed without stop")
            result = await call.result()
        expect(result.status is CallStatus.ENDED, f"released hold ended as {result.status}")
        await self.keep(call)

    async def edge_dropped(self) -> None:
        """The edge that held the call is gone: no edge takes its hold, the call is dropped."""
        timers = TIMERS.model_copy(update={"edge_heartbeat_s": 1.0, "edge_reattach_s": 1.0})
        call = await self.call("edge_dropped", timers=timers)
        call.edge_queue = "edge-gone"
        await call.turn()
        result = await call.result()
        expect(result.status is CallStatus.DROPPED, f"a lost edge ended as {result.status}")
        await self.keep(call)

    async def reprompt_by_edge_queue(self) -> None:
        """The edge holding the call takes the workflow's reprompt and goodbye from its own task
        queue (`speak_on_edge`, patch edge-delivery-v1) instead of an HTTP `say`."""
        holds, queue = CallHolds(), "edge-replay-corpus-speech"
        timers = TIMERS.model_copy(update={"reprompt_after_s": 0.5, "max_reprompts": 1})
        sessions: dict[str, QueuedSpeech] = {}
        async with edge_worker(self.client, queue, holds, EdgeDelivery(sessions, queue)):
            call = await self.call("reprompt_by_edge_queue", timers=timers)
            call.edge_queue = queue
            holds.open(call.handle.id)
            sessions[call.handle.id] = QueuedSpeech(call.spoken)
            await call.turn()
            while True:
                decision = await call.said_unprompted()
                await call.played(decision)
                if decision.end_call:
                    break
            result = await call.result()
            holds.close(call.handle.id, "agent ended the call")
        expect(result.outcome is Outcome.NO_RESPONSE, f"by edge queue: {result.outcome}")
        await self.keep(call)

    async def edge_booked_with_barge_in(self) -> None:
        """The real media edge and the phone simulator speaking real audio (the booked persona:
        it cuts in on the pitch and asks about the warranty), as `slot demo` runs a call."""
        settings = self.settings.model_copy(update={"edge_public_url": None, **edge_ports()})
        persona = load_persona(REPO_ROOT / "personas" / "booked_caller.yaml")
        call_sid = new_sid("CA")
        no_llm = LLMSettings(base_url="", model="")
        async with serve(create_app(settings, no_llm), settings.edge_port):
            phone = SimulatedCall(
                settings.edge_url,
                persona,
                call_sid=call_sid,
                account_sid=settings.twilio_account_sid,
                status_callback=f"{settings.edge_url}/twilio/status",
                recording_path=settings.data_dir / f"{call_sid}.wav",
            )
            ended = await asyncio.wait_for(phone.run(), EDGE_CALL_S)
            expect(ended.error is None, f"simulated call failed: {ended.error}")
            handle = self.client.get_workflow_handle(f"call-{call_sid}", result_type=CallSnapshot)
            result = await asyncio.wait_for(handle.result(), WAIT_S)
        expect(result.outcome is Outcome.BOOKED, f"edge call: {result.outcome}")
        cut = [e for e in result.transcript if e.speaker == "agent" and e.interrupted]
        expect(bool(cut), "the persona's barge-in did not reach the workflow")
        history = await handle.fetch_history()
        self.histories.append(WorkflowHistory("edge_booked_with_barge_in", history.events))

    async def continued_as_new(self) -> None:
        """A long call in small (its `RunLimits` hand over every 5 Updates): three runs, the
        last one carrying only the transcript's last lines, booked at the end."""
        call = await self.call(
            "continued_as_new", limits=RunLimits(updates_per_run=5, transcript_lines=16)
        )
        await call.turn()
        said = [
            ("Yes, speaking.", "homeowner"),
            ("Yes, I own my home.", "pitch"),
            ("Sure, that sounds good.", "qualify"),
            *[("Could you say that again?", "qualify")] * 5,
            ("About 200 dollars a month.", "ask_day"),
            ("Tuesday works for me.", "ask_time"),
            ("Could you say that again?", "ask_time"),
            ("In the morning, please.", "confirm"),
            ("Yes, that works.", "booked"),
        ]
        for text, state in said:
            decision = await call.turn(text)
            expect(decision.state == state, f"continued_as_new: {decision.state} for {text!r}")
        result = await call.result()
        expect(result.outcome is Outcome.BOOKED, f"continued_as_new: {result.outcome}")
        expect(result.earlier_lines > 0, "continued_as_new: no line was moved to the record")
        run_id = call.handle.first_execution_run_id
        number = 0
        while run_id:
            run = self.client.get_workflow_handle(call.handle.id, run_id=run_id)
            history = await run.fetch_history()
            number += 1
            self.histories.append(WorkflowHistory(f"continued_as_new-run{number}", history.events))
            last = history.events[-1].workflow_execution_continued_as_new_event_attributes
            run_id = last.new_execution_run_id
        expect(number == 3, f"continued_as_new: {number} runs, not 3")

    def scenarios(self) -> list[Callable[[], Awaitable[None]]]:
        return [
            self.booked,
            self.not_interested,
            self.call_back_later,
            self.do_not_call,
            self.transfer,
            self.dtmf,
            self.silent_caller_released,
            self.silent_then_answers,
            self.barge_in,
            self.knowledge_answer,
            self.token_match_then_nothing_answers,
            self.llm_turn_accepted,
            self.llm_forbidden_transition,
            self.llm_turn_cut_off_by_barge_in,
            self.outbound_no_answer,
            self.edge_booked_with_barge_in,
            self.understood_in_own_words,
            self.continued_as_new,
            self.edge_hold_released,
            self.edge_dropped,
            self.transfer_handed_over,
            self.voicemail_left,
            self.voicemail_hung_up,
            self.outbound_busy,
            self.reprompt_by_edge_queue,
            self.turn_continued,
        ]


@asynccontextmanager
async def recorder(folder: Path) -> AsyncIterator[Recorder]:
    """Dev server, worker (router warmed up, knowledge base ingested), stand-in edge, LLM."""
    server = TemporalDevServer(
        address=f"127.0.0.1:{free_port()}", db_path=folder / "temporal.db", headless=True
    )
    edge = Edge()
    edge_port = free_port()
    edge_url = f"http://127.0.0.1:{edge_port}"
    settings = use_dev_secrets(
        Settings(
            temporal_address=server.address,
            data_dir=folder / "data",
            task_queue="replay-corpus",
            twilio_api_base=edge_url,
            edge_public_url=edge_url,
            transfer_number="+15550109000",
        )
    )
    await asyncio.to_thread(
        shared_knowledge_base(settings).ingest, [REPO_ROOT / "knowledge" / "solar_survey"]
    )
    await asyncio.to_thread(warm_up_router, settings)
    llm_settings = LLMSettings(
        base_url="http://unset",
        model="test-model",
        api_key="test-key",
        budget_s=30.0,
        first_token_timeout_ms=20_000,
        idle_timeout_ms=60_000,
        request_timeout_ms=120_000,
    )
    async with server, OpenAIProtocolServer() as llm_server:
        model = BamlLanguageModel.from_settings(
            llm_settings.model_copy(update={"base_url": llm_server.base_url})
        )
        assert model is not None
        client = await connect(settings)
        with ThreadPoolExecutor(max_workers=ACTIVITY_SLOTS) as executor:
            async with build_worker(client, settings, executor), serve(edge.app(), edge_port):
                yield Recorder(client, settings, edge, edge_url, llm_server, model)


async def record(out: Path, only: Sequence[str] = ()) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="slot-corpus-") as scratch:
        async with recorder(Path(scratch)) as running:
            for scenario in running.scenarios():
                if only and scenario.__name__ not in only:
                    continue
                print(f"recording {scenario.__name__}", file=sys.stderr)
                await scenario()
            decryptor = decryptor_of(running.client.data_converter)
            clear = [decryptor.decode_history(h) for h in running.histories]
            return save_histories(clear, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the history files")
    parser.add_argument(
        "--only", action="append", default=[], metavar="SCENARIO", help="record just these"
    )
    args = parser.parse_args(argv)
    for path in asyncio.run(record(args.out, args.only)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
