"""Audio whose words a test can read back exactly: each word is a tone burst of its own pitch.

The Deepgram double is given `tone_recognizer`, which reads the bursts in the audio it actually
received, so a word the edge never streamed (or failed to resend) is missing from its results.
"""

from __future__ import annotations

import numpy as np

from media_edge.audio import FRAME_SAMPLES, PHONE_RATE, mulaw_decode, mulaw_encode

PITCHES = {"yes": 440.0, "we": 620.0, "own": 830.0, "it": 1040.0, "sure": 1250.0}


def tone(word: str, ms: int = 200) -> bytes:
    t = np.arange(PHONE_RATE * ms // 1000) / PHONE_RATE
    pcm = (6000 * np.sin(2 * np.pi * PITCHES[word] * t)).astype(np.int16)
    return mulaw_encode(pcm)


def silence(ms: int) -> bytes:
    return b"\xff" * (PHONE_RATE * ms // 1000)


def said(*words: str, gap_ms: int = 60) -> bytes:
    """The words as bursts with short gaps (a gap shorter than any pause the edge acts on)."""
    return silence(gap_ms).join(tone(w) for w in words)


def frames(audio: bytes) -> list[bytes]:
    return [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio), FRAME_SAMPLES)]


async def tone_recognizer(audio: bytes) -> str:
    """The words in `audio`: one per run of loud 20 ms frames, named by its pitch."""
    pcm = mulaw_decode(audio).astype(np.float64)
    usable = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
    chunks = pcm[:usable].reshape(-1, FRAME_SAMPLES)
    loud = np.sqrt(np.mean(chunks**2, axis=1)) > 1000
    words: list[str] = []
    run: list[np.ndarray] = []
    for chunk, on in zip(chunks, [*loud], strict=True):
        if on:
            run.append(chunk)
            continue
        if run:
            words.append(_name(np.concatenate(run)))
            run = []
    if run:
        words.append(_name(np.concatenate(run)))
    return " ".join(words)


def _name(burst: np.ndarray) -> str:
    spectrum = np.abs(np.fft.rfft(burst))
    peak = float(np.fft.rfftfreq(len(burst), 1 / PHONE_RATE)[int(np.argmax(spectrum))])
    return min(PITCHES, key=lambda word: abs(PITCHES[word] - peak))
