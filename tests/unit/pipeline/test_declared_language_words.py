"""``ingest --transcribe`` in the language an item declares: an audio track tagged ``ita`` is
transcribed in Italian, not in the language Whisper detects from its first window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors import LocalConnector

from clasp_ingest import words
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.pipeline import PipelineOptions, ingest_source
from clasp_ingest.store import open_store
from clasp_ingest.transcribe import TimedWord, Transcriber, TranscriberOptions
from tests.fixtures_audio import convert, synth_speech

ITALIAN = "Domani andiamo al mare con gli amici."  # Whisper-base detects it as Spanish


class Asked(Transcriber):
    """The session's loaded Whisper, recording the language each window was asked for."""

    def __init__(self, loaded: Transcriber) -> None:
        super().__init__(loaded.options)
        self._model = loaded.load()
        self.asked: list[str | None] = []

    def transcribe_words(
        self, samples_16k: np.ndarray, *, offset_s: float = 0.0, language: str | None = None
    ) -> tuple[list[TimedWord], str]:
        self.asked.append(language)
        return super().transcribe_words(samples_16k, offset_s=offset_s, language=language)


@pytest.mark.slow
def test_ingest_words_use_the_audio_tracks_declared_language(
    tmp_path: Path, tiny_model: AudioTextEncoder, whisper: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    spoken = synth_speech(ITALIAN, tmp_path / "it.wav", voice="it")
    convert(spoken, media / "film.mkv", "-c:a", "libopus", "-metadata:s:a:0", "language=ita")
    options = TranscriberOptions()
    asked = Asked(whisper)
    monkeypatch.setitem(words._TRANSCRIBERS, options, asked)  # what ingest's shared_transcriber gives

    with open_store(path=tmp_path / "qdrant") as store:
        summary = ingest_source(LocalConnector(media), tiny_model, store, PipelineOptions(transcribe=options))
        metas = [p.payload["metadata"] for p in store.iter_points()]

    assert summary.media_ok == 1 and metas and asked.asked == ["it"]  # not detected
    assert {(m["language"], m["transcript_language"]) for m in metas} == {("it", "it")}
    heard = {w.strip(".,!?").lower() for m in metas for w in m["transcript"].split()}
    assert {"mare", "amici"} & heard
