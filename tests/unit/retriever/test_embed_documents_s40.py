"""``ClaspTextEmbeddings.embed_documents`` says, once, that its vectors are text, not speech: a
reviewer's ``QdrantVectorStore.add_texts`` into an exported CLASP collection put a show note
among the spans, first for its own words (0.789 against the audio span's 0.145)."""

from __future__ import annotations

import logging

import pytest
from clasp_ingest.retriever import ClaspTextEmbeddings


def test_embed_documents_warns_once_and_queries_never(caplog: pytest.LogCaptureFixture) -> None:
    embeddings = ClaspTextEmbeddings(model_name="tiny-random", device="cpu")
    with caplog.at_level(logging.WARNING, logger="clasp_ingest.retriever"):
        embeddings.embed_query("telescope")
        assert embeddings.embed_documents([]) == []
        assert caplog.records == []
        first = embeddings.embed_documents(["Show notes: a telescope and a galaxy"])
        again = embeddings.embed_documents(["more notes"])
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "keep text in a collection of its own" in said[0]
    assert len(first) == len(again) == 1 and len(first[0]) == len(embeddings.embed_query("x"))
