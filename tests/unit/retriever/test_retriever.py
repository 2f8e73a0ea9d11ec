"""ClaspRetriever on both engines with the real tiny-random model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever
from qdrant_client import models

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import QdrantStore
from clasp_ingest.types import Segment, media_id_for
from tests.unit.retriever.conftest import LECTURE, PODCAST, SENTENCES, media_ref, shared_store


def test_documents_name_spans_with_deep_links(store: QdrantStore, model: AudioTextEncoder) -> None:
    docs = ClaspRetriever(store=store, model=model, k=3).invoke(SENTENCES[3])
    assert len(docs) == 3
    top = docs[0]
    assert top.page_content == "lecture [00:00:09.000–00:00:11.500]"
    meta = top.metadata
    assert (meta["source"], meta["media_id"], meta["title"]) == (LECTURE, media_id_for(LECTURE), "lecture")
    assert (meta["start_s"], meta["end_s"], meta["url"]) == (9.0, 11.5, f"{LECTURE}#t=9,11.5")
    assert meta["score"] == pytest.approx(1.0, abs=1e-4) and meta["segment_indices"] == [3]
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs), reverse=True)


def test_per_call_options_filters_and_threshold(store: QdrantStore, model: AudioTextEncoder) -> None:
    retriever = ClaspRetriever(store=store, model=model)
    assert len(retriever.invoke(SENTENCES[0], k=1)) == 1 and len(retriever.invoke(SENTENCES[0], k=5)) == 5
    podcast = retriever.invoke(SENTENCES[0], k=10, filter={"media_id": media_id_for(PODCAST)})
    assert len(podcast) == 6 and {d.metadata["source"] for d in podcast} == {PODCAST}
    french = retriever.invoke(SENTENCES[0], k=10, filter={"language": "fr"})
    assert {d.metadata["language"] for d in french} == {"fr"}
    window = retriever.invoke(SENTENCES[0], k=20, filter={"start_s_gte": 3.0, "end_s_lte": 8.5})
    assert len(window) == 4 and all(
        d.metadata["start_s"] >= 3.0 and d.metadata["end_s"] <= 8.5 for d in window
    )
    exact = ClaspRetriever(store=store, model=model, k=10, score_threshold=0.9999).invoke(SENTENCES[8])
    assert [(d.metadata["source"], d.metadata["start_s"]) for d in exact] == [(PODCAST, 6.0)]
    with pytest.raises(TypeError, match="unknown options"):
        retriever.invoke(SENTENCES[0], top_k=2)
    with pytest.raises(ValueError, match="unknown filter keys"):
        retriever.invoke(SENTENCES[0], filter={"speaker": "x"})
    # per-call options are checked as the constructor checks them
    for bad in (
        {"context": -1},
        {"group_by_media": 0},
        {"merge_gap_s": -1},
        {"score_threshold": "x"},
        {"score_threshold": float("nan")},
        {"k": 0},
    ):
        ((name, value),) = bad.items()
        with pytest.raises(ValueError, match=f"option {name}={value!r}: "):
            retriever.invoke(SENTENCES[0], **bad)
    assert len(retriever.invoke(SENTENCES[0], k="2")) == 2  # coerced like ClaspRetriever(k="2")
    with pytest.raises(TypeError, match="the query must be text"):
        retriever.invoke(None)  # type: ignore[arg-type]


def test_group_by_media_caps_spans_per_item(store: QdrantStore, model: AudioTextEncoder) -> None:
    docs = ClaspRetriever(store=store, model=model, k=4, group_by_media=1).invoke(SENTENCES[2])
    assert len(docs) == 2 and {d.metadata["source"] for d in docs} == {LECTURE, PODCAST}
    assert docs[0].metadata["start_s"] == 6.0 and docs[0].metadata["source"] == LECTURE
    two = ClaspRetriever(store=store, model=model, k=10, group_by_media=2).invoke(SENTENCES[2])
    assert len(two) == 4 and sorted(d.metadata["source"] for d in two) == [LECTURE, LECTURE, PODCAST, PODCAST]


@pytest.mark.parametrize("widen", [{"context": 1}, {"merge": True, "merge_gap_s": 1.0}])
def test_group_by_media_caps_spans_not_hits(
    store: QdrantStore, model: AudioTextEncoder, widen: dict[str, object]
) -> None:
    """A hit absorbed by a better hit's context or merged span leaves room for the item's next
    one: the groups searched held group_by_media hits, and the answer came back short."""
    docs = ClaspRetriever(store=store, model=model, k=4, group_by_media=2, **widen).invoke(SENTENCES[2])
    assert sorted(d.metadata["source"] for d in docs) == [LECTURE, LECTURE, PODCAST, PODCAST]
    for source in (LECTURE, PODCAST):
        first, second = (d.metadata["segment_indices"] for d in docs if d.metadata["source"] == source)
        assert not set(first) & set(second)


def _scored_store(model: AudioTextEncoder, items: dict[str, list[float]]) -> QdrantStore:
    """An in-memory store whose segments score exactly ``items[name]`` against the query "query"."""
    from clasp_ingest.store import open_store
    from tests.unit.retriever.conftest import spans_of

    query = model.encode_text(["query"])[0]
    query = query / np.linalg.norm(query)
    rng = np.random.default_rng(0)

    def scoring(score: float) -> np.ndarray:
        other = rng.standard_normal(query.shape)
        other -= other @ query * query
        return (score * query + np.sqrt(1 - score**2) * other / np.linalg.norm(other)).astype(np.float32)

    store = open_store(url=":memory:")
    store.ensure_collection(model.model_id, model.dim)
    for name, scores in items.items():
        ref = media_ref(f"file:///media/{name}.wav")
        store.write_media(
            ref, model.model_id, [(spans_of(ref, len(scores)), np.stack([scoring(s) for s in scores]))]
        )
    return store


def test_group_by_media_looks_deeper_only_where_it_can_change_the_answer(
    model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's second hit lies in its first's context: its group of 2 hits made one span, and its
    third hit (0.7), above C's 0.6, was never looked at. And a long item that has its span was
    fetched whole, doubling after doubling (16 searches for 20,000 segments)."""
    store = _scored_store(
        model, {"A": [0.9, 0.89, 0.0, 0.0, 0.0, 0.7], "B": [0.85] + [0.0] * 5, "C": [0.6] + [0.0] * 5}
    )
    retriever = ClaspRetriever(store=store, model=model, k=3, context=1)
    free = [(s.media_id, s.score) for s in retriever.retrieve_spans("query")]
    capped = [(s.media_id, s.score) for s in retriever.retrieve_spans("query", group_by_media=2)]
    assert capped == free and [round(score, 2) for _, score in capped] == [0.9, 0.85, 0.7]

    long = _scored_store(model, {"long": [0.9] + [0.5] * 2000, "b": [0.8, 0.1], "c": [0.7, 0.1]})
    searches: list[int] = []
    search_groups = long.search_groups

    def counted(*args: object, **kwargs: object) -> list[object]:
        searches.append(int(kwargs["group_size"]))  # type: ignore[call-overload]
        return search_groups(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(long, "search_groups", counted)
    spans = ClaspRetriever(store=long, model=model, k=5, group_by_media=1).retrieve_spans("query")
    assert len(spans) == 3 and searches == [1]  # three items, one span each: nothing more to find


def test_context_window_widens_by_neighbours(store: QdrantStore, model: AudioTextEncoder) -> None:
    doc = ClaspRetriever(store=store, model=model, k=1, context=1).invoke(SENTENCES[3])[0]
    assert (doc.metadata["start_s"], doc.metadata["end_s"]) == (6.0, 14.5)
    assert doc.metadata["segment_indices"] == [2, 3, 4] and doc.metadata["url"] == f"{LECTURE}#t=6,14.5"
    edge = ClaspRetriever(store=store, model=model, k=1, context=2).invoke(SENTENCES[0])[0]
    assert edge.metadata["segment_indices"] == [0, 1, 2] and edge.metadata["start_s"] == 0.0


def test_hits_whose_contexts_overlap_come_back_once_and_never_chain(
    store: QdrantStore, model: AudioTextEncoder
) -> None:
    docs = ClaspRetriever(store=store, model=model, k=3, context=1).invoke(SENTENCES[3])
    segments = [(d.metadata["media_id"], i) for d in docs for i in d.metadata["segment_indices"]]
    assert len(docs) == 3 and len(segments) == len(set(segments))  # no audio twice
    assert docs[0].metadata["segment_indices"] == [2, 3, 4]  # the best hit keeps its whole context
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs), reverse=True)
    # a long item whose every segment matches: k spans of at most 2 * context + 1 segments each,
    # not one span over the whole item (better spans bridged by the context of worse hits)
    ref = media_ref("file:///media/long-talk.wav")
    n, topic = 40, "the same topic all along"
    segments_of = [Segment(ref.media_id, i, 3.0 * i, 3.0 * i + 2.5) for i in range(n)]
    rng = np.random.default_rng(0)
    base = model.encode_text([topic])[0]
    vectors = np.stack([base + 0.05 * rng.standard_normal(base.shape) for _ in range(n)]).astype(np.float32)
    store.write_media(ref, model.model_id, [(segments_of, vectors)])
    only = {"media_id": ref.media_id}
    wide = ClaspRetriever(store=store, model=model, k=6, context=2, filter=only).invoke(topic)
    taken = [i for d in wide for i in d.metadata["segment_indices"]]
    assert len(wide) == 6 and len(taken) == len(set(taken))
    assert all(len(d.metadata["segment_indices"]) <= 5 for d in wide)


