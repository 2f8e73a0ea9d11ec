"""train → save → load → eval with the real tiny-random model, ffmpeg decoding and tone clips."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError
from clasp_ingest.evaluation.evaluate import RESULT_KEYS, evaluate, sample_candidates
from clasp_ingest.training.features import FeatureCache, compute_features, encoder_identity, load_waveform
from clasp_ingest.training.manifest import read_manifest
from clasp_ingest.training.train import METRICS_FILE, TrainOptions, prepare_head, train_fusion

from .conftest import write_tone

FAST = TrainOptions(lr=3e-3, batch_size=6, val_batch_size=3, max_epochs=3, patience=3, device="cpu")


def test_train_save_load_eval(tiny_model: Any, tone_manifest: Path, tmp_path: Path) -> None:
    from clasp_ingest.model import load_model

    prepare_head(tiny_model, seed=0)
    out = tmp_path / "run"
    result = train_fusion(tiny_model, tone_manifest, out, FAST)
    assert (result.n_train, result.n_val, result.fit.epochs_run) == (6, 3, 3)
    assert {p.name for p in out.iterdir()} >= {
        "fusion.safetensors",
        "config.json",
        METRICS_FILE,
        "checkpoint",
    }
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["model_id"] == "tiny-random-run" == result.model_id
    assert len(metrics["history"]) == 3 and metrics["best_epoch"] == result.fit.best_epoch
    assert metrics["temperature"] == pytest.approx(result.fit.temperature)

    loaded = load_model(str(out), device="cpu")
    assert loaded.model_id == "tiny-random-run"
    for name, tensor in tiny_model.fusion.state_dict().items():
        assert torch.equal(tensor, loaded.fusion.state_dict()[name]), name
    # the saved/loaded model, re-decoding the clips, reproduces the in-memory validation metrics
    scores = evaluate(loaded, tone_manifest, "all", split="val")
    assert list(scores) == list(RESULT_KEYS)
    assert scores["n_queries"] == 3 and scores["candidates"] == "all" and scores["threshold"] == 0.5
    for key, value in result.val_metrics.items():
        assert scores[key] == pytest.approx(value, abs=1e-5)

    resumed = train_fusion(
        load_model(str(out), device="cpu"), tone_manifest, out, replace(FAST, max_epochs=4, resume=True)
    )
    assert resumed.fit.resumed_from == 3 and resumed.fit.epochs_run == 4


def test_feature_cache_is_keyed_by_content_and_backbone(tiny_model: Any, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    write_tone(clips / "a.wav", 300, 0.5, seed=0)
    write_tone(clips / "b.wav", 700, 0.6, seed=1)
    shutil.copy(clips / "a.wav", clips / "a-copy.wav")
    cache = FeatureCache(tmp_path / "cache")
    paths = [clips / "a.wav", clips / "b.wav", clips / "a-copy.wav"]
    first = compute_features(tiny_model, paths, ["x", "y", "x"], cache=cache)
    assert len(list((tmp_path / "cache").glob("audio-*/*/*.npz"))) == 2  # a and its copy share one entry
    assert len(list((tmp_path / "cache").glob("text-*/*/*.npy"))) == 2
    np.testing.assert_array_equal(first.speech[0], first.speech[2])

    uncached = compute_features(tiny_model, paths, ["x", "y", "x"], cache=FeatureCache(None))
    again = compute_features(tiny_model, paths, ["x", "y", "x"], cache=cache, loader=_refuse)
    for a, b in ((first, again), (first, uncached)):
        np.testing.assert_allclose(a.speech, b.speech, atol=1e-6)
        np.testing.assert_allclose(a.spectrogram, b.spectrogram, atol=1e-6)
        np.testing.assert_allclose(a.text, b.text, atol=1e-6)

    write_tone(clips / "a.wav", 900, 0.5, seed=5)  # new content, same name: a new entry
    changed = compute_features(tiny_model, paths[:1], ["x"], cache=cache)
    assert len(list((tmp_path / "cache").glob("audio-*/*/*.npz"))) == 3
    assert not np.allclose(changed.spectrogram[0], first.spectrogram[0])


def _refuse(path: Path) -> np.ndarray:
    raise AssertionError(f"{path} should have come from the cache")


def test_backbone_identity_follows_the_config(tiny_model: Any) -> None:
    base = encoder_identity(tiny_model, "speech", "spectrogram")
    config = tiny_model.config
    other_seed = replace(config, speech=replace(config.speech, options={"seed": 1}))
    other = SimpleNamespace(config=other_seed, speech=tiny_model.speech, spectrogram=tiny_model.spectrogram)
    assert encoder_identity(other, "speech", "spectrogram") != base
    assert encoder_identity(tiny_model, "text") != base
    from clasp_ingest.model import load_model

    assert encoder_identity(load_model("tiny-random", device="cpu"), "speech", "spectrogram") == base


class _TwoTowers:
    """Any AudioTextEncoder that is not a ClaspModel (evaluated via encode_audio/encode_text)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.model_id, self.dim = model.model_id, model.dim

    def encode_audio(self, waveforms: Any) -> np.ndarray:
        return np.asarray(self._model.encode_audio(waveforms))

    def encode_text(self, texts: Any) -> np.ndarray:
        return np.asarray(self._model.encode_text(texts))


