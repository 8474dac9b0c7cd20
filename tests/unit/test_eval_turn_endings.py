"""`slot eval calls`' turn endings: what ended each caller turn, and the reply's latency stages,
read from call timelines (synthetic here)."""

from __future__ import annotations

from typing import Any

from evals.calls import turn_endings


def heard(ended_by: str, **latency: float) -> dict[str, Any]:
    return {"at_ms": 0, "heard": "words", "ended_by": ended_by, "latency_ms": latency}


def agent(**latency: float) -> dict[str, Any]:
    return {"at_ms": 0, "agent": "ask_day", "tier": "script", "text": "...", "latency_ms": latency}


def test_each_turn_is_counted_under_what_ended_it_with_its_reply_latency() -> None:
    first_call = [
        agent(),  # the greeting answers no turn
        heard("script", endpointing=200, stt=210, script_judge=40),
        agent(decision=20, tts_first_audio=0, total=470),
        heard("max_silence", endpointing=1000, stt=0),
        agent(decision=60, total=1080),
    ]
    second_call = [
        heard("script", endpointing=200, stt=230, script_judge=30),
        agent(decision=30, total=490),
        heard("model", turn_model=240),
        {"at_ms": 0, "caller": "says", "text": "words"},
        heard("model", turn_model=250),  # the reply to the first was withdrawn: never sent
        agent(decision=25, total=480),
    ]
    endings = turn_endings([first_call, second_call])
    assert list(endings) == ["script", "max_silence", "model"], "most turns first"
    script = endings["script"]
    assert (script["turns"], script["share_pct"]) == (2, 50.0)
    assert (script["edge_p50_ms"], script["stages_p50_ms"]["stt"]) == (480.0, 220.0)
    assert script["stages_p50_ms"]["decision"] == 25.0
    assert endings["max_silence"]["edge_p90_ms"] == 1080.0
    assert endings["model"]["turns"] == 1 and endings["model"]["stages_p50_ms"]["turn_model"] == 250
