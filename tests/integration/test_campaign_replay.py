"""Campaigns in flight survive the live-events change: a campaign history recorded with the
workflow before it (pause, resume, retries, a day-long follow-up, a do-not-call request) and one
recorded after it both replay on the current `CampaignWorkflow`.

The histories were recorded on the time-skipping test server with the real worker and the
campaign tests' stand-in for Twilio's side (`tests/integration/campaign_fixtures.py`), in clear
(no payload keys): the leads are made up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.call import CallWorkflow
from workflows.campaign import CampaignWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "replay" / "campaigns"


@pytest.mark.parametrize("name", ["pre_live_events", "with_live_events"])
async def test_campaign_history_replays_on_the_current_workflow(name: str) -> None:
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    replayer = Replayer(
        workflows=[CampaignWorkflow, CallWorkflow], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
