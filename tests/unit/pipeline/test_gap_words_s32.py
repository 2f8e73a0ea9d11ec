"""``ingest --transcribe`` through the real pipeline (decode, segment, embed, store) with small
batches: every stored span holds the words the whole-file cut gives it. A word placed in the
pause after a batch's last span, nearer it but more than the tolerance before the next batch,
was dropped, and so was a word just after the file's last span when a word far past it was
heard too (Whisper's "Thanks." in trailing silence)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clasp_ingest.connectors import LocalConnector

from clasp_ingest import words
from clasp_ingest.media.segment import segment_media
from clasp_ingest.model.base import SAMPLE_RATE, AudioTextEncoder
from clasp_ingest.pipeline import PipelineOptions, ingest_media, ingest_source, text_dim_for
from clasp_ingest.store import open_store
from clasp_ingest.transcribe import TimedWord, Transcriber, TranscriberOptions
from clasp_ingest.types import Segment
from clasp_ingest.words import ALIGN_TOLERANCE_S, align_words
from tests.unit.pipeline.speech import SENTENCES, speak


class Scripted(Transcriber):
    """A Whisper that hears ``heard`` (times from the file's start) and loads no model: the
    words are placed against the spans the segmenter finds, where a real Whisper's seldom are."""

    def __init__(self, options: TranscriberOptions, heard: list[TimedWord]) -> None:
        super().__init__(options)
        self.heard = heard

    def transcribe_words(
        self, samples_16k: np.ndarray, *, offset_s: float = 0.0, language: str | None = None
    ) -> tuple[list[TimedWord], str]:
        end_s = offset_s + len(samples_16k) / SAMPLE_RATE
        return [w for w in self.heard if offset_s <= w.start_s < end_s], "en"


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Segment]]:
    """Three sentences with 2 s pauses and 4 s of silence after them, and the spans ingest
    stores for them."""
    root = tmp_path_factory.mktemp("gap-words")
    spoken = speak(root / "spoken.wav", SENTENCES[0:3], pause_ms=2000)
    audio, rate = sf.read(spoken, dtype="float32")
    folder = root / "media"
    folder.mkdir()
    path = folder / "talk.wav"
    sf.write(path, np.concatenate([audio, np.zeros(4 * rate, np.float32)]), rate)
    spans = [s.segment for s in segment_media(path, media_id="talk")]
    return folder, spans


def heard_in(spans: list[Segment]) -> list[TimedWord]:
    """One word inside each span; one 0.2 s after the first span (within the tolerance of it,
    over 0.5 s before the second); one 0.25 s after the last span and one 2 s past it."""
    first, last = spans[0], spans[-1]
    inside = [TimedWord(round(s.start_s + 0.3, 2), round(s.start_s + 0.6, 2), f" s{s.index}") for s in spans]
    gap = TimedWord(round(first.end_s + 0.02, 2), round(first.end_s + 0.3, 2), " gap")
    tail = TimedWord(round(last.end_s + 0.05, 2), round(last.end_s + 0.35, 2), " tail")
    far = TimedWord(round(last.end_s + 2.0, 2), round(last.end_s + 2.4, 2), " Thanks.")
    return sorted([*inside, gap, tail, far], key=lambda w: w.start_s)


@pytest.mark.parametrize("batch", [1, 32])
def test_stored_spans_hold_the_words_of_the_whole_file_cut(
    batch: int,
    talk: tuple[Path, list[Segment]],
    tiny_model: AudioTextEncoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, spans = talk
    assert len(spans) == 3 and spans[1].start_s - spans[0].end_s > 0.3 + ALIGN_TOLERANCE_S
    heard = heard_in(spans)
    whole = align_words(heard, spans)
    assert whole == ["s0 gap", "s1", "s2 tail"]
    options = TranscriberOptions()
    monkeypatch.setitem(words._TRANSCRIBERS, options, Scripted(options, heard))  # ingest's Whisper

    with open_store(path=tmp_path / "qdrant") as store:
        summary = ingest_source(
            LocalConnector(folder),
            tiny_model,
            store,
            PipelineOptions(transcribe=options, embed_batch_size=batch),
        )
        metas = sorted((p.payload["metadata"] for p in store.iter_points()), key=lambda m: m["segment_index"])

    assert summary.media_ok == 1
    assert [(m["start_s"], m["end_s"]) for m in metas] == [(s.start_s, s.end_s) for s in spans]
    assert [m["transcript"] for m in metas] == whole


def test_a_failure_a_batch_on_leaves_nothing_and_each_batch_is_told(
    talk: tuple[Path, list[Segment]],
    tiny_model: AudioTextEncoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a batch's words wait for the next batch: an error embedding that one still rolls back
    # what was written, and progress is still told once per embedded batch
    folder, spans = talk
    options = TranscriberOptions()
    monkeypatch.setitem(words._TRANSCRIBERS, options, Scripted(options, heard_in(spans)))
    connector = LocalConnector(folder)
    (ref,) = connector.discover()
    embedded: list[int] = []
    told: list[int] = []

    def embed(waves: Sequence[np.ndarray]) -> np.ndarray:
        embedded.append(len(waves))
        if len(embedded) == 3:
            raise RuntimeError("the embedding of the third batch failed")
        return tiny_model.encode_audio(waves)

    opts = PipelineOptions(transcribe=options, embed_batch_size=1)
    with open_store(path=tmp_path / "qdrant") as store:
        store.ensure_collection(tiny_model.model_id, tiny_model.dim, text_dim=text_dim_for(tiny_model))
        with pytest.raises(RuntimeError, match="third batch"):
            ingest_media(
                ref, connector, tiny_model, store, opts, embed=embed, on_batch=lambda n, _: told.append(n)
            )
        assert store.count() == 0  # the first span was written before the failure, and removed
        result = ingest_media(ref, connector, tiny_model, store, opts, on_batch=lambda n, _: told.append(n))
        assert result.segments == 3 and store.count() == 3
    assert told == [1, 2, 1, 2, 3]
