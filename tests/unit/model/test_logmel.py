"""The numpy log-mel image (ONNX Runtime engine) against the torch one (native branch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clasp_ingest.model.config import Runtime
from clasp_ingest.model.logmel import LogMelOptions, log_mel_image, mel_filterbank, resize_matrix
from clasp_ingest.model.spectrogram import NativeSpectrogramEncoder


@pytest.mark.parametrize(("size_in", "size_out"), [(128, 224), (301, 224), (224, 224), (5, 3)])
def test_resize_matrix_is_torch_bilinear(size_in: int, size_out: int) -> None:
    x = torch.randn(size_in, size_in + 3, generator=torch.Generator().manual_seed(1))
    theirs = F.interpolate(x[None, None], size=(size_out, size_out), mode="bilinear", align_corners=False)[
        0, 0
    ]
    ours = resize_matrix(size_in, size_out) @ x.numpy() @ resize_matrix(size_in + 3, size_out).T
    # torch's kernel rounds its float32 weights in another order: equal to ~3e-5 on N(0, 1) values
    assert np.abs(ours - theirs.numpy()).max() < 1e-4


@pytest.mark.parametrize("samples", [100, 400, 16_000, 16_000 * 7 + 13])
def test_image_equals_the_torch_image(samples: int) -> None:
    options = LogMelOptions(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    torch_side = NativeSpectrogramEncoder(torch.nn.Identity(), 1, Runtime(device="cpu"), options)
    filterbank = mel_filterbank(options.n_fft, options.n_mels, options.f_min, options.f_max, 16_000)
    wav = (0.1 * np.random.default_rng(samples).standard_normal(samples)).astype(np.float32)
    ours = log_mel_image(wav, options, filterbank)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    assert np.abs(ours - torch_side.image(wav).numpy()).max() < 1e-4
