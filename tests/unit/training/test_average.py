"""Averaging trained heads (``python -m clasp_ingest.training.average``) with the tiny-random model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError
from clasp_ingest.training.average import average_heads, main
from clasp_ingest.training.manifest import read_manifest
from clasp_ingest.training.train import TrainOptions, prepare_head, train_fusion

FAST = TrainOptions(lr=3e-3, batch_size=6, val_batch_size=3, max_epochs=2, patience=2, device="cpu")


def _two_heads(tone_manifest: Path, tmp_path: Path) -> tuple[Path, Path]:
    from clasp_ingest.model import load_model

    runs = []
    for name, options in (("a", FAST), ("b", replace(FAST, lr=1e-3, batch_size=4))):
        model = load_model("tiny-random", device="cpu")
        prepare_head(model, kind="gating", seed=0)
        train_fusion(model, tone_manifest, tmp_path / name, replace(options, center=True))
        runs.append(tmp_path / name)
    return runs[0], runs[1]


def test_average_is_the_mean_of_the_heads_with_refitted_centring(tone_manifest: Path, tmp_path: Path) -> None:
    from clasp_ingest.model import load_model

    a, b = _two_heads(tone_manifest, tmp_path)
    code = main([str(a), str(b), "--out", str(tmp_path / "avg"), "--center", str(tone_manifest),
                 "--model-id", "tiny-avg"])  # fmt: skip
    assert code == 0
    avg = load_model(str(tmp_path / "avg"), device="cpu")
    assert avg.model_id == "tiny-avg"
    sa, sb = (load_model(str(p), device="cpu").fusion.state_dict() for p in (a, b))
    for key, value in avg.fusion.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (sa[key] + sb[key]) / 2, atol=1e-6), key
        else:
            assert torch.equal(value, sa[key]), key
    # the centring is the averaged head's own: the mean unit output over the training rows
    rows = [r for r in read_manifest(tone_manifest) if r.split == "train"]
    from clasp_ingest.training.features import load_waveform

    avg.centering, kept = None, avg.centering
    outputs = avg.encode_audio([load_waveform(r.audio) for r in rows])
    assert kept is not None and np.allclose(kept.audio, outputs.mean(0), atol=1e-5)


def test_heads_of_different_shapes_or_too_few_are_refused(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    a, _ = _two_heads(tone_manifest, tmp_path)
    prepare_head(tiny_model, kind="concat", seed=0)
    train_fusion(tiny_model, tone_manifest, tmp_path / "concat", FAST)
    with pytest.raises(ConfigError, match="fusion head"):
        average_heads([a, tmp_path / "concat"], tmp_path / "x")
    with pytest.raises(ConfigError, match="at least two"):
        average_heads([a], tmp_path / "x")
    assert main([str(a), "--out", str(tmp_path / "y")]) == 1


def test_partial_centring_scales_the_means(tone_manifest: Path, tmp_path: Path) -> None:
    from clasp_ingest.model import load_model

    a, b = _two_heads(tone_manifest, tmp_path)
    for name, strength in (("full", "1.0"), ("half", "0.5")):
        assert main([str(a), str(b), "--out", str(tmp_path / name), "--center", str(tone_manifest),
                     "--center-strength", strength]) == 0  # fmt: skip
    full = load_model(str(tmp_path / "full"), device="cpu").centering
    half = load_model(str(tmp_path / "half"), device="cpu").centering
    assert full is not None and half is not None
    assert np.allclose(half.audio, 0.5 * full.audio, atol=1e-6)
    assert np.allclose(half.text, 0.5 * full.text, atol=1e-6)
    with pytest.raises(ConfigError, match="strength"):
        TrainOptions(center=True, center_strength=0.0)
    assert main([str(a), str(b), "--out", str(tmp_path / "z"), "--center", str(tone_manifest),
                 "--center-strength", "1.5"]) == 1  # fmt: skip


def test_attention_pooled_heads_average_too(tone_manifest: Path, tmp_path: Path) -> None:
    from clasp_ingest.model import load_model
    from clasp_ingest.model.fusion import PooledFusion
    from clasp_ingest.training.features import load_waveform

    runs = []
    for name, options in (("a", FAST), ("b", replace(FAST, lr=1e-3, batch_size=4))):
        model = load_model("tiny-random", device="cpu")
        prepare_head(model, kind="gating", seed=0, speech_pool="attention", pool_queries=2)
        train_fusion(model, tone_manifest, tmp_path / name, replace(options, center=True))
        runs.append(tmp_path / name)
    out = tmp_path / "avg"
    assert main([*map(str, runs), "--out", str(out), "--center", str(tone_manifest)]) == 0
    avg = load_model(str(out), device="cpu")
    assert isinstance(avg.fusion, PooledFusion) and avg.speech_frames
    sa, sb = (load_model(str(p), device="cpu").fusion.state_dict() for p in runs)
    torch.testing.assert_close(avg.fusion.pool.query, (sa["pool.query"] + sb["pool.query"]) / 2)
    rows = [r for r in read_manifest(tone_manifest) if r.split == "train"]
    avg.centering, kept = None, avg.centering
    outputs = avg.encode_audio([load_waveform(r.audio) for r in rows])  # the frame route
    assert kept is not None and np.allclose(kept.audio, outputs.mean(0), atol=1e-4)


def test_ensemble_sums_the_heads_unit_outputs(tone_manifest: Path, tmp_path: Path) -> None:
    """``--ensemble`` keeps both heads whole: the model's (uncentred) audio vector is the unit
    sum of the two heads' unit outputs (here heads from two different starts)."""
    from clasp_ingest.model import load_model
    from clasp_ingest.model.fusion import EnsembleFusion
    from clasp_ingest.training.features import load_waveform

    a, _ = _two_heads(tone_manifest, tmp_path)
    other = load_model("tiny-random", device="cpu")
    prepare_head(other, kind="gating", seed=1)
    train_fusion(other, tone_manifest, tmp_path / "seed1", replace(FAST, center=True))
    out = tmp_path / "ens"
    assert main([str(a), str(tmp_path / "seed1"), "--out", str(out), "--ensemble",
                 "--center", str(tone_manifest)]) == 0  # fmt: skip
    ens = load_model(str(out), device="cpu")
    assert isinstance(ens.fusion, EnsembleFusion) and len(ens.fusion.members) == 2
    assert ens.config.fusion.ensemble == 2 and ens.dim == ens.config.dim
    waves = [load_waveform(r.audio) for r in read_manifest(tone_manifest)]
    singles = [load_model(str(p), device="cpu") for p in (a, tmp_path / "seed1")]
    for model in (ens, *singles):
        model.centering = None
    parts = [m.encode_audio(waves) for m in singles]
    expected = (parts[0] + parts[1]) / np.linalg.norm(parts[0] + parts[1], axis=1, keepdims=True)
    np.testing.assert_allclose(ens.encode_audio(waves), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="ensemble already"):
        average_heads([out, a], tmp_path / "y", ensemble=True)


