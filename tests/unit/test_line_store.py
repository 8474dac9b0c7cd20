"""Fixed lines kept on disk: a second edge (a fresh `PhoneSpeech`) over the same folder speaks a
stored line from the file, not from its own synthesis; another voice, an LLM phrase or a broken
file never come from it."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from media_edge.line_store import LineStore
from media_edge.tts import EspeakTTS, PhoneChunk, PhoneSpeech

LINE = "Thanks for taking my call. Is this a good time?"


async def rendered(speech: PhoneSpeech, text: str, cacheable: bool = True) -> list[PhoneChunk]:
    return [chunk async for chunk in speech.render(text, cacheable)]


def tampered(store: LineStore, text: str, audio: bytes) -> None:
    """Rewrite a stored line's audio, so a line read from the file can be told apart."""
    path = store.path(text)
    stored = json.loads(path.read_text())
    for chunk in stored["chunks"]:
        chunk["audio"] = base64.b64encode(audio).decode("ascii")
    path.write_text(json.dumps(stored))


async def test_a_second_edge_speaks_a_stored_line_from_the_file(tmp_path: Path) -> None:
    tts = EspeakTTS()
    with ThreadPoolExecutor(1) as executor:
        first = await rendered(
            PhoneSpeech(tts, executor, store=LineStore(tmp_path, tts.identity)), LINE
        )
        store = LineStore(tmp_path, tts.identity)
        assert store.load(LINE) == tuple(first)
        tampered(store, LINE, b"\x7f" * 160)

        again = await rendered(PhoneSpeech(tts, executor, store=store), LINE)

    assert [c.text for c in again] == [c.text for c in first] and len(first) == 2
    assert all(chunk.audio == b"\x7f" * 160 for chunk in again), "read from the file"


async def test_other_voices_llm_phrases_and_broken_files_are_synthesized(tmp_path: Path) -> None:
    tts = EspeakTTS()
    with ThreadPoolExecutor(1) as executor:
        store = LineStore(tmp_path, tts.identity)
        await rendered(PhoneSpeech(tts, executor, store=store), LINE)
        tampered(store, LINE, b"\x7f" * 160)

        other_voice = LineStore(tmp_path, "espeak:en-gb")
        assert other_voice.load(LINE) is None
        spoken = await rendered(PhoneSpeech(tts, executor, store=other_voice), LINE)
        assert all(chunk.audio != b"\x7f" * 160 for chunk in spoken)

        phrase = "Sure, the panels come with a twenty five year warranty."
        await rendered(PhoneSpeech(tts, executor, store=store), phrase, cacheable=False)
        assert store.load(phrase) is None, "a one-off phrase is not stored"

        store.path(LINE).write_text("{not json")
        assert store.load(LINE) is None
        respoken = await rendered(PhoneSpeech(tts, executor, store=store), LINE)
        assert all(chunk.audio != b"\x7f" * 160 for chunk in respoken)
        assert store.load(LINE) == tuple(respoken), "the broken file is written again"
