"""Pure audio plumbing for the phone path: G.711 mu-law, resampling, 20 ms framing.

Everything here is numpy and stateless apart from the small carry-over buffers, so it is cheap
to test and safe to run in an executor thread.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from media_edge.providers import PCM

PHONE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = PHONE_RATE * FRAME_MS // 1000
"""160 samples = 160 mu-law bytes = one Twilio media frame."""

MULAW_SILENCE = 0xFF
"""Mu-law code of a zero sample."""

_BIAS = 0x84
_CLIP = 32635


def _build_encode_table() -> npt.NDArray[np.uint8]:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(samples < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes = ~(sign | (exponent << 4) | mantissa) & 0xFF
    table: npt.NDArray[np.uint8] = codes.astype(np.uint8)
    return table


def _build_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


_ENCODE = _build_encode_table()
_DECODE = _build_decode_table()


def mulaw_encode(pcm: PCM) -> bytes:
    """16-bit PCM to G.711 mu-law bytes (one byte a sample)."""
    index = pcm.astype(np.int32) + 32768
    return bytes(_ENCODE[index].tobytes())


def mulaw_decode(data: bytes) -> PCM:
    """G.711 mu-law bytes to 16-bit PCM."""
    codes = np.frombuffer(data, dtype=np.uint8)
    return _DECODE[codes]


def silence_frame() -> bytes:
    """20 ms of mu-law silence."""
    return bytes([MULAW_SILENCE]) * FRAME_SAMPLES


def to_float(pcm: PCM) -> npt.NDArray[np.float32]:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def to_int16(samples: npt.NDArray[np.floating]) -> PCM:
    scaled = np.clip(np.round(samples * 32768.0), -32768, 32767)
    return scaled.astype(np.int16)


@lru_cache(maxsize=16)
def _polyphase_kernel(
    src: int, dst: int, zeros: int, rolloff: float
) -> tuple[npt.NDArray[np.float64], int, int, int]:
    """Kaiser-windowed sinc weights for every fractional phase of a rational rate change."""
    g = math.gcd(src, dst)
    up, down = dst // g, src // g
    cutoff = rolloff * min(src, dst) / 2.0 / src
    half = int(np.ceil(zeros / (2.0 * cutoff)))
    beta = 8.6
    offsets = np.arange(-half + 1, half + 1)
    frac = (np.arange(up) * down % up) / up
    dist = frac[:, None] - offsets[None, :]
    ratio = np.clip(dist / half, -1.0, 1.0)
    window = np.i0(beta * np.sqrt(1.0 - ratio**2)) / np.i0(beta)
    weights = 2.0 * cutoff * np.sinc(2.0 * cutoff * dist) * window
    return weights, half, up, down


def resample(
    pcm: PCM, src_rate: int, dst_rate: int, *, zeros: int = 16, rolloff: float = 0.92
) -> PCM:
    """Band-limited resampling with a Kaiser-windowed sinc low-pass (polyphase).

    The low-pass cut-off sits just below the lower Nyquist frequency, so TTS audio going down
    to the phone band does not fold its high frequencies back as aliasing.
    """
    if src_rate == dst_rate or pcm.size == 0:
        return pcm.copy()
    weights, half, up, down = _polyphase_kernel(src_rate, dst_rate, zeros, rolloff)
    x = pcm.astype(np.float64)
    n_out = len(x) * up // down
    offsets = np.arange(-half + 1, half + 1)
    padded = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
    out = np.empty(n_out, dtype=np.float64)
    block = 4096
    for start in range(0, n_out, block):
        n = np.arange(start, min(start + block, n_out))
        base = n * down // up
        phase = n % up
        idx = base[:, None] + offsets[None, :] + half
        out[start : start + len(n)] = np.einsum("ij,ij->i", weights[phase], padded[idx])
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def pcm_to_phone(pcm: PCM, sample_rate: int) -> bytes:
    """Any-rate PCM to 8 kHz mu-law, ready to frame."""
    return mulaw_encode(resample(pcm, sample_rate, PHONE_RATE))


ONSET_LEVEL = 300
"""A sample this loud (about -40 dBFS) is the start of speech, not the synthesizer's lead-in."""
ONSET_KEEP_MS = 10


def trim_lead_in(mulaw: bytes) -> bytes:
    """Phone audio without the near-silence before its first loud sample (less `ONSET_KEEP_MS`):
    Piper starts each phrase with 40-60 ms of it, dead air between the caller's last word and
    the agent's first that a caller hears as latency."""
    loud = np.flatnonzero(np.abs(mulaw_decode(mulaw).astype(np.int32)) >= ONSET_LEVEL)
    if not len(loud):
        return mulaw
    start = max(0, int(loud[0]) - ONSET_KEEP_MS * PHONE_RATE // 1000)
    return mulaw[start:]


class Framer:
    """Cuts a byte stream into fixed-size frames, carrying the remainder to the next push."""

    def __init__(self, frame_bytes: int = FRAME_SAMPLES) -> None:
        self.frame_bytes = frame_bytes
        self._carry = b""

    def push(self, data: bytes) -> list[bytes]:
        data = self._carry + data
        cut = len(data) - len(data) % self.frame_bytes
        self._carry = data[cut:]
        return [data[i : i + self.frame_bytes] for i in range(0, cut, self.frame_bytes)]

    def flush(self, pad: int = MULAW_SILENCE) -> list[bytes]:
        """The last partial frame, padded (mu-law silence by default)."""
        if not self._carry:
            return []
        frame = self._carry + bytes([pad]) * (self.frame_bytes - len(self._carry))
        self._carry = b""
        return [frame]


def frames(data: bytes, frame_bytes: int = FRAME_SAMPLES) -> list[bytes]:
    """All of `data` as whole frames, the last one padded with mu-law silence."""
    framer = Framer(frame_bytes)
    return framer.push(data) + framer.flush()


class SampleWindows:
    """Regroups PCM frames into windows of another size (20 ms frames into VAD windows)."""

    def __init__(self, window_samples: int) -> None:
        self.window_samples = window_samples
        self._carry: PCM = np.zeros(0, dtype=np.int16)

    def push(self, pcm: PCM) -> list[PCM]:
        data = np.concatenate([self._carry, pcm]) if self._carry.size else pcm
        n = len(data) // self.window_samples
        windows = [
            data[i * self.window_samples : (i + 1) * self.window_samples].copy() for i in range(n)
        ]
        self._carry = data[n * self.window_samples :].copy()
        return windows
