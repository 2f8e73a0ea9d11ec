"""Silence-padded copies of a manifest's training clips (augmentation for ``clasp-ingest train``).

Synthetic training clips start within a few hundredths of a second of speech, but the
segments that ingestion cuts from long media carry more silence around the speech (the
segmenter's padding and the VAD's onset error, often 0.1-0.3 s). A head trained on tight
clips alone scores a segment lower the more silence leads it. Training on padded copies as
well teaches it to ignore that silence.

    python -m clasp_ingest.training.augment MANIFEST --out DIR --count N \\
        [--lead 0.05 0.4] [--trail 0 0.3] [--seed 0]

writes ``DIR/clips/NNNNNN.flac`` (``--count`` train rows drawn at random, each with a
uniformly drawn leading and trailing pause of faint noise) and ``DIR/manifest.jsonl``: every
row of MANIFEST, then the copies (split ``train``, the same text and language). Train on
that manifest. A clip that cannot be decoded is skipped with a warning.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clasp_ingest.errors import ClaspIngestError, ConfigError, MediaDecodeError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import SAMPLE_RATE

__all__ = ["AugmentReport", "augment_manifest", "main", "pad_clip"]

log = get_logger("training.augment")

#: Level of the noise in the padding: far below speech, but not digital silence.
NOISE_RMS = 1e-4


@dataclass
class AugmentReport:
    """What :func:`augment_manifest` wrote."""

    manifest: Path
    rows: int = 0
    copies: int = 0
    skipped: int = 0
    seconds_added: float = 0.0


def pad_clip(audio: np.ndarray, lead_s: float, trail_s: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` (16 kHz mono) with ``lead_s`` / ``trail_s`` seconds of faint noise around it."""
    if lead_s < 0 or trail_s < 0:
        raise ConfigError(f"padding must be >= 0 s, got lead {lead_s}, trail {trail_s}")

    def noise(seconds: float) -> np.ndarray:
        return (rng.standard_normal(round(seconds * SAMPLE_RATE)) * NOISE_RMS).astype(np.float32)

    return np.concatenate([noise(lead_s), np.asarray(audio, np.float32), noise(trail_s)])


def _check_range(name: str, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not 0 <= low <= high:
        raise ConfigError(f"--{name} needs 0 <= LOW <= HIGH seconds, got {low} {high}")


def _as_row(audio: Path, text: str, language: str | None, split: str | None) -> dict[str, str]:
    item = {"audio": str(audio), "text": text, "language": language, "split": split}
    return {key: value for key, value in item.items() if value is not None}


def augment_manifest(
    manifest: Path | str,
    out: Path | str,
    *,
    count: int,
    lead: tuple[float, float] = (0.05, 0.4),
    trail: tuple[float, float] = (0.0, 0.3),
    seed: int = 0,
) -> AugmentReport:
    """Write ``count`` padded copies of random train rows of ``manifest`` and the joint manifest."""
    from clasp_ingest.training.corpus import write_clip, write_jsonl
    from clasp_ingest.training.features import load_waveform
    from clasp_ingest.training.manifest import read_manifest, select_split

    _check_range("lead", lead)
    _check_range("trail", trail)
    rows = read_manifest(manifest)
    train = select_split(rows, "train")
    if not 1 <= count <= len(train):
        raise ConfigError(
            f"--count must be between 1 and the {len(train)} train rows of {manifest}, got {count}"
        )
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(train), count, replace=False))
    report = AugmentReport(manifest=out / "manifest.jsonl", rows=len(rows))
    copies: list[dict[str, str]] = []
    for number, index in enumerate(picked):
        row = train[index]
        try:
            audio = load_waveform(row.audio)
        except (MediaDecodeError, OSError) as exc:
            log.warning("skipping %s: %s", row.audio, exc)
            report.skipped += 1
            continue
        lead_s, trail_s = rng.uniform(*lead), rng.uniform(*trail)
        path = out / "clips" / f"{number:06d}.flac"
        write_clip(path, pad_clip(audio, lead_s, trail_s, rng))
        copies.append(_as_row(path.resolve(), row.text, row.language, "train"))
        report.seconds_added += lead_s + trail_s
        if (number + 1) % 1000 == 0:
            log.info("augment: %d/%d clips", number + 1, count)
    report.copies = len(copies)
    write_jsonl(report.manifest, [*(_as_row(r.audio, r.text, r.language, r.split) for r in rows), *copies])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m clasp_ingest.training.augment", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("manifest", type=Path, help="training manifest (its train rows are copied)")
    parser.add_argument("--out", type=Path, required=True, help="folder for clips/ and manifest.jsonl")
    parser.add_argument("--count", type=int, required=True, help="padded copies to write")
    parser.add_argument("--lead", type=float, nargs=2, default=(0.05, 0.4), metavar=("LOW", "HIGH"))
    parser.add_argument("--trail", type=float, nargs=2, default=(0.0, 0.3), metavar=("LOW", "HIGH"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    args = parser.parse_args(argv)
    try:
        report = augment_manifest(
            args.manifest,
            args.out,
            count=args.count,
            lead=tuple(args.lead),
            trail=tuple(args.trail),
            seed=args.seed,
        )
    except (ClaspIngestError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(report).items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
