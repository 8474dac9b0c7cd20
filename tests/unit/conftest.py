"""Fixtures shared by unit test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from activities.knowledge_base import KnowledgeBase, open_knowledge_base
from slot.settings import REPO_ROOT


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    """The sample playbook's knowledge base in a local Qdrant folder of the module's own."""
    kb = open_knowledge_base(path=tmp_path_factory.mktemp("qdrant"))
    kb.ingest([REPO_ROOT / "knowledge" / "solar_survey"])
    yield kb
    kb.close()
