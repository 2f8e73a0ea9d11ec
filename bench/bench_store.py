r"""Store at scale: upsert points/s, index build, query p50/p99 (search alone and with text
encoding), recall@10 against exact numpy search, RSS; Qdrant Edge and qdrant-client (``client``:
local mode in memory, or with ``QDRANT_URL`` (and ``QDRANT_API_KEY``) set, that Qdrant server,
in a collection of its own that is dropped afterwards; then every query is run).

    .venv/bin/python bench/bench_store.py --n 100000 --json             # Edge, both vector kinds
    .venv/bin/python bench/bench_store.py --n 100000 --engines edge client --vectors model
    QDRANT_URL=http://localhost:6333 .venv/bin/python bench/bench_store.py --n 1000000 --engines client
    .venv/bin/python bench/bench_store.py --n 30000 --m 16 --ef 64 --quantization none   # a variant
    .venv/bin/python bench/bench_store.py --n 200000 --vectors model --ef-sweep 1024 2048 4096
    .venv/bin/python bench/bench_store.py --n 200000 --vectors model --quantization int8 \
        --ef-sweep 2048 4096 --oversampling-sweep 2 8 32

Vectors (385-d, clasp-mini's width):

- ``model``: real clasp-mini embeddings of speech, grown to N. ``bench/model_vectors.py``
  embeds seeded 1.5-8 s windows of every installed recording (bundled samples,
  pytest-audioeval, pocketsphinx-testdata) with the audio tower and word windows of their
  reference texts with the query side (cached in ``--base``, built when missing).
  :func:`clasp_ingest.evaluation.vectors.expand_vectors` grows the audio windows to N (each
  point a window mixed with a second one, weight U(0, 0.5), plus Gaussian noise of norm 0.5,
  renormalised). Queries: text windows (real query vectors of the model, not points of the
  set; like real queries they sit across the model's text-speech gap from the points, cosine
  ~0.2 to their nearest); "+ text" times encode those very phrases, then search.
- ``random``: uniform on the sphere, queries too (the worst case for HNSW).

Points are written through ``write_media`` in media items of 1,000 spans inside
``store.bulk()``; ``build_s`` is the wait for the index when the load ends (Edge), and
``upsert_per_s`` counts the whole load (including index steps taken during it).
``recall_at_10`` counts the exact top-10's rows found; ``recall_at_10_eps`` is ann-benchmarks'
k-nn recall: a hit also counts when its exact score is within 1e-3 of the 10th exact score (a
near-tie: at 100k model-like points the 10th and 11th exact scores of half the queries are less
than 0.0008 apart). ``rss_mb`` is the process's resident memory after the queries (the bench's own arrays
included), ``store_rss_mb`` its growth from opening the store to then. "with text" encodes every query
afresh (no cache); "repeated" runs the same queries again through the query model's cache
of recent queries.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.evaluation.vectors import expand_vectors, sphere_vectors
from clasp_ingest.model.query import QueryModel, load_query_model, query_sample
from clasp_ingest.store import EdgeOptions, EdgeStore, QdrantStore, open_store, point_id
from clasp_ingest.store.metric import QueryMetric
from clasp_ingest.types import MediaRef, Segment, media_id_for

MODEL = "bench"
DIM = 385
PER_MEDIA = 1000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def model_vectors(base_file: Path, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(points, held-out query vectors, their phrases) grown from real clasp-mini embeddings."""
    if not base_file.is_file():
        from model_vectors import build  # type: ignore[import-not-found]

        build(base_file, windows=1200, texts=1200)
    data = np.load(base_file)
    text, phrases = data["text"], [str(p) for p in data["phrases"]]
    held = np.random.default_rng(7).permutation(len(text))[:n_queries]
    return expand_vectors(data["audio"], n, seed=1), text[held], [phrases[i] for i in held]