def test_adjacent_hits_merge_into_one_span(store: QdrantStore, model: AudioTextEncoder) -> None:
    ref = media_ref("file:///media/seminar.wav")
    segments = [
        Segment(ref.media_id, i, a, b) for i, (a, b) in enumerate([(0, 2), (3, 5.5), (5.7, 8.5), (12, 14)])
    ]
    topic = "quantum tunnelling explained slowly"
    vectors = model.encode_text(["unrelated opening", topic, topic, "unrelated closing"])
    store.write_media(ref, model.model_id, [(segments, vectors)])
    only = {"media_id": ref.media_id}
    apart = ClaspRetriever(store=store, model=model, k=2, filter=only).invoke(topic)
    assert sorted(d.metadata["start_s"] for d in apart) == [3.0, 5.7]
    merged = ClaspRetriever(store=store, model=model, k=2, filter=only, merge=True).invoke(topic)
    assert len(merged) == 2
    assert (merged[0].metadata["start_s"], merged[0].metadata["end_s"]) == (3.0, 8.5)
    assert merged[0].metadata["url"] == "file:///media/seminar.wav#t=3,8.5"
    assert merged[0].metadata["segment_indices"] == [1, 2]
    assert merged[0].metadata["score"] == pytest.approx(1.0, abs=1e-4)
    assert merged[1].metadata["segment_indices"] in ([0], [3])
    strict = ClaspRetriever(store=store, model=model, k=2, filter=only, merge=True, merge_gap_s=0.1)
    assert [d.metadata["segment_indices"] for d in strict.invoke(topic)] in ([[1], [2]], [[2], [1]])


