"""``clasp-ingest store ...``: inspect a collection, list and delete its media items, export an
embedded one to a server or folder."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from clasp_ingest.config import MAX_BATCH, Settings
from clasp_ingest.log import one_line

if TYPE_CHECKING:
    from clasp_ingest.store.base import QdrantStore, StoredMedia

__all__ = [
    "MAX_BATCH",
    "collection_name",
    "is_terminal",
    "number_in",
    "open_configured_store",
    "refuse_empty",
    "register",
    "server_url",
    "store_folder",
    "store_location",
]


def open_configured_store(
    qdrant_path: Path | None, qdrant_url: str | None, api_key: str | None, collection: str | None
) -> QdrantStore:
    """The store named by CLI options, else by ``CLASP_*`` settings (:func:`store_location`)."""
    from clasp_ingest.store import open_store
    from clasp_ingest.store.base import CLI_NAMES

    settings = Settings.model_validate({})  # reads CLASP_* like Settings()
    url, path = store_location(qdrant_path, qdrant_url, settings)
    key = api_key or settings.qdrant_api_key
    name = settings.collection if collection is None else collection
    return open_store(url=url, path=path, api_key=key, prefer_grpc=settings.qdrant_grpc,
                      collection=name, names=CLI_NAMES)  # fmt: skip


#: Both store options at once (``ingest``, ``search``, ``store``): bad usage.
QDRANT_PATH_OR_URL = "give --qdrant-path or --qdrant-url, not both"


def store_location(
    qdrant_path: Path | None, qdrant_url: str | None, settings: Settings
) -> tuple[str | None, Path | None]:
    """``(url, path)`` of the store: an option given on the command line beats the environment
    (``--qdrant-path`` opens that folder whatever ``CLASP_QDRANT_URL`` says, and ``--qdrant-url``
    that server whatever ``CLASP_QDRANT_PATH`` says); without one, ``CLASP_QDRANT_URL`` when set,
    else ``CLASP_QDRANT_PATH`` (or its default). Both options at once: bad usage (exit 2, as ``ingest``)."""
    if qdrant_path is not None and qdrant_url is not None:
        raise typer.BadParameter(QDRANT_PATH_OR_URL, param_hint="'--qdrant-url'")
    if qdrant_path is not None or qdrant_url is not None:
        return qdrant_url, qdrant_path
    return (settings.qdrant_url, None) if settings.qdrant_url else (None, settings.qdrant_path)


def refuse_empty(value: str, remedy: str) -> str:
    """An option's ``value``, or bad usage (exit 2) naming ``remedy`` when it is empty or blank."""
    if not value.strip():
        raise typer.BadParameter(f"the value is empty; {remedy}")
    return value


