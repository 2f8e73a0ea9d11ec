from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.config import ComponentSpec, Runtime
from clasp_ingest.model.reference import (
    ReferenceOptions,
    ReferenceSpectrogramEncoder,
    build_reference_spectrogram,
    render_spectrogram,
)


def _notebook_render(wav16k: np.ndarray, png_path: Path) -> np.ndarray:
    """The notebook's steps with pyplot and a file on disk, read back as BGR uint8."""
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    y = librosa.resample(wav16k, orig_sr=16000, target_sr=22050)
    spec_db = librosa.amplitude_to_db(abs(librosa.stft(y)))
    with matplotlib.style.context("default"):
        plt.figure()
        plt.clf()
        librosa.display.specshow(spec_db, x_axis="time", y_axis="log")
        plt.xlabel("")
        plt.ylabel("")
        plt.tight_layout()
        plt.savefig(png_path, bbox_inches="tight", pad_inches=0)
        plt.close("all")
    return np.asarray(Image.open(png_path).convert("RGB"))[:, :, ::-1]


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    t = np.arange(16000) / 16000
    return (0.4 * np.sin(2 * np.pi * (300 + 1500 * t) * t)).astype(np.float32)


def test_render_matches_notebook_steps(clip: np.ndarray, tmp_path: Path) -> None:
    image = render_spectrogram(clip)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 400 <= image.shape[0] <= 480 and 540 <= image.shape[1] <= 640  # 6.4x4.8 in @ 100 dpi, tight
    expected = _notebook_render(clip, tmp_path / "spec.png")
    assert image.shape == expected.shape
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1


def test_channels_are_bgr(clip: np.ndarray) -> None:
    from PIL import Image

    image = render_spectrogram(clip)
    # Tick labels are black on white; the plot body is coloured: some pixel must differ B vs R.
    assert (image[..., 0] != image[..., 2]).any()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[:, :, ::-1])).save(buf, format="PNG")
    assert buf.tell() > 0


def test_encoder_feeds_raw_bgr_floats(clip: np.ndarray) -> None:
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    enc = ReferenceSpectrogramEncoder(cnn, 4, Runtime(), ReferenceOptions())
    out = enc.encode([clip, clip[:8000]])
    assert out.shape == (2, 4) and np.isfinite(out).all()
    raw = torch.from_numpy(render_spectrogram(clip)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        np.testing.assert_allclose(out[0], cnn(raw)[0].numpy(), rtol=1e-5, atol=1e-4)
    assert raw.max() > 1.5  # 0..255, not rescaled


def test_missing_weights_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = ComponentSpec("reference", "efficientnet_b7", 1000, {"weights": "IMAGENET1K_V1"})
    with pytest.raises(ModelLoadError, match="efficientnet_b7_lukemelas"):
        build_reference_spectrogram(spec, Runtime(model_dir=tmp_path))
    with pytest.raises(ModelLoadError, match="reproduces torchvision efficientnet_b7 only"):
        build_reference_spectrogram(ComponentSpec("reference", "resnet50", 1000), Runtime())