class SlowText:
    """The real model, with a text tower that takes 0.3 s (to make blocking visible)."""

    def __init__(self, model: AudioTextEncoder) -> None:
        self._model = model
        self.model_id, self.dim = model.model_id, model.dim

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return self._model.encode_audio(waveforms)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(0.3)
        return self._model.encode_text(texts)


def test_ainvoke_does_not_block_the_event_loop(store: QdrantStore, model: AudioTextEncoder) -> None:
    retriever = ClaspRetriever(store=store, model=SlowText(model), k=2)  # type: ignore[arg-type]

    async def main() -> tuple[int, list[str]]:
        ticks = 0
        task = asyncio.create_task(retriever.ainvoke(SENTENCES[5]))
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        return ticks, [d.page_content for d in task.result()]

    ticks, contents = asyncio.run(main())
    assert ticks >= 10, ticks  # the loop kept running while the query was encoded and searched
    assert contents == [d.page_content for d in retriever.invoke(SENTENCES[5])]


def _ids_by_index(store: QdrantStore, source: str) -> dict[int, str]:
    points = store.iter_points({"source": source})
    return {int(p.payload["metadata"]["segment_index"]): p.id for p in points}


def test_document_ids_are_the_point_ids(store: QdrantStore, model: AudioTextEncoder) -> None:
    lecture = _ids_by_index(store, LECTURE)
    docs = ClaspRetriever(store=store, model=model, k=3).invoke(SENTENCES[3])
    by_url = {p.payload["metadata"]["url"]: p.id for p in store.iter_points()}
    assert [d.id for d in docs] == [by_url[d.metadata["url"]] for d in docs]
    assert docs[0].id == lecture[3] and docs[0].metadata["point_ids"] == [lecture[3]]
    wide = ClaspRetriever(store=store, model=model, k=1, context=1).invoke(SENTENCES[3])[0]
    assert wide.id == lecture[3]  # the best-scoring point of the widened span
    assert wide.metadata["point_ids"] == [lecture[2], lecture[3], lecture[4]]


