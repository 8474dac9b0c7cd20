"""`slot eval calls` measures, computed on synthetic timelines (media-clock ms)."""

from __future__ import annotations

from pathlib import Path

from evals.call_metrics import CallMetrics, call_metrics, percentile
from media_edge.events import AgentUtterance, BargeIn, UtteranceDone
from media_edge.events import CallEvent as EdgeEvent
from simulator.phone import AgentSegment, SpokenLine
from slot.playbooks import load_playbook
from workflows.script import opening, respond

ROOT = Path(__file__).resolve().parents[2]


def turn(
    start: int, end: int, *, interrupting: bool = False, backchannel: bool = False, uid: str = ""
) -> SpokenLine:
    """A caller line whose words run from `start` to `end` (padding around them)."""
    return SpokenLine(
        0,
        "words",
        start - 20,
        end + 60,
        interrupting,
        backchannel,
        voiced_start_ms=start,
        voiced_end_ms=end,
        utterance_id=uid or None,
    )


def said(uid: str, text: str, tier: str = "script", reason: str = "") -> AgentUtterance:
    return AgentUtterance(utterance_id=uid, text=text, state="s", tier=tier, reason=reason)


def test_response_latency_runs_from_the_end_of_the_words_to_the_next_agent_audio() -> None:
    lines = [turn(3000, 4000), turn(8000, 9000)]
    segments = [AgentSegment(0, 2500, False), AgentSegment(4400, 7000, False)]
    segments.append(AgentSegment(9900, 12000, False))
    metrics = call_metrics(lines, segments, [], [])
    assert metrics.response_latency_ms == [400, 900]
    assert metrics.premature_cutoffs == 0 and metrics.unanswered_turns == 0


def test_agent_audio_during_a_mid_sentence_pause_is_a_premature_cut_off() -> None:
    lines = [turn(3000, 6000)]  # "um... let me think... Wednesday", pauses inside
    segments = [AgentSegment(0, 2500, False), AgentSegment(4200, 5000, True)]
    segments.append(AgentSegment(6300, 8000, False))
    metrics = call_metrics(lines, segments, [5000], [])
    assert metrics.premature_cutoffs == 1
    assert metrics.summary()["premature_cutoff_pct"] == 100.0
    assert metrics.response_latency_ms == [300]


def test_a_turn_the_agent_never_answers_has_no_latency() -> None:
    lines = [turn(3000, 4000), turn(40000, 41000)]
    segments = [AgentSegment(41500, 43000, False)]
    metrics = call_metrics(lines, segments, [], [])
    assert metrics.unanswered_turns == 1
    assert metrics.response_latency_ms == [500]


def test_barge_in_reaction_runs_from_the_interrupting_words_to_the_clear() -> None:
    lines = [turn(2000, 3000, interrupting=True), turn(9000, 9500, interrupting=True)]
    segments = [AgentSegment(500, 2300, True), AgentSegment(3400, 5000, False)]
    segments.append(AgentSegment(8000, 12000, False))  # talked through the second one
    metrics = call_metrics(lines, segments, [2300], [])
    assert metrics.barge_in_reaction_ms == [300]
    assert metrics.barge_ins_unanswered == 1
    assert metrics.summary()["barge_ins"] == 2


def test_an_interruption_after_the_agent_finished_is_not_a_barge_in() -> None:
    metrics = call_metrics(
        [turn(3000, 4000, interrupting=True)], [AgentSegment(0, 2500, False)], [], []
    )
    assert metrics.barge_in_reaction_ms == [] and metrics.barge_ins_unanswered == 0


def test_fallback_rate_runs_and_identical_lines_come_from_agent_utterances() -> None:
    events: list[EdgeEvent] = [
        said("u1", "Hi, is this Dana?"),
        said("u2", "Sorry, could you say that again?", "fallback"),
        said("u3", "Sorry, could you say that again?", "fallback"),
        said("u4", "Do you own your home?", "classifier"),
        said("u5", "Sorry, could you say that again?", "fallback"),
    ]
    metrics = call_metrics([], [], [], events)
    assert (metrics.agent_turns, metrics.fallback_turns) == (5, 3)
    assert metrics.longest_fallback_run == 2
    assert metrics.identical_in_a_row == 1
    assert metrics.summary()["fallback_pct"] == 60.0


