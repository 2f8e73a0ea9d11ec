"""NaN or ``Infinity`` inside a component's ``options`` in a model's ``config.json`` (a
spectrogram image's ``std``, a nested list) is a ``ConfigError`` naming the file and the option,
when the config is read: it used to pass, the ONNX export was then said to "differ from torch"
and every item failed on NaN vectors (found in an earlier review)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.model.config import ModelConfig
from clasp_ingest.model.presets import get_preset


def _written(tmp_path: Path, part: str, options: dict[str, object]) -> Path:
    data = get_preset("clasp-mini-spec").to_dict()
    data[part]["options"].update(options)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")  # json writes NaN / Infinity
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_std_names_the_file_and_the_option(tmp_path: Path, value: float) -> None:
    path = _written(tmp_path, "spectrogram", {"std": [0.5, value, 0.5]})
    with pytest.raises(ConfigError) as raised:
        ModelConfig.from_file(path)
    assert str(raised.value) == (
        f"model config {str(path)!r}: spectrogram.options.std[1] must be a finite number, got {value!r}"
    )


def test_nested_options_and_a_huge_literal_are_checked(tmp_path: Path) -> None:
    path = _written(tmp_path, "speech", {"extra": {"scale": 1.0}})
    path.write_text(path.read_text().replace('"scale": 1.0', '"scale": 1e999'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"speech\.options\.extra\.scale must be a finite number, got inf"):
        ModelConfig.from_file(path)


def test_finite_options_still_load(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(get_preset("clasp-mini-spec").to_json(), encoding="utf-8")
    assert ModelConfig.from_file(path) == get_preset("clasp-mini-spec")