def test_a_merged_span_has_the_id_of_its_best_point(store: QdrantStore, model: AudioTextEncoder) -> None:
    ref = media_ref("file:///media/seminar.wav")
    segments = [Segment(ref.media_id, 0, 3.0, 5.5), Segment(ref.media_id, 1, 5.7, 8.5)]
    topic = "quantum tunnelling explained slowly"
    store.write_media(ref, model.model_id, [(segments, model.encode_text(["a second look at it", topic]))])
    ids = _ids_by_index(store, ref.uri)
    only = {"media_id": ref.media_id}
    docs = ClaspRetriever(store=store, model=model, k=2, filter=only, merge=True).invoke(topic)
    assert len(docs) == 1 and docs[0].metadata["segment_indices"] == [0, 1]
    assert docs[0].metadata["point_ids"] == [ids[0], ids[1]]
    assert docs[0].id == ids[1]  # the exact sentence scores best


def test_unknown_arguments_raise_naming_the_allowed_ones(model: AudioTextEncoder) -> None:
    store = shared_store()
    with pytest.raises(TypeError, match=r"unknown arguments \['top_k'\]; it takes .*k, merge.*use k"):
        ClaspRetriever(store=store, model=model, top_k=3)
    with pytest.raises(TypeError, match=r"\['search_type'\].*always ranks by similarity"):
        ClaspRetriever(store=store, model=model, search_type="mmr")
    with pytest.raises(TypeError, match=r"unknown options \['top_k'\]"):
        ClaspRetriever(store=store, model=model).invoke(SENTENCES[0], top_k=2)
    with pytest.raises(ValueError, match="MatchText"):
        bad = models.FieldCondition(key="metadata.title", match=models.MatchText(text="x"))
        ClaspRetriever(store=store, model=model, filter=models.Filter(must=[bad]))


def test_search_kwargs_map_onto_the_options(model: AudioTextEncoder) -> None:
    store = shared_store()
    kwargs = {"k": 2, "filter": {"language": "fr"}, "score_threshold": -1.0}
    retriever = ClaspRetriever(store=store, model=model, search_kwargs=kwargs)
    assert (retriever.k, retriever.filter, retriever.score_threshold) == (2, {"language": "fr"}, -1.0)
    docs = retriever.invoke(SENTENCES[0])
    assert len(docs) == 2 and {d.metadata["source"] for d in docs} == {PODCAST}
    with pytest.raises(TypeError, match=r"\['fetch_k'\].*MMR is not supported"):
        ClaspRetriever(store=store, model=model, search_kwargs={"fetch_k": 20})
    with pytest.raises(TypeError, match=r"\['k'\] both as arguments and in search_kwargs"):
        ClaspRetriever(store=store, model=model, k=3, search_kwargs={"k": 2})
    with pytest.raises(TypeError, match="search_kwargs must be a dict"):
        ClaspRetriever(store=store, model=model, search_kwargs=[("k", 2)])
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ClaspRetriever(store=store, model=model, search_kwargs={"k": 0})


def _field(key: str, value: str | int) -> models.FieldCondition:
    return models.FieldCondition(key=f"metadata.{key}", match=models.MatchValue(value=value))


def test_qdrant_filters_in_the_retriever(store: QdrantStore, model: AudioTextEncoder) -> None:
    podcast_only = models.Filter(must=[_field("source", PODCAST)])
    docs = ClaspRetriever(store=store, model=model, k=10, filter=podcast_only).invoke(SENTENCES[0])
    assert len(docs) == 6 and {d.metadata["source"] for d in docs} == {PODCAST}
    first_or_last = models.Filter(
        should=[_field("segment_index", 0), _field("segment_index", 5)],
        must_not=[_field("language", "fr")],
    )
    retriever = ClaspRetriever(store=store, model=model, k=10)
    spans = {
        (d.metadata["source"], d.metadata["start_s"]) for d in retriever.invoke("x", filter=first_or_last)
    }
    assert spans == {(LECTURE, 0.0), (LECTURE, 15.0)}
    as_json = {"must": [{"key": "metadata.start_s", "range": {"gte": 12}}]}
    late = retriever.invoke(SENTENCES[4], filter=as_json, group_by_media=1)
    assert (late[0].metadata["source"], late[0].metadata["start_s"]) == (LECTURE, 12.0)
    assert all(d.metadata["start_s"] >= 12 for d in late) and len(late) == 2


