from __future__ import annotations

import numpy as np
import torch

from clasp_ingest.model import ClaspModel
from clasp_ingest.model.spectrogram import NativeSpectrogramEncoder, mel_filterbank


def test_mel_filterbank_matches_librosa_htk_slaney() -> None:
    import librosa

    ours = mel_filterbank(400, 64, 0.0, 8000.0, 16000)
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=64, fmin=0.0, fmax=8000.0, htk=True, norm="slaney")
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=1e-4)


def test_image_shape_and_normalisation(tiny: ClaspModel, clips: list[np.ndarray]) -> None:
    enc = tiny.spectrogram
    assert isinstance(enc, NativeSpectrogramEncoder)
    img = enc.image(clips[1])
    assert img.shape == (3, *enc.options.image_size)
    assert torch.isfinite(img).all()
    # channels are one image normalised with three mean/std pairs
    restored = img * enc._std[0] + enc._mean[0]
    torch.testing.assert_close(restored[0], restored[2], atol=1e-5, rtol=1e-5)
    assert float(restored.min()) >= 0.0 and float(restored.max()) <= 1.0 + 1e-5


def test_tone_pitch_moves_energy(tiny: ClaspModel) -> None:
    enc = tiny.spectrogram
    assert isinstance(enc, NativeSpectrogramEncoder)
    t = np.arange(16000) / 16000
    low = enc.image(np.sin(2 * np.pi * 300 * t).astype(np.float32))[0]
    high = enc.image(np.sin(2 * np.pi * 5000 * t).astype(np.float32))[0]
    # rows are flipped (low frequencies at the bottom, as an image of a spectrogram)
    assert int(low.mean(1).argmax()) > int(high.mean(1).argmax())
