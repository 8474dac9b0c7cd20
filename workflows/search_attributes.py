"""The custom search attributes a call shows in the Temporal Web UI, and their first values.

The workflow upserts them as the call moves; the client sets the first ones when it starts a
call; the dev server and `ensure_search_attributes` register the same keys.
"""

from __future__ import annotations

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from workflows.messages import CallInput, CallStatus
from workflows.script import Outcome, opening_state

CALL_STATUS = SearchAttributeKey.for_keyword("CallStatus")
SCRIPT_STATE = SearchAttributeKey.for_keyword("ScriptState")
OUTCOME = SearchAttributeKey.for_keyword("Outcome")
SCRIPT_NAME = SearchAttributeKey.for_keyword("ScriptName")
CAMPAIGN_ID = SearchAttributeKey.for_keyword("CampaignId")
"""Set once, when a campaign starts (on it and on each of its calls), never upserted."""
SEARCH_ATTRIBUTE_KEYS: tuple[SearchAttributeKey[str], ...] = (
    CALL_STATUS,
    SCRIPT_STATE,
    OUTCOME,
    SCRIPT_NAME,
)
"""The keys a call keeps up to date as it moves."""
REGISTERED_KEYS: tuple[SearchAttributeKey[str], ...] = (*SEARCH_ATTRIBUTE_KEYS, CAMPAIGN_ID)
"""Every key Slot's workflows use, for the server to register."""


def initial_search_attributes(call_input: CallInput) -> TypedSearchAttributes:
    """What a call shows in the Web UI before its workflow has run a single task."""
    start = opening_state(call_input.playbook, follow_up=bool(call_input.follow_up_of))
    pairs = [
        SearchAttributePair(CALL_STATUS, CallStatus.RINGING.value),
        SearchAttributePair(SCRIPT_NAME, call_input.script_name),
        SearchAttributePair(SCRIPT_STATE, start),
    ]
    if call_input.campaign_id:
        pairs.append(SearchAttributePair(CAMPAIGN_ID, call_input.campaign_id))
    return TypedSearchAttributes(pairs)


def campaign_search_attributes(campaign_id: str, script_name: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(CAMPAIGN_ID, campaign_id),
            SearchAttributePair(SCRIPT_NAME, script_name),
        ]
    )


def call_search_attributes(
    status: CallStatus, state: str, outcome: Outcome | None, script_name: str
) -> dict[str, str | None]:
    """The values a call's search attributes should have now, by attribute name."""
    return {
        CALL_STATUS.name: status.value,
        SCRIPT_STATE.name: state,
        OUTCOME.name: outcome.value if outcome else None,
        SCRIPT_NAME.name: script_name,
    }


def search_attribute_changes(
    published: dict[str, str | None], wanted: dict[str, str | None]
) -> list[SearchAttributeUpdate[str]]:
    """The upserts that turn what was `published` into what is `wanted` (nothing if equal)."""
    updates: list[SearchAttributeUpdate[str]] = []
    for key in SEARCH_ATTRIBUTE_KEYS:
        value = wanted[key.name]
        if key.name in published and published[key.name] == value:
            continue
        updates.append(key.value_set(value) if value is not None else key.value_unset())
    return updates
