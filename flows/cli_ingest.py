"""``clasp-ingest ingest SOURCE...``: run the ingest flow locally with a progress bar.

Exit status 0 when the run completed, even if some media failed (they are listed); 1 when
the run could not run (bad arguments, a collection made for another model, no source
could be listed, Prefect could not start).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NoReturn

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to the CLI."""
    app.command("ingest")(ingest_command)


def ingest_command(
    sources: list[str] = typer.Argument(
        ..., help="Paths, globs, http(s)/s3/gs URLs or RSS/Atom feed URLs.", show_default=False
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Model preset or directory [CLASP_MODEL]."),
    collection: str | None = typer.Option(
        None, "--collection", "-c", help="Qdrant collection [CLASP_COLLECTION]."
    ),
    qdrant_path: Path | None = typer.Option(None, "--qdrant-path", help="Embedded Qdrant directory."),
    qdrant_url: str | None = typer.Option(
        None, "--qdrant-url", help="Qdrant server URL (key: CLASP_QDRANT_API_KEY)."
    ),
    feed: bool = typer.Option(
        False, "--feed", help="Treat every SOURCE as an RSS/Atom feed (else detected)."
    ),
    device: str | None = typer.Option(
        None, "--device", help="'auto', 'cpu', 'cuda' or 'cuda:N' [CLASP_DEVICE]."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Segments per embedding batch."),
    max_bytes: int | None = typer.Option(
        None, "--max-bytes", min=1, help="Largest download accepted, in bytes."
    ),
    force: bool = typer.Option(False, "--force", help="Re-ingest items already stored at their version."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Ingest new or changed media from SOURCE(s) into Qdrant (skips unchanged items)."""
    if qdrant_path is not None and qdrant_url is not None:
        _fail("give --qdrant-path or --qdrant-url, not both")
    arguments: dict[str, Any] = {
        "sources": list(sources),
        "model": model,
        "collection": collection,
        "qdrant_url": qdrant_url,
        "qdrant_path": str(qdrant_path) if qdrant_path is not None else None,
        "feed": True if feed else None,
        "device": device,
        "embed_batch_size": batch_size,
        "max_bytes": max_bytes,
        "force": force,
    }
    summary = _run(arguments, show_progress=not as_json)
    if len(summary.source_errors) == len(sources) and not summary.results:
        _print(summary, as_json)
        _fail("no source could be listed")
    _print(summary, as_json)


def _run(arguments: dict[str, Any], *, show_progress: bool) -> Any:
    # Prefect re-configures the root logger (WARNING) when a run starts: pin our level (-v/-vv).
    level = logging.getLogger().getEffectiveLevel()
    logging.getLogger("clasp_ingest").setLevel(level)
    for name in ("prefect", "httpx"):
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    from clasp_ingest.flows import ingest_source, listen_progress, prefect_runtime

    from clasp_ingest.errors import ClaspIngestError

    try:
        with prefect_runtime(), _progress(show_progress) as callback, listen_progress(callback):
            return ingest_source(**arguments)
    except (ClaspIngestError, ImportError) as exc:
        _fail(str(exc))
    except RuntimeError as exc:  # Prefect could not start its local API server
        _fail(f"the run could not start: {exc}")


class _progress:
    """A rich progress bar on stderr fed by flow progress events (or nothing)."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self._enabled:
            return lambda progress: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.__enter__()
        self._task = self._bar.add_task("listing sources", total=None)
        return self._update

    def _update(self, progress: Any) -> None:
        description = (
            f"{progress.segments} segments, {progress.audio_s:.0f} s audio, {progress.failed} failed"
        )
        self._bar.update(self._task, total=progress.total, completed=progress.done, description=description)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _print(summary: Any, as_json: bool) -> None:
    data = summary.to_dict()
    if as_json:
        typer.echo(json.dumps(data))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="clasp-ingest")
    for column in ("ingested", "unchanged", "failed", "segments", "audio (s)", "wall (s)"):
        table.add_column(column, justify="right")
    table.add_row(
        str(data["media_ok"]),
        str(data["media_skipped"]),
        str(len(data["media_failed"])),
        str(data["segments"]),
        f"{data['audio_s']:.1f}",
        f"{data['wall_s']:.1f}",
    )
    console = Console()
    console.print(table)
    for failure in data["media_failed"]:
        console.print(f"[red]failed[/red] {failure['uri']}: {failure['error']}", markup=True, highlight=False)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
