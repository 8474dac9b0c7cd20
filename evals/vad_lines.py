"""Does the edge's VAD hear every dev caller line, and never the line's noise alone?

`python -m evals.vad_lines`: every reply (and backchannel) of the dev personas, in its
persona's voice through the phone line (`simulator.caller_audio`, cached clips), after 2 s of
what the simulator sends between lines (digital silence) or of the line's noise, goes through
the edge's own VAD windowing (`FrameVAD`) and `Endpointer`; a line is heard when the
endpointer opens a segment. Then half a minute of line noise alone per voice and seed (at its
own level and at twice it) must open none. Printed per speech threshold, so the threshold is
chosen on dev lines only (the held-out set is never read here).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evals.calls import load_corpus
from media_edge.audio import FRAME_SAMPLES, PHONE_RATE, frames, mulaw_decode
from media_edge.endpointer import Endpointer, EndpointerConfig, SpeechStarted
from media_edge.listener import FrameVAD
from media_edge.providers import PCM
from media_edge.vad import SileroVAD
from simulator.caller_audio import CallerAudio
from simulator.caller_voice import CALLER_VOICES, phone_line
from simulator.protocol import SILENT_FRAME
from slot.settings import get_settings

THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5)
LEAD_S = 2.0
NOISE_S = 30
NOISE_SEEDS = (1, 2, 3)


@dataclass
class Clip:
    voice: str
    text: str
    pcm: list[PCM]
    probabilities: list[float]


def probabilities(pcm_frames: Sequence[PCM]) -> list[float]:
    """Each 20 ms frame's speech probability as the edge computes it (fresh VAD, one call)."""
    vad = FrameVAD(SileroVAD(PHONE_RATE))
    return [vad.push(frame) for frame in pcm_frames]


def segments_opened(clip: Clip, threshold: float) -> int:
    """How many segments the edge's endpointer opens on the clip at this speech threshold."""
    endpointer = Endpointer(EndpointerConfig(threshold=threshold))
    opened = 0
    for index, (frame, probability) in enumerate(zip(clip.pcm, clip.probabilities, strict=True)):
        events = endpointer.push(frame, probability, index * 0.02, agent_speaking=False)
        opened += sum(isinstance(event, SpeechStarted) for event in events)
    return opened


def noise_frames(voice: str, seconds: float, seed: int, gain: float = 1.0) -> list[bytes]:
    silence = np.zeros(int(seconds * PHONE_RATE), dtype=np.int16)
    rng = np.random.default_rng(seed)
    return frames(phone_line(silence, rng, CALLER_VOICES[voice].noise_rms * gain))


def dev_clips(audio: CallerAudio, noise_lead: bool) -> list[Clip]:
    clips: list[Clip] = []
    settings = get_settings()
    for item in load_corpus(settings.personas_dir, ("dev",)):
        persona = item.persona
        for replies in persona.answers.values():
            for reply in replies:
                said = [(reply.backchannel.strip(), 0)] if reply.backchannel.strip() else []
                if reply.say.strip():
                    said.append((reply.say, reply.pause_ms))
                for text, pause_ms in said:
                    lead = (
                        noise_frames(persona.voice, LEAD_S, len(clips))
                        if noise_lead
                        else [SILENT_FRAME] * int(LEAD_S * 50)
                    )
                    spoken = audio.said(persona.voice, text, pause_ms)
                    pcm = [mulaw_decode(frame) for frame in [*lead, *spoken]]
                    clips.append(Clip(persona.voice, text, pcm, probabilities(pcm)))
    return clips


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.vad_lines", description=__doc__)
    parser.parse_args(argv)
    audio = CallerAudio(get_settings().data_dir / "caller-audio")
    clips = dev_clips(audio, noise_lead=False)
    noisy_clips = dev_clips(audio, noise_lead=True)
    print(f"{len(clips)} dev lines; {FRAME_SAMPLES}-sample frames")
    quietest = sorted(clips, key=lambda c: max(c.probabilities))[:5]
    for clip in quietest:
        print(f"  quietest after silence: {max(clip.probabilities):.2f} {clip.voice} {clip.text!r}")
    print(
        "| threshold | dev lines missed (after silence) | (after line noise) "
        "| noise segments (1x level) | noise segments (2x) |"
    )
    print("|---|---|---|---|---|")
    noise = {
        (voice, gain, seed): Clip(voice, "", pcm, probabilities(pcm))
        for voice in sorted(CALLER_VOICES)
        for gain in (1.0, 2.0)
        for seed in NOISE_SEEDS
        for pcm in [[mulaw_decode(f) for f in noise_frames(voice, NOISE_S, seed, gain)]]
    }
    for gain in (1.0, 2.0):
        peak = max(max(c.probabilities) for (_, g, _), c in noise.items() if g == gain)
        print(f"line noise alone at {gain:g}x its level: speech probability at most {peak:.3f}")
    for threshold in THRESHOLDS:
        missed = [c for c in clips if segments_opened(c, threshold) == 0]
        missed_noisy = sum(segments_opened(c, threshold) == 0 for c in noisy_clips)
        by_gain = {
            gain: sum(segments_opened(c, threshold) for (_, g, _), c in noise.items() if g == gain)
            for gain in (1.0, 2.0)
        }
        names = ", ".join(f"{c.voice}: {c.text!r}" for c in missed[:3])
        print(
            f"| {threshold} | {len(missed)} {names} | {missed_noisy} "
            f"| {by_gain[1.0]} | {by_gain[2.0]} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
