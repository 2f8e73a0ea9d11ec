"""Where an embedded-store write spends its time, per point: the cost floor of upserts.

Writes ``--n`` points (385-d unit vectors, items of 1,000 spans, the payload ``write_media``
stores) into fresh Qdrant Edge collections and times each step of the write path on its own,
then the whole path (``write_media`` inside ``bulk()``), then the engine alone with fewer
payload indexes or no payload (what the engine's own work would allow):

* ``ids + payloads``: point ids and payload dicts (``QdrantStore._points_for``);
* ``graph vectors``: the query-aware graph space (``--graph``: what new clasp-mini collections
  write beside the model's vectors);
* ``Point conversion``: qdrant-edge-py's ``Point(...)`` for those (the Python binding);
* ``engine upsert``: ``EdgeShard.update(upsert_points)``, the collection's payload indexes kept;
* ``completion``: marking each item's version complete (one payload update by filter);
* ``flush``: the engine's flush to disk when the load ends;
* ``write_media (whole)``: the product's write path end to end.

Printed: µs a point and the points/s that step alone would allow. The binding holds the GIL
while the engine writes, so on this path the steps add up rather than overlap.

    .venv/bin/python bench/bench_upsert.py [--n 30000] [--graph]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from bench_store import DIM, MODEL, PER_MEDIA, media_items  # this folder (bench/)

from clasp_ingest.evaluation.vectors import sphere_vectors
from clasp_ingest.store import EdgeStore, WriteOptions
from clasp_ingest.store.base import PAYLOAD_INDEXES, STATE_COMPLETE
from clasp_ingest.store.edge import GRAPH_VECTOR
from clasp_ingest.store.filters import meta_equals
from clasp_ingest.store.metric import QueryMetric

BATCH = WriteOptions().batch_size


def fresh(workdir: Path, name: str, metric: QueryMetric | None) -> EdgeStore:
    store = EdgeStore(workdir / name)
    store.ensure_collection(MODEL, DIM, query_metric=metric)
    return store


def steps(store: EdgeStore, vectors: np.ndarray, metric: QueryMetric | None) -> dict[str, float]:
    """Seconds of each step, run one after another as ``write_media`` runs them."""
    import qdrant_edge as qe

    spent = dict.fromkeys(("ids + payloads", "graph vectors", "Point conversion", "engine upsert",
                           "completion", "flush"), 0.0)  # fmt: skip
    shard = store._require_shard()

    @contextmanager
    def timed(step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        spent[step] += time.perf_counter() - start

    for ref, segs, rows in media_items(len(vectors)):
        with timed("ids + payloads"):
            points = store._points_for(ref, MODEL, segs, vectors[rows], "now")
        for first in range(0, len(points), BATCH):
            chunk = points[first : first + BATCH]
            named: list[dict[str, Any]] = [{"clasp": p.vector} for p in chunk]
            if metric is not None:
                with timed("graph vectors"):
                    graph = metric.points(np.array([p.vector for p in chunk])).tolist()
                    for row, g in zip(named, graph, strict=True):
                        row[GRAPH_VECTOR] = g
            with timed("Point conversion"):
                batch = [qe.Point(p.id, v, p.payload) for p, v in zip(chunk, named, strict=True)]
            with timed("engine upsert"):
                shard.update(qe.UpdateOperation.upsert_points(batch))
        this = store._filter(meta_equals("media_id", ref.media_id) & meta_equals("version", ref.fingerprint))
        op = qe.UpdateOperation.set_payload_by_filter(this, {"state": STATE_COMPLETE}, key="metadata")
        with timed("completion"):
            shard.update(op)
    with timed("flush"):
        shard.flush()
    return spent


def engine_only(store: EdgeStore, vectors: np.ndarray, *, payload: bool, drop_indexes: bool) -> float:
    """Seconds of ``upsert_points`` alone, points converted beforehand."""
    import qdrant_edge as qe

    shard = store._require_shard()
    if drop_indexes:
        for key in PAYLOAD_INDEXES:
            shard.update(qe.UpdateOperation.delete_field_index(key))
    spent = 0.0
    for ref, segs, rows in media_items(len(vectors)):
        points = store._points_for(ref, MODEL, segs, vectors[rows], "now")
        for first in range(0, len(points), BATCH):
            batch = [qe.Point(p.id, {"clasp": p.vector or []}, p.payload if payload else {})
                     for p in points[first : first + BATCH]]  # fmt: skip
            start = time.perf_counter()
            shard.update(qe.UpdateOperation.upsert_points(batch))
            spent += time.perf_counter() - start
    return spent


def whole(store: EdgeStore, vectors: np.ndarray) -> float:
    start = time.perf_counter()
    with store.bulk():
        for ref, segs, rows in media_items(len(vectors)):
            store.write_media(ref, MODEL, [(segs, vectors[rows])])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30_000, help="points per run")
    parser.add_argument("--graph", action="store_true", help="with the query-aware graph vector")
    args = parser.parse_args()
    vectors = sphere_vectors(args.n, DIM, seed=1)
    metric = QueryMetric.fit(sphere_vectors(4000, DIM, seed=2)) if args.graph else None
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-upsert-") as tmp:
        work = Path(tmp)
        with fresh(work, "steps", metric) as store:
            parts = steps(store, vectors, metric)
        rows += [(name, s) for name, s in parts.items() if s > 0]
        rows.append(("sum of the steps", sum(parts.values())))
        with fresh(work, "whole", metric) as store:
            rows.append(("write_media (whole)", whole(store, vectors)))
        for label, payload, drop in (("engine upsert, no payload indexes", True, True),
                                     ("engine upsert, no payload", False, False)):  # fmt: skip
            with fresh(work, label.replace(" ", "-").replace(",", ""), None) as store:
                rows.append((label, engine_only(store, vectors, payload=payload, drop_indexes=drop)))
    graph = "with the query-aware graph vector" if args.graph else "model vectors only"
    print(f"{args.n} points, {DIM}-d, {graph}, items of {PER_MEDIA}, batches of {BATCH}")
    print("| step | µs a point | points/s alone |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        per = seconds / args.n
        print(f"| {name} | {per * 1e6:.1f} | {1 / per:,.0f} |")


if __name__ == "__main__":
    main()
