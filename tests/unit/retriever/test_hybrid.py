"""``ClaspRetriever(hybrid=True)`` over a collection with ingest-time words, both engines, with the
real tiny-random model (its text tower makes the ``text`` vectors)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clasp_ingest.retriever import ClaspRetriever

from clasp_ingest.errors import StoreError
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.words import SpanWords, TextTower, sparse_words
from tests.unit.retriever.conftest import LECTURE, PODCAST, SENTENCES, media_ref, spans_of


@pytest.fixture(params=["client", "edge"])
def worded(request: pytest.FixtureRequest, tmp_path: Path, model: AudioTextEncoder) -> Iterator[QdrantStore]:
    """lecture: sentences 0-5, podcast: 6-11, each span with its sentence as ingest-time words."""
    target = open_store(url=":memory:") if request.param == "client" else open_store(path=tmp_path / "q")
    tower = TextTower(model)
    with target:
        target.ensure_collection(model.model_id, model.dim, text_dim=tower.dim)
        for uri, sentences in ((LECTURE, SENTENCES[:6]), (PODCAST, SENTENCES[6:])):
            ref = media_ref(uri)
            dense = tower.passages(sentences)
            words = [
                SpanWords(s, "en", "fw:test", tuple(float(x) for x in v), sparse_words(s))
                for s, v in zip(sentences, dense, strict=True)
            ]
            target.write_media(ref, model.model_id, [(spans_of(ref, 6), model.encode_text(sentences), words)])
        yield target


def test_hybrid_finds_the_span_and_returns_its_words(worded: QdrantStore, model: AudioTextEncoder) -> None:
    retriever = ClaspRetriever(store=worded, model=model, k=3, hybrid=True, transcribe="ingest")
    docs = retriever.invoke(SENTENCES[7])
    assert docs[0].page_content == SENTENCES[7] and docs[0].metadata["source"] == PODCAST
    assert docs[0].metadata["transcript"] == SENTENCES[7]
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.5)  # first in all three
    # the same store searched without hybrid: CLASP alone, same best span
    assert retriever.invoke(SENTENCES[7], hybrid=False)[0].id == docs[0].id


def test_hybrid_needs_a_collection_with_word_vectors(store: QdrantStore, model: AudioTextEncoder) -> None:
    with pytest.raises(StoreError, match=r"no word vectors.*--transcribe"):
        ClaspRetriever(store=store, model=model, hybrid=True).invoke(SENTENCES[0])


def test_hybrid_does_not_combine_with_rerank_or_groups(model: AudioTextEncoder) -> None:
    with open_store(url=":memory:") as store:
        with pytest.raises(ValueError, match="use one"):
            ClaspRetriever(store=store, model=model, hybrid=True, rerank=10)
        with pytest.raises(ValueError, match="group"):
            ClaspRetriever(store=store, model=model, hybrid=True, group_by_media=1)
        with pytest.raises(ValueError, match="use one"):
            ClaspRetriever(store=store, model=model, rerank=10).invoke(SENTENCES[0], hybrid=True)
