"""Ingest-time words: what ``ingest --transcribe`` costs, and what ``search --hybrid`` gains.

1. **Ingest**: the bundled samples (``clasp_ingest/data/samples``: 4 files, 22 spoken
   sentences, en/de/es espeak-ng and a LibriVox reader) ingested into a fresh embedded store
   (Qdrant Edge) by the pipeline, as ``clasp-ingest ingest`` runs it, without and with
   ``--transcribe`` (each file transcribed once, whole, by the bundled Whisper-base, int8,
   greedy; words cut into the spans; ``text`` and ``words`` vectors). The models are loaded
   before the clock starts (their load times are printed apart). Median of ``--repeat`` runs.
2. **Quality**: on the store ingested with words, the 8 demo queries (``demo.json``, mostly
   cross-lingual) and the 22 sentences' own texts; a query is right when its first span
   overlaps its sentence by half (``clasp_ingest.demo.is_expected``); MRR within the first
   ``--k``. Rankings: CLASP alone; ``--hybrid`` (prefetch of ``--k``·4 from each of ``clasp``,
   ``text``, ``words``, fused by RRF in one Query API call); ``--rerank K`` for reference (the
   words are already stored, so nothing is transcribed). Repeated-query latency p50/p99.

The machine is shared: the load average at the start and end is printed with the numbers.

    .venv/bin/python bench/bench_hybrid.py [--repeat 1] [--k 10] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rerank import _p, _quality, _right, _timed, sentence_queries

from clasp_ingest.demo import demo_queries, samples_dir

COLLECTION = "bench_hybrid"


def ingest_once(model: Any, folder: Path, transcribe: Any) -> dict[str, Any]:
    from clasp_ingest.connectors.local import LocalConnector

    from clasp_ingest.pipeline import PipelineOptions, ingest_source
    from clasp_ingest.store import open_store

    with open_store(path=folder, collection=COLLECTION) as store:
        started = time.perf_counter()
        summary = ingest_source(
            LocalConnector(samples_dir()), model, store, PipelineOptions(transcribe=transcribe),
            model_source="clasp-mini",
        )  # fmt: skip
        wall = time.perf_counter() - started
    if summary.media_failed:
        raise SystemExit(f"ingest failed: {summary.media_failed}")
    return {"wall_s": wall, "audio_s": summary.audio_s, "segments": summary.segments,
            "words_s": summary.times.words_s, "embed_s": summary.times.embed_s}  # fmt: skip


def ingest_table(model: Any, transcribe: Any, repeat: int, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, options in (("clasp only", None), ("--transcribe", transcribe)):
        runs = [ingest_once(model, tmp / f"{label}-{i}".replace(" ", "_"), options) for i in range(repeat)]
        out[label] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return out


def quality(retriever: Any, sets: dict[str, list[Any]], opts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    times: list[float] = []
    for name, queries in sets.items():
        rows = []
        for q in queries:
            spent, spans = _timed(lambda q=q: retriever.retrieve_spans(q.text, **opts))  # type: ignore[misc]
            times.append(spent)
            rows.append([_right(s, q) for s in spans])
        out[name] = _quality(rows)
    out["p50_ms"], out["p99_ms"] = _p(times, 50) * 1000, _p(times, 99) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from clasp_ingest.retriever import ClaspRetriever
    from clasp_ingest.retriever.loading import query_model_for

    from clasp_ingest.model.deferred import DeferredModel
    from clasp_ingest.store import open_store
    from clasp_ingest.transcribe import TranscriberOptions
    from clasp_ingest.words import shared_transcriber

    result: dict[str, Any] = {"k": args.k, "threads": args.threads, "loadavg_start": os.getloadavg()}
    model = DeferredModel("clasp-mini", device="cpu", threads=args.threads)
    result["model_load_s"], _ = _timed(model.loaded)
    transcribe = TranscriberOptions(device="cpu", cpu_threads=args.threads)
    result["whisper_load_s"], _ = _timed(shared_transcriber(transcribe).load)
    sets = {"demo": demo_queries(), "sentences": sentence_queries()}
    with tempfile.TemporaryDirectory() as tmp:
        result["ingest"] = ingest_table(model, transcribe, args.repeat, Path(tmp))
        with open_store(path=Path(tmp) / "--transcribe-0", collection=COLLECTION) as store:
            encoder = query_model_for(store, "clasp-mini", device="cpu")
            r = ClaspRetriever(store=store, model=encoder, k=args.k, transcribe="ingest")
            r.retrieve_spans("warm up", hybrid=True)
            result["clasp"] = quality(r, sets, {})
            result["hybrid"] = quality(r, sets, {"hybrid": True})
            result["rerank"] = quality(r, sets, {"rerank": args.k})
    result["loadavg_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=1))
        return
    _print(result)


def _print(result: dict[str, Any]) -> None:
    loads = f"clasp-mini {result['model_load_s']:.1f} s, Whisper-base {result['whisper_load_s']:.1f} s"
    print(f"clasp-mini on the bundled samples, {result['threads']} threads; models loaded first ({loads})")
    print(f"{'ingest':14} {'audio s':>8} {'spans':>6} {'wall s':>7} {'x real time':>11} {'words s':>8}")
    rows = result["ingest"]
    for label, row in rows.items():
        print(f"{label:14} {row['audio_s']:8.1f} {row['segments']:6d} {row['wall_s']:7.2f} "
              f"{row['audio_s'] / row['wall_s']:11.1f} {row['words_s']:8.2f}")  # fmt: skip
    ratio = rows["--transcribe"]["wall_s"] / rows["clasp only"]["wall_s"]
    print(f"--transcribe / clasp only: {ratio:.2f}x the ingest time")
    print()
    k = result["k"]
    print(f"{'ranking':16} {'demo H@1':>8} {'MRR':>6} {'sent H@1':>8} {'MRR':>6} {'p50 ms':>7} {'p99 ms':>7}")
    for label, key in (("clasp alone", "clasp"), ("--hybrid", "hybrid"), (f"--rerank {k}", "rerank")):
        row = result[key]
        print(f"{label:16} {row['demo']['hits@1']:8.3f} {row['demo']['mrr']:6.3f} "
              f"{row['sentences']['hits@1']:8.3f} {row['sentences']['mrr']:6.3f} "
              f"{row['p50_ms']:7.1f} {row['p99_ms']:7.1f}")  # fmt: skip
    print(f"load average: start {result['loadavg_start']}, end {result['loadavg_end']}")


if __name__ == "__main__":
    main()
