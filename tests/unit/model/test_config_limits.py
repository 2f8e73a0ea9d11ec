"""A model folder comes from anyone: its config.json's sizes and flags are checked when read,
naming the file and the field, and its weights must be regular files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model import ClaspModel, save_model
from clasp_ingest.model.clasp import load_saved_head
from clasp_ingest.model.config import ModelConfig
from clasp_ingest.model.hub import resolve_file


@pytest.fixture
def folder(tiny: ClaspModel, tmp_path: Path) -> Path:
    return save_model(tiny, tmp_path / "m", model_id="tiny-limits")


def _edit(folder: Path, part: str | None, **fields: Any) -> Path:
    config = json.loads((folder / "config.json").read_text())
    (config[part] if part else config).update(fields)
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "config.json"


@pytest.mark.parametrize(
    ("part", "fields", "message"),
    [
        ("fusion", {"ensemble": 100_000}, r"fusion\.ensemble must be between 1 and 64, got 100000"),
        ("fusion", {"pool_queries": 10**6}, r"fusion\.pool_queries must be between 1 and 256"),
        ("fusion", {"out_dim": 10**6}, r"fusion\.out_dim must be between 1 and 16384, got 1000000"),
        ("speech", {"dim": 10**6}, r"component tiny-hubert:\S* dim must be between 1 and 16384"),
        (None, {"query_bank": "false"}, r"query_bank must be true or false, got 'false'"),
        ("fusion", {"normalize_inputs": "no"}, r"fusion\.normalize_inputs must be true or false, got 'no'"),
    ],
)
def test_out_of_range_sizes_and_non_boolean_flags_are_refused_naming_file_and_field(
    folder: Path, part: str | None, fields: dict[str, Any], message: str
) -> None:
    path = _edit(folder, part, **fields)
    with pytest.raises(ConfigError, match=rf"model config '.*m/config\.json': {message}"):
        ModelConfig.from_file(path)
    with pytest.raises(ConfigError, match=message):
        load_saved_head(folder)


def test_boolean_flags_still_read(folder: Path) -> None:
    config = ModelConfig.from_file(_edit(folder, "fusion", normalize_inputs=False))
    assert config.fusion.normalize_inputs is False and config.query_bank is False


@pytest.mark.parametrize("kind", ["FIFO", "device"])
def test_weights_that_are_not_a_regular_file_are_named(folder: Path, kind: str) -> None:
    weights = folder / "fusion.safetensors"
    weights.unlink()
    if kind == "FIFO":
        os.mkfifo(weights)
    else:
        weights.symlink_to("/dev/zero")
    with pytest.raises(ModelLoadError, match=rf"fusion\.safetensors'.* is not a regular file but a {kind}"):
        load_saved_head(folder)
    with pytest.raises(ModelLoadError, match=rf"is not a regular file but a {kind}; give the weights file"):
        resolve_file(str(weights))
