"""``Infinity`` (which Python's json reads) or NaN in a whole-number field of a model's
``config.json`` is a ``ConfigError`` naming the file and the field (tester 6 of session 30:
"unexpected OverflowError: cannot convert float infinity to integer", no file named)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.model.config import ModelConfig
from clasp_ingest.model.presets import get_preset

FIELDS = ["seed", "speech.dim", "spectrogram.dim", "text.dim", "fusion.out_dim", "fusion.ensemble",
          "fusion.pool_queries", "fusion.speech_dim"]  # fmt: skip


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("field", FIELDS)
def test_a_non_finite_number_names_the_file_and_the_field(tmp_path: Path, field: str, value: float) -> None:
    data = get_preset("tiny-random").to_dict()
    *parents, key = field.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert ("NaN" if value != value else "Infinity") in path.read_text()  # as json writes them
    with pytest.raises(ConfigError) as raised:
        ModelConfig.from_file(path)
    assert str(raised.value) == f"model config {str(path)!r}: {field} must be a whole number, got {value!r}"


def test_whole_numbers_still_load(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(get_preset("tiny-random").to_json(), encoding="utf-8")
    assert ModelConfig.from_file(path) == get_preset("tiny-random")
