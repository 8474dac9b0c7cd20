"""What a call shows in the Temporal Web UI: its static summary and its current details.

Pure text built from the call's input and state, so the workflow can render it on every change
and the client can set the summary when it starts a call.
"""

from __future__ import annotations

from collections.abc import Sequence

from workflows.messages import CallInput, CallStatus, Direction, Handoff, TranscriptEntry
from workflows.script import Outcome

DETAILS_TRANSCRIPT_LINES = 30
ROUTER_STAGES = ("classify", "retrieve", "decision", "llm_first_token", "llm_total", "total")


def call_summary(call_input: CallInput) -> str:
    """One line for the Web UI's workflow list, e.g. `Inbound call from +1555… · solar_survey`."""
    lead = call_input.lead
    who = " ".join(part for part in (lead.name, lead.phone) if part) or "unknown number"
    if call_input.direction is Direction.INBOUND:
        text = f"Inbound call from {who}"
    else:
        text = f"Outbound call to {who}"
    if call_input.follow_up_of:
        text += f" (follow-up of {call_input.follow_up_of})"
    return f"{text} · {call_input.script_name}"


def current_details(
    status: CallStatus,
    state: str,
    outcome: Outcome | None,
    transcript: Sequence[TranscriptEntry],
    *,
    end_reason: str = "",
    follow_up_call_id: str | None = None,
    earlier_lines: int = 0,
    handoff: Handoff | None = None,
) -> str:
    """The live view of a call: status line, the last transcript lines with decision notes
    (`earlier_lines` more came before `transcript`, and are in the call record)."""
    shown_outcome = outcome.value if outcome else "—"
    lines = [f"**{status.value}** · state `{state}` · outcome {shown_outcome}", ""]
    shown = transcript[-DETAILS_TRANSCRIPT_LINES:]
    hidden = earlier_lines + len(transcript) - len(shown)
    if hidden:
        lines.append(f"_… {hidden} earlier lines_")
    for entry in shown:
        if entry.speaker == "agent":
            said = entry.text
            if entry.interrupted:
                said = f"{entry.heard_text or ''} — _(interrupted)_"
            lines.append(f"- **Agent:** {said}")
            if entry.tier is not None:
                lines.append(f"  - _{decision_note(entry)}_")
        else:
            lines.append(f"- **Caller:** {entry.text}")
    if end_reason:
        lines += ["", f"_Ended: {end_reason}_"]
    if follow_up_call_id:
        lines += ["", f"Follow-up call: `{follow_up_call_id}`"]
    if handoff is not None:
        where = f"to {handoff.to}" if handoff.transferred else f"failed: {handoff.error}"
        lines += ["", f"Transfer {where}", f"> {handoff.summary}"]
    return "\n".join(lines)


def decision_note(entry: TranscriptEntry) -> str:
    """Tier, reason, router latency and citations of an agent line, for the Web UI."""
    parts = [f"{entry.tier}: {entry.reason or ''}".strip()]
    latency = entry.latency_ms
    timed = [f"{k} {latency[k]:.0f} ms" for k in ROUTER_STAGES if k in latency]
    if timed:
        parts.append(" · ".join(timed))
    if entry.citations:
        parts.append("cites " + ", ".join(entry.citations))
    return " — ".join(parts)
