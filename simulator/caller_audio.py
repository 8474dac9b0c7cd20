"""Caller speech for reactive personas: named voices, cached on disk, pauses put in.

Synthesizing a persona's replies costs CPU the calls need, so each stretch of speech is
synthesized once per voice, ahead of the calls, and kept under `.slot-data/caller-audio/`
(clean phone-band PCM, keyed by voice and text). A reply is its stretches joined by `pause_ms`
of silence at each `...`, then put through the phone line (seeded line noise over the whole
reply, pauses included, and mu-law), as `simulator.caller_voice` does for a single line.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from media_edge.audio import FRAME_SAMPLES, PHONE_RATE, frames, mulaw_decode
from media_edge.providers import PCM
from simulator.caller_voice import named_caller_voice, phone_line, text_seed
from simulator.persona import ReactivePersona, Reply

CACHE_VERSION = "1"
"""Part of every cache key: bump it when the voices change, so old audio is not reused."""


class CleanVoice(Protocol):
    """What caller audio needs of a voice: clean speech, and how noisy its line is."""

    def speech(self, text: str) -> PCM: ...

    @property
    def noise_rms(self) -> float: ...


class _Named:
    def __init__(self, name: str) -> None:
        self._voice = named_caller_voice(name)

    def speech(self, text: str) -> PCM:
        return self._voice.speech(text)

    @property
    def noise_rms(self) -> float:
        return self._voice.spec.noise_rms


def voiced_span(spoken: list[bytes], floor_db: float = -35.0) -> tuple[int, int]:
    """The first voiced frame and one past the last: frames within `floor_db` of the loudest
    one count as speech, so line noise in pauses and padding does not."""
    if not spoken:
        return 0, 0
    pcm = mulaw_decode(b"".join(spoken)).astype(np.float64)
    usable = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
    if not usable:
        return 0, 0
    rms = np.sqrt(np.mean(pcm[:usable].reshape(-1, FRAME_SAMPLES) ** 2, axis=1) + 1e-9)
    voiced = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    if not len(voiced):
        return 0, 0
    return int(voiced[0]), int(voiced[-1]) + 1


class CallerAudio:
    """Replies of named voices as phone frames: synthesized once, cached on disk and in memory."""

    def __init__(self, folder: Path, voice: Callable[[str], CleanVoice] = _Named) -> None:
        self.folder = folder
        self._voice_of = voice
        self._voices: dict[str, CleanVoice] = {}
        self._frames: dict[tuple[str, str, int], list[bytes]] = {}
        self._lock = threading.Lock()

    def _voice(self, name: str) -> CleanVoice:
        with self._lock:
            if name not in self._voices:
                self._voices[name] = self._voice_of(name)
            return self._voices[name]

    def _path(self, voice: str, text: str) -> Path:
        key = hashlib.sha256(f"{CACHE_VERSION}\n{voice}\n{text}".encode()).hexdigest()[:24]
        return self.folder / voice / f"{key}.pcm"

    def clean_speech(self, voice: str, text: str) -> PCM:
        """`text` in `voice`, phone band, no line noise (from the disk cache when there)."""
        path = self._path(voice, text)
        if path.exists():
            return np.frombuffer(path.read_bytes(), dtype=np.int16)
        pcm = np.asarray(self._voice(voice).speech(text), dtype=np.int16)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(pcm.tobytes())
        partial.replace(path)
        return pcm

    def said(self, voice: str, text: str, pause_ms: int = 0) -> list[bytes]:
        """`text` as 20 ms mu-law frames; each `...` in it is `pause_ms` of (noisy) silence."""
        key = (voice, text, pause_ms)
        with self._lock:
            cached = self._frames.get(key)
        if cached is not None:
            return cached
        gap = np.zeros(pause_ms * PHONE_RATE // 1000, dtype=np.int16)
        parts: list[PCM] = []
        for index, segment in enumerate(Reply(say=text).segments):
            if index:
                parts.append(gap)
            parts.append(self.clean_speech(voice, segment))
        pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        rng = np.random.default_rng(text_seed(voice, text))
        spoken = frames(phone_line(pcm, rng, self._voice(voice).noise_rms))
        with self._lock:
            self._frames[key] = spoken
        return spoken

    def reply_frames(self, voice: str, reply: Reply) -> list[bytes]:
        """What the caller says for `reply` (its `say`, pauses included)."""
        return self.said(voice, reply.say, reply.pause_ms)

    def prepare(self, personas: Iterable[ReactivePersona]) -> int:
        """Synthesize (or load) everything these personas may say; returns how many clips.
        Run before the calls, so no call waits on synthesis."""
        count = 0
        for persona in personas:
            for replies in persona.answers.values():
                for reply in replies:
                    if reply.backchannel.strip():
                        self.said(persona.voice, reply.backchannel.strip())
                        count += 1
                    if reply.resume_on_agent_ms is not None:
                        for part in reply.resumed:
                            self.said(persona.voice, part, reply.pause_ms)
                        count += 2
                    elif reply.say.strip():
                        self.reply_frames(persona.voice, reply)
                        count += 1
        return count
