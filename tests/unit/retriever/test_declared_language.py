"""Lazy words in the language an item declares: a short span's detected language can be wrong
(espeak Italian tagged ``ita`` was transcribed as Japanese), the declared one is not."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from clasp_ingest.transcribe import Transcriber, Transcript
from clasp_ingest.types import Segment
from tests.fixtures_audio import read_wav, synth_speech
from tests.unit.retriever.conftest import Counting, media_ref

ITALIAN = "Domani andiamo al mare con gli amici."  # Whisper-base detects it as Spanish
ENGLISH = "The library opens at nine."


class Asked(Counting):
    """The real transcriber, recording the languages each span was asked to be transcribed in."""

    def __init__(self, loaded: Transcriber) -> None:
        super().__init__(loaded)
        self.asked: list[str | None] = []

    def transcribe_many(
        self,
        spans: Sequence[np.ndarray],
        *,
        language: str | None = None,
        languages: Sequence[str | None] | None = None,
        contexts: Sequence[np.ndarray | None] | None = None,
    ) -> list[Transcript]:
        self.asked += list(languages) if languages is not None else [language] * len(spans)
        return super().transcribe_many(spans, language=language, languages=languages, contexts=contexts)


@pytest.mark.slow
def test_lazy_words_use_the_items_declared_language_and_detect_the_others(
    tmp_path: Path, model: AudioTextEncoder, whisper: Transcriber
) -> None:
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        for name, text, voice in (("it", ITALIAN, "it"), ("en", ENGLISH, "en")):
            path = synth_speech(text, tmp_path / f"{name}.wav", voice=voice)
            ref = media_ref(path.as_uri(), **({"language": "it"} if name == "it" else {}))
            span = Segment(ref.media_id, 0, 0.0, round(read_wav(path).size / 16_000, 3))
            store.write_media(ref, model.model_id, [([span], model.encode_text([text]))])
        asked = Asked(whisper)
        retriever = ClaspRetriever(store=store, model=model, k=2, transcribe="lazy", transcriber=asked)

        docs = {Path(d.metadata["source"]).stem: d for d in retriever.invoke(ITALIAN)}
        stored = {
            Path(p.payload["metadata"]["source"]).stem: p.payload["metadata"] for p in store.iter_points()
        }

    assert len(asked.asked) == 2 and set(asked.asked) == {"it", None}  # English: none declared
    assert docs["it"].metadata["transcript_language"] == "it"
    assert {"mare", "amici"} & {w.strip(".,!?").lower() for w in docs["it"].page_content.split()}
    assert docs["en"].metadata["transcript_language"] == "en"
    assert stored["it"]["transcript_language"] == "it" and stored["en"]["transcript_language"] == "en"


@pytest.mark.slow
def test_a_translation_is_made_from_the_stored_words_language_not_the_declared_one(
    tmp_path: Path, model: AudioTextEncoder, whisper: Transcriber
) -> None:
    """Italian words stored for an item that declares 'en' (a feed template's en-us, a WebM
    track read as 'eng'): --translate transcribed the span again forced to English, heard
    English, and stored an empty translation for good."""
    from clasp_ingest.retriever.words import LazyWords

    from clasp_ingest.transcribe import TranscriberOptions

    said = "Domani andiamo al mare con gli amici, il tempo sarà bello e mangiamo insieme sulla spiaggia."
    path = synth_speech(said, tmp_path / "it.wav", voice="it")
    with open_store(url=":memory:") as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref(path.as_uri(), language="en")
        span = Segment(ref.media_id, 0, 0.0, round(read_wav(path).size / 16_000, 3))
        store.write_media(ref, model.model_id, [([span], model.encode_text(["x"]))])
        [point] = store.iter_points()
        store.set_words([str(point.id)], said, language="it",
                        model=whisper.model_id)  # fmt: skip
        translating = Transcriber(TranscriberOptions(translate=True))
        translating._model = whisper.load()  # the same loaded Whisper
        LazyWords(store, translating).fill(store.search(model.encode_text(["x"])[0], k=1))
        [point] = store.iter_points()
    english = point.payload["metadata"]["transcript_en"]
    assert {"sea", "beach", "friends", "eat"} & set(english.lower().replace(",", " ").split()), english
