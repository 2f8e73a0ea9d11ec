"""Store behaviour on both engines: ids, payloads, replace semantics, filters, groups."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clasp_ingest.errors import CollectionMismatchError, StoreError
from clasp_ingest.store import QdrantStore, SearchFilter, point_id
from clasp_ingest.types import MEDIA_NAMESPACE, Segment
from tests.unit.store.conftest import DIM, MODEL, Media, make_media, open_backend


def ingest(store: QdrantStore, *media: Media) -> None:
    for item in media:
        assert store.write_media(item.ref, MODEL, item.batches()) == len(item.segments)


def test_point_ids_and_payload_layout(store: QdrantStore) -> None:
    a = make_media("file:///talks/intro.mp3", "v1", 3, seed=1, language="en")
    ingest(store, a)
    points = {p.payload["metadata"]["segment_index"]: p for p in store.iter_points()}
    seg, point = a.segments[1], points[1]
    write_id = point.payload["metadata"]["write_id"]  # one per write, shared by its points
    assert {p.payload["metadata"]["write_id"] for p in points.values()} == {write_id}
    name = f"{a.ref.media_id}:{MODEL}:v1:{seg.start_ms}:{seg.end_ms}:{write_id}"
    assert point.id == str(uuid.uuid5(MEDIA_NAMESPACE, name))
    assert point.id == point_id(a.ref.media_id, MODEL, a.ref.fingerprint, seg.start_ms, seg.end_ms, write_id)
    payload = point.payload
    assert payload["page_content"] == "intro [00:00:02.000–00:00:03.500]"
    meta = payload["metadata"]
    assert meta["url"] == "file:///talks/intro.mp3#t=2,3.5"
    assert (meta["start_s"], meta["end_s"], meta["duration_s"], meta["segment_index"]) == (2.0, 3.5, 1.5, 1)
    assert (meta["media_id"], meta["source"], meta["version"], meta["model"]) == (
        a.ref.media_id, a.ref.uri, "v1", MODEL,
    )  # fmt: skip
    assert meta["language"] == "en" and meta["state"] == "complete" and meta["ingested_at"]


@pytest.mark.parametrize(
    ("model", "version", "start_ms", "end_ms"),
    [
        ("clasp-mini-v1", "sha256:9f2c", 0, 1),
        ("/home/ana/modèles/clasp-été", "2026-12-05T10:00:00+00:00", 3_599_999, 36_000_000),
        ("模型", "v" * 300, 12, 13),
    ],
)
def test_point_ids_are_the_uuid5_of_the_span_for_any_text(
    model: str, version: str, start_ms: int, end_ms: int
) -> None:
    # the ids of points written before write ids existed (a write replaces them all when it completes)
    media_id = str(uuid.uuid5(MEDIA_NAMESPACE, "file:///talks/ünïcode.mp3"))
    name = f"{media_id}:{model}:{version}:{start_ms}:{end_ms}"
    assert point_id(media_id, model, version, start_ms, end_ms) == str(uuid.uuid5(MEDIA_NAMESPACE, name))


def test_reingest_same_media_is_idempotent(store: QdrantStore) -> None:
    a = make_media("file:///a.wav", "v1", 20, seed=1)
    ingest(store, a)
    assert store.count() == 20 and store.has_media(a.ref.media_id, "v1")
    ingest(store, a)
    assert store.count() == 20
    assert not store.has_media(a.ref.media_id, "v2")


def test_a_rewrite_of_the_stored_version_cut_off_keeps_the_stored_copy_whole(store: QdrantStore) -> None:
    # 'ingest --force' (or --transcribe of an item stored without words) rewrites the version
    # stored; with the same point ids it overwrote the complete points, and the rollback of a
    # cut-off rewrite deleted them all: SIGTERM after the first batch left 0 of 60 spans
    a = make_media("file:///a.wav", "v1", 12, seed=1)
    ingest(store, a)
    seen_during: list[float] = []

    def cut_off() -> Iterator[tuple[list[Segment], np.ndarray]]:
        first, *_ = a.batches(size=4)
        yield first
        seen_during.extend(h.start_s for h in store.search(a.vectors[1], k=12))  # the stored copy
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write_media(a.ref, MODEL, cut_off())
    assert sorted(seen_during) == [2.0 * i for i in range(12)]  # no span lost while rewriting
    assert store.count() == 12 and store.has_media(a.ref.media_id, "v1")
    assert store.search(a.vectors[4], k=1)[0].start_s == 8.0


def test_a_rewrite_of_the_stored_version_with_other_segments_replaces_it(store: QdrantStore) -> None:
    # 'ingest --force' with other segmentation settings kept the old spans beside the new ones
    a = make_media("file:///a.wav", "v1", 5, seed=1)
    ingest(store, a)
    fewer = make_media("file:///a.wav", "v1", 2, seed=2, offset_s=0.5)
    ingest(store, fewer)
    assert store.count() == 2
    spans = sorted((h.start_s, h.end_s) for h in store.search(fewer.vectors[0], k=10))
    assert spans == [(0.5, 2.0), (2.5, 4.0)]
    (listed,) = store.media()
    assert (listed.version, listed.state, listed.spans) == ("v1", "complete", 2)


def test_changed_media_leaves_no_stale_points(store: QdrantStore) -> None:
    old = make_media("file:///a.wav", "v1", 20, seed=1)
    other = make_media("file:///b.wav", "v1", 5, seed=2)
    ingest(store, old, other)
    new = make_media("file:///a.wav", "v2", 12, seed=3, offset_s=0.25)
    ingest(store, new)
    assert store.count(SearchFilter(media_id=new.ref.media_id)) == 12
    versions = {
        p.payload["metadata"]["version"] for p in store.iter_points(SearchFilter(media_id=new.ref.media_id))
    }
    assert versions == {"v2"}
    assert store.has_media(new.ref.media_id, "v2") and not store.has_media(new.ref.media_id, "v1")
    assert store.count() == 17


def _failing(item: Media, after: int) -> Iterator[tuple[list[Segment], np.ndarray]]:
    for i, batch in enumerate(item.batches()):
        if i == after:
            raise RuntimeError("encoder crashed")
        yield batch


def test_failed_write_removes_the_new_version(store: QdrantStore) -> None:
    old = make_media("file:///a.wav", "v1", 10, seed=1)
    ingest(store, old)
    new = make_media("file:///a.wav", "v2", 30, seed=2, offset_s=0.5)  # no span in common with v1
    with pytest.raises(RuntimeError, match="encoder crashed"):
        store.write_media(new.ref, MODEL, _failing(new, after=2))
    assert store.count() == 10 and store.has_media(old.ref.media_id, "v1")
    fresh = make_media("file:///c.wav", "v1", 30, seed=2)
    with pytest.raises(RuntimeError):
        store.write_media(fresh.ref, MODEL, _failing(fresh, after=3))
    assert store.count(SearchFilter(media_id=fresh.ref.media_id)) == 0


def test_a_new_version_sharing_spans_leaves_the_old_one_whole(store: QdrantStore) -> None:
    old = make_media("file:///a.wav", "v1", 30, seed=1)
    ingest(store, old)
    old_ids = {p.id for p in store.iter_points()}
    new = make_media("file:///a.wav", "v2", 30, seed=2)  # the same span boundaries as v1
    written: list[int] = []

    def batches() -> Iterator[tuple[list[Segment], np.ndarray]]:
        for i, batch in enumerate(new.batches()):
            if i == 2:
                # the writer is part-way through v2: v1 is whole and the only version searched
                assert store.count(SearchFilter(media_id=old.ref.media_id)) == 30 + sum(written)
                hits = store.search(old.vectors[0], k=50)
                assert len(hits) == 30 and {h.point_id for h in hits} == old_ids
                raise RuntimeError("encoder crashed")
            written.append(len(batch[0]))
            yield batch

    with pytest.raises(RuntimeError):
        store.write_media(new.ref, MODEL, batches())
    assert {p.id for p in store.iter_points()} == old_ids and store.has_media(old.ref.media_id, "v1")
    ingest(store, new)
    assert store.count() == 30 and store.has_media(new.ref.media_id, "v2")
    assert not {p.id for p in store.iter_points()} & old_ids


def test_media_without_speech_is_stored_as_an_invisible_marker(store: QdrantStore) -> None:
    speech = make_media("file:///a.wav", "v1", 5, seed=1)
    ingest(store, speech)
    silent = make_media("file:///a.wav", "v2", 0, seed=2)  # the file became silent
    assert store.write_media(silent.ref, MODEL, iter(())) == 0
    assert store.has_media(silent.ref.media_id, "v2") and not store.has_media(silent.ref.media_id, "v1")
    assert store.count() == 1 and store.search(speech.vectors[0], k=10) == []
    (marker,) = store.iter_points()
    assert marker.payload["metadata"]["state"] == "empty"
    assert marker.payload["metadata"]["source"] == "file:///a.wav"
    ingest(store, speech)  # speech again: the marker goes, the spans are back
    assert store.count() == 5 and len(store.search(speech.vectors[0], k=10)) == 5


def test_searches_do_not_see_a_version_being_written(store: QdrantStore) -> None:
    new = make_media("file:///a.wav", "v1", 14, seed=1)
    seen: list[int] = []

    def batches() -> Iterator[tuple[list[Segment], np.ndarray]]:
        for batch in new.batches():
            yield batch
            seen.append(len(store.search(new.vectors[0], k=50)))

    store.write_media(new.ref, MODEL, batches())
    assert seen == [0, 0] and store.count() == 14
    assert len(store.search(new.vectors[0], k=50)) == 14


def test_delete_by_media_and_by_source(store: QdrantStore) -> None:
    a, b = make_media("file:///a.wav", "v1", 4, seed=1), make_media("file:///b.wav", "v1", 6, seed=2)
    ingest(store, a, b)
    assert store.delete_media(a.ref.media_id) == 4 and store.count() == 6
    assert store.delete_source("file:///b.wav") == 6 and store.count() == 0
    assert store.delete_media("missing") == 0


def test_search_matches_brute_force_and_filters(store: QdrantStore) -> None:
    items = [
        make_media(f"file:///m{i}.wav", "v1", 15, seed=i, language="fr" if i % 2 else "en") for i in range(4)
    ]
    ingest(store, *items)
    query = items[2].vectors[3] + 0.1 * items[1].vectors[0]
    hits = store.search(query, k=5)
    every = np.concatenate([m.vectors for m in items])
    scores = every @ (query / np.linalg.norm(query))
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:5], atol=1e-4)
    assert hits[0].media_id == items[2].ref.media_id and hits[0].start_s == 6.0 and hits[0].end_s == 7.5
    assert hits[0].url == f"{items[2].ref.uri}#t=6,7.5"

    only = store.search(query, k=50, filters=SearchFilter(media_id=items[1].ref.media_id))
    assert len(only) == 15 and {h.media_id for h in only} == {items[1].ref.media_id}
    two = store.search(query, k=50, filters=SearchFilter(source=("file:///m0.wav", "file:///m3.wav")))
    assert {h.source for h in two} == {"file:///m0.wav", "file:///m3.wav"} and len(two) == 30
    french = store.search(query, k=100, filters=SearchFilter(language="fr"))
    assert len(french) == 30 and all(h.payload["metadata"]["language"] == "fr" for h in french)
    window = store.search(query, k=100, filters=SearchFilter(start_s_gte=4.0, end_s_lte=9.5))
    assert len(window) == 4 * 3 and all(h.start_s >= 4.0 and h.end_s <= 9.5 for h in window)
    above = store.search(query, k=100, score_threshold=0.3)
    assert above and all(h.score >= 0.3 for h in above)
    assert len(above) == int((scores >= 0.3).sum())


def test_grouped_search(store: QdrantStore) -> None:
    items = [make_media(f"file:///m{i}.wav", "v1", 12, seed=10 + i) for i in range(6)]
    ingest(store, *items)
    query = items[4].vectors[0]
    hits = store.search_groups(query, k=3, group_size=2)
    assert len(hits) == 6
    media = [h.media_id for h in hits]
    assert media[0] == items[4].ref.media_id
    assert all(media[i] == media[i + 1] for i in (0, 2, 4)) and len(set(media)) == 3
    best_per_media = {m.ref.media_id: np.sort(m.vectors @ query)[::-1][:2] for m in items}
    ranked = sorted(best_per_media, key=lambda mid: -best_per_media[mid][0])[:3]
    assert media[::2] == ranked
    for i, mid in enumerate(ranked):
        np.testing.assert_allclose([hits[2 * i].score, hits[2 * i + 1].score], best_per_media[mid], atol=1e-4)
    one = store.search_groups(query, k=10, group_size=1, filters=SearchFilter(media_id=items[0].ref.media_id))
    assert len(one) == 1


def test_segments_in_index_order(store: QdrantStore) -> None:
    a = make_media("file:///a.wav", "v1", 10, seed=1)
    ingest(store, a)
    spans = store.segments(a.ref.media_id, 3, 5)
    assert [h.payload["metadata"]["segment_index"] for h in spans] == [3, 4, 5]
    assert [h.start_s for h in spans] == [6.0, 8.0, 10.0]
    assert len(store.segments(a.ref.media_id, 3, 5, version="v1")) == 3
    assert store.segments(a.ref.media_id, 3, 5, version="v2") == []  # a hit's neighbours: its version only


def test_collection_mismatch_is_reported(store: QdrantStore) -> None:
    store.ensure_collection(MODEL, DIM)  # same identity: fine
    with pytest.raises(
        CollectionMismatchError,
        match=r"model 'test-model'.*\(open_store\(collection=NAME\)\).*\(store\.drop\(\)",
    ):  # a Python caller's store: its messages name Python arguments, not the CLI's options
        store.ensure_collection("other-model", 32)
    with pytest.raises(CollectionMismatchError, match="other-model"):
        store.ensure_collection("other-model", DIM)
    a = make_media("file:///a.wav", "v1", 3, seed=1)
    with pytest.raises(CollectionMismatchError):
        store.write_media(a.ref, "other-model", a.batches())
    with pytest.raises(ValueError, match="query with that model"):
        store.search(np.ones(8, dtype=np.float32))
    ingest(store, a)
    store.ensure_collection("other-model", 32, recreate=True)
    assert store.count() == 0 and store.identity is not None and store.identity.dim == 32


def test_bad_vectors_are_rejected(store: QdrantStore) -> None:
    a = make_media("file:///a.wav", "v1", 3, seed=1)
    with pytest.raises(ValueError, match="shape"):
        store.write_media(a.ref, MODEL, [(a.segments, a.vectors[:2])])
    bad = a.vectors.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        store.write_media(a.ref, MODEL, [(a.segments, bad)])
    assert store.count() == 0


@pytest.mark.parametrize("kind", ["edge", "client"])
def test_missing_collection(kind: str, tmp_path: Path) -> None:
    with open_backend(kind, tmp_path) as s:
        assert s.count() == 0 and not s.has_media("x", "v") and s.identity is None
        with pytest.raises(StoreError, match="does not exist"):
            s.search(np.ones(DIM, dtype=np.float32))


def test_interrupted_replace_is_not_taken_as_stored(store: QdrantStore) -> None:
    """A run killed after completing v2 but before deleting v1 must not skip the item."""
    from clasp_ingest.store.base import STATE_COMPLETE
    from clasp_ingest.store.filters import Where, meta_equals

    old = make_media("file:///a.wav", "v1", 10, seed=1)
    ingest(store, old)
    new = make_media("file:///a.wav", "v2", 6, seed=2, offset_s=0.5)
    store.upsert_points(store._points_for(new.ref, MODEL, new.segments, new.vectors, "now"))
    assert not store.has_media(new.ref.media_id, "v2")  # still being written
    this: Where = meta_equals("media_id", new.ref.media_id) & meta_equals("version", "v2")
    store._set_state(this, STATE_COMPLETE)  # ... and the process died here
    assert not store.has_media(new.ref.media_id, "v2")
    assert not store.has_media(old.ref.media_id, "v1")
    ingest(store, new)  # the re-run rewrites v2 and removes v1
    assert store.has_media(new.ref.media_id, "v2")
    assert store.count() == 6


def test_a_run_into_another_models_collection_names_the_model_that_made_it(tmp_path: Path) -> None:
    """A store filled when the default ``clasp-mini`` made ``clasp-mini-v0.13`` vectors records the
    source ``clasp-mini``, which now makes v1's: the refusal names ``clasp-mini-spec``, the preset
    that still makes v0.13's vectors (found by model id), not the stale source."""
    from clasp_ingest.model import get_preset
    from clasp_ingest.pipeline import collection_for

    v013, v1 = get_preset("clasp-mini-spec").model_id, get_preset("clasp-mini").model_id
    with open_backend("edge", tmp_path) as store:
        store.ensure_collection(v013, 385, source="clasp-mini")
        with (
            pytest.raises(CollectionMismatchError, match=rf"'{v013}'.*add to it with 'clasp-mini-spec',"),
            collection_for(store, v1, 385, source="clasp-mini"),
        ):
            pytest.fail("the run must not start")  # pragma: no cover
        store.ensure_collection("unknown-model", 8, recreate=True, source="/gone")
        with (
            pytest.raises(CollectionMismatchError) as refused,
            collection_for(store, v1, 385, source="clasp-mini"),
        ):
            pytest.fail("the run must not start")  # pragma: no cover
        assert "add to it" not in str(refused.value)  # no model makes those vectors: nothing to name


