"""Endpointing policies on short synthetic VAD sequences whose right answer is known."""

from __future__ import annotations

import numpy as np

from media_edge.audio import FRAME_MS, FRAME_SAMPLES
from media_edge.endpointing import (
    EndpointDecision,
    EndpointPolicy,
    FixedSilencePolicy,
    SmartTurnConfig,
    SmartTurnPolicy,
)
from media_edge.turns import EndOfTurn, Endpointer, EndpointerConfig

FRAME_S = 0.02


def timeline(*runs: tuple[bool, float]) -> list[tuple[float, bool]]:
    """(speech, seconds) runs as 20 ms frames: [(frame end time, speech), ...]."""
    frames: list[tuple[float, bool]] = []
    for speech, seconds in runs:
        for _ in range(round(seconds / FRAME_S)):
            frames.append((round((len(frames) + 1) * FRAME_S, 6), speech))
    return frames


def first_end(
    policy: EndpointPolicy, frames: list[tuple[float, bool]]
) -> tuple[float, EndpointDecision] | None:
    for now, speech in frames:
        decision = policy.push(now, speech)
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
    assert first_end(FixedSilencePolicy(200), timeline((False, 2.0))) is None
    assert first_end(SmartTurnPolicy(), timeline((False, 2.0))) is None


def test_smart_turn_asks_once_per_pause_and_ends_on_a_complete_verdict() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.7, min_pause_ms=200, max_silence_ms=1500))
    requests = []
    ended_at = None
    for now, speech in timeline((True, 1.0), (False, 2.0)):
        decision = policy.push(now, speech)
        if decision.request_verdict is not None:
            requests.append((now, decision.request_verdict))
            policy.set_verdict(decision.request_verdict, 0.95)
        if decision.end_of_turn:
            assert decision.reason == "model"
            ended_at = now
            break
    assert requests == [(1.2, 1)]
    assert ended_at == 1.22


def test_smart_turn_incomplete_waits_for_max_silence() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.7, min_pause_ms=200, max_silence_ms=1500))
    requests = 0
    for now, speech in timeline((True, 1.0), (False, 3.0)):
        decision = policy.push(now, speech)
        if decision.request_verdict is not None:
            requests += 1
            policy.set_verdict(decision.request_verdict, 0.2)
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
    for now, speech in frames:
        decision = policy.push(now, speech)
        if decision.request_verdict is not None:
            asked.append(decision.request_verdict)
            policy.set_verdict(decision.request_verdict, verdicts[decision.request_verdict])
        if decision.end_of_turn:
            result = (now, decision.reason)
            break
    assert asked == [1, 2]
    assert result == (3.02, "model")


def test_a_late_verdict_for_a_pause_that_is_over_is_ignored() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.5, min_pause_ms=200, max_silence_ms=1500))
    frames = timeline((True, 1.0), (False, 0.3), (True, 0.5), (False, 0.1))
    pending = None
    for now, speech in frames:
        decision = policy.push(now, speech)
        if decision.request_verdict is not None:
            pending = decision.request_verdict
        assert not decision.end_of_turn
    assert pending == 1
    policy.set_verdict(pending, 0.99)
    assert not policy.verdict_ends_turn(pending)
    assert not policy.push(1.92, False).end_of_turn


def test_verdict_can_end_the_turn_between_frames() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.5, min_pause_ms=100, max_silence_ms=1500))
    pause = None
    for now, speech in timeline((True, 0.5), (False, 0.2)):
        decision = policy.push(now, speech)
        pause = decision.request_verdict or pause
    assert pause is not None
    policy.set_verdict(pause, 0.3)
    assert not policy.verdict_ends_turn(pause)
    policy.set_verdict(pause, 0.8)
    assert policy.verdict_ends_turn(pause)


def test_reset_starts_a_fresh_turn() -> None:
    policy = SmartTurnPolicy(SmartTurnConfig(min_pause_ms=100, max_silence_ms=400))
    for now, speech in timeline((True, 0.5), (False, 0.2)):
        policy.push(now, speech)
    policy.reset()
    assert first_end(policy, [(1.0 + i * FRAME_S, False) for i in range(50)]) is None


def test_spine_hook_fixed_silence() -> None:
    policy = FixedSilencePolicy(600)
    assert not policy.is_end_of_turn(580, 1000)
    assert policy.is_end_of_turn(600, 1000)


def test_smart_turn_plugs_into_the_spine_endpointer() -> None:
    """`Endpointer(policy=SmartTurnPolicy)`: requests come out of `take_request`, and a complete
    verdict ends the segment at the next silent frame."""
    policy = SmartTurnPolicy(SmartTurnConfig(threshold=0.5, min_pause_ms=200, max_silence_ms=2000))
    endpointer = Endpointer(EndpointerConfig(), policy=policy)
    frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    probabilities = [0.9] * 40 + [0.0] * 60
    requests: list[tuple[int, int]] = []
    end: EndOfTurn | None = None
    for i, probability in enumerate(probabilities):
        now = i * FRAME_MS / 1000
        events = endpointer.push(frame, probability, now, agent_speaking=False)
        end = next((e for e in events if isinstance(e, EndOfTurn)), None)
        if end is not None:
            break
        request = policy.take_request()
        if request is not None:
            requests.append((i, request))
            policy.set_verdict(request, 0.9)
    assert end is not None
    assert len(requests) == 1
    request_frame, _pause = requests[0]
    assert request_frame < i <= request_frame + 1
    assert end.reason == "silence"
