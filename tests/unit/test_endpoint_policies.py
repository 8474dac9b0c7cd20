"""Endpointing policies on short synthetic frame sequences whose right answer is known."""

from __future__ import annotations

import numpy as np

from media_edge.audio import FRAME_MS, FRAME_SAMPLES
from media_edge.endpoint_policies import (
    EndpointDecision,
    EndpointPolicy,
    FixedSilencePolicy,
    SmartTurnConfig,
    SmartTurnPolicy,
)
from media_edge.endpointer import EndOfTurn, Endpointer, EndpointerConfig, TurnModelWanted

FRAME_S = FRAME_MS / 1000


def timeline(*runs: tuple[bool, float]) -> list[tuple[float, int, int]]:
    """(speech, seconds) runs as the frames an `Endpointer` hands its policy once the caller
    has spoken: [(frame end time, pause number, silence so far in ms), ...]."""
    frames: list[tuple[float, int, int]] = []
    index, pause, silence_ms, spoken = 0, 0, 0, False
    for speech, seconds in runs:
        for _ in range(round(seconds / FRAME_S)):
            index += 1
            if speech:
                spoken, silence_ms = True, 0
            elif spoken:
                pause += silence_ms == 0
                silence_ms += FRAME_MS
            if spoken:
                frames.append((round(index * FRAME_S, 6), pause, silence_ms))
    return frames


def first_end(
    policy: EndpointPolicy, frames: list[tuple[float, int, int]]
) -> tuple[float, EndpointDecision] | None:
    for now, pause, silence_ms in frames:
        decision = policy.push(pause, silence_ms)
        if decision.end_of_turn:
            return now, decision
    return None


def test_fixed_silence_ends_after_the_silence() -> None:
    result = first_end(FixedSilencePolicy(500), timeline((False, 0.2), (True, 1.0), (False, 2.0)))
    assert result is not None
    at, decision = result
    assert decision.reason == "silence"
    assert abs(at - (1.2 + 0.5)) < 1e-6


def test_fixed_silence_waits_through_a_shorter_pause() -> None:
    frames = timeline((True, 0.6), (False, 0.4), (True, 0.6), (False, 1.0))
    result = first_end(FixedSilencePolicy(500), frames)
    assert result is not None
    assert abs(result[0] - (1.6 + 0.5)) < 1e-6


def test_no_turn_without_speech() -> None:
    frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    for policy in (FixedSilencePolicy(200), SmartTurnPolicy()):
        endpointer = Endpointer(EndpointerConfig(), policy)
        events = [e for i in range(100) for e in endpointer.push(frame, 0.0, i * FRAME_S, False)]
        assert events == [] and not endpointer.in_segment
    assert timeline((False, 2.0)) == []


def test_smart_turn_asks_once_per_pause_and_ends_on_a_complete_verdict() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.7, min_pause_ms=200, max_silence_ms=1500))
    requests = []
    ended_at = None
    for now, pause, silence_ms in timeline((True, 1.0), (False, 2.0)):
        decision = policy.push(pause, silence_ms)
        assert not decision.end_of_turn
        if decision.request_verdict is not None:
            requests.append((now, decision.request_verdict))
            decision = policy.set_verdict(decision.request_verdict, 0.95)
        if decision.end_of_turn:
            assert decision.reason == "model"
            ended_at = now
            break
    assert requests == [(1.2, 1)]
    assert ended_at == 1.2


def test_smart_turn_incomplete_waits_for_max_silence() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.7, min_pause_ms=200, max_silence_ms=1500))
    requests = 0
    for now, pause, silence_ms in timeline((True, 1.0), (False, 3.0)):
        decision = policy.push(pause, silence_ms)
        if decision.request_verdict is not None:
            requests += 1
            assert not policy.set_verdict(decision.request_verdict, 0.2).end_of_turn
        if decision.end_of_turn:
            assert decision.reason == "max_silence"
            assert abs(now - 2.5) < 1e-6
            break
    else:
        raise AssertionError("the turn never ended")
    assert requests == 1


def test_smart_turn_keeps_listening_through_an_incomplete_pause() -> None:
    """'My account number is ... 4 4 7': incomplete at the first pause, complete at the end."""
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.5, min_pause_ms=200, max_silence_ms=1500))
    frames = timeline((True, 1.0), (False, 1.0), (True, 0.8), (False, 2.0))
    verdicts = {1: 0.1, 2: 0.9}
    asked = []
    result = None
    for now, pause, silence_ms in frames:
        decision = policy.push(pause, silence_ms)
        if decision.request_verdict is not None:
            asked.append(decision.request_verdict)
            decision = policy.set_verdict(
                decision.request_verdict, verdicts[decision.request_verdict]
            )
        if decision.end_of_turn:
            result = (now, decision.reason)
            break
    assert asked == [1, 2]
    assert result == (3.0, "model")


