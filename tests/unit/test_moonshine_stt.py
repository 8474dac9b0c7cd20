"""Moonshine base from the moonshine-cpp wheel: loads offline, hears Piper speech over the phone
line, and its rebuilt ONNX graph computes what the shipped `.ort` graph does."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest

from evals.persona_lines import PersonaLine
from evals.stt import biasing, phone_audio
from media_edge.audio import PHONE_RATE, mulaw_decode
from media_edge.moonshine_stt import MoonshineSTT, hotword_trie, load_moonshine, model_dir
from media_edge.ort_format import ort_to_onnx
from media_edge.providers import PCM, SpeechContext
from media_edge.stt_models import embedded_stt
from media_edge.tts import PhoneSpeech, PiperTTS
from simulator.caller_voice import named_caller_voice, phone_line, text_seed
from workflows.expectations import AnswerReadings, judge_answer


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def corpus_audio(voice: str, state: str, said: str) -> PCM:
    """A line as `slot eval stt` plays it: the caller voice over the phone line, seeded."""
    return phone_audio(PersonaLine("dev", "test", "Dana", voice, "topic", state, said))


def edge_context(state: str, *, second_look: bool = False) -> SpeechContext:
    """What the edge gives the STT at `state`'s question to Dana; with `second_look`, the
    script's judge of the readings too."""
    context = biasing("Dana")[state]
    readings = AnswerReadings(context.expect) if second_look else None
    return SpeechContext(context.prompt, context.hotwords, readings=readings)


async def phone_speech(text: str, executor: ThreadPoolExecutor) -> PCM:
    speech = PhoneSpeech(PiperTTS(executor), executor)
    chunks = [chunk async for chunk in speech.render(text, cacheable=False)]
    return mulaw_decode(b"".join(c.audio for c in chunks))


def test_the_model_files_come_from_the_installed_wheel_without_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wheel = Path(str(distribution("moonshine-cpp").locate_file("moonshine_cpp")))
    assert model_dir().is_relative_to(wheel)

    def no_network(*args: Any) -> None:
        raise AssertionError("loading Moonshine tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = load_moonshine.__wrapped__(1)
    assert model.cache_shape == (8, 52)
    assert len(model.cache_names) == 32


async def test_piper_speech_over_the_phone_line_is_transcribed(
    executor: ThreadPoolExecutor,
) -> None:
    text = "Good morning. I would like to book a home survey on Thursday."
    audio = await phone_speech(text, executor)
    stt = embedded_stt("moonshine-base", executor, cpu_threads=2)
    assert isinstance(stt, MoonshineSTT)
    transcript = await stt.transcribe(audio, PHONE_RATE)
    assert words(transcript.text) == words(text)
    assert transcript.confidence is not None and 0.0 < transcript.confidence <= 1.0


def test_a_long_answer_is_not_ended_before_its_first_word(executor: ThreadPoolExecutor) -> None:
    """On this 5.6 s turn in a caller voice Moonshine's first step prefers the end token (p 0.7):
    the edge only transcribes speech, so the first step may not end the transcript."""
    text = "Yes, but I'm at work. Could you try me Thursday after five?"
    voice = named_caller_voice("espeak_f5")
    rng = np.random.default_rng(text_seed(voice.spec.name, text))
    audio = mulaw_decode(phone_line(voice.speech(text), rng, voice.spec.noise_rms))
    stt = MoonshineSTT(executor, cpu_threads=2)
    context = SpeechContext("Is now a good time?", ("Thursday", "evening"))
    transcript = stt.transcribe_sync(audio, PHONE_RATE, context)
    assert words(transcript.text)[:5] == words("Yes, but I'm at")


def test_a_blip_too_short_for_a_word_says_nothing(executor: ThreadPoolExecutor) -> None:
    stt = MoonshineSTT(executor, cpu_threads=2)
    assert stt.transcribe_sync(np.zeros(400, dtype=np.int16), PHONE_RATE).text == ""


def test_the_rebuilt_decoder_computes_what_the_ort_file_does() -> None:
    """One decoding step of the shipped `.ort` decoder and of its ONNX copy, same inputs."""
    path = model_dir() / "decoder_model_merged.ort"
    shipped = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rebuilt = ort.InferenceSession(
        ort_to_onnx(path.read_bytes()).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in rebuilt.get_inputs()] == [i.name for i in shipped.get_inputs()]
    encoded = np.random.default_rng(0).standard_normal((1, 40, 416)).astype(np.float32)
    inputs: dict[str, Any] = {
        "input_ids": np.array([[1]], dtype=np.int64),
        "encoder_hidden_states": encoded,
        "use_cache_branch": np.array([False]),
    }
    for i in shipped.get_inputs():
        if i.name.startswith("past_key_values."):
            inputs[i.name] = np.zeros((1, 8, 0, 52), dtype=np.float32)
    expected, got = shipped.run(None, inputs), rebuilt.run(None, inputs)
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-3)
    assert expected[0].std() > 0.1


