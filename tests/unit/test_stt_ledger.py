"""The streaming recognizer's bookkeeping (pure): what is resent after a drop, which words belong
to a segment, what is held back while the agent talks; and the endpointer's end on a
recognizer's word."""

from __future__ import annotations

import numpy as np

from media_edge.audio import FRAME_SAMPLES
from media_edge.endpointer import EndOfTurn, Endpointer, EndpointerConfig
from media_edge.stt_ledger import AudioGate, AudioLedger, Word, WordLog


def test_a_new_connection_is_sent_everything_not_yet_final() -> None:
    ledger = AudioLedger(keep=1000)
    ledger.append(b"a" * 300)
    assert ledger.unsent() == b"a" * 300
    ledger.append(b"b" * 200)
    ledger.finalized(250)
    assert ledger.unsent() == b"b" * 200
    assert ledger.rewind() == 250, "the new connection's time starts at the first unfinal sample"
    assert ledger.unsent() == b"a" * 50 + b"b" * 200


def test_the_ledger_keeps_at_most_its_limit() -> None:
    ledger = AudioLedger(keep=100)
    ledger.append(b"x" * 250)
    assert (ledger.base, ledger.end) == (150, 250)
    assert ledger.rewind() == 150
    assert len(ledger.unsent()) == 100


def test_audio_not_yet_sent_is_never_dropped_as_final() -> None:
    ledger = AudioLedger(keep=1000)
    ledger.append(b"a" * 100)
    ledger.unsent()
    ledger.append(b"b" * 100)
    ledger.finalized(180)
    assert ledger.unsent() == b"b" * 100


def test_a_segment_gets_the_words_whose_middle_is_inside_it() -> None:
    log = WordLog()
    log.add_final([Word("yes", 0, 100), Word("we", 100, 200)], through=250)
    log.set_interim([Word("own", 260, 400)])
    assert log.text(150, 500) == "we"
    assert log.text(150, 500, interim=True) == "we own"
    log.add_final([Word("we", 100, 200), Word("own", 260, 400)], through=450)
    assert log.text(0, 500) == "yes we own", "words already final are not added twice"
    assert log.interim == []


def test_silence_over_the_agent_is_held_back_and_its_last_moment_sent_at_the_onset() -> None:
    gate = AudioGate(hold=300)
    assert gate.push(b"1" * 160, agent_speaking=False, caller_audible=False) == b"1" * 160
    for digit in b"23":
        assert gate.push(bytes([digit]) * 160, agent_speaking=True, caller_audible=False) == b""
    assert gate.holding
    sent = gate.push(b"4" * 160, agent_speaking=True, caller_audible=True)
    assert sent == b"2" * 160 + b"3" * 160 + b"4" * 160
    assert not gate.holding


def test_the_endpointer_ends_a_turn_when_the_recognizer_says_so() -> None:
    endpointer = Endpointer(EndpointerConfig(min_speech_ms=20, speculative_after_ms=1000))
    frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    assert endpointer.end_now("utterance_end", 0.0) == [], "no turn open"
    endpointer.push(frame, 0.9, 0.0, False)
    assert endpointer.end_now("utterance_end", 0.02) == [], "the caller is still talking"
    (flux,) = endpointer.end_now("provider", 0.02, paused=False)
    assert isinstance(flux, EndOfTurn) and flux.reason == "provider"
    endpointer.push(frame, 0.9, 0.1, False)
    endpointer.push(frame, 0.0, 0.12, False)
    (end,) = endpointer.end_now("utterance_end", 0.14)
    assert isinstance(end, EndOfTurn) and end.reason == "utterance_end"
