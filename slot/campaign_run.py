"""`slot campaign run leads.csv --script solar_survey`: a campaign on the dev stack, watched.

Starts (or joins) the dev stack, starts a `CampaignWorkflow` with the CSV's leads, shows each
dial, result and the counters as they change, and ends with a summary: the counters and each
lead's calls as the call records hold them.

The CSV's columns: `lead_id`, `phone`, optional `name`, `time_zone` (IANA, default
America/New_York) and `simulator`: who answers that number when the calls go to the phone
simulator (a persona YAML path, or `no-answer`, `busy`, `failed`, `voicemail`); that column is
ignored when dialling a real Twilio. A bad row is reported with its line number and left out.

Calling windows are the leads' own local hours (default 08:00-21:00, Monday to Friday). A lead
outside its window waits for it; the run says so before it starts, with when each opens, and
`--hours`/`--days` widen the window for a trial run (the leads are simulated).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.records import CallRecord, make_engine
from slot.devstack import Stack, StackError
from slot.playbooks import PlaybookError, load_playbook
from slot.settings import REPO_ROOT, Settings
from slot.temporal import connect
from slot.watch import watch_campaign
from workflows.call import CallWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.campaign_plan import (
    CallingWindow,
    CampaignInput,
    CampaignLead,
    CampaignProgress,
    Retries,
    attempt_result,
)

LINE_BEHAVIOURS = ("no-answer", "busy", "failed", "voicemail")
STACK_START_S = 180.0
"""The edge loads its speech models and synthesizes the playbooks' lines before it is ready."""
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


@dataclass
class LeadList:
    leads: list[CampaignLead] = field(default_factory=list)
    simulator: dict[str, str] = field(default_factory=dict)
    """phone -> persona path or line behaviour, for the phone simulator."""
    errors: list[str] = field(default_factory=list)


def read_leads(path: Path) -> LeadList:
    """The CSV's good rows as leads; each bad row as `line N: why`."""
    result = LeadList()
    seen: set[str] = set()
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = {"lead_id", "phone"} - set(reader.fieldnames or [])
        if missing:
            result.errors.append(f"{path}: no column {', '.join(sorted(missing))}")
            return result
        for row in reader:
            line = reader.line_num
            fields = {k: (v or "").strip() for k, v in row.items() if k and k != "simulator"}
            fields = {k: v for k, v in fields.items() if v}
            try:
                lead = CampaignLead.model_validate(fields)
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "row"
                result.errors.append(f"line {line}: {where}: {first['msg']}")
                continue
            if lead.lead_id in seen:
                result.errors.append(f"line {line}: lead_id {lead.lead_id!r} appears twice")
                continue
            seen.add(lead.lead_id)
            result.leads.append(lead)
            who = (row.get("simulator") or "").strip()
            if who:
                result.simulator[lead.phone] = who
    return result


def parse_window(hours: str, days: str) -> CallingWindow:
    """`08:00-21:00` (`24:00` is the end of the day) and `mon-fri`, `all` or `mon,wed,sat`."""
    start_text, _, end_text = hours.partition("-")
    end = time.max if end_text.strip() == "24:00" else time.fromisoformat(end_text.strip())
    if days == "all":
        weekdays = list(range(7))
    elif "-" in days:
        first, _, last = days.partition("-")
        weekdays = list(range(DAYS[first.strip()[:3]], DAYS[last.strip()[:3]] + 1))
    else:
        weekdays = sorted({DAYS[day.strip()[:3]] for day in days.split(",")})
    return CallingWindow(start=time.fromisoformat(start_text.strip()), end=end, weekdays=weekdays)


async def register_callers(settings: Settings, simulator: dict[str, str]) -> None:
    """Tell the phone simulator who answers each number."""
    async with httpx.AsyncClient(base_url=settings.twilio_base, timeout=10.0) as http:
        for phone, who in simulator.items():
            if who in LINE_BEHAVIOURS:
                response = await http.post("/sim/lines", json={"phone": phone, "answer": who})
            else:
                persona = Path(who) if Path(who).is_absolute() else REPO_ROOT / who
                body = {"phone": phone, "persona_path": str(persona)}
                response = await http.post("/sim/personas", json=body)
            if response.status_code != 200:
                raise StackError(f"simulator refused {who!r} for {phone}: {response.text}")


def summary_lines(
    campaign_id: str,
    progress: CampaignProgress,
    records: list[CallRecord],
    results: dict[str, str],
    leads: list[CampaignLead],
) -> list[str]:
    """The counters, then each lead's calls in order: the record's outcome when answered, else
    why not (`results`, from the call workflows: busy, voicemail, no_answer...)."""
    lines = [
        f"leads {progress.leads}, done {progress.leads_done}, calls {progress.dialled}, "
        f"answered {progress.answered}",
        f"booked {progress.booked}, call backs {progress.call_backs}, do-not-call "
        f"{progress.do_not_call}, other answered "
        f"{progress.answered - progress.booked - progress.call_backs - progress.do_not_call}",
        f"no answer {progress.no_answer}, busy {progress.busy}, voicemail {progress.voicemail}, "
        f"failed {progress.failed}, skipped (on the do-not-call list) {progress.skipped_dnc}",
        "",
    ]
    for lead in leads:
        calls = sorted(
            (r for r in records if lead_of(campaign_id, r.call_id) == lead.lead_id),
            key=lambda r: r.call_id,
        )
        said = ", ".join(r.outcome or results.get(r.call_id) or r.status for r in calls)
        lines.append(f"  {lead.lead_id:<12} {lead.time_zone:<30} {said or 'not called'}")
    return lines


