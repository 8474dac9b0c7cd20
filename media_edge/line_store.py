"""Fixed script lines as phone audio on disk, shared by every edge on the machine.

A line's audio depends only on the voice and the text, so an edge that restarts (or a second
edge beside it) reads the lines it pre-synthesizes at start-up instead of synthesizing them
again: several seconds of CPU per start, which every caller of that edge would otherwise share.
Files are written whole (a temporary file, then a rename), so edges may share the folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from media_edge.tts import PhoneChunk

FORMAT = "2"
"""Bumped when what a stored line holds, or how Slot renders a voice's speech, changes."""

logger = logging.getLogger("slot.media_edge")


class LineStore:
    """One voice's rendered lines in `folder`, keyed by a hash of the voice and the text."""

    def __init__(self, folder: Path, voice: str) -> None:
        self.folder = folder
        self.voice = voice

    def path(self, text: str) -> Path:
        digest = hashlib.sha256(f"{FORMAT}\0{self.voice}\0{text}".encode()).hexdigest()
        return self.folder / f"{digest[:40]}.json"

    def load(self, text: str) -> tuple[PhoneChunk, ...] | None:
        """The stored line, or None (absent, or unreadable: then it is synthesized again)."""
        try:
            stored = json.loads(self.path(text).read_text(encoding="utf-8"))
            if stored["voice"] != self.voice or stored["text"] != text:
                return None
            return tuple(
                PhoneChunk(
                    audio=base64.b64decode(chunk["audio"]), text=chunk["text"], voice=chunk["by"]
                )
                for chunk in stored["chunks"]
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning(
                "stored line %s unreadable (%s); synthesizing it", self.path(text), error
            )
            return None

    def save(self, text: str, chunks: tuple[PhoneChunk, ...]) -> None:
        stored = {
            "voice": self.voice,
            "text": text,
            "chunks": [
                {
                    "text": chunk.text,
                    "by": chunk.voice,
                    "audio": base64.b64encode(chunk.audio).decode("ascii"),
                }
                for chunk in chunks
            ],
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(stored, file)
            os.replace(temporary, self.path(text))
        except OSError as error:
            logger.warning("line not stored in %s: %s", self.folder, error)
