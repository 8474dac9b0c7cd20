"""Retrieval from the knowledge base as a Temporal activity.

The workflow calls `retrieve_passages` when a turn goes past the intent classifier (a question,
or anything the script did not foresee): as a local activity inside the `turn` update (~20-60 ms:
one e5 query embedding and a Qdrant search), and it records the passages it used on the
transcript. The activity is synchronous (CPU-bound embedding), so it runs on the worker's
activity thread pool.
"""

from __future__ import annotations

from temporalio import activity

from slot.kb import KnowledgeBase, open_knowledge_base
from slot.settings import Settings
from workflows.router_messages import Passage

MAX_PASSAGES = 8


class KnowledgeActivities:
    """Holds one knowledge base (Qdrant local mode allows one client per folder and process)."""

    def __init__(self, settings: Settings, kb: KnowledgeBase | None = None) -> None:
        self._settings = settings
        self._kb = kb

    @property
    def kb(self) -> KnowledgeBase:
        if self._kb is None:
            self._kb = open_knowledge_base(self._settings)
        return self._kb

    @activity.defn(name="retrieve_passages")
    def retrieve_passages(self, query: str, k: int = 3) -> list[Passage]:
        """The `k` passages closest to the caller's words, best first (empty KB: none)."""
        return self.kb.search(query, max(0, min(k, MAX_PASSAGES)))

    def close(self) -> None:
        if self._kb is not None:
            self._kb.close()
