"""What the caller heard of an interrupted utterance, from the marks Twilio echoed."""

from __future__ import annotations

from media_edge.speaker import ChunkPlay, Playback
from workflows.messages import Decision
from workflows.script import DecisionTier


def playback() -> Playback:
    decision = Decision(
        utterance_id="c-u3",
        text="Solar panels cut bills, and the survey is free. Would you like one?",
        state="pitch",
        tier=DecisionTier.SCRIPT,
        reason="test",
    )
    pb = Playback(decision)
    pb.chunks = [
        ChunkPlay("c-u3:0", "Solar panels cut bills,", 2000.0),
        ChunkPlay("c-u3:1", "and the survey is free.", 2000.0),
        ChunkPlay("c-u3:2", "Would you like one?", 1000.0),
    ]
    pb.first_frame_at = 10.0
    return pb


def test_nothing_echoed_yet_gives_words_by_played_time() -> None:
    pb = playback()
    assert pb.heard(now=11.0) == ("Solar panels", 1000)  # half of 4 words in 1 of 2 s


def test_whole_chunks_from_marks_plus_part_of_the_next() -> None:
    pb = playback()
    pb.on_mark("c-u3:0", now=12.0)
    assert pb.heard(now=13.5) == ("Solar panels cut bills, and the survey", 3500)


def test_played_time_never_exceeds_the_chunk() -> None:
    pb = playback()
    pb.on_mark("c-u3:0", now=12.0)
    pb.on_mark("c-u3:1", now=14.0)
    assert pb.heard(now=30.0) == (
        "Solar panels cut bills, and the survey is free. Would you like one?",
        5000,
    )


def test_end_mark_means_everything_was_heard() -> None:
    pb = playback()
    pb.on_mark("c-u3:end", now=15.0)
    assert pb.end_echoed.is_set()
    assert pb.heard(now=15.0)[0] == pb.decision.text
