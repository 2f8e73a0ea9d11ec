"""NaN or infinity in a model folder's ``fusion.safetensors`` (bit rot, a training run that
diverged) is refused at load with a ``ModelLoadError`` naming the file and the tensor (tester 6
of session 30): before, a NaN head weight failed every item of every run with "the model
produced non-finite vectors", and a NaN in ``centering.text`` made every query NaN, so every
search silently found nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.calibration import Centering, QueryBank
from clasp_ingest.model.clasp import load_model, load_saved_head, save_fusion, seeded_head
from clasp_ingest.model.presets import get_preset
from clasp_ingest.model.query import load_query_model


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """tiny-random saved with its seeded head, centring and a query bank."""
    config = replace(get_preset("tiny-random"), model_id="tiny-saved")
    rng = np.random.default_rng(0)
    bank = QueryBank(rng.standard_normal((6, 32)).astype(np.float32), 2, 0.1, 0.3)
    centering = Centering(*(rng.standard_normal((2, 32)).astype(np.float32) * 0.1), bank=bank)
    return save_fusion(config, seeded_head(config.fusion, 0), tmp_path / "m", centering)


def _spoil(folder: Path, name: str, index: tuple[int, ...], value: float) -> None:
    weights = folder / "fusion.safetensors"
    tensors = {k: v.copy() for k, v in load_file(str(weights)).items()}
    tensors[name][index] = value
    save_file(tensors, str(weights))


HEAD, BUFFER = "image_seq.0.weight", "image_seq.1.running_var"


def test_the_tensors_spoiled_here_exist(saved: Path) -> None:
    assert {HEAD, BUFFER, "centering.text", "centering.audio", "centering.bank.params"} <= set(
        load_file(str(saved / "fusion.safetensors"))
    )
    load_model(str(saved), device="cpu")
    load_query_model(str(saved))


@pytest.mark.parametrize(
    ("name", "index", "value", "count"),
    [
        (HEAD, (0, 0), float("nan"), 1),
        (BUFFER, (3,), float("inf"), 1),
        ("centering.audio", (5,), float("-inf"), 1),
        ("centering.text", (7,), float("nan"), 1),
        ("centering.bank.params", (2,), float("nan"), 1),
    ],
)
def test_non_finite_weights_are_refused_at_load(
    saved: Path, name: str, index: tuple[int, ...], value: float, count: int
) -> None:
    _spoil(saved, name, index, value)
    weights = str(saved / "fusion.safetensors")
    said = f"fusion weights {weights!r}: tensor {name!r} holds {count} non-finite values (NaN or infinity)"
    with pytest.raises(ModelLoadError, match="copy the model folder again") as raised:
        load_saved_head(saved)
    assert str(raised.value).startswith(said)
    with pytest.raises(ModelLoadError, match="copy the model folder again"):
        load_model(str(saved), device="cpu")
    if name.startswith("centering."):  # what a search loads: the text side alone
        with pytest.raises(ModelLoadError) as raised:
            load_query_model(str(saved))
        assert str(raised.value).startswith(said)


@pytest.mark.parametrize("field", ["beta", "mean", "scale"])
def test_a_query_bank_with_a_nan_parameter_is_refused(field: str) -> None:
    values = {"beta": 0.1, "mean": 0.2, "scale": 0.5} | {field: float("nan")}
    with pytest.raises(ConfigError, match="beta, mean and scale must be finite"):
        QueryBank(np.ones((3, 4), np.float32), 1, **values)
