from __future__ import annotations

from clasp_ingest import demo
from clasp_ingest.media import segment_media


def test_bundled_sample_is_small_and_has_one_segment_per_sentence() -> None:
    path = demo.sample_path()
    assert path.is_file() and path.stat().st_size < 300_000
    segments = list(segment_media(path))
    assert len(segments) == len(demo.sample_sentences()) == 9
