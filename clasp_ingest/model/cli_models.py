"""``clasp-ingest models``: list presets and where their files resolve; import official checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from clasp_ingest.store.cli_store import refuse_empty

__all__ = ["register"]

models_app = typer.Typer(help="Model presets and checkpoint conversion.", no_args_is_help=True)


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


def register(app: typer.Typer) -> None:
    """Add the ``models`` sub-app to the main CLI."""
    app.add_typer(models_app, name="models")
