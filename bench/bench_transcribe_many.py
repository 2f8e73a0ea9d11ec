r"""Spans transcribed one by one against together: ``Transcriber.transcribe`` vs ``transcribe_many``.

A lazy search and a ``rerank=N`` query transcribe the spans they return that have no words
yet; since 2026-12-05 they hand them to :meth:`~clasp_ingest.transcribe.Transcriber.
transcribe_many` together (each span encoded once, languages read from those encodings,
one greedy decoding batch) instead of calling :meth:`~clasp_ingest.transcribe.Transcriber.
transcribe` per span (which encodes a span twice when it detects the language). This bench
takes the first ``--limit`` clips of each manifest's ``--split``, in groups of ``--group``
(a rerank's candidates), and transcribes every group both ways, alternating which goes
first: wall seconds per clip, how many clips got the same text and language both ways, and
each way's character error rate against the manifest's text (lower case, punctuation
dropped; the clip's own language's caption, so use own-language manifests). Where Whisper is
unsure the two can differ without either being wrong: a retry samples at random.

    .venv/bin/python bench/bench_transcribe_many.py evs/fillets-cs.jsonl evs/fillets-nl.jsonl \
        [--split test] [--limit 100] [--group 10] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from clasp_ingest.evaluation.evaluate import load_waveform
from clasp_ingest.transcribe import Transcriber, TranscriberOptions, Transcript


def _rows(manifest: Path, split: str, limit: int) -> list[tuple[str, str]]:
    paths = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else None
        if row and row.get("split", split) == split:
            audio = Path(row["audio"])
            paths.append((str(audio if audio.is_absolute() else manifest.parent / audio), row["text"]))
    return paths[:limit]


def _chars(text: str) -> str:
    return " ".join("".join(c for c in text.casefold() if c.isalnum() or c.isspace()).split())


def char_errors(reference: str, heard: str) -> int:
    """Levenshtein distance between the normalised texts (characters)."""
    ref, hyp = _chars(reference), _chars(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def compare(transcriber: Transcriber, rows: list[tuple[str, str]], group: int) -> dict[str, Any]:
    seconds = {"one": 0.0, "many": 0.0}
    errors = {"one": 0, "many": 0}
    same_text = same_language = ref_chars = 0
    differ: list[dict[str, str]] = []
    for g, start in enumerate(range(0, len(rows), group)):
        part = rows[start : start + group]
        audios = [load_waveform(path) for path, _ in part]

        def singly(batch: list[Any] = audios) -> list[Transcript]:
            return [transcriber.transcribe(a) for a in batch]

        def together(batch: list[Any] = audios) -> list[Transcript]:
            return transcriber.transcribe_many(batch)

        runs: dict[str, list[Transcript]] = {}
        for name, func in (("one", singly), ("many", together))[:: 1 if g % 2 == 0 else -1]:
            began = time.perf_counter()
            runs[name] = func()
            seconds[name] += time.perf_counter() - began
        for (path, reference), a, b in zip(part, runs["one"], runs["many"], strict=True):
            same_text += a.text == b.text
            same_language += a.language == b.language
            ref_chars += len(_chars(reference))
            errors["one"] += char_errors(reference, a.text)
            errors["many"] += char_errors(reference, b.text)
            if a.text != b.text or a.language != b.language:
                one, many = f"[{a.language}] {a.text}", f"[{b.language}] {b.text}"
                differ.append({"clip": path, "one": one, "many": many})
    n = max(len(rows), 1)
    return {
        "clips": len(rows), "one_s_per_clip": seconds["one"] / n, "many_s_per_clip": seconds["many"] / n,
        "one_cer": errors["one"] / max(ref_chars, 1), "many_cer": errors["many"] / max(ref_chars, 1),
        "same_text": same_text, "same_language": same_language, "differ": differ,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", type=Path, nargs="+")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=100, help="clips per manifest")
    parser.add_argument("--group", type=int, default=10, help="spans handed over together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    transcriber = Transcriber(TranscriberOptions(cpu_threads=args.threads, device="cpu"))
    transcriber.load()
    load_start = os.getloadavg()
    results = {
        str(m): compare(transcriber, _rows(m, args.split, args.limit), args.group) for m in args.manifests
    }
    if args.json:
        print(
            json.dumps(
                {"results": results, "loadavg": [load_start, os.getloadavg()]}, indent=1, ensure_ascii=False
            )
        )
        return
    print(f"Whisper-base (faster-whisper, int8, {args.threads} threads), groups of {args.group}")
    print(f"{'manifest':24} {'clips':>5} {'one s/clip':>10} {'many s/clip':>11} {'speed-up':>8} "
          f"{'same text':>9} {'same lang':>9} {'CER one':>7} {'CER many':>8}")  # fmt: skip
    for name, r in results.items():
        print(f"{Path(name).name:24} {r['clips']:5d} {r['one_s_per_clip']:10.3f} "
              f"{r['many_s_per_clip']:11.3f} "
              f"{r['one_s_per_clip'] / max(r['many_s_per_clip'], 1e-9):7.2f}x "
              f"{r['same_text']:9d} {r['same_language']:9d} "
              f"{r['one_cer']:7.3f} {r['many_cer']:8.3f}")  # fmt: skip
        for d in r["differ"][:3]:
            print(f"    {Path(d['clip']).name}\n      one  {d['one'][:90]!r}\n      many {d['many'][:90]!r}")
    print(f"load average: start {load_start}, end {os.getloadavg()}")


if __name__ == "__main__":
    main()
