"""``clasp-ingest models``: list presets and where their files resolve; import official checkpoints;
list and prune the model cache."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from clasp_ingest.store.cli_store import refuse_empty

if TYPE_CHECKING:
    from clasp_ingest.model.cache import CacheEntry

__all__ = ["register"]

models_app = typer.Typer(
    help="Model presets, checkpoint conversion and the model cache.", no_args_is_help=True
)


def _folder_named(value: str) -> Path:
    """``--out`` / ``--model-dir``: an empty value is bad usage (it would be the current folder)."""
    return Path(refuse_empty(value, "give a folder, or leave the option out"))


def _where(model_id: str, model_dir: Path | None, backend: str) -> str:
    if backend in ("tiny-hubert", "tiny-bert") or model_id in ("tiny-random", ""):
        return "built in memory"
    if ":" in backend or backend not in ("hf", "sentence-transformers"):
        return model_id
    from clasp_ingest.model.hub import describe_source

    return describe_source(model_id, model_dir)


def _rows(model_dir: Path | None) -> list[dict[str, object]]:
    from clasp_ingest.model.hub import describe_source
    from clasp_ingest.model.presets import list_presets

    rows: list[dict[str, object]] = []
    for name, cfg in sorted(list_presets().items()):
        weights = describe_source(cfg.weights, model_dir) if cfg.weights else "seeded random head"
        rows.append(
            {
                "name": name,
                "dim": cfg.vector_dim,
                "fusion": cfg.fusion.kind,
                "speech": f"{cfg.speech.backend}:{cfg.speech.source}",
                "spectrogram": f"{cfg.spectrogram.backend}:{cfg.spectrogram.source}",
                "text": f"{cfg.text.backend}:{cfg.text.source}",
                "weights": cfg.weights or "",
                "weights_at": weights,
                "speech_at": _where(cfg.speech.source, model_dir, cfg.speech.backend),
                "text_at": _where(cfg.text.source, model_dir, cfg.text.backend),
            }
        )
    return rows


@models_app.command("list")
def list_command(
    model_dir: Path | None = typer.Option(
        None, "--model-dir", envvar="CLASP_MODEL_DIR", parser=_folder_named, help="Local model files."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the presets and where their files resolve (local dir, HF cache, or the hub)."""
    rows = _rows(model_dir)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="clasp-ingest model presets")
    table.add_column("name", no_wrap=True)
    table.add_column("dim")
    table.add_column("fusion")
    table.add_column("speech / spectrogram / text", overflow="fold")
    table.add_column("files resolve to (head / speech / text)", overflow="fold")
    for row in rows:
        parts = "\n".join(str(row[c]) for c in ("speech", "spectrogram", "text"))
        where = "\n".join(str(row[c]) for c in ("weights_at", "speech_at", "text_at"))
        table.add_row(str(row["name"]), str(row["dim"]), str(row["fusion"]), parts, where)
    Console().print(table)


@models_app.command("import")
def import_command(
    path: Path = typer.Argument(..., help="A paper checkpoint (.pt)."),
    out: Path = typer.Option(
        ...,
        "--out",
        parser=_folder_named,
        help="Directory to write fusion.safetensors + config.json (not one holding a model).",
    ),
    preset: str | None = typer.Option(None, help="Preset whose backbones the head belongs to."),
    model_id: str | None = typer.Option(None, "--model-id", help="Name stored with the vectors."),
) -> None:
    """Convert an official pickled checkpoint to safetensors without executing its code."""
    from clasp_ingest.errors import ClaspIngestError
    from clasp_ingest.model.checkpoint import import_official

    try:
        written = import_official(path, out, preset=preset, model_id=model_id)
    except ClaspIngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {written}")


def _ago(entry: CacheEntry, now: float) -> str:
    days = entry.unused_days(now)
    when = time.strftime("%Y-%m-%d", time.localtime(entry.used))
    if entry.unfinished:
        return f"left by a run cut short {when}"
    return f"{when} ({'today' if days < 1 else f'{int(days)} d ago'})"


def _folder_or_none(path: Path) -> bool:
    """Whether ``path`` is a folder or is not there (a parent that is a file is not a folder)."""
    try:
        path.stat()
    except FileNotFoundError:
        return True
    except OSError:  # NotADirectoryError: XDG_CACHE_HOME names a file
        return False
    return path.is_dir()


