"""Write the audio of a returned span to a file (pydub + ffmpeg), for playback in RAG answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any
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
    defaults to ``out_path``'s suffix (``.wav``, ``.mp3``, ``.ogg``...).
    """
    from pydub import AudioSegment

    from clasp_ingest.media.decode import find_ffmpeg

    source, start_s, end_s = _span_of(span)
    start = max(0.0, start_s - pad_s)
    duration = end_s + pad_s - start

    class _Segment(AudioSegment):
        converter = find_ffmpeg(ffmpeg)  # per call, not a global pydub setting

    out_path = Path(out_path)
    fmt = audio_format or out_path.suffix.lstrip(".") or "wav"
    try:
        clip: Any = _Segment.from_file(_local_or_url(source), start_second=start, duration=duration)
    except Exception as exc:
        raise MediaDecodeError(
            source, f"cannot cut {start:.3f}–{end_s + pad_s:.3f}s for playback: {exc}"
        ) from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    clip.export(str(out_path), format=fmt)
    return out_path
