"""Augmented copies of a manifest's training clips (for ``clasp-ingest train``): silence padding,
telephone channels, background noise.

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

Recorded speech is rarely studio-clean, so two more effects can be drawn per copy (their own
seeded stream: with both at 0 the copies are exactly what they were before these existed):

* ``--telephone SHARE``: that share of the copies goes through a telephone channel with real
  codecs, by ffmpeg: 300–3,400 Hz band, 8 kHz, then one of ``--codecs`` (default: all that the
  installed ffmpeg encodes; Debian 12's has no AMR encoder, so there ``amr`` is left out with a
  warning, and asking for it is an error):
  ``mulaw`` / ``alaw`` (G.711), ``g726`` (32 kb/s ADPCM), ``amr`` (AMR-NB 7.95 kb/s, GSM
  phones), ``opus`` (8 kb/s), decoded back to 16 kHz;
* ``--noise SHARE``: that share gets background noise at a signal-to-noise ratio drawn from
  ``--snr LOW HIGH`` dB (default 5 20): a random excerpt of a file from ``--noise-dir`` (any
  audio ffmpeg reads, e.g. music or ambience from Debian packages) or, without one, seeded
  white, pink or brown noise.

``DIR/augment.jsonl`` records, per copy, its source clip and what was applied.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clasp_ingest.errors import ClaspIngestError, ConfigError, MediaDecodeError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import SAMPLE_RATE

__all__ = [
    "CODECS",
    "AugmentReport",
    "add_noise",
    "augment_manifest",
    "coloured_noise",
    "main",
    "pad_clip",
    "telephone",
]

log = get_logger("training.augment")

#: Level of the noise in the padding: far below speech, but not digital silence.
NOISE_RMS = 1e-4

#: Telephone codecs: name → ffmpeg encoder arguments and container (8 kHz mono input).
CODECS: dict[str, tuple[str, ...]] = {
    "mulaw": ("-c:a", "pcm_mulaw", "-f", "mulaw"),
    "alaw": ("-c:a", "pcm_alaw", "-f", "alaw"),
    "g726": ("-c:a", "g726", "-b:a", "32k", "-f", "g726"),
    "amr": ("-c:a", "libopencore_amrnb", "-b:a", "7.95k", "-f", "amr"),
    "opus": ("-c:a", "libopus", "-b:a", "8k", "-f", "ogg"),
}
#: What the decoder must be told about a headerless stream.
_RAW_INPUT: dict[str, tuple[str, ...]] = {
    "mulaw": ("-f", "mulaw", "-ar", "8000", "-ac", "1"),
    "alaw": ("-f", "alaw", "-ar", "8000", "-ac", "1"),
    "g726": ("-f", "g726", "-code_size", "4", "-ar", "8000", "-ac", "1"),
}


@dataclass
class AugmentReport:
    """What :func:`augment_manifest` wrote."""

    manifest: Path
    rows: int = 0
    copies: int = 0
    skipped: int = 0
    seconds_added: float = 0.0
    telephone: int = 0
    noisy: int = 0


def pad_clip(audio: np.ndarray, lead_s: float, trail_s: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` (16 kHz mono) with ``lead_s`` / ``trail_s`` seconds of faint noise around it."""
    if lead_s < 0 or trail_s < 0:
        raise ConfigError(f"padding must be >= 0 s, got lead {lead_s}, trail {trail_s}")

    def noise(seconds: float) -> np.ndarray:
        return (rng.standard_normal(round(seconds * SAMPLE_RATE)) * NOISE_RMS).astype(np.float32)

    return np.concatenate([noise(lead_s), np.asarray(audio, np.float32), noise(trail_s)])


