from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model import ClaspModel, ModelConfig, get_preset, list_presets, load_model, save_model
from clasp_ingest.model.config import ComponentSpec, FusionSpec, Runtime
from clasp_ingest.model.hub import resolve_file
from clasp_ingest.model.query import find_model


def test_safetensors_round_trip(tiny: ClaspModel, clips: list[np.ndarray], tmp_path: Path) -> None:
    # Change the head (as training would), save, reload from the directory.
    trained = load_model("tiny-random", device="cpu")
    with torch.no_grad():
        for p in trained.fusion.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = save_model(trained, tmp_path / "m", model_id="tiny-trained")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "fusion.safetensors"]
    reloaded = load_model(str(out), device="cpu")
    assert reloaded.model_id == "tiny-trained"
    np.testing.assert_allclose(reloaded.encode_audio(clips), trained.encode_audio(clips), atol=1e-6)
    assert not np.allclose(reloaded.encode_audio(clips), tiny.encode_audio(clips), atol=1e-3)
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == "fusion.safetensors" and config["fusion"]["kind"] == "concat"


def test_config_json_round_trip() -> None:
    for name, config in list_presets().items():
        again = ModelConfig.from_dict(json.loads(config.to_json()))
        assert again == config, name


def test_presets_present() -> None:
    names = set(list_presets())
    assert {
        "clasp-official",
        "clasp-official-gating",
        "lasp-official",
        "lasp-official-gating",
        "tiny-random",
    } <= names
    gating = get_preset("clasp-official-gating")
    assert gating.fusion.kind == "gating" and gating.weights == "hf://llm-lab/CLASP/CLASP_Gating.pt"
    assert get_preset("clasp-official").dim == 768


def test_config_validates_dimensions() -> None:
    with pytest.raises(ConfigError, match="expects"):
        ModelConfig(
            "x",
            ComponentSpec("hf", "a", 1024),
            ComponentSpec("native", "b", 1000),
            FusionSpec("concat", 1024, 999, 768),
            ComponentSpec("tiny-bert", "c", 768),
        )
    with pytest.raises(ConfigError, match="fusion kind"):
        FusionSpec("mean", 1, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Runtime.resolve("cpu", "fp16")


def test_unknown_model_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a preset"):
        load_model("no-such-model")
    with pytest.raises(ModelLoadError, match=re.escape("config.json")):
        load_model(str(tmp_path))


def test_offline_hub_file_error_names_remedy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        ModelLoadError, match=re.escape("huggingface-cli download llm-lab/CLASP CLASP_Gating.pt")
    ):
        load_model("clasp-official-gating", device="cpu")
    (tmp_path / "CLASP").mkdir()
    (tmp_path / "CLASP" / "CLASP_Gating.pt").write_bytes(b"x")
    found = resolve_file("hf://llm-lab/CLASP/CLASP_Gating.pt", tmp_path)
    assert found == tmp_path / "CLASP" / "CLASP_Gating.pt"


def test_offline_backbone_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from clasp_ingest.model.speech import build_hf_speech

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = ComponentSpec("hf", "facebook/hubert-large-ls960-ft", 1024)
    with pytest.raises(ModelLoadError, match="facebook/hubert-large-ls960-ft"):
        build_hf_speech(spec, Runtime())


def test_local_backbone_dir(tmp_path: Path, clips: list[np.ndarray]) -> None:
    # A HuBERT saved into --model-dir loads through the 'hf' backend without the hub.
    from transformers import HubertConfig, HubertModel

    from clasp_ingest.model.speech import build_hf_speech

    cfg = HubertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(16,) * 7,
        feat_extract_norm="group", num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    HubertModel(cfg).save_pretrained(tmp_path / "tiny-hubert-base")
    enc = build_hf_speech(ComponentSpec("hf", "someone/tiny-hubert-base", 16), Runtime(model_dir=tmp_path))
    out = enc.encode(clips)
    assert out.shape == (len(clips), 16) and np.isfinite(out).all()
    # group-norm front end: batches only hold equal lengths, so batching changes nothing
    single = np.concatenate([enc.encode([c]) for c in clips])
    assert np.abs(out - single).max() <= 1e-4


def test_load_model_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from clasp_ingest import Settings
    from clasp_ingest.model import load_model_from_settings

    monkeypatch.setenv("CLASP_MODEL", "tiny-random")
    monkeypatch.setenv("CLASP_EMBED_BATCH_SIZE", "3")
    model = load_model_from_settings(Settings())
    assert model.model_id == "tiny-random" and model.runtime.batch_size == 3
    assert model.runtime.device == "cpu" and model.runtime.dtype == "fp32"


