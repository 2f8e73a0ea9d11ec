"""Lazy words detect the language once per item: the first span of an item is cut with the 30 s
around it, the item's later spans are cut alone and share that context, so a search that
returns six unsure spans of one lecture encodes one context instead of six (a first
``search --rerank 6`` over 10 minutes of Russian read speech: 12 Whisper encodings → 7)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors.local import local_fingerprint
from clasp_ingest.retriever.audio import span_in_context
from clasp_ingest.retriever.spans import Span
from clasp_ingest.retriever.words import LazyWords, _Cut

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from clasp_ingest.transcribe import Transcriber, TranscriberOptions
from clasp_ingest.types import Segment, SpanHit
from tests.fixtures_audio import SR, noise, write_wav
from tests.unit.retriever.conftest import media_ref, whisper_encodes

#: Spans of the bundled samples (espeak-ng) that Whisper-base alone is unsure of (best language
#: under 0.995, so each needs a context): demo_es's third and fourth sentences (Spanish 0.50;
#: Thai 0.49, Spanish 0.28) and demo_en's seventh (English 0.34).
ES_SPANS = ((9.564, 13.636), (14.94, 18.596))
EN_SPAN = (32.7, 37.188)


def _sample(tmp_path: Path, name: str) -> Path:
    from clasp_ingest.demo import samples_dir

    return Path(shutil.copy(samples_dir() / name, tmp_path / name))


def test_an_items_spans_share_one_context_and_other_items_get_their_own(
    tmp_path: Path, model: AudioTextEncoder, whisper: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    spanish, english = _sample(tmp_path, "demo_es.opus"), _sample(tmp_path, "demo_en.opus")
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        vector = model.encode_text(["x"])
        for path, spans in ((spanish, ES_SPANS), (english, (EN_SPAN,))):
            ref = media_ref(path.as_uri())
            segments = [Segment(ref.media_id, i, a, b) for i, (a, b) in enumerate(spans)]
            store.write_media(ref, model.model_id, [(segments, np.repeat(vector, len(spans), axis=0))])
        hits = store.search(vector[0], k=3)
        assert len(hits) == 3
        encodes = whisper_encodes(whisper, monkeypatch)
        found, report = LazyWords(store, whisper).fill(hits)
        stored = {str(p.id): p.payload["metadata"] for p in store.iter_points()}
    assert report.transcribed == 3
    # three spans, and one context for each of the two items (six before: one per span)
    assert len(encodes) == 5
    for hit in hits:
        words = found[str(hit.point_id)]
        language = "es" if hit.source == spanish.as_uri() else "en"
        assert words.language == language and words.text, (hit.start_s, words)
        assert stored[str(hit.point_id)]["transcript_language"] == language


def _cuts(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two demo_es spans alone and the context of the first."""
    path = _sample(tmp_path, "demo_es.opus")
    first, second = (span_in_context(Span("m", path.as_uri(), "es", a, b, 1.0)) for a, b in ES_SPANS)
    return first.span, second.span, first.audio


@pytest.mark.parametrize("beam_size", [1, 2])  # the shared batch, and spans one by one
def test_spans_given_one_context_object_encode_it_once(
    tmp_path: Path, whisper: Transcriber, monkeypatch: pytest.MonkeyPatch, beam_size: int
) -> None:
    transcriber = Transcriber(TranscriberOptions(beam_size=beam_size))
    transcriber._model = whisper.load()  # the same loaded Whisper
    one, two, context = _cuts(tmp_path)
    encodes = whisper_encodes(whisper, monkeypatch)
    shared = transcriber.transcribe_many([one, two], contexts=[context, context])
    once = len(encodes)
    encodes.clear()
    apart = transcriber.transcribe_many([one, two], contexts=[context, context.copy()])
    # the same samples in another array are another context (told by identity, not compared)
    assert len(encodes) == once + 1
    assert [w.language for w in shared] == [w.language for w in apart] == ["es", "es"]
    assert [w.text for w in shared] == [w.text for w in apart]


# What LazyWords cuts (ffmpeg's real cuts of noise files; no Whisper runs): which spans are cut
# with the 30 s around them and which share another span's context.