def _ffmpeg(args: Sequence[str], data: bytes, what: str) -> bytes:
    from clasp_ingest.media.decode import find_ffmpeg

    proc = subprocess.run(
        [find_ffmpeg(), "-nostdin", "-v", "error", *args], input=data, capture_output=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout:
        raise ClaspIngestError(f"ffmpeg failed to {what}: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


@functools.cache
def _encoders(ffmpeg: str) -> frozenset[str]:
    """The audio encoders ``ffmpeg`` was built with (``ffmpeg -encoders``: flags, name, text)."""
    proc = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False)
    rows = (line.split() for line in proc.stdout.splitlines())
    return frozenset(row[1] for row in rows if len(row) > 1 and row[0].startswith("A"))


def missing_codecs(codecs: Sequence[str]) -> list[str]:
    """Those of ``codecs`` whose encoder the installed ffmpeg lacks."""
    from clasp_ingest.media.decode import find_ffmpeg

    have = _encoders(find_ffmpeg())
    return [codec for codec in codecs if CODECS[codec][1] not in have]


def _check_codecs(codecs: Sequence[str]) -> None:
    unknown = [c for c in codecs if c not in CODECS]
    if unknown or not codecs:
        raise ConfigError(f"--codecs {list(codecs)}: choose from {sorted(CODECS)}")
    missing = missing_codecs(codecs)
    if missing:
        encoders = ", ".join(CODECS[c][1] for c in missing)
        raise ConfigError(
            f"codecs {missing}: this ffmpeg has no {encoders} encoder; leave them out of --codecs "
            "or install an ffmpeg built with them"
        )


def available_codecs() -> tuple[str, ...]:
    """Every telephone codec the installed ffmpeg encodes (a warning names the others)."""
    missing = missing_codecs(tuple(CODECS))
    if missing:
        log.warning("this ffmpeg cannot encode %s; the telephone channel leaves them out", missing)
    return tuple(c for c in CODECS if c not in missing)


def telephone(audio: np.ndarray, codec: str) -> np.ndarray:
    """``audio`` (16 kHz mono) through a telephone channel: 300–3,400 Hz, 8 kHz, ``codec``, back to
    16 kHz (same length give or take the codec's frame padding)."""
    _check_codecs([codec])
    pcm = np.clip(np.asarray(audio, np.float32), -1.0, 1.0).tobytes()
    encoded = _ffmpeg(
        ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0",
         "-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", *CODECS[codec], "pipe:1"],
        pcm,
        f"encode {codec}",
    )  # fmt: skip
    decoded = _ffmpeg(
        [
            *_RAW_INPUT.get(codec, ()),
            "-i",
            "pipe:0",
            "-f",
            "f32le",
            "-ar",
            str(SAMPLE_RATE),
            "-ac",
            "1",
            "pipe:1",
        ],
        encoded,
        f"decode {codec}",
    )
    return np.frombuffer(decoded, dtype=np.float32).copy()


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-RMS ``"white"``, ``"pink"`` (1/f power) or ``"brown"`` (1/f²) noise."""
    white = rng.standard_normal(n)
    if colour != "white":
        spectrum = np.fft.rfft(white)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        spectrum /= np.sqrt(f) if colour == "pink" else f
        white = np.fft.irfft(spectrum, n)
    white -= white.mean()
    return (white / max(float(np.sqrt(np.mean(white**2))), 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``audio`` plus ``noise`` (looped or cut to its length) scaled to ``snr_db`` below the speech."""
    audio = np.asarray(audio, np.float32)
    if not len(noise) or not len(audio):
        return audio
    noise = np.resize(np.asarray(noise, np.float32), len(audio))
    speech_rms = float(np.sqrt(np.mean(audio**2)))
    noise_rms = max(float(np.sqrt(np.mean(noise**2))), 1e-12)
    mixed = audio + noise * (speech_rms / noise_rms) * 10 ** (-snr_db / 20)
    peak = float(np.abs(mixed).max())
    return mixed / peak * 0.99 if peak > 0.99 else mixed