def media_items(n: int) -> list[tuple[MediaRef, list[Segment], slice]]:
    items = []
    for m, start in enumerate(range(0, n, PER_MEDIA)):
        uri = f"file:///bench/{m:05d}.mp3"
        ref = MediaRef(uri, media_id_for(uri), "v1", title=f"talk {m}")
        size = min(PER_MEDIA, n - start)
        segs = [Segment(ref.media_id, i, 4.0 * i, 4.0 * i + 3.5) for i in range(size)]
        items.append((ref, segs, slice(start, start + size)))
    return items


#: ann-benchmarks' tolerance for its k-nn recall: a hit scoring within this of the k-th exact
#: score counts (near-ties are interchangeable answers).
SCORE_EPS = 1e-3


@dataclass(frozen=True)
class Truth:
    """Exact answers: each query's top-10 rows, its 10th score, and every row's score."""

    top: list[set[int]]
    kth: np.ndarray  # (q,)
    scores: np.ndarray  # (n, q)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> Truth:
    scores = vectors @ queries.T  # (n, q)
    top = [np.argpartition(-scores[:, j], k)[:k] for j in range(len(queries))]
    kth = np.array([scores[t, j].min() for j, t in enumerate(top)])
    return Truth([set(t.tolist()) for t in top], kth, scores)


def percentiles(times: Sequence[float]) -> tuple[float, float]:
    ms = np.asarray(times) * 1000
    return round(float(np.percentile(ms, 50)), 2), round(float(np.percentile(ms, 99)), 2)


def query_stats(
    store: QdrantStore,
    queries: np.ndarray,
    truth: Truth,
    index_of: dict[str, int],
    phrases: list[str],
    encoders: tuple[QueryModel, QueryModel] | None,
) -> dict[str, Any]:
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        hits = store.search(q, k=10)
        times.append(time.perf_counter() - start)
        found.append({index_of[h.point_id] for h in hits})
    recall = float(np.mean([len(f & t) / 10 for f, t in zip(found, truth.top, strict=True)]))
    near = [sum(truth.scores[i, j] >= truth.kth[j] - SCORE_EPS for i in f) / 10 for j, f in enumerate(found)]
    row: dict[str, Any] = {"recall_at_10": round(recall, 4)}
    row["recall_at_10_eps"] = round(float(np.mean(near)), 4)
    row["p50_ms"], row["p99_ms"] = percentiles(times)
    row["p50_with_text_ms"] = row["p99_with_text_ms"] = row["p50_repeated_with_text_ms"] = None
    if encoders is not None:
        fresh, cached = encoders
        fresh.encode_text(["warm up"])
        row["p50_with_text_ms"], row["p99_with_text_ms"] = percentiles(timed_text(store, fresh, phrases))
        timed_text(store, cached, phrases)  # fills the cache: the repeats below hit it
        repeated = percentiles(timed_text(store, cached, phrases))
        row["p50_repeated_with_text_ms"], row["p99_repeated_with_text_ms"] = repeated
    return row


def timed_text(store: QdrantStore, model: QueryModel, phrases: list[str]) -> list[float]:
    """Seconds per query: encode the phrase (``model``'s cache, if any, applies), then search."""
    times = []
    for phrase in phrases:
        start = time.perf_counter()
        store.search(model.encode_text([phrase])[0], k=10)
        times.append(time.perf_counter() - start)
    return times


def load(store: QdrantStore, vectors: np.ndarray) -> tuple[dict[str, int], float, float]:
    """Write every point in media items inside one bulk ingest: (id → row, load s, build s)."""
    index_of: dict[str, int] = {}
    with store.bulk():
        start = time.perf_counter()
        for ref, segs, rows in media_items(len(vectors)):
            store.write_media(ref, MODEL, [(segs, vectors[rows])])
            for i, s in enumerate(segs, start=rows.start):
                index_of[point_id(ref.media_id, MODEL, ref.fingerprint, s.start_ms, s.end_ms)] = i
        load_s = time.perf_counter() - start
        start = time.perf_counter()
    return index_of, load_s, time.perf_counter() - start


