"""Both sides of a simulated call on one timeline, written as a stereo WAV.

The phone simulator feeds one caller frame and the agent frame played in the same 20 ms tick, so
the two channels line up exactly as a listener on the line would hear them (left = caller,
right = agent as played out, including where a `clear` cut it off).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from media_edge.audio import FRAME_SAMPLES, PHONE_RATE, mulaw_decode, silence_frame


class CallRecorder:
    def __init__(self) -> None:
        self._caller = bytearray()
        self._agent = bytearray()

    def add_frame(self, caller: bytes, agent: bytes | None) -> None:
        """Append one tick; `agent=None` means nothing was playing."""
        self._caller += caller
        self._agent += agent if agent is not None else silence_frame()

    @property
    def duration_ms(self) -> int:
        return len(self._caller) * 1000 // PHONE_RATE

    @property
    def frame_count(self) -> int:
        return len(self._caller) // FRAME_SAMPLES

    def stereo_pcm(self) -> np.ndarray[tuple[int, int], np.dtype[np.int16]]:
        left = mulaw_decode(bytes(self._caller))
        right = mulaw_decode(bytes(self._agent))
        return np.stack([left, right], axis=1)

    def write(self, path: Path) -> Path:
        """Write a 16-bit 8 kHz stereo WAV (blocking: call it from a thread)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(PHONE_RATE)
            wav.writeframes(self.stereo_pcm().astype("<i2").tobytes())
        return path