def test_hotwords_boost_the_tokens_that_start_or_continue_them() -> None:
    tokenizer = load_moonshine(2).tokenizer
    hotwords = hotword_trie(tokenizer, ("Wednesday", "in the morning"))

    def ids(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    wed, nes, day = ids("Wednesday")
    started = hotwords.boosted(frozenset())
    assert {wed, ids("wednesday")[0], ids("in")[0]} <= started
    assert nes not in started
    after_wed = hotwords.advance(frozenset(), wed)
    assert nes in hotwords.boosted(after_wed)
    assert day in hotwords.boosted(hotwords.advance(after_wed, nes))
    assert hotwords.advance(after_wed, ids("hello")[0]) == frozenset()


@pytest.mark.parametrize(
    ("voice", "state", "said", "misheard"),
    [
        ("piper_slow", "ask_day", "Thursday works.", "thursday"),
        ("espeak_f5", "homeowner", "I own the house.", "own"),
    ],
)
def test_the_scripts_hotwords_let_a_misheard_answer_word_through(
    executor: ThreadPoolExecutor, voice: str, state: str, said: str, misheard: str
) -> None:
    """Dev corpus lines Moonshine mishears plain ("Thirsty works.", "I hung the house.") and
    gets right with the hotwords the edge gives it at that question."""
    audio = corpus_audio(voice, state, said)
    stt = MoonshineSTT(executor, cpu_threads=2)
    plain = stt.transcribe_sync(audio, PHONE_RATE)
    biased = stt.transcribe_sync(audio, PHONE_RATE, edge_context(state))
    assert misheard not in words(plain.text)
    assert words(biased.text) == words(said)


def files(folder: Path) -> list[tuple[str, str, int]]:
    return [(p.name, p.suffix, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())]


async def test_the_optimized_graphs_are_kept_once_and_hear_what_the_rebuilt_ones_hear(
    executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    text = "Yes, I own my home. Thursday afternoon works for me."
    audio = await phone_speech(text, executor)
    plain = MoonshineSTT(executor, cpu_threads=2)
    built = load_moonshine.__wrapped__(2, tmp_path)
    kept = files(tmp_path)
    assert [suffix for _, suffix, _ in kept] == [".onnx", ".onnx"]
    reloaded = load_moonshine.__wrapped__(2, tmp_path)
    assert files(tmp_path) == kept
    heard = []
    for model in (built, reloaded):
        stt = MoonshineSTT(executor, cpu_threads=2)
        stt._model = model
        heard.append((await stt.transcribe(audio, PHONE_RATE)).text)
    assert heard == [(await plain.transcribe(audio, PHONE_RATE)).text] * 2


@pytest.mark.parametrize(
    ("voice", "state", "said", "first_reading"),
    [
        ("espeak_f3", "ask_day", "Tuesday.", "Doomed then."),
        ("espeak_m3", "homeowner", "Yeah, I own the house.", "Here, I own the house."),
    ],
)
def test_a_second_look_takes_a_nearly_as_likely_reading_that_answers_the_question(
    executor: ThreadPoolExecutor, voice: str, state: str, said: str, first_reading: str
) -> None:
    """Corpus lines in espeak voices whose likeliest reading the script does not understand:
    the second look finds a reading it does, says what the first was, and reads it as said."""
    audio = corpus_audio(voice, state, said)
    expect = biasing("Dana")[state].expect
    stt = MoonshineSTT(executor, cpu_threads=2)
    first = stt.transcribe_sync(audio, PHONE_RATE, edge_context(state))
    second = stt.transcribe_sync(audio, PHONE_RATE, edge_context(state, second_look=True))
    assert (first.text, first.first_reading) == (first_reading, None)
    assert second.first_reading == first_reading
    assert judge_answer(expect, second.text).meaning == judge_answer(expect, said).meaning
    assert judge_answer(expect, said).meaning is not None


@pytest.mark.parametrize(
    ("voice", "said"),
    [("piper_slow", "Um, maybe Thursday."), ("piper_fast", "Thursday works for me.")],
)
def test_an_understood_first_reading_is_kept_without_a_second_look(
    executor: ThreadPoolExecutor, voice: str, said: str
) -> None:
    """Understood at once: the first reading stands, although the beam holds other readings
    that answer too ("Um, maybe thursday.", "Thursday works for me!")."""
    audio = corpus_audio(voice, "ask_day", said)
    stt = MoonshineSTT(executor, cpu_threads=2)
    heard = stt.transcribe_sync(audio, PHONE_RATE, edge_context("ask_day", second_look=True))
    assert heard.first_reading is None
    assert (
        heard.text == stt.transcribe_sync(audio, PHONE_RATE, edge_context("ask_day")).text == said
    )
