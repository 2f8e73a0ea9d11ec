"""The cluster flow hands its parameters on to the ``clasp-ingest`` flow, with the same
defaults: an operator's review found ``archive-cluster`` could not use ``exclude``, ``retries``
or ``transcribe``, which the one-worker flow takes."""

from __future__ import annotations

import inspect

from clasp_ingest.flows import ingest_source
from clasp_ingest.flows.cluster import ingest_source_cluster

#: The cluster's own, and what a cluster of processes cannot use (one process's embedded store).
CLUSTER_ONLY = {"runner", "address"}
NOT_ON_A_CLUSTER = {"qdrant_path"}


def test_the_cluster_flow_takes_the_ingest_flows_parameters() -> None:
    cluster = inspect.signature(ingest_source_cluster.fn).parameters
    single = inspect.signature(ingest_source.fn).parameters
    assert set(cluster) - CLUSTER_ONLY <= set(single)
    assert set(single) - set(cluster) == NOT_ON_A_CLUSTER
    for name in set(cluster) - CLUSTER_ONLY - {"media_concurrency"}:  # 8 items at once on a cluster
        assert cluster[name].default == single[name].default, name
    source = inspect.getsource(ingest_source_cluster.fn)
    for name in set(cluster) - CLUSTER_ONLY - {"sources"}:
        assert f"{name}={name}" in source, f"{name} is not handed on"
