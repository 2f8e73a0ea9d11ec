"""The ``ingest-media`` task in a Dask worker *process*: it unpickles there and builds its own
model, store and GPU slots from the specs it is given (nothing travels but small values).

The whole ``clasp-ingest-cluster`` flow runs on a threads cluster in test_deployments.py (an
embedded store belongs to one process); here the flow process never opens the store, so the
worker process can own it.
"""

from __future__ import annotations

import os
from pathlib import Path

from clasp_ingest.connectors import LocalConnector
from clasp_ingest.flows import ModelSpec, StoreSpec, ingest_media
from clasp_ingest.flows.resources import model_identity, release_store
from prefect import flow, task

from clasp_ingest.pipeline import MediaResult, PipelineOptions
from clasp_ingest.store import open_store


@task
def _where_and_release(store: StoreSpec) -> int:
    """The worker's pid; closes the store it opened (flushes it, frees its lock)."""
    release_store(store)
    return os.getpid()


def test_ingest_media_runs_in_a_dask_worker_process(folder: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    store = StoreSpec("cluster", path=str(tmp_path / "q"))
    model = ModelSpec("tiny-random", device="cpu")
    with open_store(path=tmp_path / "q", collection="cluster") as opened:
        model_id, dim, source = model_identity(model)
        opened.ensure_collection(model_id, dim, source=source)
    (ref,) = LocalConnector(folder / "one.wav").discover()

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:

        @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
        def one_item() -> tuple[MediaResult, int]:
            future = ingest_media.submit(ref, LocalConnector(folder), model, store, PipelineOptions())
            result = future.result()
            return result, _where_and_release.submit(store, wait_for=[future]).result()

        result, worker_pid = one_item()

    assert worker_pid != os.getpid()
    assert result.status == "ok" and result.segments == 3
    with open_store(path=tmp_path / "q", collection="cluster") as opened:
        assert opened.count() == 3 and opened.has_media(ref.media_id, ref.fingerprint)
