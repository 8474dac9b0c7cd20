"""One turn's latency split into the time Slot waits on purpose, on providers, and its own.

The edge reports each reply's stages in `agent_utterance.latency_ms` (design: "One turn, step
by step"), all on its monotonic clock:
- `total`: the caller's last voiced frame -> the reply's first audio frame sent to Twilio
  (turn latency);
- turn-taking waits, chosen by policy (`slot eval turns` measures them): `endpointing` (the
  silence before a pause counts), `turn_model` (Smart Turn's verdict), `script_judge` (a
  complete answer's required pause);
- provider time: `stt` (the final words after the pause), `tts_first_audio` (from the decision
  to its first audio), `llm_first_token` (a tier-2 reply);
- Slot's own: `decision` (the Update round trip, the router inside it), `send`, and whatever
  no stage covers (handing the words to the workflow, queueing between stages).

Platform overhead = total - turn-taking waits - provider time: the part of the caller's wait
that no faster speech provider, LLM or endpointing policy would remove.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TURN_TAKING = ("endpointing", "turn_model", "script_judge")
PROVIDERS = ("stt", "tts_first_audio", "llm_first_token")


@dataclass
class TurnSample:
    total_ms: float
    overhead_ms: float
    update_ms: float | None
    stages: dict[str, float] = field(default_factory=dict)


def turn_sample(latency_ms: dict[str, float]) -> TurnSample | None:
    """The turn's figures from an `agent_utterance`'s stages; None for an utterance that does
    not answer caller speech (the greeting, a reprompt)."""
    total = latency_ms.get("total")
    if total is None:
        return None
    excluded = sum(latency_ms.get(stage, 0.0) for stage in (*TURN_TAKING, *PROVIDERS))
    return TurnSample(
        total_ms=total,
        overhead_ms=round(max(0.0, total - excluded), 1),
        update_ms=latency_ms.get("decision"),
        stages=dict(latency_ms),
    )
