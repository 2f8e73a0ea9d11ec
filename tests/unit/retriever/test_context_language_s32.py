"""Lazy words detect a short span's language from the media around it (up to 30 s), not from
the span alone: a few seconds of Russian read speech were heard as English, Bulgarian, Polish
or Ukrainian (5 of 150 festvox-ru spans) and transcribed in that language."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever.audio import span_in_context, span_samples
from clasp_ingest.retriever.spans import Span
from clasp_ingest.retriever.words import LazyWords

from clasp_ingest.errors import ConfigError
from clasp_ingest.evaluation.datasets import FESTVOX_RU
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from clasp_ingest.transcribe import Transcriber, TranscriberOptions, Transcript
from clasp_ingest.types import Segment
from tests.fixtures_audio import SR, noise, write_wav
from tests.unit.retriever.conftest import media_ref, whisper_encodes

#: festvox-ru recordings (one Russian reader; each shorter than 30 s, so its context is all of
#: it) and a span of each, as the segmenter cut it, that Whisper-base alone hears as another
#: language: ru_0001 3.164-4.996 s as English (0.30; Russian 0.27), ru_0016 4.423-5.967 s as
#: Bulgarian (0.51; Russian 0.049, under the 0.05 a declared language needs).
HEARD_AS_ENGLISH = ("ru_0001", 3.164, 4.996)
RUSSIAN_UNDER_DECLARED_MIN = ("ru_0016", 4.423, 5.967)

needs_festvox = pytest.mark.skipif(
    not (FESTVOX_RU / "wav").is_dir(), reason="needs festvox-ru's recordings (make eval-deps)"
)


def _span(path: Path, start_s: float, end_s: float) -> Span:
    return Span("m", path.as_uri(), path.stem, start_s, end_s, 1.0)


@pytest.fixture(scope="module")
def long_noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of noise: every sample differs, so a cut's place in the media shows."""
    return write_wav(tmp_path_factory.mktemp("ctx") / "long.wav", noise(60.0, amplitude=0.3, seed=3))


@pytest.mark.parametrize(
    ("start_s", "end_s", "cut_s"),
    [
        (28.0, 30.0, (14.0, 44.0)),  # in the middle: 14 s before and after
        (1.0, 3.0, (0.0, 30.0)),  # near the start: the window begins at 0 s and runs on after
        (57.0, 59.0, (43.0, 60.0)),  # near the end: cut short by the media's end
    ],
)
def test_the_context_holds_the_span_in_its_place_in_the_media(
    long_noise: Path, start_s: float, end_s: float, cut_s: tuple[float, float]
) -> None:
    cut = span_in_context(_span(long_noise, start_s, end_s))
    assert cut.has_context
    assert cut.audio.size == round((cut_s[1] - cut_s[0]) * SR)
    assert cut.first == round((start_s - cut_s[0]) * SR) and cut.span.size == round((end_s - start_s) * SR)
    # the span's samples are those a cut of the span alone gives (no second cut needed)
    np.testing.assert_allclose(cut.span, span_samples(_span(long_noise, start_s, end_s)), atol=1e-3)


def test_a_media_shorter_than_the_window_is_all_context(tmp_path: Path) -> None:
    short = write_wav(tmp_path / "short.wav", noise(10.0, amplitude=0.3, seed=4))
    cut = span_in_context(_span(short, 4.0, 6.0))
    assert cut.audio.size == 10 * SR and (cut.first, cut.last) == (4 * SR, 6 * SR)


def test_a_span_as_long_as_the_window_is_cut_alone(long_noise: Path) -> None:
    cut = span_in_context(_span(long_noise, 10.0, 45.0))
    assert not cut.has_context and cut.span.size == 35 * SR
    np.testing.assert_array_equal(cut.span, span_samples(_span(long_noise, 10.0, 45.0)))


def test_no_context_asked_is_the_span_alone(long_noise: Path) -> None:
    cut = span_in_context(_span(long_noise, 10.0, 12.0), window_s=0.0)
    assert not cut.has_context and cut.span.size == 2 * SR


@pytest.mark.parametrize("window_s", [-1.0, float("nan")])
def test_a_window_that_is_no_length_is_refused(long_noise: Path, window_s: float) -> None:
    with pytest.raises(ConfigError, match="window_s"):
        span_in_context(_span(long_noise, 10.0, 12.0), window_s=window_s)


def test_transcribe_many_wants_one_context_per_span(whisper: Transcriber) -> None:
    with pytest.raises(ValueError, match="1 contexts for 2 spans"):
        whisper.transcribe_many([np.zeros(SR, np.float32)] * 2, contexts=[None])


def _festvox(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(FESTVOX_RU / "wav" / f"{name}.wav", tmp_path / f"{name}.wav"))


def _lazy_words(
    tmp_path: Path,
    model: AudioTextEncoder,
    transcriber: Transcriber,
    said: tuple[str, float, float],
    **meta: str,
) -> tuple[Transcript, dict[str, object]]:
    """The lazy words of one festvox-ru span (its item declaring ``meta``) and what was stored."""
    name, start_s, end_s = said
    path = _festvox(tmp_path, name)
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref(path.as_uri(), **meta)
        vector = model.encode_text(["x"])
        store.write_media(ref, model.model_id, [([Segment(ref.media_id, 0, start_s, end_s)], vector)])
        found, _ = LazyWords(store, transcriber).fill(store.search(vector[0], k=1))
        [point] = store.iter_points()
    [words] = found.values()
    return words, point.payload["metadata"]


