"""Lazy transcripts: returned spans of real speech are transcribed once (faster-whisper) and the
words written back, on both engines."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever
from clasp_ingest.retriever.audio import span_samples

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.store.base import transcript_of
from clasp_ingest.transcribe import Transcriber
from clasp_ingest.types import MediaRef, Segment, SpanHit
from tests.unit.retriever.conftest import SPOKEN, Counting, fill_spoken

Talk = tuple[MediaRef, list[Segment]]


def _words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


@pytest.fixture(params=["client", "edge"])
def spoken_store(request: pytest.FixtureRequest, tmp_path: Path, model: AudioTextEncoder, spoken_talk: Talk):  # type: ignore[no-untyped-def]
    target = open_store(url=":memory:") if request.param == "client" else open_store(path=tmp_path / "q")
    with target:
        fill_spoken(target, model, spoken_talk)
        yield target


@pytest.fixture
def counting(whisper: Transcriber) -> Counting:
    return Counting(whisper)


def test_span_samples_cut_only_the_span(spoken_talk: Talk) -> None:
    ref, segments = spoken_talk
    seg = segments[1]
    stored = {"metadata": {"version": ref.fingerprint}}
    hit = SpanHit(ref.media_id, ref.uri, ref.title, seg.start_s, seg.end_s, 1.0, "", payload=stored)
    samples = span_samples(hit)
    assert samples.dtype == np.float32 and abs(samples.size / 16_000 - seg.duration_s) < 0.05
    assert 0.01 < float(np.abs(samples).max()) <= 1.0
    beyond = SpanHit(ref.media_id, ref.uri, ref.title, 900.0, 901.0, 1.0, "", payload=stored)
    with pytest.raises(MediaDecodeError, match="beyond the end"):
        span_samples(beyond)


@pytest.mark.slow
def test_lazy_search_transcribes_once_and_writes_the_words_back(
    spoken_store: QdrantStore, model: AudioTextEncoder, counting: Counting
) -> None:
    retriever = ClaspRetriever(store=spoken_store, model=model, k=2, transcribe="lazy", transcriber=counting)

    docs = retriever.invoke(SPOKEN[0])

    assert counting.calls == 2  # the two returned spans, nothing else
    top = docs[0]
    assert {"photosynthesis", "sunlight", "plants"} <= _words(top.page_content)
    assert top.metadata["transcript"] == top.page_content and top.metadata["transcript_language"] == "en"
    assert top.metadata["title"] == "Spoken talk" and top.metadata["start_s"] > 0  # title and time kept
    stored = spoken_store.points(top.metadata["point_ids"])[0].payload
    assert stored["page_content"] == top.page_content
    assert stored["metadata"]["transcript_model"] == "faster-whisper:whisper-base"
    assert stored["metadata"]["title"] == "Spoken talk"

    again = retriever.invoke(SPOKEN[0])
    assert counting.calls == 2  # a later search returns the stored words without transcribing
    assert [d.page_content for d in again] == [d.page_content for d in docs]
    plain = ClaspRetriever(store=spoken_store, model=model, k=2).invoke(SPOKEN[0])  # "never"
    assert [d.page_content for d in plain] == [d.page_content for d in docs]
    untranscribed = [p for p in spoken_store.iter_points() if transcript_of(p.payload) is None]
    assert len(untranscribed) == len(SPOKEN) - 2


@pytest.mark.slow
def test_concurrent_queries_transcribe_a_span_once(
    spoken_store: QdrantStore, model: AudioTextEncoder, counting: Counting
) -> None:
    retrievers = [  # two retrievers over one store: the lock is per point, process-wide
        ClaspRetriever(store=spoken_store, model=model, k=1, transcribe="lazy", transcriber=counting)
        for _ in range(2)
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: retrievers[i % 2].invoke(SPOKEN[2]), range(4)))

    assert counting.calls == 1
    texts = {docs[0].page_content for docs in results}
    assert len(texts) == 1
    text = next(iter(texts))
    assert {"corner", "sells"} <= _words(text), text


@pytest.mark.slow
def test_context_spans_join_the_words_of_their_segments_in_order(
    spoken_store: QdrantStore, model: AudioTextEncoder, counting: Counting
) -> None:
    retriever = ClaspRetriever(store=spoken_store, model=model, k=1, context=1, transcribe="lazy",
                               transcriber=counting)  # fmt: skip
    doc = retriever.invoke(SPOKEN[1])[0]

    assert doc.metadata["segment_indices"] == [0, 1, 2] and counting.calls == 3
    text = doc.page_content.lower()
    assert text.index("photosynthesis") < text.index("train") < text.index("corner")


def test_never_does_not_transcribe_and_names_the_span(
    spoken_store: QdrantStore, model: AudioTextEncoder
) -> None:
    retriever = ClaspRetriever(store=spoken_store, model=model, k=1)
    assert retriever.transcribe == "never"
    doc = retriever.invoke(SPOKEN[3])[0]
    assert doc.page_content.startswith("Spoken talk [00:00:")
    assert doc.metadata["transcript"] is None and doc.metadata["transcript_language"] is None
    assert retriever.transcriber is None  # nothing was built or loaded


def test_a_span_whose_source_is_gone_is_returned_without_words(
    tmp_path: Path, model: AudioTextEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    gone = (tmp_path / "deleted.wav").as_uri()
    ref = MediaRef(gone, "m-gone", "v1", title="gone")
    unloadable = Transcriber()  # never loads: there is nothing to transcribe
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        store.write_media(ref, model.model_id, [([Segment("m-gone", 0, 0.0, 2.0)], model.encode_text(["x"]))])
        retriever = ClaspRetriever(store=store, model=model, k=1, transcribe="lazy", transcriber=unloadable)
        doc = retriever.invoke("x")[0]
    assert doc.page_content == "gone [00:00:00.000–00:00:02.000]" and doc.metadata["transcript"] is None
    assert "no words for" in caplog.text and not unloadable.loaded


def test_a_span_of_a_file_changed_since_ingest_gets_no_words(
    tmp_path: Path, model: AudioTextEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    from clasp_ingest.connectors.local import local_fingerprint

    from tests.fixtures_audio import tone, write_wav

    path = write_wav(tmp_path / "talk.wav", tone(440, 3.0))
    ref = MediaRef(path.as_uri(), "m-talk", local_fingerprint(path), title="talk")
    unloadable = Transcriber()  # never loads: the only span's file changed
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        store.write_media(ref, model.model_id, [([Segment("m-talk", 0, 0.0, 2.0)], model.encode_text(["x"]))])
        write_wav(path, tone(880, 5.0))  # rewritten after ingest, not ingested again
        retriever = ClaspRetriever(store=store, model=model, k=1, transcribe="lazy", transcriber=unloadable)
        doc = retriever.invoke("x")[0]
        assert transcript_of(next(iter(store.iter_points())).payload) is None  # nothing stored
    assert doc.metadata["transcript"] is None and not unloadable.loaded
    assert "changed since it was ingested" in caplog.text


def test_ingest_mode_never_transcribes_and_logs_spans_without_words(
    spoken_store: QdrantStore, model: AudioTextEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    retriever = ClaspRetriever(store=spoken_store, model=model, k=2, transcribe="ingest")
    docs = retriever.invoke(SPOKEN[1])
    assert all(d.metadata["transcript"] is None for d in docs) and retriever.transcriber is None
    assert "2 of 2 spans have no words" in caplog.text
    ids = docs[0].metadata["point_ids"]
    spoken_store.set_words(ids, "our train was late", language="en", model="ingest-time")
    assert retriever.invoke(SPOKEN[1], k=1)[0].page_content == "our train was late"


@pytest.mark.slow
def test_lazy_words_on_a_full_disk_are_returned_unstored_with_a_warning(
    tmp_path: Path,
    model: AudioTextEncoder,
    spoken_talk: Talk,
    counting: Counting,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the store refuses writes under its free-space floor: the search failed after transcribing
    import logging
    from dataclasses import replace

    with open_store(path=tmp_path / "q") as store:
        fill_spoken(store, model, spoken_talk)
        store.options = replace(store.options, min_free_bytes=2**62)  # EdgeStore's; "the disk is full"
        retriever = ClaspRetriever(store=store, model=model, k=1, transcribe="lazy", transcriber=counting)
        with caplog.at_level(logging.WARNING, logger="clasp_ingest"):
            (doc,) = retriever.invoke(SPOKEN[0])
        assert {"photosynthesis", "sunlight"} <= _words(doc.page_content) and counting.calls == 1
        assert "were not stored" in caplog.text and "is full" in caplog.text
        assert all(transcript_of(p.payload) is None for p in store.iter_points())


@pytest.mark.slow
def test_translate_adds_english_to_spans_that_have_their_words(
    tmp_path: Path, model: AudioTextEncoder
) -> None:
    """``search --transcribe --translate`` on a span a search had transcribed: it stored no
    translation. The words stay as stored; the English is made, stored beside them and returned."""
    from clasp_ingest.retriever.words import LazyWords

    from clasp_ingest.store.base import hit_from_point
    from clasp_ingest.transcribe import TranscriberOptions
    from tests.unit.retriever.conftest import media_ref

    spanish = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_es.opus"
    ref = media_ref(spanish.as_uri())
    said = "Los pescadores salieron al mar antes del amanecer."
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(model.model_id, model.dim)
        store.write_media(
            ref, model.model_id, [([Segment(ref.media_id, 1, 4.956, 8.228)], model.encode_text([said]))]
        )
        (point,) = store.iter_points()
        store.set_words([str(point.id)], said, language="es", model="earlier")
        hit = hit_from_point(store.points([str(point.id)])[0])
        counting = Counting(Transcriber(TranscriberOptions(translate=True)))
        lazy = LazyWords(store, counting)
        words, _ = lazy.fill([hit])
        english = words[str(point.id)].english
        assert english and {"fishermen", "sea"} & _words(english) and words[str(point.id)].text == said
        meta = store.points([str(point.id)])[0].payload["metadata"]
        assert (meta["transcript"], meta["transcript_model"], meta["transcript_en"]) == (
            said,
            "earlier",
            english,
        )
        calls = counting.calls
        again, _ = lazy.fill([hit_from_point(store.points([str(point.id)])[0])])
        assert again == {} and counting.calls == calls  # translated once


@pytest.mark.slow
def test_a_translation_that_comes_back_empty_is_not_asked_for_again(
    tmp_path: Path, model: AudioTextEncoder
) -> None:
    """Words stored as German whose cut Whisper hears as English: no translation comes back.
    ``""`` is stored, so the next ``--translate`` search does not transcribe the span again (it
    did, at every search)."""
    from clasp_ingest.retriever.words import LazyWords

    from clasp_ingest.store.base import hit_from_point
    from clasp_ingest.transcribe import TranscriberOptions
    from tests.unit.retriever.conftest import media_ref

    english = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_en.opus"
    ref = media_ref(english.as_uri())
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(model.model_id, model.dim)
        store.write_media(
            ref, model.model_id, [([Segment(ref.media_id, 0, 0.0, 3.716)], model.encode_text(["x"]))]
        )
        (point,) = store.iter_points()
        pid = str(point.id)
        store.set_words([pid], "Willkommen zu dieser kurzen Vorführung.", language="de", model="earlier")
        counting = Counting(Transcriber(TranscriberOptions(translate=True)))
        lazy = LazyWords(store, counting)
        first, _ = lazy.fill([hit_from_point(store.points([pid])[0])])
        assert (
            first[pid].english is None and store.points([pid])[0].payload["metadata"]["transcript_en"] == ""
        )
        calls = counting.calls
        again, _ = lazy.fill([hit_from_point(store.points([pid])[0])])
        assert again == {} and counting.calls == calls