def test_a_late_verdict_for_a_pause_that_is_over_is_ignored() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.5, min_pause_ms=200, max_silence_ms=1500))
    frames = timeline((True, 1.0), (False, 0.3), (True, 0.5), (False, 0.1))
    pending = None
    for _now, pause, silence_ms in frames:
        decision = policy.push(pause, silence_ms)
        if decision.request_verdict is not None:
            pending = decision.request_verdict
        assert not decision.end_of_turn
    assert pending == 1
    assert not policy.set_verdict(pending, 0.99).end_of_turn
    assert not policy.push(2, 120).end_of_turn


def test_verdict_can_end_the_turn_between_frames() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.5, min_pause_ms=100, max_silence_ms=1500))
    pause = None
    for _now, pause_no, silence_ms in timeline((True, 0.5), (False, 0.2)):
        decision = policy.push(pause_no, silence_ms)
        pause = decision.request_verdict or pause
    assert pause is not None
    assert not policy.set_verdict(pause, 0.3).end_of_turn
    decision = policy.set_verdict(pause, 0.8)
    assert decision.end_of_turn and decision.reason == "model"


def test_reset_starts_a_fresh_turn() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(min_pause_ms=100, max_silence_ms=400))
    requested = None
    for _now, pause, silence_ms in timeline((True, 0.5), (False, 0.2)):
        requested = policy.push(pause, silence_ms).request_verdict or requested
    assert requested == 1
    policy.reset()
    assert not policy.set_verdict(1, 0.99).end_of_turn
    assert policy.push(2, 100).request_verdict == 2


def test_fixed_silence_policy_frame_by_frame() -> None:
    policy = FixedSilencePolicy(600)
    assert not policy.push(1, 580).end_of_turn
    decision = policy.push(1, 600)
    assert decision.end_of_turn and decision.reason == "silence"
    assert not policy.set_verdict(1, 1.0).end_of_turn


def _smart_endpointer(threshold: float = 0.5) -> tuple[Endpointer, np.ndarray]:
    policy = SmartTurnPolicy(
        SmartTurnConfig(threshold=threshold, min_pause_ms=200, max_silence_ms=2000)
    )
    return Endpointer(EndpointerConfig(), policy=policy), np.zeros(FRAME_SAMPLES, dtype=np.int16)


def test_smart_turn_drives_the_endpointer() -> None:
    """`Endpointer(policy=SmartTurnPolicy)`: the request comes out as a `TurnModelWanted` event
    with the segment's audio, and a complete verdict ends the segment at once."""
    endpointer, frame = _smart_endpointer()
    probabilities = [0.9] * 40 + [0.0] * 60
    requests: list[tuple[int, TurnModelWanted]] = []
    end: EndOfTurn | None = None
    for i, probability in enumerate(probabilities):
        now = i * FRAME_S
        events = endpointer.push(frame, probability, now, agent_speaking=False)
        assert not any(isinstance(e, EndOfTurn) for e in events)
        for event in events:
            if isinstance(event, TurnModelWanted):
                requests.append((i, event))
                assert len(event.audio) == len(endpointer.audio())
                ended = endpointer.set_verdict(event.pause, 0.9, now)
                end = next(e for e in ended if isinstance(e, EndOfTurn))
        if end is not None:
            break
    assert end is not None
    assert len(requests) == 1
    request_frame, wanted = requests[0]
    assert request_frame == i == 49  # 10 silent frames = the 200 ms minimum pause
    assert wanted.pause == 1
    assert end.reason == "model" and end.endpoint_at == i * FRAME_S
    assert not endpointer.in_segment


def test_an_incomplete_verdict_waits_for_max_silence_in_the_endpointer() -> None:
    endpointer, frame = _smart_endpointer(threshold=0.95)
    ends: list[tuple[int, EndOfTurn]] = []
    for i, probability in enumerate([0.9] * 40 + [0.0] * 120):
        for event in endpointer.push(frame, probability, i * FRAME_S, agent_speaking=False):
            if isinstance(event, TurnModelWanted):
                assert endpointer.set_verdict(event.pause, 0.5, i * FRAME_S) == []
            elif isinstance(event, EndOfTurn):
                ends.append((i, event))
    ((i_end, end),) = ends
    assert i_end == 39 + 100 and end.reason == "max_silence"
    assert endpointer.set_verdict(1, 0.99, 4.0) == []
