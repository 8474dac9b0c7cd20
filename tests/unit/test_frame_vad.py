"""Silero run over a whole call: its recurrent state must not go deaf to a late answer."""

from __future__ import annotations

from pathlib import Path

from media_edge.audio import FRAME_SAMPLES, mulaw_decode
from media_edge.listener import FrameVAD
from media_edge.vad import SileroVAD

LATE_ANSWER = Path(__file__).parent / "data" / "late_answer_caller_side.ulaw"
"""18 s of the caller's side of a dev eval call (a simulated caller, Piper voice), from 50 s in:
the answer "Roughly two hundred and fifty bucks." at 8-10 s, then "Tuesdays work." at 15-17 s,
which the edge never heard: run on from the start of the call Silero scored it 0.09, from the
start of this excerpt 0.17, with no reset after a quiet second."""
THRESHOLD = 0.4
"""The edge's VAD threshold (`Settings.vad_threshold`)."""


def probabilities(vad: FrameVAD, audio: bytes) -> list[float]:
    pcm = mulaw_decode(audio)
    return [vad.push(pcm[i : i + FRAME_SAMPLES]) for i in range(0, len(pcm), FRAME_SAMPLES)]


def test_an_answer_after_a_quiet_second_is_heard_however_long_the_vad_has_run() -> None:
    vad = FrameVAD(SileroVAD())
    scores = probabilities(vad, LATE_ANSWER.read_bytes())
    frames_per_s = 1000 // 20
    assert max(scores[8 * frames_per_s : 10 * frames_per_s]) >= THRESHOLD
    assert max(scores[15 * frames_per_s : 17 * frames_per_s]) >= THRESHOLD, "Tuesdays work."
    assert vad.resets > 0
