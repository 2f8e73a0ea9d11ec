"""What words cost: Whisper transcription of one span, and a search that transcribes lazily.

1. **Per span**: windows of 5, 10 and 15 s cut (ffmpeg seek, as lazy search does) from the
   bundled samples — ``librivox_austen.opus`` (a human reader) and ``demo_en.opus`` (espeak-ng)
   — transcribed by :class:`~clasp_ingest.transcribe.Transcriber` (faster-whisper, the bundled
   Whisper-base, int8, ``--threads`` CPU threads, greedy): with the language detected (the
   default) and given. Median of ``--repeat`` runs; wall and process CPU seconds.
2. **Search**: the bundled samples ingested with ``--model`` (default clasp-mini) into an
   embedded store; for each demo query a fresh copy of that store, then
   ``ClaspRetriever(k=4, transcribe="lazy")``: the first search (text encoding, search, cut,
   transcription and write-back of the spans without words) and ``--repeat`` repeated
   searches (the words are stored: nothing is transcribed). ``never``: the same search
   without words, for reference.

The machine is shared: the load average at the start and end is printed with the numbers.

    .venv/bin/python bench/bench_words.py [--repeat 5] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_rerank import Counting  # this folder (bench/)

from clasp_ingest.transcribe import Transcriber, TranscriberOptions

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "clasp_ingest" / "data" / "samples"


def _cut(source: Path, start_s: float, end_s: float) -> np.ndarray:
    from clasp_ingest.retriever.audio import span_samples
    from clasp_ingest.retriever.spans import Span

    # a Span made here is cut as given (a store's hit of a local file needs its recorded version)
    return span_samples(Span("m", source.as_uri(), source.stem, start_s, end_s, 0.0))


def _timed(func: Any) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def per_span(transcriber: Transcriber, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name in ("librivox_austen", "demo_en"):
        for seconds in (5.0, 10.0, 15.0):
            audio = _cut(SAMPLES / f"{name}.opus", 0.0, seconds)
            for language in (None, "en"):
                runs = [_timed(lambda a=audio, lang=language: transcriber.transcribe(a, language=lang))
                        for _ in range(repeat)]  # fmt: skip
                rows.append({
                    "sample": name, "span_s": seconds, "language": language or "detected",
                    "wall_s": statistics.median(r[0] for r in runs),
                    "cpu_s": statistics.median(r[1] for r in runs),
                    "text": runs[-1][2].text,
                })  # fmt: skip
    return rows


def _ingest(model_name: str, folder: Path) -> None:
    from clasp_ingest.connectors.local import LocalConnector

    from clasp_ingest.model import load_model
    from clasp_ingest.pipeline import ingest_source
    from clasp_ingest.store import open_store

    model = load_model(model_name, device="cpu")
    with open_store(path=folder, collection="bench_words") as store:
        ingest_source(LocalConnector(SAMPLES), model, store)


def searches(model_name: str, transcriber: Counting, repeat: int, k: int) -> list[dict[str, Any]]:
    from clasp_ingest.retriever.loading import query_model_for

    from clasp_ingest.demo import demo_queries
    from clasp_ingest.store import open_store

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pristine = Path(tmp) / "pristine"
        _ingest(model_name, pristine)
        with open_store(path=pristine, collection="bench_words") as store:
            encoder = query_model_for(store, model_name, device="cpu")
        for i, query in enumerate(demo_queries()):
            copy = Path(tmp) / f"q{i}"
            shutil.copytree(pristine, copy)
            with open_store(path=copy, collection="bench_words") as store:
                rows.append(_one_query(store, encoder, transcriber, query.text, repeat, k))
    return rows


def _one_query(
    store: Any, encoder: Any, transcriber: Counting, text: str, repeat: int, k: int
) -> dict[str, Any]:
    from clasp_ingest.retriever import ClaspRetriever

    never = ClaspRetriever(store=store, model=encoder, k=k)
    never.invoke(text)  # untimed: the query's vector is encoded once and cached, for every mode alike
    plain = [_timed(lambda: never.invoke(text))[0] for _ in range(repeat)]
    lazy = ClaspRetriever(store=store, model=encoder, k=k, transcribe="lazy", transcriber=transcriber)
    before = transcriber.calls
    first, _, docs = _timed(lambda: lazy.invoke(text))
    spans = transcriber.calls - before
    cached = [_timed(lambda: lazy.invoke(text))[0] for _ in range(repeat)]
    if transcriber.calls - before != spans:
        raise RuntimeError("a repeated search transcribed again")
    return {
        "query": text, "first_s": first, "transcribed": spans,
        "cached_s": statistics.median(cached), "never_s": statistics.median(plain),
        "top_words": docs[0].page_content if docs else None,
    }  # fmt: skip


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="clasp-mini")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    load_start = os.getloadavg()
    transcriber = Counting(TranscriberOptions(cpu_threads=args.threads, device="cpu"))
    load_s, _, _ = _timed(transcriber.load)
    spans = per_span(transcriber, args.repeat)
    transcriber.calls = 0
    search = searches(args.model, transcriber, args.repeat, args.k)
    result = {
        "threads": args.threads, "model_load_s": load_s, "per_span": spans, "search": search,
        "loadavg": {"start": load_start, "end": os.getloadavg()},
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return
    print(f"Whisper-base (faster-whisper, int8, {args.threads} threads) load: {load_s:.2f} s")
    print(f"{'sample':16} {'span':>5} {'language':>9} {'wall s':>7} {'cpu s':>6}  text")
    for r in spans:
        print(f"{r['sample']:16} {r['span_s']:5.0f} {r['language']:>9} {r['wall_s']:7.2f} {r['cpu_s']:6.2f}  "
              f"{r['text'][:60]}")  # fmt: skip
    first = [r["first_s"] * 1000 for r in search]
    cached = [r["cached_s"] * 1000 for r in search]
    never = [r["never_s"] * 1000 for r in search]
    print(f"\nsearch, {args.model}, k={args.k}, {len(search)} queries, fresh store each "
          f"({sum(r['transcribed'] for r in search)} spans transcribed)")  # fmt: skip
    for name, values in (("first (lazy)", first), ("repeated", cached), ("never", never)):
        print(f"  {name:13} p50 {_p(values, 50):8.1f} ms   p99 {_p(values, 99):8.1f} ms")
    print(f"load average: start {load_start}, end {os.getloadavg()}")


if __name__ == "__main__":
    main()
