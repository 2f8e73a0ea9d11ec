"""7-bit int8 weights for CTranslate2's Whisper on the CPU (``quantize_ct2_weights``, ``int7_whisper_dir``).

CTranslate2's int8 GEMM on a CPU without VNNI saturates with its own +-127 weights; weights in
+-63 cannot, so the frames match float32's as closely as on a VNNI CPU."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.model import whisper_ct2
from clasp_ingest.model.config import ComponentSpec, Runtime
from clasp_ingest.model.ct2_format import INT7_LEVELS, quantize_ct2_weights, read_ct2_model
from clasp_ingest.model.whisper_ct2 import (
    WhisperCT2Options,
    WhisperCT2SpeechEncoder,
    build_speech,
    check_speech_options,
    int7_whisper_dir,
)
from tests.unit.model_mini.test_whisper_torch import _cosines, _noise

TRIM = WhisperCT2Options(window="trim", batch_size=3)


def _clips() -> list[np.ndarray]:
    return [_noise(s, i) for i, s in enumerate([0.7, 2.3, 1.1])]


def test_selected_matrices_are_stored_in_seven_bits_and_the_rest_as_they_were(
    tiny_whisper_ct2: Path, tmp_path: Path
) -> None:
    out = quantize_ct2_weights(tiny_whisper_ct2, tmp_path / "q", lambda name: name.startswith("encoder/"))
    before = read_ct2_model(tiny_whisper_ct2).variables
    after = read_ct2_model(out).variables
    matrices = [
        n for n, v in before.items() if n.startswith("encoder/") and n.endswith("/weight") and v.ndim == 2
    ]
    assert len(matrices) == 8  # 2 layers x (fused qkv, attention out, two ffn)
    assert after.keys() == before.keys() | {f"{n}_scale" for n in matrices}
    for name, value in before.items():
        if name not in matrices:
            assert after[name].dtype == value.dtype and np.array_equal(after[name], value), name
            continue
        q, scale = after[name], after[f"{name}_scale"]
        assert q.dtype == np.int8 and q.shape == value.shape and scale.shape == (value.shape[0],)
        assert np.abs(q).max() == INT7_LEVELS and (np.abs(q).max(axis=1) == INT7_LEVELS).all()
        err = np.abs(q / scale[:, None] - value) * scale[:, None]
        assert err.max() <= 0.5 + 1e-4  # within half a step of each row's own scale
    assert {p.name for p in out.iterdir()} == {p.name for p in tiny_whisper_ct2.iterdir()}


def test_seven_bit_weights_run_in_ctranslate2_near_float32(tiny_whisper_ct2: Path, tmp_path: Path) -> None:
    int7 = int7_whisper_dir(tiny_whisper_ct2, tmp_path)
    want = WhisperCT2SpeechEncoder(tiny_whisper_ct2, compute_type="float32", options=TRIM).encode_frames(
        _clips()
    )
    for compute_type in ("float32", "int8"):  # float32 dequantises the stored int8
        got = WhisperCT2SpeechEncoder(int7, compute_type=compute_type, options=TRIM).encode_frames(_clips())
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            assert _cosines(g, w).min() > 0.99, compute_type


def test_the_copy_is_made_once_and_again_for_a_changed_source(tiny_whisper_ct2: Path, tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "src"
    shutil.copytree(tiny_whisper_ct2, source)
    first = int7_whisper_dir(source, tmp_path / "cache")
    assert first.name.startswith("src-int7e-") and int7_whisper_dir(source, tmp_path / "cache") == first
    scaled = [n for n in read_ct2_model(first).variables if n.endswith("_scale")]
    assert scaled and all(n.startswith("encoder/") for n in scaled)  # the decoder as it was
    stat = (source / "model.bin").stat()
    os.utime(source / "model.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new conversion
    assert int7_whisper_dir(source, tmp_path / "cache") != first


def _spec(tiny: Path, **options: object) -> ComponentSpec:
    return ComponentSpec("ct2-whisper", str(tiny), 32, {"window": "trim", **options})


@pytest.mark.parametrize(
    ("options", "cpu_bits", "int7"),
    [
        ({}, 7, True),  # int8, the CPU default, on a CPU whose int8 GEMM may saturate
        ({}, 8, False),  # ... and on one with VNNI: CTranslate2 quantises, as before
        ({"compute_type": "int8_float32", "weight_bits": None}, 7, True),
        ({"compute_type": "int8", "weight_bits": 7}, 8, True),
        ({"compute_type": "int8", "weight_bits": 8}, 7, False),
        ({"compute_type": "float32"}, 7, False),
        ({"compute_type": "float32", "weight_bits": 7}, 7, False),  # nothing to quantise
    ],
)
def test_build_speech_gives_ctranslate2_seven_bit_weights_where_its_int8_may_saturate(
    tiny_whisper_ct2: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, object],
    cpu_bits: int,
    int7: bool,
) -> None:
    monkeypatch.setattr(whisper_ct2, "weight_bits_for_this_cpu", lambda: cpu_bits)
    spec = _spec(tiny_whisper_ct2, cache_dir=str(tmp_path), **options)
    encoder = build_speech(spec, Runtime(device="cpu", batch_size=4))
    assert ("-int7e-" in encoder.model_dir.name) is int7
    assert (encoder.model_dir == tiny_whisper_ct2) is not int7


def test_a_cache_that_cannot_be_written_keeps_ctranslate2s_own_weights(
    tiny_whisper_ct2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only cache that served a version before 7-bit weights still serves (with a warning);
    ``weight_bits: 7`` asked for by name fails naming the cache."""
    import logging

    from clasp_ingest.errors import ModelLoadError

    monkeypatch.setattr(whisper_ct2, "weight_bits_for_this_cpu", lambda: 7)
    (tmp_path / "afile").write_text("")  # root writes anywhere: a cache under a file cannot be made
    unwritable = str(tmp_path / "afile" / "sub")
    with caplog.at_level(logging.WARNING):
        encoder = build_speech(
            _spec(tiny_whisper_ct2, cache_dir=unwritable), Runtime(device="cpu", batch_size=4)
        )
    assert encoder.model_dir == tiny_whisper_ct2 and len(encoder.encode_frames(_clips())) == 3
    assert any(
        "own int8 weights" in r.getMessage() and "cannot be written" in r.getMessage() for r in caplog.records
    )
    with pytest.raises(ModelLoadError, match=r"model cache .*afile/sub.* cannot be written"):
        build_speech(_spec(tiny_whisper_ct2, cache_dir=unwritable, weight_bits=7), Runtime(device="cpu"))