def test_weights_interpolate_heads_and_ensembles_of_one_shape(tone_manifest: Path, tmp_path: Path) -> None:
    """``--weights`` makes a weighted mean (scaled to sum to 1); ensembles of one shape are
    averaged member by member (a fine-tuned model and the one it started from)."""
    from clasp_ingest.model import load_model

    a, b = _two_heads(tone_manifest, tmp_path)
    assert main([str(a), str(b), "--out", str(tmp_path / "w"), "--weights", "1", "3"]) == 0
    sa, sb = (load_model(str(p), device="cpu").fusion.state_dict() for p in (a, b))
    for key, value in load_model(str(tmp_path / "w"), device="cpu").fusion.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.25 * sa[key] + 0.75 * sb[key], atol=1e-6), key
    for name, order in (("ab", [a, b]), ("ba", [b, a])):
        assert main([*map(str, order), "--out", str(tmp_path / name), "--ensemble"]) == 0
    out = tmp_path / "wise"
    assert (
        main([str(tmp_path / "ab"), str(tmp_path / "ba"), "--out", str(out), "--weights", "0.8", "0.2"]) == 0
    )
    wise = load_model(str(out), device="cpu")
    assert wise.config.fusion.ensemble == 2
    state = wise.fusion.state_dict()
    key = next(k for k, v in sa.items() if v.is_floating_point())
    torch.testing.assert_close(state[f"members.0.{key}"], 0.8 * sa[key] + 0.2 * sb[key])
    torch.testing.assert_close(state[f"members.1.{key}"], 0.8 * sb[key] + 0.2 * sa[key])
    equal = average_heads([tmp_path / "ab", tmp_path / "ba"], tmp_path / "eq").fusion.state_dict()
    torch.testing.assert_close(equal[f"members.0.{key}"], (sa[key] + sb[key]) / 2)
    with pytest.raises(ConfigError, match="ensemble already"):
        average_heads([tmp_path / "ab", a], tmp_path / "x", ensemble=True)  # no ensemble of ensembles
    for bad in (["1"], ["-1", "2"], ["0", "0"]):
        assert main([str(a), str(b), "--out", str(tmp_path / "bad"), "--weights", *bad]) == 1
    with pytest.raises(ConfigError, match="give one or the other"):
        average_heads([a, b], tmp_path / "x", ensemble=True, weights=[1, 1])
