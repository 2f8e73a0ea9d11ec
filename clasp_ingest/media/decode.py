"""Streamed decoding of anything ffmpeg reads to 16 kHz mono float32.

One ffmpeg subprocess per media item writes raw float32 PCM to a pipe; we read it in
fixed-size blocks (never the whole file), drain its stderr on a thread (keeping only the
tail, so ffmpeg never blocks on a full pipe), guard every read with a timeout and always
reap the process.

Timestamps: the audio filter ``aresample=async=1:first_pts=0`` pads the start with
silence when the audio stream begins after the start of the media (a video whose audio
starts at an offset), so sample ``n`` of the output is at ``n / sample_rate`` seconds of
the media timeline.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from clasp_ingest.errors import ConfigError, MediaDecodeError
from clasp_ingest.log import get_logger

__all__ = ["DecodeOptions", "decode_audio", "find_ffmpeg", "is_url", "stream_audio"]

logger = get_logger("media.decode")

_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_BYTES_PER_SAMPLE = 4  # f32le
_STDERR_TAIL_LINES = 20


@dataclass(frozen=True)
class DecodeOptions:
    """How ffmpeg decodes a media item.

    ``strict``: raise when ffmpeg reports decoding errors (a truncated or corrupt file)
    even though it produced some audio; otherwise such errors are only logged.
    """

    sample_rate: int = 16_000
    block_s: float = 2.0
    read_timeout_s: float = 60.0
    ffmpeg: str | None = None
    strict: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate < 1000:
            raise ConfigError(f"DecodeOptions.sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if not 0 < self.block_s <= 600:
            raise ConfigError(f"DecodeOptions.block_s must be in (0, 600] seconds, got {self.block_s}")
        if self.read_timeout_s <= 0:
            raise ConfigError(f"DecodeOptions.read_timeout_s must be > 0, got {self.read_timeout_s}")

    @property
    def block_bytes(self) -> int:
        return max(1, round(self.block_s * self.sample_rate)) * _BYTES_PER_SAMPLE


def find_ffmpeg(explicit: str | None = None) -> str:
    """The ffmpeg executable: ``explicit``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise ConfigError(
                f"ffmpeg executable {explicit!r} not found; pass a valid path or leave it unset"
            )
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ConfigError("no ffmpeg found: install ffmpeg on PATH or `pip install imageio-ffmpeg`") from None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def is_url(source: str) -> bool:
    """True for ``scheme://...`` sources that ffmpeg opens itself (http, https, rtmp...)."""
    return bool(_URL_RE.match(source)) and not source.startswith("file://")


def stream_audio(
    source: str | os.PathLike[str], options: DecodeOptions | None = None
) -> Iterator[np.ndarray]:
    """Yield float32 mono blocks of ``options.block_s`` seconds (the last one shorter).

    Raises :class:`MediaDecodeError` (naming ``source`` and quoting ffmpeg's stderr tail)
    for a missing, empty, corrupt or audio-less input, or when a read stalls longer than
    ``options.read_timeout_s``. The ffmpeg process is reaped when the generator finishes,
    is closed early, or raises.
    """
    opts = options or DecodeOptions()
    name = _check_source(source)
    process = _start_ffmpeg(name, opts)
    stderr = _StderrTail(process.stderr)
    try:
        yield from _read_blocks(process, name, opts, stderr)
        _check_exit(process, name, opts, stderr)
    finally:
        _reap(process)
        stderr.join()


def decode_audio(source: str | os.PathLike[str], options: DecodeOptions | None = None) -> np.ndarray:
    """The whole clip as one float32 mono array (for short files: training, evaluation)."""
    blocks = list(stream_audio(source, options))
    if not blocks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(blocks)


def _check_source(source: str | os.PathLike[str]) -> str:
    name = os.fspath(source)
    if is_url(name):
        return name
    path = Path(name.removeprefix("file://"))
    if not path.exists():
        raise MediaDecodeError(name, "no such file; check the path")
    if path.is_dir():
        raise MediaDecodeError(name, "is a directory, not a media file")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaDecodeError(name, "the file is empty")
    return name


