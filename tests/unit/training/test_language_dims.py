"""Language directions removed from targets and vectors (``train --language-dims``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.evaluation.evaluate import evaluate
from clasp_ingest.model.calibration import Centering, language_basis, project_out
from clasp_ingest.training.average import average_heads
from clasp_ingest.training.train import METRICS_FILE, TrainOptions, prepare_head, train_fusion

FAST = TrainOptions(lr=3e-3, batch_size=6, val_batch_size=3, max_epochs=2, patience=2, device="cpu")
LANGS = ("en", "de", "fr")


@pytest.fixture(scope="module")
def multilang_manifest(tone_manifest: Path) -> Path:
    """The tone manifest with its rows spread over three languages (same clips, same folder)."""
    rows = [json.loads(line) for line in tone_manifest.read_text(encoding="utf-8").splitlines()]
    for i, row in enumerate(rows):
        row["language"] = LANGS[i % 3]
    out = tone_manifest.with_name("multilang.jsonl")
    out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return out


def test_language_basis_spans_the_language_offsets() -> None:
    rng = np.random.default_rng(0)
    offsets = {lang: 3 * rng.standard_normal(64) for lang in LANGS}
    languages = [LANGS[i % 3] for i in range(300)]
    text = rng.standard_normal((300, 64)) + np.stack([offsets[lang] for lang in languages])
    basis = language_basis(text, languages, 2)
    assert basis.shape == (2, 64) and basis.dtype == np.float32
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-5)
    for a, b in (("en", "de"), ("en", "fr"), ("de", "fr")):
        diff = offsets[a] - offsets[b]
        assert np.linalg.norm(basis @ diff) / np.linalg.norm(diff) > 0.95, (a, b)
    # projected vectors are unit rows orthogonal to the basis, and the language means coincide
    projected = project_out(text, basis)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)
    assert np.abs(projected @ basis.T).max() < 1e-5
    labels = np.asarray(languages)
    means = np.stack([projected[labels == lang].mean(0) for lang in LANGS])
    raw = np.stack([project_out(text, None)[labels == lang].mean(0) for lang in LANGS])
    assert np.ptp(means, axis=0).max() < 0.2 * np.ptp(raw, axis=0).max()


def test_language_basis_refuses_impossible_requests() -> None:
    text = np.random.default_rng(1).standard_normal((6, 8))
    with pytest.raises(ConfigError, match="between 1 and"):
        language_basis(text, ["en", "de", "en", "de", "en", "de"], 2)
    with pytest.raises(ConfigError, match="needs a 'language'"):
        language_basis(text, ["en", None, "en", "de", "en", "de"], 1)
    with pytest.raises(ConfigError, match="6 text rows but 2"):
        language_basis(text, ["en", "de"], 1)


def test_trained_head_keeps_vectors_off_the_language_directions(
    tiny_model: Any, multilang_manifest: Path, tmp_path: Path
) -> None:
    from clasp_ingest.model import load_model

    prepare_head(tiny_model, seed=0)
    out = tmp_path / "neutral"
    result = train_fusion(tiny_model, multilang_manifest, out, replace(FAST, center=True, language_dims=2))
    centering = tiny_model.centering
    assert (
        centering is not None and centering.basis is not None and centering.basis.shape == (2, tiny_model.dim)
    )
    assert json.loads((out / METRICS_FILE).read_text())["options"]["language_dims"] == 2

    loaded = load_model(str(out), device="cpu")
    assert loaded.centering is not None and loaded.centering.basis is not None
    assert np.array_equal(loaded.centering.basis, centering.basis)
    queries = loaded.encode_text(["tone 1 bbb", "tone 2 ccc", "tone 3 ddd"])
    assert np.abs(queries @ centering.basis.T).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    # the saved model, re-decoding the clips, reproduces the in-memory validation metrics
    scores = evaluate(loaded, multilang_manifest, "all", split="val")
    for key, value in result.val_metrics.items():
        assert scores[key] == pytest.approx(value, abs=1e-5)

    # without --center the directions are still removed (zero means)
    prepare_head(tiny_model, seed=0)
    train_fusion(tiny_model, multilang_manifest, tmp_path / "plain", replace(FAST, language_dims=1))
    plain = load_model(str(tmp_path / "plain"), device="cpu").centering
    assert plain is not None and plain.basis is not None and plain.basis.shape == (1, tiny_model.dim)
    assert not plain.audio.any() and not plain.text.any()


def test_language_dims_are_checked_before_any_work(
    tiny_model: Any, tone_manifest: Path, multilang_manifest: Path, tmp_path: Path
) -> None:
    prepare_head(tiny_model, seed=0)
    with pytest.raises(ConfigError, match=r"at least 2 training languages.*1 \(en\)"):
        train_fusion(tiny_model, tone_manifest, tmp_path / "one", replace(FAST, language_dims=1))
    with pytest.raises(ConfigError, match=r"at least 4 training languages.*3 \(de, en, fr\)"):
        train_fusion(tiny_model, multilang_manifest, tmp_path / "three", replace(FAST, language_dims=3))
    rows = [json.loads(line) for line in multilang_manifest.read_text(encoding="utf-8").splitlines()]
    del rows[1]["language"]
    missing = multilang_manifest.with_name("missing.jsonl")
    missing.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 2 .* has none"):
        train_fusion(tiny_model, missing, tmp_path / "missing", replace(FAST, language_dims=1))
    assert not any(tmp_path.glob("*/.features"))  # refused before features were computed
    with pytest.raises(ConfigError, match="language_dims"):
        TrainOptions(language_dims=-1)


def test_averaging_keeps_the_directions_and_refuses_a_mix(multilang_manifest: Path, tmp_path: Path) -> None:
    from clasp_ingest.model import load_model

    def run(name: str, dims: int) -> Path:
        model = load_model("tiny-random", device="cpu")
        prepare_head(model, kind="gating", seed=0)
        train_fusion(
            model, multilang_manifest, tmp_path / name, replace(FAST, center=True, language_dims=dims)
        )
        return tmp_path / name

    a, b, other = run("a", 2), run("b", 2), run("other", 1)
    kept = load_model(str(a), device="cpu").centering
    for name, manifest in (("avg", multilang_manifest), ("avg-plain", None)):
        average_heads([a, b], tmp_path / name, center_manifest=manifest)
        averaged = load_model(str(tmp_path / name), device="cpu").centering
        assert averaged is not None and averaged.basis is not None and kept is not None
        assert np.array_equal(averaged.basis, kept.basis)
    with pytest.raises(ConfigError, match="language directions"):
        average_heads([a, other], tmp_path / "mixed")


def test_fine_tuning_keeps_the_models_directions(multilang_manifest: Path, tmp_path: Path) -> None:
    """A fine-tune on another manifest keeps its model's basis (and so can be ensembled with it);
    a fresh head on that manifest gets the manifest's own."""
    from clasp_ingest.model import load_model

    rows = [json.loads(line) for line in multilang_manifest.read_text(encoding="utf-8").splitlines()]
    more = multilang_manifest.with_name("more.jsonl")  # one de clip three more times: other means
    extra = 3 * [next(row for row in rows if row["split"] == "train" and row["language"] == "de")]
    more.write_text("".join(json.dumps(row) + "\n" for row in rows + extra), encoding="utf-8")
    opts = replace(FAST, center=True, language_dims=2)

    base = load_model("tiny-random", device="cpu")
    prepare_head(base, kind="gating", seed=0)
    train_fusion(base, multilang_manifest, tmp_path / "base", opts)
    kept = load_model(str(tmp_path / "base"), device="cpu")
    assert kept.centering is not None and kept.centering.basis is not None
    basis = kept.centering.basis.copy()

    prepare_head(kept, fresh=False)
    train_fusion(kept, more, tmp_path / "tuned", opts)
    tuned = load_model(str(tmp_path / "tuned"), device="cpu").centering
    assert tuned is not None and tuned.basis is not None and np.array_equal(tuned.basis, basis)
    average_heads([tmp_path / "base", tmp_path / "tuned"], tmp_path / "ens", ensemble=True)

    fresh = load_model("tiny-random", device="cpu")
    prepare_head(fresh, kind="gating", seed=0)
    train_fusion(fresh, more, tmp_path / "fresh", opts)
    own = load_model(str(tmp_path / "fresh"), device="cpu").centering
    assert own is not None and own.basis is not None and not np.allclose(own.basis, basis, atol=1e-4)


