"""CUDA code paths: backbones in bf16/fp32 on the GPU, the GPU fit of a head, the full-size encoder.

Marked ``gpu`` and skipped without a CUDA device (CI has none). Run them on a GPU worker with
``pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clasp_ingest.model import ClaspModel, Runtime, load_model
from clasp_ingest.training.features import FeatureSet
from clasp_ingest.training.loop import FitOptions, fit_head

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SR = 16_000


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(3 * SR) / SR
    chirp = np.sin(2 * np.pi * (150 + 700 * t) * t)
    return [
        (0.3 * chirp).astype(np.float32),
        (0.5 * np.sin(2 * np.pi * 440 * t[: int(1.2 * SR)])).astype(np.float32),
        (0.1 * rng.standard_normal(2 * SR)).astype(np.float32),
        (0.2 * rng.standard_normal(400)).astype(np.float32),
    ]


@pytest.fixture(scope="module")
def cpu_model() -> ClaspModel:
    return load_model("tiny-random", device="cpu")


def _rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_auto_runtime_picks_cuda_bf16() -> None:
    runtime = Runtime.resolve()
    assert runtime.device == "cuda" and runtime.dtype == "bf16"


@pytest.mark.parametrize(("dtype", "min_cos"), [("fp32", 0.9999), ("bf16", 0.97), ("fp16", 0.99)])
def test_gpu_embeddings_match_cpu(cpu_model: ClaspModel, dtype: str, min_cos: float) -> None:
    gpu = load_model("tiny-random", device="cuda", dtype=dtype)
    assert next(gpu.fusion.parameters()).device.type == "cuda"
    clips = _clips()
    texts = ["hello world", "bonjour le monde", "Grüße aus Köln", "日本語"]
    for name, cpu_out, gpu_out in (
        ("audio", cpu_model.encode_audio(clips), gpu.encode_audio(clips)),
        ("text", cpu_model.encode_text(texts), gpu.encode_text(texts)),
    ):
        assert gpu_out.dtype == np.float32 and np.isfinite(gpu_out).all(), name
        np.testing.assert_allclose(np.linalg.norm(gpu_out, axis=1), 1.0, atol=1e-3)
        cos = _rowwise_cos(cpu_out, gpu_out)
        assert cos.min() >= min_cos, (name, dtype, cos)
    # a padded GPU batch equals one clip at a time
    single = np.stack([gpu.encode_audio([clip])[0] for clip in clips])
    assert _rowwise_cos(single, gpu.encode_audio(clips)).min() >= min_cos


def _features(n: int, seed: int) -> FeatureSet:
    """Audio features a fixed linear map of the text plus noise: a head can learn it."""
    mix = np.random.default_rng(99).standard_normal((32, 32 + 256)).astype(np.float32)
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n, 32)).astype(np.float32)
    audio = text @ mix + 0.1 * rng.standard_normal((n, 32 + 256)).astype(np.float32)
    return FeatureSet(speech=audio[:, :32], spectrogram=audio[:, 32:], text=text)


def test_fit_head_on_gpu_learns_and_returns_to_cpu() -> None:
    results = {}
    for device in ("cpu", "cuda"):
        model = load_model("tiny-random", device="cpu")
        options = FitOptions(
            lr=3e-3, batch_size=32, val_batch_size=32, max_epochs=15, patience=15, device=device
        )
        result = fit_head(model.fusion, _features(256, 0), _features(64, 1), options)
        assert next(model.fusion.parameters()).device.type == "cpu"  # back where it started
        first, best = result.history[0].val_loss, result.best_val_loss
        assert best < 0.7 * first, (device, first, best)
        results[device] = result
    # Not compared epoch by epoch: the batch order is the same (a CPU generator), but dropout
    # draws come from the device's own generator, so the runs differ from the first batch on.
    cpu, gpu = results["cpu"].best_val_loss, results["cuda"].best_val_loss
    print(f"best val loss: cpu {cpu:.4f}, cuda {gpu:.4f}")
    assert gpu < 2 * cpu and cpu < 2 * gpu


def test_full_size_architecture_bf16_on_gpu() -> None:
    """HuBERT-large (random init, from its config) + native EfficientNet-B7 → concat head, bf16."""
    from transformers import HubertConfig, HubertModel

    from clasp_ingest.model.config import ComponentSpec, FusionSpec, ModelConfig
    from clasp_ingest.model.fusion import build_fusion
    from clasp_ingest.model.spectrogram import build_native_spectrogram
    from clasp_ingest.model.speech import HFSpeechEncoder
    from clasp_ingest.model.tiny import build_tiny_text

    runtime = Runtime.resolve("cuda", "bf16", batch_size=4)
    config = HubertConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    )  # fmt: skip
    speech = HFSpeechEncoder(HubertModel(config), runtime)
    spec = build_native_spectrogram(ComponentSpec("native", "efficientnet_b7", 2560, {}), runtime)
    text = ComponentSpec("tiny-bert", "unused", 768, {"layers": 1})
    model_config = ModelConfig(
        "gpu-full", ComponentSpec("hf", "random-hubert-large", 1024),
        ComponentSpec("native", "efficientnet_b7", 2560), FusionSpec("concat", 1024, 2560, 768), text,
    )  # fmt: skip
    fusion = build_fusion("concat", 1024, 2560, 768)
    model = ClaspModel(model_config, speech, spec, fusion, build_tiny_text(text, runtime), runtime)
    clips = _clips()
    vectors = model.encode_audio(clips)
    assert vectors.shape == (4, 768) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    single = np.stack([model.encode_audio([clip])[0] for clip in clips])
    assert _rowwise_cos(single, vectors).min() >= 0.97  # padding + attention mask hold in bf16 too
