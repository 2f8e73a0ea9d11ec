"""Peak RSS and wall time of one long file through the plain pipeline and the Prefect flow.

The streaming contract: the memory of an ingest does not grow with the length of the media,
on either path. Each case (path × length) runs in a fresh Python subprocess so its peak RSS
(``resource.getrusage``) is its own; the flow cases start their own temporary Prefect API
server (``prefect_runtime()``, a separate process, not counted; its peak is printed apart).
The audio is the bundled speech sample looped to length by ffmpeg (``bench_media.make_audio``,
cached under /tmp); the model is ``tiny-random`` so the table shows the orchestration's memory,
not a model's; torch gets one thread less than the cores on both paths (as the CLI and the
flows set it). A 3 h file through the flow must stay within 1.1× the 10 min peak.

    .venv/bin/python bench/bench_flow_memory.py [--durations 600,10800] [--paths pipeline,flow]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_media import label, make_audio

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1.1

_CHILD = """
import json, resource, sys, time
from pathlib import Path

path, mode, work, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
source = work / "media"
source.mkdir()
(source / Path(path).name).symlink_to(path)
args = dict(model="tiny-random", device="cpu", qdrant_path=str(work / "q"), embed_batch_size=batch)
server_kb = 0.0
if mode == "pipeline":
    from clasp_ingest.connectors import LocalConnector
    from clasp_ingest.model import load_model, set_torch_threads
    from clasp_ingest.pipeline import PipelineOptions, ingest_source
    from clasp_ingest.store import open_store

    set_torch_threads(None)  # one less than the cores, as the CLI and the flows do
    model = load_model("tiny-random", device="cpu")
    start = time.perf_counter()
    with open_store(path=work / "q") as store:
        summary = ingest_source(LocalConnector(source), model, store, PipelineOptions(embed_batch_size=batch))
else:
    from clasp_ingest.flows import ingest_source, prefect_runtime

    with prefect_runtime(data_dir=work) as runtime:
        start = time.perf_counter()
        summary = ingest_source(str(source), **args)
        if runtime.server_pid is not None:
            status = Path(f"/proc/{runtime.server_pid}/status").read_text()
            server_kb = float(next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM")))
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "segments": summary.segments, "audio_s": summary.audio_s,
                  "ok": summary.media_ok, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "server_mb": server_kb / 1024}))
"""


def run_case(audio: Path, path: str, batch: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="clasp-bench-mem-") as work:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(audio), path, work, str(batch)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{path} case on {audio} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["ok"] != 1:
        raise RuntimeError(f"{path} case on {audio} did not ingest the file: {result}")
    return result


Rows = dict[tuple[str, int], dict[str, float]]


def print_table(durations: list[int], paths: list[str], rows: Rows) -> None:
    print(
        f"{'path':<9} | {'audio':>6} | {'segments':>8} | {'wall s':>7} | {'× real time':>11} | "
        f"{'peak RSS':>10} | {'server peak RSS':>15}"
    )
    print("-" * 86)
    for path in paths:
        for seconds in durations:
            r = rows[path, seconds]
            server = f"{r['server_mb']:12.0f} MB" if r["server_mb"] else f"{'-':>15}"
            print(
                f"{path:<9} | {label(seconds):>6} | {int(r['segments']):>8} | {r['wall_s']:7.1f} | "
                f"{seconds / r['wall_s']:10.0f}× | {r['rss_mb']:7.0f} MB | {server}"
            )
    base = min(durations)
    for path in paths:
        for seconds in durations:
            if seconds != base:
                ratio = rows[path, seconds]["rss_mb"] / rows[path, base]["rss_mb"]
                verdict = "ok" if ratio <= LIMIT else f"OVER the {LIMIT}× limit"
                print(f"{path}: peak RSS {label(seconds)} / {label(base)} = {ratio:.3f}× ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", default="600,10800", help="audio lengths in seconds")
    parser.add_argument("--paths", default="pipeline,flow")
    parser.add_argument("--batch", type=int, default=16, help="segments per embedding batch")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/clasp-bench-media"))
    args = parser.parse_args()
    durations = [int(d) for d in args.durations.split(",")]
    paths = args.paths.split(",")
    rows: Rows = {}
    for seconds in durations:
        audio = make_audio(seconds, args.cache)
        for path in paths:
            rows[path, seconds] = run_case(audio, path, args.batch)
            print(f"{path} {label(seconds)}: {rows[path, seconds]}", file=sys.stderr, flush=True)
    print_table(durations, paths, rows)


if __name__ == "__main__":
    main()
