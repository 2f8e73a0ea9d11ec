"""How fast the command line starts, as a user runs it: new processes, the default model, a fresh store.

Every number is a whole ``clasp-ingest`` command run in a new process (Python start, imports,
model load, store open and close included; the OS file cache is warm, as after any earlier
run on the same machine, and the model's one-time caches are built by an untimed first ingest),
the median of ``--repeat`` runs:

- ``--help``;
- ``search``: a query against a store holding one ingested file (``--json``);
- ``ingest`` of a 47 s speech file (the bundled English demo sample) and of the same audio
  looped to 4× its length, each into a fresh store; ``fixed cost`` is the command's wall time
  minus the media work the pipeline reports for the item (decode, segment, embed, upsert:
  its ``ingested …in W s`` log line), and, as a check, the intercept of the two lengths:
  ``(4·T(1×) − T(4×)) / 3``;
- ``first embedding``: from process start to the first batch of vectors (``-vv`` log line);
- ``re-run``: the same ingest again (the item is unchanged and skipped).

    .venv/bin/python bench/bench_cli.py [--repeat 5] [--model clasp-mini] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "clasp_ingest" / "data" / "samples" / "demo_en.opus"
CLI = [sys.executable, "-m", "clasp_ingest"]
_ITEM = re.compile(r"ingested .*: (\d+) segments, ([\d.]+) s of audio in ([\d.]+) s")
_FIRST = re.compile(r"batch 1 of ")


def run(args: list[str], *, watch: re.Pattern[str] | None = None) -> tuple[float, float | None, str]:
    """Wall seconds of one command, seconds until a stderr line matches ``watch``, and stderr."""
    started = time.perf_counter()
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: float | None = None
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if watch is not None and seen is None and watch.search(line):
            seen = time.perf_counter() - started
    code = proc.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"clasp-ingest {' '.join(args)} failed ({code}):\n{''.join(lines[-20:])}")
    return wall, seen, "".join(lines)


def looped(source: Path, times: int, out: Path) -> Path:
    from clasp_ingest.media.decode import find_ffmpeg

    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-stream_loop", str(times - 1),
         "-i", str(source), "-c", "copy", str(out)],
        check=True,
    )  # fmt: skip
    return out


def ingest_once(media: Path, store: Path, model: str) -> dict[str, float]:
    wall, first, err = run(
        ["-vv", "ingest", str(media), "--qdrant-path", str(store), "--model", model, "--json"], watch=_FIRST
    )
    match = _ITEM.search(err)
    if match is None or first is None:
        raise SystemExit(f"no item or batch line in the log of ingesting {media}:\n{err[-2000:]}")
    media_s = float(match.group(3))
    return {"wall": wall, "first": first, "media": media_s, "audio": float(match.group(2))}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="clasp-mini")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        long = looped(SAMPLE, 4, root / "demo_en_x4.opus")
        # untimed: builds the model's one-time caches (Whisper re-joined, the ONNX export) on a
        # new machine, which every later command reuses
        ingest_once(SAMPLE, root / "warm-up", args.model)
        rows["--help (s)"] = median([run(["--help"])[0] for _ in range(args.repeat)])
        one, four, reruns = [], [], []
        for i in range(args.repeat):
            one.append(ingest_once(SAMPLE, root / f"a{i}", args.model))
            four.append(ingest_once(long, root / f"b{i}", args.model))
            reruns.append(run(["ingest", str(SAMPLE), "--qdrant-path", str(root / f"a{i}"), "--json"])[0])
        searches = [
            run(["search", "bees visit flowers", "--qdrant-path", str(root / "a0"), "--json"])[0]
            for _ in range(args.repeat)
        ]
    t1, t4 = median([r["wall"] for r in one]), median([r["wall"] for r in four])
    rows |= {
        "search, new process (s)": median(searches),
        f"ingest {one[0]['audio']:.0f} s of speech, whole command (s)": t1,
        f"ingest {four[0]['audio']:.0f} s of speech, whole command (s)": t4,
        "ingest fixed cost: command - media work (s)": median([r["wall"] - r["media"] for r in one + four]),
        "ingest fixed cost: (4*T(1x) - T(4x)) / 3 (s)": round((4 * t1 - t4) / 3, 2),
        "time to first embedding (s)": median([r["first"] for r in one + four]),
        "re-run, item unchanged (s)": median(reruns),
    }
    width = max(len(k) for k in rows)
    print(f"clasp-ingest start-up, model {args.model}, median of {args.repeat} runs (new processes)")
    print(f"{'measure':<{width}} | seconds")
    print(f"{'-' * width}-|--------")
    for key, value in rows.items():
        print(f"{key:<{width}} | {value:7.2f}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
