"""`slot bench`'s definition of platform overhead, and its samples crossing processes."""

from __future__ import annotations

import json
from dataclasses import asdict

from evals.bench_calls import CallSample
from evals.bench_turns import turn_sample


def test_overhead_is_what_turn_taking_waits_and_providers_leave_of_the_turn() -> None:
    stages = {
        "endpointing": 200.0,
        "turn_model": 0.0,
        "script_judge": 250.0,
        "stt": 30.0,
        "decision": 40.0,
        "tts_first_audio": 5.0,
        "send": 0.5,
        "total": 560.0,
    }
    turn = turn_sample(stages)
    assert turn is not None
    assert turn.overhead_ms == 75.0, "560 - 200 - 0 - 250 - 30 - 5: the Update, the send, gaps"
    assert turn.update_ms == 40.0
    assert turn_sample({**stages, "llm_first_token": 60.0}).overhead_ms == 15.0  # type: ignore[union-attr]
    assert turn_sample({"decision": 40.0}) is None, "an utterance answering no caller speech"


def test_a_call_sample_survives_the_trip_between_processes() -> None:
    turn = turn_sample({"endpointing": 200.0, "decision": 30.0, "total": 300.0})
    assert turn is not None
    sample = CallSample(
        call_id="call-CA1",
        started_at=10.0,
        ended_at=70.0,
        turns=[turn],
        update_ms=[30.0],
        jitter_ms=[0.1, 45.0],
        frames=40,
        late_frames=1,
        caller_turns=[(20.0, 300.0), (30.0, None)],
        transcribed_by=["deepgram"],
        streamed=True,
    )
    assert CallSample.from_json(json.loads(json.dumps(asdict(sample)))) == sample
    assert sample.lost_turns == [30.0]
