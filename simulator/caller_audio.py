"""Caller speech for reactive personas: named voices, cached on disk, pauses put in.

Synthesizing a persona's replies costs CPU the calls need, so every text is synthesized once per
voice, ahead of the call, and kept under `.slot-data/caller-audio/` (keyed by voice and text).
A reply with `...` pauses is its stretches of speech joined by `pause_ms` of silence.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import numpy as np

from media_edge.audio import FRAME_SAMPLES, mulaw_decode
from simulator.caller_voice import CallerVoice, EspeakCallerVoice, PiperCallerVoice
from simulator.persona import ReactivePersona, Reply
from simulator.protocol import FRAME_MS, SILENT_FRAME

log = logging.getLogger(__name__)

VoiceFactory = Callable[[str], CallerVoice]
_FALLBACK_VOICES: dict[str, Callable[[], CallerVoice]] = {
    "piper_slow": lambda: PiperCallerVoice(length_scale=1.25),
    "piper_fast": lambda: PiperCallerVoice(length_scale=0.9),
    "espeak_f3": lambda: EspeakCallerVoice("en-us+f3", 160),
    "espeak_m3": lambda: EspeakCallerVoice("en-us+m3", 170),
    "espeak_f5": lambda: EspeakCallerVoice("en-us+f5", 150),
}
"""Used only while simulator.caller_voice has no `named_caller_voice` (no phone band, no line
noise): the names stay the same, the cache key says which implementation spoke."""


def _named_factory() -> tuple[str, VoiceFactory]:
    """`simulator.caller_voice.named_caller_voice` when it exists, else the local fallback."""
    module = importlib.import_module("simulator.caller_voice")
    named: VoiceFactory | None = getattr(module, "named_caller_voice", None)
    if named is not None:
        return "named", named
    return "fallback", lambda name: _FALLBACK_VOICES[name]()


@cache
def named_voice(name: str) -> CallerVoice:
    """One shared instance per voice name (Piper takes a moment to load)."""
    return _named_factory()[1](name)


def voiced_span(frames: list[bytes], floor_db: float = -35.0) -> tuple[int, int]:
    """The first voiced frame and one past the last: frames within `floor_db` of the loudest
    frame count as speech, so line noise in the padding does not."""
    if not frames:
        return 0, 0
    pcm = mulaw_decode(b"".join(frames)).astype(np.float64)
    usable = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
    rms = np.sqrt(np.mean(pcm[:usable].reshape(-1, FRAME_SAMPLES) ** 2, axis=1) + 1e-9)
    if not len(rms):
        return 0, 0
    voiced = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    if not len(voiced):
        return 0, 0
    return int(voiced[0]), int(voiced[-1]) + 1


class CallerAudio:
    """Speech of named voices, synthesized once and cached on disk and in memory."""

    def __init__(self, folder: Path, voice: VoiceFactory | None = None) -> None:
        source, factory = ("custom", voice) if voice is not None else _named_factory()
        self.folder = folder
        self.source = source
        self._voice: VoiceFactory = factory if voice is not None else named_voice
        self._memory: dict[tuple[str, str], list[bytes]] = {}
        self._lock = threading.Lock()

    def _path(self, voice: str, text: str) -> Path:
        key = hashlib.sha256(f"{self.source}\n{voice}\n{text}".encode()).hexdigest()[:20]
        return self.folder / voice / f"{key}.ulaw"

    def speech(self, voice: str, text: str) -> list[bytes]:
        """`text` in `voice` as 20 ms mu-law frames (blocking: synthesizes on a cache miss)."""
        key = (voice, text)
        with self._lock:
            if key in self._memory:
                return self._memory[key]
        path = self._path(voice, text)
        if path.exists():
            data = path.read_bytes()
            spoken = [data[i : i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]
        else:
            spoken = self._voice(voice).synthesize(text)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".part")
            partial.write_bytes(b"".join(spoken))
            partial.replace(path)
        with self._lock:
            self._memory[key] = spoken
        return spoken

    def prepare(self, personas: Iterable[ReactivePersona]) -> int:
        """Synthesize (or load) every stretch of speech these personas may say; returns how many
        texts there are. Run before the calls, so no call waits on synthesis."""
        count = 0
        for persona in personas:
            for text in persona_texts(persona):
                self.speech(persona.voice, text)
                count += 1
        return count

    def reply_frames(self, voice: str, reply: Reply) -> list[bytes]:
        """The reply's `say`, its `...` pauses as `pause_ms` of silence."""
        pause = [SILENT_FRAME] * (reply.pause_ms // FRAME_MS)
        spoken: list[bytes] = []
        for index, segment in enumerate(reply.segments):
            if index:
                spoken.extend(pause)
            spoken.extend(self.speech(voice, segment))
        return spoken


def persona_texts(persona: ReactivePersona) -> list[str]:
    """Every text synthesized for a persona: backchannels and each stretch between pauses."""
    texts: list[str] = []
    for replies in persona.answers.values():
        for reply in replies:
            if reply.backchannel.strip():
                texts.append(reply.backchannel.strip())
            texts.extend(reply.segments)
    return list(dict.fromkeys(texts))
