"""A ``ct2-whisper`` model's ``speech.options`` are checked when its ``config.json`` is read: a
bad value is one ``ConfigError`` naming the file and the option, before any item (tester 6 of
session 30: ``intra_threads`` 4096 stalled ingest, ``inter_threads`` 0 failed each item with
ZeroDivisionError, a bad ``window``, ``encoder_layers`` or ``cache_dir`` failed each item)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.model.config import ComponentSpec, ModelConfig, Runtime
from clasp_ingest.model.presets import get_preset, list_presets
from clasp_ingest.model.whisper_ct2 import build_speech, check_speech_options

BAD: list[tuple[dict[str, Any], str]] = [
    ({"intra_threads": 4096}, "intra_threads must be a whole number from 0 to 1024, got 4096"),
    ({"intra_threads": -3}, "intra_threads must be a whole number from 0 to 1024, got -3"),
    ({"inter_threads": 0}, "inter_threads must be a whole number from 1 to 1024, got 0"),
    ({"inter_threads": "x"}, "inter_threads must be a whole number from 1 to 1024, got 'x'"),
    ({"inter_threads": True}, "inter_threads must be a whole number from 1 to 1024, got True"),
    ({"inter_threads": 2.5}, "inter_threads must be a whole number from 1 to 1024, got 2.5"),
    ({"inter_threads": None}, "inter_threads must be a whole number from 1 to 1024, got None"),
    ({"inter_threads": 64, "intra_threads": 64},
     "inter_threads × intra_threads must be at most 1024, got 64 × 64"),
    ({"window": "half"}, "window must be one of full, trim; got 'half'"),
    ({"window": None}, "window must be one of full, trim; got None"),
    ({"compute_type": 8}, "compute_type must be one of default, auto, int8,"),
    ({"encoder_layers": 0}, "encoder_layers must be a whole number from 1 to 1024, got 0"),
    ({"cache_dir": 5}, "cache_dir must be a path (a string), got 5"),
    ({"top_layers": ["a"]}, "top_layers must be a path (a string), got ['a']"),
]  # fmt: skip


def _config_file(tmp_path: Path, options: dict[str, Any]) -> Path:
    data = get_preset("clasp-mini").to_dict()
    data["speech"]["options"] |= options
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(("options", "said"), BAD)
def test_a_bad_option_names_the_file_and_the_option(
    tmp_path: Path, options: dict[str, Any], said: str
) -> None:
    path = _config_file(tmp_path, options)
    with pytest.raises(ConfigError) as raised:
        ModelConfig.from_file(path)
    assert str(raised.value).startswith(f"model config {str(path)!r}: speech.options.{said}")


@pytest.mark.parametrize(("options", "said"), BAD)
def test_build_speech_refuses_them_before_loading_anything(options: dict[str, Any], said: str) -> None:
    spec = ComponentSpec("ct2-whisper", "/nonexistent", 512, options)
    with pytest.raises(ConfigError, match="^" + re.escape(f"speech.options.{said}")):
        build_speech(spec, Runtime(device="cpu"))


@pytest.mark.parametrize(
    "options",
    [{}, {"intra_threads": 0}, {"inter_threads": 1024, "intra_threads": 1}, {"encoder_layers": None},
     {"cache_dir": None, "top_layers": ""}, {"compute_type": "float32", "window": "full"}],
)  # fmt: skip
def test_good_options_pass(tmp_path: Path, options: dict[str, Any]) -> None:
    check_speech_options(options)
    ModelConfig.from_file(_config_file(tmp_path, options))


def test_every_preset_passes() -> None:
    for config in list_presets().values():
        if config.speech.backend == "ct2-whisper":
            check_speech_options(config.speech.options)
