"""The real Smart Turn v3.2 model on speech synthesized here (Piper joe, no sampling noise)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import pytest
from piper import SynthesisConfig

from media_edge.audio import PHONE_RATE, resample
from media_edge.providers import PCM
from media_edge.smart_turn import SmartTurnModel, TurnDetector, prepare_input
from media_edge.tts import load_piper_voice


@lru_cache(maxsize=8)
def phone_speech(text: str) -> PCM:
    """`text` at 8 kHz, trimmed to the speech itself (deterministic: no sampling noise)."""
    voice = load_piper_voice()
    chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    audio = np.concatenate([c.audio_int16_array for c in chunks])
    pcm = resample(audio, chunks[0].sample_rate, PHONE_RATE)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 200)
    return pcm[loud[0] : loud[-1] + 1]


def at_a_pause(speech: PCM) -> PCM:
    """What the edge hands the model: 200 ms pre-roll, the speech, 200 ms of silence."""
    silence = np.zeros(PHONE_RATE // 5, dtype=np.int16)
    return np.concatenate([silence, speech, silence])


@pytest.mark.parametrize(
    ("sentence", "cut"),
    [("Can you tell me how much the panels cost?", 0.4), ("My name is Sarah Johnson.", 0.7)],
)
def test_complete_sentence_scores_higher_than_the_same_sentence_cut(
    sentence: str, cut: float
) -> None:
    model = SmartTurnModel.shared()
    speech = phone_speech(sentence)
    complete = model.predict(at_a_pause(speech))
    cut_short = model.predict(at_a_pause(speech[: int(len(speech) * cut)]))
    assert 0.0 <= cut_short < complete <= 1.0


def test_input_is_the_last_eight_seconds_at_16_khz_padded_in_front() -> None:
    features = prepare_input(at_a_pause(phone_speech("My name is Sarah Johnson.")))
    assert features.shape == (1, 80, 800)
    assert features.dtype == np.float32
    assert np.allclose(features[0, :, 0], features[0, :, 10])
    long = np.tile(at_a_pause(phone_speech("My name is Sarah Johnson.")), 8)
    assert len(long) > 8 * PHONE_RATE
    assert prepare_input(long).shape == (1, 80, 800)


def test_empty_audio_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty mono PCM"):
        SmartTurnModel.shared().predict(np.zeros(0, dtype=np.int16))


async def test_detector_runs_the_model_once_per_pause() -> None:
    audio = at_a_pause(phone_speech("My name is Sarah Johnson."))
    with ThreadPoolExecutor(max_workers=2) as executor:
        detector = TurnDetector(SmartTurnModel.shared(), executor)
        first, second = await asyncio.gather(
            detector.probability(("call-1", 1), audio), detector.probability(("call-1", 1), audio)
        )
        again = await detector.probability(("call-1", 1), audio)
        assert first == second == again
        assert detector.inferences == 1
        assert detector.known(("call-1", 1)) == first
        assert detector.known(("call-1", 2)) is None
        await detector.probability(("call-1", 2), audio[: len(audio) // 2])
        assert detector.inferences == 2
