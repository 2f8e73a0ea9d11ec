"""The bundled demo samples: small, documented, and their expected spans match what VAD finds."""

from __future__ import annotations

import pytest

from clasp_ingest import demo
from clasp_ingest.media import segment_media
from clasp_ingest.types import SpanHit

SAMPLES = ("demo_en", "demo_de", "demo_es", "librivox_austen")


def test_samples_are_small_and_have_provenance() -> None:
    total = sum(demo.sample_path(name).stat().st_size for name in SAMPLES)
    assert total < 500_000
    provenance = (demo.samples_dir() / "PROVENANCE.md").read_text(encoding="utf-8")
    for name in SAMPLES:
        assert f"{name}.opus" in provenance
    assert "BSD-2" in provenance  # the real LibriVox speech's licence is stated


@pytest.mark.parametrize("name", SAMPLES)
def test_vad_finds_one_segment_per_listed_sentence(name: str) -> None:
    spans = {q.sample: q for q in demo.demo_queries()}
    segments = [item.segment for item in segment_media(demo.sample_path(name))]
    sentences = demo.sample_sentences(name)
    assert len(segments) == len(sentences)
    if name in spans:  # the expected span of a query overlaps the VAD segment of its sentence
        query = spans[name]
        seg = segments[query.sentence]
        hit = SpanHit("m", "s", name, seg.start_s, seg.end_s, 1.0, "u")
        assert demo.is_expected(hit, query)


def test_every_query_points_at_a_listed_sentence() -> None:
    queries = demo.demo_queries()
    assert len({q.language for q in queries}) >= 4
    for q in queries:
        assert 0 <= q.sentence < len(demo.sample_sentences(q.sample))
        assert q.end_s > q.start_s


def test_is_expected_rejects_other_sample_and_far_span() -> None:
    q = demo.demo_queries()[0]
    assert not demo.is_expected(SpanHit("m", "s", "other", q.start_s, q.end_s, 1.0, "u"), q)
    far = SpanHit("m", "s", q.sample, q.end_s + 5.0, q.end_s + 8.0, 1.0, "u")
    assert not demo.is_expected(far, q)
