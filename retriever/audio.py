"""Write the audio of a returned span to a file (ffmpeg), for playback in RAG answers."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

from langchain_core.documents import Document

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.types import SpanHit

__all__ = ["save_span_audio"]


def _local_or_url(source: str) -> str:
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return source


def _span_of(span: Document | SpanHit) -> tuple[str, float, float]:
    if isinstance(span, SpanHit):
        return span.source, span.start_s, span.end_s
    meta = span.metadata
    try:
        return str(meta["source"]), float(meta["start_s"]), float(meta["end_s"])
    except KeyError as exc:
        raise ValueError(f"document metadata lacks {exc}; pass a Document from ClaspRetriever") from None


def save_span_audio(
    span: Document | SpanHit,
    out_path: Path,
    *,
    audio_format: str | None = None,
    pad_s: float = 0.0,
    ffmpeg: str | None = None,
) -> Path:
    """Cut ``[start_s - pad_s, end_s + pad_s]`` of the span's source into ``out_path``.

    Only that stretch is decoded (ffmpeg seeks), so long media cost little. The format
    defaults to ``out_path``'s suffix (``.wav``, ``.mp3``, ``.ogg``...), given to ffmpeg as
    its output format (``-f``). Only ``ffmpeg`` is needed (the one of
    :func:`~clasp_ingest.media.decode.find_ffmpeg`, e.g. imageio-ffmpeg's), not ``ffprobe``.
    A failed cut raises :class:`~clasp_ingest.errors.MediaDecodeError` naming the source and
    leaves no file at ``out_path``.
    """
    from clasp_ingest.media.decode import find_ffmpeg

    source, start_s, end_s = _span_of(span)
    start = max(0.0, start_s - pad_s)
    duration = end_s + pad_s - start
    out_path = Path(out_path)
    fmt = audio_format or out_path.suffix.lstrip(".") or "wav"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        find_ffmpeg(ffmpeg),
        *("-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *("-ss", f"{start:.3f}", "-t", f"{duration:.3f}", "-i", _local_or_url(source)),
        *("-vn", "-f", fmt, str(out_path)),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=600, check=False)
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = None if done.returncode == 0 else (lines or [f"ffmpeg exit code {done.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = str(exc)
    if reason is not None:
        out_path.unlink(missing_ok=True)
        raise MediaDecodeError(source, f"cannot cut {start:.3f}–{end_s + pad_s:.3f}s for playback: {reason}")
    return out_path
