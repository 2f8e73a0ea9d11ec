"""One-line constructors: the store opened and the collection's query model loaded, then closed."""

from __future__ import annotations

import copy as copy_module
import pickle
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever, ClaspTextEmbeddings
from qdrant_client import QdrantClient

from clasp_ingest.errors import CollectionMismatchError, ConfigError, StoreError
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.model.query import QueryModel
from clasp_ingest.store import ServerStore, export_to, open_store
from tests.unit.retriever.conftest import SENTENCES, fill

PODCAST_SECOND = "file:///media/podcast.mp3#t=3,5.5"  # SENTENCES[7]


@pytest.fixture
def edge_path(tmp_path: Path, model: AudioTextEncoder) -> Path:
    path = tmp_path / "q"
    with open_store(path=path, collection="talks") as store:
        store.ensure_collection(model.model_id, model.dim, source="tiny-random")
        fill(store, model)
    return path


def _reopens(path: Path, collection: str = "talks") -> bool:
    with open_store(path=path, collection=collection) as store:
        return store.count() == 12


def test_from_path_loads_the_collections_query_model_and_owns_the_store(edge_path: Path) -> None:
    with ClaspRetriever.from_path(edge_path, collection="talks", device="cpu", k=2) as retriever:
        docs = retriever.invoke(SENTENCES[7])
        assert len(docs) == 2 and docs[0].metadata["url"] == PODCAST_SECOND
        assert isinstance(retriever.model, QueryModel) and retriever.model.model_id == "tiny-random"
        with pytest.raises(StoreError, match="open in another process"):  # one open Edge store
            open_store(path=edge_path, collection="talks")
    assert _reopens(edge_path)  # closed on leaving the block
    retriever.close()  # closing twice is harmless