def run(engine: str, kind: str, data: tuple[np.ndarray, np.ndarray, list[str]], options: EdgeOptions,
        encoders: tuple[QueryModel, QueryModel] | None, workdir: Path,
        ef_sweep: Sequence[int] = (),
        oversampling_sweep: Sequence[float] = (),
        metric: QueryMetric | None = None) -> dict[str, Any]:  # fmt: skip
    vectors, queries, phrases = data
    truth = exact_top(vectors, queries)
    before = rss_mb()
    path = workdir / f"{engine}-{kind}-{len(vectors)}"
    store = EdgeStore(path, options=options) if engine == "edge" else client_store()
    store.ensure_collection(MODEL, DIM, query_metric=metric)
    with store:
        try:
            index_of, load_s, build_s = load(store, vectors)
            row = {"n": len(vectors), "vectors": kind, "engine": engine}
            if engine == "client":
                row["client"] = server_url() or "local mode, in memory"
            row |= query_stats(store, queries, truth, index_of, phrases, encoders)
            row |= {"build_s": round(build_s, 1), "load_s": round(load_s, 1),
                    "upsert_per_s": round(len(vectors) / load_s), "rss_mb": round(rss_mb()),
                    "store_rss_mb": round(rss_mb() - before)}  # fmt: skip
            if isinstance(store, EdgeStore):
                row["index"] = "hnsw" if store.indexed else "exact"
                row["graph"] = "query" if metric is not None else "plain"
                row["segments"] = store.segment_count
                row["edge"] = asdict(options)
                row["search_ef"] = options.search_ef(len(vectors), graph=metric is not None)
        finally:  # a server keeps what was written; the other stores are temporary
            drop_server_collection(store)
    if engine == "edge" and row.get("index") == "hnsw" and ef_sweep:
        grid = [(ef, o) for ef in ef_sweep for o in (oversampling_sweep or [options.oversampling])]
        row["ef_sweep"] = [
            sweep_row(path, replace(options, hnsw_ef=ef, oversampling=o), queries, truth, index_of)
            for ef, o in grid
        ]
    return row


def server_url() -> str | None:
    """The Qdrant server the ``client`` engine runs against (``QDRANT_URL``), if any."""
    return os.environ.get("QDRANT_URL") or None


def client_store() -> QdrantStore:
    """qdrant-client against ``QDRANT_URL`` (a collection of its own, dropped afterwards), else
    its local mode in memory."""
    url = server_url()
    if url is None:
        return open_store(url=":memory:")
    name = f"clasp_bench_{uuid.uuid4().hex[:12]}"
    return open_store(url=url, api_key=os.environ.get("QDRANT_API_KEY") or None, collection=name)


def drop_server_collection(store: QdrantStore) -> None:
    """A server keeps what the bench wrote: remove its collection (local and Edge stores are
    temporary anyway)."""
    if not isinstance(store, EdgeStore) and server_url() is not None:
        store.drop()


def sweep_row(path: Path, options: EdgeOptions, queries: np.ndarray, truth: Truth,
              index_of: dict[str, int]) -> dict[str, Any]:  # fmt: skip
    """The same built collection reopened with ``options.hnsw_ef`` (and ``oversampling``, which
    matters for an int8 collection only): recall and search time alone."""
    with EdgeStore(path, options=options) as store:
        stats = query_stats(store, queries, truth, index_of, [], None)
    keep = ("recall_at_10", "recall_at_10_eps", "p50_ms", "p99_ms")
    return {"hnsw_ef": options.hnsw_ef, "oversampling": options.oversampling} | {k: stats[k] for k in keep}


def query_encoders() -> tuple[QueryModel, QueryModel] | None:
    """clasp-mini's query side without a cache (every query encoded) and with one."""
    try:
        model = load_query_model("clasp-mini")
    except Exception as exc:  # no text tower here
        print(f"(no query encoder: {exc})")
        return None
    return QueryModel(model.config, model.text, model.centering, cache_size=0), model


