"""Evaluation sets and tables for the clasp-mini model card.

Three sub-commands (all offline):

``xling``    synthesise the English side of a parallel TSV (en, fr, de, es, ... columns) as speech
             (espeak-ng, seeded voices) and write one manifest per query language over the
             same English clips: ``xling_<lang>.jsonl`` (split ``test``).
``gettext``  write a parallel TSV (en, fr, de, es) of human translations from the gettext
             catalogues (``/usr/share/locale/<lang>/LC_MESSAGES/*.mo``) of the installed Debian
             packages: messages that are sentence-like in all four languages (5-25 words, no
             format codes or markup), a seeded sample of ``--n``; feed it to ``xling --tsv``.
             ``--exclude`` another TSV makes a disjoint set (the cross-lingual validation set).
``apertium`` translate the English rows of a manifest's test split with apertium eng→spa
             (Debian ``apertium-eng-spa``) into ``apertium_es.jsonl``: Spanish queries against
             the same English speech.
``run``      evaluate a model on manifests (all-candidates protocol) and print a Markdown table;
             ``--distractors M`` adds M's clips to every query's candidates (a mixed-language
             collection: cross-lingual queries on English speech among speech in 6 languages).

    python bench/eval_mini.py xling --out /tmp/xling
    python bench/eval_mini.py gettext --out /tmp/gettext.tsv --n 1000
    python bench/eval_mini.py xling --tsv /tmp/gettext.tsv --out /tmp/xling-gettext
    python bench/eval_mini.py gettext --out /tmp/gettext_val.tsv --n 1000 --exclude /tmp/gettext.tsv
    python bench/eval_mini.py xling --tsv /tmp/gettext_val.tsv --split val --out /tmp/xval
    python bench/eval_mini.py apertium /tmp/heldout/manifest.jsonl --out /tmp/xling
    python bench/eval_mini.py run --model clasp-mini /tmp/heldout/manifest.jsonl /tmp/xling/xling_fr.jsonl
    python bench/eval_mini.py run --distractors /tmp/heldout/manifest.jsonl /tmp/xling-gettext/xling_de.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARALLEL = ROOT / "tests" / "unit" / "model_mini" / "data" / "parallel.tsv"
_EN_VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-us+m3", "en-us+f2", "en-gb+f3")


def _read_tsv(paths: Sequence[Path]) -> tuple[list[str], list[list[str]]]:
    header: list[str] = []
    rows: list[list[str]] = []
    for path in paths:
        lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        head = lines[0].split("\t")
        if header and head != header:
            raise SystemExit(f"{path}: columns {head} differ from {header}")
        header = head
        rows.extend(line.split("\t") for line in lines[1:])
    return header, rows


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def cmd_xling(args: argparse.Namespace) -> None:
    from clasp_ingest.training.corpus import ClipJob, _synthesise

    header, rows = _read_tsv(args.tsv or [PARALLEL])
    rng = random.Random(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        ClipJob(
            i, r[0], "en", args.split, "espeak", rng.choice(_EN_VOICES), 150.0, 50, f"clips/en/{i:05d}.flac"
        )
        for i, r in enumerate(rows)
    ]
    for job in jobs:
        _synthesise((job, str(out), False))
    for col, lang in enumerate(header):
        manifest = [
            {"audio": j.audio, "text": r[col], "language": lang, "split": args.split}
            for j, r in zip(jobs, rows, strict=True)
        ]
        _write(out / f"xling_{lang}.jsonl", manifest)
    print(f"{len(jobs)} English clips, manifests for {', '.join(header)} in {out}")


_GETTEXT_LANGS = ("en", "fr", "de", "es")
_NOT_PROSE = re.compile(r"[%{}<>_/\\\[\]=|@$`*#~^\d]|\.\.\.|--|\w\(|https?:")


def _prose(text: str) -> bool:
    """A message that reads as one or two plain sentences (no format codes, markup or paths)."""
    words = text.split()
    if not 5 <= len(words) <= 25 or "\n" in text or _NOT_PROSE.search(text):
        return False
    if not text[0].isupper() or text[-1] not in ".!?":
        return False
    return sum(c.isalpha() or c.isspace() for c in text) / len(text) > 0.9


def _catalogue(lang: str, root: Path) -> dict[str, str]:
    import gettext

    messages: dict[str, str] = {}
    for path in sorted(root.glob(f"{lang}/LC_MESSAGES/*.mo")):
        try:
            with path.open("rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
        except (OSError, ValueError):  # unreadable or not UTF-8
            continue
        for key, value in catalog.items():
            if isinstance(key, str) and key and isinstance(value, str):
                messages.setdefault(key, value)
    return messages


def cmd_gettext(args: argparse.Namespace) -> None:
    catalogues = {lang: _catalogue(lang, args.locale_root) for lang in _GETTEXT_LANGS[1:]}
    excluded = {row[0] for row in _read_tsv(args.exclude)[1]} if args.exclude else set()
    english = sorted(
        m
        for m in catalogues["fr"]
        if m not in excluded and _prose(m) and all(_prose(c.get(m, "")) for c in catalogues.values())
    )
    picked = sorted(random.Random(args.seed).sample(english, min(args.n, len(english))))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        fh.write("\t".join(_GETTEXT_LANGS) + "\n")
        for m in picked:
            fh.write("\t".join([m, *(catalogues[lang][m] for lang in _GETTEXT_LANGS[1:])]) + "\n")
    print(f"{len(picked)} of {len(english)} parallel messages ({', '.join(_GETTEXT_LANGS)}) in {args.out}")


def _apertium(texts: list[str]) -> list[str]:
    joined = "\n".join(t.replace("\n", " ") for t in texts) + "\n"
    proc = subprocess.run(
        ["apertium", "-u", "eng-spa"], input=joined.encode(), capture_output=True, check=True, timeout=600
    )
    lines = proc.stdout.decode().splitlines()
    if len(lines) != len(texts):
        raise SystemExit(f"apertium returned {len(lines)} lines for {len(texts)} inputs")
    return [line.strip() for line in lines]


def cmd_apertium(args: argparse.Namespace) -> None:
    rows = [json.loads(x) for x in args.manifest.read_text(encoding="utf-8").splitlines() if x.strip()]
    en = [r for r in rows if r.get("language") == "en" and r.get("split", "train") == "test"]
    spanish = _apertium([r["text"] for r in en])
    base = args.manifest.parent.resolve()
    manifest = [
        {"audio": str(base / r["audio"]), "text": es, "language": "es", "split": "test"}
        for r, es in zip(en, spanish, strict=True)
    ]
    english = [{**m, "text": r["text"], "language": "en"} for m, r in zip(manifest, en, strict=True)]
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "apertium_es.jsonl", manifest)
    _write(args.out / "apertium_en.jsonl", english)
    print(f"{len(manifest)} English clips with apertium Spanish queries in {args.out}")


def _among(result: dict[str, object]) -> str:
    return f" (+{result['distractors']} distractors)" if "distractors" in result else ""


def cmd_run(args: argparse.Namespace) -> None:
    from clasp_ingest.evaluation.evaluate import evaluate
    from clasp_ingest.model.inference import load_inference_model

    started = time.perf_counter()
    model = load_inference_model(args.model, device="cpu", engine=args.engine)
    print(f"loaded {model.model_id} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print("| set | queries | HITS@1 | MRR | mean rank | Macro-F1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for manifest in args.manifests:
        result = evaluate(
            model,
            manifest,
            "all",
            args.threshold,
            0,
            args.split,
            cache_dir=args.cache_dir,
            distractors=args.distractors,
            distractor_split=args.distractor_split,
        )
        print(
            f"| {manifest.parent.name}/{manifest.name}{_among(result)} | {result['n_queries']} "
            f"| {result['hits@1']:.3f} "
            f"| {result['mrr']:.3f} | {result['mean_rank']:.1f} | {result['macro_f1']:.3f} |",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("xling")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--tsv", type=Path, action="append", help="parallel TSV(s); default the test set's")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--split", default="test", help="split of the rows written ('val' for a validation set)")
    g = sub.add_parser("gettext")
    g.add_argument("--out", type=Path, required=True, help="TSV to write")
    g.add_argument("--n", type=int, default=1000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--locale-root", type=Path, default=Path("/usr/share/locale"))
    g.add_argument(
        "--exclude", type=Path, action="append", help="TSV whose messages to leave out (a disjoint set)"
    )
    a = sub.add_parser("apertium")
    a.add_argument("manifest", type=Path)
    a.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("manifests", type=Path, nargs="+")
    r.add_argument("--model", default="clasp-mini")
    r.add_argument("--engine", default="torch", choices=("auto", "torch", "onnx"), help="default torch")
    r.add_argument("--cache-dir", type=Path, default=None)
    r.add_argument("--split", default="test")
    r.add_argument("--threshold", type=float, default=0.5)
    r.add_argument(
        "--distractors", type=Path, default=None, help="manifest whose clips join every query's candidates"
    )
    r.add_argument("--distractor-split", default=None, help="split of --distractors (default --split)")
    args = parser.parse_args(argv)
    {"xling": cmd_xling, "gettext": cmd_gettext, "apertium": cmd_apertium, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
