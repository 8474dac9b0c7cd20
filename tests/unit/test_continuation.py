"""Which caller speech continues the turn the edge just ended (`media_edge.continuation`)."""

from __future__ import annotations

import itertools

from media_edge.continuation import AFTER_REPLY_MS, ContinuationRule, EndedTurn, undoable_reply
from workflows.call_state import undoable
from workflows.messages import Decision
from workflows.router_messages import LLMTurnRequest
from workflows.script import DecisionTier, Outcome, ScriptStep

RULE = ContinuationRule()


def reply(**changes: object) -> Decision:
    base = Decision(
        utterance_id="c-u4", text="Would Wednesday morning or afternoon be better?",
        state="ask_time", tier=DecisionTier.SCRIPT, reason="slot survey_day",
    )  # fmt: skip
    return base.model_copy(update=changes)


def ended(decision: Decision | None = None) -> EndedTurn:
    return EndedTurn(
        ended_at=10.0, expect_before=None, seq=3, text="Pretty much any weekday", reply=decision
    )


def test_speech_before_the_reply_is_heard_continues_the_turn() -> None:
    assert RULE.continues(ended(), 10.5, reply_started_at=None), "reply still being decided"
    assert RULE.continues(ended(reply()), 11.9, reply_started_at=None), "reply not yet playing"


def test_speech_soon_after_the_reply_starts_continues_it_later_speech_is_a_new_turn() -> None:
    turn = ended(reply())
    assert RULE.continues(turn, 10.6 + AFTER_REPLY_MS / 1000 - 0.01, reply_started_at=10.6)
    assert not RULE.continues(turn, 10.6 + 0.9, reply_started_at=10.6), "an interruption at 900 ms"


def test_speech_from_before_the_turn_ended_or_after_a_withdrawn_reply_does_not() -> None:
    assert not RULE.continues(ended(), 9.9, reply_started_at=None)
    turn = ended(reply())
    turn.withdrawn = True
    assert not RULE.continues(turn, 10.5, reply_started_at=None)


def test_a_reply_with_effects_is_never_withdrawn() -> None:
    for outcome in (Outcome.DO_NOT_CALL, Outcome.BOOKED, Outcome.TRANSFER):
        goodbye = reply(end_call=True, outcome=outcome, state=outcome.value)
        assert not RULE.continues(ended(goodbye), 10.2, reply_started_at=None), outcome
    assert not RULE.continues(ended(reply(hand_over=True)), 10.2, reply_started_at=None)


def test_a_goodbye_the_caller_may_still_talk_out_of_is_withdrawn_like_any_reply() -> None:
    """ "Not Monday..." read as a request to be called back, "Well, I've been thinking about
    solar anyhow..." as a refusal: the rest of the sentence takes the goodbye back."""
    for outcome in (Outcome.CALL_BACK_LATER, Outcome.NOT_INTERESTED, Outcome.WRONG_PERSON):
        goodbye = reply(end_call=True, outcome=outcome, state=outcome.value)
        assert RULE.continues(ended(goodbye), 10.2, reply_started_at=None), outcome
        assert RULE.continues(ended(goodbye), 10.9, reply_started_at=10.6), outcome
        assert not RULE.continues(ended(goodbye), 11.6, reply_started_at=10.6), "barge-in"


def test_the_continued_turn_joins_both_parts() -> None:
    turn = ended()
    assert RULE.joined(turn, "okay, say Wednesday") == "Pretty much any weekday okay, say Wednesday"
    assert RULE.joined(turn, "") == "Pretty much any weekday", "no new words: the first part again"


def test_the_edge_withdraws_exactly_the_replies_the_workflow_can_undo() -> None:
    """`undoable_reply` (edge, on the Decision) and `call_state.undoable` (workflow, on the step)
    must agree: an edge that withdrew a reply the workflow keeps would silence a line the
    transcript says was spoken, and the reverse would speak over a caller's continuation."""
    llm = LLMTurnRequest(
        company="Sunny Solar",
        agent_name="Sam",
        goal="book a survey",
        state="qualify",
        state_line="About how much is your power bill?",
        allowed=[],
        utterance="it depends",
    )
    outcomes = (None, Outcome.BOOKED, Outcome.NOT_INTERESTED, Outcome.DO_NOT_CALL)
    for end_call, outcome, request in itertools.product((False, True), outcomes, (None, llm)):
        step = ScriptStep(
            state="qualify",
            text="A line.",
            tier=DecisionTier.SCRIPT,
            reason="test",
            end_call=end_call,
            outcome=outcome,
            llm_request=request,
        )
        decision = Decision.of(step, "call-1-u3")
        assert undoable_reply(decision) == undoable(step, goodbyes=True), step
        handed_over = decision.model_copy(update={"hand_over": True})
        assert not undoable_reply(handed_over)
