"""espeak-ng through its command line: the one wrapper the edge, the simulator and the evals use.

espeak-ng is the fallback TTS (fast, robotic, a Debian package, no model to load) and a second,
clearly different voice for simulated callers and the turn-taking dataset. It writes a WAV to
stdout; this module builds the command, runs it (blocking or async) and reads the PCM back.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import wave

import numpy as np

from media_edge.providers import PCM

TIMEOUT_S = 60.0


def espeak_binary() -> str:
    """The espeak-ng executable, or a `RuntimeError` that says how to install it."""
    binary = shutil.which("espeak-ng") or shutil.which("espeak")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    return binary


def _command(text: str, voice: str, words_per_minute: int | None, pitch: int | None) -> list[str]:
    command = [espeak_binary(), "-v", voice]
    if words_per_minute is not None:
        command += ["-s", str(words_per_minute)]
    if pitch is not None:
        command += ["-p", str(pitch)]
    return [*command, "--stdout", text]


def _pcm(wav_bytes: bytes) -> tuple[PCM, int]:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        rate = wav.getframerate()
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    return audio, rate


def speak(
    text: str, voice: str = "en-us", words_per_minute: int | None = None, pitch: int | None = None
) -> tuple[PCM, int]:
    """`text` as 16-bit PCM and its sample rate (blocking: run it off the event loop)."""
    done = subprocess.run(
        _command(text, voice, words_per_minute, pitch), capture_output=True, timeout=TIMEOUT_S
    )
    if done.returncode != 0:
        raise RuntimeError(f"espeak-ng failed ({done.returncode}): {done.stderr.decode()[:200]}")
    return _pcm(done.stdout)


async def speak_async(
    text: str, voice: str = "en-us", words_per_minute: int | None = None, pitch: int | None = None
) -> tuple[PCM, int]:
    """`speak` as a subprocess the event loop awaits."""
    proc = await asyncio.create_subprocess_exec(
        *_command(text, voice, words_per_minute, pitch),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {err.decode()[:200]}")
    return _pcm(out)