def test_a_failed_construction_closes_what_it_opened(edge_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown arguments \['top_k'\]"):
        ClaspRetriever.from_path(edge_path, collection="talks", device="cpu", top_k=3)
    assert _reopens(edge_path)
    # named as the caller named it (it said "--collection / --qdrant-path / --qdrant-url")
    with pytest.raises(
        StoreError,
        match=r"'nope' does not exist in .* \(it holds 'talks'\);.*from_path\(PATH, collection=\.\.\.\)$",
    ):
        ClaspRetriever.from_path(edge_path, collection="nope")
    # a mistyped folder was "collection ... does not exist in the edge store ...; ingest some media first"
    with pytest.raises(
        StoreError, match=r"there is no embedded store at '.*/q2' \(no such folder\); check the path"
    ):
        ClaspRetriever.from_path(edge_path.with_name("q2"), collection="talks")
    assert not edge_path.with_name("q2").exists()
    with pytest.raises(CollectionMismatchError, match="drop --model"):
        ClaspRetriever.from_path(edge_path, collection="talks", model="clasp-mini")
    assert _reopens(edge_path)
    with pytest.raises(StoreError, match=r"does not exist.*the right from_url\(URL, collection=\.\.\.\)$"):
        ClaspRetriever.from_url(":memory:")


def test_a_store_passed_in_stays_open(edge_path: Path, model: AudioTextEncoder) -> None:
    with open_store(path=edge_path, collection="talks") as store:
        with ClaspRetriever(store=store, model=model) as retriever:
            assert retriever.invoke(SENTENCES[7])[0].metadata["url"] == PODCAST_SECOND
        assert store.count() == 12  # still usable: it is the caller's


def test_from_settings_reads_clasp_variables(edge_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(edge_path))
    monkeypatch.setenv("CLASP_COLLECTION", "talks")
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    monkeypatch.delenv("CLASP_MODEL", raising=False)
    monkeypatch.delenv("CLASP_QDRANT_URL", raising=False)
    with ClaspRetriever.from_settings(k=1, merge=True) as retriever:
        assert retriever.k == 1 and retriever.merge
        assert [d.metadata["url"] for d in retriever.invoke(SENTENCES[7])] == [PODCAST_SECOND]
    monkeypatch.setenv("CLASP_MODEL", "clasp-mini")  # named explicitly: used, and checked
    with pytest.raises(CollectionMismatchError, match="clasp-mini"):
        ClaspRetriever.from_settings()
    assert _reopens(edge_path)


def test_text_embeddings_from_a_collection(edge_path: Path, model: AudioTextEncoder, tmp_path: Path) -> None:
    expected = model.encode_text([SENTENCES[2]])[0]
    from_path = ClaspTextEmbeddings.from_path(edge_path, "talks", device="cpu")
    assert from_path.model_name == "tiny-random" and isinstance(from_path.model, QueryModel)
    np.testing.assert_allclose(from_path.embed_query(SENTENCES[2]), expected, atol=1e-5)
    assert _reopens(edge_path)  # the store was open only while the collection was read
    with open_store(path=edge_path, collection="talks") as edge:
        export_to(edge, str(tmp_path / "copy"))
    client = QdrantClient(path=str(tmp_path / "copy"))
    try:
        from_client = ClaspTextEmbeddings.from_client(client, "talks", device="cpu")
        np.testing.assert_allclose(from_client.embed_query(SENTENCES[2]), expected, atol=1e-5)
        assert ServerStore(client, "talks").count() == 12  # the client is still open
    finally:
        client.close()


def test_text_embeddings_load_only_the_text_side() -> None:
    emb = ClaspTextEmbeddings(model_name="tiny-random", device="cpu")
    assert isinstance(emb.model, QueryModel) and len(emb.embed_query("hello")) == emb.model.dim


def test_a_query_model_of_another_model_is_refused_even_at_the_same_width(
    edge_path: Path, model: AudioTextEncoder
) -> None:
    import dataclasses

    other = QueryModel(dataclasses.replace(model.config, model_id="someone-else"), model.text, None)  # type: ignore[attr-defined]
    with open_store(path=edge_path, collection="talks") as store:
        assert other.dim == model.dim
        with pytest.raises(CollectionMismatchError, match="'someone-else'"):
            ClaspRetriever(store=store, model=other)
        ClaspRetriever(store=store, model=model)  # its own model: fine


def test_a_copy_shares_the_store_without_closing_it(edge_path: Path) -> None:
    with ClaspRetriever.from_path(edge_path, collection="talks") as retriever:
        with retriever.model_copy(update={"k": 2}) as variant:
            assert len(variant.invoke(SENTENCES[7])) == 2
        assert len(retriever.invoke(SENTENCES[7])) == 4  # still open
        # it said "cannot pickle '_thread.lock' object"
        for copy in (pickle.dumps, copy_module.deepcopy, lambda r: r.model_copy(deep=True)):
            with pytest.raises(TypeError, match=r"holds an open store and a loaded model.*model_copy"):
                copy(retriever)


def test_model_copy_checks_its_update_as_the_constructor_does(
    edge_path: Path, model: AudioTextEncoder
) -> None:
    """pydantic's model_copy checks nothing: k="3" failed at the query with "'<' not supported
    between instances of 'str' and 'int'", k=0 and a bad filter only at the query."""
    with ClaspRetriever.from_path(edge_path, collection="talks") as retriever:
        assert retriever.model_copy(update={"k": "3"}).k == 3  # read as the constructor reads it
        for update, message in (
            ({"k": 0}, r"option k=0: Input should be greater than or equal to 1"),
            ({"k": "many"}, r"option k='many'"),
            ({"transcribe": "always"}, r"option transcribe='always'"),
            ({"merge_gap_s": -1}, r"option merge_gap_s=-1"),
            ({"filter": {"$near": 1}}, r"\$near"),
            ({"rerank": 2}, r"rerank"),  # fewer than k
        ):
            with pytest.raises(ValueError, match=message):
                retriever.model_copy(update=update)
        with pytest.raises(TypeError, match=r"unknown arguments \['top_k'\].*use k"):
            retriever.model_copy(update={"top_k": 3})
        with pytest.raises(TypeError, match=r"model must be a loaded query model"):
            retriever.model_copy(update={"model": "clasp-mini"})
        assert retriever.model_copy(update={"search_kwargs": {"k": 2}}).k == 2
        lazy = retriever.model_copy(update={"transcribe": "lazy"})
        assert lazy.transcriber is not None  # as the constructor makes one
        assert len(retriever.invoke(SENTENCES[7])) == 4  # the original unchanged


def test_copy_copy_shares_the_store_without_owning_it_as_model_copy_does(edge_path: Path) -> None:
    with ClaspRetriever.from_path(edge_path, collection="talks") as retriever:
        with copy_module.copy(retriever) as twin:  # a framework copying a component per request
            assert len(twin.invoke(SENTENCES[7])) == 4
        # it said "the embedded store '.../talks' is closed; open it again"
        assert len(retriever.invoke(SENTENCES[7])) == 4
    assert _reopens(edge_path)  # the owner closed it


def test_a_name_or_path_where_a_store_or_model_belongs_is_refused_at_construction(
    edge_path: Path, model: AudioTextEncoder
) -> None:
    # both were accepted, and the first invoke failed with "'str' object has no attribute ..."
    with (
        open_store(path=edge_path, collection="talks") as store,
        pytest.raises(TypeError, match=r"model must be a loaded query model.*from_path"),
    ):
        ClaspRetriever(store=store, model="clasp-mini")
    with pytest.raises(TypeError, match=r"store must be an open store.*from_path\(PATH\)"):
        ClaspRetriever(store=str(edge_path), model=model)
    with pytest.raises(ConfigError, match=r"device='gpu' is unknown; use 'auto', 'cpu'"):
        ClaspRetriever.from_path(edge_path, collection="talks", device="gpu")
    assert _reopens(edge_path)


def test_queries_and_k_of_the_wrong_kind_are_refused_and_a_path_filters_as_its_uri(edge_path: Path) -> None:
    with ClaspRetriever.from_path(edge_path, collection="talks", k=2) as retriever:
        for empty in ("\u200b\u200b", " \t\u2060\ufeff"):  # zero-width and format characters only
            with pytest.raises(ValueError, match="the query is empty"):
                retriever.invoke(empty)
        assert len(retriever.invoke("\U0001f52d")) == 2  # an emoji is something to look for
        for option in ("k", "context", "group_by_media", "rerank"):  # True was read as 1
            with pytest.raises(ValueError, match=f"option {option}=True: .*not True/False"):
                retriever.invoke(SENTENCES[7], **{option: True})
        assert len(retriever.invoke(SENTENCES[7], k="3")) == 3  # text, as from a settings file
        for count in ("10", np.int64(10)):  # read as k is (rerank alone was refused)
            assert ClaspRetriever(store=retriever.store, model=retriever.model, rerank=count).rerank == 10
        # the store holds file:// URIs; a path matched nothing before, silently
        for key in ("source", "media_id"):
            docs = retriever.invoke(SENTENCES[7], filter={key: "/media/podcast.mp3"})
            assert docs and all(doc.metadata["source"] == "file:///media/podcast.mp3" for doc in docs)
    with pytest.raises(ValueError, match="not True/False"):
        ClaspRetriever.from_path(edge_path, collection="talks", k=False)
