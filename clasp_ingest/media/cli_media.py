"""``clasp-ingest segment``: cut a media file into sentence-like speech segments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from clasp_ingest.errors import BadOptionError, ClaspIngestError, MediaDecodeError
from clasp_ingest.log import error_line, one_line, warnings_as_lines

if TYPE_CHECKING:
    import numpy as np

    from clasp_ingest.config import Settings

__all__ = ["register"]

#: The options of ``segment`` that set segmenter values, by SegmenterOptions field.
_FLAGS = {"min_segment_s": "--min-s", "max_segment_s": "--max-s", "min_pause_s": "--min-pause-s"}


def register(app: typer.Typer) -> None:
    """Add the ``segment`` command to ``app``."""
    app.command("segment")(segment_command)


def segment_command(
    file: str = typer.Argument(
        ..., help="A media file, or an http(s)/s3/gs URL (downloaded first, as ingest downloads)."
    ),
    as_json: bool = typer.Option(False, "--json", help='Print [{"start_s": ..., "end_s": ...}, ...].'),
    min_s: float | None = typer.Option(
        None,
        "--min-s",
        help="Shortest segment (s); shorter fragments merge (default: CLASP_MIN_SEGMENT_S or 1.0).",
    ),
    max_s: float | None = typer.Option(
        None,
        "--max-s",
        help="Longest segment (s); longer speech is split (default: CLASP_MAX_SEGMENT_S or 15.0).",
    ),
    min_pause_s: float | None = typer.Option(
        None,
        "--min-pause-s",
        help="Shortest pause (s) that ends a segment (default: CLASP_MIN_PAUSE_S or 0.3).",
    ),
) -> None:
    """Find the sentence-like speech segments of FILE (Silero VAD, streamed).

    --max-s must be at least 2 × --min-s + 2 × the padding around speech (CLASP_SPEECH_PAD_S, 0.1 s).
    """
    from clasp_ingest.config import Settings
    from clasp_ingest.media.decode import stream_audio
    from clasp_ingest.media.segment import no_speech_warning, segment_blocks

    settings = Settings.model_validate({})  # a bad CLASP_* value: one error line, exit 1
    try:
        options = settings.segmenter_options(
            flags=_FLAGS, min_segment_s=min_s, max_segment_s=max_s, min_pause_s=min_pause_s
        )
    except BadOptionError as exc:  # bad usage: exit 2 (a bad CLASP_* value goes on: exit 1)
        raise typer.BadParameter(str(exc)) from None
    decode = settings.decode_options()
    heard = {"samples": 0, "tracks": 1}
    shown = one_line(_redacted(file))  # a newline in FILE split its 'error:' line in two

    def warn(text: str) -> None:
        typer.echo(f"warning: {shown}: {text}", err=True)

    def tracks(count: int) -> None:
        heard["tracks"] = count

    def blocks(local: str) -> Iterator[np.ndarray]:
        for block in stream_audio(local, decode, on_tracks=tracks):
            heard["samples"] += block.size
            yield block

    try:
        with warnings_as_lines("clasp_ingest.media.decode"), _fetched(file, settings) as local:
            spans = [
                (s.segment.start_s, s.segment.end_s) for s in segment_blocks(blocks(local), options=options)
            ]
    except ClaspIngestError as exc:
        typer.echo(f"error: {shown}: {error_line(exc)}", err=True)
        raise typer.Exit(1) from None
    if not spans:  # as ingest says it (stdout keeps the empty result)
        audio_s = heard["samples"] / decode.sample_rate
        warn(no_speech_warning(audio_s, heard["tracks"]))
    if as_json:
        typer.echo(json.dumps([{"start_s": start, "end_s": end} for start, end in spans]))
    else:
        _print_table(one_line(Path(file).name), spans)


def _redacted(file: str) -> str:
    from clasp_ingest.connectors.urls import redact_url
    from clasp_ingest.media.decode import is_url

    return redact_url(file) if is_url(file) else file


@contextmanager
def _fetched(file: str, settings: Settings) -> Iterator[str]:
    """FILE as a local file: a URL is downloaded as ``ingest`` downloads it (its limits, the
    address checks of redirects, ``CLASP_*`` download settings), not opened by ffmpeg itself,
    which followed redirects and HLS playlists to any host, with no size or time limit; a named
    pipe or device is refused. (``stream_audio`` reads a pipe: a caller may stream into one.)"""
    from clasp_ingest.connectors import connector_for
    from clasp_ingest.media.decode import is_url

    if not is_url(file):
        if Path(file).exists() and not Path(file).is_file() and not Path(file).is_dir():
            # ffmpeg waited forever on a FIFO's writer (ingest refuses such files when listing)
            raise MediaDecodeError(
                file, "is no regular file (a named pipe, device or socket); give a media file"
            )
        yield file
        return
    connector = connector_for(file, feed=False, open_options=settings.open_options())
    refs = list(connector.discover())
    if len(refs) != 1:
        raise MediaDecodeError(
            _redacted(file), f"lists {len(refs)} media files; segment takes one: give its own URL"
        )
    with connector.open(refs[0]) as local:
        yield local


def _print_table(title: str, spans: list[tuple[float, float]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{title}: {len(spans)} segments"))
    for column in ("#", "start", "end", "duration (s)"):
        table.add_column(column, justify="right")
    for index, (start, end) in enumerate(spans):
        table.add_row(str(index), _clock(start), _clock(end), f"{end - start:.3f}")
    Console().print(table)


def _clock(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest / 1000:06.3f}"
