"""``clasp-ingest ingest SOURCE...``: the ingestion pipeline in this process, with a progress bar.

Ad-hoc runs call :func:`clasp_ingest.pipeline.ingest_source` directly: no Prefect server.
The model's config is read at once (to check the collection and skip unchanged items); its
weights load in the background only when there is something to ingest, while the first
item decodes. ``--flow`` runs the same work as the Prefect flow ``clasp-ingest`` instead
(a temporary local Prefect API, or the server of ``PREFECT_API_URL``), as deployments do.

Exit status: 0 when every item was ingested or unchanged (damaged items kept as far as
they decode are listed as warnings); 3 when the run completed but some items or sources
failed (they are listed); 1 when the run could not run (bad arguments,
unknown model, a collection of another model, an unreachable or locked store).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from clasp_ingest.config import MAX_DOWNLOAD_DEADLINE_S, Settings
from clasp_ingest.exitcodes import EXIT_ERROR, EXIT_PARTIAL
from clasp_ingest.log import one_line
from clasp_ingest.store.cli_store import (
    MAX_BATCH,
    QDRANT_PATH_OR_URL,
    collection_name,
    is_terminal,
    number_in,
    refuse_empty,
    server_url,
    store_folder,
    store_location,
)

if TYPE_CHECKING:
    from clasp_ingest.connectors.base import Connector, OpenOptions
    from clasp_ingest.pipeline import IngestSummary, PipelineOptions, Progress
    from clasp_ingest.types import MediaRef

__all__ = ["download_options", "register"]

#: rich settings for one line per failed item or warning: no wrapping, no ``:emoji:`` codes.
_ONE_LINE: dict[str, Any] = {"markup": True, "highlight": False, "emoji": False, "soft_wrap": True}


def _device_option(value: str) -> str:
    """``--device``: an empty or unknown one is bad usage (exit 2), as for ``train`` and ``eval``."""
    from clasp_ingest.config import is_device

    refuse_empty(value, "give 'auto', 'cpu', 'cuda' or 'cuda:N', or leave it out")
    if not is_device(value):
        raise typer.BadParameter(f"{value!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return value


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to the CLI."""
    app.command("ingest")(ingest_command)


#: Bucket URL schemes: a SOURCE of one needs a bucket (``s3://`` alone said "ValueError:
#: Cannot traverse all of S3").
_BUCKET_SCHEMES = ("s3", "s3a", "gs", "gcs")


def _sources_named(values: list[str]) -> list[str]:
    """An empty SOURCE (an unset ``$INBOX``) is bad usage: it would be the current folder; so is
    a bucket URL without a bucket (``s3://$BUCKET`` with the variable unset)."""
    if any(not value for value in values):
        raise typer.BadParameter(
            "a SOURCE is empty (an unset variable?); give a file, folder, glob or URL ('.' for "
            "the current folder)"
        )
    for value in values:
        scheme, sep, rest = value.partition("://")
        if sep and scheme.lower() == "file" and not rest:  # file://$DIR with DIR unset
            raise typer.BadParameter(
                f"{value!r} names no path (an unset variable?); give file:///PATH, or the path itself"
            )
        # s3:///talks/ (s3://$BUCKET/talks/ with BUCKET unset) is read as the bucket "talks"
        if sep and scheme.lower() in _BUCKET_SCHEMES and (not rest or rest.startswith("/")):
            raise typer.BadParameter(
                f"{value!r} names no bucket (an unset variable?); give {scheme}://BUCKET or "
                f"{scheme}://BUCKET/PREFIX"
            )
    return values


