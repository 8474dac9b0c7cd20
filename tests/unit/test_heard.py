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


def test_a_streamed_utterance_counts_its_chunks_as_one_text_timed_by_its_words() -> None:
    """Cartesia's chunks share one timed text; Piper's rest after a drop follows as its own."""
    from media_edge.providers import SpokenText, TimedWord

    spoken = SpokenText(
        "Solar panels cut bills,",
        [
            TimedWord("Solar", 0, 400),
            TimedWord("panels", 450, 900),
            TimedWord("cut", 950, 1200),
            TimedWord("bills,", 1250, 1700),
        ],
    )
    pb = Playback(playback().decision)
    pb.chunks = [
        ChunkPlay("c-u3:0", "", 500.0, spoken=spoken),
        ChunkPlay("c-u3:1", "", 1300.0, spoken=spoken),
        ChunkPlay("c-u3:2", "and the survey is free.", 2000.0),
    ]
    pb.first_frame_at = 10.0
    pb.on_mark("c-u3:0", now=10.5)
    assert pb.heard(now=11.0) == ("Solar panels", 1000)  # "cut" has not ended
    assert pb.heard(now=11.23)[0] == "Solar panels cut"
    pb.on_mark("c-u3:1", now=11.8)
    assert pb.heard(now=12.8) == ("Solar panels cut bills, and the", 2800)
