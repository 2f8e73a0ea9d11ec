"""Prefect flows over :mod:`clasp_ingest.pipeline`: list → skip unchanged → ingest each item.

Task layout (one task per source listing and per media item; never per embedding batch or
per segment):

- ``list-source``: one per source, retried on network errors;
- ``ingest-media``: one per new or changed item; decodes and segments on the CPU of the
  worker (streamed, decoding ahead on a thread), embeds batch by batch, each batch holding a
  GPU slot (:mod:`clasp_ingest.flows.gpu`: the ``gpu`` tag limit, ``prefect
  concurrency-limit create gpu N``, across workers; ``CLASP_GPU_SLOTS`` inside a process),
  writes through ``QdrantStore.write_media`` (all or nothing); retried with exponential
  backoff when the failure is transient (network, store), never for bad media.
  The model is loaded once per worker process (:func:`~clasp_ingest.flows.resources.cached_model`).

Batches are not tasks: a task run per batch kept every batch's waveforms alive until its
item ended (memory grew with the length of the media). The project's log records reach the
run's logs (:func:`~clasp_ingest.flows.logs.run_logs`). Nothing at module level holds a lock
or a handle, so the tasks pickle for Dask/Ray workers (they build their resources there).

The flow returns an :class:`~clasp_ingest.pipeline.IngestSummary`, publishes it as a table
artifact (``clasp-ingest-summary``) and keeps a progress artifact up to date. It fails (the run
ends Failed) when no source could be listed, so that a scheduled run over a missing inbox does
not stay green; a run whose every item failed completes, and its last line says so.

Interrupted (Ctrl-C) or cancelled, the run stops its items itself: a terminal and Prefect's
cancellation signal the whole process group, but each item's ffmpeg runs in a group of its own
(:mod:`clasp_ingest.media.decode`), so none is reported as a file that cannot be decoded.
"""

# No ``from __future__ import annotations`` here: ``flow.serve()`` runs each flow run in a
# spawned process that gets the flow function pickled by value, and string annotations naming
# what the body does not use (SecretUrl, RunnerKind) did not resolve there: every run failed.
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID

from clasp_ingest.connectors import Connector, SecretUrl, connector_for
from clasp_ingest.flows.gpu import embed_batch, gpu_limit
from clasp_ingest.flows.logs import run_logs
from clasp_ingest.flows.resources import (
    ModelSpec,
    StoreSpec,
    cached_model,
    cached_store,
    held_store,
    model_identity,
)
from clasp_ingest.flows.runtime import emit_progress
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.tasks import Task, exponential_backoff
from pydantic import SecretStr

from clasp_ingest import pipeline
from clasp_ingest.config import MAX_DOWNLOAD_DEADLINE_S, Settings
from clasp_ingest.errors import (
    ConfigError,
    ConnectorError,
    IngestInterrupted,
)
from clasp_ingest.pipeline import IngestSummary, MediaResult, PipelineOptions
from clasp_ingest.store import QdrantStore
from clasp_ingest.store.metric import QueryMetric
from clasp_ingest.transcribe import TranscriberOptions
from clasp_ingest.types import MediaRef

__all__ = ["ingest_media", "ingest_source", "list_source", "retry_if_transient"]

log = logging.getLogger("clasp_ingest.flows")