def test_generic_encoder_route_matches_feature_route(tiny_model: Any, tone_manifest: Path) -> None:
    via_features = evaluate(tiny_model, tone_manifest, "all", split="train")
    via_towers = evaluate(_TwoTowers(tiny_model), tone_manifest, "all", split="train")
    for key in RESULT_KEYS:
        assert via_towers[key] == pytest.approx(via_features[key], abs=1e-5)


def test_sampled_candidates_protocol(tiny_model: Any, tone_manifest: Path) -> None:
    columns = sample_candidates(9, 4, seed=3)
    assert columns.shape == (9, 4)
    assert (columns[:, -1] == np.arange(9)).all()
    for i, row in enumerate(columns):
        assert len(set(row.tolist())) == 4 and i not in row[:-1]
    assert (columns == sample_candidates(9, 4, seed=3)).all()
    assert not (columns == sample_candidates(9, 4, seed=4)).all()

    rows = [r for r in read_manifest(tone_manifest) if r.split == "test"]
    scores = evaluate(tiny_model, tone_manifest, 2, split="test", seed=1)
    assert scores["candidates"] == 2 and scores["n_queries"] == len(rows)
    assert 1.0 <= scores["mean_rank"] <= 2.0 and 0.5 <= scores["mrr"] <= 1.0
    with pytest.raises(ConfigError, match="candidates=4"):
        evaluate(tiny_model, tone_manifest, 4, split="test")
    with pytest.raises(ConfigError, match="'all' or a number"):
        evaluate(tiny_model, tone_manifest, "many", split="test")


