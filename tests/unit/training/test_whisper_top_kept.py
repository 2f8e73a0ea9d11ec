"""A fine-tune that trains fewer top Whisper layers than its start model had keeps the others."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.model.ct2_format import read_ct2_model
from clasp_ingest.model.whisper_ct2 import WhisperCT2SpeechEncoder
from tests.unit.model_mini.conftest import tiny_whisper_ct2  # noqa: F401 - the fixture

from .conftest import write_tone


def _start_model(whisper: Path, tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A saved model whose own Whisper file changes both layers of the 2-layer tiny Whisper and
    its final norm (as clasp-mini's holds its trained layers 4 and 5), under a pooling head."""
    from clasp_ingest.model.clasp import save_fusion, seeded_head
    from clasp_ingest.model.config import ComponentSpec, FusionSpec
    from clasp_ingest.model.presets import get_preset

    rng = np.random.default_rng(0)
    stock = read_ct2_model(whisper).variables
    trained = {
        name: (value + 0.05 * rng.standard_normal(value.shape)).astype(np.float16)
        for name, value in stock.items()
        if name.startswith(("encoder/layer_0/", "encoder/layer_1/", "encoder/layer_norm/"))
        and value.dtype.kind == "f"
    }
    save_file(trained, str(tmp_path / "start_top.safetensors"))
    options = {
        "compute_type": "float32",
        "window": "trim",
        "top_layers": str(tmp_path / "start_top.safetensors"),
    }
    speech = ComponentSpec("ct2-whisper", str(whisper), 32, options)
    fusion = FusionSpec("gating", 32, 256, 32, speech_pool="attention", pool_queries=2)
    config = replace(get_preset("tiny-random"), model_id="tiny-whisper", speech=speech, fusion=fusion)
    return save_fusion(config, seeded_head(fusion, 0), tmp_path / "start"), trained


def _manifest(tmp_path: Path) -> Path:
    rows = []
    for i in range(6):
        write_tone(tmp_path / f"{i}.wav", 200 + 90 * i, 0.5 + 0.1 * i, seed=i)
        rows.append({"audio": f"{i}.wav", "text": f"clip {i}", "split": "train" if i < 4 else "val"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def test_layers_below_the_trained_top_keep_the_start_models_weights(
    tiny_whisper_ct2: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    from clasp_ingest.model import load_model

    start, trained = _start_model(tiny_whisper_ct2, tmp_path)
    out = tmp_path / "tuned"
    args = ["train", str(_manifest(tmp_path)), "--out", str(out), "--model", str(start), "--fine-tune",
            "--whisper-top-layers", "1", "--device", "cpu", "--epochs", "1", "--batch-size", "2",
            "--lr", "1e-2", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    saved = load_file(str(out / "whisper_top.safetensors"))
    layer_0 = [name for name in trained if name.startswith("encoder/layer_0/")]
    assert layer_0 and set(saved) == set(trained)  # the union: layer 0 kept, layer 1 + norm trained
    for name in layer_0:
        np.testing.assert_array_equal(saved[name], trained[name])
    assert any(not np.array_equal(saved[n], trained[n]) for n in trained if "layer_1/" in n)

    loaded = load_model(str(out), device="cpu").speech
    assert isinstance(loaded, WhisperCT2SpeechEncoder)
    written = read_ct2_model(loaded.model_dir).variables
    for name in layer_0:  # the loaded model runs the start model's layer 0, not stock Whisper's
        np.testing.assert_array_equal(written[name], trained[name].astype(np.float32))