def edge_options(args: argparse.Namespace) -> EdgeOptions:
    base = EdgeOptions()
    changes = {
        "hnsw_m": args.m,
        "hnsw_ef_construct": args.ef_construct,
        "hnsw_ef": args.ef,
        "quantization": args.quantization,
        "oversampling": args.oversampling,
        "optimize_every": args.optimize_every,
        "index_threshold": args.index_threshold,
    }
    options = replace(base, **{k: v for k, v in changes.items() if v is not None})
    return replace(options, quantization=None) if args.quantization == "none" else options


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = ["engine", "vectors", "n", "recall_at_10", "recall_at_10_eps", "p50_ms", "p99_ms",
            "p50_with_text_ms", "p99_with_text_ms", "build_s", "upsert_per_s", "rss_mb"]  # fmt: skip
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join("" if row.get(k) is None else str(row[k]) for k in keys) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[100_000], help="collection sizes")
    parser.add_argument("--vectors", nargs="+", default=["model", "random"], choices=["model", "random"])
    parser.add_argument("--engines", nargs="+", default=["edge"], choices=["edge", "client"])
    parser.add_argument("--queries", type=int, default=200, help="queries per row (Edge)")
    parser.add_argument(
        "--client-queries", type=int, default=20, help="queries for qdrant-client's local mode (brute force)"
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=Path(tempfile.gettempdir()) / "clasp-base.npz",
        help="cached real embeddings (bench/model_vectors.py), built when missing",
    )
    parser.add_argument("--json", action="store_true", help="one JSON row per line instead of a table")
    parser.add_argument("--index-threshold", type=int, help="Edge index_threshold (exact search below)")
    parser.add_argument("--m", type=int, help="Edge hnsw_m (default: EdgeOptions)")
    parser.add_argument("--ef-construct", type=int, help="Edge hnsw_ef_construct")
    parser.add_argument("--ef", type=int, help="Edge hnsw_ef")
    parser.add_argument("--quantization", choices=["int8", "none"], help="Edge quantization")
    parser.add_argument(
        "--graph",
        choices=["query", "plain"],
        default="query",
        help="Edge graph space: query-aware (clasp-mini's query metric, as ingest makes it) "
        "or the plain vectors",
    )
    parser.add_argument("--oversampling", type=float, help="Edge oversampling (int8 collections)")
    parser.add_argument(
        "--optimize-every", type=int, help="Edge optimize_every (index steps during the load)"
    )
    parser.add_argument(
        "--ef-sweep",
        type=int,
        nargs="+",
        default=[],
        help="after an HNSW row, reopen its collection with each hnsw_ef and measure recall and search time",
    )
    parser.add_argument(
        "--oversampling-sweep",
        type=float,
        nargs="+",
        default=[],
        help="with --quantization int8 and --ef-sweep: each hnsw_ef with each of these oversampling factors",
    )
    args = parser.parse_args()
    options, encoders = edge_options(args), query_encoders()
    sample = query_sample("clasp-mini") if args.graph == "query" else None
    metric = QueryMetric.fit(sample) if sample is not None else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for n in args.n:
            for kind in args.vectors:
                nq = args.queries
                data = model_vectors(args.base, n, nq) if kind == "model" else (
                    sphere_vectors(n, DIM, seed=1), sphere_vectors(nq, DIM, seed=2),
                    model_vectors(args.base, 2, nq)[2])  # fmt: skip
                for engine in args.engines:
                    cq = args.queries if engine == "edge" or server_url() else args.client_queries
                    q = (data[0], data[1][:cq], data[2][:cq])
                    row = run(engine, kind, q, options, encoders, Path(tmp), args.ef_sweep,  # type: ignore[arg-type]
                              args.oversampling_sweep, metric)  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row) if args.json else f"done: {engine} {kind} {n}", flush=True)
    if not args.json:
        print_table(rows)
        sweeps = [(r, s) for r in rows for s in r.get("ef_sweep", [])]
        if sweeps:
            cols = ["engine", "vectors", "n", "hnsw_ef", "oversampling", "recall_at_10", "recall_at_10_eps"]
            print("\n| " + " | ".join([*cols, "p50_ms", "p99_ms"]) + " |")
            print("|---|---|---|---|---|---|---|---|---|")
            for r, s in sweeps:
                cells = [r["engine"], r["vectors"], r["n"], *s.values()]
                print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
