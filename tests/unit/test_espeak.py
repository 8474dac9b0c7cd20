"""The one espeak-ng wrapper: the edge's fallback TTS, the simulated caller and the eval use it."""

from __future__ import annotations

import numpy as np

from media_edge.espeak import speak, speak_async


def test_speak_returns_audible_pcm_and_its_rate() -> None:
    audio, rate = speak("Hello there, this is a test.")
    assert rate > 8000
    assert audio.dtype == np.int16
    assert len(audio) > rate // 2
    assert int(np.abs(audio).max()) > 1000


def test_speaking_rate_changes_the_length() -> None:
    slow, _ = speak("One two three four five six.", words_per_minute=100)
    fast, _ = speak("One two three four five six.", words_per_minute=300)
    assert len(slow) > 1.5 * len(fast)


async def test_async_and_blocking_give_the_same_audio() -> None:
    blocking = speak("Good morning.", voice="en-gb", pitch=40)
    awaited = await speak_async("Good morning.", voice="en-gb", pitch=40)
    assert blocking[1] == awaited[1]
    assert np.array_equal(blocking[0], awaited[0])
