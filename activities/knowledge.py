"""Retrieval from the knowledge base as a Temporal activity.

The workflow calls `retrieve_passages` when a turn goes past the intent classifier (a question,
or anything the script did not foresee): as a local activity inside the `turn` update (~20-60 ms:
one e5 query embedding and a Qdrant search), and it records the passages it used on the
transcript. The activity is synchronous (CPU-bound embedding), so it runs on the worker's
activity thread pool.
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

from temporalio import activity

from activities.knowledge_base import KBSettings, KnowledgeBase, open_knowledge_base
from slot.settings import Settings
from workflows.router_messages import Retrieval, RetrieveRequest

MAX_PASSAGES = 8


def shared_knowledge_base(settings: Settings) -> KnowledgeBase:
    """One knowledge base per Qdrant location and process.

    Qdrant's local mode locks its folder for one client; every worker built in a process (the
    tests build several), and every activity thread, shares that client instead of fighting
    over the lock.
    """
    kb_settings = KBSettings()
    where = kb_settings.qdrant_url or str((settings.data_dir / "qdrant").resolve())
    with _OPENING:
        return _knowledge_base_at(where)


_OPENING = threading.Lock()
"""The first turns of a fresh worker (one that just took over calls) search at once, on several
activity threads, while its warm-up opens the knowledge base too: one of them opens it, the rest
wait for it (two opening a local folder at once, the second fails on Qdrant's lock)."""


@functools.cache
def _knowledge_base_at(where: str) -> KnowledgeBase:
    kb_settings = KBSettings()
    if kb_settings.qdrant_url:
        return open_knowledge_base(kb_settings=kb_settings)
    return open_knowledge_base(kb_settings=kb_settings, path=Path(where))


class KnowledgeActivities:
    """Retrieval for the router; the knowledge base is opened on first use."""

    def __init__(self, settings: Settings, kb: KnowledgeBase | None = None) -> None:
        self._settings = settings
        self._kb = kb

    @property
    def kb(self) -> KnowledgeBase:
        if self._kb is None:
            self._kb = shared_knowledge_base(self._settings)
        return self._kb

    @activity.defn(name="retrieve_passages")
    def retrieve_passages(self, request: RetrieveRequest) -> Retrieval:
        """The `k` passages closest to the caller's words, best first (empty KB: none)."""
        started = time.perf_counter()
        passages = self.kb.search(request.query, max(0, min(request.k, MAX_PASSAGES)))
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        return Retrieval(passages=passages, elapsed_ms=elapsed)
