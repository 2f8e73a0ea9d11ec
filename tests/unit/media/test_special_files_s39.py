"""``segment`` of a named pipe or device: ffmpeg waited forever on a FIFO's writer (``ingest``
refused it already); now one error naming it. ``stream_audio`` still reads a pipe a caller
streams into."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "talk.wav"
    os.mkfifo(fifo)
    result = CliRunner().invoke(app, ["segment", str(fifo)])
    assert result.exit_code == 1
    assert "is no regular file (a named pipe, device or socket)" in result.stderr


@pytest.mark.timeout(60)
def test_a_device_is_refused() -> None:
    result = CliRunner().invoke(app, ["segment", "/dev/zero"])
    assert result.exit_code == 1 and "'/dev/zero': is no regular file" in result.stderr
