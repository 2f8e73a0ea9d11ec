"""Under ``ulimit -n`` reached, ffmpeg cannot be started: the error says so and how to raise the
limit (tester 1 of session 29, bug 5: every item failed as "ffmpeg did not list its demuxers
... check that it is a working ffmpeg", the "[Errno 24] Too many open files" only in -vv)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.media import find_ffmpeg
from clasp_ingest.media.decode import demuxer_whitelist, required_whitelist

resource = pytest.importorskip("resource")

#: Lower this process's open-files limit to 64 and use up every descriptor, then list ffmpeg's demuxers.
_AT_THE_LIMIT = """
import resource, sys
from clasp_ingest.errors import ConfigError
from clasp_ingest.media.decode import required_whitelist
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(open("/dev/null"))
except OSError:
    pass
try:
    required_whitelist(sys.argv[1])
except ConfigError as exc:
    held[0].close()  # room to print
    print(exc)
"""


def test_ffmpeg_that_cannot_start_at_the_open_files_limit_names_the_limit() -> None:
    ffmpeg = find_ffmpeg()
    done = subprocess.run(
        [sys.executable, "-c", _AT_THE_LIMIT, ffmpeg], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"ffmpeg {ffmpeg!r} did not list its demuxers ('-demuxers': [Errno 24] Too many open files), so "
        "playlists and manifests could not be refused and nothing is decoded; this process has as many "
        "files open as it may: raise its limit (ulimit -n, now 64), e.g. to 1024"
    )


def test_an_ffmpeg_that_cannot_be_started_says_why() -> None:
    missing = "/no/such/ffmpeg"
    with pytest.raises(ConfigError, match=r"'-demuxers': \[Errno 2\] No such file or directory") as error:
        required_whitelist(missing)
    assert str(error.value).endswith("check that it is a working ffmpeg (CLASP_FFMPEG), or try again if "
                                     "the machine was too busy to answer in 30 s")  # fmt: skip
    assert demuxer_whitelist(missing) is None  # the same why, as a warning
