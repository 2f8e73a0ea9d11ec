"""Training Whisper's top layers with the head, and running them in CTranslate2 afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from torch import nn
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.base import pad_frames
from clasp_ingest.model.ct2_format import encoder_layer_count, patch_ct2_model, read_ct2_model
from clasp_ingest.model.whisper_ct2 import (
    WhisperCT2Options,
    WhisperCT2SpeechEncoder,
    truncated_whisper_dir,
)
from clasp_ingest.model.whisper_torch import (
    WhisperTorchFrames,
    load_torch_whisper_encoder,
    top_layers_ct2,
    top_layers_fusion,
)
from tests.unit.model_mini.test_whisper_torch import _noise
from tests.unit.training.conftest import write_tone

TRIM = WhisperCT2Options(window="trim", batch_size=3)


class _Frames(nn.Module):
    """A "head" that returns the frames it gets, to look at what the top layers made."""

    def forward(self, frames: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        return frames


def _clips() -> list[np.ndarray]:
    return [_noise(s, i) for i, s in enumerate([0.7, 2.3, 1.1])]


def _through_top(fusion: nn.Module, below: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return fusion(torch.from_numpy(pad_frames(below)), torch.zeros(len(below), 1)).numpy()


def test_top_layers_on_padded_states_equal_the_whole_encoder(tiny_whisper_ct2: Path) -> None:
    enc = load_torch_whisper_encoder(tiny_whisper_ct2)
    below = WhisperTorchFrames(enc, 1, TRIM).encode_frames(_clips())
    assert [len(b) for b in below] == [35, 115, 55]
    out = _through_top(top_layers_fusion(enc, 1, _Frames()), below)
    ct2 = WhisperCT2SpeechEncoder(tiny_whisper_ct2, compute_type="float32", options=TRIM)
    for i, frames in enumerate(ct2.encode_frames(_clips())):
        np.testing.assert_allclose(out[i, : len(frames)], frames, atol=1e-4)
        assert not out[i, len(frames) :].any()  # padding masked out of attention, zero again after


def test_trained_layers_written_into_ct2(tiny_whisper_ct2: Path, tmp_path: Path) -> None:
    enc = load_torch_whisper_encoder(tiny_whisper_ct2)
    fusion = top_layers_fusion(enc, 1, _Frames())
    assert all(p.requires_grad for p in fusion.parameters())
    assert not any(p.requires_grad for p in enc.parameters())  # the copies train, not the encoder
    unchanged = patch_ct2_model(tiny_whisper_ct2, tmp_path / "same", top_layers_ct2(fusion, 2))
    same, base = read_ct2_model(unchanged).variables, read_ct2_model(tiny_whisper_ct2).variables
    assert same.keys() == base.keys() and all(np.array_equal(same[k], base[k]) for k in base)

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in fusion.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    patched = patch_ct2_model(tiny_whisper_ct2, tmp_path / "patched", top_layers_ct2(fusion, 2))
    want = _through_top(fusion, WhisperTorchFrames(enc, 1, TRIM).encode_frames(_clips()))
    got = WhisperCT2SpeechEncoder(patched, compute_type="float32", options=TRIM).encode_frames(_clips())
    before = WhisperCT2SpeechEncoder(tiny_whisper_ct2, compute_type="float32", options=TRIM)
    for i, frames in enumerate(got):
        np.testing.assert_allclose(frames, want[i, : len(frames)], atol=1e-4)
        assert np.abs(frames - before.encode_frames(_clips())[i]).max() > 0.05


def test_a_truncated_encoder_is_its_first_layers_then_the_final_norm(
    tiny_whisper_ct2: Path, tmp_path: Path
) -> None:
    short = truncated_whisper_dir(tiny_whisper_ct2, 1, tmp_path)
    assert (encoder_layer_count(tiny_whisper_ct2), encoder_layer_count(short)) == (2, 1)
    assert truncated_whisper_dir(tiny_whisper_ct2, 1, tmp_path) == short  # made once
    enc = load_torch_whisper_encoder(tiny_whisper_ct2)
    with torch.no_grad():
        below = WhisperTorchFrames(enc, 1, TRIM).encode_frames(_clips())
        want = [enc.encoder.layer_norm(torch.from_numpy(b)).numpy() for b in below]
    got = WhisperCT2SpeechEncoder(short, compute_type="float32", options=TRIM).encode_frames(_clips())
    whole = WhisperCT2SpeechEncoder(tiny_whisper_ct2, compute_type="float32", options=TRIM)
    for g, w, full in zip(got, want, whole.encode_frames(_clips()), strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4)
        assert np.abs(g - full).max() > 0.05  # the second layer did something, and is gone
    assert truncated_whisper_dir(tiny_whisper_ct2, 2, tmp_path) == tiny_whisper_ct2  # nothing to cut
    with pytest.raises(ConfigError, match="encoder_layers must be >= 1"):
        truncated_whisper_dir(tiny_whisper_ct2, 0, tmp_path)


def test_patch_refuses_what_does_not_fit(tiny_whisper_ct2: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"layer_1/ffn/linear_0/bias.*\(64,\).*\(3,\)"):
        patch_ct2_model(tiny_whisper_ct2, tmp_path / "a", {"encoder/layer_1/ffn/linear_0/bias": np.ones(3)})
    with pytest.raises(ModelLoadError, match=r"'encoder/nothing'.*does not exist"):
        patch_ct2_model(tiny_whisper_ct2, tmp_path / "b", {"encoder/nothing": np.ones(3)})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match=r"1\.\.1"):
        top_layers_fusion(load_torch_whisper_encoder(tiny_whisper_ct2), 2, _Frames())


# -- `train --whisper-top-layers` end to end on a tiny Whisper model --------------------------------------


@pytest.fixture
def whisper_head_model(tiny_whisper_ct2: Path, tmp_path: Path) -> Path:
    """A saved model: the tiny CTranslate2 Whisper (trim windows) + an attention-pooling gating head."""
    from dataclasses import replace

    from clasp_ingest.model.clasp import save_fusion, seeded_head
    from clasp_ingest.model.config import ComponentSpec, FusionSpec
    from clasp_ingest.model.presets import get_preset

    speech = ComponentSpec(
        "ct2-whisper", str(tiny_whisper_ct2), 32, {"compute_type": "float32", "window": "trim"}
    )
    fusion = FusionSpec("gating", 32, 256, 32, speech_pool="attention", pool_queries=2)
    config = replace(get_preset("tiny-random"), model_id="tiny-whisper", speech=speech, fusion=fusion)
    return save_fusion(config, seeded_head(fusion, 0), tmp_path / "start")


@pytest.fixture
def speech_manifest(tmp_path: Path) -> Path:
    rows = []
    for i in range(9):
        write_tone(tmp_path / f"{i}.wav", 200 + 90 * i, 0.5 + 0.2 * i, seed=i)
        rows.append({"audio": f"{i}.wav", "text": f"clip {i}", "split": "train" if i < 6 else "val"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def test_train_top_layers_then_load_the_model(
    whisper_head_model: Path, speech_manifest: Path, tiny_whisper_ct2: Path, tmp_path: Path
) -> None:
    from clasp_ingest.model import load_model, save_model

    out = tmp_path / "trained"
    args = ["train", str(speech_manifest), "--out", str(out), "--model", str(whisper_head_model),
            "--fine-tune", "--whisper-top-layers", "1", "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--epochs", "2", "--batch-size", "3", "--lr", "1e-2",
            "--json", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["options"]["whisper_top_layers"] == 1
    config = json.loads((out / "config.json").read_text())
    top_file = out / "whisper_top.safetensors"
    assert config["speech"]["options"]["top_layers"] == "whisper_top.safetensors"  # the folder's own
    assert config["speech"]["source"] == str(tiny_whisper_ct2)  # the encoder it patches

    top = load_file(str(top_file))
    assert sorted({k.split("/")[1] for k in top}) == ["layer_1", "layer_norm"]  # the top layer + norm
    model = load_model(str(out), device="cpu")
    assert "-top-" in model.speech.model_dir.name
    written = read_ct2_model(model.speech.model_dir).variables
    start = read_ct2_model(tiny_whisper_ct2).variables
    for name, value in top.items():
        np.testing.assert_array_equal(written[name], value.astype(np.float32))
    moved = max(float(np.abs(written[n] - start[n]).max()) for n in top)
    assert moved > 1e-3  # the layer did train
    assert model.encode_audio([_noise(1.0, 5)]).shape == (1, model.dim)

    # the folder is whole: moved, it loads the same layers; saved again, it takes them along
    moved_dir = out.rename(tmp_path / "moved")
    again = load_model(str(moved_dir), device="cpu")
    assert again.speech.model_dir == model.speech.model_dir  # same layers, same patched copy
    copy = save_model(again, tmp_path / "copy")
    assert (copy / "whisper_top.safetensors").read_bytes() == (
        moved_dir / "whisper_top.safetensors"
    ).read_bytes()
    assert json.loads((copy / "config.json").read_text())["speech"]["options"]["top_layers"] == (
        "whisper_top.safetensors"
    )


def test_top_layers_need_a_whisper_frame_model(speech_manifest: Path, tmp_path: Path) -> None:
    args = ["train", str(speech_manifest), "--out", str(tmp_path / "o"), "--model", "tiny-random",
            "--whisper-top-layers", "1", "--device", "cpu", "--epochs", "1", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "needs a ct2-whisper speech encoder and a head that pools its frames" in result.stderr
