"""A model config's ``pkg://`` file sources and trusted backends import nothing from the current
folder: ``pkg://PACKAGE/...`` imported PACKAGE to find its files (any installed module with
import-time effects ran, and with ``python -m`` a package in the current folder), and a
trusted ``module:function`` in a namespace package (a folder without ``__init__.py``) in the
current folder passed the "not beside the model or in the current directory" check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.backends import TRUST_ENV, check_backend
from clasp_ingest.model.hub import resolve_file

RUNS = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder, first on ``sys.path`` as ``python -m`` puts it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_package_file_is_found_without_importing_the_package(here: Path) -> None:
    marker = here / "ran.txt"
    package = here / "weights_pkg_s39"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(RUNS.format(marker=str(marker)))
    (package / "sub" / "w.safetensors").write_bytes(b"data")
    assert resolve_file("pkg://weights_pkg_s39/sub/w.safetensors") == package / "sub" / "w.safetensors"
    with pytest.raises(ModelLoadError, match=r"has no file 'x\.safetensors'"):
        resolve_file("pkg://weights_pkg_s39/x.safetensors")
    assert not marker.exists() and "weights_pkg_s39" not in sys.modules


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("pkg://this/x.safetensors", "'this' is a module, not a package"),  # printed the Zen of Python
        ("pkg://no_such_package_s39/x", "which is not installed"),
        ("pkg://clasp_ingest/../x", "names no file inside package"),
        ("pkg://clasp_ingest", "names no file inside package"),
    ],
)
def test_package_sources_that_name_no_package_file(source: str, said: str) -> None:
    with pytest.raises(ModelLoadError, match=said):
        resolve_file(source)
    assert "this" not in sys.modules


def test_our_own_package_files_resolve() -> None:
    path = resolve_file("pkg://clasp_ingest/data/models/clasp-mini/fusion.safetensors")
    assert path.is_file() and path.parts[-3:] == ("models", "clasp-mini", "fusion.safetensors")
    dotted = resolve_file("pkg://clasp_ingest.data/models/clasp-mini/fusion.safetensors")
    assert dotted == path


def test_trust_does_not_reach_a_namespace_package_in_the_current_folder(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = here / "ran.txt"
    (here / "evilns_s39").mkdir()  # no __init__.py: a namespace package
    (here / "evilns_s39" / "mod.py").write_text(RUNS.format(marker=str(marker)) + "def f(*a):\n    pass\n")
    monkeypatch.setenv(TRUST_ENV, "1")
    with pytest.raises(ConfigError, match="beside the model or in the current directory"):
        check_backend("text", "evilns_s39.mod:f")
    assert not marker.exists() and "evilns_s39" not in sys.modules
