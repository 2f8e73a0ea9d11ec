"""Span playback files (real ffmpeg, no ffprobe needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever, save_span_audio

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.media.decode import decode_audio
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from tests.fixtures_audio import SR, convert, tone, write_wav
from tests.unit.retriever.conftest import media_ref, spans_of


def _stepped_tone(path: Path) -> Path:
    """Four seconds: 1 s of 220 Hz, 1 s of 440 Hz, 1 s of 880 Hz, 1 s of 1760 Hz."""
    return write_wav(path, np.concatenate([tone(f, 1.0) for f in (220, 440, 880, 1760)]))


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / SR)[spectrum.argmax()])


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_save_span_audio_cuts_the_span(tmp_path: Path, model: AudioTextEncoder, suffix: str) -> None:
    source = _stepped_tone(tmp_path / "steps.wav")
    if suffix == ".mp3":
        source = convert(source, tmp_path / "steps.mp3")
    ref = media_ref(source.as_uri())
    s = open_store(url=":memory:")
    s.ensure_collection(model.model_id, model.dim)
    segs = spans_of(ref, 1)
    s.write_media(ref, model.model_id, [(segs, model.encode_text(["a tone"]))])
    doc = ClaspRetriever(store=s, model=model, k=1).invoke("a tone")[0]
    doc.metadata.update(start_s=1.1, end_s=1.9)  # inside the 440 Hz second
    out = save_span_audio(doc, tmp_path / f"clip{suffix}")
    clip = decode_audio(out)
    assert abs(len(clip) / SR - 0.8) < 0.06
    assert abs(_dominant_hz(clip[: SR // 2]) - 440) < 10
    padded = save_span_audio(doc, tmp_path / "padded.wav", pad_s=0.5)
    assert abs(len(decode_audio(padded)) / SR - 1.8) < 0.06


def test_save_span_audio_reports_missing_media(tmp_path: Path) -> None:
    from langchain_core.documents import Document

    doc = Document("x", metadata={"source": str(tmp_path / "gone.wav"), "start_s": 0.0, "end_s": 1.0})
    with pytest.raises(MediaDecodeError, match=r"gone\.wav"):
        save_span_audio(doc, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()  # nothing half-written
    with pytest.raises(ValueError, match="lacks"):
        save_span_audio(Document("x", metadata={}), tmp_path / "out.wav")
