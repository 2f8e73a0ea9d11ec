"""A speech-only model (spectrogram backend ``none``, the spectrogram ablation) trains, saves and loads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from clasp_ingest.model import load_model
from clasp_ingest.model.clasp import save_model
from clasp_ingest.model.config import ComponentSpec
from clasp_ingest.model.spectrogram import NoSpectrogram
from clasp_ingest.training.features import encoder_identity, load_waveform
from clasp_ingest.training.manifest import read_manifest
from clasp_ingest.training.train import TrainOptions, prepare_head, train_fusion


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
