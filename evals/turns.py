"""`slot eval turns`: endpointing and barge-in policies side by side on labelled phone audio.

The labelled set is what the persona corpus' callers say (personas/dev and personas/heldout),
spoken by the named caller voices (`simulator.caller_voice`: Piper slowed and deepened or sped
up and raised, and three espeak-ng voices, never the agent's own voice), with pauses drawn from
a stated distribution (`PAUSES`), through the phone line (300-3400 Hz, line noise, G.711
mu-law) and cached under the data folder. Everything is seeded per clip, so a rebuild gives the
same audio. Thresholds are chosen on the dev split and reported on both; the held-out split
(lines of personas/heldout/, none of whose texts is in the dev split) chooses nothing.

Each clip is cut into the 20 ms frames the edge receives and run through the production
listener's endpointing: the edge's VAD windowing (`FrameVAD`), its `Endpointer` with each
candidate policy and the same barge-in classifier, on a simulated clock. When the endpointer
asks for the turn model or the first STT words, the answer (cached per clip and frame) comes
back after the model's measured time, as it would in the edge; so the numbers differ only by
the policy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import statistics
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evals.persona_lines import SPLITS, PersonaLine, Split, persona_lines, text_key
from media_edge import endpoint_policies as _policies
from media_edge import endpointer as _endpointer
from media_edge import listener as _listener
from media_edge import providers as _providers
from media_edge.audio import (
    FRAME_MS,
    FRAME_SAMPLES,
    PHONE_RATE,
    mulaw_decode,
)
from media_edge.barge_in import BargeInClassifier
from media_edge.endpoint_policies import (
    EndpointPolicy,
    FixedSilencePolicy,
    SmartTurnConfig,
    SmartTurnPolicy,
)
from media_edge.endpointer import (
    BargeIn,
    EndOfTurn,
    Endpointer,
    SpeculativePause,
    TurnEvent,
    TurnModelWanted,
    WordsWanted,
)
from media_edge.listener import (
    FrameVAD,
    barge_in_classifier,
    endpoint_policy,
    endpointer_config,
)
from media_edge.providers import PCM
from media_edge.smart_turn import SmartTurnModel
from media_edge.vad import SileroVAD
from simulator.caller_voice import CALLER_VOICES, named_caller_voice, phone_band, phone_line
from slot.settings import Settings

SCRIPT_AWARE_POLICY: Any = getattr(_policies, "ScriptAwarePolicy", None)
"""The edge's script-aware policy (branch `edge`); None before it is merged, when the eval's own
model of it (`judge_by_script`) stands in."""
PAUSE_AGENT: Any = getattr(_endpointer, "PauseAgent", None)
"""The edge's pause-at-speech-onset event (branch `edge`), when there is one."""
SPEECH_CONTEXT: Any = getattr(_providers, "SpeechContext", None)
acoustic_policy: Callable[[Settings], EndpointPolicy] = getattr(
    _listener, "acoustic_policy", endpoint_policy
)

DATASET_VERSION = "v2"
FRAME_S = FRAME_MS / 1000
LEAD_S = 0.6
TAIL_S = 2.6
AGENT_LEAD_S = 0.8
Kind = Literal[
    "complete", "incomplete", "hesitation", "afterthought", "backchannel", "interruption"
]
TURN_KINDS: tuple[Kind, ...] = ("complete", "incomplete", "hesitation", "afterthought")
BARGE_KINDS: tuple[Kind, ...] = ("backchannel", "interruption")
COUGH = "<cough>"


@dataclass(frozen=True)
class PauseDistribution:
    """Pauses inside a caller's turn: log-normal, clipped. Conversation-analysis studies find
    within-turn pauses roughly log-normal with a median around half a second and a long tail;
    so a 500 ms fixed silence cuts about half of the paused turns, not all of them."""

    median_s: float = 0.55
    sigma: float = 0.55
    """Standard deviation of ln(pause)."""
    min_s: float = 0.2
    max_s: float = 2.5

    def draw(self, rng: np.random.Generator) -> float:
        value = float(rng.lognormal(math.log(self.median_s), self.sigma))
        return round(min(self.max_s, max(self.min_s, value)), 3)

    def describe(self) -> str:
        return (
            f"log-normal, median {self.median_s * 1000:.0f} ms, sigma(ln) {self.sigma}, "
            f"clipped to {self.min_s * 1000:.0f}-{self.max_s * 1000:.0f} ms"
        )


PAUSES = PauseDistribution()

SAMPLE = {
    "dev": {"complete": 90, "afterthought": 24, "interruption": 30},
    "heldout": {"complete": 60, "afterthought": 16, "interruption": 20},
}
"""How many clips of the plentiful kinds each split draws (seeded); the paused replies
(`...`) and the backchannels are all taken."""

_FILLER_TEXT = "um uh er eh hmm hm well oh so okay ok let me see think mm ah gosh goodness"
FILLERS = frozenset(_FILLER_TEXT.split())
"""A first stretch made only of these is a hesitation ("Um... let me think... maybe Wednesday")."""
_SENTENCE = re.compile(r"(?<=[.?!])\s+(?=\S)")

# The previous hand-written set: it was tuned on, so it only ever goes to the dev split.
DEV_INCOMPLETE = [
    ["My account number is,", "four four seven two."],
    ["I'd like to book it for,", "Thursday at three."],
    ["The best number to reach me is,", "five five five, zero one three four."],
    ["We were thinking about,", "maybe getting a quote."],
    ["My address is,", "twelve Oak Street."],
    ["I think the roof faces,", "south west."],
]
DEV_HESITATION = [
    ["Um,", "I think,", "maybe Thursday."],
    ["Well,", "let me see,", "probably next week."],
    ["Uh,", "we pay about,", "two hundred a month."],
]
DEV_BACKCHANNEL = ["Uh-huh.", "Yeah.", "Right.", "Okay.", "Mm-hmm."]
DEV_INTERRUPTION = [
    "Wait, sorry, I have a question about the price.",
    "No, stop, I'm not interested.",
    "Hold on, can you repeat that?",
    "Actually, I already have solar panels.",
    "Sorry, who is this?",
]


