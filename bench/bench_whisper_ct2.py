"""Whisper-base (CTranslate2) speech branch speed on this machine: window mode x compute type.

    .venv/bin/python bench/bench_whisper_ct2.py [--threads 2]

Prints seconds per clip and real-time factor (audio seconds per wall second) for 2/5/10 s clips,
batches of 8, ``window="full"`` (30 s padded, Whisper's training condition) and ``"trim"``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from clasp_ingest.model.whisper_ct2 import WhisperCT2Options, WhisperCT2SpeechEncoder

SR = 16_000


def clips(seconds: float, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    return [
        (0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} cores, {args.threads} CT2 threads, batch {args.batch}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    header = f"{'compute':<8} {'window':<6} {'clip s':>6} {'s/clip':>8} {'x real time':>11}"
    print(header)
    print("-" * len(header))
    for compute in ("int8", "float32"):
        for window in ("full", "trim"):
            opts = WhisperCT2Options(window=window, batch_size=args.batch, intra_threads=args.threads)
            enc = WhisperCT2SpeechEncoder.from_packages(compute_type=compute, options=opts)
            enc.encode(clips(2.0, 1))
            for seconds in (2.0, 5.0, 10.0):
                batch = clips(seconds, args.batch)
                start = time.perf_counter()
                enc.encode(batch)
                per_clip = (time.perf_counter() - start) / len(batch)
                print(
                    f"{compute:<8} {window:<6} {seconds:>6.0f} {per_clip:>8.3f} {seconds / per_clip:>11.1f}"
                )


if __name__ == "__main__":
    main()