def _noise_files(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ConfigError(f"--noise-dir {folder}: no files there")
    return files


def _background(files: Sequence[Path], seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A seeded background: an excerpt of a random file, or coloured noise without files."""
    n = round(seconds * SAMPLE_RATE)
    if not files:
        colour = str(rng.choice(["white", "pink", "brown"]))
        return coloured_noise(n, colour, rng), colour
    from clasp_ingest.training.features import load_waveform

    path = files[int(rng.integers(len(files)))]
    sound = load_waveform(path)
    start = int(rng.integers(max(1, len(sound) - n)))
    return sound[start : start + n], path.name


def _check_share(name: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"--{name} {share}: give a share of the copies between 0 and 1")


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
    telephone_share: float = 0.0,
    codecs: Sequence[str] | None = None,
    noise_share: float = 0.0,
    snr: tuple[float, float] = (5.0, 20.0),
    noise_dir: Path | None = None,
) -> AugmentReport:
    """Write ``count`` augmented copies of random train rows of ``manifest`` and the joint manifest."""
    from clasp_ingest.training.corpus import write_clip, write_jsonl
    from clasp_ingest.training.features import load_waveform
    from clasp_ingest.training.manifest import read_manifest, select_split

    _check_range("lead", lead)
    _check_range("trail", trail)
    _check_share("telephone", telephone_share)
    _check_share("noise", noise_share)
    if codecs is None:
        codecs = available_codecs() if telephone_share > 0 else tuple(CODECS)
    else:
        _check_codecs(codecs)
    if snr[0] > snr[1]:
        raise ConfigError(f"--snr needs LOW <= HIGH dB, got {snr[0]} {snr[1]}")
    backgrounds = _noise_files(noise_dir) if noise_share > 0 else []
    rows = read_manifest(manifest)
    train = select_split(rows, "train")
    if not 1 <= count <= len(train):
        raise ConfigError(
            f"--count must be between 1 and the {len(train)} train rows of {manifest}, got {count}"
        )
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channel_rng = np.random.default_rng([seed, 1])  # its own stream: padding draws stay as they were
    picked = sorted(rng.choice(len(train), count, replace=False))
    applied: list[dict[str, object]] = []
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
        clip = pad_clip(audio, lead_s, trail_s, rng)
        effects: dict[str, object] = {"source": str(row.audio), "lead_s": lead_s, "trail_s": trail_s}
        if noise_share > 0 and channel_rng.random() < noise_share:
            sound, name = _background(backgrounds, len(clip) / SAMPLE_RATE, channel_rng)
            effects["snr_db"] = float(channel_rng.uniform(*snr))
            effects["noise"] = name
            clip = add_noise(clip, sound, float(effects["snr_db"]))  # type: ignore[arg-type]
            report.noisy += 1
        if telephone_share > 0 and channel_rng.random() < telephone_share:
            effects["codec"] = str(channel_rng.choice(list(codecs)))
            clip = telephone(clip, str(effects["codec"]))
            report.telephone += 1
        write_clip(path, np.clip(clip, -1.0, 1.0))
        applied.append({"audio": str(path.resolve()), **effects})
        copies.append(_as_row(path.resolve(), row.text, row.language, "train"))
        report.seconds_added += lead_s + trail_s
        if (number + 1) % 1000 == 0:
            log.info("augment: %d/%d clips", number + 1, count)
    report.copies = len(copies)
    write_jsonl(report.manifest, [*(_as_row(r.audio, r.text, r.language, r.split) for r in rows), *copies])
    write_jsonl(out / "augment.jsonl", applied)
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
    parser.add_argument(
        "--telephone", type=float, default=0.0, help="share of copies sent through a phone codec"
    )
    parser.add_argument(
        "--codecs",
        help=f"comma-separated, from {','.join(CODECS)} (default: those the installed ffmpeg encodes)",
    )
    parser.add_argument("--noise", type=float, default=0.0, help="share of copies given background noise")
    parser.add_argument("--snr", type=float, nargs=2, default=(5.0, 20.0), metavar=("LOW", "HIGH"))
    parser.add_argument(
        "--noise-dir", type=Path, help="audio files to take backgrounds from (else coloured noise)"
    )
    args = parser.parse_args(argv)
    try:
        report = augment_manifest(
            args.manifest,
            args.out,
            count=args.count,
            lead=tuple(args.lead),
            trail=tuple(args.trail),
            seed=args.seed,
            telephone_share=args.telephone,
            codecs=None
            if args.codecs is None
            else tuple(c.strip() for c in args.codecs.split(",") if c.strip()),
            noise_share=args.noise,
            snr=tuple(args.snr),
            noise_dir=args.noise_dir,
        )
    except (ClaspIngestError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(report).items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