def test_this_cpus_bits_follow_its_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() == "x86_64" and cpuinfo.is_file():
        vnni = "avx512_vnni" in cpuinfo.read_text(encoding="ascii", errors="replace").split()
        assert whisper_ct2.weight_bits_for_this_cpu() == (8 if vnni else 7)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # Ruy widens before it adds
    assert whisper_ct2.weight_bits_for_this_cpu() == 8


@pytest.mark.parametrize("bits", [6, 16, True, "7", 7.0])
def test_weight_bits_must_be_seven_or_eight(bits: object) -> None:
    with pytest.raises(ConfigError, match="weight_bits must be 7 or 8"):
        check_speech_options({"weight_bits": bits})
    for fine in (7, 8, None):
        check_speech_options({"weight_bits": fine})


# -- the real whisper-base clasp-mini runs ---------------------------------------------------------------


@pytest.mark.slow
def test_whisper_base_int8_frames_are_float32s_on_any_cpu(tmp_path: Path) -> None:
    """On an AVX2-only AMD EPYC, CTranslate2's own int8 weights gave a pooled cosine of 0.988-0.990
    to float32 (frames' mean 0.987-0.994); 7-bit weights give 0.9995 (0.997), as VNNI CPUs did."""
    from clasp_ingest.errors import ModelLoadError
    from clasp_ingest.media import segment_media
    from clasp_ingest.model.assets import whisper_base_ct2_dir

    try:
        base = whisper_base_ct2_dir()
    except ModelLoadError as exc:
        pytest.skip(f"whisper-base packages absent: {exc}")
    samples = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"
    clips = [
        next(iter(segment_media(str(samples / f"demo_{lang}.opus")))).samples for lang in ("en", "de", "es")
    ]
    opts = WhisperCT2Options(window="trim")
    want = WhisperCT2SpeechEncoder(base, compute_type="float32", options=opts).encode_frames(clips)
    got = WhisperCT2SpeechEncoder(int7_whisper_dir(base, tmp_path), compute_type="int8", options=opts)
    for g, w in zip(got.encode_frames(clips), want, strict=True):
        assert _cosines(g, w).mean() > 0.995
        assert _cosines(g.mean(axis=0, keepdims=True), w.mean(axis=0, keepdims=True))[0] > 0.999
