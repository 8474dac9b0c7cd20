"""The knowledge base: chunking, and the shipped Sunny Solar documents in a real local Qdrant."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from activities.embeddings import DIMENSIONS, Embedder, Vector
from activities.knowledge_base import (
    KnowledgeBase,
    chunk_text,
    documents,
    heading_overlap,
    open_knowledge_base,
    section_questions,
)
from evals.kb import SETS, Question, load_questions, verdict
from slot.playbooks import load_playbook
from slot.settings import REPO_ROOT, get_settings
from workflows.llm_turn import knowledge_answer

SHIPPED = REPO_ROOT / "knowledge" / "solar_survey"


def test_chunks_follow_headings() -> None:
    text = "# Warranty\n\n## How long?\n\n25 years.\n\nParts included.\n\n## Cover\n\nDefects.\n"
    chunks = chunk_text(text, "w.md")
    assert [(c.heading, c.text) for c in chunks] == [
        ("Warranty > How long?", "25 years.\n\nParts included."),
        ("Warranty > Cover", "Defects."),
    ]
    assert [c.id for c in chunks] == ["w.md#0", "w.md#1"]


def test_long_sections_split_with_overlap() -> None:
    sentences = [f"Sentence number {i} talks about solar panels." for i in range(30)]
    text = "## Long\n\n" + "\n\n".join(" ".join(sentences[i : i + 3]) for i in range(0, 30, 3))
    chunks = chunk_text(text, "long.md", max_chars=300, overlap_chars=100)
    assert len(chunks) > 3
    assert all(len(c.text) <= 300 + 100 + 2 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.text.split("\n\n")[0] in before.text, "consecutive chunks share context"
    assert all(s in " ".join(c.text for c in chunks) for s in sentences)


def test_text_before_any_heading_gets_the_title() -> None:
    chunks = chunk_text("Plain text file.\n\nSecond paragraph.", "notes.txt", title="notes")
    assert [(c.heading, c.text) for c in chunks] == [
        ("notes", "Plain text file.\n\nSecond paragraph.")
    ]


def test_bad_paths_are_named() -> None:
    with pytest.raises(ValueError, match="no such file"):
        documents(Path("/nonexistent/kb"))
    with pytest.raises(ValueError, match="not a text or markdown"):
        documents(REPO_ROOT / "pyproject.toml")


@pytest.fixture(scope="module")
def vector_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, vector_cache: Path) -> Iterator[KnowledgeBase]:
    with open_knowledge_base(path=tmp_path_factory.mktemp("qdrant")) as opened:
        report = opened.ingest([SHIPPED], vector_cache)
        assert report.files >= 5 and report.chunks == opened.count()
        yield opened


def test_passage_vectors_are_kept_and_read_back_by_the_next_ingest(
    kb: KnowledgeBase, vector_cache: Path, tmp_path: Path
) -> None:
    [kept] = (vector_cache / "passages").iterdir()
    vectors = np.load(kept)
    assert vectors.shape == (kb.count(), DIMENSIONS)
    np.save(kept, -vectors)  # the next ingest must take the kept vectors as they are
    with open_knowledge_base(path=tmp_path / "qdrant") as again:
        again.ingest([SHIPPED], vector_cache)
        points, _ = again.client.scroll(again.collection, limit=1000, with_vectors=True)
    stored = np.array([p.vector for p in points])
    closest = (stored @ -vectors.T).max(axis=1)  # Qdrant keeps cosine vectors normalised
    assert len(stored) == len(vectors) and np.allclose(closest, 1.0, atol=1e-3)


@pytest.mark.parametrize(
    ("question", "source", "heading"),
    [
        ("how long is the warranty", "warranty.md", "How long is the warranty?"),
        ("can I pay for it monthly", "financing.md", "Can I pay monthly?"),
        ("how long does the installation take", "installation.md", "How long does installation"),
        ("what does a solar system cost", "pricing.md", "How much does a solar system cost?"),
    ],
)
def test_questions_find_their_passage(
    kb: KnowledgeBase, question: str, source: str, heading: str
) -> None:
    best = kb.search(question, 3)[0]
    assert best.source == f"solar_survey/{source}"
    assert heading in best.heading
    assert best.id.startswith(best.source + "#")


def test_reingest_replaces_instead_of_duplicating(kb: KnowledgeBase) -> None:
    before = kb.count()
    kb.ingest([SHIPPED / "warranty.md", SHIPPED])
    assert kb.count() == before


def test_without_llm_the_best_passage_answers_then_the_script_goes_on(kb: KnowledgeBase) -> None:
    playbook = load_playbook("solar_survey", get_settings().playbooks_dir)
    passages = kb.search("how long is the warranty", 3)
    step = knowledge_answer(playbook, "pitch", {}, passages, min_score=0.5)
    assert step is not None
    assert step.state == "pitch" and not step.end_call
    assert "25-year" in step.text and step.text.endswith("free solar survey?")
    assert step.citations == [passages[0].id]
    assert "knowledge base" in step.reason
    assert knowledge_answer(playbook, "pitch", {}, passages, min_score=0.999) is None


def test_empty_knowledge_base_finds_nothing(tmp_path: Path) -> None:
    with open_knowledge_base(path=tmp_path) as empty:
        assert empty.search("how long is the warranty") == []
        assert empty.count() == 0


def test_a_headings_share_of_the_questions_words_counts_only_the_sections_own_question() -> None:
    assert (
        heading_overlap("Do you charge for the survey?", "Survey > Is the survey really free?")
        == 0.5
    )
    assert (
        heading_overlap("What about the warranty?", "Warranty > What happens if a panel breaks?")
        == 0
    )
    assert heading_overlap("How long would it be?", "Warranty > How long is the warranty?") == 1.0
    assert heading_overlap("Um, what?", "Anything") == 0


def test_a_lexical_weight_adds_the_headings_share_and_reorders(kb: KnowledgeBase) -> None:
    question = "Is there a deposit to pay?"
    plain = {p.id: p for p in kb.search(question, 8, lexical_weight=0, question_weight=0)}
    weighted = kb.search(question, 8, lexical_weight=0.5, question_weight=0)
    assert [p.score for p in weighted] == sorted((p.score for p in weighted), reverse=True)
    for passage in weighted:
        expected = plain[passage.id].score + 0.5 * heading_overlap(question, passage.heading)
        assert passage.score == pytest.approx(expected, abs=1e-3)
    assert weighted[0].heading.endswith("Is there a deposit?")


def test_a_sections_questions_are_the_ones_its_own_heading_asks() -> None:
    assert section_questions(
        "The free home solar survey > How long does the survey take? How long will the "
        "surveyor be at my home?"
    ) == ["How long does the survey take?", "How long will the surveyor be at my home?"]
    assert section_questions("Warranty > What does the warranty cover?") == [
        "What does the warranty cover?"
    ]
    assert section_questions("Financing") == []


def test_the_sections_own_question_takes_its_share_of_the_score_and_reorders(
    kb: KnowledgeBase,
) -> None:
    question = "Do I need to be there?"
    plain = {p.id: p for p in kb.search(question, 8, lexical_weight=0, question_weight=0)}
    mixed = kb.search(question, 8, lexical_weight=0, question_weight=0.3)
    asked = kb.embedder.query(question)
    for passage in mixed:
        closest = max(
            float(v @ asked) for v in kb.embedder.queries(section_questions(passage.heading))
        )
        expected = 0.7 * plain[passage.id].score + 0.3 * closest
        assert passage.score == pytest.approx(expected, abs=1e-3)
    assert max(plain.values(), key=lambda p: p.score).heading.endswith("planning permission?")
    assert mixed[0].heading.endswith("Do I need to be home for the survey?")
    assert kb.search(question, 1)[0].heading == mixed[0].heading  # the shipped default


class CountingEmbedder(Embedder):
    """Counts the query texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.queried: list[str] = []

    def queries(self, texts: Sequence[str]) -> Vector:
        self.queried.extend(texts)
        return super().queries(texts)