def _cyrillic(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum("\u0400" <= c <= "\u04ff" for c in letters) > len(letters) / 2


@pytest.mark.slow
@needs_festvox
def test_a_short_russian_span_heard_as_english_alone_gets_russian_words_from_its_context(
    tmp_path: Path, model: AudioTextEncoder, whisper: Transcriber
) -> None:
    name, start_s, end_s = HEARD_AS_ENGLISH
    alone = span_samples(_span(_festvox(tmp_path, name), start_s, end_s))
    assert whisper.transcribe_many([alone])[0].language != "ru"  # what the span alone sounds like

    words, stored = _lazy_words(tmp_path, model, whisper, HEARD_AS_ENGLISH)

    assert words.language == "ru" and _cyrillic(words.text), words
    assert stored["transcript_language"] == "ru" and stored["transcript"] == words.text


@pytest.mark.slow
@needs_festvox
def test_a_declared_language_is_checked_against_the_context_not_the_short_span(
    tmp_path: Path, model: AudioTextEncoder, whisper: Transcriber
) -> None:
    # the span alone gives Russian 0.049: under _DECLARED_MIN_PROB, the declared 'ru' lost
    words, stored = _lazy_words(tmp_path, model, whisper, RUSSIAN_UNDER_DECLARED_MIN, language="ru")
    assert words.language == "ru" and _cyrillic(words.text), words
    assert stored["transcript_language"] == "ru"


@pytest.mark.slow
@needs_festvox
def test_spans_transcribed_one_by_one_detect_from_their_context_too(
    tmp_path: Path, whisper: Transcriber
) -> None:
    """beam_size > 1 transcribes each span apart from the shared batch."""
    beams = Transcriber(TranscriberOptions(beam_size=2))
    beams._model = whisper.load()  # the same loaded Whisper
    name, start_s, end_s = HEARD_AS_ENGLISH
    cut = span_in_context(_span(_festvox(tmp_path, name), start_s, end_s))
    [alone, in_context] = [beams.transcribe_many([cut.span], contexts=[c])[0] for c in (None, cut.audio)]
    assert alone.language != "ru" and in_context.language == "ru" and _cyrillic(in_context.text)


@pytest.mark.slow
@needs_festvox
def test_a_given_language_is_kept_whatever_the_context(
    tmp_path: Path, model: AudioTextEncoder, whisper: Transcriber
) -> None:
    given = Transcriber(TranscriberOptions(language="en"))
    given._model = whisper.load()
    words, _ = _lazy_words(tmp_path, model, given, HEARD_AS_ENGLISH)
    assert words.language == "en"


def _sample_span(tmp_path: Path, name: str, start_s: float, end_s: float) -> tuple[Path, Span]:
    from clasp_ingest.demo import samples_dir

    path = Path(shutil.copy(samples_dir() / name, tmp_path / name))
    return path, _span(path, start_s, end_s)


def test_a_short_span_heard_as_another_language_alone_is_told_by_its_context(
    tmp_path: Path, whisper: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the bundled Spanish sample's last sentence (espeak-ng): Whisper-base alone hears Thai
    # (0.52, Spanish 0.22), in the 18.6 s of the file Spanish (0.94)
    _, span = _sample_span(tmp_path, "demo_es.opus", 14.94, 18.6)
    alone = span_samples(span)
    assert whisper.transcribe_many([alone])[0].language != "es"
    cut = span_in_context(span)
    encodes = whisper_encodes(whisper, monkeypatch)
    [words] = whisper.transcribe_many([cut.span], contexts=[cut.audio])
    assert words.language == "es" and words.text
    assert len(encodes) == 2  # the span, and its context


def test_a_span_sure_of_its_language_alone_is_not_heard_again_in_context(
    tmp_path: Path, whisper: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LibriVox's first sentence: English at 0.998 alone; its context would cost a 30 s encoding
    _, span = _sample_span(tmp_path, "librivox_austen.opus", 0.156, 6.976)
    cut = span_in_context(span)
    assert cut.has_context
    encodes = whisper_encodes(whisper, monkeypatch)
    [words] = whisper.transcribe_many([cut.span], contexts=[cut.audio])
    assert words.language == "en" and words.text
    assert len(encodes) == 1


def test_a_transcriber_written_before_contexts_serves_spans_of_a_given_language(
    tmp_path: Path, model: AudioTextEncoder
) -> None:
    # lazy words pass ``contexts=`` (and ``languages=``) only where some span has one: with a
    # language given none is cut, and an older subclass's transcribe_many keeps working
    class Older(Transcriber):
        def transcribe_many(  # type: ignore[override]
            self, spans: Sequence[np.ndarray], *, language: str | None = None
        ) -> list[Transcript]:
            return super().transcribe_many(spans, language=language)

    path, _ = _sample_span(tmp_path, "librivox_austen.opus", 0.156, 6.976)
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref(path.as_uri())
        vector = model.encode_text(["x"])
        store.write_media(ref, model.model_id, [([Segment(ref.media_id, 0, 0.156, 6.976)], vector)])
        found, report = LazyWords(store, Older(TranscriberOptions(language="en"))).fill(
            store.search(vector[0], k=1)
        )
    [words] = found.values()
    assert report.transcribed == 1 and words.language == "en" and words.text