def lead_of(campaign_id: str, call_id: str) -> str:
    """The lead a campaign's call was for: call ids are `<campaign>-<lead>-<attempt>`."""
    return call_id.removeprefix(f"{campaign_id}-").rsplit("-", 1)[0]


def campaign_records(database_url: str, campaign_id: str) -> list[CallRecord]:
    """The call records of a campaign's calls (their ids start with the campaign id)."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            prefix = f"{campaign_id}-"
            query = select(CallRecord).where(col(CallRecord.call_id).startswith(prefix))
            return list(session.exec(query))
    finally:
        engine.dispose()


async def call_results(client: Client, call_ids: list[str]) -> dict[str, str]:
    """How each finished call ended, as the campaign counted it (busy, voicemail, booked...)."""
    results = {}
    for call_id in call_ids:
        handle = client.get_workflow_handle_for(CallWorkflow.run, call_id)
        try:
            snapshot = await handle.result()
        except Exception:
            continue
        results[call_id] = attempt_result(snapshot).value
    return results


async def run_campaign(
    settings: Settings,
    leads_csv: Path,
    *,
    script: str,
    campaign_id: str | None,
    window: CallingWindow,
    attempts: int,
    retry_after_s: float,
    follow_ups: int,
    calls_per_second: float,
    concurrent: int,
) -> int:
    console = Console(highlight=False)
    try:
        leads = read_leads(leads_csv)
    except OSError as error:
        console.print(f"[red]error:[/] cannot read {leads_csv}: {error.strerror}")
        return 1
    for problem in leads.errors:
        console.print(f"[yellow]{escape(problem)}[/] (left out)")
    if not leads.leads:
        console.print(f"[red]error:[/] {leads_csv} has no lead to call")
        return 1
    try:
        playbook = load_playbook(script, settings.playbooks_dir)
    except PlaybookError as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    campaign_id = campaign_id or f"campaign-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    campaign = CampaignInput(
        campaign_id=campaign_id,
        script_name=script,
        playbook=playbook,
        leads=leads.leads,
        window=window,
        calls_per_second=calls_per_second,
        max_concurrent_calls=concurrent,
        retries=Retries(
            max_attempts=attempts, first_delay_s=retry_after_s, max_delay_s=retry_after_s
        ),
        max_follow_ups=follow_ups,
        timers=settings.call_timers(),
    )
    _show_windows(console, campaign)
    stack = Stack(settings)
    with console.status("starting (or joining) the dev stack..."):
        try:
            await stack.start(timeout_s=STACK_START_S)
        except StackError as error:
            console.print(f"[red]error:[/] {error}")
            return 1
    settings = stack.settings
    try:
        if settings.twilio_api_base is None:
            await register_callers(settings, leads.simulator)
        client = await connect(settings)
        await client.start_workflow(
            CampaignWorkflow.run, campaign, id=campaign_id, task_queue=settings.task_queue
        )
        console.print(
            f"campaign {campaign_id}: {len(leads.leads)} leads, script {script} "
            f"({settings.workflow_url(campaign_id)})"
        )
        progress = await watch_campaign(settings, campaign_id, console, client)
        records = campaign_records(settings.database_url, campaign_id)
        results = await call_results(client, [record.call_id for record in records])
    except StackError as error:
        console.print(f"[red]error:[/] {error}")
        return 1
    finally:
        with console.status("stopping what this run started..."):
            await stack.stop()
    console.print()
    console.print(f"[bold]summary of {campaign_id}[/]")
    for line in summary_lines(campaign_id, progress, records, results, leads.leads):
        console.print(escape(line))
    return 0


def _show_windows(console: Console, campaign: CampaignInput) -> None:
    now = datetime.now(UTC)
    waiting = []
    for lead in campaign.leads:
        opens = campaign.window.next_open(now, lead.time_zone)
        if opens > now:
            waiting.append((opens, lead))
    window = campaign.window
    console.print(
        f"calling window {window.start:%H:%M}-{window.end:%H:%M} local, days "
        f"{','.join(name for name, day in DAYS.items() if day in window.weekdays)}: "
        f"{len(campaign.leads) - len(waiting)} of {len(campaign.leads)} leads may be called now"
    )
    for opens, lead in sorted(waiting, key=lambda item: item[0]):
        console.print(
            f"  [yellow]{lead.lead_id}[/] waits for its window ({lead.time_zone}): opens "
            f"{opens:%a %H:%M} UTC"
        )