def _entry_row(entry: CacheEntry, cache: Path, now: float, unused_days: float) -> dict[str, object]:
    return {
        "path": str(entry.path.relative_to(cache)),
        "kind": entry.kind,
        "bytes": entry.size,
        "used": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(entry.used)),
        "stale": entry.stale(unused_days, now),
    }


@models_app.command("cache")
def cache_command(
    prune: bool = typer.Option(
        False,
        "--prune",
        help="Remove the copies unused for more than --unused-days, and what runs cut short left.",
    ),
    unused_days: int = typer.Option(
        30,
        "--unused-days",
        min=0,
        max=36_500,
        metavar="DAYS",
        help="Whole days unused before --prune removes a copy (uses are recorded hourly); 0: every copy.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the model cache's copies (size, last used) or remove the ones no run uses (--prune).

    The cache is $XDG_CACHE_HOME/clasp-ingest (~/.cache/clasp-ingest). Each release with new weights and each new virtualenv add copies there (about 270 MB a clasp-mini release); a run marks the copies it loads as used (once an hour). A removed copy is written again by the next run that needs it, in seconds. Names clasp-ingest does not write, symbolic links, the feed cache (feeds/) and the training features (features/) are left alone.
    """  # noqa: E501 - paragraphs of --help
    from clasp_ingest.model.assets import default_cache_dir
    from clasp_ingest.model.cache import cache_entries
    from clasp_ingest.model.cache import prune as prune_cache

    cache, now = default_cache_dir(), time.time()
    if not _folder_or_none(cache):
        typer.echo(f"error: the model cache {str(cache)!r} is not a folder; check XDG_CACHE_HOME", err=True)
        raise typer.Exit(1)
    if not prune:
        _show_cache(cache, cache_entries(cache), now, unused_days, as_json)
        return
    done = prune_cache(cache, unused_days, now=now)
    if as_json:
        typer.echo(json.dumps({
            "cache": str(cache),
            "removed": [_entry_row(e, cache, now, unused_days) for e in done.removed],
            "failed": [{**_entry_row(e, cache, now, unused_days), "error": why} for e, why in done.failed],
            "freed_bytes": done.freed,
        }, indent=2))  # fmt: skip
    else:
        for entry in done.removed:
            size = f"{entry.size / 1e6:.1f} MB"
            typer.echo(f"removed {entry.path} ({entry.kind}, {size}, last used {_ago(entry, now)})")
        typer.echo(
            f"{len(done.removed)} removed, {done.freed / 1e6:.1f} MB freed; {done.kept} kept ({cache})"
        )
    for entry, why in done.failed:
        typer.echo(
            f"error: could not remove {entry.path}: {why}; remove it by hand or as its owner", err=True
        )
    if done.failed:
        raise typer.Exit(1)


def _show_cache(
    cache: Path, entries: list[CacheEntry], now: float, unused_days: float, as_json: bool
) -> None:
    if as_json:
        rows = [_entry_row(e, cache, now, unused_days) for e in entries]
        typer.echo(json.dumps({"cache": str(cache), "entries": rows}, indent=2))
        return
    if not entries:
        typer.echo(f"the model cache {cache} holds no copies")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"model cache: {cache}")
    table.add_column("MB", justify="right", no_wrap=True)
    table.add_column("last used", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("path", overflow="fold")
    for entry in entries:
        mark = " *" if entry.stale(unused_days, now) else ""
        row = (
            f"{entry.size / 1e6:.1f}",
            _ago(entry, now) + mark,
            entry.kind,
            str(entry.path.relative_to(cache)),
        )
        table.add_row(*row)
    Console().print(table)
    stale = [e for e in entries if e.stale(unused_days, now)]
    total = sum(e.size for e in entries) / 1e6
    typer.echo(f"{len(entries)} copies, {total:.1f} MB; ", nl=False)
    if stale:
        freed = sum(e.size for e in stale) / 1e6
        typer.echo(
            f"* {len(stale)} ({freed:.1f} MB) unused for over {unused_days:g} days or left by runs cut "
            f"short: clasp-ingest models cache --prune --unused-days {unused_days:g} removes them"
        )
    else:
        typer.echo(f"none unused for over {unused_days:g} days")


def register(app: typer.Typer) -> None:
    """Add the ``models`` sub-app to the main CLI."""
    app.add_typer(models_app, name="models")
