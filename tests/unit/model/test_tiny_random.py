from __future__ import annotations

import numpy as np
import pytest

from clasp_ingest.model import AudioTextEncoder, ClaspModel, load_model


def test_satisfies_protocol(tiny: ClaspModel) -> None:
    assert isinstance(tiny, AudioTextEncoder)
    assert tiny.model_id == "tiny-random"
    assert tiny.dim == 32 == tiny.config.fusion.out_dim
    assert not tiny.fusion.training


def test_audio_shapes_finite_unit_norm(tiny: ClaspModel, clips: list[np.ndarray]) -> None:
    vectors = tiny.encode_audio(clips)
    assert vectors.shape == (len(clips), tiny.dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_padded_batch_equals_one_by_one(tiny: ClaspModel, clips: list[np.ndarray]) -> None:
    batched = tiny.encode_audio(clips)
    single = np.stack([tiny.encode_audio([clip])[0] for clip in clips])
    assert np.abs(batched - single).max() <= 1e-4
    speech_b = tiny.speech.encode(clips)
    speech_s = np.concatenate([tiny.speech.encode([clip]) for clip in clips])
    assert np.abs(speech_b - speech_s).max() <= 1e-4


def test_distinct_inputs_give_distinct_vectors(tiny: ClaspModel, clips: list[np.ndarray]) -> None:
    vectors = tiny.encode_audio(clips)
    sims = vectors @ vectors.T
    assert sims[np.triu_indices(len(clips), 1)].max() < 0.999


def test_text_shapes_and_norm(tiny: ClaspModel) -> None:
    texts = ["hello world", "bonjour le monde", "Grüße aus Köln", "日本語"]
    vectors = tiny.encode_text(texts)
    assert vectors.shape == (4, tiny.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    np.testing.assert_allclose(tiny.encode_text(texts[:1])[0], vectors[0], atol=1e-5)


def test_empty_inputs(tiny: ClaspModel) -> None:
    assert tiny.encode_audio([]).shape == (0, tiny.dim)
    assert tiny.encode_text([]).shape == (0, tiny.dim)


def test_rejects_bad_waveforms(tiny: ClaspModel) -> None:
    with pytest.raises(ValueError, match="waveform 1"):
        tiny.encode_audio([np.zeros(1600, np.float32), np.zeros((2, 1600), np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode_audio([np.full(1600, np.nan, np.float32)])
    with pytest.raises(TypeError):
        tiny.encode_text("a single string")  # type: ignore[arg-type]


def test_deterministic_across_loads(tiny: ClaspModel, clips: list[np.ndarray]) -> None:
    again = load_model("tiny-random", device="cpu")
    np.testing.assert_allclose(again.encode_audio(clips), tiny.encode_audio(clips), atol=1e-6)
    np.testing.assert_allclose(again.encode_text(["abc"]), tiny.encode_text(["abc"]), atol=1e-6)


def test_embed_features_keeps_training_mode(tiny: ClaspModel, clips: list[np.ndarray]) -> None:
    speech, spec = tiny.speech.encode(clips), tiny.spectrogram.encode(clips)
    tiny.fusion.train()
    try:
        out = tiny.embed_features(speech, spec)
        assert tiny.fusion.training
    finally:
        tiny.fusion.eval()
    np.testing.assert_allclose(out, tiny.encode_audio(clips), atol=1e-5)
