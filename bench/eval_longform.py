"""Long-form validation: clips joined into files, cut by the real segmenter, then retrieved.

Clip-level sets feed each clip to the model whole; ingestion embeds the segments that
:func:`~clasp_ingest.media.segment.segment_media` cuts from long media, with their own
leading and trailing silence. This measures that path (clasp-mini's card, "Leading silence").

``build`` joins the validation clips of a manifest (``--val``, its ``val`` split), 8 per
file with 1 s pauses of faint noise, and likewise the English clips of a cross-lingual set
(``--xv DIR`` holding ``xling_<lang>.jsonl`` from ``bench/eval_mini.py xling``), writes the
files as WAV and cuts them with ``segment_media``; the segments go to ``OUT/segments.pkl``.
``run`` embeds the segments with each model and ranks them for every query: a query is right
at the first segment that overlaps its clip by at least half the clip. It prints MRR for
the val queries (same language), for fr/de/es queries on the English files, and for those
among the val files too ("mixed"), and the criterion of clasp-mini's selection (val MRR +
mean fr/de/es + mean mixed fr/de/es).

    python bench/eval_longform.py build --val t5k.jsonl --xv xv --out lf
    python bench/eval_longform.py run --data lf --models clasp-mini ftD
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np

QUERY_LANGS = ("fr", "de", "es")
PER_FILE = 8
PAUSE_S = 1.0  # of faint noise (augment.pad_clip) before every clip and after the last


def _join(rows: list[Any], folder: Path, name: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    import soundfile as sf

    from clasp_ingest.media.segment import segment_media
    from clasp_ingest.model.base import SAMPLE_RATE
    from clasp_ingest.training.augment import pad_clip
    from clasp_ingest.training.features import load_waveform

    files = []
    for start in range(0, len(rows), PER_FILE):
        parts, spans, t = [], [], 0.0
        for row in rows[start : start + PER_FILE]:
            audio = load_waveform(row.audio)
            parts.append(pad_clip(audio, PAUSE_S, 0.0, rng))
            spans.append((t + PAUSE_S, t + PAUSE_S + len(audio) / SAMPLE_RATE))
            t = spans[-1][1]
        parts.append(pad_clip(np.zeros(0, np.float32), PAUSE_S, 0.0, rng))
        path = folder / f"{name}_{start // PER_FILE:03d}.wav"
        sf.write(path, np.concatenate(parts), SAMPLE_RATE)
        segments = [(s.segment.start_s, s.segment.end_s, s.samples) for s in segment_media(path)]
        files.append({"spans": spans, "segments": segments})
    return files


def cmd_build(args: argparse.Namespace) -> None:
    from clasp_ingest.training.manifest import read_manifest, select_split

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {
        "val": _join(select_split(read_manifest(args.val), "val"), args.out, "val", rng),
        "xv": _join(read_manifest(args.xv / "xling_en.jsonl"), args.out, "xv", rng),
    }
    meta = {"val": str(args.val.resolve()), "xv": str(args.xv.resolve())}
    with (args.out / "segments.pkl").open("wb") as fh:
        pickle.dump({"sets": data, "sources": meta}, fh)
    for name, files in data.items():
        print(f"{name}: {len(files)} files, {sum(len(f['segments']) for f in files)} segments")


def _mrr(
    queries: np.ndarray, vectors: np.ndarray, where: list[tuple[int, float, float]], targets: list[Any]
) -> float:
    """MRR of the first segment of the query's file overlapping its clip by >= half the clip."""
    reciprocal = []
    for q, (file_no, (start, end)) in zip(queries @ vectors.T, targets, strict=True):
        rank = 0
        for position, j in enumerate(np.argsort(-q), 1):
            f, s0, s1 = where[j]
            if f == file_no and min(end, s1) - max(start, s0) >= 0.5 * (end - start):
                rank = position
                break
        reciprocal.append(1.0 / rank if rank else 0.0)
    return float(np.mean(reciprocal))


def _embed(model: Any, files: list[dict[str, Any]], offset: int) -> tuple[np.ndarray, list[Any], list[Any]]:
    where = [(i + offset, s0, s1) for i, f in enumerate(files) for s0, s1, _ in f["segments"]]
    waves = [w for f in files for _, _, w in f["segments"]]
    vectors = np.concatenate([model.encode_audio(waves[i : i + 8]) for i in range(0, len(waves), 8)])
    targets = [(i + offset, span) for i, f in enumerate(files) for span in f["spans"]]
    return vectors, where, targets


def cmd_run(args: argparse.Namespace) -> None:
    from clasp_ingest.model import load_model, set_torch_threads
    from clasp_ingest.training.manifest import read_manifest, select_split

    set_torch_threads(args.threads)
    with (args.data / "segments.pkl").open("rb") as fh:
        stored = pickle.load(fh)  # our own file, written by `build`
    sets, sources = stored["sets"], stored["sources"]
    val_texts = [r.text for r in select_split(read_manifest(sources["val"]), "val")]
    xv_dir = Path(sources["xv"])
    print("| model | val | fr / de / es | mixed fr / de / es | criterion |")
    print("|---|---:|---|---|---:|")
    for name in args.models:
        model = load_model(name, device="cpu")
        val_v, val_w, val_t = _embed(model, sets["val"], 0)
        xv_v, xv_w, xv_t = _embed(model, sets["xv"], len(sets["val"]))
        val = _mrr(model.encode_text(val_texts), val_v, val_w, val_t)
        alone, mixed = [], []
        for lang in QUERY_LANGS:
            q = model.encode_text([r.text for r in read_manifest(xv_dir / f"xling_{lang}.jsonl")])
            alone.append(_mrr(q, xv_v, xv_w, xv_t))
            mixed.append(_mrr(q, np.concatenate([xv_v, val_v]), xv_w + val_w, xv_t))
        criterion = val + float(np.mean(alone)) + float(np.mean(mixed))
        fmt = " / ".join
        print(
            f"| {name} | {val:.3f} | {fmt(f'{x:.3f}' for x in alone)} | {fmt(f'{x:.3f}' for x in mixed)} "
            f"| {criterion:.3f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--val", type=Path, required=True, help="manifest whose val split is joined")
    b.add_argument("--xv", type=Path, required=True, help="folder of xling_<lang>.jsonl (English clips)")
    b.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True, help="the folder `build` wrote")
    r.add_argument("--models", nargs="+", default=["clasp-mini"])
    r.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cmd_build(args) if args.cmd == "build" else cmd_run(args)


if __name__ == "__main__":
    main()