@pytest.mark.usefixtures("restore_torch_threads")
def test_load_model_from_settings_sets_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from clasp_ingest import Settings
    from clasp_ingest.model import load_model_from_settings, set_torch_threads

    monkeypatch.setenv("CLASP_MODEL", "tiny-random")
    monkeypatch.setenv("CLASP_TORCH_THREADS", "1")
    load_model_from_settings(Settings())
    assert torch.get_num_threads() == 1
    assert set_torch_threads(2) == 2 and torch.get_num_threads() == 2
    # default: one less than the usable cores, never 0
    assert set_torch_threads() == max(1, len(os.sched_getaffinity(0)) - 1) == torch.get_num_threads()
    with pytest.raises(ValueError, match=">= 1"):
        set_torch_threads(0)


def test_json_presets_are_named_by_file_and_version_their_model_id() -> None:
    mini = get_preset("clasp-mini")
    # the id stored in collections carries the head's version, so a collection made with an
    # older head (model id "clasp-mini-v0.13") is refused instead of mixed with the new vectors
    assert mini.model_id == "clasp-mini-v1.1"
    assert "clasp-mini" in list_presets() and mini.model_id not in list_presets()
    # v0.13, the default before v1, stays as clasp-mini-spec: its collections keep their model
    spec = get_preset("clasp-mini-spec")
    assert spec.model_id == "clasp-mini-v0.13" and spec.spectrogram.backend != "none"
    assert mini.spectrogram.backend == "none" and (mini.speech, mini.text, mini.fusion) == (
        spec.speech, spec.text, spec.fusion
    )  # fmt: skip
    assert find_model("clasp-mini-v0.13") == "clasp-mini-spec"


def test_shipped_clasp_mini_head_removes_five_language_directions() -> None:
    """The shipped head (since v0.5) is trained with --language-dims 5: the basis ships beside
    the head, orthonormal, and the stored means live outside its span (they were taken after
    the projection)."""
    from importlib.resources import files

    from safetensors.numpy import load_file

    state = load_file(str(files("clasp_ingest") / "data" / "models" / "clasp-mini" / "fusion.safetensors"))
    basis = state["centering.basis"].astype(np.float64)
    assert basis.shape == (5, 384)
    np.testing.assert_allclose(basis @ basis.T, np.eye(5), atol=1e-5)
    for side in ("audio", "text"):
        mean = state[f"centering.{side}"].astype(np.float64)
        assert np.abs(basis @ mean).max() < 1e-5 * max(1.0, float(np.linalg.norm(mean)))


def test_shipped_clasp_mini_is_a_three_head_ensemble_with_a_query_bank() -> None:
    """Since v0.9: three attention-pooled heads (``members.0`` … ``members.2``) and a bank of
    training captions (k 20, beta 0.75) in the model's 384-d space; the preset says so. v0.10's
    bank, kept to v1, holds the 4,748 training captions of its six-language fine-tuning corpus;
    v1.1 added the 4,787 captions of its recorded-speech training rows after them."""
    from importlib.resources import files

    from safetensors.numpy import load_file

    mini = get_preset("clasp-mini")
    assert mini.fusion.ensemble == 3 and mini.query_bank and mini.vector_dim == 385
    state = load_file(str(files("clasp_ingest") / "data" / "models" / "clasp-mini" / "fusion.safetensors"))
    assert {key.split(".")[1] for key in state if key.startswith("members.")} == {"0", "1", "2"}
    texts = state["centering.bank.texts"].astype(np.float64)
    assert texts.shape == (4748 + 4787, 384)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=2e-3)  # fp16 unit rows
    k, beta, _mean, scale = state["centering.bank.params"].tolist()
    assert (k, beta, scale) == (20, 0.75, 0.5)


def test_shipped_clasp_mini_runs_its_trained_whisper_top_layers() -> None:
    """v0.13 trained Whisper-base's top two encoder layers and final norm with its heads; loading
    the preset writes them into a cached copy of the CTranslate2 model, which ingestion runs."""
    from importlib.resources import files

    from safetensors.numpy import load_file

    from clasp_ingest.model.assets import whisper_base_ct2_dir
    from clasp_ingest.model.ct2_format import read_ct2_model

    top = load_file(str(files("clasp_ingest") / "data" / "models" / "clasp-mini" / "whisper_top.safetensors"))
    assert sorted({key.split("/")[1] for key in top}) == ["layer_4", "layer_5", "layer_norm"]
    model = load_model("clasp-mini", device="cpu")
    assert model.speech.model_dir != whisper_base_ct2_dir()
    # on a CPU without AVX-512 VNNI the model runs from a copy with 7-bit encoder weight matrices
    written = read_ct2_model(model.speech.model_dir, keep=lambda name: name.removesuffix("_scale") in top)
    base = read_ct2_model(whisper_base_ct2_dir(), keep=lambda name: name in top).variables
    for name, value in top.items():
        if written.variables[name].dtype != np.int8:
            np.testing.assert_array_equal(written.variables[name], value)
            continue
        half_step = 0.5 / written.variables[f"{name}_scale"][:, None]
        assert (np.abs(written.float32(name) - value.astype(np.float32)) <= half_step * 1.001).all(), name
    moved = max(float(np.abs(written.float32(n) - base[n].astype(np.float32)).max()) for n in top)
    assert moved > 1e-3