def test_prepare_head_fresh_gating_and_fine_tune_guard(tiny_model: Any) -> None:
    from clasp_ingest.model.fusion import GatingFusion

    before = {k: v.clone() for k, v in tiny_model.fusion.state_dict().items()}
    prepare_head(tiny_model, fresh=False)
    assert all(torch.equal(v, tiny_model.fusion.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ConfigError, match="fine-tune"):
        prepare_head(tiny_model, kind="gating", fresh=False)
    prepare_head(tiny_model, kind="gating", seed=1)
    assert isinstance(tiny_model.fusion, GatingFusion) and tiny_model.config.fusion.kind == "gating"


def test_unreadable_clips_are_left_out_and_listed(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    from clasp_ingest.errors import MediaDecodeError

    data = tmp_path / "tones"
    shutil.copytree(tone_manifest.parent, data)
    (data / "clips" / "1.wav").write_bytes(b"RIFF\x00\x00not really a wav file" * 20)  # a train clip
    (data / "clips" / "7.wav").write_bytes(b"")  # a val clip (missing files fail earlier, at the manifest)
    manifest = data / tone_manifest.name
    prepare_head(tiny_model, seed=0)
    with pytest.raises(MediaDecodeError, match=r"1\.wav"):
        train_fusion(tiny_model, manifest, tmp_path / "strict", replace(FAST, skip_unreadable=False))

    result = train_fusion(tiny_model, manifest, tmp_path / "run", FAST)
    assert (result.n_train, result.n_val) == (5, 2)
    expected = [str(data / "clips" / "1.wav"), str(data / "clips" / "7.wav")]
    assert list(result.unreadable) == expected
    assert json.loads((tmp_path / "run" / METRICS_FILE).read_text())["unreadable"] == expected


def test_centred_head_round_trips_and_every_route_agrees(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    from clasp_ingest.model import load_model
    from clasp_ingest.model.calibration import Centering

    prepare_head(tiny_model, seed=0)
    out = tmp_path / "centred"
    result = train_fusion(tiny_model, tone_manifest, out, replace(FAST, center=True))
    centering = tiny_model.centering
    assert isinstance(centering, Centering) and centering.audio.shape == centering.text.shape == (
        tiny_model.dim,
    )
    # the means are those of the unit training vectors, taken before centring
    train_rows = [r for r in read_manifest(tone_manifest) if r.split == "train"]
    raw_text = tiny_model.text.encode([r.text for r in train_rows])
    expected_text = (raw_text / np.linalg.norm(raw_text, axis=1, keepdims=True)).mean(0)
    assert np.allclose(centering.text, expected_text, atol=1e-5)

    loaded = load_model(str(out), device="cpu")
    assert loaded.centering is not None
    assert np.array_equal(loaded.centering.audio, centering.audio)
    assert np.array_equal(loaded.centering.text, centering.text)
    queries = loaded.encode_text(["tone 1 bbb", "tone 2 ccc"])
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    plain = raw_text[:2] / np.linalg.norm(raw_text[:2], axis=1, keepdims=True)
    assert not np.allclose(queries, plain, atol=1e-3)  # centring changed the vectors
    # in-memory validation, the cached-feature route and the waveform route give the same numbers
    via_features = evaluate(loaded, tone_manifest, "all", split="val")
    via_towers = evaluate(_TwoTowers(loaded), tone_manifest, "all", split="val")
    for key, value in result.val_metrics.items():
        assert via_features[key] == pytest.approx(value, abs=1e-5)
        assert via_towers[key] == pytest.approx(value, abs=1e-5)
    # retraining without --center drops the means
    train_fusion(loaded, tone_manifest, tmp_path / "plain", FAST)
    assert loaded.centering is None and load_model(str(tmp_path / "plain"), device="cpu").centering is None


def test_centering_tensors_of_the_wrong_size_are_refused(tiny_model: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from clasp_ingest.errors import ModelLoadError
    from clasp_ingest.model import load_model, save_model

    out = save_model(tiny_model, tmp_path / "m")
    state = load_file(str(out / "fusion.safetensors"))
    state.update({"centering.audio": torch.zeros(3), "centering.text": torch.zeros(3)})
    save_file(state, str(out / "fusion.safetensors"))
    with pytest.raises(ModelLoadError, match=r"centering tensors .* do not fit"):
        load_model(str(out), device="cpu")


def test_distractors_join_the_candidates_but_ask_nothing(tiny_model: Any, tone_manifest: Path) -> None:
    from clasp_ingest.evaluation.metrics import mrr, ranks

    plain = evaluate(tiny_model, tone_manifest, "all", split="val")
    mixed = evaluate(
        tiny_model, tone_manifest, "all", split="val", distractors=tone_manifest, distractor_split="train"
    )
    assert mixed["n_queries"] == plain["n_queries"] == 3 and mixed["distractors"] == 6
    # the same numbers by hand: 3 val captions against 3 val clips + 6 train clips
    rows = read_manifest(tone_manifest)
    val = [r for r in rows if r.split == "val"]
    pool = val + [r for r in rows if r.split == "train"]
    text = tiny_model.encode_text([r.text for r in val])
    audio = tiny_model.encode_audio([load_waveform(r.audio) for r in pool])
    sim = text @ audio.T
    assert mixed["mrr"] == pytest.approx(mrr(sim), abs=1e-5)
    assert mixed["mean_rank"] == pytest.approx(ranks(sim).mean(), abs=1e-5)
    assert mixed["mrr"] <= plain["mrr"] + 1e-9  # more candidates can only push the right clip down
    # clips of the evaluated split itself are not counted twice
    same = evaluate(tiny_model, tone_manifest, "all", split="val", distractors=tone_manifest)
    assert same["distractors"] == 0 and same["mrr"] == pytest.approx(plain["mrr"])
    with pytest.raises(ConfigError, match="candidates='all'"):
        evaluate(tiny_model, tone_manifest, 2, split="val", distractors=tone_manifest)


def test_attention_pooled_head_trains_saves_loads_and_every_route_agrees(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    from clasp_ingest.model import load_model
    from clasp_ingest.model.fusion import PooledFusion
    from clasp_ingest.training.features import FrameBank

    prepare_head(tiny_model, seed=0, speech_pool="attention", pool_queries=2)
    assert isinstance(tiny_model.fusion, PooledFusion) and tiny_model.speech_frames
    out, cache = tmp_path / "pooled", tmp_path / "cache"
    result = train_fusion(tiny_model, tone_manifest, out, replace(FAST, center=True, cache_dir=cache))
    assert (result.n_train, result.n_val) == (6, 3)
    assert len(list(cache.glob("frames-*/*/*.npy"))) == 9  # each train/val clip's frames, float16
    assert json.loads((out / "config.json").read_text())["fusion"]["speech_pool"] == "attention"
    assert tiny_model.fusion.pool.query.abs().sum() > 0  # the queries were trained

    loaded = load_model(str(out), device="cpu")
    assert isinstance(loaded.fusion, PooledFusion) and loaded.config.fusion.pool_queries == 2
    rows = read_manifest(tone_manifest)
    waves = [load_waveform(r.audio) for r in rows]
    features = compute_features(
        loaded, [r.audio for r in rows], [r.text for r in rows], cache=FeatureCache(cache)
    )
    assert isinstance(features.speech, FrameBank) and len(features.speech) == len(rows)
    # the frame bank, the cached means and the waveform route give the same vectors
    np.testing.assert_allclose(
        loaded.embed_features(features.speech, features.spectrogram), loaded.encode_audio(waves), atol=1e-3
    )
    via_features = evaluate(loaded, tone_manifest, "all", split="val", cache_dir=cache)
    via_towers = evaluate(_TwoTowers(loaded), tone_manifest, "all", split="val")
    for key, value in result.val_metrics.items():
        assert via_features[key] == pytest.approx(value, abs=1e-4)
        assert via_towers[key] == pytest.approx(value, abs=2e-3)
    with pytest.raises(ConfigError, match="fine-tune"):
        prepare_head(loaded, fresh=False, speech_pool="mean")


def test_frame_bank_stacks_arrays_and_files_once_each(tmp_path: Path) -> None:
    from clasp_ingest.training.features import FrameBank

    a, b = np.arange(6, dtype=np.float32).reshape(3, 2), np.full((2, 2), 7.0, np.float32)
    np.save(tmp_path / "b.npy", b.astype(np.float16))
    bank = FrameBank.stack([a, tmp_path / "b.npy", a, tmp_path / "b.npy"])
    assert bank.frames.shape == (5, 2) and bank.frames.dtype == np.float16  # each clip stored once
    assert bank.lengths.tolist() == [3, 2, 3, 2] and bank.starts.tolist() == [0, 3, 0, 3]
    padded = bank.padded()
    assert padded.shape == (4, 3, 2) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[1], [[7, 7], [7, 7], [0, 0]])
    np.testing.assert_array_equal(bank[np.array([False, False, True, False])].padded()[0], a)
    assert len(bank[1:]) == 3 and bank[1:].padded(np.array([0])).shape == (1, 2, 2)
    np.save(tmp_path / "bad.npy", np.zeros((2, 3), np.float16))
    with pytest.raises(ValueError, match="different widths"):
        FrameBank.stack([a, tmp_path / "bad.npy"])


class _PooledOnly:
    """A speech encoder that gives pooled vectors only (no ``encode_frames``)."""

    def __init__(self, inner: Any) -> None:
        self.dim, self._inner = inner.dim, inner

    def encode(self, waveforms: Any) -> np.ndarray:
        return np.asarray(self._inner.encode(waveforms))


def test_a_pooling_head_needs_a_speech_encoder_with_frames(tiny_model: Any, tone_manifest: Path) -> None:
    waves = [np.zeros(8000, np.float32) + 0.1, np.ones(4000, np.float32)]
    frames = tiny_model.speech.encode_frames(waves)  # the hf backend gives frames
    np.testing.assert_allclose(
        np.stack([f.mean(0) for f in frames]), tiny_model.speech.encode(waves), atol=1e-5
    )
    pooled_only = SimpleNamespace(config=tiny_model.config, speech=_PooledOnly(tiny_model.speech))
    with pytest.raises(ConfigError, match="needs a speech encoder that gives frames"):
        prepare_head(pooled_only, speech_pool="attention")
    prepare_head(tiny_model, seed=0, speech_pool="attention")
    tiny_model.speech = _PooledOnly(tiny_model.speech)
    rows = read_manifest(tone_manifest)[:2]
    with pytest.raises(ConfigError, match="gives none"):
        compute_features(
            tiny_model, [r.audio for r in rows], [r.text for r in rows], cache=FeatureCache(None)
        )
