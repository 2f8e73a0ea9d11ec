"""``evaluate(..., cache_dir="cache")``: a str names the feature cache as a Path does (t4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clasp_ingest.evaluation.evaluate import evaluate
from clasp_ingest.training.features import FeatureCache


def test_a_str_cache_dir_is_a_path(tiny_model: Any, tone_manifest: Path, tmp_path: Path) -> None:
    as_str = evaluate(tiny_model, tone_manifest, split="val", cache_dir=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("audio-*/*/*.npz"))) == 3  # the split's clips, cached
    again = evaluate(tiny_model, tone_manifest, split="val", cache_dir=tmp_path / "cache")
    assert again == pytest.approx(as_str)
    assert FeatureCache(str(tmp_path)).root == tmp_path and FeatureCache(None).root is None
