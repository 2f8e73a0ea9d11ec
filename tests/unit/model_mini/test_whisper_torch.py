"""Whisper's encoder in torch from a CTranslate2 model.bin: the same frames as CTranslate2, trainable top."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.ct2_format import BINARY_VERSION, read_ct2_model
from clasp_ingest.model.whisper_ct2 import (
    CHUNK_SAMPLES,
    WhisperCT2Options,
    WhisperCT2SpeechEncoder,
    log_mel_spectrogram,
)
from clasp_ingest.model.whisper_torch import (
    WhisperTorchEncoder,
    encode_frames_torch,
    encoder_state_dict,
    load_torch_whisper_encoder,
)

SR = 16_000
_LEVELS = {"int8": 127, "int16": 1024}  # CT2 maps a row's (int8) or the weight's (int16) max |w| there
SAMPLES = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (frames, dim) arrays."""
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _torch_frames(enc: WhisperTorchEncoder, clips: list[np.ndarray], opts: WhisperCT2Options) -> list[Any]:
    with torch.no_grad():
        return [f.numpy() for f in encode_frames_torch(enc, clips, opts)]


def _ct2_frames(path: Path, compute_type: str, clips: list[np.ndarray], opts: WhisperCT2Options) -> Any:
    return WhisperCT2SpeechEncoder(path, compute_type=compute_type, options=opts).encode_frames(clips)


# -- the tiny random Whisper (conftest): exact mapping, every window mode, stored dtypes --------------


@pytest.mark.parametrize("window", ["full", "trim"])
def test_tiny_frames_equal_ct2_float32(tiny_whisper_ct2: Path, window: str) -> None:
    clips = [_noise(s, i) for i, s in enumerate([0.7, 3.2, 31.5, 0.05])]  # 31.5 s: two windows
    opts = WhisperCT2Options(window=window, batch_size=3)
    ours = _torch_frames(load_torch_whisper_encoder(tiny_whisper_ct2), clips, opts)
    theirs = _ct2_frames(tiny_whisper_ct2, "float32", clips, opts)
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    assert ours[2].shape == (1575, 32)
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o, t, atol=1e-4)


def test_a_full_window_equals_transformers_whisper_encoder(
    tiny_whisper_ct2: Path, tiny_whisper_hf: Any
) -> None:
    feats = torch.from_numpy(log_mel_spectrogram(_noise(2.0, 3), 80, pad_to=CHUNK_SAMPLES)[None, :, :3000])
    with torch.no_grad():
        ours = load_torch_whisper_encoder(tiny_whisper_ct2)(feats)
        ref = tiny_whisper_hf.model.encoder(feats).last_hidden_state
    assert ours.shape == (1, 1500, 32)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("quantization", "atol"), [("float16", 1e-3), ("bfloat16", 8e-3), ("int8", 0.0), ("int16", 0.0)]
)
def test_stored_dtypes_are_read_back(
    tiny_whisper_ct2: Path, tmp_path: Path, quantization: str, atol: float
) -> None:
    import ctranslate2

    out = ctranslate2.converters.TransformersConverter(str(tiny_whisper_ct2.parent / "hf")).convert(
        str(tmp_path / quantization), quantization=quantization
    )
    model = read_ct2_model(Path(out), keep=lambda n: n.startswith("encoder/"))
    ours = encoder_state_dict(model)
    ref = encoder_state_dict(read_ct2_model(tiny_whisper_ct2))
    assert ours.keys() == ref.keys()
    for key, value in ours.items():
        step = 0.0
        if quantization in _LEVELS and key.endswith("weight") and "norm" not in key and "embed" not in key:
            step = float(np.abs(ref[key]).max()) / _LEVELS[quantization]  # half a quantisation step off
        np.testing.assert_allclose(value, ref[key], atol=atol + step, rtol=0, err_msg=key)
    if quantization in _LEVELS:
        assert model.variables["encoder/layer_0/ffn/linear_0/weight"].dtype == np.dtype(quantization)


