"""G.711 mu-law, band-limited resampling and framing, on synthetic signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from media_edge.audio import (
    FRAME_SAMPLES,
    MULAW_SILENCE,
    PHONE_RATE,
    Framer,
    SampleWindows,
    frames,
    mulaw_decode,
    mulaw_encode,
    pcm_to_phone,
    resample,
    silence_frame,
    trim_lead_in,
)


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_mulaw_round_trip_error_is_within_the_quantisation_step() -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    decoded = mulaw_decode(mulaw_encode(pcm)).astype(np.int64)
    error = np.abs(decoded - pcm.astype(np.int64))
    clipped = np.abs(pcm.astype(np.int64)) > 32124
    magnitude = np.abs(pcm.astype(np.int64))[~clipped]
    # mu-law steps double per segment: the error stays below ~1/16 of the magnitude plus 8.
    assert np.all(error[~clipped] <= magnitude / 16 + 8)
    assert np.all(decoded[clipped] == np.sign(pcm[clipped]) * 32124)


def test_mulaw_is_one_byte_a_sample_and_zero_is_silence() -> None:
    assert mulaw_encode(np.zeros(160, dtype=np.int16)) == silence_frame()
    assert silence_frame() == bytes([MULAW_SILENCE]) * FRAME_SAMPLES
    assert mulaw_decode(silence_frame()).tolist() == [0] * FRAME_SAMPLES


def test_mulaw_decode_is_inverse_of_encode_on_codes() -> None:
    codes = bytes(range(256))
    reencoded = mulaw_encode(mulaw_decode(codes))
    # 0x7F and 0xFF both decode to 0 and encode back to 0xFF.
    assert all(a == b or {a, b} == {0x7F, 0xFF} for a, b in zip(codes, reencoded, strict=True))


def test_tone_sounds_the_same_through_the_phone_codec() -> None:
    pcm = tone(440, 8000)
    decoded = mulaw_decode(mulaw_encode(pcm))
    noise = rms(decoded.astype(np.int64) - pcm.astype(np.int64))
    assert 20 * np.log10(rms(pcm) / noise) > 30  # G.711 gives ~38 dB SNR


@pytest.mark.parametrize(
    ("src", "dst", "freq"), [(22050, 8000, 1000), (8000, 16000, 440), (16000, 8000, 3000)]
)
def test_resampling_preserves_a_tone(src: int, dst: int, freq: float) -> None:
    out = resample(tone(freq, src), src, dst)
    assert len(out) == dst
    assert dominant_frequency(out, dst) == pytest.approx(freq, abs=2)
    assert rms(out[100:-100]) == pytest.approx(10000 / np.sqrt(2), rel=0.05)


def test_downsampling_rejects_what_would_alias() -> None:
    # 6 kHz at 22.05 kHz would fold to 2 kHz at 8 kHz without the low-pass.
    out = resample(tone(6000, 22050), 22050, 8000)
    assert rms(out[100:-100]) < 10000 / np.sqrt(2) / 100  # at least 40 dB down


def test_same_rate_is_a_copy() -> None:
    pcm = tone(300, 8000, 0.1)
    out = resample(pcm, 8000, 8000)
    assert out is not pcm and np.array_equal(out, pcm)


def test_pcm_to_phone_gives_8khz_mulaw() -> None:
    assert len(pcm_to_phone(tone(500, 22050), 22050)) == 8000


def test_framer_carries_the_remainder_over() -> None:
    framer = Framer()
    assert framer.push(b"\x01" * 100) == []
    out = framer.push(b"\x02" * 250)
    assert [len(f) for f in out] == [160, 160]
    assert out[0] == b"\x01" * 100 + b"\x02" * 60
    rest = framer.flush()
    assert rest == [b"\x02" * 30 + bytes([MULAW_SILENCE]) * 130]
    assert framer.flush() == []


def test_frames_pads_the_last_frame() -> None:
    out = frames(b"\x05" * 330)
    assert [len(f) for f in out] == [160, 160, 160]
    assert out[-1].endswith(bytes([MULAW_SILENCE]) * 150)


def test_sample_windows_regroup_frames_for_the_vad() -> None:
    windows = SampleWindows(256)
    pcm = np.arange(160 * 8, dtype=np.int16)
    got = [w for i in range(8) for w in windows.push(pcm[i * 160 : (i + 1) * 160])]
    assert len(got) == 5
    assert np.array_equal(np.concatenate(got), pcm[: 5 * 256])


def test_the_lead_in_before_the_first_sound_is_trimmed_to_ten_ms() -> None:
    quiet = np.zeros(400, dtype=np.int16)  # 50 ms of the synthesizer's lead-in
    quiet[::7] = 40  # low hiss, not speech
    word = (3000 * np.cos(np.arange(800) * 2 * np.pi * 440 / PHONE_RATE)).astype(np.int16)
    trimmed = trim_lead_in(mulaw_encode(np.concatenate([quiet, word])))
    assert len(trimmed) == len(word) + 80
    assert trim_lead_in(mulaw_encode(quiet)) == mulaw_encode(quiet), "all quiet: kept as is"
    assert trim_lead_in(mulaw_encode(word)) == mulaw_encode(word)
