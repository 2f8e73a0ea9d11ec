"""A download into a temporary folder on a full disk fails once, naming the folder and the
remedy (tester 1 of session 29, bug 4: a bare "[Errno 28] No space left on device", retried)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clasp_ingest.connectors.base import OpenOptions, temporary_target

from clasp_ingest.errors import ConnectorError

#: Run in a 64 KiB tmpfs (argv[1]) that is TMPDIR: download 300 kB into it.
_DOWNLOAD = """
import io, sys
from pathlib import Path
from clasp_ingest.connectors.base import OpenOptions, temporary_download
from clasp_ingest.pipeline import is_transient
try:
    with temporary_download(io.BytesIO(bytes(300_000)), "http://host/a.opus", ".opus", OpenOptions()):
        print("downloaded")
except Exception as exc:
    print(type(exc).__name__, is_transient(exc), sorted(Path(sys.argv[1]).iterdir()))
    print(exc)
"""


def _in_small_tmpfs(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by this Python with ``folder`` a 64 KiB tmpfs and TMPDIR (a user and mount
    namespace: no root needed; skipped where unprivileged namespaces are off)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    folder.mkdir()
    script = 'mount -t tmpfs -o size=64k tmpfs "$1" || exit 99; exec "$2" -c "$3" "$1"'
    env = {**os.environ, "TMPDIR": str(folder)}
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(folder), sys.executable, code],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode == 99 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {done.stderr.strip()}")
    return done


def test_a_download_into_a_full_temporary_folder_names_it_and_is_not_retried(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    done = _in_small_tmpfs(folder, _DOWNLOAD)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ConnectorError False []",  # permanent, and nothing left behind
        f"the temporary download folder '{folder}' is full (No space left on device); free space on its "
        "disk, or set TMPDIR (OpenOptions.temp_dir in Python) to a folder on a disk with room for the media",
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_elsewhere_is_not_blamed_on_the_temporary_folder(tmp_path: Path) -> None:
    with pytest.raises(OSError) as error, temporary_target(".opus", OpenOptions(temp_dir=tmp_path)):
        Path("/dev/full").write_bytes(b"x")  # ENOSPC while the temporary folder has room
    assert error.value.errno == errno.ENOSPC and not isinstance(error.value, ConnectorError)
