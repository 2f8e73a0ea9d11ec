"""Fusion-head training and retrieval-evaluation speed at the paper's sizes (CPU or CUDA).

1. One epoch of the paper-size concat and gating heads (HuBERT-large 1024 + EfficientNet-B7
   1000 → LaBSE 768) over N random feature pairs, batch 32, both losses.
2. Text → audio metrics over the paper's test-set size (11,411 pairs, 768-d): every clip as
   candidate ("all", chunked) and 100 sampled candidates per query.
3. Feature extraction for 32 tone clips with ``tiny-random``: cold (ffmpeg decode +
   backbones) vs from the on-disk cache.

    .venv/bin/python bench/bench_training.py [--pairs 1024] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _head_epochs(pairs: int, device: str) -> list[tuple[str, str]]:
    import torch

    from clasp_ingest.model.fusion import build_fusion
    from clasp_ingest.training.features import FeatureSet
    from clasp_ingest.training.loop import FitOptions, fit_head

    rng = np.random.default_rng(0)
    train = FeatureSet(
        rng.standard_normal((pairs, 1024), dtype=np.float32),
        rng.standard_normal((pairs, 1000), dtype=np.float32),
        rng.standard_normal((pairs, 768), dtype=np.float32),
    )
    val = FeatureSet(train.speech[:256], train.spectrogram[:256], train.text[:256])
    rows = []
    for kind in ("concat", "gating"):
        for loss in ("contrastive", "huber"):
            torch.manual_seed(0)
            head = build_fusion(kind, 1024, 1000, 768)  # type: ignore[arg-type]
            options = FitOptions(loss=loss, max_epochs=2, patience=5, device=device)
            start = time.perf_counter()
            fit_head(head, train, val, options)
            per_epoch = (time.perf_counter() - start) / 2
            rows.append(
                (
                    f"epoch {kind}/{loss}, {pairs} pairs",
                    f"{per_epoch:.2f} s ({pairs / per_epoch:,.0f} pairs/s)",
                )
            )
    return rows


def _metrics(n: int = 11_411) -> list[tuple[str, str]]:
    from clasp_ingest.evaluation.evaluate import sample_candidates, streamed_metrics

    rng = np.random.default_rng(0)
    text = rng.standard_normal((n, 768)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    audio = text + rng.standard_normal((n, 768)).astype(np.float32) * 0.05
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    rows = []
    start = time.perf_counter()
    streamed_metrics(text, audio, None, 0.5)
    rows.append((f"metrics, all candidates, {n} queries", f"{time.perf_counter() - start:.2f} s"))
    start = time.perf_counter()
    streamed_metrics(text, audio, sample_candidates(n, 100, seed=0), 0.5)
    rows.append((f"metrics, 100 candidates, {n} queries", f"{time.perf_counter() - start:.2f} s"))
    return rows


def _features(clips: int = 32) -> list[tuple[str, str]]:
    import soundfile as sf

    from clasp_ingest.model import load_model
    from clasp_ingest.training.features import FeatureCache, compute_features

    model = load_model("tiny-random", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = []
        for i in range(clips):
            t = np.arange(16_000 * 3) / 16_000
            path = root / f"{i}.wav"
            sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32), 16_000)
            paths.append(path)
        texts = [f"clip {i}" for i in range(clips)]
        cache = FeatureCache(root / "cache")
        rows = []
        for label in ("cold", "cached"):
            start = time.perf_counter()
            compute_features(model, paths, texts, cache=cache)
            rows.append(
                (
                    f"tiny-random features, {clips} × 3 s clips, {label}",
                    f"{time.perf_counter() - start:.2f} s",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 on a shared machine"
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(f"{'case':<52}  result", flush=True)
    for part in (lambda: _head_epochs(args.pairs, args.device), _metrics, _features):
        for name, value in part():
            print(f"{name:<52}  {value}", flush=True)


if __name__ == "__main__":
    main()
