"""LangChain's standard test suites (langchain-tests) and langchain-qdrant interoperability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clasp_ingest.retriever import ClaspRetriever, ClaspTextEmbeddings
from langchain_qdrant import QdrantVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from qdrant_client import QdrantClient, models

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import ServerStore, export_to, open_store
from tests.unit.retriever.conftest import LECTURE, SENTENCES, fill, shared_store, tiny_model


def ASYNC_SUITE(cls: type) -> type:
    """Run the suite's async tests under pytest-asyncio (strict mode needs the mark; it is
    harmless on the sync tests of the same class, whose warning is silenced)."""
    cls = pytest.mark.asyncio(cls)
    return pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")(cls)  # type: ignore[no-any-return]


@ASYNC_SUITE
class TestClaspRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[ClaspRetriever]:
        return ClaspRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": shared_store(), "model": tiny_model()}

    @property
    def retriever_query_example(self) -> str:
        return "where can I buy fresh bread?"


class TestClaspTextEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[ClaspTextEmbeddings]:
        return ClaspTextEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": "tiny-random", "device": "cpu"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return {"CLASP_MODEL": "tiny-random"}, {}, {"model_name": "tiny-random"}


@ASYNC_SUITE
class TestClaspTextEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[ClaspTextEmbeddings]:
        return ClaspTextEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": tiny_model()}


def test_langchain_qdrant_reads_our_collection(model: AudioTextEncoder) -> None:
    client = QdrantClient(":memory:")
    fill(ServerStore(client, "spans"), model)
    vectorstore = QdrantVectorStore(
        client=client, collection_name="spans", embedding=ClaspTextEmbeddings(model), vector_name="clasp"
    )
    doc, score = vectorstore.similarity_search_with_score(SENTENCES[4], k=1)[0]
    assert doc.page_content == "lecture [00:00:12.000–00:00:14.500]"
    assert doc.metadata["url"] == f"{LECTURE}#t=12,14.5" and doc.metadata["segment_index"] == 4
    assert score > 0.999


def test_embeddings_are_the_text_tower(model: AudioTextEncoder) -> None:
    emb = ClaspTextEmbeddings(model, batch_size=2)
    vectors = emb.embed_documents(SENTENCES[:5])
    assert len(vectors) == 5 and len(vectors[0]) == model.dim
    direct = model.encode_text(SENTENCES[:5])
    assert (
        max(
            abs(a - b)
            for row, ref in zip(vectors, direct, strict=True)
            for a, b in zip(row, ref, strict=True)
        )
        < 1e-5
    )
    assert emb.embed_documents([]) == []


def test_langchain_qdrant_reads_an_exported_collection(tmp_path: Path, model: AudioTextEncoder) -> None:
    """The README example: ``store export --to FOLDER``, then langchain-qdrant over that folder."""
    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(model.model_id, model.dim, source="tiny-random")
        fill(edge, model)
        ours = ClaspRetriever(store=edge, model=model, k=1).invoke(SENTENCES[9])[0]
        export_to(edge, str(tmp_path / "clasp-export"))
    client = QdrantClient(path=str(tmp_path / "clasp-export"))
    try:
        vectorstore = QdrantVectorStore(
            client=client,
            collection_name="clasp_segments",
            embedding=ClaspTextEmbeddings.from_client(client, "clasp_segments", device="cpu"),
            vector_name="clasp",
        )
        doc, score = vectorstore.similarity_search_with_score(SENTENCES[9], k=3)[0]
        assert doc.metadata["url"] == "file:///media/podcast.mp3#t=9,11.5" and score > 0.999
        assert doc.metadata["_id"] == ours.id and doc.page_content == ours.page_content  # the same point
        french = models.Filter(
            must=[models.FieldCondition(key="metadata.language", match=models.MatchValue(value="fr"))]
        )
        english_query = vectorstore.as_retriever(search_kwargs={"k": 2, "filter": french}).invoke(
            SENTENCES[1]
        )
        assert {d.metadata["language"] for d in english_query} == {"fr"}
    finally:
        client.close()
