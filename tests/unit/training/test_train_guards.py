"""``train``/``eval`` refuse bad input before any work, naming the option and the fix."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import ConfigError, MediaDecodeError
from clasp_ingest.training.features import FeatureCache, compute_features
from clasp_ingest.training.loop import CHECKPOINT_NAME, FitOptions, fit_head
from clasp_ingest.training.manifest import read_manifest
from clasp_ingest.training.train import TrainOptions, prepare_head, train_fusion

from .conftest import write_tone

FAST = TrainOptions(lr=3e-3, batch_size=6, val_batch_size=3, max_epochs=1, patience=1, device="cpu")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_holding_a_model_is_refused_before_any_work(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    from clasp_ingest.model.clasp import save_model

    held = save_model(tiny_model, tmp_path / "held")  # config.json + fusion.safetensors, no checkpoint
    before = _files(held)
    prepare_head(tiny_model, seed=0)
    for resume in (False, True):  # no checkpoint of this run beside the model: --resume is no excuse
        with pytest.raises(ConfigError, match=r"holds a model already.*choose another --out"):
            train_fusion(tiny_model, tone_manifest, held, replace(FAST, resume=resume))
    assert _files(held) == before  # nothing written, nothing removed

    # the fine-tune whose --out is its own start model
    args = ["train", str(tone_manifest), "--model", str(held), "--fine-tune", "--out", str(held),
            "--device", "cpu", "--epochs", "1", "--batch-size", "6", "-q"]  # fmt: skip
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "holds a model already" in refused.stderr
    assert _files(held) == before


def test_resume_refuses_another_model_or_other_rows_before_any_work(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    prepare_head(tiny_model, seed=0)
    train_fusion(tiny_model, tone_manifest, out, FAST)
    checkpoint = out / "checkpoint" / CHECKPOINT_NAME
    written = checkpoint.read_bytes()

    fewer = tmp_path / "fewer.jsonl"  # the same clips, one training row less
    rows = tone_manifest.read_text().splitlines()
    fewer.write_text(
        "\n".join(line.replace('"clips/', f'"{tone_manifest.parent}/clips/') for line in rows[1:])
    )
    with pytest.raises(ConfigError, match=r"other training options \(manifest rows: '6 train / 3 val"):
        train_fusion(tiny_model, fewer, out, replace(FAST, max_epochs=2, resume=True))

    prepare_head(tiny_model, kind="gating", seed=0)  # another head shape
    with pytest.raises(ConfigError, match=r"other training options \(--model: .*gating.* now\)"):
        train_fusion(tiny_model, tone_manifest, out, replace(FAST, max_epochs=2, resume=True))
    assert checkpoint.read_bytes() == written


def test_a_checkpoint_without_identity_of_another_head_shape_is_refused_by_name(tmp_path: Path) -> None:
    from clasp_ingest.model.fusion import build_fusion
    from clasp_ingest.training.features import FeatureSet

    rng = np.random.default_rng(0)

    def pairs(n: int, width: int) -> FeatureSet:
        data = rng.standard_normal((n, width)).astype(np.float32)
        return FeatureSet(data, data[:, :4].copy(), data[:, :8].copy())

    options = FitOptions(max_epochs=1)
    fit_head(build_fusion("concat", 16, 4, 8), pairs(8, 16), pairs(4, 16), options, checkpoint_dir=tmp_path)
    other = build_fusion("concat", 12, 4, 8)  # another speech width, and no identity to tell
    with pytest.raises(ConfigError, match="holds a head of another shape"):
        fit_head(other, pairs(8, 12), pairs(4, 12), replace(options, max_epochs=2), checkpoint_dir=tmp_path,
                 resume=True)  # fmt: skip


@pytest.mark.parametrize("command", ["train", "eval", "ingest"])
@pytest.mark.parametrize("device", ["gpu", "foo", "cuda:x"])
def test_an_unknown_device_is_bad_usage_naming_device(
    command: str, device: str, tone_manifest: Path, tmp_path: Path
) -> None:
    """Every command's --device alike (ingest's exited 1, as for a failure)."""
    out = {"train": ["--out", str(tmp_path / "o"), "-q"], "eval": ["-q"]}
    out = out.get(command, ["--qdrant-path", str(tmp_path / "o")])
    result = CliRunner().invoke(app, [command, str(tone_manifest), *out, "--model", "tiny-random",
                                      "--device", device])  # fmt: skip
    assert result.exit_code == 2
    assert "--device" in result.stderr and f"'{device}' is not a device" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["train", "--epochs", "0"], "--epochs (max_epochs) must be >= 1, got 0"),
        (["train", "--pool-queries", "0"], "--pool-queries': Input should be greater than or equal to 1"),
        (["train", "--val-fraction", "1"], "--val-fraction (val_fraction) must be in [0, 1), got 1.0"),
        (["train", "--lr-gamma", "2"], "--lr-gamma (lr_gamma) must be in (0, 1], got 2.0"),
        (["train", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        (["train", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["train", "--temperature", "inf"], "--temperature must be a finite number > 0, got inf"),
        (["train", "--anchor", "a.jsonl"], "--anchor keeps the start head's outputs; it needs --fine-tune"),
        (["eval", "--candidates", "abc"], "'abc' is neither 'all' nor a number of 2 or more"),
        (["eval", "--candidates", "1"], "'1' is neither 'all' nor a number of 2 or more"),
    ],
)
def test_an_option_out_of_range_is_bad_usage_before_any_work(
    args: list[str], said: str, tmp_path: Path
) -> None:
    """Exit 2 as for every other command (README), not 1, and before the manifest is read."""
    command, *options = args
    out = ["--out", str(tmp_path / "o")] if command == "train" else []
    result = CliRunner().invoke(app, [command, str(tmp_path / "missing.jsonl"), *out, *options, "-q"])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.stderr.replace("│", " ").split()), result.stderr
    assert not (tmp_path / "o").exists()


def test_pool_queries_zero_is_refused_like_a_negative_number(tiny_model: Any) -> None:
    for queries in (0, -3):
        with pytest.raises(ConfigError, match=rf"--pool-queries .*must be >= 1, got {queries}"):
            prepare_head(tiny_model, speech_pool="attention", pool_queries=queries)
    prepare_head(tiny_model, speech_pool="attention", pool_queries=None)
    assert tiny_model.config.fusion.pool_queries == 4


def test_a_bad_cache_dir_is_named_and_leaves_nothing_in_out(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    prepare_head(tiny_model, seed=0)
    for cache, message in (
        (a_file, "is a file; give a folder"),
        (a_file / "sub", "cannot hold the feature cache"),
    ):
        out = tmp_path / "out"
        with pytest.raises(ConfigError, match=rf"--cache-dir .*{message}"):
            train_fusion(tiny_model, tone_manifest, out, replace(FAST, cache_dir=cache))
        assert not out.exists()


def test_a_zero_second_clip_is_left_out_as_unreadable(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    import wave

    data = tmp_path / "tones"
    shutil.copytree(tone_manifest.parent, data)
    with wave.open(str(data / "clips" / "0.wav"), "wb") as empty:  # a train clip: 44 bytes, no samples
        empty.setnchannels(1)
        empty.setsampwidth(2)
        empty.setframerate(16_000)
    rows = read_manifest(data / tone_manifest.name)
    audio, texts = [r.audio for r in rows[:3]], [r.text for r in rows[:3]]
    with pytest.raises(MediaDecodeError, match="no audio samples"):
        compute_features(tiny_model, audio, texts, cache=FeatureCache(None))
    prepare_head(tiny_model, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's "Mean of empty slice"
        result = train_fusion(tiny_model, data / tone_manifest.name, tmp_path / "run", FAST)
    assert result.unreadable == (str(data / "clips" / "0.wav"),) and result.n_train == 5


def test_option_errors_name_the_command_line_option() -> None:
    cases: dict[str, dict[str, Any]] = {
        "--epochs": {"max_epochs": 0},
        "--batch-size": {"batch_size": 0},
        "--val-batch-size": {"val_batch_size": 0},
        "--lr-gamma": {"lr_gamma": 1.5},
        "--lr ": {"lr": 0.0},
        "--val-fraction": {"val_fraction": 1.0},  # (0: only rows marked "val" validate)
        "--center-strength": {"center_strength": 2.0},
        "--whisper-top-layers": {"whisper_top_layers": -1},
    }
    for option, fields in cases.items():
        with pytest.raises(ConfigError) as caught:
            TrainOptions(**fields)
        assert str(caught.value).startswith(option), str(caught.value)


def test_audio_that_is_a_folder_is_named_a_folder(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    write_tone(tmp_path / "a.wav", 300, 0.3, seed=0)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": "clips", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"m\.jsonl:1: audio .*clips' is a folder, not a file"):
        read_manifest(manifest)
