"""CampaignWorkflow under Temporal's time-skipping test server, with the real worker (child
CallWorkflows, records, DNC list in SQLite) and a stand-in for Twilio's side of the line.

Windows, backoff and day-long follow-ups run with their real durations, skipped.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle

from activities.campaign import DoNotCallList
from slot.playbooks import load_playbook
from slot.settings import Settings
from tests.integration.campaign_fixtures import CampaignRig, Dial, campaign_rig, store_leads
from workflows.call import CallWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.campaign_plan import (
    CampaignInput,
    CampaignLead,
    CampaignProgress,
    CancelCampaign,
    PauseCampaign,
)
from workflows.messages import CallStatus

pytestmark = pytest.mark.timeout(300)

ALWAYS_OPEN = {"start": "00:00", "end": "23:59:59", "weekdays": list(range(7))}
"""For a test whose calls must start before time is skipped (the clock runs at its real pace
until the test waits on a result)."""


def _input(campaign_id: str, leads: list[CampaignLead], **options: object) -> CampaignInput:
    playbook = load_playbook("solar_survey", Settings().playbooks_dir)
    return CampaignInput.model_validate(
        {
            "campaign_id": campaign_id,
            "script_name": "solar_survey",
            "playbook": playbook,
            "leads": leads,
            **options,
        }
    )


async def _start(
    rig: CampaignRig, campaign: CampaignInput
) -> WorkflowHandle[CampaignWorkflow, CampaignProgress]:
    return await rig.client.start_workflow(
        CampaignWorkflow.run, campaign, id=campaign.campaign_id, task_queue=rig.task_queue
    )


def _in_window(dial: Dial, zone: str) -> bool:
    local = dial.at.astimezone(ZoneInfo(zone))
    return local.weekday() < 5 and 8 <= local.hour < 21


async def test_windows_retries_follow_ups_and_pace(tmp_path: Path) -> None:
    leads = [
        CampaignLead(lead_id="ny", phone="+12125550101", time_zone="America/New_York"),
        CampaignLead(lead_id="la", phone="+13105550102", time_zone="America/Los_Angeles"),
        CampaignLead(lead_id="tokyo", phone="+81355500103", time_zone="Asia/Tokyo"),
    ]
    async with campaign_rig(tmp_path) as rig:
        rig.line.behaviours = {
            "+12125550101": ["busy", "no-answer", "call me back", "stop"],
            "+13105550102": ["voicemail", "voicemail", "voicemail"],
            "+81355500103": ["failed", "call me back", "no-answer"],
        }
        handle = await _start(rig, _input("camp-windows", leads, max_follow_ups=1))
        progress = await handle.result()
        dials = rig.line.dials
    zones = {lead.phone: lead.time_zone for lead in leads}
    assert all(_in_window(dial, zones[dial.to]) for dial in dials), dials
    ny = rig.line.dialled("+12125550101")
    assert [d.behaviour for d in ny] == ["busy", "no-answer", "call me back", "stop"]
    assert ny[1].at - ny[0].at >= timedelta(hours=1)
    assert ny[2].at - ny[1].at >= timedelta(hours=2)
    assert ny[3].at - ny[2].at >= timedelta(hours=24)
    assert ny[3].call_id.endswith("-f1a1"), ny
    la = rig.line.dialled("+13105550102")
    assert len(la) == 3, "three attempts at most, then the lead is done"
    tokyo = rig.line.dialled("+81355500103")
    assert [d.behaviour for d in tokyo][:2] == ["failed", "call me back"]
    assert progress.leads_done == 3 and progress.in_flight == 0
    assert progress.voicemail == 3 and progress.busy == 1 and progress.failed == 1
    assert progress.call_backs == 2 and progress.do_not_call == 1
    assert progress.follow_ups_scheduled == 2
    assert rig.limiter is not None and len(rig.limiter.slots) == len(dials)
    slots = sorted(rig.limiter.slots)
    assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(slots))
    starts = sorted(dial.at for dial in dials)
    assert all(start >= slot for start, slot in zip(starts, slots, strict=True)), "none early"


async def test_dnc_never_dialled_even_by_a_scheduled_retry(tmp_path: Path) -> None:
    listed = CampaignLead(lead_id="listed", phone="+12125550111")
    busy_first = CampaignLead(lead_id="busy", phone="+12125550112")
    same_person = CampaignLead(lead_id="again", phone="+1 (212) 555-0112")
    async with campaign_rig(tmp_path) as rig:
        DoNotCallList(rig.settings.database_url).add("+12125550111", "asked by phone")
        rig.line.behaviours = {"+12125550112": ["busy"], "+1 (212) 555-0112": ["stop"]}
        campaign = _input("camp-dnc", [listed, busy_first, same_person], max_concurrent_calls=1)
        progress = await (await _start(rig, campaign)).result()
        dnc = DoNotCallList(rig.settings.database_url)
        assert dnc.contains("+12125550112"), "the caller who said stop is on the list"
    assert rig.line.dialled("+12125550111") == []
    assert [d.behaviour for d in rig.line.dialled("+12125550112")] == ["busy"]
    assert progress.retries_scheduled == 1 and progress.skipped_dnc == 2


async def test_pause_and_resume(tmp_path: Path) -> None:
    leads = [CampaignLead(lead_id=f"l{i}", phone=f"+1212555020{i}") for i in range(3)]
    async with campaign_rig(tmp_path) as rig:
        campaign = _input("camp-pause", leads, retries={"max_attempts": 1})
        handle = await rig.client.start_workflow(
            CampaignWorkflow.run,
            campaign,
            id=campaign.campaign_id,
            task_queue=rig.task_queue,
            start_signal="pause",
            start_signal_args=[PauseCampaign()],
        )
        paused = await handle.query(CampaignWorkflow.progress)
        assert paused.paused and paused.dialled == 0 and paused.waiting == 3
        await handle.signal(CampaignWorkflow.resume)
        progress = await handle.result()
    assert progress.dialled == 3 and progress.no_answer == 3 and not progress.paused


async def test_cancel_ends_calls_in_flight_politely(tmp_path: Path) -> None:
    """Two people on the line when the campaign is cancelled: each hears the campaign's goodbye
    and the call ends; the two leads still waiting are never dialled."""
    leads = [CampaignLead(lead_id=f"c{i}", phone=f"+1212555030{i}") for i in range(4)]
    async with campaign_rig(tmp_path) as rig:
        rig.line.behaviours = {"+12125550300": ["hold"], "+12125550301": ["hold"]}
        campaign = _input(
            "camp-cancel",
            leads,
            max_concurrent_calls=2,
            timers={"reprompt_after_s": 3600},
            window=ALWAYS_OPEN,
        )
        handle = await _start(rig, campaign)
        await rig.line.wait_for(lambda: len(rig.line.held) == 2)
        cancel = CancelCampaign(goodbye="Sorry, we have to stop here. Goodbye!")
        await handle.signal(CampaignWorkflow.cancel, cancel)
        progress = await handle.result()
        calls = [
            await rig.client.get_workflow_handle_for(CallWorkflow.run, call_id).result()
            for call_id in rig.line.held
        ]
        said = dict(rig.line.said)
    assert [dial.to for dial in rig.line.dials] == ["+12125550300", "+12125550301"]
    for call in calls:
        assert call.status is CallStatus.ENDED and call.end_reason == "agent ended the call"
        assert call.transcript[-1].speaker == "agent"
        assert call.transcript[-1].text == cancel.goodbye
        assert said[call.call_id] == [cancel.goodbye]
    assert progress.dialled == 2 and progress.leads_done == 4 and progress.in_flight == 0
    assert progress.waiting == 0 and progress.cancelling


async def test_a_thousand_leads_continue_as_new(tmp_path: Path) -> None:
    """Stored leads, as the API starts a campaign: read in pages, the cursor carried across
    continue-as-new, every lead dialled once."""
    leads = [CampaignLead(lead_id=f"l{i}", phone=f"+1646555{i:04d}") for i in range(1000)]
    async with campaign_rig(tmp_path) as rig:
        store_leads(rig.settings, "camp-1000", leads)
        campaign = _input(
            "camp-1000",
            [],
            stored={"count": len(leads), "page_size": 90},  # pages straddle the runs
            retries={"max_attempts": 1},
            max_concurrent_calls=20,
            dials_per_run=250,
            calls_per_second=1000,  # pace is the first test's; here each dial's timer costs time
        )
        handle = await _start(rig, campaign)
        progress = await handle.result()
        sizes = await run_sizes(rig, handle)
    assert progress.runs >= 4 and progress.leads_done == 1000
    assert progress.dialled == 1000 and progress.no_answer == 1000
    assert sorted(dial.to for dial in rig.line.dials) == sorted(lead.phone for lead in leads)
    assert len({dial.to for dial in rig.line.dials}) == 1000, "no lead dialled twice"
    assert len(sizes) >= 4, sizes
    # a run of 250 calls holds about 3,300 events (some 13 a call: the child's start and end,
    # its dial slot and DNC check, its live events); one run of all 1,000 would hold ~13,000
    assert max(sizes) < 4000, f"each run holds only its own 250 calls: {sizes}"
    assert sorted(sizes)[-4] > 3 * 250, f"four runs held about 250 calls each: {sizes}"


async def run_sizes(
    rig: CampaignRig, handle: WorkflowHandle[CampaignWorkflow, CampaignProgress]
) -> list[int]:
    """How many events each run of the campaign's history holds, first run to last."""
    sizes: list[int] = []
    run_id = handle.first_execution_run_id
    while run_id:
        history = await rig.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        sizes.append(len(history.events))
        last = history.events[-1]
        attributes = last.workflow_execution_continued_as_new_event_attributes
        run_id = (
            attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    return sizes


async def test_twenty_thousand_stored_leads_start_with_a_small_input(tmp_path: Path) -> None:
    """Inline, 20,000 leads are past Temporal's 2 MB payload cap; stored, the campaign's input
    is a cursor, and it dials its first pages in upload order (then is cancelled: finishing
    20,000 dials is the 1,000-lead test's continue-as-new, twenty times over)."""
    leads = [
        CampaignLead(lead_id=f"b{i}", name=f"Alexandra Morgan-Leigh {i:05d}", phone=f"+1917{i:07d}")
        for i in range(20_000)
    ]
    async with campaign_rig(tmp_path) as rig:
        [inline] = await rig.client.data_converter.encode([_input("camp-20k", leads)])
        assert inline.ByteSize() > 2 * 1024 * 1024, "inline, this campaign could not start"
        store_leads(rig.settings, "camp-20k", leads)
        campaign = _input(
            "camp-20k",
            [],
            stored={"count": len(leads), "page_size": 50},
            retries={"max_attempts": 1},
            max_concurrent_calls=10,
            window=ALWAYS_OPEN,
            calls_per_second=1000,
        )
        handle = await _start(rig, campaign)
        await rig.line.wait_for(lambda: len(rig.line.dials) >= 60)  # into the second page
        started = await handle.query(CampaignWorkflow.progress)
        await handle.signal(CampaignWorkflow.cancel, CancelCampaign())
        progress = await handle.result()
        history = await handle.fetch_history()
    first = history.events[0].workflow_execution_started_event_attributes
    size = sum(payload.ByteSize() for payload in first.input.payloads)
    assert size < 64 * 1024, f"the started event's input is {size} bytes"
    assert started.leads == 20_000
    accounted = started.leads_done + started.in_flight + started.waiting
    assert accounted in (19_999, 20_000), "all but the lead being dialled at that moment"
    dialled = [dial.to for dial in rig.line.dials]
    assert sorted(dialled) == [lead.phone for lead in leads[: len(dialled)]], "in upload order"
    assert progress.leads == 20_000 and progress.leads_done == 20_000
    assert progress.dialled == len(dialled) and progress.waiting == 0
