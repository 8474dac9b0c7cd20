"""`slot eval turns`: endpointing and barge-in policies side by side on labelled phone audio.

The labelled set is synthesized offline (Piper joe at several speeds and noise settings, and
espeak-ng voices), put through the phone band (8 kHz, line noise, G.711 mu-law) and cached under
the data folder. Each clip is cut into the 20 ms frames the edge receives and run through the
production listener's endpointing: the edge's VAD windowing (`FrameVAD`), its `Endpointer`
(speech gate with hysteresis, minimum speech, pre-roll, pauses) with each candidate policy and
barge-in classifier, on a simulated clock. When the endpointer asks for the turn model or the
first STT words, the answer (cached per clip and frame) comes back after the model's measured
time, as it would in the edge; so the numbers differ only by the policy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from media_edge.audio import (
    FRAME_MS,
    FRAME_SAMPLES,
    PHONE_RATE,
    mulaw_decode,
    mulaw_encode,
    resample,
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
    TurnEvent,
    TurnModelWanted,
    WordsWanted,
)
from media_edge.espeak import espeak_binary, speak
from media_edge.listener import (
    FrameVAD,
    barge_in_classifier,
    endpoint_policy,
    endpointer_config,
)
from media_edge.providers import PCM
from media_edge.smart_turn import SmartTurnModel
from media_edge.vad import SileroVAD
from slot.settings import Settings

DATASET_VERSION = "v1"
FRAME_S = FRAME_MS / 1000
LEAD_S = 0.6
TAIL_S = 2.6
AGENT_LEAD_S = 0.8
Kind = Literal["complete", "incomplete", "hesitation", "backchannel", "interruption"]
TURN_KINDS: tuple[Kind, ...] = ("complete", "incomplete", "hesitation")
BARGE_KINDS: tuple[Kind, ...] = ("backchannel", "interruption")

COMPLETE = [
    "I'd like to book an appointment for Thursday afternoon.",
    "Yes, that works for me.",
    "No thanks, I'm not interested.",
    "Can you tell me how much the panels cost?",
    "My name is Sarah Johnson.",
    "We own the house, we bought it two years ago.",
    "Please call me back next week.",
    "Our electricity bill is about two hundred dollars a month.",
]
INCOMPLETE = [
    ["My account number is,", "four four seven two."],
    ["I'd like to book it for,", "Thursday at three."],
    ["The best number to reach me is,", "five five five, zero one three four."],
    ["We were thinking about,", "maybe getting a quote."],
    ["My address is,", "twelve Oak Street."],
    ["I think the roof faces,", "south west."],
]
HESITATION = [
    ["Um,", "I think,", "maybe Thursday."],
    ["Well,", "let me see,", "probably next week."],
    ["Uh,", "we pay about,", "two hundred a month."],
]
BACKCHANNEL = ["Uh-huh.", "Yeah.", "Right.", "Okay.", "Mm-hmm.", "<cough>"]
INTERRUPTION = [
    "Wait, sorry, I have a question about the price.",
    "No, stop, I'm not interested.",
    "Hold on, can you repeat that?",
    "Actually, I already have solar panels.",
    "Sorry, who is this?",
]


@dataclass(frozen=True)
class Voice:
    name: str
    engine: Literal["piper", "espeak"]
    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w: float = 0.8
    espeak_voice: str = "en-us"
    speed: int = 165
    pitch: int = 50


VOICES = [
    Voice("joe", "piper"),
    Voice("joe-slow", "piper", length_scale=1.2, noise_scale=0.9, noise_w=1.0),
    Voice("joe-fast", "piper", length_scale=0.9, noise_scale=0.5, noise_w=0.6),
    Voice("espeak-en-us", "espeak", espeak_voice="en-us", speed=160),
    Voice("espeak-en-gb", "espeak", espeak_voice="en-gb", speed=150, pitch=40),
    Voice("espeak-en-us-f", "espeak", espeak_voice="en-us+f3", speed=170, pitch=60),
]


@dataclass
class Clip:
    """One labelled phone recording of the caller's side."""

    id: str
    kind: Kind
    voice: str
    text: str
    speech: list[tuple[float, float]]
    """Spans (s) where the caller is actually speaking, from the synthesized parts."""
    agent_speaking: tuple[float, float] | None = None
    """For barge-in clips: the agent talks over this span (s)."""

    @property
    def true_end(self) -> float:
        return self.speech[-1][1]

    @property
    def last_part_start(self) -> float:
        return self.speech[-1][0]