@pytest.mark.parametrize("query", ["", "   \n"])
def test_an_empty_query_is_refused(store: QdrantStore, model: AudioTextEncoder, query: str) -> None:
    retriever = ClaspRetriever(store=store, model=model, k=3)
    with pytest.raises(ValueError, match="the query is empty"):
        retriever.invoke(query)
    with pytest.raises(ValueError, match="the query is empty"):
        asyncio.run(retriever.ainvoke(query))


def test_a_span_has_words_only_once_every_segment_has_them() -> None:
    from clasp_ingest.retriever import Span

    def span(*texts: str | None) -> Span:
        return Span("m", "file:///a.wav", "a", 0.0, 9.0, 0.5, tuple(range(len(texts))), texts=texts)

    assert span("one.", None, "three.").transcript is None  # partial words would pass for the span's
    assert span("one.", "", "three.").transcript == "one. three."  # a silent segment has no words
    assert span(None).transcript is None and span("").transcript is None


def test_a_replace_cut_short_does_not_return_spans_twice(store: QdrantStore, model: AudioTextEncoder) -> None:
    """Killed between completing a new version and deleting the old one, the store holds both
    complete until the next ingest: a search returns the newer one's spans, once, and a span's
    context comes from its own version."""
    import dataclasses
    import uuid

    from clasp_ingest.store import SearchFilter
    from clasp_ingest.types import media_id_for

    lecture = SearchFilter(media_id=media_id_for(LECTURE))
    old = list(store.iter_points(filters=lecture, with_vectors=True))
    newer = []
    for point in old:
        meta = {**point.payload["metadata"], "version": "v2", "ingested_at": "2999-01-01T00:00:00+00:00"}
        payload = {**point.payload, "metadata": meta}
        newer.append(dataclasses.replace(point, id=str(uuid.uuid4()), payload=payload))
    store.upsert_points(newer)
    assert store.count(lecture) == 2 * len(old)
    docs = ClaspRetriever(store=store, model=model, k=4, context=1, filter=lecture).invoke(SENTENCES[3])
    ids = [pid for d in docs for pid in d.metadata["point_ids"]]
    assert len(ids) == len(set(ids)) == len(old)  # every segment once (overlapping contexts folded)
    assert {d.metadata["version"] for d in docs} == {"v2"}
    assert all(pid in {p.id for p in newer} for d in docs for pid in d.metadata["point_ids"])


def test_two_complete_writes_of_one_version_return_spans_once(
    store: QdrantStore, model: AudioTextEncoder
) -> None:
    """A write removes the item's other writes once complete; until then (or until the next
    ingest, where a run was killed in between) both are complete: a search returns one write's
    spans, the newer one's, once, with context from that write."""
    import dataclasses
    import uuid

    from clasp_ingest.store import SearchFilter
    from clasp_ingest.types import media_id_for

    lecture = SearchFilter(media_id=media_id_for(LECTURE))
    old = list(store.iter_points(filters=lecture, with_vectors=True))
    newer = []
    for point in old:
        meta = {**point.payload["metadata"], "write_id": "f" * 32, "ingested_at": "2999-01-01T00:00:00+00:00"}
        newer.append(
            dataclasses.replace(point, id=str(uuid.uuid4()), payload={**point.payload, "metadata": meta})
        )
    store.upsert_points(newer)
    assert {p.payload["metadata"]["version"] for p in newer} == {
        p.payload["metadata"]["version"] for p in old
    }
    retriever = ClaspRetriever(store=store, model=model, filter=lecture)
    for options in ({"k": 4, "context": 1}, {"k": 3, "merge": True, "merge_gap_s": 10.0}, {"k": len(old)}):
        docs = retriever.invoke(SENTENCES[3], **options)
        ids = [pid for d in docs for pid in d.metadata["point_ids"]]
        assert len(ids) == len(set(ids)) and set(ids) <= {p.id for p in newer}, options
        spans = [(d.metadata["start_s"], d.metadata["end_s"]) for d in docs]
        assert len(spans) == len(set(spans)), options
