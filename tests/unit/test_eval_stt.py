"""`slot eval stt`: the corpus it reads, the biasing it gives Whisper, and how it counts errors."""

from __future__ import annotations

import numpy as np
import pytest

from evals.persona_lines import persona_lines
from evals.stt import (
    CONDITIONS,
    Context,
    Result,
    answer_words,
    biasing,
    corpus,
    phone_audio,
    read_as,
    summarize,
    timed,
)
from evals.wer import number_readings, number_words, score
from media_edge.providers import PCM


def test_numbers_whisper_writes_are_read_as_the_caller_said_them() -> None:
    said = "Um... it's usually around... one forty a month."
    assert score(said, "It's usually around $140 a month.").errors == 0
    assert score("About a hundred and ten.", "About 110.").errors == 0
    assert score("Three thirty works.", "3:30 works.").errors == 0
    assert score("five five five, zero one three four", "555-0134").errors == 0
    assert number_words(1234) == "one thousand two hundred thirty four"
    assert "one forty" in number_readings("140")


def test_errors_are_substitutions_deletions_and_insertions() -> None:
    said = "Yeah, we've owned the place for ten years."
    scored = score(said, "Yeah we won't the place for ten years now")
    assert scored.errors == 3  # we've -> we, owned -> won't, + now
    assert len(scored.reference) == 8
    assert score("Okay.", "OK").errors == 0


def test_the_corpus_is_every_line_once_per_voice_without_pause_marks() -> None:
    lines = persona_lines("heldout")
    paused = [line for line in lines if "..." in line.text]
    assert paused and all("..." not in line.words for line in paused)
    assert {line.kind for line in lines} == {"reply", "backchannel"}
    texts = [(line.voice, line.words.lower()) for line in corpus("heldout")]
    assert len(texts) == len(set(texts))


def test_biasing_is_the_state_question_to_this_caller_and_the_slot_words() -> None:
    contexts = biasing("Georgia")
    assert "Georgia" in contexts["greeting"].prompt
    assert "weekday" in contexts["ask_day"].prompt
    assert "Thursday" in contexts["ask_day"].hotwords
    assert "afternoon" in contexts["ask_time"].hotwords


def test_the_same_line_gives_the_same_audio() -> None:
    line = corpus("dev")[0]
    assert (phone_audio(line) == phone_audio(line)).all()


def test_each_segment_keeps_its_least_time_of_the_repeats() -> None:
    """On clocks the test moves (a timing on the machine's own would depend on its load)."""
    costs = iter([(0.05, 0.04), (0.01, 0.02), (0.03, 0.005)])
    now = {"wall": 0.0, "cpu": 0.0}

    def transcribe(audio: PCM, context: Context | None, second_look: bool) -> str:
        wall, cpu = next(costs)
        now["wall"] += wall
        now["cpu"] += cpu
        return "yes"

    text, wall, cpu = timed(
        transcribe,
        np.zeros(8, dtype=np.int16),
        None,
        repeat=3,
        wall_clock=lambda: now["wall"],
        cpu_clock=lambda: now["cpu"],
    )
    assert text == "yes"
    assert wall == pytest.approx(0.01) and cpu == pytest.approx(0.005)


def test_two_second_rows_hold_only_short_answers_with_their_p90() -> None:
    def result(audio_s: float, ms: float) -> Result:
        seconds = {c: ms / 1000 for c in CONDITIONS}
        return Result(
            "dev", "p", "piper_slow", "reply", "greeting", "Yes.", 1, audio_s,
            {c: "yes" for c in CONDITIONS}, {c: 0 for c in CONDITIONS}, seconds, seconds,
        )  # fmt: skip

    results = [result(2.0, ms) for ms in range(100, 200, 10)] + [result(6.0, 900)]
    row = summarize(results)["dev"]["two_seconds"]
    assert row["utterances"] == 10
    assert row["median_ms_plain"] == pytest.approx(145)
    assert row["p90_ms_plain"] == pytest.approx(181)


def test_answer_words_count_the_hotwords_said_and_how_many_were_heard() -> None:
    said = "Yes, we own it. Thursday mornings, or Thursday."
    hypothesis = {
        "plain": "Yes, we don't it. First mornings or Thursday.",
        "biased": "we own it",
        "second look": "we own it",
    }
    result = Result(
        "dev", "p", "espeak_f3", "reply", "homeowner", said, 9, 2.0, hypothesis,
        {c: 0 for c in CONDITIONS}, {c: 0.1 for c in CONDITIONS}, {c: 0.1 for c in CONDITIONS},
    )  # fmt: skip
    assert answer_words(result, "plain") == (
        4,
        2,
    )  # own, thursday x2, mornings: mornings, 1 thursday
    assert answer_words(result, "biased") == (4, 1)
    row = summarize([result])["dev"]["all"]
    assert row["answer_words"] == 4
    assert row["answer_words_plain"] == pytest.approx(0.5)


def test_answers_read_as_said_and_misread_count_meanings_not_words() -> None:
    """ "Tuesday." heard as "Doomed then." is an answer lost; heard as "Thursday." it is an
    answer misread; "Tuesday, yes." is read as said though its words differ."""
    context = biasing("Dana")["ask_day"]
    meant = read_as(context, "Tuesday.")
    assert meant == "slot:survey_day=Tuesday"
    hypothesis = {"plain": "Doomed then.", "biased": "Thursday.", "second look": "Tuesday, yes."}
    result = Result(
        "dev", "p", "espeak_f3", "reply", "ask_day", "Tuesday.", 1, 1.0, hypothesis,
        {c: 1 for c in CONDITIONS}, {c: 0.1 for c in CONDITIONS}, {c: 0.1 for c in CONDITIONS},
        meant, {c: read_as(context, text) for c, text in hypothesis.items()},
    )  # fmt: skip
    row = summarize([result])["dev"]["all"]
    assert row["answers_said"] == 1
    assert [row[f"answers_read_{c}"] for c in CONDITIONS] == [0.0, 0.0, 1.0]
    assert [row[f"misread_{c}"] for c in CONDITIONS] == [0, 1, 0]
