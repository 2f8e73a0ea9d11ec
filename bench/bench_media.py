"""Decode and decode+segment speed (× real time) and peak RSS, 10 min vs 2 h vs 3 h of audio.

The long files are the bundled speech sample (46.6 s, nine sentences and pauses) looped by
ffmpeg into MP3 files (16 kHz mono, 32 kb/s) under a cache folder in /tmp (not committed;
made once, ~1 min per hour of audio). Each case runs in a fresh Python subprocess so peak RSS
(``resource.getrusage``) is that case's alone: "python" is the decoding/segmenting process,
"child" the largest of its children (the ffmpeg decoder). The streaming contract is that
the 3 h peak stays within 1.2× the 10 min peak.

    .venv/bin/python bench/bench_media.py [--durations 600,7200,10800] [--cache /tmp/clasp-bench-media]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
from clasp_ingest.media import stream_audio, segment_media
path, mode = sys.argv[1], sys.argv[2]
start = time.perf_counter()
samples = segments = 0
if mode == "decode":
    for block in stream_audio(path):
        samples += block.size
else:
    for item in segment_media(path):
        segments += 1
        samples = round(item.segment.end_s * 16000)
seconds = time.perf_counter() - start
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "samples": samples, "segments": segments,
                  "rss_mb": self_kb / 1024, "ffmpeg_rss_mb": child_kb / 1024}))
"""


def make_audio(seconds: int, cache: Path) -> Path:
    """The bundled sample looped to ``seconds`` as MP3 (cached)."""
    from clasp_ingest.demo import sample_path
    from clasp_ingest.media import find_ffmpeg

    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"loop_{seconds}s.mp3"
    if not out.exists():
        tmp = out.with_suffix(".part.mp3")
        cmd = [find_ffmpeg(), "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(sample_path())]
        cmd += ["-t", str(seconds), "-ac", "1", "-ar", "16000", "-c:a", "libmp3lame", "-b:a", "32k", str(tmp)]
        print(f"making {out} ({seconds / 3600:.2f} h of audio)...", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        tmp.rename(out)
    return out


def run_case(path: Path, mode: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode], capture_output=True, text=True, check=True, cwd=ROOT
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def label(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds < 3600 else f"{seconds / 3600:g} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", default="600,7200,10800", help="audio lengths in seconds")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/clasp-bench-media"))
    args = parser.parse_args()
    durations = [int(d) for d in args.durations.split(",")]
    rows: dict[tuple[int, str], dict[str, float]] = {}
    for seconds in durations:
        path = make_audio(seconds, args.cache)
        for mode in ("decode", "segment"):
            rows[seconds, mode] = run_case(path, mode)
    print_table(durations, rows)


def print_table(durations: list[int], rows: dict[tuple[int, str], dict[str, float]]) -> None:
    print(
        f"{'audio':>8} | {'stage':<15} | {'wall s':>7} | {'× real time':>11} | {'segments':>8} | "
        f"{'peak RSS python':>15} | {'peak RSS child':>15}"
    )
    print("-" * 96)
    for seconds in durations:
        for mode, name in (("decode", "decode"), ("segment", "decode+segment")):
            r = rows[seconds, mode]
            segments = str(int(r["segments"])) if mode == "segment" else "-"
            print(
                f"{label(seconds):>8} | {name:<15} | {r['seconds']:7.1f} | {seconds / r['seconds']:10.0f}× | "
                f"{segments:>8} | {r['rss_mb']:12.1f} MB | {r['ffmpeg_rss_mb']:12.1f} MB"
            )
    base = min(durations)
    for seconds in durations:
        if seconds == base:
            continue
        ratio = rows[seconds, "segment"]["rss_mb"] / rows[base, "segment"]["rss_mb"]
        verdict = "ok" if ratio <= 1.2 else "OVER the 1.2× limit"
        print(f"peak RSS decode+segment {label(seconds)} / {label(base)}: {ratio:.3f}× ({verdict})")


if __name__ == "__main__":
    main()
