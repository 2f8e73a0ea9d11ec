"""The ``clasp-ingest`` command line. It owns output: progress bars, tables, ``--json``.

Each capability keeps its commands next to its code in a ``cli_*`` module with a
``register(app)`` function; this module only assembles them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import typer

from clasp_ingest import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="clasp-ingest",
    help="Ingest spoken media into Qdrant with CLASP embeddings and search it by text in ~100 languages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"clasp-ingest {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."
    ),
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _registrars() -> list[Callable[[typer.Typer], None]]:
    # Each capability adds its ``register`` here (imports stay local: ``--help`` is fast).
    registrars: list[Callable[[typer.Typer], None]] = []
    from clasp_ingest.model.cli_models import register as register_models

    registrars.append(register_models)
    from clasp_ingest.media.cli_media import register as register_media

    registrars.append(register_media)
    from clasp_ingest.training.cli_train import register as register_training

    registrars.append(register_training)
    from clasp_ingest.flows.cli_ingest import register as register_ingest

    registrars.append(register_ingest)
    from clasp_ingest.retriever.cli_search import register as register_search
    from clasp_ingest.store.cli_store import register as register_store

    registrars += [register_store, register_search]
    return registrars


for _register in _registrars():
    _register(app)


def main() -> None:
    """Console-script entry point."""
    app()