class _Synth:
    def __init__(self) -> None:
        self._piper: Any = None
        espeak_binary()

    def speak(self, text: str, voice: Voice) -> PCM:
        if text == "<cough>":
            return _cough(voice)
        if voice.engine == "piper":
            return self._speak_piper(text, voice)
        return self._speak_espeak(text, voice)

    def _speak_piper(self, text: str, voice: Voice) -> PCM:
        from piper import SynthesisConfig

        from media_edge.tts import load_piper_voice

        if self._piper is None:
            self._piper = load_piper_voice()
        config = SynthesisConfig(
            length_scale=voice.length_scale,
            noise_scale=voice.noise_scale,
            noise_w_scale=voice.noise_w,
        )
        chunks = list(self._piper.synthesize(text, config))
        audio = np.concatenate([c.audio_int16_array for c in chunks])
        return _trim(resample(audio, chunks[0].sample_rate, PHONE_RATE))

    def _speak_espeak(self, text: str, voice: Voice) -> PCM:
        audio, rate = speak(text, voice.espeak_voice, voice.speed, voice.pitch)
        return _trim(resample(audio, rate, PHONE_RATE))


def _trim(audio: PCM, threshold: int = 200) -> PCM:
    """Cut leading and trailing near-silence, so the labelled spans are the speech itself."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > threshold)
    if loud.size == 0:
        return audio
    return audio[loud[0] : loud[-1] + 1]


def _cough(voice: Voice) -> PCM:
    """A cough: a 250 ms burst of shaped noise, seeded by the voice so each differs."""
    rng = np.random.default_rng(zlib.crc32(voice.name.encode()))
    n = int(0.25 * PHONE_RATE)
    envelope = np.exp(-np.linspace(0.0, 6.0, n)) * np.minimum(1.0, np.linspace(0.0, 20.0, n))
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    cough: PCM = (noise * envelope * 9000).astype(np.int16)
    return cough


def _phone(audio: PCM, rng: np.random.Generator, level: float) -> bytes:
    """Scale to a call level, add line noise, encode as G.711 mu-law."""
    peak = max(1.0, float(np.abs(audio.astype(np.float64)).max()))
    scaled = audio.astype(np.float64) * (level * 32767.0 / peak)
    noisy = scaled + rng.normal(0.0, 40.0, size=len(audio))
    return mulaw_encode(np.clip(np.round(noisy), -32768, 32767).astype(np.int16))


def _silence(seconds: float) -> PCM:
    return np.zeros(round(seconds * PHONE_RATE), dtype=np.int16)


def _assemble(
    parts: Sequence[PCM], pauses: Sequence[float], lead: float, tail: float
) -> tuple[PCM, list[tuple[float, float]]]:
    pieces, spans, at = [_silence(lead)], [], lead
    for i, part in enumerate(parts):
        spans.append((round(at, 4), round(at + len(part) / PHONE_RATE, 4)))
        pieces.append(part)
        at += len(part) / PHONE_RATE
        if i < len(parts) - 1:
            pieces.append(_silence(pauses[i]))
            at += pauses[i]
    pieces.append(_silence(tail))
    return np.concatenate(pieces), spans


def build_dataset(out_dir: Path, *, force: bool = False) -> list[Clip]:
    """Synthesize the labelled set into `out_dir` (mu-law `.ulaw` files + `manifest.json`).

    Reuses what is there unless `force`. Deterministic: pauses and noise come from fixed seeds.
    """
    manifest_path = out_dir / "manifest.json"
    if manifest_path.is_file() and not force:
        return load_dataset(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    synth = _Synth()
    rng = np.random.default_rng(20240611)
    clips: list[Clip] = []

    def save(clip: Clip, audio: PCM) -> None:
        level = float(rng.uniform(0.35, 0.9))
        (out_dir / f"{clip.id}.ulaw").write_bytes(_phone(audio, rng, level))
        clips.append(clip)

    for voice in VOICES:
        for i, text in enumerate(COMPLETE):
            audio, spans = _assemble([synth.speak(text, voice)], [], LEAD_S, TAIL_S)
            save(Clip(f"{voice.name}-complete-{i}", "complete", voice.name, text, spans), audio)
        for kind, groups in (("incomplete", INCOMPLETE), ("hesitation", HESITATION)):
            for i, texts in enumerate(groups):
                parts = [synth.speak(t, voice) for t in texts]
                pauses = [float(rng.uniform(0.6, 1.5)) for _ in texts[1:]]
                audio, spans = _assemble(parts, pauses, LEAD_S, TAIL_S)
                text = " ... ".join(texts)
                clip = Clip(f"{voice.name}-{kind}-{i}", kind, voice.name, text, spans)  # type: ignore[arg-type]
                save(clip, audio)
        for kind, texts_ in (("backchannel", BACKCHANNEL), ("interruption", INTERRUPTION)):
            for i, text in enumerate(texts_):
                lead = AGENT_LEAD_S + float(rng.uniform(0.0, 0.6))
                audio, spans = _assemble([synth.speak(text, voice)], [], lead, 1.5)
                agent = (0.0, round(len(audio) / PHONE_RATE, 4))
                clip = Clip(f"{voice.name}-{kind}-{i}", kind, voice.name, text, spans, agent)  # type: ignore[arg-type]
                save(clip, audio)
    manifest = {"version": DATASET_VERSION, "clips": [asdict(c) for c in clips]}
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


ModelFn = Callable[[str, int, PCM], Any]
"""(clip id, frame index of the request, the audio the edge would hand over) -> the answer."""


@dataclass
class ClipRun:
    """What the production endpointer did with one clip."""

    end: EndOfTurn | None = None
    barge_in: BargeIn | None = None
    words: str | None = None


def run_clip(
    clip: Clip,
    audio: PCM,
    probabilities: Sequence[float],
    endpointer: Endpointer,
    verdict: ModelFn | None = None,
    words: ModelFn | None = None,
    model_latency_s: float = 0.0,
    stt_latency_s: float = 0.0,
) -> ClipRun:
    """Drive the edge's `Endpointer` (its policy and barge-in classifier) over one clip's 20 ms
    frames on a simulated clock, as the edge's listener does: the turn model's verdicts and the
    first STT words come back `model_latency_s` / `stt_latency_s` after they were asked for,
    while frames keep arriving. Stops at the first end of turn or barge-in."""
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
    barge = run.barge_in
    if barge is None:
        return BargeOutcome(clip.id, clip.kind, False, None, run.words)
    latency = (barge.at - barge.speech_started_at) * 1000
    return BargeOutcome(clip.id, clip.kind, True, latency, run.words)


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
                kind: sum(t.premature for t in self.turns if t.kind == kind) for kind in TURN_KINDS
            },
            "premature_rate_paused": (
                sum(t.premature for t in paused) / len(paused) if paused else None
            ),
            "missed_interruptions": sum(not b.interrupted for b in interruptions),
            "interruptions": len(interruptions),
            "false_interruptions": sum(b.interrupted for b in backchannels),
            "backchannels": len(backchannels),
            "median_interrupt_latency_ms": _percentile(latencies, 50),
        }
        if self.turns:
            row["expected_cost_ms"] = expected_cost_ms(row)
        return row


class _Models:
    """Smart Turn and Whisper with per-(clip, frame) caches, shared by all configurations; their
    times are CPU times (see `evaluate`)."""

    def __init__(self, out_dir: Path, clips: Sequence[Clip]) -> None:
        self.audio = {c.id: clip_audio(out_dir, c) for c in clips}
        self.smart_turn = SmartTurnModel(threads=1)
        self._verdicts: dict[tuple[str, int, int], float] = {}
        self._words: dict[tuple[str, int, int], str] = {}
        self._stt: Any = None
        self.smart_turn_ms: list[float] = []
        self.stt_ms: list[float] = []

    def verdict(self, clip_id: str, frame: int, audio: PCM) -> float:
        key = (clip_id, frame, len(audio))
        if key not in self._verdicts:
            started = time.thread_time()
            self._verdicts[key] = self.smart_turn.predict(audio)
            self.smart_turn_ms.append((time.thread_time() - started) * 1000)
        return self._verdicts[key]

    def words(self, clip_id: str, frame: int, audio: PCM) -> str:
        key = (clip_id, frame, len(audio))
        if key not in self._words:
            if self._stt is None:
                from media_edge.stt import WhisperSTT

                self._stt = WhisperSTT(ThreadPoolExecutor(max_workers=1), cpu_threads=2)
            started = time.process_time()
            text: str = self._stt.transcribe_sync(audio, PHONE_RATE).text
            self.stt_ms.append((time.process_time() - started) * 1000)
            self._words[key] = text
        return self._words[key]


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
DURATION_BARGE_IN = BargeInClassifier(min_interrupt_ms=200, use_words=False)
"""The 200 ms barge-in rule: any caller speech of 200 ms over the agent interrupts."""


CUT_OFF_COST_MS = 3000
"""What a premature cut-off costs the caller: the agent answers half a sentence, the caller
repeats. Used to weigh cut-offs against waiting when choosing the defaults."""


def expected_cost_ms(row: dict[str, Any]) -> float:
    """Mean wait per turn, counting each cut-off as `CUT_OFF_COST_MS`."""
    premature = float(row["premature_rate"])
    return (1 - premature) * float(row["mean_delay_ms"] or 0.0) + premature * CUT_OFF_COST_MS


def _choose_smart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The lowest expected cost, then the lowest p90."""
    return min(rows, key=lambda r: (round(expected_cost_ms(r)), r["p90_delay_ms"]))


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


