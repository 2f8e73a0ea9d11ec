"""What ``segment`` and decoding call an input in their messages (session 30: tester 4's bug 5,
tester 5's bug 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.media import stream_audio


def test_segment_prints_a_file_name_on_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newline in FILE split the ``error:`` line in two (the second a fake ``error:``), and
    terminal escapes reached the terminal."""
    monkeypatch.chdir(tmp_path)
    for name in ("talk\nerror: fake second line", "\x1b[31mred\x1b[0m.wav"):
        run = CliRunner().invoke(app, ["segment", name])
        assert run.exit_code == 1, run.output
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: "), run.stderr
        assert "\x1b" not in run.stderr and "no such file" in run.stderr


def test_an_empty_download_is_named_by_its_url(tmp_path: Path) -> None:
    """Its error named the temporary file, deleted by then (a 0-byte body, HTTP 204 or 304)."""
    downloaded = tmp_path / "clasp-dl-x" / "media.mp3"
    downloaded.parent.mkdir()
    downloaded.touch()
    url = "https://cdn.example.com/ep/empty.mp3"
    with pytest.raises(MediaDecodeError) as error:
        list(stream_audio(downloaded, shown=url))
    assert error.value.source == url and str(downloaded) not in str(error.value)
    assert "the server sent an empty body (0 bytes)" in str(error.value)
    with pytest.raises(MediaDecodeError, match=r"the file is empty \(0 bytes\); download or export it again"):
        list(stream_audio(downloaded))  # a local file: as before
