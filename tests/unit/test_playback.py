"""Pausing an utterance at caller speech onset, and resuming it where the caller stopped hearing.

The caller's side is the phone simulator's real-time buffer (`PlaybackBuffer`: audio played 20 ms
per tick, marks echoed once played, every pending mark echoed at once on `clear`, as Twilio
does); the agent's side sends what `Playback` says, the way the speaker does, a few frames ahead.
A simulated clock: one tick is 20 ms.
"""

from __future__ import annotations

from media_edge.audio import FRAME_MS
from media_edge.playback import ChunkPlay, Playback
from simulator.protocol import PlaybackBuffer
from workflows.messages import Decision
from workflows.script import DecisionTier

LEAD_FRAMES = 5
TEXTS = ["Solar panels cut bills,", "and the survey is free.", "Would you like one?"]


def utterance() -> Playback:
    decision = Decision(
        utterance_id="c-u3",
        text=" ".join(TEXTS),
        state="pitch",
        tier=DecisionTier.SCRIPT,
        reason="test",
    )
    pb = Playback(decision)
    number = 0
    for index, (text, count) in enumerate(zip(TEXTS, (20, 25, 15), strict=True)):
        frames = [bytes([number + i]) * 160 for i in range(count)]
        number += count
        pb.add(ChunkPlay(f"c-u3:{index}", text, count * FRAME_MS, frames))
    pb.rendered = True
    return pb


class Call:
    """The agent's sender and the caller's phone, ticking together."""

    def __init__(self, pb: Playback) -> None:
        self.pb = pb
        self.phone = PlaybackBuffer()
        self.heard: list[int] = []
        self.now = 0.0
        self.end_sent = -1

    def send(self) -> None:
        """What the speaker's sender does: frames from the cursor (while playing), each chunk's
        mark after its last frame, the end mark once all are sent; a few frames ahead."""
        pb = self.pb
        while pb.playing.is_set() and pb.cursor < pb.frame_count:
            if self.phone.queued_ms >= LEAD_FRAMES * FRAME_MS:
                return
            frame = pb.cursor
            self.phone.push_audio(pb.frames[frame])
            pb.frame_sent(self.now)
            mark = pb.mark_after(frame)
            if mark is not None:
                self.phone.push_mark(mark)
        if pb.playing.is_set() and pb.cursor == pb.frame_count and self.end_sent != pb.generation:
            self.phone.push_mark("c-u3:end")
            self.end_sent = pb.generation

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            self.send()
            self.now += FRAME_MS / 1000
            played = self.phone.next_frame()
            if played.audio is not None:
                self.heard.append(played.audio[0])
            for name in played.marks:
                self.pb.on_mark(name, self.now)

    def clear(self) -> None:
        for name in self.phone.clear():
            self.pb.on_mark(name, self.now)


def test_a_backchannel_resumes_the_utterance_where_it_stopped_and_the_caller_hears_the_rest() -> (
    None
):
    call = Call(utterance())
    call.tick(30)  # 600 ms: all of the first chunk and some of the second were heard
    heard_before = list(call.heard)
    position = call.pb.pause(call.now)
    call.clear()  # the pending marks, the end mark among them, come back at once
    assert abs(position - len(heard_before) * FRAME_MS) <= FRAME_MS
    assert not call.pb.end_echoed.is_set() and call.pb.heard_chunks == 1
    call.tick(25)  # the caller says "mm-hmm": nothing is sent while paused
    assert call.heard == heard_before
    call.pb.resume()
    call.tick(60)
    assert call.pb.end_echoed.is_set()
    resumed = call.heard[len(heard_before) :]
    # No gap and at most a frame said twice: the caller hears the rest of the same utterance.
    assert resumed[0] in (heard_before[-1], heard_before[-1] + 1)
    assert resumed[-1] == 59 and resumed == list(range(resumed[0], 60))
    assert call.pb.heard(call.now) == (" ".join(TEXTS), 60 * FRAME_MS)


def test_a_real_interruption_reports_what_was_heard_before_the_pause() -> None:
    call = Call(utterance())
    call.tick(42)  # 840 ms heard; the second chunk's mark is queued, its last words are not
    assert "c-u3:1" in call.phone.pending_marks
    call.pb.pause(call.now)
    at_pause = call.pb.heard(call.now)
    call.clear()  # echoes "c-u3:1": audio the caller never heard
    call.tick(40)  # the caller keeps talking: it is an interruption
    assert call.pb.heard(call.now) == at_pause
    text, played_ms = at_pause
    assert text == "Solar panels cut bills, and the survey is"
    assert abs(played_ms - 42 * FRAME_MS) <= FRAME_MS


def test_the_end_mark_echoed_on_clear_does_not_end_a_paused_utterance() -> None:
    call = Call(utterance())
    call.tick(57)  # everything sent, the end mark queued behind the last frames
    assert "c-u3:end" in call.phone.pending_marks
    call.pb.pause(call.now)
    call.clear()
    assert not call.pb.end_echoed.is_set()
    call.pb.resume()
    call.tick(10)
    assert call.pb.end_echoed.is_set() and call.heard[-1] == 59


def test_a_pause_while_the_sender_lags_the_clock_resumes_at_the_first_frame_not_sent() -> None:
    """Under load the sender can fall behind the clock: the caller never heard the frames it had
    not sent, so the resume sends them (it used to jump past them, and past the last frame
    rendered, where the speaker's next send raised IndexError and dropped a campaign call)."""
    pb = utterance()
    for _ in range(5):
        pb.frame_sent(0.0)
    assert pb.position_ms(2.0) == 20 * FRAME_MS  # the clock says the whole first chunk played
    assert pb.pause(2.0) == 5 * FRAME_MS
    pb.resume()
    assert pb.cursor == 5
    assert pb.heard(2.0)[1] == 5 * FRAME_MS
