"""`slot eval turns`: a reproducible labelled set, split honestly, and the script-aware hook."""

from __future__ import annotations

import hashlib

import numpy as np

from evals.persona_lines import expected_answers, sample_playbook, text_key
from evals.turns import (
    COUGH,
    PAUSES,
    TURN_KINDS,
    Clip,
    _new_clip,
    dataset_clips,
    judge_by_script,
    render_clip,
    run_clip,
    script_aware_policy,
    turn_outcome,
)
from media_edge.audio import FRAME_SAMPLES
from media_edge.endpoint_policies import SmartTurnConfig
from media_edge.endpointer import Endpointer, EndpointerConfig
from media_edge.providers import PCM


def _hash(clip: Clip) -> str:
    return hashlib.sha256(render_clip(clip)).hexdigest()


def test_rebuilding_gives_the_same_audio() -> None:
    clips = [
        _new_clip("dev", "hesitation", "piper_slow", ["Um,", "maybe Thursday."], "ask_day"),
        _new_clip("dev", "incomplete", "espeak_f3", ["Our bill is,", "one forty."], "qualify"),
        _new_clip("heldout", "backchannel", "piper_fast", [COUGH], None),
    ]
    first = [_hash(c) for c in clips]
    again = [
        _new_clip(c.split, c.kind, c.voice, list(c.parts), c.state) for c in clips
    ]  # built afresh: pauses and noise come from the clip's id, not from a shared generator
    assert [c.pauses for c in again] == [c.pauses for c in clips]
    assert [_hash(c) for c in again] == first
    assert len(set(first)) == 3


def test_the_speech_spans_follow_the_drawn_pauses() -> None:
    clip = _new_clip("dev", "incomplete", "espeak_m3", ["We pay about,", "two hundred."], "qualify")
    render_clip(clip)
    (_, first_end), (second_start, _) = clip.speech
    assert abs(second_start - first_end - clip.pauses[0]) < 0.001


def test_no_text_is_in_both_splits_and_every_kind_is_there() -> None:
    clips = dataset_clips()
    texts = {split: {text_key(c.text) for c in clips if c.split == split and c.text != COUGH}
             for split in ("dev", "heldout")}  # fmt: skip
    assert texts["dev"] and texts["heldout"]
    assert not texts["dev"] & texts["heldout"]
    for split in ("dev", "heldout"):
        kinds = {c.kind for c in clips if c.split == split}
        assert set(TURN_KINDS) | {"backchannel", "interruption"} <= kinds
    assert len({c.id for c in clips}) == len(clips)
    assert "joe" not in {c.voice for c in clips}


def test_pauses_come_from_the_stated_distribution() -> None:
    rng = np.random.default_rng(7)
    draws = np.array([PAUSES.draw(rng) for _ in range(4000)])
    assert abs(float(np.median(draws)) - PAUSES.median_s) < 0.03
    assert draws.min() >= PAUSES.min_s and draws.max() <= PAUSES.max_s
    assert 0.3 < float(np.mean(draws < 0.5)) < 0.6  # a 500 ms cut catches some, not all


def _paused_turn(text: str, state: str) -> tuple[Clip, float | None]:
    """A turn that stops at 1.6 s; the turn model always says "not finished"."""
    clip = Clip("t", "dev", "complete", "espeak_f3", text, [text], state, speech=[(0.6, 1.6)])
    probabilities = [0.0] * 30 + [0.9] * 50 + [0.0] * 150
    audio: PCM = np.zeros(len(probabilities) * FRAME_SAMPLES, dtype=np.int16)
    expect = expected_answers(sample_playbook())[state]
    run = run_clip(
        clip,
        audio,
        probabilities,
        Endpointer(EndpointerConfig(), script_aware_policy(SmartTurnConfig(0.95, 200, 1500))),
        verdict=lambda _clip, _frame, _audio: 0.1,
        model_latency_s=0.05,
        stt_latency_s=0.1,
        transcript=lambda _clip, _frame, _audio: text,
        on_transcript=judge_by_script(expect),
    )
    return clip, turn_outcome(clip, run).delay_ms


def test_a_complete_answer_ends_the_turn_at_once_an_unfinished_one_waits() -> None:
    _, complete = _paused_turn("Thursday works for me.", "ask_day")
    _, unfinished = _paused_turn("My bill is around", "qualify")
    assert complete is not None and complete < 400
    assert unfinished is not None and unfinished >= 1500