@dataclass
class Clip:
    """One labelled phone recording of the caller's side."""

    id: str
    split: Split
    kind: Kind
    voice: str
    text: str
    parts: list[str]
    state: str | None
    """The playbook state whose question this answers (for a script-aware policy)."""
    pauses: list[float] = field(default_factory=list)
    """Drawn from `PAUSES`, one between each two parts."""
    lead_s: float = LEAD_S
    speech: list[tuple[float, float]] = field(default_factory=list)
    """Spans (s) where the caller is actually speaking, from the synthesized parts."""
    agent_speaking: tuple[float, float] | None = None
    """For barge-in clips: the agent talks over this span (s)."""

    @property
    def true_end(self) -> float:
        return self.speech[-1][1]

    @property
    def seed(self) -> int:
        """Every random draw of a clip comes from its id: adding clips changes no other clip."""
        return zlib.crc32(self.id.encode())


def _clip_id(split: Split, kind: Kind, voice: str, text: str) -> str:
    return f"{split}-{kind}-{voice}-{zlib.crc32(text.encode()):08x}"


def _new_clip(
    split: Split, kind: Kind, voice: str, parts: list[str], state: str | None, text: str = ""
) -> Clip:
    text = text or " ... ".join(parts)
    clip = Clip(_clip_id(split, kind, voice, text), split, kind, voice, text, parts, state)
    rng = np.random.default_rng(clip.seed)
    clip.pauses = [PAUSES.draw(rng) for _ in parts[1:]]
    if kind in BARGE_KINDS:
        clip.lead_s = round(AGENT_LEAD_S + float(rng.uniform(0.0, 0.6)), 3)
    return clip


def _is_filler(part: str) -> bool:
    words = text_key(part).split()
    return bool(words) and all(w in FILLERS for w in words)


def _sample(items: list[Clip], n: int, seed: str) -> list[Clip]:
    """A seeded choice of `n` clips, in a stable order."""
    unique = list({c.id: c for c in items}.values())
    unique.sort(key=lambda c: c.id)
    if len(unique) <= n:
        return unique
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    chosen = rng.choice(len(unique), size=n, replace=False)
    return [unique[i] for i in sorted(chosen)]


def _split_lines() -> dict[Split, list[PersonaLine]]:
    """Each split's corpus lines; a text in the held-out split is dropped from the dev split."""
    lines = {split: persona_lines(split) for split in SPLITS}
    held = {text_key(line.text) for line in lines["heldout"]}
    lines["dev"] = [line for line in lines["dev"] if text_key(line.text) not in held]
    return lines


def dataset_clips(lines: dict[Split, list[PersonaLine]] | None = None) -> list[Clip]:
    """The labelled set (without audio): which text, voice, kind and pauses each clip has."""
    lines = lines or _split_lines()
    held = {text_key(line.text) for line in lines["heldout"]}
    clips: list[Clip] = []
    for split in SPLITS:
        replies = [line for line in lines[split] if line.kind == "reply"]
        complete, after, paused, interrupting = [], [], [], []
        for line in replies:
            parts = line.parts
            if len(parts) > 1:
                kind: Kind = "hesitation" if _is_filler(parts[0]) else "incomplete"
                paused.append(_new_clip(split, kind, line.voice, parts, line.state))
                continue
            sentences = [s for s in _SENTENCE.split(line.words) if s.strip()]
            if len(sentences) > 1 and all(len(s.split()) >= 2 for s in sentences):
                after.append(_new_clip(split, "afterthought", line.voice, sentences, line.state))
            elif line.interrupts or (line.topic == "other" and len(line.words.split()) >= 3):
                interrupting.append(
                    _new_clip(split, "interruption", line.voice, [line.words], line.state)
                )
            else:
                complete.append(_new_clip(split, "complete", line.voice, [line.words], line.state))
        backchannels = sorted({line.text for line in lines[split] if line.kind == "backchannel"})
        voices = list(CALLER_VOICES)
        if split == "dev":
            backchannels = sorted(
                {*backchannels, *(t for t in DEV_BACKCHANNEL if text_key(t) not in held)}
            )
            legacy: tuple[tuple[Kind, list[list[str]]], ...] = (
                ("incomplete", DEV_INCOMPLETE),
                ("hesitation", DEV_HESITATION),
            )
            paused += [
                _new_clip(split, kind, voices[i % len(voices)], parts, None)
                for kind, groups in legacy
                for i, parts in enumerate(groups)
            ]
            interrupting += [
                _new_clip(split, "interruption", voices[i % len(voices)], [text], None)
                for i, text in enumerate(DEV_INTERRUPTION)
                if text_key(text) not in held
            ]
        n = SAMPLE[split]
        clips += _sample(complete, n["complete"], f"{split}-complete")
        clips += _sample(paused, len(paused), f"{split}-paused")
        clips += _sample(after, n["afterthought"], f"{split}-afterthought")
        clips += _sample(interrupting, n["interruption"], f"{split}-interruption")
        clips += [
            _new_clip(split, "backchannel", voice, [text], None)
            for text in [*backchannels, COUGH]
            for voice in voices
        ]
    return clips


def _cough(seed: int) -> PCM:
    """A cough: a 250 ms burst of shaped noise, seeded so each differs."""
    rng = np.random.default_rng(seed)
    n = int(0.25 * PHONE_RATE)
    envelope = np.exp(-np.linspace(0.0, 6.0, n)) * np.minimum(1.0, np.linspace(0.0, 20.0, n))
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    return phone_band((noise * envelope * 9000).astype(np.int16))