def test_a_knowledge_base_another_process_ingested_is_prepared_before_the_first_question(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "models"
    with open_knowledge_base(path=tmp_path / "qdrant") as seeding:
        seeding.ingest([SHIPPED], cache)
    first = CountingEmbedder()
    with open_knowledge_base(path=tmp_path / "qdrant", embedder=first) as worker:
        assert worker.prepare() == worker.count() > 0
        asked = len(first.queried)
        assert "Is the survey really free?" in first.queried
        worker.search("Do I need to be there?", 3)
        assert first.queried[asked:] == ["Do I need to be there?"], "no section question waits"
    again = CountingEmbedder()
    with open_knowledge_base(path=tmp_path / "qdrant", embedder=again) as restarted:
        restarted.prepare(cache)  # the seeding ingest kept the questions' vectors
        restarted.search("Do I need to be there?", 3)
        assert again.queried == ["Do I need to be there?"]


def test_the_kb_eval_counts_a_wrong_section_apart_from_none() -> None:
    covered = Question("How long is the warranty?", ("How long is the warranty?",))
    uncovered = Question("Do you sell heat pumps?", ())
    assert verdict(covered, "Warranty > How long is the warranty?") == "right"
    assert verdict(covered, "Warranty > What does the warranty cover?") == "wrong"
    assert verdict(covered, None) == "missed"
    assert verdict(uncovered, None) == "right"
    assert verdict(uncovered, "Pricing > Are there any hidden costs?") == "wrong"


def test_every_labelled_answer_names_a_section_of_the_shipped_documents() -> None:
    """The kb eval's labels must follow the documents: a renamed heading fails here, not as a
    silent drop in the eval's figures."""
    headings = {
        chunk.heading.rsplit(" > ", 1)[-1]
        for file, source in documents(SHIPPED)
        for chunk in chunk_text(file.read_text(encoding="utf-8"), source)
    }
    for path in SETS.values():
        for question in load_questions(path):
            assert set(question.answers) <= headings, question