def test_media_lists_each_stored_version_with_its_state_and_spans(store: QdrantStore) -> None:
    assert store.media() == []
    a, b = make_media("file:///a.wav", "v1", 9, seed=1), make_media("file:///b.wav", "v1", 3, seed=2)
    ingest(store, a, b)
    silent = make_media("file:///c.wav", "v1", 0, seed=3)
    store.write_media(silent.ref, MODEL, iter(()))
    half = make_media("file:///d.wav", "v1", 20, seed=4)
    with pytest.raises(RuntimeError):
        store.write_media(half.ref, MODEL, _failing(half, after=2))  # a failed write leaves nothing
    new_a = make_media("file:///a.wav", "v2", 14, seed=5)

    def stopped() -> Iterator[tuple[list[Segment], np.ndarray]]:
        yield from new_a.batches()[:1]
        rows = store.media()  # while v2's first batch is written: v1 whole, v2 being written
        assert [(m.version, m.state, m.spans) for m in rows if m.source == "file:///a.wav"] == [
            ("v1", "complete", 9),
            ("v2", "writing", 0),
        ]
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        store.write_media(new_a.ref, MODEL, stopped())
    rows = store.media()
    assert [(m.source, m.title, m.version, m.state, m.spans) for m in rows] == [
        ("file:///a.wav", "a", "v1", "complete", 9),
        ("file:///b.wav", "b", "v1", "complete", 3),
        ("file:///c.wav", "c", "v1", "empty", 0),
    ]
    assert rows[0].media_id == a.ref.media_id and rows[0].model == MODEL and rows[0].ingested_at


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", ".", "", "x" * 256, "new\nline", "what?"])
def test_a_collection_name_that_is_not_one_plain_name_is_refused(tmp_path: Path, name: str) -> None:
    from clasp_ingest.errors import ConfigError
    from clasp_ingest.store import open_store

    for kwargs in ({"path": tmp_path / "store"}, {"url": ":memory:"}):
        with pytest.raises(ConfigError, match="collection name"):
            open_store(collection=name, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # nothing written, inside the store or beside it


def test_two_writes_of_one_item_at_once_leave_it_whole(store: QdrantStore) -> None:
    # two flows ingesting one source into one collection: the write completing first removed the
    # other's points as its "others", and the other then marked the rest complete: a partial item
    # that every later run skipped
    a = make_media("file:///a.wav", "v1", 12, seed=1)
    rows_while_rewriting: list[tuple[str, str, int]] = []

    def slow() -> Iterator[tuple[list[Segment], np.ndarray]]:
        first, *rest = a.batches(size=4)
        yield first
        ingest(store, a)  # the other write, whole, meanwhile
        rows_while_rewriting.extend((m.version, m.state, m.spans) for m in store.media())
        yield from rest

    with pytest.raises(StoreError, match="removed by another write of the same item"):
        store.write_media(a.ref, MODEL, slow())
    assert rows_while_rewriting == [("v1", "complete", 12)]  # the slow write's first batch: gone
    assert store.count() == 12 and store.has_media(a.ref.media_id, "v1")
    assert sorted(h.start_s for h in store.search(a.vectors[0], k=12)) == [2.0 * i for i in range(12)]


def test_store_list_shows_a_rewrite_of_the_stored_version_as_its_own_row(store: QdrantStore) -> None:
    a = make_media("file:///a.wav", "v1", 6, seed=1)
    ingest(store, a)
    rows: list[tuple[str, str, int]] = []

    def rewriting() -> Iterator[tuple[list[Segment], np.ndarray]]:
        first, *rest = a.batches(size=2)
        yield first
        rows.extend(sorted((m.version, m.state, m.spans) for m in store.media()))
        yield from rest

    store.write_media(a.ref, MODEL, rewriting())
    assert rows == [("v1", "complete", 6), ("v1", "writing", 0)]  # not two rows of 12 'writing'
    assert [(m.state, m.spans) for m in store.media()] == [("complete", 6)]


def test_an_item_left_with_two_complete_writes_is_written_again(store: QdrantStore) -> None:
    # a run killed between a write's completion and its removal of what it replaced: both copies
    # complete at the same version, and every later run skipped the item (twice the spans)
    from clasp_ingest.store.base import STATE_COMPLETE
    from clasp_ingest.store.filters import meta_equals

    a = make_media("file:///a.wav", "v1", 6, seed=1)
    ingest(store, a)
    store.upsert_points(store._points_for(a.ref, MODEL, a.segments, a.vectors, "now", write_id="cut0ff"))
    store._set_state(meta_equals("write_id", "cut0ff"), STATE_COMPLETE)
    assert store.count() == 12 and not store.has_media(a.ref.media_id, "v1")
    ingest(store, a)
    assert store.count() == 6 and store.has_media(a.ref.media_id, "v1")


def test_threads_sharing_a_store_make_its_collection_once(tmp_path: Path) -> None:
    # a thread took another's create in progress for a cut-off one and removed its folder
    from concurrent.futures import ThreadPoolExecutor

    with open_backend("edge", tmp_path) as shared, ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: shared.ensure_collection(MODEL, DIM), range(4)))
        assert sorted(made) == [False, False, False, True]
        a = make_media("file:///a.wav", "v1", 3, seed=1)
        ingest(shared, a)
        assert shared.count() == 3


def test_an_interrupt_while_the_old_version_is_removed_keeps_the_new_one(
    store: QdrantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or SIGTERM) just after the old version's delete rolled back the new, complete one
    too: the item had no version left, and one no longer listed by its feed stayed lost."""
    old = make_media("file:///a.wav", "v1", 10, seed=1)
    ingest(store, old)
    new = make_media("file:///a.wav", "v2", 12, seed=2, offset_s=0.5)
    delete = store._delete_others  # by filter, or by point id (a qdrant-client folder)

    def interrupted_after(*args: Any) -> None:
        delete(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_delete_others", interrupted_after)
    with pytest.raises(KeyboardInterrupt):
        store.write_media(new.ref, MODEL, new.batches())
    monkeypatch.undo()
    assert store.has_media(new.ref.media_id, "v2") and not store.has_media(old.ref.media_id, "v1")
    assert store.count() == 12 and len(store.search(new.vectors[0], k=50)) == 12