def test_basis_of_the_wrong_shape_is_refused(tiny_model: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from clasp_ingest.errors import ModelLoadError
    from clasp_ingest.model import load_model, save_model

    dim = tiny_model.dim
    tiny_model.centering = Centering(np.zeros(dim, np.float32), np.zeros(dim, np.float32))
    out = save_model(tiny_model, tmp_path / "m")
    state = load_file(str(out / "fusion.safetensors"))
    import torch

    state["centering.basis"] = torch.zeros(2, dim + 1)
    save_file(state, str(out / "fusion.safetensors"))
    with pytest.raises(ModelLoadError, match=r"centering.basis of \(k, 32\)"):
        load_model(str(out), device="cpu")


def test_resume_refuses_other_language_dims(
    tiny_model: Any, multilang_manifest: Path, tmp_path: Path
) -> None:
    prepare_head(tiny_model, seed=0)
    out = tmp_path / "run"
    train_fusion(tiny_model, multilang_manifest, out, replace(FAST, language_dims=2))
    assert json.loads((out / "checkpoint" / "targets.json").read_text()) == {"language_dims": 2}
    for dims in (0, 1):
        with pytest.raises(ConfigError, match=r"trained with language_dims=2"):
            train_fusion(tiny_model, multilang_manifest, out, replace(FAST, language_dims=dims, resume=True))
    resumed = train_fusion(
        tiny_model, multilang_manifest, out, replace(FAST, language_dims=2, resume=True, max_epochs=3)
    )
    assert resumed.fit.resumed_from == 2
    # a refused fresh run into the folder leaves its record alone
    with pytest.raises(ConfigError, match="resume"):
        train_fusion(tiny_model, multilang_manifest, out, FAST)
    assert json.loads((out / "checkpoint" / "targets.json").read_text()) == {"language_dims": 2}