def test_bfloat16_encoder_runs_close(tiny_whisper_ct2: Path) -> None:
    clips, opts = [_noise(1.3, 7)], WhisperCT2Options(window="trim")
    half = load_torch_whisper_encoder(tiny_whisper_ct2, dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        (low,) = [f.float().numpy() for f in encode_frames_torch(half, clips, opts)]
    (ref,) = _torch_frames(load_torch_whisper_encoder(tiny_whisper_ct2), clips, opts)
    assert _cosines(low, ref).min() > 0.99


def test_trainable_top_layers(tiny_whisper_ct2: Path) -> None:
    enc = load_torch_whisper_encoder(tiny_whisper_ct2, trainable_top_layers=1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.layers.1.", "encoder.layer_norm.")) for n in trainable)
    assert not any(p.requires_grad for p in load_torch_whisper_encoder(tiny_whisper_ct2).parameters())
    with pytest.raises(ConfigError, match=r"0\.\.2"):
        load_torch_whisper_encoder(tiny_whisper_ct2, trainable_top_layers=3)


# -- error cases -------------------------------------------------------------------------------------


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<H", len(data) + 1) + data + b"\0"


def _write_model_bin(folder: Path, spec: str, variables: dict[str, np.ndarray], version: int = 6) -> Path:
    """A model.bin laid out as ctranslate2/specs/model_spec.py writes it (float32 variables only)."""
    folder.mkdir()
    blob = struct.pack("<I", version) + _string(spec) + struct.pack("<II", 1, len(variables))
    for name, value in variables.items():
        data = value.astype("<f4").tobytes()
        blob += _string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        blob += struct.pack("<BI", 0, len(data)) + data
    (folder / "model.bin").write_bytes(blob + struct.pack("<I", 0))
    return folder


def test_format_version_is_ctranslate2s() -> None:
    from ctranslate2.specs import model_spec

    assert model_spec.CURRENT_BINARY_VERSION == BINARY_VERSION


def test_folder_without_model_bin(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"{tmp_path}.*no model.bin.*whisper_base_ct2_dir"):
        load_torch_whisper_encoder(tmp_path)


def test_unsupported_format_version(tmp_path: Path) -> None:
    folder = _write_model_bin(tmp_path / "m", "WhisperSpec", {}, version=5)
    with pytest.raises(ModelLoadError, match=r"version 5.*re-convert"):
        load_torch_whisper_encoder(folder)


def test_not_a_whisper_model(tmp_path: Path) -> None:
    folder = _write_model_bin(
        tmp_path / "m", "TransformerSpec", {"encoder/layer_0/ffn/linear_0/bias": np.ones(4)}
    )
    with pytest.raises(ModelLoadError, match="TransformerSpec, not a Whisper encoder"):
        load_torch_whisper_encoder(folder)


def test_whisper_with_foreign_encoder_variables(tmp_path: Path) -> None:
    variables = {
        "encoder/conv1/weight": np.ones((4, 80, 3)),
        "encoder/layer_0/relative_position_keys": np.ones(4),
    }
    folder = _write_model_bin(tmp_path / "m", "WhisperSpec", variables)
    with pytest.raises(ModelLoadError, match=r"relative_position_keys.*no place"):
        load_torch_whisper_encoder(folder)


def test_truncated_model_bin(tiny_whisper_ct2: Path, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    data = (tiny_whisper_ct2 / "model.bin").read_bytes()
    (tmp_path / "m" / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_torch_whisper_encoder(tmp_path / "m")


# -- the real whisper-base clasp-mini ships: the equivalence the fine-tuning relies on ------------------


@pytest.fixture(scope="module")
def whisper_base() -> Path:
    from clasp_ingest.model.assets import whisper_base_ct2_dir

    try:
        return whisper_base_ct2_dir()
    except ModelLoadError as exc:
        pytest.skip(f"whisper-base packages absent: {exc}")


@pytest.fixture(scope="module")
def real_clips() -> list[np.ndarray]:
    """The first speech segment of the English, German and Spanish samples (3.3-4.5 s)."""
    from clasp_ingest.media import segment_media

    return [
        next(iter(segment_media(str(SAMPLES / f"demo_{lang}.opus")))).samples for lang in ("en", "de", "es")
    ]


@pytest.fixture(scope="module")
def base_encoder(whisper_base: Path) -> WhisperTorchEncoder:
    return load_torch_whisper_encoder(whisper_base)


@pytest.mark.slow
def test_real_frames_match_ct2_float32(
    whisper_base: Path, base_encoder: WhisperTorchEncoder, real_clips: list[np.ndarray]
) -> None:
    opts = WhisperCT2Options(window="trim")  # clasp-mini's mode
    for ours, theirs in zip(
        _torch_frames(base_encoder, real_clips, opts),
        _ct2_frames(whisper_base, "float32", real_clips, opts),
        strict=True,
    ):
        assert ours.shape == theirs.shape and ours.shape[1] == 512
        assert np.abs(ours - theirs).max() < 2e-3  # states reach |x| ~ 18
        assert _cosines(ours, theirs).min() > 0.99999


@pytest.mark.slow
def test_real_full_window_matches_ct2_float32(
    whisper_base: Path, base_encoder: WhisperTorchEncoder, real_clips: list[np.ndarray]
) -> None:
    opts = WhisperCT2Options(window="full")
    (ours,) = _torch_frames(base_encoder, real_clips[:1], opts)
    (theirs,) = _ct2_frames(whisper_base, "float32", real_clips[:1], opts)
    assert np.abs(ours - theirs).max() < 2e-3
    assert _cosines(ours, theirs).min() > 0.99999


@pytest.mark.slow
def test_real_frames_near_ct2_int8(
    whisper_base: Path, base_encoder: WhisperTorchEncoder, real_clips: list[np.ndarray]
) -> None:
    """int8 (what clasp-mini runs) moves a few low-norm frames; the mean and the pooled vector stay
    close. How close depends on the CPU's int8 kernels: frames' mean cosine above 0.99 and pooled
    above 0.999 on the machines before 2026-12-07; 0.987 and 0.989 on an AVX2-only AMD EPYC."""
    opts = WhisperCT2Options(window="trim")
    for ours, theirs in zip(
        _torch_frames(base_encoder, real_clips, opts),
        _ct2_frames(whisper_base, "int8", real_clips, opts),
        strict=True,
    ):
        assert _cosines(ours, theirs).mean() > 0.98
        assert _cosines(ours.mean(axis=0, keepdims=True), theirs.mean(axis=0, keepdims=True))[0] > 0.98


@pytest.mark.slow
def test_top_two_layers_train(whisper_base: Path, real_clips: list[np.ndarray]) -> None:
    enc = load_torch_whisper_encoder(whisper_base, trainable_top_layers=2)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    expected = ("encoder.layers.4.", "encoder.layers.5.", "encoder.layer_norm.")
    assert trainable == {n for n, _ in enc.named_parameters() if n.startswith(expected)}
    (frames,) = encode_frames_torch(enc, real_clips[:1], WhisperCT2Options(window="trim"))
    frames.mean(dim=0).square().sum().backward()
    for name, param in enc.named_parameters():
        assert (param.grad is not None) == (name in trainable), name
    assert all(float(p.grad.abs().sum()) > 0 for p in enc.parameters() if p.grad is not None)
