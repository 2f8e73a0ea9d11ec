"""The query bank (hubness correction): its arithmetic, fitting, saving and loading."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.calibration import QueryBank
from clasp_ingest.training.querybank import fit_query_bank, main
from clasp_ingest.training.train import TrainOptions, train_fusion


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_extra_coordinate_gives_the_corrected_score() -> None:
    rng = np.random.default_rng(0)
    bank = QueryBank(_unit(rng.standard_normal((50, 16))), k=5, beta=0.75, mean=0.3, scale=0.5)
    audio, text = _unit(rng.standard_normal((20, 16))), _unit(rng.standard_normal((7, 16)))
    penalty = bank.penalty(audio)
    sims = text @ audio.T
    nearest = np.sort(audio @ bank.texts.T, axis=1)[:, -5:].mean(1)
    np.testing.assert_allclose(penalty, 0.75 * (nearest - 0.3), atol=1e-6)
    a, t = bank.extend(audio, "audio"), bank.extend(text, "text")
    assert a.shape == (20, 17) and t.shape == (7, 17)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    # the dot product is (cos − penalty) over the two rows' norms before normalising
    norms = np.sqrt(1 + 0.25) * np.sqrt(1 + (penalty / 0.5) ** 2)
    np.testing.assert_allclose(t @ a.T, (sims - penalty[None, :]) / norms[None, :], atol=1e-5)


def test_bad_banks_are_refused() -> None:
    texts = np.ones((3, 4), np.float32)
    with pytest.raises(ConfigError, match="k=4"):
        QueryBank(texts, k=4, beta=1.0, mean=0.0)
    with pytest.raises(ConfigError, match="beta"):
        QueryBank(texts, k=2, beta=-1.0, mean=0.0)


def test_fitted_bank_saves_loads_and_widens_the_vectors(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    from clasp_ingest.model import load_model
    from clasp_ingest.training.features import load_waveform
    from clasp_ingest.training.manifest import read_manifest

    train_fusion(tiny_model, tone_manifest, tmp_path / "run",
                 TrainOptions(lr=3e-3, batch_size=6, max_epochs=2, device="cpu", center=True))  # fmt: skip
    plain = load_model(str(tmp_path / "run"), device="cpu")
    out = tmp_path / "qb"
    assert main([str(tmp_path / "run"), "--manifest", str(tone_manifest), "--out", str(out),
                 "--size", "4", "--k", "2", "--beta", "0.5", "--model-id", "tiny-qb"]) == 0  # fmt: skip
    model = load_model(str(out), device="cpu")
    bank = model.centering.bank if model.centering is not None else None
    assert bank is not None and bank.texts.shape == (4, plain.dim)
    assert (bank.k, bank.beta, bank.scale) == (2, 0.5, 0.5) and model.model_id == "tiny-qb"
    assert model.dim == plain.dim + 1
    rows = read_manifest(tone_manifest)
    waves = [load_waveform(r.audio) for r in rows]
    audio, text = model.encode_audio(waves), model.encode_text([r.text for r in rows])
    assert audio.shape == (len(rows), plain.dim + 1) and text.shape == (len(rows), plain.dim + 1)
    # the first coordinates are the plain model's vectors (same head, same centring)
    base_audio, base_text = plain.encode_audio(waves), plain.encode_text([r.text for r in rows])
    np.testing.assert_allclose(audio[:, :-1] / np.linalg.norm(audio[:, :-1], axis=1, keepdims=True),
                               base_audio, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(text[:, -1], 0.5 / np.sqrt(1.25), atol=1e-6)
    # ranking follows cos − penalty: the corrected scores, up to per-row factors near 1
    corrected = base_text @ base_audio.T - bank.penalty(base_audio)[None, :]
    assert np.array_equal(np.argmax(text @ audio.T, axis=1), np.argmax(corrected, axis=1))
    # the mean penalty over the training clips it was fitted on is zero (up to the fp16 bank
    # texts saved with the model: 1.2e-5 on an AVX2 EPYC, against penalties of about 0.02)
    train = [w for w, r in zip(waves, rows, strict=True) if r.split == "train"]
    assert abs(float(bank.penalty(plain.encode_audio(train)).mean())) < 1e-4
    # refitting replaces the bank instead of stacking a second coordinate
    again = fit_query_bank(model, tone_manifest, size=3, k=1)
    assert again.dim == plain.dim + 1 and again.centering.bank.texts.shape == (3, plain.dim)
    with pytest.raises(ConfigError, match="k=9"):
        fit_query_bank(load_model(str(tmp_path / "run"), device="cpu"), tone_manifest, size=6, k=9)


def test_malformed_bank_tensors_are_refused_at_load(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from clasp_ingest.model import load_model
    from clasp_ingest.model.clasp import save_model

    save_model(fit_query_bank(tiny_model, tone_manifest, size=4, k=2), tmp_path / "m")
    weights = tmp_path / "m" / "fusion.safetensors"
    state = load_file(str(weights))
    state["centering.bank.params"] = torch.tensor([9.0, 0.5, 0.0, 0.5])  # k larger than the bank
    save_file(state, str(weights))
    with pytest.raises(ModelLoadError, match="k=9"):
        load_model(str(tmp_path / "m"), device="cpu")
    del state["centering.bank.params"]
    save_file(state, str(weights))
    with pytest.raises(ModelLoadError, match=r"bank\.params"):
        load_model(str(tmp_path / "m"), device="cpu")


def test_config_records_the_bank_and_must_agree_with_the_weights(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    import json

    from clasp_ingest.model import load_model
    from clasp_ingest.model.clasp import save_model
    from clasp_ingest.model.config import ModelConfig

    save_model(fit_query_bank(tiny_model, tone_manifest, size=4, k=2), tmp_path / "m")
    config_file = tmp_path / "m" / "config.json"
    data = json.loads(config_file.read_text())
    assert data["query_bank"] is True
    config = ModelConfig.from_dict(data)
    assert config.vector_dim == config.dim + 1 == load_model(str(tmp_path / "m"), device="cpu").dim
    del data["query_bank"]
    config_file.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="query_bank=False"):
        load_model(str(tmp_path / "m"), device="cpu")


def test_added_captions_extend_the_bank_it_keeps(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    """``--add-captions``: the model's bank stays, first, and every distinct caption of the
    other manifest's train rows follows it; ``mean`` is refitted over the new bank."""
    from clasp_ingest.model import load_model
    from clasp_ingest.training.features import FeatureCache, text_features
    from clasp_ingest.training.manifest import read_manifest, select_split

    with pytest.raises(ConfigError, match="has none"):
        fit_query_bank(tiny_model, tone_manifest, k=2, add_captions=tone_manifest)
    first = fit_query_bank(tiny_model, tone_manifest, size=4, k=2)
    kept = first.centering.bank
    captions = {row.text for row in select_split(read_manifest(tone_manifest), "train")}
    assert len(captions) > 4
    out = tmp_path / "added"
    assert main([str(_saved(first, tmp_path / "first")), "--manifest", str(tone_manifest),
                 "--add-captions", str(tone_manifest), "--k", "3", "--out", str(out)]) == 0  # fmt: skip
    bank = load_model(str(out), device="cpu").centering.bank
    assert bank.texts.shape == (4 + len(captions), first.dim - 1) and bank.k == 3
    np.testing.assert_allclose(bank.texts[:4], kept.texts, atol=1e-3)  # fp16 on disk
    # every added row is one of the captions' vectors, each caption once
    with_bank, first.centering = first.centering, replace(first.centering, bank=None)
    added = first.embed_text_features(text_features(first, sorted(captions), FeatureCache(None)))
    first.centering = with_bank
    np.testing.assert_allclose(bank.texts[4:], added, atol=1e-3)
    assert bank.mean != kept.mean


def _saved(model: Any, folder: Path) -> Path:
    from clasp_ingest.model.clasp import save_model

    return save_model(model, folder)
