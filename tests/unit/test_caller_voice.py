"""Named caller voices: reproducible, distinct from each other, phone-line audio."""

from __future__ import annotations

import numpy as np
import pytest

from media_edge.audio import FRAME_SAMPLES, mulaw_decode
from simulator.caller_voice import (
    CALLER_VOICES,
    named_caller_voice,
    phone_band,
)

TEXT = "Yeah, we've owned the place for about ten years now."


def test_the_named_voices_are_the_ones_the_simulator_uses() -> None:
    assert set(CALLER_VOICES) == {"piper_slow", "piper_fast", "espeak_f3", "espeak_m3", "espeak_f5"}


@pytest.mark.parametrize("name", list(CALLER_VOICES))
def test_same_voice_and_text_give_identical_frames(name: str) -> None:
    first = named_caller_voice(name).synthesize(TEXT)
    again = named_caller_voice(name).synthesize(TEXT)
    assert first == again
    assert len(first) > 25
    assert all(len(frame) == FRAME_SAMPLES for frame in first)


def test_different_voices_sound_different() -> None:
    audio = {name: b"".join(named_caller_voice(name).synthesize(TEXT)) for name in CALLER_VOICES}
    assert len(set(audio.values())) == len(CALLER_VOICES)
    lengths = {name: len(a) for name, a in audio.items()}
    assert lengths["piper_slow"] > lengths["piper_fast"]


def test_the_seed_only_changes_the_line_noise() -> None:
    voice = named_caller_voice("espeak_m3")
    one, two = voice.synthesize(TEXT, seed=1), voice.synthesize(TEXT, seed=2)
    assert one != two
    assert voice.synthesize(TEXT, seed=1) == one
    difference = mulaw_decode(b"".join(one)).astype(np.int32) - mulaw_decode(b"".join(two))
    assert np.sqrt(np.mean(difference.astype(np.float64) ** 2)) < 300


def test_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown caller voice 'joe'.*piper_slow"):
        named_caller_voice("joe")


def test_phone_band_removes_what_a_phone_line_does_not_carry() -> None:
    t = np.arange(8000) / 8000
    tones = {hz: (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16) for hz in (100, 1000, 3800)}
    kept = {hz: float(np.abs(phone_band(tone)).max()) for hz, tone in tones.items()}
    assert kept[1000] > 7500
    assert kept[100] < 100
    assert kept[3800] < 100
