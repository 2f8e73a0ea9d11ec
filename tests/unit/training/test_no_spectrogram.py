"""A speech-only model (spectrogram backend ``none``, the spectrogram ablation) trains, saves and loads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError
from clasp_ingest.model import load_model
from clasp_ingest.model.clasp import save_model
from clasp_ingest.model.config import ComponentSpec
from clasp_ingest.model.spectrogram import NoSpectrogram
from clasp_ingest.training.features import encoder_identity, load_waveform
from clasp_ingest.training.manifest import read_manifest
from clasp_ingest.training.train import TrainOptions, _anchor_targets, prepare_head, train_fusion


def test_speech_only_head_trains_and_ranks_by_speech_alone(tone_manifest: Path, tmp_path: Path) -> None:
    tiny = load_model("tiny-random", device="cpu")
    base_identity = encoder_identity(tiny, "speech", "spectrogram")
    no_spec = ComponentSpec("none", "none", tiny.config.spectrogram.dim, {})
    tiny.config = replace(tiny.config, spectrogram=no_spec, model_id="tiny-speech-only")
    model = load_model(str(save_model(tiny, tmp_path / "start")), device="cpu")
    assert isinstance(model.spectrogram, NoSpectrogram)
    # the feature cache keeps speech-only features apart from the full model's
    assert encoder_identity(model, "speech", "spectrogram") != base_identity

    waves = [load_waveform(row.audio) for row in read_manifest(tone_manifest)]
    assert not model.spectrogram.encode(waves).any()
    prepare_head(model, kind="gating", seed=0)
    options = TrainOptions(lr=3e-3, batch_size=6, val_batch_size=3, max_epochs=2, patience=2, device="cpu")
    train_fusion(model, tone_manifest, tmp_path / "run", options)

    trained = load_model(str(tmp_path / "run"), device="cpu")
    assert trained.config.spectrogram.backend == "none" and isinstance(trained.spectrogram, NoSpectrogram)
    vectors = trained.encode_audio(waves)
    assert np.isfinite(vectors).all() and vectors.shape == (len(waves), trained.dim)
    # the vector is the head applied to the speech features and zeros, nothing else
    speech = trained.speech.encode(waves)
    with torch.no_grad():
        direct = trained.fusion(torch.from_numpy(speech), torch.zeros(len(waves), no_spec.dim)).numpy()
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, direct, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4)  # clips differ by their speech alone


def test_speech_only_student_is_anchored_to_its_teacher(tone_manifest: Path, tmp_path: Path) -> None:
    """``anchor_model`` (``--anchor-model``): the anchor targets are another model's head outputs
    (here the full model with its spectrogram branch), and training pulls the student towards them."""
    other = load_model("tiny-random", device="cpu")
    prepare_head(other, kind="gating", seed=1)  # another head: targets far from the student's own
    teacher_dir = save_model(other, tmp_path / "teacher")
    tiny = load_model("tiny-random", device="cpu")
    no_spec = ComponentSpec("none", "none", tiny.config.spectrogram.dim, {})
    tiny.config = replace(tiny.config, spectrogram=no_spec, model_id="tiny-speech-only")
    student = load_model(str(save_model(tiny, tmp_path / "start")), device="cpu")
    options = TrainOptions(lr=3e-3, batch_size=6, val_batch_size=3, max_epochs=3, patience=3, device="cpu",
                           anchor=(tone_manifest,), anchor_weight=50.0, freeze_batchnorm=True,
                           anchor_model=str(teacher_dir), cache_dir=tmp_path / "feat")  # fmt: skip

    teacher = load_model(str(teacher_dir), device="cpu")
    waves = [load_waveform(row.audio) for row in read_manifest(tone_manifest)]
    expected = teacher.embed_features(teacher.speech.encode(waves), teacher.spectrogram.encode(waves))
    held = _anchor_targets(student, options, tmp_path / "run", None)
    np.testing.assert_allclose(held.text, expected, atol=1e-5)
    own = student.embed_features(held.speech, held.spectrogram)
    assert not np.allclose(own, expected, atol=1e-2)  # not the start head's own outputs

    def agreement(run: str, opts: TrainOptions) -> float:
        model = load_model(str(tmp_path / "start"), device="cpu")
        train_fusion(model, tone_manifest, tmp_path / run, opts)
        out = load_model(str(tmp_path / run), device="cpu").encode_audio(waves)
        return float(np.mean(np.sum(out * expected, axis=1)))

    # the same fine-tune held to its own start instead: it ends farther from the teacher
    to_teacher = agreement("to-teacher", options)
    to_itself = agreement("to-itself", replace(options, anchor_model=None))
    assert to_teacher > to_itself + 0.1, (to_teacher, to_itself)

    with pytest.raises(ConfigError, match="--anchor"):
        TrainOptions(anchor_model=str(teacher_dir))
