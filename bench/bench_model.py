"""Encode throughput and peak RSS of the full-size clasp-official architecture (random init).

HuBERT-large (from ``HubertConfig`` with large sizes) + EfficientNet-B7 in both spectrogram
modes, built without downloading anything. Each case runs in its own subprocess so its peak
RSS (and, on a GPU, peak GPU memory) is its own. Prints a table: audio seconds encoded per
wall second (higher is better).

    .venv/bin/python bench/bench_model.py [--clips 4] [--seconds 6] [--threads 2]
    .venv/bin/python bench/bench_model.py --device cuda --dtype bf16 --clips 64   # a GPU worker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

SR = 16_000
CASES = ("speech", "reference-render", "reference-spec", "native-spec", "full-reference", "full-native")


def _clips(n: int, seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for i in range(n):
        voiced = np.sin(2 * np.pi * (120 + 20 * i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        out.append((0.3 * voiced + 0.02 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def _hubert_large(runtime: Any) -> Any:
    from transformers import HubertConfig, HubertModel

    from clasp_ingest.model.speech import HFSpeechEncoder

    config = HubertConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
    )
    return HFSpeechEncoder(HubertModel(config), runtime)


def _spec(mode: str, runtime: Any) -> Any:
    from clasp_ingest.model.config import ComponentSpec

    if mode == "reference":
        from clasp_ingest.model.reference import build_reference_spectrogram

        spec = ComponentSpec("reference", "efficientnet_b7", 1000, {"weights": None})
        return build_reference_spectrogram(spec, runtime)
    from clasp_ingest.model.spectrogram import build_native_spectrogram

    return build_native_spectrogram(ComponentSpec("native", "efficientnet_b7", 2560, {}), runtime)


def _full(mode: str, runtime: Any) -> Any:
    from clasp_ingest.model.clasp import ClaspModel
    from clasp_ingest.model.config import ComponentSpec, FusionSpec, ModelConfig
    from clasp_ingest.model.fusion import build_fusion
    from clasp_ingest.model.tiny import build_tiny_text

    spec = _spec(mode, runtime)
    text = ComponentSpec("tiny-bert", "unused", 768, {"layers": 1})
    config = ModelConfig(
        f"bench-{mode}",
        ComponentSpec("hf", "random-hubert-large", 1024),
        ComponentSpec(mode, "efficientnet_b7", spec.dim),
        FusionSpec("concat", 1024, spec.dim, 768),
        text,
    )
    fusion = build_fusion("concat", 1024, spec.dim, 768)
    return ClaspModel(config, _hubert_large(runtime), spec, fusion, build_tiny_text(text, runtime), runtime)


def run_case(
    case: str, n_clips: int, seconds: float, threads: int, device: str = "cpu", dtype: str = "fp32"
) -> dict[str, Any]:
    import torch

    from clasp_ingest.model.config import Runtime

    torch.set_num_threads(threads)
    runtime = Runtime.resolve(device, dtype, batch_size=n_clips)
    clips = _clips(n_clips, seconds)
    start = time.perf_counter()
    if case == "speech":
        encode = _hubert_large(runtime).encode
    elif case == "reference-render":  # the matplotlib image alone, no CNN
        from clasp_ingest.model.reference import render_spectrogram

        def encode(items: list[np.ndarray]) -> np.ndarray:
            return np.stack([render_spectrogram(w).mean(axis=(0, 1)) for w in items])

    elif case.endswith("-spec"):
        encode = _spec(case.removesuffix("-spec"), runtime).encode
    else:
        encode = _full(case.removeprefix("full-"), runtime).encode_audio
    built = time.perf_counter() - start
    encode(clips[:1])  # warm-up (first-call allocations, font cache for the render, CUDA kernels)
    if runtime.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = encode(clips)  # numpy out: the GPU work has finished when it returns
    wall = time.perf_counter() - start
    assert np.isfinite(out).all()
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if runtime.device.startswith("cuda") else 0.0
    return {
        "case": case,
        "build_s": built,
        "encode_s": wall,
        "audio_s": n_clips * seconds,
        "x_realtime": n_clips * seconds / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": gpu_mb,
        "device": runtime.device,
        "dtype": runtime.dtype,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--dtype", default="auto", help="fp32, bf16, fp16 or auto (fp32 CPU, bf16 GPU)")
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES)
    )
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        row = run_case(args.case, args.clips, args.seconds, args.threads, args.device, args.dtype)
        print(json.dumps(row))
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    rows = []
    for case in cases:
        cmd = [sys.executable, __file__, "--case", case, "--clips", str(args.clips)]
        cmd += ["--seconds", str(args.seconds), "--threads", str(args.threads)]
        cmd += ["--device", args.device, "--dtype", args.dtype]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{case}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    where = f"{rows[0]['device']}, {rows[0]['dtype']}" if rows else args.device
    print(f"clips: {args.clips} × {args.seconds:g} s, torch threads: {args.threads}, {where}, random init")
    header = f"{'case':<16} {'build s':>8} {'encode s':>9} {'audio s/s':>10}"
    print(f"{header} {'peak RSS MB':>12} {'peak GPU MB':>12}")
    for r in rows:
        print(
            f"{r['case']:<16} {r['build_s']:>8.1f} {r['encode_s']:>9.2f} {r['x_realtime']:>10.2f} "
            f"{r['peak_rss_mb']:>12.0f} {r['peak_gpu_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
