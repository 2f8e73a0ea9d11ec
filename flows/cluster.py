"""Scale-out over a Dask or Ray cluster: the ingest flow with a cluster task runner.

``ingest_source_cluster`` runs :func:`~clasp_ingest.flows.ingest.ingest_source` as a subflow
whose task runner is prefect-dask's ``DaskTaskRunner`` or prefect-ray's ``RayTaskRunner``,
so the ``list-source`` and ``ingest-media`` tasks run on the cluster's workers. A task travels
pickled with small specs only (model name, store URL, options); each worker process loads
the model once, opens the store and makes its GPU slots itself (``flows.resources``,
``flows.gpu``), and reads the Qdrant API key from its own environment.

Workers open the store themselves: use a Qdrant server (``qdrant_url`` /
``CLASP_QDRANT_URL``). An embedded path (``CLASP_QDRANT_PATH``) belongs to one process, so it
serves only a cluster whose workers are threads of the flow's process
(``LocalCluster(processes=False)``, as the tests run it).
"""

# No ``from __future__ import annotations`` here: ``flow.serve()`` runs each flow run in a
# spawned process that gets the flow function pickled by value, and string annotations naming
# what the body does not use (SecretUrl, RunnerKind) did not resolve there: every run failed.
from typing import Any, Literal

from clasp_ingest.flows.ingest import ingest_source
from prefect import flow
from prefect.task_runners import TaskRunner

from clasp_ingest.config import Settings
from clasp_ingest.errors import ConfigError
from clasp_ingest.pipeline import IngestSummary

__all__ = ["cluster_task_runner", "ingest_source_cluster"]

RunnerKind = Literal["dask", "ray"]


def cluster_task_runner(kind: RunnerKind, address: str | None = None) -> TaskRunner[Any]:
    """A Dask or Ray task runner; ``address`` joins an existing cluster, else a local one starts."""
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ImportError(
                "the dask runner needs prefect-dask: pip install 'clasp-ingest[dask]'"
            ) from None
        return DaskTaskRunner(address=address) if address else DaskTaskRunner()
    if kind == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise ImportError("the ray runner needs prefect-ray: pip install 'clasp-ingest[ray]'") from None
        return RayTaskRunner(address=address) if address else RayTaskRunner()
    raise ConfigError(f"unknown task runner {kind!r}; use 'dask' or 'ray'")


@flow(name="clasp-ingest-cluster", persist_result=False, log_prints=False)
def ingest_source_cluster(
    sources: str | list[str],
    runner: RunnerKind = "dask",
    address: str | None = None,
    media_concurrency: int = 8,
    model: str | None = None,
    collection: str | None = None,
    qdrant_url: str | None = None,
    feed: bool | None = None,
    device: str | None = None,
    embed_batch_size: int | None = None,
    force: bool = False,
    prune: bool = False,
    exclude: list[str] | None = None,
    retries: int = 3,
    retry_delay_s: float = 2.0,
    transcribe: bool = False,
    whisper_model: str = "whisper-base",
    max_bytes: int | None = None,
    download_deadline_s: float | None = None,
    min_download_rate: float | None = None,
    allow_private_hosts: bool | None = None,
) -> IngestSummary:
    """Ingest ``sources`` with ``media_concurrency`` items in flight across a Dask/Ray cluster.

    Without ``address`` the cluster is a local one of processes, which an embedded store (one
    process's) cannot serve: that needs a Qdrant server (``qdrant_url``, ``CLASP_QDRANT_URL``).
    The other parameters are the ``clasp-ingest`` flow's (``exclude``, ``retries``,
    ``transcribe``...), handed on to it; not ``qdrant_path`` (one process's store).
    """
    if address is None and not (qdrant_url or Settings.from_env().qdrant_url):
        raise ConfigError(
            f"the cluster flow starts a local {runner} cluster of worker processes (no address given), "
            "and an embedded store belongs to one process: each item would fail on its lock; give "
            "qdrant_url (or CLASP_QDRANT_URL) for a Qdrant server, or run the clasp-ingest flow "
            "(ingest_source) on one worker"
        )
    subflow = ingest_source.with_options(task_runner=cluster_task_runner(runner, address))
    return subflow(
        sources,
        model=model,
        collection=collection,
        qdrant_url=qdrant_url,
        feed=feed,
        device=device,
        embed_batch_size=embed_batch_size,
        media_concurrency=media_concurrency,
        force=force,
        prune=prune,
        exclude=exclude,
        retries=retries,
        retry_delay_s=retry_delay_s,
        transcribe=transcribe,
        whisper_model=whisper_model,
        max_bytes=max_bytes,
        download_deadline_s=download_deadline_s,
        min_download_rate=min_download_rate,
        allow_private_hosts=allow_private_hosts,
    )
