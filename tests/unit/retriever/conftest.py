"""Retriever fixtures: the real ``tiny-random`` model and stores whose span vectors are its
text vectors of known sentences, so that a query's best span is known exactly."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors.local import local_fingerprint, path_of_uri

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.transcribe import Transcriber, Transcript
from clasp_ingest.types import MediaRef, Segment, media_id_for

SENTENCES = [
    "the library opens at nine in the morning",
    "please bring your notebook to the lecture",
    "rivers carry fresh water down to the sea",
    "the committee will announce its decision",
    "bright stars are easier to see far from cities",
    "she planted tomatoes in the small garden",
    "our train was delayed because of the snow",
    "photosynthesis turns sunlight into energy",
    "he repaired the old bicycle yesterday",
    "the museum exhibits paintings from many centuries",
    "children learn languages quickly",
    "the bakery sells fresh bread every morning",
]
LECTURE = "file:///media/lecture.wav"
PODCAST = "file:///media/podcast.mp3"


@functools.cache
def tiny_model() -> AudioTextEncoder:
    from clasp_ingest.model import load_model

    return load_model("tiny-random", device="cpu")


def media_ref(uri: str, fingerprint: str | None = None, **metadata: object) -> MediaRef:
    """A stored item of ``uri``; its version as the local connector records it when the file exists
    (its spans can then be cut: search refuses a local file of the store it cannot check)."""
    if fingerprint is None:
        path = path_of_uri(uri)
        fingerprint = local_fingerprint(path) if uri.startswith("file:") and path.is_file() else "v1"
    return MediaRef(uri, media_id_for(uri), fingerprint, title=Path(uri).stem, metadata=dict(metadata))


def spans_of(ref: MediaRef, n: int) -> list[Segment]:
    return [Segment(ref.media_id, i, 3.0 * i, 3.0 * i + 2.5) for i in range(n)]


def fill(store: QdrantStore, model: AudioTextEncoder) -> None:
    """lecture: sentences 0-5 (en); podcast: sentences 6-11 (fr)."""
    store.ensure_collection(model.model_id, model.dim)
    for uri, sentences, lang in ((LECTURE, SENTENCES[:6], "en"), (PODCAST, SENTENCES[6:], "fr")):
        ref = media_ref(uri, language=lang)
        store.write_media(ref, model.model_id, [(spans_of(ref, 6), model.encode_text(sentences))])


@functools.cache
def shared_store() -> QdrantStore:
    """An in-memory store filled once (for LangChain's standard suite, which has no fixtures)."""
    store = open_store(url=":memory:")
    fill(store, tiny_model())
    return store


@pytest.fixture(scope="session")
def model() -> AudioTextEncoder:
    return tiny_model()


@pytest.fixture(params=["client", "edge"])
def store(request: pytest.FixtureRequest, tmp_path: Path, model: AudioTextEncoder) -> Iterator[QdrantStore]:
    target = open_store(url=":memory:") if request.param == "client" else open_store(path=tmp_path / "q")
    with target:
        fill(target, model)
        yield target


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


#: What the spoken talk says, sentence by sentence (espeak-ng, English).
SPOKEN = (
    "Photosynthesis turns sunlight into chemical energy for plants.",
    "Our train was delayed by twenty minutes because of the snow.",
    "The bakery on the corner sells fresh bread every morning.",
    "Engineers tested the bridge carefully before it was opened.",
)


@pytest.fixture(scope="session")
def spoken_talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[MediaRef, list[Segment]]:
    """A real spoken file (espeak-ng) and one segment per sentence, at the sentence's times."""
    from tests.fixtures_audio import build_track

    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    track = build_track(SPOKEN, path, pauses=[0.8])
    uri = path.as_uri()
    ref = MediaRef(uri, media_id_for(uri), local_fingerprint(path), title="Spoken talk")
    segments = [
        Segment(ref.media_id, i, round(start - 0.1, 3), round(end + 0.1, 3))
        for i, (start, end) in enumerate(track.spans)
    ]
    return ref, segments


def fill_spoken(store: QdrantStore, model: AudioTextEncoder, talk: tuple[MediaRef, list[Segment]]) -> None:
    """Store the talk's segments with the text vectors of their sentences (a query's best span is known)."""
    ref, segments = talk
    store.ensure_collection(model.model_id, model.dim)
    store.write_media(ref, model.model_id, [(segments, model.encode_text(list(SPOKEN)))])


class Counting(Transcriber):
    """The real transcriber (the session's loaded Whisper-base), counting the spans it transcribes."""

    def __init__(self, loaded: Transcriber) -> None:
        super().__init__(loaded.options)
        self._model = loaded.load()
        self.calls = 0
        self._guard = threading.Lock()

    def transcribe(self, samples_16k: np.ndarray, *, language: str | None = None) -> Transcript:
        with self._guard:
            self.calls += 1
        return super().transcribe(samples_16k, language=language)

    def transcribe_many(
        self,
        spans: Sequence[np.ndarray],
        *,
        language: str | None = None,
        languages: Sequence[str | None] | None = None,
        contexts: Sequence[np.ndarray | None] | None = None,
    ) -> list[Transcript]:
        with self._guard:
            self.calls += len(spans)
        return super().transcribe_many(spans, language=language, languages=languages, contexts=contexts)


def whisper_encodes(whisper: Transcriber, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at each of Whisper's encodings (the real ones run)."""
    model = whisper.load()  # each call's model is a copy of it, its attributes too
    real, calls = model.encode, []

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "encode", counted)
    return calls
