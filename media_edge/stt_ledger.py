"""Bookkeeping for one call's streaming speech-to-text: pure, no sockets, no clock.

A streaming recognizer times its words by the audio it has received on its connection. The
edge counts that audio too (`AudioLedger`: mu-law bytes, one per 8 kHz sample), so a caller
segment the listener holds (its last N samples) maps to a window of the recognizer's words
(`WordLog`), and audio the recognizer has not finalized yet is still there to be resent when a
connection drops. While the agent talks and the caller is silent the edge holds the caller's
audio back (`AudioGate`) instead of paying to stream silence, keeping the last moment of it so
the onset of speech over the agent reaches the recognizer whole.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    """A recognized word, timed in samples of the call's audio stream (not of one connection)."""

    text: str
    start: int
    end: int


class AudioLedger:
    """The caller audio streamed this call: offsets are samples since the stream began.

    Keeps what has not been finalized (at most `keep` samples) so a new connection can be sent
    it again; `sent` is how far the current connection has been sent."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._buffer = bytearray()
        self.base = 0
        """Offset of the first kept sample."""
        self.sent = 0

    @property
    def end(self) -> int:
        return self.base + len(self._buffer)

    def append(self, audio: bytes) -> None:
        self._buffer += audio
        overflow = len(self._buffer) - self._keep
        if overflow > 0:
            del self._buffer[:overflow]
            self.base += overflow
            self.sent = max(self.sent, self.base)

    def unsent(self) -> bytes:
        """Audio the current connection has not been sent yet; it counts as sent from now on."""
        chunk = bytes(self._buffer[self.sent - self.base :])
        self.sent = self.end
        return chunk

    def finalized(self, through: int) -> None:
        """The recognizer's words up to `through` are final: that audio is never resent."""
        drop = min(through, self.sent) - self.base
        if drop > 0:
            del self._buffer[:drop]
            self.base += drop

    def rewind(self) -> int:
        """A new connection: everything kept is to be sent again; returns the offset at which
        that connection's own time starts."""
        self.sent = self.base
        return self.base


class WordLog:
    """Final words of the call so far, and the interim words after them."""

    def __init__(self, keep: int = 2000) -> None:
        self.finals: deque[Word] = deque(maxlen=keep)
        self.interim: list[Word] = []
        self.finalized_through = 0
        """Offset up to which the recognizer has sent final words."""

    def add_final(self, words: list[Word], through: int) -> None:
        done = self.finalized_through
        self.finals.extend(w for w in words if (w.start + w.end) // 2 >= done)
        self.finalized_through = max(self.finalized_through, through)
        self.interim = [w for w in self.interim if w.start >= self.finalized_through]

    def set_interim(self, words: list[Word]) -> None:
        self.interim = words

    def text(self, start: int, end: int, *, interim: bool = False) -> str:
        """The words whose middle falls in [start, end), finals first, then interim ones."""
        words = [*self.finals, *(self.interim if interim else [])]
        return " ".join(w.text for w in words if start <= (w.start + w.end) // 2 < end)


class AudioGate:
    """Which caller audio to stream: all of it, except while the agent talks and the caller is
    silent; then the last `hold` samples are kept and sent first when the caller speaks."""

    def __init__(self, hold: int) -> None:
        self._hold = hold
        self._held: deque[bytes] = deque()
        self._held_samples = 0

    @property
    def holding(self) -> bool:
        return self._held_samples > 0

    def push(self, audio: bytes, *, agent_speaking: bool, caller_audible: bool) -> bytes:
        """The audio to stream for this frame (nothing while held back)."""
        if agent_speaking and not caller_audible:
            self._held.append(audio)
            self._held_samples += len(audio)
            while self._held_samples - len(self._held[0]) >= self._hold:
                self._held_samples -= len(self._held.popleft())
            return b""
        if not self._held:
            return audio
        chunk = b"".join([*self._held, audio])
        self._held.clear()
        self._held_samples = 0
        return chunk
