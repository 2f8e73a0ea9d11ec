"""``cached_folder`` where the cache cannot be written: a copy an older version wrote there (no
stamp) is used as it is, as before (reviewer 5: a read-only cache that loaded before the stamps
failed to load after them); with nothing there, the error names the cache. ``install_folder``
renames the new copy in before it removes the old one."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.assets import cached_folder, folder_stamp_matches, install_folder, stamp_folder


def _read_only(path: Path) -> None:
    """What writing a copy into a read-only cache meets (root may write anywhere, so the test's
    writer fails as the file system would)."""
    raise OSError(errno.EROFS, "Read-only file system", str(path / "model.bin"))


def test_an_older_versions_copy_in_a_cache_that_cannot_be_written_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "cache" / "whisper-copy"
    target.mkdir(parents=True)
    (target / "model.bin").write_bytes(b"weights")  # written before copies were stamped
    with caplog.at_level(logging.WARNING):
        assert cached_folder(target, _read_only) == target
    assert (target / "model.bin").read_bytes() == b"weights"
    assert any("cannot be written" in r.getMessage() for r in caplog.records)
    assert [p.name for p in target.parent.iterdir()] == ["whisper-copy"]  # no staging left


def test_nothing_there_and_a_cache_that_cannot_be_written_names_the_cache(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "whisper-copy"
    with pytest.raises(ModelLoadError, match=r"the model cache .* cannot be written .*XDG_CACHE_HOME"):
        cached_folder(target, _read_only)


def test_a_new_copy_replaces_a_damaged_one_whole(tmp_path: Path) -> None:
    target, built = tmp_path / "copy", tmp_path / ".copy-new"
    target.mkdir()
    (target / "model.bin").write_bytes(b"cut")
    built.mkdir()
    (built / "model.bin").write_bytes(b"whole")
    stamp_folder(built)
    install_folder(built, target)
    assert (target / "model.bin").read_bytes() == b"whole" and folder_stamp_matches(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # the old copy removed after
