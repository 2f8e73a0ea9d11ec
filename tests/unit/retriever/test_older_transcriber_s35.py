"""A transcriber subclass written before ``transcribe_many`` took ``languages=`` and
``contexts=`` (``transcribe_many(spans, *, language=None)``) keeps serving lazy words: the
keywords it does not take are not passed (it failed with a TypeError on every span whose
language was detected), no context is cut for it, and its spans' language is detected from
the span alone."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clasp_ingest.retriever.words import LazyWords, _takes

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from clasp_ingest.transcribe import Transcriber, Transcript
from clasp_ingest.types import Segment
from tests.unit.retriever.conftest import media_ref, whisper_encodes

#: demo_es's last two sentences (espeak-ng): Whisper-base alone is unsure of their language
SPANS = ((9.564, 13.636), (14.94, 18.596))


class Older(Transcriber):
    """The real transcriber, with the signature of ``transcribe_many`` before 2026-12-05."""

    def __init__(self, loaded: Transcriber) -> None:
        super().__init__(loaded.options)
        self._model = loaded.load()  # the same loaded Whisper
        self.calls = 0

    def transcribe_many(  # type: ignore[override]
        self, spans: Sequence[np.ndarray], *, language: str | None = None
    ) -> list[Transcript]:
        self.calls += 1
        return super().transcribe_many(spans, language=language)


@pytest.mark.parametrize("declared", [None, "es"])
def test_an_older_transcriber_gets_neither_contexts_nor_languages(
    tmp_path: Path,
    model: AudioTextEncoder,
    whisper: Transcriber,
    monkeypatch: pytest.MonkeyPatch,
    declared: str | None,
) -> None:
    from clasp_ingest.demo import samples_dir

    path = Path(shutil.copy(samples_dir() / "demo_es.opus", tmp_path / "demo_es.opus"))
    older = Older(whisper)
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref(path.as_uri(), **({"language": declared} if declared else {}))
        segments = [Segment(ref.media_id, i, a, b) for i, (a, b) in enumerate(SPANS)]
        vector = model.encode_text(["x"])
        store.write_media(ref, model.model_id, [(segments, np.repeat(vector, len(SPANS), axis=0))])
        encodes = whisper_encodes(whisper, monkeypatch)
        found, report = LazyWords(store, older).fill(store.search(vector[0], k=2))
        stored = [p.payload["metadata"] for p in store.iter_points()]
    assert report.transcribed == 2 and report.failed == 0 and older.calls == 1
    assert all(words.text for words in found.values())
    assert len(encodes) == 2  # the two spans; no context was cut, so none encoded
    assert all(meta["transcript"] for meta in stored)


def test_takes_reads_the_keyword_by_name_or_any_keyword() -> None:
    def named(spans: Any, *, contexts: Any = None) -> None: ...
    def other(spans: Any, *, language: Any = None) -> None: ...
    def anything(spans: Any, **kwargs: Any) -> None: ...
    def positional(contexts: Any, /) -> None: ...

    assert _takes(named, "contexts") and _takes(anything, "contexts")
    assert not _takes(other, "contexts") and not _takes(positional, "contexts")
    assert _takes(max, "contexts")  # a builtin without a readable signature: assumed to take it
    assert _takes(Transcriber().transcribe_many, "contexts")
    assert _takes(Transcriber().transcribe_many, "languages")