def number_in(low: float, high: float | None = None) -> Callable[[str | float], float]:
    """The parser of a number option from ``low`` to ``high`` (none: no maximum), for
    ``typer.Option(parser=..., min=low, max=high)`` (its ``min``/``max`` only show the range in
    ``--help``). ``nan`` is not a number, and ``inf`` is out of any range: typer's own range
    check said ``nan`` was not "greater than or equal to 0.001", and let ``inf`` through
    where there is no maximum."""
    shown = f"{low:g}<=x<={high:g}" if high is not None else f"x>={low:g}"

    def parse(value: str | float) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isnan(number):
            raise typer.BadParameter(f"{value!r} is not a number")
        if math.isinf(number) and high is None:
            raise typer.BadParameter(f"{value!r} is not a finite number")
        if not low <= number <= (math.inf if high is None else high):
            raise typer.BadParameter(f"{value} is not in the range {shown}")
        return number

    return parse


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` (``sys.stdin``, ``sys.stderr``) is a terminal. A closed standard stream
    (``2>&-``, ``<&-``: Python makes it None) or a detached one is not: the command does its work
    without a progress bar, and refuses what needs a person to answer. ``sys.stderr.isatty()``
    crashed there (``'NoneType' object has no attribute 'isatty'``), and ``ingest ... 2>&-``
    stored nothing."""
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # a closed or detached file object
        return False


def store_folder(value: str) -> Path:
    """``--qdrant-path``: a folder; an empty value is bad usage (it would be the current folder)."""
    return Path(refuse_empty(value, "give the store's folder, or leave the option out (CLASP_QDRANT_PATH)"))


def server_url(value: str) -> str:
    """``--qdrant-url``: an empty value is bad usage (it would fall back to the embedded store)."""
    return refuse_empty(value, "give the server's URL (http://host:6333), or leave the option out")


def _export_target(value: str) -> str:
    """``store export --to``: an empty value is bad usage (it would be the current folder)."""
    return refuse_empty(value, "give a server URL (http://host:6333), a folder or :memory:")


def collection_name(value: str) -> str:
    """``--collection``: an empty value is bad usage (it would fall back to the default)."""
    return refuse_empty(value, "give a collection name, or leave the option out (CLASP_COLLECTION)")


#: The options that name the store, shared by the commands that open it.
StorePath = Annotated[
    Path | None,
    typer.Option(
        parser=store_folder,
        help="Embedded store directory, even where CLASP_QDRANT_URL is set (default: settings).",
    ),
]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        parser=server_url, help="Qdrant server URL instead of the embedded store (beats CLASP_QDRANT_PATH)."
    ),
]
StoreKey = Annotated[str | None, typer.Option(envvar="CLASP_QDRANT_API_KEY", help="Qdrant API key.")]
#: ``--json`` on a command that prints JSON anyway (``store info``, ``delete``, ``export``): a
#: monitoring script that passes it to every command got "No such option" (exit 2).
AlwaysJson = Annotated[
    bool,
    typer.Option(
        "--json", help="Accepted for scripts that pass --json everywhere: the output is JSON anyway."
    ),
]
StoreCollection = Annotated[
    str | None,
    typer.Option("--collection", "-c", parser=collection_name, help="Collection (default: settings)."),
]

store_app = typer.Typer(
    help="Inspect the vector store, list or delete its media items, copy it to a Qdrant server or folder.",
    no_args_is_help=True,
)


@store_app.command("info")
def info(
    qdrant_path: StorePath = None,
    qdrant_url: StoreUrl = None,
    api_key: StoreKey = None,
    collection: StoreCollection = None,
    as_json: AlwaysJson = False,
) -> None:
    """Print the collection's model, dimension and counts as JSON.

    "points": every point (spans being written and markers of media without speech too); "spans": the complete spans searches can return. For the embedded store also "search" ("exact" or "hnsw") and "index": the collection's own HNSW and quantization settings, and "graph": the vector its HNSW graph is built on ("clasp_graph": the model's query-aware space; "clasp": its plain vectors). A collection that does not exist is an error (exit 1) naming the store and the collections an embedded store holds, as for store list: a mistyped --collection or --qdrant-path does not pass for an empty store.
    """  # noqa: E501 - one paragraph of --help
    from clasp_ingest.store.base import STATE_COMPLETE
    from clasp_ingest.store.edge import EdgeStore
    from clasp_ingest.store.filters import meta_equals

    with open_configured_store(qdrant_path, qdrant_url, api_key, collection) as store:
        identity = store.require_collection()
        out: dict[str, Any] = {
            "backend": store.backend,
            "collection": store.collection,
            "model": identity.model_id,
            "dim": identity.dim,
            "points": store.count(),
            "spans": store.count(meta_equals("state", STATE_COMPLETE)),
        }
        if isinstance(store, EdgeStore):
            out["search"] = "hnsw" if store.indexed else "exact"
            out["index"] = store.index_config()
    typer.echo(json.dumps(out))


@store_app.command("list")
def list_media(
    qdrant_path: StorePath = None,
    qdrant_url: StoreUrl = None,
    api_key: StoreKey = None,
    collection: StoreCollection = None,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of lines."),
) -> None:
    """List the stored media items: searchable spans, state, when ingested (UTC), source.

    State "complete": searchable; "empty": no speech was found in it; "writing": being written, or left by a run that stopped (the next ingest of it rewrites it).
    """  # noqa: E501 - paragraphs of --help
    from dataclasses import asdict

    with open_configured_store(qdrant_path, qdrant_url, api_key, collection) as store:
        store.require_collection()
        items = store.media()
    if as_json:
        typer.echo(json.dumps([asdict(item) for item in items]))  # ASCII: valid JSON on any terminal
        return
    for item in items:
        when = item.ingested_at[:19].replace("T", " ") + "Z"  # UTC
        typer.echo(f"{item.spans:>6}  {item.state:<8}  {when}  {one_line(item.source)}")
    typer.echo(_list_summary(items, store.collection))


def _list_summary(items: list[StoredMedia], collection: str) -> str:
    """``N media items, S searchable spans in 'collection'``; the versions too where an item has
    several (a new one being written beside the stored one, or left by a run that stopped), and
    the writes where one version has several (``--force`` rewriting it: it said "2 versions")."""
    media = len({item.media_id for item in items})
    versions = len({(item.media_id, item.version) for item in items})
    rows = [_count(versions, "version")] if versions != media else []
    rows += [_count(len(items), "write")] if len(items) != versions else []
    shown = f" ({', '.join(rows)})" if rows else ""
    spans = sum(item.spans for item in items)
    return f"{_count(media, 'media item')}{shown}, {_count(spans, 'searchable span')} in {collection!r}"


def _count(number: int, noun: str) -> str:
    """``1 media item``, ``2 media items``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _targets_named(values: list[str]) -> list[str]:
    """An empty target (an unset ``$FILE``) is bad usage: as a path it is the current folder."""
    if any(not value.strip() for value in values):
        raise typer.BadParameter(
            "a target is empty (an unset variable?); give a media id, a source URI, or a file or "
            "folder ('.' for the current folder)"
        )
    return values


@store_app.command("delete")
def delete_media(
    targets: list[str] = typer.Argument(
        ...,
        help="What to delete: a media id, a source URI as 'store list' prints it, or a local "
        "file or folder (every item stored from under it).",
        show_default=False,
        callback=_targets_named,
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
    missing_ok: bool = typer.Option(
        False,
        "--missing-ok",
        help="A target that matches no stored item is a warning, not an error: the others are "
        "deleted (a clean-up script that runs again).",
    ),
    qdrant_path: StorePath = None,
    qdrant_url: StoreUrl = None,
    api_key: StoreKey = None,
    collection: StoreCollection = None,
    as_json: AlwaysJson = False,
) -> None:
    """Delete media items (every version, every span) from the collection; prints JSON.

    Nothing is deleted when a target matches no stored item (with --missing-ok, the others are). A later ingest of a deleted file stores it again.
    """  # noqa: E501 - a paragraph of --help
    import sys

    from clasp_ingest.connectors.urls import redact_url

    with open_configured_store(qdrant_path, qdrant_url, api_key, collection) as store:
        store.require_collection()
        items = store.media()
        chosen: dict[str, str] = {}  # media id -> source
        for target in targets:
            matched = _matched(items, target)
            if not matched:
                said = (  # a signed URL's credentials are never shown (README)
                    f"{redact_url(target)!r} matches no media item stored in {store.collection!r}"
                )
                if missing_ok:
                    typer.echo(f"warning: {one_line(said)}; nothing to delete for it", err=True)
                    continue
                typer.echo(f"error: {said}; 'clasp-ingest store list' shows them", err=True)
                raise typer.Exit(1)
            chosen.update(matched)
        if not yes and chosen:
            if not is_terminal(sys.stdin):  # no one to ask (a script, a closed stdin)
                sources = sorted(set(chosen.values()))  # which, in the one line a log keeps
                shown = ", ".join(one_line(redact_url(s)) for s in sources[:3])
                shown += ", ..." if len(sources) > 3 else ""
                typer.echo(
                    f"error: would delete {_count(len(chosen), 'media item')} ({shown}); add --yes to "
                    f"delete {'it' if len(chosen) == 1 else 'them'}",
                    err=True,
                )
                raise typer.Exit(1)
            for source in sorted(set(chosen.values())):
                typer.echo(one_line(source))
            these = "this media item" if len(chosen) == 1 else f"these {len(chosen)} media items"
            typer.confirm(f"Delete {these}?", abort=True)
        deleted = [
            {"media_id": media_id, "source": source, "points": store.delete_media(media_id)}
            for media_id, source in sorted(chosen.items(), key=lambda kv: kv[1])
        ]
    typer.echo(json.dumps({"deleted": deleted, "points": sum(d["points"] for d in deleted)}))


def _matched(items: list[StoredMedia], target: str) -> dict[str, str]:
    """The items ``target`` names (media id -> source): those it names exactly (a media id, a
    source as stored) if any, else every item it names in another spelling. An item stored by
    an older release under a raw URL (``sp ace.opus``) or a relative path has a second copy
    under its current form (``sp%20ace.opus``, ``file:///...``); README's remedy, ``store delete
    OLD_URI``, deleted both."""
    exact = {item.media_id: item.source for item in items if target in (item.media_id, item.source)}
    return exact or {item.media_id: item.source for item in items if _matches(item, target)}


def _matches(item: StoredMedia, target: str) -> bool:
    """Whether ``target`` (media id, source URI, or a local file or folder) names ``item``."""
    from clasp_ingest.connectors.urls import encoded_url, redact_url

    if target in (item.media_id, item.source) or redact_url(encoded_url(target)) == item.source:
        return True
    if target.lower().startswith(("http://", "https://", "file://")) and "#" in target:
        return _matches(item, target.partition("#")[0])  # a span's link, as ``search`` prints it
    from clasp_ingest.connectors.base import is_within
    from clasp_ingest.connectors.local import local_uri

    return "://" not in target and is_within(item.source, local_uri(target))


@store_app.command("export")
def export(
    ctx: typer.Context,
    to: str = typer.Option(
        ...,
        "--to",
        parser=_export_target,
        help="Target: a Qdrant server URL (http://host:6333), a local qdrant-client folder "
        "(new, empty, or written before by qdrant-client), or :memory:.",
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="CLASP_EXPORT_API_KEY", help="API key of the target server."
    ),
    grpc: bool = typer.Option(False, "--grpc", help="Talk gRPC to the target server."),
    qdrant_path: Path | None = typer.Option(
        None, parser=store_folder, help="Embedded store to read (default: settings)."
    ),
    collection: str | None = typer.Option(
        None, "--collection", "-c", parser=collection_name, help="Collection to copy (default: settings)."
    ),
    to_collection: str | None = typer.Option(
        None,
        parser=lambda value: refuse_empty(value, "give a name, or leave the option out for the source's"),
        help="Name in the target (default: the same).",
    ),
    batch_size: int = typer.Option(512, min=1, max=MAX_BATCH, help="Points per request."),
    as_json: AlwaysJson = False,
) -> None:
    """Copy an embedded collection (ids, vectors, payloads, model identity) to a server or folder; prints JSON.

    Running it again updates the copy without duplicates: it mirrors the source's media items, so an item deleted from the source, or the old version of a changed one, is removed from the target too ("removed": points removed). Points still being written in the source are not copied.
    """  # noqa: E501 - paragraphs of --help
    from dataclasses import asdict, replace

    from clasp_ingest.store import export_to, open_store
    from clasp_ingest.store.base import CLI_NAMES

    key_from = ctx.get_parameter_source("api_key")  # typer's click or click's: compared by name
    from_env = key_from is not None and key_from.name == "ENVIRONMENT"
    if from_env and "://" not in to:
        api_key = None  # CLASP_EXPORT_API_KEY is for servers: a folder target takes none, unasked

    settings = Settings.model_validate({})  # reads CLASP_* like Settings()
    source_path = qdrant_path or settings.qdrant_path
    name = settings.collection if collection is None else collection
    source_names = replace(CLI_NAMES, store="--collection / --qdrant-path")  # its errors name its own options
    with (
        open_store(path=source_path, collection=name, names=source_names) as source,
        _points_bar("export") as progress,
    ):
        report = export_to(
            source,
            to,
            collection=to_collection,
            api_key=api_key,
            prefer_grpc=grpc,
            batch_size=batch_size,
            on_progress=progress,
        )
    typer.echo(json.dumps(asdict(report)))


@contextmanager
def _points_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on stderr, when it is a terminal, for a copy of points:
    ``update(done, total)``."""
    import sys

    if not is_terminal(sys.stderr):
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("points"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def register(app: typer.Typer) -> None:
    """Add the ``store`` command group."""
    app.add_typer(store_app, name="store")
