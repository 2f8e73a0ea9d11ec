"""``segment`` (and ``stream_audio``) of a named pipe or device: ffmpeg waited forever on a
FIFO's writer (``ingest`` refused it already); now one error naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.media.decode import stream_audio


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "talk.wav"
    os.mkfifo(fifo)
    result = CliRunner().invoke(app, ["segment", str(fifo)])
    assert result.exit_code == 1
    assert "is no regular file (a named pipe, device or socket)" in result.stderr
    with pytest.raises(MediaDecodeError, match="no regular file"):
        list(stream_audio(fifo))


@pytest.mark.timeout(60)
def test_a_device_is_refused() -> None:
    with pytest.raises(MediaDecodeError, match="no regular file"):
        list(stream_audio("/dev/zero"))
