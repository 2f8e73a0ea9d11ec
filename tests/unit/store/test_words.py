"""``QdrantStore.set_words``: a span's words written into its points' payloads, on both engines."""

from __future__ import annotations

from pathlib import Path

from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.store.base import transcript_of
from tests.unit.store.conftest import DIM, MODEL, make_media


def _stored(store: QdrantStore) -> list[tuple[str, dict[str, object]]]:
    return [(p.id, p.payload) for p in store.iter_points()]


def test_set_words_replaces_page_content_and_keeps_title_and_times(store: QdrantStore) -> None:
    media = make_media("file:///talks/a.wav", "v1", 5, seed=1)
    store.write_media(media.ref, MODEL, media.batches())
    hit = store.search(media.vectors[2], k=1)[0]
    before = dict(hit.payload["metadata"])

    words = "bonjour tout le monde"
    store.set_words([str(hit.point_id)], words, language="fr", model="fw:base", english="hello")

    after = store.search(media.vectors[2], k=1)[0]
    assert after.point_id == hit.point_id
    assert after.payload["page_content"] == "bonjour tout le monde"
    assert transcript_of(after.payload) == "bonjour tout le monde"
    meta = after.payload["metadata"]
    assert meta["transcript_language"] == "fr" and meta["transcript_model"] == "fw:base"
    assert meta["transcript_en"] == "hello"
    assert {k: meta[k] for k in before} == before  # title, times, state... untouched
    others = [payload for pid, payload in _stored(store) if pid != hit.point_id]
    assert len(others) == 4 and all(transcript_of(p) is None for p in others)
    assert all(str(p["page_content"]).startswith("a [") for p in others)


def test_set_words_skips_points_that_no_longer_exist(store: QdrantStore) -> None:
    media = make_media("file:///talks/b.wav", "v1", 3, seed=2)
    store.write_media(media.ref, MODEL, media.batches())
    hit = store.search(media.vectors[0], k=1)[0]
    gone = "00000000-0000-0000-0000-000000000001"  # e.g. a version replaced meanwhile

    store.set_words([gone, str(hit.point_id)], "still written", language="en", model="m")

    assert store.count() == 3
    assert store.search(media.vectors[0], k=1)[0].payload["page_content"] == "still written"


def test_edge_has_a_full_text_index_on_the_transcript(tmp_path: Path) -> None:
    media = make_media("file:///talks/c.wav", "v1", 4, seed=3)
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(media.ref, MODEL, media.batches())
        ids = [p.id for p in store.iter_points()]
        store.set_words(ids[:1], "Photosynthesis turns sunlight into energy", language="en", model="m")
        store.set_words(ids[1:2], "the bakery sells bread", language="en", model="m")
    with open_store(path=tmp_path / "q") as store:  # reopened: words and index persisted
        import qdrant_edge as qe

        shard = store._require_shard()  # type: ignore[attr-defined]
        schema = shard.info().payload_schema
        assert schema["metadata.transcript"].data_type == qe.PayloadSchemaType.Text
        words = qe.Filter(must=[qe.FieldCondition("metadata.transcript", match=qe.MatchText("sunlight"))])
        assert shard.count(qe.CountRequest(exact=True, filter=words)) == 1
        assert sum(transcript_of(p.payload) is not None for p in store.iter_points()) == 2


def test_an_item_has_words_when_ingest_wrote_them_not_when_a_search_did(store: QdrantStore) -> None:
    from clasp_ingest.words import SpanWords

    store.ensure_collection(MODEL, DIM, text_dim=4, recreate=True)  # with word vectors
    item = make_media("file:///w.wav", "v1", 5, seed=3)
    store.write_media(item.ref, MODEL, item.batches())
    ids = {p.payload["metadata"]["segment_index"]: p.id for p in store.iter_points()}
    assert not store.has_words(item.ref.media_id, "v1")
    store.set_words([ids[2]], "middle words", language="en", model="m")  # lazy words on one span
    assert not store.has_words(item.ref.media_id, "v1")
    # a search transcribed every span (an item of one or two spans often is): the payload has
    # words, the word vectors do not, so 'ingest --transcribe' must still write them
    store.set_words([ids[i] for i in range(5)], "", language="en", model="m")
    assert not store.has_words(item.ref.media_id, "v1")
    heard = [SpanWords("", "en", "m")] * 5  # ingest-time words: every span heard nothing
    store.write_media(item.ref, MODEL, [(item.segments, item.vectors, heard)])
    assert store.has_words(item.ref.media_id, "v1")
