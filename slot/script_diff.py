"""How `slot replay script` shows its result: a readable diff per changed call, a summary line,
and the whole result as JSON (every call and turn, with `changed` flags) for tools.

The terminal shows the caller's words of changed turns: the operator asked to see exactly that,
on their own stored calls; nothing here goes to a log.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from slot.replay_script import CallReplay, NewDecision, ScriptReplay, TurnReplay
from slot.stored_calls import RecordedDecision


def render_text(result: ScriptReplay, out: TextIO) -> None:
    config = ", ".join(f"{k}={v}" for k, v in sorted(result.router_config.items()))
    print(
        f"playbook '{result.playbook.name}' on {result.source}; router config: "
        f"{config or 'as each call had it'}",
        file=out,
    )
    for note in result.notes:
        print(f"note: {note}", file=out)
    for script, count in sorted(result.skipped.items()):
        print(f"skipped {count} call{_s(count)} of script '{script}'", file=out)
    if result.skipped and not result.calls:
        print(
            f"no call was made with script '{result.playbook.name}' (the playbook's `name`, "
            "or its file name when it has none)",
            file=out,
        )
    for call in result.calls:
        if call.changed:
            print(file=out)
            _render_call(call, out)
    print(file=out)
    print(summary_line(result), file=out)


def summary_line(result: ScriptReplay) -> str:
    calls = result.calls
    changed = sum(c.changed for c in calls)
    outcomes = sum(c.outcome_changed for c in calls)
    line = f"{len(calls)} call{_s(len(calls))}, {changed} changed, outcomes changed {outcomes}"
    retiered = _retiered(result)
    if retiered:
        line += f" ({retiered} turn{_s(retiered)} kept their line but another tier decided)"
    return line


def _retiered(result: ScriptReplay) -> int:
    return sum(t.tier_changed and not t.changed for c in result.calls for t in c.turns)


def _render_call(call: CallReplay, out: TextIO) -> None:
    print(f"call {call.call.call_id} ({call.call.source})", file=out)
    for turn in call.turns:
        if turn.changed:
            _render_turn(turn, out)
    was, now = call.outcome_was or "none", call.outcome_now or "none"
    if call.outcome_changed:
        print(f"  outcome was {was} -> now {now}; {call.ended_now}", file=out)
    else:
        print(f"  outcome unchanged: {was}", file=out)


def _render_turn(turn: TurnReplay, out: TextIO) -> None:
    recorded = turn.turn
    where = f"after turn {recorded.seq}" if recorded.kind == "silence" else f"turn {recorded.seq}"
    print(f"  {where}: {recorded.said()}:", file=out)
    print(f"    was {_decision(turn.was)}", file=out)
    if turn.now is None:
        print("    now not reached: the call had already ended", file=out)
    else:
        print(f"    now {_decision(turn.now)}", file=out)


def _decision(decision: RecordedDecision | NewDecision | None) -> str:
    if decision is None:
        return "no answer"
    return f'{decision.state} "{decision.text}" ({decision.tier})'


def _s(count: int) -> str:
    return "" if count == 1 else "s"


# --- JSON ---------------------------------------------------------------------------------------


def render_json(result: ScriptReplay) -> str:
    calls = result.calls
    document = {
        "playbook": result.playbook.name,
        "source": result.source,
        "router_config": result.router_config,
        "notes": result.notes,
        "skipped": result.skipped,
        "summary": {
            "calls": len(calls),
            "changed": sum(c.changed for c in calls),
            "outcomes_changed": sum(c.outcome_changed for c in calls),
            "turns_decided_by_another_tier": _retiered(result),
        },
        "calls": [_call_json(c) for c in calls],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _call_json(call: CallReplay) -> dict[str, Any]:
    return {
        "call_id": call.call.call_id,
        "source": call.call.source,
        "changed": call.changed,
        "outcome": {"was": call.outcome_was, "now": call.outcome_now},
        "outcome_changed": call.outcome_changed,
        "ended_now": call.ended_now,
        "turns": [
            {
                "turn": t.number,
                "seq": t.turn.seq,
                "kind": t.turn.kind,
                "text": t.turn.text,
                "digits": t.turn.digits,
                "changed": t.changed,
                "tier_changed": t.tier_changed,
                "was": t.was.model_dump(exclude={"utterance_id"}) if t.was else None,
                "now": t.now.model_dump() if t.now else None,
            }
            for t in call.turns
        ],
    }