def _hit(path: Path, start_s: float, end_s: float, media_id: str | None = None) -> SpanHit:
    version = local_fingerprint(path)
    return SpanHit(
        path.stem if media_id is None else media_id, path.as_uri(), path.stem, start_s, end_s, 1.0, "",
        payload={"metadata": {"version": version}}, point_id=f"{path.stem}-{start_s}",
    )  # fmt: skip


def _cut_with_windows(
    hits: list[SpanHit], monkeypatch: pytest.MonkeyPatch, language: str | None = None
) -> tuple[list[_Cut], list[float]]:
    """LazyWords' cuts of ``hits``, and the window each span_in_context call was asked for."""
    import clasp_ingest.retriever.words as words

    real, windows = words.span_in_context, []

    def recorded(hit: SpanHit, *, window_s: float, **kwargs: object) -> object:
        windows.append(window_s)
        return real(hit, window_s=window_s, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(words, "span_in_context", recorded)
    with open_store(url=":memory:") as store:
        lazy = LazyWords(store, Transcriber(TranscriberOptions(language=language)))
        return lazy._cuts(hits, "words", lambda: False), windows


@pytest.fixture(scope="module")
def two_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("items")
    return (
        write_wav(folder / "a.wav", noise(60.0, amplitude=0.3, seed=5)),
        write_wav(folder / "b.wav", noise(60.0, amplitude=0.3, seed=6)),
    )


def test_later_short_spans_of_an_item_are_cut_alone_and_share_its_first_context(
    two_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_files
    hits = [_hit(a, 10.0, 12.0), _hit(b, 20.0, 22.0), _hit(a, 40.0, 43.0), _hit(a, 5.0, 40.0)]
    cut, windows = _cut_with_windows(hits, monkeypatch)
    assert windows == [30.0, 30.0, 0.0, 30.0]  # a's second span alone; the long one asks as before
    first_a, first_b, second_a, long_a = cut
    assert first_a.context is not None and first_a.context.size == 30 * SR
    assert second_a.context is first_a.context and second_a.span.size == 3 * SR
    assert first_b.context is not None and first_b.context is not first_a.context
    # 35 s: cut alone, no context (its own first 30 s tell its language), none shared with it
    assert long_a.context is None and long_a.span.size == 35 * SR


def test_a_first_cut_that_fails_leaves_the_context_to_the_items_next_span(
    two_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two_files
    hits = [_hit(a, 70.0, 72.0), _hit(a, 10.0, 12.0), _hit(a, 40.0, 42.0)]  # the first lies past the end
    cut, windows = _cut_with_windows(hits, monkeypatch)
    assert windows == [30.0, 30.0, 0.0]
    assert [c.hit.start_s for c in cut] == [10.0, 40.0]
    assert cut[0].context is not None and cut[1].context is cut[0].context


def test_points_without_a_media_id_share_no_context(
    two_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two_files
    cut, windows = _cut_with_windows([_hit(a, 10.0, 12.0, ""), _hit(a, 40.0, 42.0, "")], monkeypatch)
    assert windows == [30.0, 30.0]
    assert cut[0].context is not None and cut[1].context is not None
    assert cut[0].context is not cut[1].context


def test_a_given_language_cuts_no_context(
    two_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two_files
    cut, windows = _cut_with_windows([_hit(a, 10.0, 12.0), _hit(a, 40.0, 42.0)], monkeypatch, language="en")
    assert windows == [0.0, 0.0] and [c.context for c in cut] == [None, None]


def test_contexts_made_on_access_are_told_apart() -> None:
    """A sequence that builds a new array at each access: ids of freed arrays can come back, and
    must not make two contexts one."""
    from clasp_ingest.transcribe import _one_each

    class OnAccess(Sequence[list[float]]):  # lists: each converted to a new array, then freed
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> list[float]:  # type: ignore[override]
            if not 0 <= i < 4:
                raise IndexError(i)
            return [float(i)] * 1000

    made = _one_each(OnAccess())  # type: ignore[arg-type]
    assert [float(c[0]) for c in made if c is not None] == [0.0, 1.0, 2.0, 3.0]
    assert len({id(c) for c in made}) == 4