def evaluate(data_dir: Path, *, threads: int = 2) -> dict[str, Any]:
    """Run every policy over the (cached) set; returns the whole report as JSON-able data."""
    started = time.perf_counter()
    clips = build_dataset(data_dir)
    built_s = time.perf_counter() - started
    turn_clips = [c for c in clips if c.kind in TURN_KINDS]
    barge_clips = [c for c in clips if c.kind in BARGE_KINDS]
    models = _Models(data_dir, clips)
    probabilities = {c.id: frame_probabilities(models.audio[c.id]) for c in clips}
    config = endpointer_config(Settings())
    """The edge's own endpointer settings (speech threshold, hysteresis, minimum speech...)."""

    # The model's time to answer is added to when its verdict arrives. It is measured as CPU
    # time (the model runs on one thread), so a machine busy with other work does not inflate
    # it; the first STT words likewise (their CPU time over both threads, an upper bound).
    probe = models.audio[turn_clips[0].id]
    timings = []
    for _ in range(5):
        t0 = time.thread_time()
        models.smart_turn.predict(probe)
        timings.append(time.thread_time() - t0)
    model_latency_s = statistics.median(timings)

    def drive(
        clip: Clip,
        policy: EndpointPolicy,
        classifier: BargeInClassifier = DURATION_BARGE_IN,
        stt_latency_s: float = 0.0,
    ) -> ClipRun:
        return run_clip(
            clip,
            models.audio[clip.id],
            probabilities[clip.id],
            Endpointer(config, policy, classifier),
            models.verdict,
            models.words if classifier.use_words else None,
            model_latency_s,
            stt_latency_s,
        )

    def smart_turns(cfg: SmartTurnConfig) -> list[TurnOutcome]:
        return [turn_outcome(c, drive(c, SmartTurnPolicy(cfg))) for c in turn_clips]

    # Configurations run in parallel: one clip's configurations share most of their pauses.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        smart_outcomes = dict(zip(SMART_GRID, pool.map(smart_turns, SMART_GRID), strict=True))
    smart_sweep = [
        PolicyResult("smart", turns, [], asdict(cfg)).summary()
        for cfg, turns in smart_outcomes.items()
    ]
    best_smart_row = _choose_smart(smart_sweep)
    best_smart = SmartTurnConfig(**best_smart_row["config"])

    barge_rows = []
    barge_results: dict[str, list[BargeOutcome]] = {}
    for classifier in BARGE_GRID:
        runs = [drive(c, SmartTurnPolicy(best_smart), classifier) for c in barge_clips]
        if classifier.use_words:
            stt_latency_s = statistics.median(models.stt_ms) / 1000 if models.stt_ms else 0.0
            runs = [
                drive(c, SmartTurnPolicy(best_smart), classifier, stt_latency_s)
                for c in barge_clips
            ]
        outcomes = [barge_outcome(c, r) for c, r in zip(barge_clips, runs, strict=True)]
        name = f"{classifier.min_interrupt_ms} ms" + (" + words" if classifier.use_words else "")
        barge_results[name] = outcomes
        barge_rows.append(PolicyResult(name, [], outcomes, asdict(classifier)).summary())
    best_barge_row = _choose_barge(barge_rows)
    best_barge = BargeInClassifier(**best_barge_row["config"])
    best_barge_name = best_barge_row["policy"]

    fixed = {}
    for ms in (500, 800):
        fixed[ms] = PolicyResult(
            f"fixed silence {ms} ms",
            [turn_outcome(c, drive(c, FixedSilencePolicy(ms))) for c in turn_clips],
            [barge_outcome(c, drive(c, FixedSilencePolicy(ms))) for c in barge_clips],
            {"silence_ms": ms, "barge_in": asdict(DURATION_BARGE_IN)},
        )
    smart = PolicyResult(
        "VAD + Smart Turn, sweep's best",
        smart_outcomes[best_smart],
        barge_results[best_barge_name],
        {**asdict(best_smart), "barge_in": asdict(best_barge)},
    )
    settings = Settings()
    edge_classifier = barge_in_classifier(settings)
    stt_latency_s = statistics.median(models.stt_ms) / 1000 if models.stt_ms else 0.0
    edge = PolicyResult(
        "VAD + Smart Turn, edge defaults",
        [turn_outcome(c, drive(c, endpoint_policy(settings))) for c in turn_clips],
        [
            barge_outcome(c, drive(c, endpoint_policy(settings), edge_classifier, stt_latency_s))
            for c in barge_clips
        ],
        {"endpoint_policy": repr(endpoint_policy(settings)), "barge_in": asdict(edge_classifier)},
    )
    policies = [fixed[500], fixed[800], smart, edge]
    return {
        "dataset": {
            "version": DATASET_VERSION,
            "clips": len(clips),
            "by_kind": {k: sum(c.kind == k for c in clips) for k in TURN_KINDS + BARGE_KINDS},
            "voices": [v.name for v in VOICES],
            "build_or_load_s": round(built_s, 1),
        },
        "endpointer": asdict(config),
        "smart_turn_inference_ms": {
            "alone": round(model_latency_s * 1000, 1),
            "median_in_sweep": (
                statistics.median(models.smart_turn_ms) if models.smart_turn_ms else None
            ),
            "count": len(models.smart_turn_ms),
        },
        "stt_first_words_ms": statistics.median(models.stt_ms) if models.stt_ms else None,
        "policies": [p.summary() for p in policies],
        "chosen": {"smart_turn": asdict(best_smart), "barge_in": asdict(best_barge)},
        "smart_turn_sweep": smart_sweep,
        "barge_in_sweep": barge_rows,
        "outcomes": {
            p.name: {
                "turns": [asdict(t) for t in p.turns],
                "barge_ins": [asdict(b) for b in p.barge_ins],
            }
            for p in policies
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def _fmt(value: float | None, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| policy | median delay (ms) | p90 delay (ms) | median, complete turns (ms) "
        "| premature cut-off | missed interruptions "
        "| false interruptions | expected cost (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["policies"]:
        lines.append(
            f"| {row['policy']} | {_fmt(row['median_delay_ms'])} | {_fmt(row['p90_delay_ms'])} "
            f"| {_fmt(row['median_delay_complete_ms'])} "
            f"| {_fmt(row['premature_rate'] * 100, '{:.1f}')} % "
            f"| {row['missed_interruptions']}/{row['interruptions']} "
            f"| {row['false_interruptions']}/{row['backchannels']} "
            f"| {_fmt(row['expected_cost_ms'])} |"
        )
    data = report["dataset"]
    chosen = report["chosen"]
    st, bi = chosen["smart_turn"], chosen["barge_in"]
    lines += [
        "",
        f"{data['clips']} clips ({', '.join(f'{n} {k}' for k, n in data['by_kind'].items())}), "
        f"{len(data['voices'])} voices ({', '.join(data['voices'])}), 8 kHz mu-law. Delay: from "
        "the true end of speech to the endpoint, over turns not cut off. Premature: the turn "
        "ended before the caller finished. Fixed-silence rows use the 200 ms barge-in rule "
        "(200 ms of speech over the agent interrupts it). Expected cost: mean delay per "
        "turn, a cut-off counted as "
        f"{CUT_OFF_COST_MS} ms (the caller repeats). The last row is what the edge runs "
        "with its default settings.",
        "",
        f"Chosen: Smart Turn threshold {st['threshold']}, min pause {st['min_pause_ms']} ms, "
        f"max silence {st['max_silence_ms']} ms; barge-in after {bi['min_interrupt_ms']} ms of "
        f"speech{', confirmed by the first STT words' if bi['use_words'] else ''}. "
        f"Smart Turn inference {_fmt(report['smart_turn_inference_ms']['alone'])} ms of CPU "
        "(added to its delays); first STT words (Whisper tiny.en) "
        f"{_fmt(report['stt_first_words_ms'])} ms of CPU (added to word-confirmed barge-ins).",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p["policy"] for p in report["policies"]]
    delays = [
        [t["delay_ms"] for t in report["outcomes"][n]["turns"] if t["delay_ms"] is not None]
        for n in names
    ]
    premature = [p["premature_rate"] * 100 for p in report["policies"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.boxplot(delays, whis=(10, 90), showfliers=True)
    left.set_xticks(range(1, len(names) + 1), names, fontsize=8)
    left.set_ylabel("endpointing delay after end of speech (ms)")
    left.set_title("How long the caller waits")
    bars = right.bar(names, premature, color=["#999", "#666", "#2a7", "#27a"])
    right.bar_label(bars, fmt="%.1f %%")
    right.set_ylabel("turns cut off before the caller finished (%)")
    right.set_title("Premature cut-offs")
    right.tick_params(axis="x", labelsize=8)
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
