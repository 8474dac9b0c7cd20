"""The Deepgram double's fast mode: it knows what the caller said instead of running Whisper.

`slot bench --speech standin` measures Slot's own part of a turn, so the stand-in for speech
recognition must cost next to nothing. The simulated caller speaks clips synthesized ahead
(`simulator.caller_audio`), and the edge streams Twilio's mu-law to Deepgram unchanged, so the
frames the double receives are byte for byte the frames of a registered clip. `KnownLines` maps
every frame of each registered clip to its text and answers a stretch of audio with the text
most of its frames belong to: a dictionary lookup per frame, no model. Audio the edge failed to
stream is still missing (no frames, no words). A test tool: it only knows the lines it was told.

Registration travels as a JSON file (`--known-lines` of `python -m simulator.deepgram_double`):
`{"lines": [{"text": ..., "audio": <base64 mu-law>}]}`, written by whoever synthesized them.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

FRAME = 160
"""20 ms of 8 kHz mu-law: the unit Twilio sends and the edge forwards."""


class KnownLines:
    """Text of registered caller clips, recognized from their frames."""

    def __init__(self) -> None:
        self._text_of: dict[bytes, str | None] = {}
        """Frame -> its clip's text; None for a frame two different texts share (silence)."""

    def register(self, text: str, frames: Iterable[bytes]) -> None:
        for frame in frames:
            if len(frame) != FRAME:
                continue
            known = self._text_of.get(frame, text)
            self._text_of[frame] = text if known == text else None

    def __len__(self) -> int:
        return len({text for text in self._text_of.values() if text is not None})

    def text(self, audio: bytes) -> str:
        """The registered line most of `audio`'s frames come from ("" if none)."""
        votes: Counter[str] = Counter()
        for at in range(0, len(audio) - FRAME + 1, FRAME):
            text = self._text_of.get(audio[at : at + FRAME])
            if text is not None:
                votes[text] += 1
        return votes.most_common(1)[0][0] if votes else ""

    async def recognize(self, audio: bytes) -> str:
        """The double's `Recognizer`."""
        return self.text(audio)

    def dump(self, path: Path, lines: Iterable[tuple[str, bytes]]) -> None:
        """Write `lines` (text, mu-law) for a double in another process, and register them."""
        items = []
        for text, audio in lines:
            self.register(text, _frames(audio))
            items.append({"text": text, "audio": base64.b64encode(audio).decode()})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"lines": items}), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> KnownLines:
        known = cls()
        for item in json.loads(path.read_text(encoding="utf-8"))["lines"]:
            known.register(str(item["text"]), _frames(base64.b64decode(item["audio"])))
        return known


def _frames(audio: bytes) -> list[bytes]:
    return [audio[at : at + FRAME] for at in range(0, len(audio) - FRAME + 1, FRAME)]
