"""The scripted LLM of `slot llm-server` reads a DecideTurn prompt like a very literal model."""

from __future__ import annotations

from simulator.scripted_llm import decide

PASSAGE = (
    "[solar_survey/warranty.md#0] Warranty > How long is the warranty? "
    "(solar_survey/warranty.md): Our panels carry a 25-year performance warranty. "
    "The inverter is covered for 12 years. Installation work is guaranteed for 10 years."
)
PROMPT = f"""You are Sam, a friendly phone agent for Sunny Solar.
You follow a strict script. The call is in state "qualify", where you said:
"Great. About how much is your power bill each month?"

Passages:

{PASSAGE}
"""


def test_answers_from_the_first_passage_and_asks_the_state_question_again() -> None:
    body = {
        "messages": [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": [{"type": "text", "text": "Caller: warranty?"}]},
        ]
    }
    decision = decide(body)
    assert decision["next_state"] == "qualify"
    assert decision["say"] == (
        "Our panels carry a 25-year performance warranty. The inverter is covered for 12 "
        "years. About how much is your power bill each month?"
    )
    assert decision["cited_ids"] == ["solar_survey/warranty.md#0"]


def test_without_passages_it_offers_a_specialist() -> None:
    body = {"messages": [{"role": "system", "content": PROMPT.split("Passages:")[0]}]}
    decision = decide(body)
    assert decision["cited_ids"] == []
    assert decision["say"].startswith("Good question.")
