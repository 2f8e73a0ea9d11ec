"""A model's ONNX export in the cache damaged after it was written (tester 6 of session 30): a
``head.onnx`` or ``meta.json`` cut short or removed is exported again; damage its record cannot
see is a ``ModelLoadError`` naming the cache folder and saying to delete it. Before, every item
of every run failed with ONNX Runtime's or json's own error, or with "Directory not empty"."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ModelLoadError


@pytest.fixture(scope="module")
def tiny_onnx_model(tiny_whisper_ct2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model the ONNX engine runs: the tiny CTranslate2 Whisper, no CNN, a concat head."""
    from clasp_ingest.model.clasp import save_fusion, seeded_head
    from clasp_ingest.model.config import ComponentSpec, FusionSpec
    from clasp_ingest.model.presets import get_preset

    fusion = FusionSpec("concat", 32, 8, 32)
    config = replace(
        get_preset("tiny-random"),
        model_id="tiny-onnx",
        speech=ComponentSpec("ct2-whisper", str(tiny_whisper_ct2), 32, {"compute_type": "float32"}),
        spectrogram=ComponentSpec("none", "none", 8),
        fusion=fusion,
    )
    return save_fusion(config, seeded_head(fusion, 0), tmp_path_factory.mktemp("tiny-onnx"))


def _clip() -> list[np.ndarray]:
    return [np.sin(np.arange(16000, dtype=np.float32) / 7) * 0.1]


def _load(model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, Path]:
    from clasp_ingest.model.onnx_engine import load_onnx_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    vectors = load_onnx_model(str(model)).encode_audio(_clip())
    (folder,) = (cache / "clasp-ingest" / "onnx").iterdir()
    return vectors, folder


@pytest.mark.parametrize("damage", ["empty head.onnx", "cut head.onnx", "empty meta.json", "no meta.json"])
def test_a_damaged_export_is_made_again(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    want, folder = _load(tiny_onnx_model, tmp_path, monkeypatch)
    assert {p.name for p in folder.iterdir()} == {"head.onnx", "meta.json"}
    name = damage.split()[-1]
    if damage.startswith("no "):
        (folder / name).unlink()
    else:
        os.truncate(folder / name, 0 if damage.startswith("empty") else (folder / name).stat().st_size // 2)
    for _ in range(2):  # and it stays repaired
        got, again = _load(tiny_onnx_model, tmp_path, monkeypatch)
        assert again == folder
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert {p.name for p in folder.iterdir()} == {"head.onnx", "meta.json"}
    assert json.loads((folder / "meta.json").read_text())["files"]["head.onnx"][1] > 0


def test_an_export_from_before_the_record_is_made_again(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``meta.json`` without the graphs' sizes (an older version, or written before its graphs
    were whole) does not count as done."""
    want, folder = _load(tiny_onnx_model, tmp_path, monkeypatch)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["files"]
    (folder / "meta.json").write_text(json.dumps(meta))
    os.truncate(folder / "head.onnx", 10)
    got, _ = _load(tiny_onnx_model, tmp_path, monkeypatch)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_damage_the_record_cannot_see_names_the_folder_and_the_remedy(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, folder = _load(tiny_onnx_model, tmp_path, monkeypatch)
    head = folder / "head.onnx"
    st = head.stat()
    head.write_bytes(b"\x07" * st.st_size)  # garbled, size and mtime kept
    os.utime(head, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ModelLoadError) as raised:
        _load(tiny_onnx_model, tmp_path, monkeypatch)
    said = str(raised.value)
    assert said.startswith("cannot load the ONNX export of 'tiny-onnx' in the model cache (")
    assert said.endswith(f"; delete the folder {str(folder)!r} and the next run exports the model again")


def test_a_meta_json_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    from clasp_ingest.model.onnx_engine import exported_logmel

    (tmp_path / "meta.json").write_bytes(b'{"logmel": ')
    with pytest.raises(ModelLoadError, match=f"the ONNX export's {str(tmp_path / 'meta.json')!r} cannot be"):
        exported_logmel(tmp_path)
