"""The VAD pool: a VAD handed to the next call has forgotten the last one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from media_edge.audio import PHONE_RATE, resample
from media_edge.espeak import speak
from media_edge.providers import PCM
from media_edge.vad import SileroVAD, VADPool


def windows(pcm: PCM, size: int) -> list[PCM]:
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


def probabilities(vad: SileroVAD, pcm: PCM) -> list[float]:
    return [vad.speech_probability(window) for window in windows(pcm, vad.window_samples)]


def speech(text: str) -> PCM:
    pcm, rate = speak(text)
    return resample(pcm, rate, PHONE_RATE)


async def test_a_pooled_vad_scores_the_next_call_as_a_fresh_one_would() -> None:
    first_call = speech("Yes, this is Jordan, and I own my home.")
    next_call = speech("Tuesday morning works for me.")
    expected = probabilities(SileroVAD(), next_call)
    assert max(expected) > 0.5, "the next call's audio must hold speech"

    with ThreadPoolExecutor(1) as executor:
        pool = VADPool(executor)
        vad = await pool.acquire()
        probabilities(vad, first_call)
        pool.release(vad)
        again = await pool.acquire()

    assert again is vad, "the pool hands the loaded VAD to the next call"
    assert pool.loaded == 1
    np.testing.assert_allclose(probabilities(again, next_call), expected, atol=1e-6)


async def test_calls_at_once_each_get_a_vad_of_their_own() -> None:
    with ThreadPoolExecutor(1) as executor:
        pool = VADPool(executor)
        first, second = await pool.acquire(), await pool.acquire()
    assert first is not second
    assert pool.loaded == 2
