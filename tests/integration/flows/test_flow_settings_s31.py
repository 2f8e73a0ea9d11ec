"""The flow reads the settings `ingest` reads, and makes the collection `ingest` makes.

A tester ran one folder through every door (CLI, API, `--flow`, the flow in-process): with
`CLASP_MAX_SEGMENT_S=3 CLASP_MIN_SEGMENT_S=1` the CLI stored 12 spans of the LibriVox sample and
the flow 5 (the defaults), and every flow-made collection got the plain int8 graph instead of the
query-aware one a new clasp-mini collection gets. The default model, a fresh store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clasp_ingest.flows import ingest_source

from clasp_ingest.config import Settings
from clasp_ingest.media.segment import segment_media
from clasp_ingest.store import open_store

SAMPLE = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "librivox_austen.opus"


def test_the_flow_segments_by_the_clasp_settings_and_gets_the_query_aware_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASP_MAX_SEGMENT_S", "3")
    monkeypatch.setenv("CLASP_MIN_SEGMENT_S", "1")
    settings = Settings.model_validate({})
    wanted = list(
        segment_media(SAMPLE, options=settings.segmenter_options(), decode=settings.decode_options())
    )
    defaults = list(segment_media(SAMPLE))
    assert len(wanted) > len(defaults)  # the settings change the spans of this file

    qdrant = tmp_path / "q"
    summary = ingest_source(str(SAMPLE), qdrant_path=str(qdrant), device="cpu", retry_delay_s=0.0)
    assert (summary.media_ok, summary.media_failed) == (1, [])
    with open_store(path=qdrant) as store:
        stored = sorted(
            (p.payload["metadata"]["start_s"], p.payload["metadata"]["end_s"]) for p in store.iter_points()
        )
        assert store.require_collection().model_id.startswith("clasp-mini")
        assert store.index_config()["graph"] == "clasp_graph"
    assert stored == [(s.segment.start_s, s.segment.end_s) for s in wanted]


def test_a_bad_clasp_variable_on_a_worker_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment's worker with a bad ``CLASP_*`` value: the run failed with pydantic's
    ``ValidationError`` naming ``embed_batch_size`` (also a flow parameter, which was unset), not
    the variable (an operator's review, 2026-12-08). Now the CLI's message: the variables."""
    from clasp_ingest.errors import ConfigError

    monkeypatch.setenv("CLASP_EMBED_BATCH_SIZE", "abc")
    monkeypatch.setenv("CLASP_GPU_SLOTS", "0")
    with pytest.raises(ConfigError) as info:
        ingest_source(str(SAMPLE), qdrant_path=str(tmp_path / "q"), device="cpu", retry_delay_s=0.0)
    said = str(info.value)
    assert "CLASP_EMBED_BATCH_SIZE='abc'" in said and "CLASP_GPU_SLOTS='0'" in said, said
    assert not (tmp_path / "q").exists()
