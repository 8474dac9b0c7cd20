"""The Deepgram double's fast mode: caller clips recognized by their frames, no model."""

from __future__ import annotations

from pathlib import Path

from simulator.known_lines import FRAME, KnownLines

SILENCE = b"\xff" * FRAME


def clip(seed: int, frames: int = 10) -> bytes:
    return b"".join(
        bytes([(seed * 31 + i * 7 + j) % 255 for j in range(FRAME)]) for i in range(frames)
    )


def test_audio_is_answered_with_the_line_most_of_its_frames_come_from(tmp_path: Path) -> None:
    yes, bill = clip(1), clip(2)
    known = KnownLines()
    known.dump(tmp_path / "lines.json", [("Yes, I own my home.", SILENCE + yes + SILENCE)])
    known.register("About a hundred and twenty dollars.", [SILENCE, *_frames(bill)])

    assert known.text(SILENCE * 3 + yes + SILENCE * 5) == "Yes, I own my home."
    assert known.text(bill[: 4 * FRAME] + yes[: 2 * FRAME]) == "About a hundred and twenty dollars."
    assert known.text(SILENCE * 20) == "", "silence is shared by every clip, so it says nothing"
    assert known.text(clip(3)) == "", "a clip nobody registered is not recognized"
    loaded = KnownLines.load(tmp_path / "lines.json")
    assert loaded.text(yes) == "Yes, I own my home." and len(loaded) == 1


def _frames(audio: bytes) -> list[bytes]:
    return [audio[i : i + FRAME] for i in range(0, len(audio), FRAME)]