def _silence(seconds: float) -> PCM:
    return np.zeros(round(seconds * PHONE_RATE), dtype=np.int16)


def render_clip(clip: Clip) -> bytes:
    """The clip's phone audio (mu-law); fills in its speech spans and the agent's span."""
    voice = named_caller_voice(clip.voice)
    parts = [_cough(clip.seed) if p == COUGH else voice.speech(p) for p in clip.parts]
    tail = 1.5 if clip.kind in BARGE_KINDS else TAIL_S
    pieces, spans, at = [_silence(clip.lead_s)], [], clip.lead_s
    for i, part in enumerate(parts):
        spans.append((round(at, 4), round(at + len(part) / PHONE_RATE, 4)))
        pieces.append(part)
        at += len(part) / PHONE_RATE
        if i < len(parts) - 1:
            pieces.append(_silence(clip.pauses[i]))
            at += clip.pauses[i]
    pieces.append(_silence(tail))
    audio = np.concatenate(pieces)
    clip.speech = spans
    if clip.kind in BARGE_KINDS:
        clip.agent_speaking = (0.0, round(len(audio) / PHONE_RATE, 4))
    rng = np.random.default_rng(clip.seed + 1)
    return phone_line(audio, rng, voice.spec.noise_rms)


def _specs_hash(clips: Iterable[Clip]) -> str:
    ids = "\n".join(f"{c.id}|{c.parts}|{c.pauses}|{c.lead_s}" for c in clips)
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def build_dataset(
    out_dir: Path, *, force: bool = False, clips: list[Clip] | None = None
) -> list[Clip]:
    """Synthesize the labelled set into `out_dir` (mu-law `.ulaw` files + `manifest.json`).

    Reuses what is there unless `force` or the corpus changed. Deterministic: the voices are,
    and every pause and noise sample comes from a seed derived from the clip's id.
    """
    clips = clips if clips is not None else dataset_clips()
    manifest_path = out_dir / "manifest.json"
    wanted = _specs_hash(clips)
    if manifest_path.is_file() and not force:
        data = json.loads(manifest_path.read_text())
        if data.get("version") == DATASET_VERSION and data.get("specs") == wanted:
            return load_dataset(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        (out_dir / f"{clip.id}.ulaw").write_bytes(render_clip(clip))
    manifest = {
        "version": DATASET_VERSION,
        "specs": wanted,
        "pauses": asdict(PAUSES),
        "clips": [asdict(c) for c in clips],
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return clips


def load_dataset(out_dir: Path) -> list[Clip]:
    data = json.loads((out_dir / "manifest.json").read_text())
    if data.get("version") != DATASET_VERSION:
        raise ValueError(
            f"{out_dir}/manifest.json is dataset {data.get('version')}, not {DATASET_VERSION}"
        )
    clips = []
    for c in data["clips"]:
        c["speech"] = [tuple(s) for s in c["speech"]]
        c["agent_speaking"] = tuple(c["agent_speaking"]) if c["agent_speaking"] else None
        clips.append(Clip(**c))
    return clips


def clip_audio(out_dir: Path, clip: Clip) -> PCM:
    return mulaw_decode((out_dir / f"{clip.id}.ulaw").read_bytes())


def frame_probabilities(audio: PCM) -> list[float]:
    """Silero's speech probability of each 20 ms frame of a clip, as the edge computes it."""
    vad = FrameVAD(SileroVAD(PHONE_RATE))
    return [
        vad.push(audio[i : i + FRAME_SAMPLES])
        for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
    ]


@dataclass
class TurnOutcome:
    clip: str
    kind: Kind
    endpoint_at: float | None
    reason: str | None
    premature: bool
    delay_ms: float | None


@dataclass
class BargeOutcome:
    clip: str
    kind: Kind
    interrupted: bool
    latency_ms: float | None
    """From the start of the caller's speech to the interruption."""
    words: str | None = None
    paused_ms: float | None = None
    """From the start of the caller's speech to the agent being paused (`clear`), when the edge
    pauses at speech onset."""


ModelFn = Callable[[str, int, PCM], Any]
"""(clip id, frame index of the request, the audio the edge would hand over) -> the answer."""

TranscriptSink = Callable[[Endpointer, int, str, float, bool], list[TurnEvent]]
"""The hook for a script-aware policy: (endpointer, pause, speculative transcript, now, agent
speaking) -> the events handing the transcript over caused. See `judge_by_script`."""


@dataclass
class ClipRun:
    """What the production endpointer did with one clip."""

    end: EndOfTurn | None = None
    barge_in: BargeIn | None = None
    words: str | None = None
    paused_at: float | None = None
    speech_started_at: float | None = None


def run_clip(
    clip: Clip,
    audio: PCM,
    probabilities: Sequence[float],
    endpointer: Endpointer,
    verdict: ModelFn | None = None,
    words: ModelFn | None = None,
    model_latency_s: float = 0.0,
    stt_latency_s: float = 0.0,
    transcript: ModelFn | None = None,
    on_transcript: TranscriptSink | None = None,
) -> ClipRun:
    """Drive the edge's `Endpointer` (its policy and barge-in classifier) over one clip's 20 ms
    frames on a simulated clock, as the edge's listener does: the turn model's verdicts and the
    first STT words come back `model_latency_s` / `stt_latency_s` after they were asked for,
    while frames keep arriving. With `transcript` and `on_transcript`, each speculative pause's
    transcript (the STT on the segment so far) comes back after `stt_latency_s` and is handed
    to the policy. Stops at the first end of turn or barge-in."""
    run = ClipRun()
    answers: list[tuple[float, str, int, Any]] = []
    agent = clip.agent_speaking
    for i, probability in enumerate(probabilities):
        now = round((i + 1) * FRAME_S, 6)
        speaking = agent is not None and agent[0] <= now <= agent[1]
        events: list[TurnEvent] = []
        for _ready_at, kind, key, value in [a for a in answers if a[0] <= now]:
            if kind == "verdict":
                events += endpointer.set_verdict(key, value, now, speaking)
            elif kind == "transcript" and on_transcript is not None:
                events += on_transcript(endpointer, key, value, now, speaking)
            else:
                run.words = value
                endpointer.set_words(key, value)
                events += endpointer.check_barge_in(now, speaking)
        answers = [a for a in answers if a[0] > now]
        frame = audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        events += endpointer.push(frame, probability, now, speaking)
        for event in events:
            if isinstance(event, TurnModelWanted) and verdict is not None:
                p = verdict(clip.id, i, event.audio)
                answers.append((now + model_latency_s, "verdict", event.pause, p))
            elif isinstance(event, SpeculativePause) and transcript is not None:
                text = transcript(clip.id, i, event.audio)
                pause = int(getattr(event, "pause", 0) or endpointer.pause)
                answers.append((now + stt_latency_s, "transcript", pause, text))
            elif PAUSE_AGENT is not None and isinstance(event, PAUSE_AGENT):
                if run.paused_at is None:
                    run.paused_at = float(event.at)
                    run.speech_started_at = float(event.speech_started_at)
            elif isinstance(event, WordsWanted) and words is not None:
                text = words(clip.id, i, event.audio)
                answers.append((now + stt_latency_s, "words", event.segment, text))
            elif isinstance(event, BargeIn):
                run.barge_in = event
                return run
            elif isinstance(event, EndOfTurn) and not speaking:
                run.end = event
                return run
    return run


def turn_outcome(clip: Clip, run: ClipRun) -> TurnOutcome:
    end = run.end
    endpoint_at = end.endpoint_at if end is not None else None
    premature = endpoint_at is not None and endpoint_at < clip.true_end
    delay = None if endpoint_at is None or premature else (endpoint_at - clip.true_end) * 1000
    return TurnOutcome(
        clip.id, clip.kind, endpoint_at, end.reason if end else None, premature, delay
    )


def barge_outcome(clip: Clip, run: ClipRun) -> BargeOutcome:
    paused = (
        (run.paused_at - run.speech_started_at) * 1000
        if run.paused_at is not None and run.speech_started_at is not None
        else None
    )
    barge = run.barge_in
    if barge is None:
        return BargeOutcome(clip.id, clip.kind, False, None, run.words, paused)
    latency = (barge.at - barge.speech_started_at) * 1000
    return BargeOutcome(clip.id, clip.kind, True, latency, run.words, paused)


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class PolicyResult:
    name: str
    turns: list[TurnOutcome]
    barge_ins: list[BargeOutcome]
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        delays = [t.delay_ms for t in self.turns if t.delay_ms is not None]
        complete_delays = [
            t.delay_ms for t in self.turns if t.delay_ms is not None and t.kind == "complete"
        ]
        cut = [t for t in self.turns if t.premature]
        interruptions = [b for b in self.barge_ins if b.kind == "interruption"]
        backchannels = [b for b in self.barge_ins if b.kind == "backchannel"]
        latencies = [b.latency_ms for b in interruptions if b.latency_ms is not None]
        pauses = [b.paused_ms for b in interruptions if b.paused_ms is not None]
        paused = [t for t in self.turns if t.kind != "complete"]
        row: dict[str, Any] = {
            "policy": self.name,
            "config": self.config,
            "turns": len(self.turns),
            "median_delay_ms": _percentile(delays, 50),
            "mean_delay_ms": statistics.fmean(delays) if delays else None,
            "p90_delay_ms": _percentile(delays, 90),
            "median_delay_complete_ms": _percentile(complete_delays, 50),
            "premature_rate": len(cut) / len(self.turns) if self.turns else None,
            "premature_by_kind": {
                kind: f"{sum(t.premature for t in self.turns if t.kind == kind)}"
                f"/{sum(t.kind == kind for t in self.turns)}"
                for kind in TURN_KINDS
            },
            "premature_rate_paused": (
                sum(t.premature for t in paused) / len(paused) if paused else None
            ),
            "missed_interruptions": sum(not b.interrupted for b in interruptions),
            "interruptions": len(interruptions),
            "false_interruptions": sum(b.interrupted for b in backchannels),
            "backchannels": len(backchannels),
            "median_interrupt_latency_ms": _percentile(latencies, 50),
            "median_pause_latency_ms": _percentile(pauses, 50),
            "backchannels_paused_agent": sum(b.paused_ms is not None for b in backchannels),
        }
        if self.turns:
            row["expected_cost_ms"] = expected_cost_ms(row)
        return row


class _Models:
    """Smart Turn and the STT (`SLOT_STT_MODEL`) with per-(clip, frame) caches, shared by all
    configurations; their times are CPU times (see `evaluate`)."""

    def __init__(self, out_dir: Path, clips: Sequence[Clip]) -> None:
        self.audio = {c.id: clip_audio(out_dir, c) for c in clips}
        self.smart_turn = SmartTurnModel(threads=1)
        self._verdicts: dict[tuple[str, int, int], float] = {}
        self._words: dict[tuple[str, int, int, str], str] = {}
        self._stt: Any = None
        self.contexts: dict[str, Any] = {}
        """Per state, the STT context the edge gives a speculative transcript (when it does)."""
        self.smart_turn_ms: list[float] = []
        self.stt_ms: list[float] = []

    def verdict(self, clip_id: str, frame: int, audio: PCM) -> float:
        key = (clip_id, frame, len(audio))
        if key not in self._verdicts:
            started = time.thread_time()
            self._verdicts[key] = self.smart_turn.predict(audio)
            self.smart_turn_ms.append((time.thread_time() - started) * 1000)
        return self._verdicts[key]

    def words(self, clip_id: str, frame: int, audio: PCM, state: str = "") -> str:
        """The STT on the audio so far: the first words of a barge-in, or (with the `state`
        whose question the caller answers) a speculative transcript, biased to that question
        as the edge does when its STT takes a context."""
        key = (clip_id, frame, len(audio), state)
        if key not in self._words:
            if self._stt is None:
                from media_edge.stt_models import embedded_stt
                from slot.settings import get_settings

                model = get_settings().stt_model
                self._stt = embedded_stt(model, ThreadPoolExecutor(max_workers=1), cpu_threads=2)
            context = self.contexts.get(state)
            started = time.process_time()
            transcribe: Any = self._stt.transcribe_sync
            result = (
                transcribe(audio, PHONE_RATE, context)
                if context is not None
                else transcribe(audio, PHONE_RATE)
            )
            self.stt_ms.append((time.process_time() - started) * 1000)
            self._words[key] = str(result.text)
        return self._words[key]

    def transcript_for(self, state: str) -> ModelFn:
        """The speculative-transcript function for clips answering `state`."""
        return partial(self._transcript, state=state)

    def _transcript(self, clip_id: str, frame: int, audio: PCM, state: str) -> str:
        return self.words(clip_id, frame, audio, state)

    def stt_latency_s(self) -> float:
        return statistics.median(self.stt_ms) / 1000 if self.stt_ms else 0.0


MODEL_ANSWER_S = 0.04
STT_ANSWER_S = 0.06
"""When Smart Turn's verdict and the STT's words come back after they were asked for, in every
run: their CPU times on this machine (Smart Turn 30-33 ms alone, the STT probe 52-62 ms), fixed
so that a run is reproducible. Measured per run, a few ms either way moved which 20 ms frame an
answer landed in, and the held-out cut-off rate with it (22.2 or 24.4 % for one code); the
measured times are still reported."""
SCRIPT_MIN_PAUSES = (0, 150, 300, 450, 600)
"""Silence (ms) a complete answer must be followed by before it ends the turn, swept on dev."""
SMART_GRID = [
    SmartTurnConfig(threshold=t, min_pause_ms=p, max_silence_ms=m)
    for p in (200, 300)
    for t in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
    for m in (1000, 1500, 2000)
]
BARGE_GRID = [
    *(BargeInClassifier(min_interrupt_ms=ms, use_words=False) for ms in (200, 300, 400, 500, 600)),
    *(BargeInClassifier(min_interrupt_ms=ms, use_words=True) for ms in (300, 500)),
]
MAX_INTERRUPT_LATENCY_MS = 1000
"""A barge-in slower than this (median) lets the agent talk over the caller too long."""

CUT_OFF_COST_MS = 3000
"""What a premature cut-off costs the caller: the agent answers half a sentence, the caller
repeats. Used to weigh cut-offs against waiting when choosing the defaults."""


def expected_cost_ms(row: dict[str, Any]) -> float:
    """Mean wait per turn, counting each cut-off as `CUT_OFF_COST_MS`."""
    premature = float(row["premature_rate"])
    return (1 - premature) * float(row["mean_delay_ms"] or 0.0) + premature * CUT_OFF_COST_MS


def _choose_smart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The lowest expected cost, then the lowest p90."""
    return min(rows, key=lambda r: (round(expected_cost_ms(r)), r["p90_delay_ms"] or 1e9))


def _choose_barge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fewest wrong calls (missed + false) among quick enough classifiers, then the quickest."""
    ok = [
        r for r in rows if (r["median_interrupt_latency_ms"] or 1e9) <= MAX_INTERRUPT_LATENCY_MS
    ] or rows
    return min(
        ok,
        key=lambda r: (
            r["missed_interruptions"] + r["false_interruptions"],
            r["median_interrupt_latency_ms"] or 1e9,
        ),
    )


def judge_by_script(expect: Any, short_answer_pause_ms: int | None = None) -> TranscriptSink:
    """Script-aware endpointing: the speculative transcript judged against the clip's question
    (`judge_answer`). With the edge's `ScriptAwarePolicy` the judgement goes to it through
    `Endpointer.set_answer`, as the edge's listener hands it over; before that policy is merged,
    the eval's own model of it: a complete answer ends the turn at once, as a turn-model
    verdict of certainty would, anything else leaves the turn to Smart Turn. A one- or two-word
    answer waits `short_answer_pause_ms`, as on the edge."""
    from media_edge.listener import is_short_answer
    from workflows.expectations import judge_answer

    def hand_over(
        endpointer: Endpointer, pause: int, text: str, now: float, speaking: bool
    ) -> list[TurnEvent]:
        judgement = judge_answer(expect, text)
        complete = judgement.complete
        if SCRIPT_AWARE_POLICY is not None and isinstance(endpointer.policy, SCRIPT_AWARE_POLICY):
            set_answer: Any = getattr(endpointer, "set_answer")  # noqa: B009
            short = short_answer_pause_ms if is_short_answer(text) else None
            events: list[TurnEvent] = set_answer(
                pause, complete, now, speaking, short, unfinished=judgement.unfinished
            )
            return events
        if complete:
            return endpointer.set_verdict(pause, 1.0, now, speaking)
        return []

    return hand_over


def script_aware_policy(config: SmartTurnConfig, min_pause_ms: int = 0) -> EndpointPolicy:
    """Smart Turn made script-aware: the edge's `ScriptAwarePolicy` when it is there, else Smart
    Turn alone (the eval's model then acts through `judge_by_script`)."""
    if SCRIPT_AWARE_POLICY is not None:
        policy: EndpointPolicy = SCRIPT_AWARE_POLICY(SmartTurnPolicy(config), min_pause_ms)
        return policy
    return SmartTurnPolicy(config)


@dataclass
class _Split:
    """One split's clips and their frame probabilities."""

    turns: list[Clip]
    barges: list[Clip]


class _Runner:
    """Runs policies over clips with the shared model caches and measured model latencies."""

    def __init__(self, models: _Models, clips: Sequence[Clip], settings: Settings) -> None:
        self.models = models
        self.config = endpointer_config(settings)
        """The edge's own endpointer settings (speech threshold, hysteresis, minimum speech...)."""
        self.probabilities = {c.id: frame_probabilities(models.audio[c.id]) for c in clips}
        self.short_answer_pause_ms = settings.script_short_answer_min_pause_ms
        self.barge_in = barge_in_classifier(settings)
        """Every endpointing policy gets the edge's barge-in rule (duration + first words)."""
        self.expects: dict[str, Any] = {}
        from evals.persona_lines import expected_answers, sample_playbook

        self.expects = expected_answers(sample_playbook())
        if SPEECH_CONTEXT is not None and getattr(settings, "stt_script_context", False):
            models.contexts = {
                state: SPEECH_CONTEXT(prompt=e.question, hotwords=tuple(e.vocabulary()))
                for state, e in self.expects.items()
            }
        turn = next(c for c in clips if c.kind == "complete" and c.state)
        probe = models.audio[turn.id][: round(turn.true_end * PHONE_RATE)]
        # The models' CPU times (one thread for Smart Turn, both for STT), reported beside the
        # fixed answer times the runs use (`MODEL_ANSWER_S`, `STT_ANSWER_S`).
        timings = []
        for _ in range(5):
            t0 = time.thread_time()
            models.smart_turn.predict(probe)
            timings.append(time.thread_time() - t0)
        self.model_latency_s = statistics.median(timings)
        for k in range(3):
            models.words(turn.id, -1 - k, probe, turn.state or "")
        self.stt_latency_s = models.stt_latency_s()

    def run(
        self,
        clip: Clip,
        policy: EndpointPolicy,
        classifier: BargeInClassifier | None = None,
        *,
        script_aware: bool = False,
    ) -> ClipRun:
        classifier = classifier or self.barge_in
        aware = script_aware or (
            SCRIPT_AWARE_POLICY is not None and isinstance(policy, SCRIPT_AWARE_POLICY)
        )
        expect = self.expects.get(clip.state or "") if aware else None
        return run_clip(
            clip,
            self.models.audio[clip.id],
            self.probabilities[clip.id],
            Endpointer(self.config, policy, classifier),
            self.models.verdict,
            self.models.words if classifier.use_words else None,
            MODEL_ANSWER_S,
            STT_ANSWER_S,
            self.models.transcript_for(clip.state or "") if expect is not None else None,
            judge_by_script(expect, self.short_answer_pause_ms) if expect is not None else None,
        )

    def policy(
        self,
        name: str,
        make: Callable[[], EndpointPolicy],
        data: _Split,
        config: dict[str, Any],
        *,
        script_aware: bool = False,
    ) -> PolicyResult:
        turns = [
            turn_outcome(c, self.run(c, make(), script_aware=script_aware)) for c in data.turns
        ]
        barges = [barge_outcome(c, self.run(c, make())) for c in data.barges]
        return PolicyResult(name, turns, barges, {**config, "barge_in": asdict(self.barge_in)})

    def sweep(self, data: _Split) -> tuple[list[dict[str, Any]], SmartTurnConfig]:
        rows = []
        for cfg in SMART_GRID:
            turns = [turn_outcome(c, self.run(c, SmartTurnPolicy(cfg))) for c in data.turns]
            rows.append(PolicyResult("smart", turns, [], asdict(cfg)).summary())
        return rows, SmartTurnConfig(**_choose_smart(rows)["config"])

    def script_sweep(self, data: _Split) -> tuple[list[dict[str, Any]], SmartTurnConfig, int]:
        """Smart Turn's settings under the script, and the silence a complete answer must be
        followed by (`SCRIPT_MIN_PAUSES`, the edge's `script_endpoint_min_pause_ms`)."""
        rows = []
        pauses = SCRIPT_MIN_PAUSES if SCRIPT_AWARE_POLICY is not None else (0,)
        for cfg in SMART_GRID:
            for min_pause in pauses:
                turns = [
                    turn_outcome(
                        c, self.run(c, script_aware_policy(cfg, min_pause), script_aware=True)
                    )
                    for c in data.turns
                ]
                config = {**asdict(cfg), "script_min_pause_ms": min_pause}
                rows.append(PolicyResult("script-aware", turns, [], config).summary())
        best = dict(_choose_smart(rows)["config"])
        min_pause = int(best.pop("script_min_pause_ms"))
        return rows, SmartTurnConfig(**best), min_pause

    def barge_sweep(
        self, data: _Split, policy: SmartTurnConfig
    ) -> dict[str, tuple[BargeInClassifier, list[BargeOutcome]]]:
        results = {}
        for classifier in BARGE_GRID:
            outcomes = [
                barge_outcome(c, self.run(c, SmartTurnPolicy(policy), classifier))
                for c in data.barges
            ]
            name = f"{classifier.min_interrupt_ms} ms" + (
                " + words" if classifier.use_words else ""
            )
            results[name] = (classifier, outcomes)
        return results


def evaluate(data_dir: Path) -> dict[str, Any]:
    """Choose on the dev split, report both; returns the whole report as JSON-able data."""
    started = time.perf_counter()
    clips = build_dataset(data_dir)
    built_s = time.perf_counter() - started
    splits = {
        split: _Split(
            [c for c in clips if c.split == split and c.kind in TURN_KINDS],
            [c for c in clips if c.split == split and c.kind in BARGE_KINDS],
        )
        for split in SPLITS
    }
    models = _Models(data_dir, clips)
    settings = Settings()
    runner = _Runner(models, clips, settings)
    dev = splits["dev"]

    smart_sweep, best_smart = runner.sweep(dev)
    script_sweep, best_script, best_script_pause = runner.script_sweep(dev)
    barge_sweep = runner.barge_sweep(dev, best_smart)
    barge_rows = {
        name: PolicyResult(name, [], outcomes, asdict(classifier)).summary()
        for name, (classifier, outcomes) in barge_sweep.items()
    }
    best_barge_name = _choose_barge(list(barge_rows.values()))["policy"]
    best_barge = barge_sweep[best_barge_name][0]

    edge = endpoint_policy(settings)
    script_default = SCRIPT_AWARE_POLICY is not None and isinstance(edge, SCRIPT_AWARE_POLICY)
    edge_patience = settings.max_endpoint_silence_ms
    patience = [(edge_patience, "edge")]
    if best_smart.max_silence_ms != edge_patience:
        patience.insert(0, (best_smart.max_silence_ms, "dev-chosen"))

    def policies(data: _Split) -> list[PolicyResult]:
        rows = [runner.policy("fixed silence 500 ms", lambda: FixedSilencePolicy(500), data, {})]
        rows += [
            runner.policy(
                f"fixed silence {ms} ms (= {label} max silence)",
                partial(FixedSilencePolicy, ms),
                data,
                {"silence_ms": ms},
            )
            for ms, label in patience
        ]
        rows.append(
            runner.policy(
                "VAD + Smart Turn, edge defaults",
                lambda: acoustic_policy(settings),
                data,
                {"endpoint_policy": repr(acoustic_policy(settings))},
            )
        )
        if script_default:
            rows.append(
                runner.policy(
                    "script-aware + Smart Turn, edge defaults",
                    lambda: endpoint_policy(settings),
                    data,
                    {"endpoint_policy": repr(edge)},
                )
            )
        rows.append(
            runner.policy(
                "VAD + Smart Turn, chosen on dev",
                lambda: SmartTurnPolicy(best_smart),
                data,
                asdict(best_smart),
            )
        )
        rows.append(
            runner.policy(
                "script-aware + Smart Turn, chosen on dev",
                lambda: script_aware_policy(best_script, best_script_pause),
                data,
                {**asdict(best_script), "script_min_pause_ms": best_script_pause},
                script_aware=True,
            )
        )
        return rows

    results = {split: policies(data) for split, data in splits.items()}
    barge_report = {
        "dev": barge_rows,
        "heldout": {
            name: PolicyResult(
                name,
                [],
                [
                    barge_outcome(c, runner.run(c, SmartTurnPolicy(best_smart), classifier))
                    for c in splits["heldout"].barges
                ],
                asdict(classifier),
            ).summary()
            for name, classifier in (
                (best_barge_name, best_barge),
                ("edge defaults", runner.barge_in),
            )
        },
    }
    return {
        "dataset": {
            "version": DATASET_VERSION,
            "clips": len(clips),
            "by_split": {
                split: {
                    k: sum(c.kind == k and c.split == split for c in clips)
                    for k in TURN_KINDS + BARGE_KINDS
                }
                for split in SPLITS
            },
            "voices": list(CALLER_VOICES),
            "pauses": PAUSES.describe(),
            "build_or_load_s": round(built_s, 1),
        },
        "endpointer": asdict(runner.config),
        "smart_turn_inference_ms": {
            "alone": round(runner.model_latency_s * 1000, 1),
            "median_in_sweep": (
                statistics.median(models.smart_turn_ms) if models.smart_turn_ms else None
            ),
            "count": len(models.smart_turn_ms),
        },
        "stt_ms": {"probe": round(runner.stt_latency_s * 1000, 1), "count": len(models.stt_ms)},
        "script_aware": (
            "the edge's ScriptAwarePolicy (judge_answer on the speculative transcript"
            + (", STT biased to the question)" if models.contexts else ")")
            if SCRIPT_AWARE_POLICY is not None
            else "the eval's model (evals.turns.judge_by_script); the edge policy is not merged"
        ),
        "chosen_on_dev": {
            "smart_turn": asdict(best_smart),
            "script_aware_smart_turn": {
                **asdict(best_script),
                "script_min_pause_ms": best_script_pause,
            },
            "barge_in": asdict(best_barge),
        },
        "policies": {split: [p.summary() for p in rows] for split, rows in results.items()},
        "barge_in": barge_report,
        "smart_turn_sweep_dev": smart_sweep,
        "script_aware_sweep_dev": script_sweep,
        "outcomes": {
            split: {
                p.name: {
                    "turns": [asdict(t) for t in p.turns],
                    "barge_ins": [asdict(b) for b in p.barge_ins],
                }
                for p in rows
            }
            for split, rows in results.items()
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def _fmt(value: float | None, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def _cells(row: dict[str, Any]) -> str:
    reaction = row.get("median_pause_latency_ms") or row["median_interrupt_latency_ms"]
    return (
        f"{_fmt(row['median_delay_ms'])} / {_fmt(row['p90_delay_ms'])} "
        f"| {_fmt(row['premature_rate'] * 100, '{:.1f}')} % "
        f"| {row['missed_interruptions']}/{row['interruptions']}, "
        f"{row['false_interruptions']}/{row['backchannels']}, {_fmt(reaction)} ms"
    )


def _barge_sweep_text(rows: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{name} {r['missed_interruptions']}+{r['false_interruptions']} wrong, "
        f"{_fmt(r['median_interrupt_latency_ms'])} ms"
        for name, r in rows.items()
    )


def markdown(report: dict[str, Any]) -> str:
    policies = report["policies"]
    lines = [
        "| policy | dev: delay p50 / p90 (ms) | dev: cut off "
        "| dev: barge-in missed, false, reaction p50 "
        "| held-out: delay p50 / p90 (ms) | held-out: cut off "
        "| held-out: barge-in missed, false, reaction p50 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dev, held in zip(policies["dev"], policies["heldout"], strict=True):
        lines.append(f"| {dev['policy']} | {_cells(dev)} | {_cells(held)} |")
    data = report["dataset"]
    chosen = report["chosen_on_dev"]
    st, sa, bi = chosen["smart_turn"], chosen["script_aware_smart_turn"], chosen["barge_in"]
    counts = "; ".join(
        f"{split}: " + ", ".join(f"{n} {k}" for k, n in kinds.items())
        for split, kinds in data["by_split"].items()
    )
    lines += [
        "",
        f"Dataset {data['version']}, {data['clips']} clips ({counts}): lines of the persona "
        "corpus (dev from personas/dev, held-out from personas/heldout; a text in both is "
        "held-out only), spoken by the caller voices "
        f"{', '.join(data['voices'])} (not the agent's voice), 8 kHz phone band, line noise, "
        f"G.711 mu-law. Pauses inside a turn: {data['pauses']}. Delay: from the true end of "
        "speech to the endpoint, over turns not cut off. Cut off: the turn ended before the "
        "caller finished. Every policy uses the edge's barge-in rule "
        f"({report['policies']['dev'][0]['config']['barge_in']['min_interrupt_ms']} ms of "
        "speech, confirmed by the first STT words); reaction: from the start of the caller's "
        "speech over the agent to the agent going quiet (paused at speech onset when the edge "
        "does that, else cut off).",
        "",
        "Per kind (cut off / turns), held-out: "
        + "; ".join(
            f"{p['policy']}: " + ", ".join(f"{k} {v}" for k, v in p["premature_by_kind"].items())
            for p in policies["heldout"]
        ),
        "",
        f"Chosen on dev (lowest expected cost, a cut-off counted as {CUT_OFF_COST_MS} ms): "
        f"Smart Turn threshold {st['threshold']}, min pause {st['min_pause_ms']} ms, max "
        f"silence {st['max_silence_ms']} ms; script-aware: threshold {sa['threshold']}, min "
        f"pause {sa['min_pause_ms']} ms, max silence {sa['max_silence_ms']} ms, a complete "
        f"answer ends the turn after {sa.get('script_min_pause_ms', 0)} ms of silence; barge-in "
        f"after {bi['min_interrupt_ms']} ms{' + words' if bi['use_words'] else ''}. "
        f"Smart Turn inference {_fmt(report['smart_turn_inference_ms']['alone'])} ms CPU, "
        f"speculative STT {_fmt(report['stt_ms']['probe'])} ms CPU; their answers come back "
        f"after a fixed {MODEL_ANSWER_S * 1000:.0f} and {STT_ANSWER_S * 1000:.0f} ms, so that "
        "runs repeat. "
        f"Script-aware: {report['script_aware']}.",
        "",
        "Barge-in classifiers (Smart Turn chosen on dev): "
        + "; ".join(
            f"{split} {name}: missed {r['missed_interruptions']}/{r['interruptions']}, "
            f"false {r['false_interruptions']}/{r['backchannels']}, median "
            f"{_fmt(r['median_interrupt_latency_ms'])} ms"
            for split, rows in report["barge_in"].items()
            if split == "heldout"
            for name, r in rows.items()
        )
        + f". Dev sweep: {_barge_sweep_text(report['barge_in']['dev'])}.",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p["policy"] for p in report["policies"]["dev"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(16, 5.6))
    x = np.arange(len(names))
    for offset, (split, colour) in zip(
        (-0.2, 0.2), (("dev", "#8ab"), ("heldout", "#27a")), strict=True
    ):
        rows = report["policies"][split]
        left.bar(
            x + offset, [r["median_delay_ms"] or 0 for r in rows], 0.4, color=colour, label=split
        )
        left.errorbar(
            x + offset,
            [r["median_delay_ms"] or 0 for r in rows],
            yerr=[
                [0] * len(rows),
                [(r["p90_delay_ms"] or 0) - (r["median_delay_ms"] or 0) for r in rows],
            ],
            fmt="none",
            ecolor="#333",
            capsize=3,
        )
        bars = right.bar(
            x + offset, [r["premature_rate"] * 100 for r in rows], 0.4, color=colour, label=split
        )
        right.bar_label(bars, fmt="%.0f", fontsize=7)
    labels = [textwrap.fill(n, 14) for n in names]
    for axis in (left, right):
        axis.set_xticks(x, labels, fontsize=7)
        axis.legend(fontsize=8)
    left.set_ylabel("delay after end of speech, median to p90 (ms)")
    left.set_title("How long the caller waits")
    right.set_ylabel("turns cut off before the caller finished (%)")
    right.set_title("Premature cut-offs")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(report: dict[str, Any], reports_dir: Path) -> dict[str, Path]:
    reports_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": reports_dir / "turns.md",
        "json": reports_dir / "turns.json",
        "plot": reports_dir / "turns.png",
    }
    paths["markdown"].write_text(markdown(report))
    paths["json"].write_text(json.dumps(report, indent=1))
    plot(report, paths["plot"])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """`slot eval turns [--data DIR] [--reports DIR] [--rebuild]`."""
    from slot.settings import REPO_ROOT, get_settings

    parser = argparse.ArgumentParser(prog="slot eval turns", description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (cached)")
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--rebuild", action="store_true", help="synthesize the set again")
    args = parser.parse_args(list(argv) if argv is not None else None)
    data_dir = args.data or get_settings().data_dir / "evals" / f"turns-{DATASET_VERSION}"
    if args.rebuild:
        build_dataset(data_dir, force=True)
    report = evaluate(data_dir)
    paths = write_report(report, args.reports)
    sys.stdout.write(markdown(report))
    sys.stdout.write(f"\nwrote {', '.join(str(p) for p in paths.values())}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