SUMMARY_KEY = "clasp-ingest-summary"
PROGRESS_KEY = "clasp-ingest-progress"
#: How long an interrupted flow waits for its running media tasks to stop (each stops before
#: its next batch, so a few seconds; a whole-file transcription in ``--transcribe`` runs on).
#: Shorter than the 30 s a Prefect runner gives a cancelled run before SIGKILL: at 30 s the
#: kill came first, with none of the run's own report of the stop.
STOP_WAIT_S = 20.0


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry network/store failures, not bad media or config."""
    exc = state.data
    return isinstance(exc, BaseException) and pipeline.is_transient(exc)


@task(
    name="list-source",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def list_source(connector: Connector) -> list[MediaRef]:
    """Every media item of one source."""
    with run_logs():
        return pipeline.list_source(connector)


@task(
    name="ingest-media",
    task_run_name="ingest {ref.title}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def ingest_media(
    ref: MediaRef,
    connector: Connector,
    model: ModelSpec,
    store: StoreSpec,
    options: PipelineOptions,
    gpu_limit: str | None = None,
) -> MediaResult:
    """Decode, segment, embed (each batch holding a GPU slot of ``gpu_limit``) and store one item."""
    from prefect.runtime import task_run

    started = time.perf_counter()
    tries = int(task_run.run_count or 1)
    try:
        with run_logs():
            encoder = cached_model(model)
            try:
                result = pipeline.ingest_media(
                    ref,
                    connector,
                    encoder,
                    cached_store(store),
                    options,
                    embed=lambda waveforms: embed_batch(encoder, waveforms, gpu_limit),
                )
            except IngestInterrupted as exc:  # the flow was interrupted: not this item's failure
                log.info("%s", exc)
                result = pipeline.failed_result(ref, exc, wall_s=time.perf_counter() - started)
    except Exception as exc:  # the tries so far go with the error to _collect (the run's summary)
        with contextlib.suppress(AttributeError):
            setattr(exc, _TRIES, tries)
        raise
    return replace(result, attempts=tries)


#: The attribute of a media task's error holding the times the task ran.
_TRIES = "clasp_ingest_tries"


def _store_spec(settings: Settings, collection: str | None, url: str | None, path: str | None) -> StoreSpec:
    for name, value in (("collection", collection), ("qdrant_url", url), ("qdrant_path", path)):
        if value is not None and not value.strip():
            raise ConfigError(f"the flow's {name} parameter is empty; give one, or leave it out (None)")
    if url is None and path is None:
        url = settings.qdrant_url
        path = None if url else str(settings.qdrant_path)
    name = collection if collection is not None else settings.collection
    return StoreSpec(name, url=url, path=path, prefer_grpc=settings.qdrant_grpc)


class _Tracker:
    """Collects results and keeps the progress artifact and listeners up to date."""

    def __init__(self, total: int, results: list[MediaResult]) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total = total
        self.results = results
        artifact = create_progress_artifact(
            progress=self._percent(), key=PROGRESS_KEY, description="clasp-ingest: media items done"
        )
        if not isinstance(artifact, UUID):  # sync call in a sync flow; guard the async variant
            raise TypeError(f"expected the artifact id, got {artifact!r}")
        self._artifact = artifact
        emit_progress(pipeline.progress_of(total, results))

    def _percent(self) -> float:
        return 100.0 if self.total == 0 else round(100.0 * len(self.results) / self.total, 1)

    def add(self, result: MediaResult) -> None:
        from prefect.artifacts import update_progress_artifact

        self.results.append(result)
        progress = pipeline.progress_of(self.total, self.results)
        update_progress_artifact(
            self._artifact,
            progress=self._percent(),
            description=f"{progress.done}/{progress.total} media, {progress.failed} failed, "
            f"{progress.audio_s:.0f} s of audio",
        )
        emit_progress(progress)


def _collect(ref: MediaRef, future: PrefectFuture[MediaResult], started: float) -> MediaResult:
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, MediaResult):
        return outcome
    if isinstance(outcome, pipeline.STOPS_THE_RUN):
        raise outcome  # not this item's fault: the run stops (its other tasks are stopped)
    exc = outcome if isinstance(outcome, BaseException) else RuntimeError(str(outcome))
    log.error("failed to ingest %s: %s", ref.uri, exc)
    # the times the task ran, its retries included (the summary said 1 for an item whose
    # retries ran out; the API may not hold the task run yet when its future is done)
    tries = getattr(exc, _TRIES, 1)
    return pipeline.failed_result(ref, exc, wall_s=time.perf_counter() - started, attempts=tries)


def _listed(
    connectors: Sequence[Connector],
    errors: list[tuple[str, str]],
    store: QdrantStore,
    pruned: list[str] | None = None,
    warned: list[tuple[str, str]] | None = None,
    exclude: Sequence[str] = (),
    excluded: list[str] | None = None,
) -> list[tuple[Connector, MediaRef]]:
    """Every listed item; listing errors into ``errors``; each source that listed is handled by
    :func:`~clasp_ingest.pipeline.took_listing` (pruned into ``pruned`` when that is a list, its
    warnings into ``warned``, the items ``exclude`` leaves out into ``excluded``)."""
    futures = [(c, list_source.submit(c)) for c in connectors]
    listed: list[tuple[Connector, MediaRef]] = []
    stored = pipeline.StoredItems(store)  # one read of the stored items for every source's prune
    for connector, future in futures:
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, list):
            listed += pipeline.took_listing(
                store, connector, outcome, pruned, stored=stored, warned=warned,
                exclude=exclude, excluded=excluded,
            )  # fmt: skip
        else:
            errors.append((connector.source, pipeline.describe_error(outcome)))
    return listed


def _publish(summary: IngestSummary) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [
        {
            "uri": r.uri,
            "status": r.status,
            "segments": r.segments,
            "audio_s": r.audio_s,
            "wall_s": round(r.wall_s, 2),
            "attempts": r.attempts,
            "error": r.error,
            "warning": " | ".join(r.warnings),
        }
        for r in summary.results
    ] + [{"uri": uri, "status": "unlisted", "error": error} for uri, error in summary.source_errors]
    rows += [{"uri": uri, "status": "pruned"} for uri in summary.pruned]
    totals = summary.to_dict()
    pruned = f", {len(summary.pruned)} pruned" if summary.pruned else ""
    excluded = f", {len(set(summary.excluded))} excluded" if summary.excluded else ""
    description = (
        f"**{totals['media_ok']} ingested, {totals['media_skipped']} unchanged, "
        f"{len(totals['media_failed'])} failed{pruned}{excluded}, "
        f"{len(totals['media_warnings'])} warnings**; "
        f"{totals['segments']} segments, "
        f"{totals['audio_s']:.1f} s of audio in {totals['wall_s']:.1f} s"
    )
    create_table_artifact(table=rows, key=SUMMARY_KEY, description=description)


@flow(name="clasp-ingest", persist_result=False, log_prints=False)
def ingest_source(
    sources: str | SecretUrl | list[str | SecretUrl],
    model: str | None = None,
    collection: str | None = None,
    qdrant_url: str | None = None,
    qdrant_path: str | None = None,
    feed: bool | None = None,
    device: str | None = None,
    embed_batch_size: int | None = None,
    media_concurrency: int = 1,
    retries: int = 3,
    retry_delay_s: float = 2.0,
    max_bytes: int | None = None,
    force: bool = False,
    prune: bool = False,
    download_deadline_s: float | None = None,
    min_download_rate: float | None = None,
    allow_private_hosts: bool | None = None,
    transcribe: bool = False,
    whisper_model: str = "whisper-base",
    exclude: list[str] | None = None,
) -> IngestSummary:
    """Ingest every new or changed media item of ``sources`` into a Qdrant collection.

    Unset arguments come from ``CLASP_*`` settings. ``media_concurrency`` items are in
    flight at once (share one store: keep 1 for an embedded store on one worker).
    Bad items fail alone and are listed in the returned summary. A source given as a
    :class:`~clasp_ingest.connectors.SecretUrl` (a signed URL) is stored by Prefect, and
    shown everywhere, redacted; only the connector holds the real URL, in memory.
    ``transcribe``: also store each item's words and word vectors (``ingest --transcribe``;
    each worker loads ``whisper_model`` once), for hybrid search. ``prune``: also delete the
    stored items a folder or bucket-prefix source no longer lists (``ingest --prune``).
    ``exclude``: shell-style patterns of items to leave out, neither ingested nor pruned
    (``ingest --exclude``; :func:`~clasp_ingest.pipeline.excluded_by`): ``*.part`` matches the
    last name, ``*/rushes/*`` the whole path.

    Raises :class:`~clasp_ingest.errors.ConnectorError` (the run fails) when no source could be
    listed, after publishing the summary; a run whose every item failed completes, its last
    log line saying so.
    """
    started = time.perf_counter()
    with run_logs():
        given = _as_list(sources)
        _check_parameters(given, embed_batch_size, media_concurrency)
        _check_bounds(
            max_bytes=max_bytes,
            download_deadline_s=download_deadline_s,
            min_download_rate=min_download_rate,
            retries=retries,
            retry_delay_s=retry_delay_s,
        )
        settings = Settings.from_env()
        model_spec = _model_spec(settings, model, device)
        store_spec = _store_spec(settings, collection, qdrant_url, qdrant_path)
        open_options = settings.open_options(
            max_bytes=max_bytes,
            deadline_s=download_deadline_s,
            min_rate_bytes_s=min_download_rate,
            allow_private_hosts=allow_private_hosts,
        )
        connectors = [connector_for(s, feed=feed, open_options=open_options) for s in given]
        words = TranscriberOptions(model=whisper_model, device=model_spec.device) if transcribe else None
        options = PipelineOptions(
            embed_batch_size=settings.embed_batch_size if embed_batch_size is None else embed_batch_size,
            segmenter=settings.segmenter_options(),  # CLASP_MIN_SEGMENT_S etc., as `ingest` reads them
            decode=settings.decode_options(),  # CLASP_FFMPEG, CLASP_READ_TIMEOUT_S
            force=force,
            transcribe=words,
            prune=prune,
            exclude=tuple(exclude or ()),
        )
        task_ = ingest_media.with_options(
            retries=retries, retry_delay_seconds=exponential_backoff(backoff_factor=retry_delay_s)
        )
        listed = _ingest_all(connectors, _Work(model_spec, store_spec, options), task_, media_concurrency)
        summary = IngestSummary(
            tuple(listed.results),
            tuple(listed.errors),
            time.perf_counter() - started,
            tuple(listed.pruned),
            tuple(listed.warned),
            tuple(listed.excluded),
        )
        _publish(summary)
        _conclude(summary, len(connectors))
    return summary


def _check_parameters(sources: Sequence[str], embed_batch_size: int | None, media_concurrency: int) -> None:
    """Refuse parameters that cannot make a run (before anything is opened)."""
    if not sources:
        raise ConfigError(
            "the flow's sources parameter is an empty list; give at least one folder, file, glob or URL"
        )
    if embed_batch_size is not None and embed_batch_size < 1:
        raise ConfigError(
            f"the flow's embed_batch_size parameter is {embed_batch_size}; give a number of segments "
            "per batch of at least 1, or leave it out (None) for CLASP_EMBED_BATCH_SIZE"
        )
    if media_concurrency < 1:
        raise ConfigError(
            f"the flow's media_concurrency parameter is {media_concurrency}; give the number of media "
            "items to ingest at once, at least 1"
        )


#: Number parameters: (the least value, whether it may be equal, what it counts).
_BOUNDS: dict[str, tuple[float, bool, str]] = {
    "max_bytes": (0, False, "the largest download in bytes"),
    "download_deadline_s": (0, False, "the seconds a whole download may take"),
    "min_download_rate": (0, True, "the slowest average download rate in bytes/s (0: none)"),
    "retries": (0, True, "the times a failed item is tried again"),
    "retry_delay_s": (0, True, "the seconds before the first retry"),
}
#: Number parameters with a largest value (a deadline past it overflowed the download's timer).
_MOST: dict[str, tuple[float, str]] = {"download_deadline_s": (MAX_DOWNLOAD_DEADLINE_S, "a week")}


def _check_bounds(**values: float | None) -> None:
    """Refuse a number parameter out of range naming it (they failed later as an options
    object's error, or, negative retries and delays, not at all); None: the setting."""
    for name, value in values.items():
        least, equal, what = _BOUNDS[name]
        most, most_said = _MOST.get(name, (math.inf, ""))
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if value is None or (number and (value > least or (equal and value == least)) and value <= most):
            continue
        rule = f"at least {least}" if equal else f"more than {least}"
        if most_said:
            rule += f" and at most {most:g} ({most_said})"
        raise ConfigError(f"the flow's {name} parameter is {value!r}; give {what}, {rule}")


def _conclude(summary: IngestSummary, sources: int) -> None:
    """Fail the run when no source could be listed; else log its outcome as its last line."""
    if summary.no_source_listed(sources):
        errors = "; ".join(
            error if source in error else f"{source}: {error}" for source, error in summary.source_errors
        )
        raise ConnectorError(
            f"no source could be listed ({errors}); check that each source exists and can be reached "
            "(a mounted folder, the URL, the bucket's credentials), or give other sources"
        )
    failed = sum(r.status == "failed" for r in summary.results)
    unlisted = f", {len(summary.source_errors)} source(s) not listed" if summary.source_errors else ""
    pruned = f", {len(summary.pruned)} deleted item(s) pruned" if summary.pruned else ""
    if failed and summary.media_ok == 0:  # "failed to ingest": the CLI lists failures in its table
        log.error(
            "failed to ingest every new or changed item (%d failed, %d unchanged%s): nothing new was "
            "stored%s; see the %s artifact for each item's error",
            failed,
            summary.media_skipped,
            unlisted,
            pruned,
            SUMMARY_KEY,
        )
        return
    log.info(
        "%d ingested, %d unchanged, %d failed%s%s",
        summary.media_ok,
        summary.media_skipped,
        failed,
        pruned,
        unlisted,
    )


@dataclass(frozen=True)
class _Work:
    """What every ``ingest-media`` task of a run is given besides its item."""

    model: ModelSpec
    store: StoreSpec
    options: PipelineOptions
    gpu_limit: str | None = None


def _model_spec(settings: Settings, model: str | None, device: str | None) -> ModelSpec:
    return ModelSpec(
        model or settings.model,
        device or settings.device,
        settings.dtype,
        model_dir=str(settings.model_dir) if settings.model_dir else None,
        torch_threads=settings.torch_threads,
        engine=settings.engine,
    )


def _text_dim(spec: ModelSpec) -> int:
    """The width of the model's text vectors, from its config (no weights loaded)."""
    from clasp_ingest.model.query import resolve_model_config

    config, _ = resolve_model_config(spec.name)
    return int(config.text.dim)


def _query_metric(spec: ModelSpec, store: QdrantStore, dim: int) -> QueryMetric | None:
    """A new collection's query-aware graph space (:func:`~clasp_ingest.pipeline.query_metric_for`),
    fitted on the model's query bank read from its weights file (the flow loads no model here):
    without it, a collection made by a flow or a deployment got the plain int8 graph that
    `ingest` gives only to models without a bank (lower recall from 150k points on)."""
    if store.exists():
        return None  # an existing collection keeps the graph it was made with
    from clasp_ingest.model.query import query_sample

    sample = query_sample(spec.name, model_dir=Path(spec.model_dir) if spec.model_dir else None)
    return pipeline.query_metric_of(sample, dim)


@dataclass
class _Outcome:
    """What :func:`_ingest_all` found and did."""

    results: list[MediaResult] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # sources that could not be listed
    pruned: list[str] = field(default_factory=list)
    warned: list[tuple[str, str]] = field(default_factory=list)  # source warnings
    excluded: list[str] = field(default_factory=list)


def _ingest_all(
    connectors: Sequence[Connector], work: _Work, task_: Task[Any, MediaResult], window: int
) -> _Outcome:
    """Prune if asked, list, leave out the excluded items, skip what is stored, ingest the rest."""
    done = _Outcome()
    model_id, dim, source = model_identity(work.model)
    text_dim = _text_dim(work.model) if work.options.transcribe else None
    with (
        held_store(work.store) as store,
        pipeline.collection_for(
            store,
            model_id,
            dim,
            source=source,
            text_dim=text_dim,
            query_metric=_query_metric(work.model, store, dim),
        ),
    ):
        listed = _listed(
            connectors,
            done.errors,
            store,
            done.pruned if work.options.prune else None,
            done.warned,
            exclude=work.options.exclude,
            excluded=done.excluded,
        )
        pipeline.warn_unused_patterns(work.options.exclude, done.excluded)
        todo, skipped = pipeline.select_new(
            listed, store, force=work.options.force, words=work.options.transcribe is not None
        )
        log.info("%d media to ingest, %d unchanged", len(todo), sum(r.status == "skipped" for r in skipped))
        tracker = _Tracker(len(todo) + len(skipped), skipped)
        if todo:  # each worker process loads the model itself, and checks it against its config
            with store.bulk():
                _run_items(task_, todo, replace(work, gpu_limit=gpu_limit()), tracker, window)
    done.results = tracker.results
    return done


def _run_items(
    task_: Task[Any, MediaResult],
    todo: Sequence[tuple[Connector, MediaRef]],
    work: _Work,
    tracker: _Tracker,
    window: int,
) -> None:
    """Submit items, keeping at most ``window`` in flight; results in submission order.

    Interrupted (Ctrl-C), it stops the items in flight and waits for them (each rolls back its
    partial write) before the caller closes the store under them.
    """
    pending: deque[tuple[MediaRef, PrefectFuture[MediaResult], float]] = deque()
    try:
        for connector, ref in todo:
            future = task_.submit(ref, connector, work.model, work.store, work.options, work.gpu_limit)
            pending.append((ref, future, time.perf_counter()))
            if len(pending) >= window:
                tracker.add(_collect(*pending[0]))
                pending.popleft()
        while pending:
            tracker.add(_collect(*pending[0]))
            pending.popleft()
    except BaseException:
        _stop_all([future for _, future, _ in pending])
        raise


def _stop_all(futures: Sequence[PrefectFuture[MediaResult]]) -> None:
    """Stop the items still running and wait (at most ``STOP_WAIT_S``) until they have."""
    deadline = time.monotonic() + STOP_WAIT_S
    with pipeline.items_stopping():
        for future in futures:
            future.wait(max(0.0, deadline - time.monotonic()))
    if any(future.state.is_running() for future in futures):
        log.warning("media items still running after %.0f s; the next run completes them", STOP_WAIT_S)


def _as_list(sources: str | SecretUrl | list[str | SecretUrl]) -> list[str]:
    items = sources if isinstance(sources, list) else [sources]
    return [s.get_secret_value() if isinstance(s, SecretStr) else s for s in items]