def test_a_line_withdrawn_before_it_played_was_not_heard_and_is_not_counted() -> None:
    """A continued turn's premature reply is withdrawn unplayed and the workflow answers again,
    often with the same line: the caller heard it once."""
    question = "Which weekday works best for a short visit?"
    events: list[EdgeEvent] = [
        said("u1", question, "script"),
        said("u2", "Would Tuesday morning or afternoon be better?", "script"),
        UtteranceDone(utterance_id="u2", interrupted=True, heard=False),
        said("u3", question, "script"),
        said("u4", question, "script"),
    ]
    metrics = call_metrics([], [], [], events)
    assert metrics.agent_turns == 3
    assert metrics.identical_in_a_row == 2, "u1 then u3 (u2 unheard between them), then u4"


def test_a_line_cut_off_and_said_again_whole_is_a_restart_not_a_repeat() -> None:
    """The caller went on over the first words of a reply (a continued turn); the joined turn
    got the same line, heard whole. A line heard to its end and then said again is a repeat."""
    question = "About how much is your power bill each month?"
    events: list[EdgeEvent] = [
        said("u1", question, "script"),
        UtteranceDone(utterance_id="u1", interrupted=True),
        said("u2", question, "intent"),
        UtteranceDone(utterance_id="u2", interrupted=False),
        said("u3", question, "intent"),
    ]
    metrics = call_metrics([], [], [], events)
    assert metrics.agent_turns == 3
    assert metrics.identical_in_a_row == 1, "u3 after u2 heard whole; not u2 after u1 cut off"


def test_a_line_the_caller_asked_to_hear_again_is_not_a_repeat() -> None:
    """ "What did you say?" gets the line again, by the script's repeat rule: an answer, not a
    loop. The same line again without being asked is one."""
    playbook = load_playbook("solar_survey", ROOT / "playbooks")
    first = opening(playbook, {"lead_name": "Dana"})
    asked = respond(playbook, first.state, first.slots, "Sorry, what did you say?")
    assert asked.text == first.text
    events: list[EdgeEvent] = [
        said("u1", first.text, "script"),
        said("u2", asked.text, asked.tier.value, asked.reason),
        said("u3", first.text, "classifier", "classifier: yes (0.62)"),
    ]
    metrics = call_metrics([], [], [], events)
    assert metrics.identical_in_a_row == 1, "u3 after u2; not u2, which the caller asked for"


def test_after_a_backchannel_the_agent_line_must_play_to_its_end() -> None:
    lines = [
        turn(1000, 1300, backchannel=True, uid="u1"),
        turn(5000, 5300, backchannel=True, uid="u2"),
        turn(9000, 9300, backchannel=True, uid="u3"),
    ]
    events: list[EdgeEvent] = [
        UtteranceDone(utterance_id="u1", interrupted=False),  # paused, resumed, finished
        BargeIn(utterance_id="u2", heard_text="Do you", played_ms=900),
        UtteranceDone(utterance_id="u2", interrupted=True),
    ]  # u3: the call ended before it finished
    metrics = call_metrics(lines, [], [], events)
    assert (metrics.backchannels, metrics.backchannels_completed) == (3, 1)
    assert metrics.caller_turns == 0, "a backchannel is not a turn"


def test_sets_combine_by_pooling_samples() -> None:
    a = CallMetrics(caller_turns=2, response_latency_ms=[100, 300], longest_fallback_run=1)
    b = CallMetrics(caller_turns=1, response_latency_ms=[900], longest_fallback_run=3)
    both = a.combine(b)
    assert both.caller_turns == 3 and both.longest_fallback_run == 3
    assert both.summary()["latency_p50_ms"] == 300.0
    assert percentile([], 50) is None