def _ffmpeg_args(source: str, opts: DecodeOptions) -> list[str]:
    import ffmpeg  # ffmpeg-python: builds the command line

    input_kwargs: dict[str, object] = {}
    if is_url(source):
        # ffmpeg's own I/O timeout (microseconds), so a stalled network read fails inside ffmpeg too.
        input_kwargs["rw_timeout"] = int(opts.read_timeout_s * 1_000_000)
    stream = ffmpeg.input(source, **input_kwargs).output(
        "pipe:",
        map="0:a:0",
        af="aresample=async=1:first_pts=0",
        ac=1,
        ar=opts.sample_rate,
        f="f32le",
        acodec="pcm_f32le",
    )
    args: list[str] = stream.global_args("-nostdin", "-hide_banner", "-loglevel", "error").compile(
        cmd=find_ffmpeg(opts.ffmpeg)
    )
    return args


def _start_ffmpeg(source: str, opts: DecodeOptions) -> subprocess.Popen[bytes]:
    args = _ffmpeg_args(source, opts)
    logger.debug("decoding %s: %s", source, " ".join(args))
    try:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise MediaDecodeError(source, f"cannot start ffmpeg ({exc}); set the ffmpeg path") from exc


class _StderrTail:
    """Drains a pipe on a daemon thread, keeping its last lines."""

    def __init__(self, pipe: IO[bytes] | None) -> None:
        self._lines: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        with pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    with self._lock:
                        self._lines.append(line)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def text(self, wait: bool = True) -> str:
        """The tail so far; ``wait`` for the pipe to end first (once ffmpeg has exited)."""
        if wait:
            self.join()
        with self._lock:
            return " | ".join(self._lines)


def _read_blocks(
    process: subprocess.Popen[bytes], source: str, opts: DecodeOptions, stderr: _StderrTail
) -> Iterator[np.ndarray]:
    assert process.stdout is not None  # set by Popen(stdout=PIPE)
    fd = process.stdout.fileno()
    total = 0
    while True:
        buffer = bytearray(opts.block_bytes)
        filled = _fill(fd, memoryview(buffer), source, opts, stderr)
        usable = filled - filled % _BYTES_PER_SAMPLE
        if usable:
            total += usable
            yield np.frombuffer(buffer, dtype="<f4", count=usable // _BYTES_PER_SAMPLE)
        if filled < opts.block_bytes:
            break
    if total == 0 and process.wait() == 0:
        raise MediaDecodeError(source, "no audio samples decoded; is the file empty?", stderr.text())


def _fill(fd: int, view: memoryview, source: str, opts: DecodeOptions, stderr: _StderrTail) -> int:
    """Read into ``view`` until it is full or the pipe ends; the number of bytes read."""
    filled = 0
    while filled < len(view):
        ready, _, _ = select.select([fd], [], [], opts.read_timeout_s)
        if not ready:
            raise MediaDecodeError(
                source,
                f"no data from ffmpeg for {opts.read_timeout_s:g} s (stalled stream); "
                "raise read_timeout_s or check the source",
                stderr.text(wait=False),
            )
        count = os.readv(fd, [view[filled:]])
        if count == 0:
            break
        filled += count
    return filled


def _check_exit(
    process: subprocess.Popen[bytes], source: str, opts: DecodeOptions, stderr: _StderrTail
) -> None:
    code = process.wait()
    tail = stderr.text()
    if code != 0:
        raise MediaDecodeError(source, _reason(tail, code), tail)
    if tail:
        if opts.strict:
            raise MediaDecodeError(
                source,
                "ffmpeg reported decoding errors (truncated or corrupt data?); use strict=False to accept",
                tail,
            )
        logger.warning("decoding %s: ffmpeg reported errors: %s", source, tail)


def _reason(tail: str, code: int) -> str:
    lowered = tail.lower()
    if "matches no streams" in lowered:
        return "the media has no audio stream"
    if "no such file" in lowered:
        return "no such file or URL; check the source"
    if "invalid data" in lowered or "invalid argument" in lowered or "moov atom not found" in lowered:
        return "not a readable media file (corrupt, truncated, or not audio/video)"
    return f"ffmpeg failed with exit code {code}"


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie-proof kill should not block
        logger.warning("ffmpeg (pid %d) did not exit after kill", process.pid)
    if process.stdout is not None:
        process.stdout.close()
