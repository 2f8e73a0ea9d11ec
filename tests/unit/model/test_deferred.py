"""DeferredModel: the config at once, the weights on a background thread, errors where used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model import get_preset, load_model
from clasp_ingest.model.base import AudioTextEncoder, Preloadable
from clasp_ingest.model.config import CONFIG_FILE, FUSION_FILE
from clasp_ingest.model.deferred import DeferredModel


def test_identity_first_weights_on_preload() -> None:
    wave = (0.1 * np.random.default_rng(0).standard_normal(16_000)).astype(np.float32)
    expected = load_model("tiny-random", device="cpu").encode_audio([wave])
    model = DeferredModel("tiny-random", device="cpu")
    assert isinstance(model, Preloadable) and isinstance(model, AudioTextEncoder)
    assert (model.model_id, model.dim, model.source) == ("tiny-random", 32, "tiny-random")
    assert "not loaded" in repr(model)
    model.preload()
    assert np.allclose(model.encode_audio([wave]), expected, atol=1e-6)
    assert "loaded" in repr(model)


def test_unknown_names_fail_at_once_and_load_errors_where_used(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'nope' is neither a preset"):
        DeferredModel("nope")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(get_preset("tiny-random").to_json())
    (folder / FUSION_FILE).write_bytes(b"not safetensors")
    model = DeferredModel(str(folder), device="cpu")
    assert model.source == str(folder.resolve())
    model.preload()
    with pytest.raises(Exception, match=r"broken|safetensors|header") as raised:
        model.encode_audio([np.zeros(16_000, np.float32)])
    assert not isinstance(raised.value, AssertionError)
    with pytest.raises(type(raised.value)):  # the same error again, not a hang or a half model
        model.encode_text(["x"])


def test_a_saved_model_is_recorded_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clasp_ingest.model import save_model

    save_model(load_model("tiny-random", device="cpu"), tmp_path / "mine", model_id="mine-v1")
    monkeypatch.chdir(tmp_path)
    model = DeferredModel("mine")
    assert (model.model_id, model.source) == ("mine-v1", str((tmp_path / "mine").resolve()))
    with pytest.raises(ModelLoadError):
        DeferredModel(str(tmp_path))  # a folder without config.json