def ingest_command(
    sources: list[str] = typer.Argument(
        ...,
        help="Paths, globs, http(s)/s3/gs URLs or RSS/Atom feed URLs.",
        show_default=False,
        callback=_sources_named,
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        parser=lambda value: refuse_empty(value, "give a model preset or folder, or leave the option out"),
        help="Model preset or directory (CLASP_MODEL, default clasp-mini).",
    ),
    collection: str | None = typer.Option(
        None,
        "--collection",
        "-c",
        parser=collection_name,
        help="Qdrant collection (CLASP_COLLECTION, default clasp_segments).",
    ),
    qdrant_path: Path | None = typer.Option(
        None, "--qdrant-path", parser=store_folder, help="Embedded Qdrant directory (CLASP_QDRANT_PATH)."
    ),
    qdrant_url: str | None = typer.Option(
        None,
        "--qdrant-url",
        parser=server_url,
        help="Qdrant server URL (CLASP_QDRANT_URL).",
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="CLASP_QDRANT_API_KEY", help="Qdrant API key (also for --flow)."
    ),
    feed: bool | None = typer.Option(
        None,
        "--feed/--no-feed",
        help="Treat every SOURCE as an RSS/Atom feed, or as no feed (else detected from the URL "
        "and its Content-Type). An http(s) feed is sent again only where it changed (its last "
        "document is kept in CLASP_FEED_CACHE_DIR, default ~/.cache/clasp-ingest/feeds).",
        show_default=False,
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        parser=_device_option,
        help="'auto', 'cpu', 'cuda' or 'cuda:N' (CLASP_DEVICE).",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        max=MAX_BATCH,
        help="Segments per embedding batch (CLASP_EMBED_BATCH_SIZE, default 32).",
    ),
    max_bytes: int | None = typer.Option(
        None, "--max-bytes", min=1, help="Largest download accepted, in bytes (default 8 GiB)."
    ),
    download_deadline: float | None = typer.Option(
        None,
        "--download-deadline",
        parser=number_in(0.001, MAX_DOWNLOAD_DEADLINE_S),
        min=0.001,
        max=MAX_DOWNLOAD_DEADLINE_S,
        metavar="SECONDS",
        help="Longest time one download may take, at most a week (CLASP_DOWNLOAD_DEADLINE_S, default 3600).",
    ),
    min_download_rate: float | None = typer.Option(
        None,
        "--min-download-rate",
        parser=number_in(0),
        min=0,
        metavar="BYTES_PER_S",
        help="Slowest average download rate over 30 s (CLASP_DOWNLOAD_RATE_WINDOW_S) before the item "
        "fails; 0: no minimum [CLASP_MIN_DOWNLOAD_RATE, default 1024].",
    ),
    allow_private_hosts: bool = typer.Option(
        False,
        "--allow-private-hosts",
        help="Let feeds, index pages and redirects lead to loopback/private/link-local hosts "
        "(the URLs you give are always allowed) [CLASP_ALLOW_PRIVATE_HOSTS].",
    ),
    force: bool = typer.Option(False, "--force", help="Re-ingest items already stored at their version."),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="Also delete the stored items that a folder or bucket-prefix SOURCE no longer lists "
        "(files deleted or moved away; a local file still there stays). Globs, feeds and index "
        "pages are not pruned; a source that cannot be listed or lists nothing (an unmounted share) "
        "is not touched.",
    ),
    exclude: list[str] | None = typer.Option(
        None,
        "--exclude",
        metavar="PATTERN",
        parser=lambda value: refuse_empty(value, "give a pattern such as '*.part', or leave the option out"),
        help="Leave out the items matching PATTERN (again for more): not ingested, not pruned. "
        "Shell-style, case-sensitive; a PATTERN without '/' matches the file name ('*.part', "
        "'draft-*'), one with '/' the path as stored (links resolved) or URL path, '*' crossing '/' "
        "('*/rushes/*'); 'old/*' is below a folder 'old' anywhere, 'old/' all below one.",
        show_default=False,
    ),
    recreate: bool = typer.Option(
        False,
        "--recreate",
        help="Delete the collection first (all its points), e.g. when it was made by another model.",
    ),
    transcribe: bool = typer.Option(
        False,
        "--transcribe",
        help="Also store the words: each file is transcribed once, whole (Whisper), and every span "
        "gets its words (metadata.transcript) and 'text' + sparse 'words' vectors for search "
        "--hybrid. About 3-14x the ingest time on 2 CPU cores (more for many short files). "
        "Needs a collection made with --transcribe "
        "(a new one is; an existing one without word vectors is refused: use --collection NAME or "
        "--recreate).",
    ),
    whisper_model: str = typer.Option(
        "whisper-base",
        "--whisper-model",
        parser=lambda value: refuse_empty(
            value, "give 'whisper-base', a CTranslate2 folder or a faster-whisper model name, or leave it out"
        ),
        help="Whisper model for --transcribe: 'whisper-base' (bundled), a CTranslate2 folder or a "
        "faster-whisper model name.",
    ),
    flow: bool = typer.Option(
        False,
        "--flow",
        help="Run as the Prefect flow 'clasp-ingest' (as deployments do) instead of in-process.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Ingest new or changed media from SOURCE(s) into Qdrant (skips unchanged items).

    A bad item fails alone (exit 3); a damaged one (a cut download) is ingested as far as it decodes and listed as a warning (media_warnings in --json).
    """  # noqa: E501 - one paragraph of --help
    if qdrant_path is not None and qdrant_url is not None:
        raise typer.BadParameter(QDRANT_PATH_OR_URL, param_hint="'--qdrant-url'")
    settings = Settings.model_validate({})  # reads CLASP_* like Settings()
    settings.segmenter_options()  # CLASP_*_S values that do not fit together fail before anything
    run = _run_flow if flow else _run_pipeline
    arguments: dict[str, Any] = {
        "sources": list(sources),
        "model": model or settings.model,
        "collection": settings.collection if collection is None else collection,
        "qdrant_url": qdrant_url,
        "qdrant_path": qdrant_path,
        "feed": feed,
        "device": device or settings.device,
        "embed_batch_size": batch_size or settings.embed_batch_size,
        "max_bytes": max_bytes,
        "download_deadline_s": download_deadline,
        "min_download_rate": min_download_rate,
        "allow_private_hosts": True if allow_private_hosts else None,
        "force": force,
        "prune": prune,
        "exclude": list(exclude or ()),
        "recreate": recreate,
        "transcribe": transcribe,
        "whisper_model": whisper_model,
    }
    from clasp_ingest.model.inference import check_runtime

    check_runtime(arguments["device"], settings.engine)  # before anything (--recreate drops first)
    quiet = not as_json and logging.getLogger().getEffectiveLevel() >= logging.WARNING
    with _api_key_for_the_run(api_key), _downloads_cut_on_signals(), _failures_said_once(quiet):
        # the bar is for a terminal: a log file or pipe (a scheduled job) gets no blank lines from it
        summary = run(settings, arguments, show_progress=not as_json and is_terminal(sys.stderr))
    _print(summary, arguments, as_json)
    if summary.no_source_listed(len(sources)):
        _fail("no source could be listed (see above)")
    if summary.media_failed:
        raise typer.Exit(EXIT_PARTIAL)


_API_KEY_VARIABLE = "CLASP_QDRANT_API_KEY"


@contextmanager
def _api_key_for_the_run(api_key: str | None) -> Iterator[None]:
    """``--api-key`` reaches every store the run opens (in-process, ``--flow``'s tasks and its
    ``--recreate``) as ``CLASP_QDRANT_API_KEY``, never as a flow parameter, which Prefect stores
    and shows; the variable is put back afterwards (``main`` may run in a process that goes on)."""
    if api_key is None:
        yield
        return
    saved = os.environ.get(_API_KEY_VARIABLE)
    os.environ[_API_KEY_VARIABLE] = api_key
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_API_KEY_VARIABLE, None)
        else:
            os.environ[_API_KEY_VARIABLE] = saved


@contextmanager
def _downloads_cut_on_signals() -> Iterator[None]:
    """Ctrl-C, and SIGTERM where the CLI turns it into an exception (``clasp_ingest.cli``), also
    cut the downloads of worker threads (the flow's tasks), so the run stops at once."""
    import signal

    from clasp_ingest.connectors.http import abort_downloads

    def cut_then(previous: Any) -> Callable[[int, FrameType | None], None]:
        def stop(signum: int, frame: FrameType | None) -> None:
            abort_downloads()
            if callable(previous):
                previous(signum, frame)  # Python's SIGINT handler, the CLI's SIGTERM one: they raise
            raise KeyboardInterrupt

        return stop

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGINT is handled even where it was ignored from the start (a background job's, a CI
    # runner's): the signal sent to the run is what stops it
    handled = [signal.SIGINT] + ([signal.SIGTERM] if callable(signal.getsignal(signal.SIGTERM)) else [])
    restore = {signum: signal.signal(signum, cut_then(signal.getsignal(signum))) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in restore.items():
            signal.signal(signum, handler)


def _run_pipeline(settings: Settings, args: dict[str, Any], *, show_progress: bool) -> IngestSummary:
    from clasp_ingest.connectors import connector_for
    from clasp_ingest.model.deferred import DeferredModel
    from clasp_ingest.pipeline import IngestSummary, PipelineOptions, ingest_source
    from clasp_ingest.store.cli_store import open_configured_store
    from clasp_ingest.transcribe import TranscriberOptions

    model = DeferredModel(
        args["model"],
        device=args["device"],
        dtype=settings.dtype,
        model_dir=settings.model_dir,
        batch_size=args["embed_batch_size"],
        threads=settings.torch_threads,
        engine=settings.engine,
    )
    open_options = download_options(settings, args)
    connectors = [connector_for(s, feed=args["feed"], open_options=open_options) for s in args["sources"]]
    options = PipelineOptions(
        embed_batch_size=args["embed_batch_size"],
        segmenter=settings.segmenter_options(),
        decode=settings.decode_options(),
        force=args["force"],
        prune=args["prune"],
        exclude=tuple(args["exclude"]),
        transcribe=TranscriberOptions(model=args["whisper_model"], device=args["device"])
        if args["transcribe"]
        else None,
    )
    if args["recreate"]:
        _check_transcriber(args)  # before the drop
    started = time.perf_counter()
    with _progress(show_progress) as callback:
        connectors, unlisted = _listed_before_a_new_store(connectors, settings, args, options)
        if not connectors:  # nothing can be listed: no store folder is made for nothing
            return IngestSummary((), tuple(unlisted), time.perf_counter() - started)
        store_named = (args["qdrant_path"], args["qdrant_url"], None, args["collection"])
        with open_configured_store(*store_named) as store:
            summary = ingest_source(
                connectors,
                model,
                store,
                options,
                on_progress=callback,
                model_source=model.source,
                recreate=args["recreate"],
            )
    model.settle()  # not on Ctrl-C: that leaves at once
    return IngestSummary(
        summary.results,
        (*unlisted, *summary.source_errors),
        time.perf_counter() - started,
        summary.pruned,
        summary.source_warnings,
        summary.excluded,
    )


def _listed_before_a_new_store(
    connectors: list[Connector], settings: Settings, args: dict[str, Any], options: PipelineOptions
) -> tuple[list[Connector], list[tuple[str, str]]]:
    """Where the run would make a new embedded store (its folder does not exist yet), the
    sources are listed first: ``(the sources that listed, with their items, and (source, error)
    for each that could not)``; the pipeline takes the items listed (no second listing). A run
    that lists nothing (a mistyped path) then makes no folder and lock file. An existing store
    or a server is opened first, as before: its collection is checked against the model before
    a long listing."""
    from clasp_ingest.pipeline import list_sources

    url, path = store_location(args["qdrant_path"], args["qdrant_url"], settings)
    if url is not None or path is None or path.expanduser().exists():  # open_store expands a quoted ~
        return connectors, []
    listings, errors = list_sources(connectors, retries=options.retries, retry_delay_s=options.retry_delay_s)
    return [_Listed(connector, refs) for connector, refs in listings], errors


class _Listed:
    """A source listed already: its items again, opened by the source's connector."""

    def __init__(self, connector: Connector, refs: list[MediaRef]) -> None:
        self._connector, self._refs = connector, refs

    @property
    def source(self) -> str:
        return self._connector.source

    def discover(self) -> Iterator[MediaRef]:
        return iter(self._refs)

    def open(self, ref: MediaRef) -> AbstractContextManager[str]:
        return self._connector.open(ref)

    def prune_scope(self) -> str | None:
        """The source's own (``pipeline.prune_unlisted``); None where it has none (a glob, a feed)."""
        scope = getattr(self._connector, "prune_scope", None)
        return scope() if scope is not None else None


def _check_transcriber(args: dict[str, Any]) -> None:
    """With ``--transcribe``, load the Whisper model now (it is shared with the run's items): a
    bad ``--whisper-model`` then fails before ``--recreate`` drops the collection."""
    if args["transcribe"]:
        from clasp_ingest.transcribe import TranscriberOptions
        from clasp_ingest.words import shared_transcriber

        shared_transcriber(TranscriberOptions(model=args["whisper_model"], device=args["device"])).load()


def download_options(settings: Settings, args: dict[str, Any]) -> OpenOptions:
    """The download limits of a run: the arguments given, else the settings."""
    return settings.open_options(
        max_bytes=args["max_bytes"],
        deadline_s=args["download_deadline_s"],
        min_rate_bytes_s=args["min_download_rate"],
        allow_private_hosts=args["allow_private_hosts"],
    )


def _run_flow(settings: Settings, args: dict[str, Any], *, show_progress: bool) -> IngestSummary:
    # Prefect's client usage data (its notice and events) is off unless the user chose otherwise;
    # set before Prefect is imported, which records its first import
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from clasp_ingest.connectors.urls import SecretUrl, redact_url
    from clasp_ingest.flows import ingest_source, listen_progress, prefect_runtime

    if args["recreate"]:
        unlisted = _drop_for_flow(settings, args)
        if unlisted is not None:
            return unlisted
    flow_args = {key: value for key, value in args.items() if key != "recreate"}
    flow_args["qdrant_path"] = str(args["qdrant_path"]) if args["qdrant_path"] is not None else None
    # Signed URLs travel as secrets: Prefect stores (and shows) them redacted.
    flow_args["sources"] = [SecretUrl(s) if redact_url(s) != s else s for s in args["sources"]]
    try:
        with (
            _flow_log_levels(),
            prefect_runtime(),
            _progress(show_progress) as callback,
            listen_progress(callback),
        ):
            summary: IngestSummary = ingest_source(**flow_args)
    except RuntimeError as exc:  # Prefect could not start its local API server
        _fail(f"the Prefect flow could not start: {exc}; run without --flow to ingest in-process")
    return summary


@contextmanager
def _flow_log_levels() -> Iterator[None]:
    """Prefect re-configures the root logger (WARNING) when a run starts: pin our level (-v/-vv)
    for the run, and put the loggers back as they were after it (``main`` may run in a process
    that goes on, e.g. a notebook's or a test's)."""
    level = logging.getLogger().getEffectiveLevel()
    pinned = {
        "clasp_ingest": level,
        "prefect": max(logging.WARNING, level),
        "httpx": max(logging.WARNING, level),
    }
    saved = {name: logging.getLogger(name).level for name in pinned}
    quiet = (
        [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
        if level > logging.DEBUG
        else []
    )
    for name, pinned_level in pinned.items():
        logging.getLogger(name).setLevel(pinned_level)
    for logger in quiet:  # the one "error:" line says it (the run's state says Failed/Crashed)
        logger.addFilter(_not_said_again)
    try:
        yield
    finally:
        for logger in quiet:
            logger.removeFilter(_not_said_again)
        for name, saved_level in saved.items():
            logging.getLogger(name).setLevel(saved_level)


def _drop_for_flow(settings: Settings, args: dict[str, Any]) -> IngestSummary | None:
    """``--flow --recreate``: drop the collection for the flow, once the model is known and a
    source lists a media item; else nothing is dropped, and the run ends with the listing's
    summary (its errors), as in-process runs do."""
    import time

    from clasp_ingest.connectors import connector_for
    from clasp_ingest.model.query import resolve_model_config
    from clasp_ingest.pipeline import (
        IngestSummary,
        PipelineOptions,
        list_sources,
        listing_failures,
        lists_media,
    )
    from clasp_ingest.store.cli_store import open_configured_store

    started = time.perf_counter()
    resolve_model_config(args["model"])  # an unknown model fails here, before the drop
    _check_transcriber(args)
    open_options = download_options(settings, args)
    connectors = [connector_for(s, feed=args["feed"], open_options=open_options) for s in args["sources"]]
    retry = PipelineOptions()
    listings, errors = list_sources(connectors, retries=retry.retries, retry_delay_s=retry.retry_delay_s)
    with open_configured_store(args["qdrant_path"], args["qdrant_url"], None, args["collection"]) as store:
        said: list[tuple[str, str]] = []
        left_out: list[str] = []
        if not lists_media(listings, store.collection, args["exclude"], warned=said, excluded=left_out):
            failed = (*errors, *listing_failures(listings))
            return IngestSummary((), failed, time.perf_counter() - started, (), tuple(said), tuple(left_out))
        store.drop()
    return None


@contextmanager
def _failures_said_once(enabled: bool) -> Iterator[None]:
    """The table lists every failed item and source with its error at the end: their log lines
    on the terminal would say each twice. Only the console's handlers drop them, for this run
    (``-v`` keeps them; with ``--json`` they are the only lines on stderr; a Prefect server's
    run log keeps them)."""
    handlers = list(logging.getLogger().handlers) if enabled else []
    for handler in handlers:
        handler.addFilter(_not_listed_later)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_not_listed_later)


def _not_listed_later(record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
        return True
    if record.name in ("clasp_ingest.pipeline", "clasp_ingest.flows"):
        return not str(record.msg).startswith(("failed to ingest", "cannot list"))
    # with --flow, Prefect's report of a task that failed for good (the item's error again)
    return not (
        record.name == "prefect.task_runs" and record.getMessage().startswith("Finished in state Failed")
    )


#: Prefect's reports of what ends a run, which the command's one ``error:`` line says: Ctrl-C,
#: SIGTERM (and the tasks it cancels), an exception (with its traceback).
_SAID_BY_THE_ERROR_LINE = (
    "aborted by an interrupt signal",
    "aborted by a termination signal",
    "Task run cancelled by the task runner",
)


def _not_said_again(record: logging.LogRecord) -> bool:
    """Drop the flow's own report of the exception (with its traceback), of Ctrl-C or SIGTERM
    that ends the run: the command prints it as its one ``error:`` line; and Prefect's report
    of a media task that failed for good, whose error the flow's ``failed to ingest`` line says
    (with ``--json`` both were on stderr)."""
    message = record.getMessage()
    if record.name == "prefect.task_runs" and message.startswith("Finished in state Failed"):
        return False
    return not any(part in message for part in _SAID_BY_THE_ERROR_LINE) and not message.startswith(
        "Encountered exception during execution"
    )


#: Characters of the current item's name the progress line shows, and of its bar.
_SHOWN_NAME = 40
_BAR_WIDTH = 16


def _shown_name(uri: str, width: int = _SHOWN_NAME) -> str:
    """The last part of an item's URI path as its name reads (``%20`` a space; no query, which
    may hold a token), cut to fit the line."""
    from urllib.parse import unquote, urlsplit

    path = urlsplit(uri).path if "://" in uri else uri
    name = one_line(unquote(path.rstrip("/").rsplit("/", 1)[-1], errors="backslashreplace"))
    width = min(width, _SHOWN_NAME)
    return name if len(name) <= width else name[: width - 1] + "…"


class _progress:
    """A rich progress bar on stderr fed by :class:`~clasp_ingest.pipeline.Progress` (or nothing)."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self._enabled:
            return lambda progress: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(  # the description last, cut to the terminal's width in _update
            TextColumn("ingest"),
            BarColumn(bar_width=_BAR_WIDTH),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}", markup=False),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.__enter__()
        self._task = self._bar.add_task("listing sources", total=None)
        return self._update

    def _update(self, progress: Progress) -> None:
        # what the other columns take: "ingest", the bar, "done/total", "0:00:00", one space between
        count = len(f"{progress.done}/{progress.total}")
        room = max(16, self._bar.console.width - (len("ingest") + _BAR_WIDTH + count + 7 + 4) - 1)
        description = (
            f"{progress.segments} segments, {progress.audio_s:.0f} s audio, {progress.failed} failed"
        )
        if progress.current is not None:  # where the item in progress is: first, so it stays in view
            head = f"{progress.current_position_s / 60:.1f} min into "
            # the items done, once there are some ("(704 segments); 0 segments" read as a contradiction)
            done = f"; done: {description}" if progress.done else ""
            tail = f" ({progress.current_segments} segments){done}"
            name = _shown_name(progress.current, max(12, room - len(head) - len(tail)))
            description = head + name + tail
        if len(description) > room:
            description = description[: room - 1] + "…"
        self._bar.update(self._task, total=progress.total, completed=progress.done, description=description)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _print(summary: IngestSummary, args: dict[str, Any], as_json: bool) -> None:
    data = summary.to_dict()
    if as_json:
        named = {
            "model": args["model"],
            "model_id": _model_id(args["model"]),
            "collection": args["collection"],
        }
        typer.echo(json.dumps({**data, **named}))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"clasp-ingest → {args['collection']} ({args['model']})"))
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

    def shown(text: str) -> str:
        return escape(one_line(text))

    for failure in data["media_failed"]:
        console.print(f"[red]failed[/red] {shown(failure['uri'])}: {shown(failure['error'])}", **_ONE_LINE)
    for uri in data["media_pruned"]:
        console.print(f"[cyan]pruned[/cyan] {shown(uri)}: no longer in its source", **_ONE_LINE)
    if data["media_excluded"]:
        excluded = f"[cyan]excluded[/cyan] {data['media_excluded']} item(s) matching --exclude"
        console.print(excluded, **_ONE_LINE)
    for warning in data["media_warnings"]:
        line = f"[yellow]warning[/yellow] {shown(warning['uri'])}: {shown(warning['warning'])}"
        console.print(line, **_ONE_LINE)


def _model_id(model: str) -> str | None:
    """The id of the vectors ``model`` (a preset name or folder) makes, as the collection records
    it and ``store info`` shows it (``clasp-mini`` makes ``clasp-mini-v1.1``)."""
    from clasp_ingest.errors import ClaspIngestError
    from clasp_ingest.model.query import resolve_model_config

    try:
        return resolve_model_config(model)[0].model_id
    except (ClaspIngestError, OSError, ValueError):
        return None


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)
