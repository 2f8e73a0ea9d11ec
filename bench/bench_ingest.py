"""End-to-end ingest speed: audio seconds per wall second, and where the wall time goes.

Builds ~30 minutes of speech (espeak-ng voices looped into 5-minute mp3 files), then ingests
it into a fresh embedded Qdrant (Edge) with each model, through the plain pipeline and
through the Prefect flow (ephemeral server). Model loading is excluded (done once before).

"outside" = wall time not spent waiting for decode+segment nor embedding: orchestration,
upsert, Prefect. Decoding runs ahead on a thread, so only the time the embedder waited for
it is counted as decode time.

    .venv/bin/python bench/bench_ingest.py [--minutes 30] [--models tiny-random,clasp-mini]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from clasp_ingest.media.decode import find_ffmpeg

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Rivers carry water from the mountains to the sea.",
    "A small library opens early on every weekday.",
    "The train to the coast leaves at half past nine.",
    "Scientists measured the temperature of the lake twice a day.",
    "Our neighbours planted apple trees along the old stone wall.",
    "The museum will show paintings from three different centuries.",
    "Please remember to close the windows before the storm arrives.",
]
VOICES = ["en", "en-us", "en-gb", "en-sc", "en-gb-x-rp", "en-029"]


def make_corpus(root: Path, minutes: float, files: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    per_file = minutes * 60 / files
    out = []
    for index in range(files):
        voice = VOICES[index % len(VOICES)]
        base = root / f"base{index}.wav"
        ssml = '<break time="600ms"/>'.join(SENTENCES[index % 3 :] + SENTENCES[: index % 3])
        subprocess.run(
            ["espeak-ng", "-m", "-v", voice, "-w", str(base), f"<speak>{ssml}</speak>"], check=True
        )
        target = root / "media" / f"talk{index}.mp3"
        target.parent.mkdir(exist_ok=True)
        subprocess.run(
            [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(base),
             "-t", f"{per_file:.1f}", "-ac", "1", "-b:a", "64k", str(target)],
            check=True,
        )  # fmt: skip
        out.append(target)
    return out


def run_pipeline(model_name: str, folder: Path, store_dir: Path, batch: int) -> tuple[object, float]:
    from clasp_ingest.connectors import LocalConnector
    from clasp_ingest.flows.resources import ModelSpec, cached_model

    from clasp_ingest.pipeline import PipelineOptions, ingest_source
    from clasp_ingest.store import open_store

    model = cached_model(ModelSpec(model_name, device="auto"))
    with open_store(path=store_dir) as store:
        started = time.perf_counter()
        summary = ingest_source(LocalConnector(folder), model, store, PipelineOptions(embed_batch_size=batch))
        return summary, time.perf_counter() - started


def run_flow(model_name: str, folder: Path, store_dir: Path, batch: int) -> tuple[object, float]:
    from clasp_ingest.flows import ingest_source, prefect_runtime

    with prefect_runtime():
        empty = store_dir.parent / "empty"
        empty.mkdir(exist_ok=True)
        ingest_source(
            str(empty), model=model_name, qdrant_path=str(store_dir) + "-warmup"
        )  # starts the server
        started = time.perf_counter()
        summary = ingest_source(
            str(folder), model=model_name, device="auto", qdrant_path=str(store_dir), embed_batch_size=batch
        )
        return summary, time.perf_counter() - started


def row(model: str, mode: str, summary: object, wall: float) -> str:
    times = summary.times  # type: ignore[attr-defined]
    audio = summary.audio_s  # type: ignore[attr-defined]
    inside = times.decode_segment_s + times.embed_s
    outside = max(0.0, wall - inside)
    return (
        f"| {model} | {mode} | {audio:.0f} | {summary.segments} | {wall:.1f} | {audio / wall:.1f}x | "  # type: ignore[attr-defined]
        f"{times.decode_segment_s:.1f} | {times.embed_s:.1f} | {times.upsert_s:.1f} | {outside:.1f} | "
        f"{100 * outside / wall:.1f}% |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--models", default="tiny-random,clasp-mini")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--modes", default="pipeline,flow")
    args = parser.parse_args()
    from clasp_ingest.flows.resources import ModelSpec, cached_model

    with tempfile.TemporaryDirectory(prefix="clasp-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        make_corpus(root, args.minutes, args.files)
        print(
            f"corpus: {args.minutes:.0f} min in {args.files} mp3 files, "
            f"built in {time.perf_counter() - started:.1f} s"
        )
        lines = [
            "| model | mode | audio s | segments | wall s | audio s / wall s | decode+segment wait s "
            "| embed s | upsert s | outside s | outside share |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for model in args.models.split(","):
            try:
                load_started = time.perf_counter()
                loaded = cached_model(ModelSpec(model, device="auto"))
                loaded.encode_audio([np.zeros(16000 * 4, dtype=np.float32)] * 2)  # warm-up
                print(f"{model}: loaded in {time.perf_counter() - load_started:.1f} s")
            except Exception as exc:
                lines.append(f"| {model} | — | unavailable here: {type(exc).__name__}: {str(exc)[:120]} |")
                continue
            for mode in args.modes.split(","):
                runner = run_pipeline if mode == "pipeline" else run_flow
                summary, wall = runner(model, root / "media", root / f"q-{model}-{mode}", args.batch)
                lines.append(row(model, mode, summary, wall))
                print(lines[-1], flush=True)
        print("\n".join(lines))


if __name__ == "__main__":
    main()
