"""WhisperCT2SpeechEncoder: features, pooling over real frames, batching, long clips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.base import SpeechEncoder
from clasp_ingest.model.whisper_ct2 import (
    CHUNK_SAMPLES,
    WhisperCT2Options,
    WhisperCT2SpeechEncoder,
    log_mel_spectrogram,
    mel_filters,
)

SR = 16_000


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _encoder(path: Path, **kw: Any) -> WhisperCT2SpeechEncoder:
    return WhisperCT2SpeechEncoder(path, compute_type="float32", options=WhisperCT2Options(**kw))


def test_features_match_transformers_whisper_feature_extractor() -> None:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=80)
    np.testing.assert_allclose(mel_filters(80), fe.mel_filters.T, atol=1e-7)
    audio = _noise(3.37, 1)
    ref = fe(audio, sampling_rate=SR, return_tensors="np").input_features[0]
    ours = log_mel_spectrogram(audio, 80, pad_to=CHUNK_SAMPLES)[:, :3000]
    # float32 rounding: a clean-clone CI run saw 2 of 240,000 values 1.05e-5 apart (log-mel ~1)
    np.testing.assert_allclose(ours, ref, atol=5e-5)


def test_implements_protocol_and_dim(tiny_whisper_ct2: Path) -> None:
    enc = _encoder(tiny_whisper_ct2)
    assert isinstance(enc, SpeechEncoder)
    assert enc.dim == 32
    out = enc.encode([_noise(1.0, 0), _noise(2.5, 1)])
    assert out.shape == (2, 32)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_mean_over_real_frames_matches_transformers_encoder(
    tiny_whisper_ct2: Path, tiny_whisper_hf: Any
) -> None:
    import torch

    audio = _noise(2.0, 3)  # 2 s -> 100 encoder frames
    feats = log_mel_spectrogram(audio, 80, pad_to=CHUNK_SAMPLES)[:, :3000]
    with torch.no_grad():
        states = tiny_whisper_hf.model.encoder(torch.from_numpy(feats[None])).last_hidden_state[0].numpy()
    expected = states[:100].mean(axis=0)
    got = _encoder(tiny_whisper_ct2).encode([audio])[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert not np.allclose(got, states.mean(axis=0), atol=1e-3)  # padding frames are excluded


@pytest.mark.parametrize("window", ["full", "trim"])
def test_padded_batch_equals_items_one_by_one(tiny_whisper_ct2: Path, window: str) -> None:
    clips = [_noise(s, i) for i, s in enumerate([0.7, 3.2, 1.5, 5.0, 0.05])]
    enc = _encoder(tiny_whisper_ct2, window=window, batch_size=3)
    batched = enc.encode(clips)
    single = np.stack([enc.encode([c])[0] for c in clips])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_trim_differs_from_full_but_both_finite(tiny_whisper_ct2: Path) -> None:
    clip = [_noise(2.0, 4)]
    full = _encoder(tiny_whisper_ct2, window="full").encode(clip)
    trim = _encoder(tiny_whisper_ct2, window="trim").encode(clip)
    assert np.isfinite(full).all() and np.isfinite(trim).all()
    assert not np.allclose(full, trim, atol=1e-4)


def test_long_clip_is_the_frame_weighted_mean_of_its_30s_windows(tiny_whisper_ct2: Path) -> None:
    audio = _noise(41.0, 5)  # 30 s (1500 frames) + 11 s (550 frames)
    enc = _encoder(tiny_whisper_ct2)
    first, rest = enc.encode([audio[:CHUNK_SAMPLES], audio[CHUNK_SAMPLES:]])
    expected = (1500 * first + 550 * rest) / 2050
    np.testing.assert_allclose(enc.encode([audio])[0], expected, atol=1e-5)


def test_empty_batch(tiny_whisper_ct2: Path) -> None:
    assert _encoder(tiny_whisper_ct2).encode([]).shape == (0, 32)


def test_missing_model_dir_names_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="whisper_base_ct2_dir"):
        WhisperCT2SpeechEncoder(tmp_path)


@pytest.mark.parametrize(
    "kw", [{"window": "half"}, {"batch_size": 0}, {"intra_threads": -1}, {"inter_threads": 0}]
)
def test_bad_options_rejected(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        WhisperCT2Options(**kw)


@pytest.mark.slow
def test_real_whisper_base_from_packages(tmp_path: Path, speech_clips: list[np.ndarray]) -> None:
    from clasp_ingest.model.assets import WHISPER_BASE_SOURCES, _source_dirs

    if all(_source_dirs(s) is None for s in WHISPER_BASE_SOURCES):
        pytest.skip("whisper-base packages not installed: reinstall clasp-ingest")
    enc = WhisperCT2SpeechEncoder.from_packages(cache_dir=tmp_path, compute_type="int8")
    assert enc.dim == 512
    silence = np.zeros(SR * 2, dtype=np.float32)
    out = enc.encode([*speech_clips, silence])
    assert out.shape == (3, 512) and np.isfinite(out).all()
    unit = out / np.linalg.norm(out, axis=1, keepdims=True)
    sims = unit @ unit.T
    assert sims[0, 1] > sims[0, 2]  # two utterances are closer to each other than to silence
    np.testing.assert_allclose(
        enc.encode(speech_clips[:1])[0], out[0], rtol=0, atol=2e-2 * np.abs(out[0]).max()
    )


def test_build_speech_factory_from_a_ct2_dir(tiny_whisper_ct2: Path) -> None:
    from clasp_ingest.model.config import ComponentSpec, Runtime
    from clasp_ingest.model.whisper_ct2 import build_speech

    spec = ComponentSpec(
        "ct2-whisper", str(tiny_whisper_ct2), 32, {"compute_type": "float32", "window": "trim"}
    )
    enc = build_speech(spec, Runtime(device="cpu", batch_size=2))
    assert enc.dim == 32 and enc.options.window == "trim" and enc.options.batch_size == 2
    assert enc.encode([_noise(1.0, 0)]).shape == (1, 32)


def test_frames_are_the_states_over_real_audio_in_time_order(
    tiny_whisper_ct2: Path, tiny_whisper_hf: Any
) -> None:
    import torch

    from clasp_ingest.model.base import FrameSpeechEncoder

    enc = _encoder(tiny_whisper_ct2)
    assert isinstance(enc, FrameSpeechEncoder)
    audio = _noise(2.0, 3)  # 100 encoder frames
    feats = log_mel_spectrogram(audio, 80, pad_to=CHUNK_SAMPLES)[:, :3000]
    with torch.no_grad():
        states = tiny_whisper_hf.model.encoder(torch.from_numpy(feats[None])).last_hidden_state[0].numpy()
    (frames,) = enc.encode_frames([audio])
    assert frames.shape == (100, 32) and frames.dtype == np.float32
    np.testing.assert_allclose(frames, states[:100], atol=1e-4)


def test_batches_run_at_once_give_the_same_frames_in_the_same_order(tiny_whisper_ct2: Path) -> None:
    """``inter_threads`` 2 (the CPU default on two or more cores) encodes two batches at once; each
    clip still gets exactly its own states, as when the batches run one after another."""
    clips = [_noise(s, i) for i, s in enumerate([0.7, 41.0, 1.5, 0.05, 3.2, 0.7, 2.0])]
    one = _encoder(tiny_whisper_ct2, window="trim", batch_size=2).encode_frames(clips)
    two = _encoder(tiny_whisper_ct2, window="trim", batch_size=2, inter_threads=2).encode_frames(clips)
    assert len(one) == len(two) == len(clips)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cpu_default_runs_two_batches_at_once_within_the_cores(tiny_whisper_ct2: Path) -> None:
    from clasp_ingest.model.base import default_threads, usable_cores
    from clasp_ingest.model.config import ComponentSpec, Runtime
    from clasp_ingest.model.whisper_ct2 import build_speech

    spec = ComponentSpec("ct2-whisper", str(tiny_whisper_ct2), 32, {"compute_type": "float32"})
    opts = build_speech(spec, Runtime(device="cpu")).options
    assert opts.inter_threads == (2 if usable_cores() >= 2 else 1)
    assert opts.intra_threads == max(1, default_threads() // opts.inter_threads)
    pinned = ComponentSpec("ct2-whisper", str(tiny_whisper_ct2), 32, {"inter_threads": 1, "intra_threads": 3})
    pinned_opts = build_speech(pinned, Runtime(device="cpu")).options
    assert (pinned_opts.inter_threads, pinned_opts.intra_threads) == (1, 3)


def test_frames_of_a_batch_and_of_long_clips_average_to_encode(tiny_whisper_ct2: Path) -> None:
    clips = [_noise(s, i) for i, s in enumerate([0.7, 41.0, 1.5, 0.05])]
    enc = _encoder(tiny_whisper_ct2, window="trim", batch_size=3)
    frames = enc.encode_frames(clips)
    assert [len(f) for f in frames] == [35, 2050, 75, 3]
    np.testing.assert_allclose(np.stack([f.mean(0) for f in frames]), enc.encode(clips), atol=1e-5)
    # the long clip's frames are its two windows' frames, first window first
    first, rest = enc.encode_frames([clips[1][:CHUNK_SAMPLES], clips[1][CHUNK_SAMPLES:]])
    np.testing.assert_allclose(frames[1], np.concatenate([first, rest]), atol=1e-5)
    assert enc.encode_frames([]) == []
