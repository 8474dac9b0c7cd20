"""The custom search attributes a call shows in the Temporal Web UI, and their first values.

The workflow upserts them as the call moves; the client sets the first ones when it starts a
call; the dev server and `ensure_search_attributes` register the same keys.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from workflows.messages import CallInput, CallStatus
from workflows.script import opening_state

CALL_STATUS = SearchAttributeKey.for_keyword("CallStatus")
SCRIPT_STATE = SearchAttributeKey.for_keyword("ScriptState")
OUTCOME = SearchAttributeKey.for_keyword("Outcome")
SCRIPT_NAME = SearchAttributeKey.for_keyword("ScriptName")
SEARCH_ATTRIBUTE_KEYS: tuple[SearchAttributeKey[str], ...] = (
    CALL_STATUS,
    SCRIPT_STATE,
    OUTCOME,
    SCRIPT_NAME,
)


def initial_search_attributes(call_input: CallInput) -> TypedSearchAttributes:
    """What a call shows in the Web UI before its workflow has run a single task."""
    start = opening_state(call_input.playbook, follow_up=bool(call_input.follow_up_of))
    return TypedSearchAttributes(
        [
            SearchAttributePair(CALL_STATUS, CallStatus.RINGING.value),
            SearchAttributePair(SCRIPT_NAME, call_input.script_name),
            SearchAttributePair(SCRIPT_STATE, start),
        ]
    )
