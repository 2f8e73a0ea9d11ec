"""Retriever fixtures: the real ``tiny-random`` model and stores whose span vectors are its
text vectors of known sentences, so that a query's best span is known exactly."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import QdrantStore, open_store
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


def media_ref(uri: str, fingerprint: str = "v1", **metadata: object) -> MediaRef:
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