def test_clasp_mini_real_is_its_own_speech_only_model_on_clasp_minis_backbones() -> None:
    """The opt-in real-speech model: clasp-mini's Whisper-base encoder with its own fine-tuned top
    layers (two, as clasp-mini v0.13, kept as clasp-mini-spec, has its own two), text tower, head
    shape and space, no spectrogram branch (backend ``none``, as clasp-mini v1), its own heads and
    model id (its collections are not mixed with clasp-mini's)."""
    from dataclasses import replace

    from clasp_ingest.model.spectrogram import NoSpectrogram

    mini, real = get_preset("clasp-mini-spec"), get_preset("clasp-mini-real")
    assert real.model_id == "clasp-mini-real-v0.3" and real.model_id != mini.model_id
    own = real.speech.options["top_layers"]
    assert own != mini.speech.options["top_layers"] and own.startswith("pkg://")
    assert real.speech == replace(mini.speech, options=dict(mini.speech.options) | {"top_layers": own})
    assert (real.text, real.fusion) == (mini.text, mini.fusion)
    assert real.spectrogram.backend == "none" and mini.spectrogram.backend != "none"
    assert real.weights != mini.weights and real.query_bank
    assert real.weights != get_preset("clasp-mini").weights
    model = load_model("clasp-mini-real", device="cpu")
    assert isinstance(model.spectrogram, NoSpectrogram) and model.dim == 385


def test_shipped_models_find_unseen_actors_lines() -> None:
    """80 real clips of the Czech test actor (never trained on; Debian fillets-ng-data-cs),
    each clip's Czech line as the query, every clip a candidate (chance: 1 of 80). Both
    models were fine-tuned on the other actors' lines; clasp-mini v1.1 50 (2026-12-05), v1 52
    (2026-12-04), v0.13 (now clasp-mini-spec) 45 that day (46 the day before; v0.12 47, v0.11 46),
    clasp-mini-real v0.3 43 (v0.2 48; on all 578 test clips v0.3 0.450 HITS@1, v0.2 0.377, v1.1
    0.455, v1 0.441, v0.13 0.388)."""
    from clasp_ingest.evaluation.datasets import FILLETS_DATA, fillets_clips
    from clasp_ingest.training.features import load_waveform

    if not (FILLETS_DATA / "sound").is_dir():
        pytest.skip("fillets-ng-data-cs not installed (make eval-deps)")
    clips = [c for c in fillets_clips("cs", "cs") if c.split == "test"][:80]
    waves = [load_waveform(c.audio) for c in clips]
    hits = {}
    for name in ("clasp-mini", "clasp-mini-real"):
        model = load_model(name, device="cpu")
        scores = model.encode_text([c.text for c in clips]) @ model.encode_audio(waves).T
        hits[name] = int(np.sum(np.argmax(scores, axis=1) == np.arange(len(clips))))
    assert min(hits.values()) >= 40, hits


def test_a_model_id_that_would_leave_the_cache_folder_is_refused(tiny: ClaspModel, tmp_path: Path) -> None:
    """A model id names cache folders (the ONNX export): a model folder whose config.json says
    '../../x' is refused when read, with the file to fix."""
    saved = save_model(tiny, tmp_path / "m", model_id="tiny-ok")
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "model_id": "../../escaped"}))
    with pytest.raises(
        ConfigError, match=r"model id '\.\./\.\./escaped' is not one plain name.*config\.json"
    ):
        load_model(str(saved), device="cpu")


@pytest.mark.parametrize("kept", [0, 200, None])  # empty, cut in the header, cut in the tensors
def test_damaged_weights_are_a_model_load_error_naming_the_file(
    tiny: ClaspModel, tmp_path: Path, kept: int | None
) -> None:
    from clasp_ingest.model.query import load_query_model

    saved = save_model(tiny, tmp_path / "m", model_id="tiny-cut")
    weights = saved / "fusion.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2 if kept is None else kept])
    for load in (load_model, load_query_model):
        with pytest.raises(
            ModelLoadError, match=r"fusion\.safetensors' cannot be read .*cut short or damaged"
        ):
            load(str(saved), device="cpu")
