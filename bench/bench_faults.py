"""The fault corpus of issue 18 through the command line: what each bad input does today.

Builds the corpus of ``tests/faults`` (ffmpeg, from the packaged samples), starts its local
servers (loopback only: files with ETags, a trickling and a stalling source, feeds, a closed
port for Qdrant), runs one ``python -m clasp_ingest`` command per input against one Edge
store that first receives a good file, and prints a Markdown table:

    input | outcome | message | points before/after

``outcome`` is the exit status (for ``ingest --json`` with its counts) and the command's wall
time; ``message`` the item's error or warning, else the first ``error:``/``warning:`` line;
points are the store's count before → after the command (kill rows: before → after the kill
→ after the re-run). On a shared 2-core machine it takes 5 to 8 minutes.

    .venv/bin/python bench/bench_faults.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the corpus, servers and CLI runner of tests/faults
from tests.faults.cli import Cli, Run, kill_at, payloads, points, store_bytes  # noqa: E402
from tests.faults.corpus import Corpus, build_corpus, huge_manifest  # noqa: E402
from tests.faults.servers import MediaServer, Site, closed_port, publish  # noqa: E402

TINY = ("--model", "tiny-random", "--device", "cpu", "--batch-size", "2")


@dataclass(frozen=True)
class Row:
    input: str
    outcome: str
    message: str
    points: str


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Build everything in this new folder and keep it.")
    args = parser.parse_args()
    print("| input | outcome | message | points before/after |")
    print("|---|---|---|---|")
    with _workdir(args.keep) as work:
        for row in _rows(work):
            print(_markdown((row.input, row.outcome, row.message, row.points)), flush=True)


def _markdown(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        yield Path(tmp)


def _rows(work: Path) -> Iterator[Row]:
    corpus = build_corpus(work / "corpus")
    (work / "tmp").mkdir()
    bench = _Bench(Cli(work / "home", work / "cache", tmpdir=work / "tmp"), work / "store")
    yield bench.ingest("good file (47 s speech)", str(corpus.good["good"]))
    yield from _local_rows(bench, corpus)
    with MediaServer("127.0.0.2") as other, MediaServer("127.0.0.1") as server:
        site = publish(server, other, corpus.seeds, corpus.good["good"].resolve().as_uri())
        yield from _remote_rows(bench, site)
    yield from _store_rows(bench, corpus.good["good"])
    yield _manifest(bench, corpus, work)
    yield _long(bench, corpus.long)
    yield from _kill_rows(bench.cli, corpus, work / "kill")


class _Bench:
    """Runs one command per row against ``store`` and words the outcome."""

    def __init__(self, cli: Cli, store: Path) -> None:
        self.cli = cli
        self.store = store

    def count(self, store: Path | None = None) -> int:
        return len(points(store or self.store))

    def ingest(self, label: str, source: str | bytes, *extra: str) -> Row:
        return self.command(label, "ingest", source, *extra, "--json")

    def command(self, label: str, *args: str | bytes, store: Path | None = None) -> Row:
        target = store or self.store
        before = self.count(target)
        run = self.cli.run(*args, "--qdrant-path", str(target), timeout_s=300)
        outcome = f"{_outcome(run)} in {run.wall_s:.1f} s"
        return Row(label, outcome, _message(run), f"{before} → {self.count(target)}")


def _outcome(run: Run) -> str:
    if run.killed:
        return f"killed after {run.wall_s:.0f} s: {run.killed}"
    try:
        data = run.json()
    except ValueError:
        return f"exit {run.returncode}"
    if isinstance(data, dict) and "media_ok" in data:
        warned = len(data.get("media_warnings", []))
        counts = f"ok {data['media_ok']}, skipped {data['media_skipped']}, failed {len(data['media_failed'])}"
        return f"exit {run.returncode}: {counts}" + (f", warnings {warned}" if warned else "")
    return f"exit {run.returncode}: {len(data)} hits" if isinstance(data, list) else f"exit {run.returncode}"


def _message(run: Run, width: int = 120) -> str:
    text = ""
    try:
        data = run.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        items = [f["error"] for f in data.get("media_failed", [])]
        text = "; ".join(items + [w["warning"] for w in data.get("media_warnings", [])])
    lines = run.lines("error:") + run.lines("warning:")
    text = text or (lines[0] if lines else "")
    text = text or next((line for line in map(_unboxed, run.stderr.splitlines()) if line), "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _unboxed(line: str) -> str:
    """A stderr line without click's usage-error box and hints ("" for those)."""
    text = line.strip(" │╭╮╰╯─")
    return "" if text.startswith(("Usage:", "Try ", "Error")) else text


def _noted(row: Row, note: str) -> Row:
    return Row(row.input, row.outcome, f"{row.message} [{note}]" if row.message else f"[{note}]", row.points)


def _local_rows(bench: _Bench, corpus: Corpus) -> Iterator[Row]:
    for kind, path in corpus.bad.items():
        yield bench.ingest(kind, str(path))
    for kind in ("8-channel 96 kHz", "unicode path", "truncated mp3", "10-minute silence"):
        yield bench.ingest(kind, str(corpus.good[kind]))
    yield bench.ingest("10-minute silence, again", str(corpus.good["10-minute silence"]))
    yield bench.ingest("non-UTF-8 file name", corpus.non_utf8)


def _remote_rows(bench: _Bench, site: Site) -> Iterator[Row]:
    yield bench.ingest("404 URL", site.missing)
    yield bench.ingest("trickling http (--download-deadline 4)", site.trickle, "--download-deadline", "4")
    yield bench.ingest("stalling http (--download-deadline 4)", site.stall, "--download-deadline", "4")
    yield bench.ingest("feed with one broken enclosure", site.broken_feed)
    hostile = bench.ingest("feed: file:///etc/passwd, file://<local audio>, 127.0.0.2", site.hostile_feed)
    yield _noted(hostile, f"127.0.0.2 contacted: {'yes' if site.other.requests else 'no'}")
    yield _signed(bench, site)


def _signed(bench: _Bench, site: Site) -> Row:
    before = bench.count()
    run = bench.cli.run("-v", "ingest", site.signed, "--json", "--qdrant-path", str(bench.store))
    places = {
        "stdout/stderr": run.stdout + run.stderr,
        "payloads": json.dumps(payloads(bench.store)),
        "store files": store_bytes(bench.store).decode("latin-1"),
    }
    leaks = [where for where, text in places.items() if any(s in text for s in site.secrets)]
    note = f"credentials found in: {', '.join(leaks)}" if leaks else "credentials found nowhere"
    return Row("signed URL (?X-Amz-Signature=…)", _outcome(run), note, f"{before} → {bench.count()}")


def _store_rows(bench: _Bench, good: Path) -> Iterator[Row]:
    url = f"http://127.0.0.1:{closed_port()}"
    for label, args in (
        ("Qdrant unreachable: ingest", ("ingest", str(good))),
        ("Qdrant unreachable: search", ("search", "hello")),
        ("Qdrant unreachable: store info", ("store", "info")),
    ):
        run = bench.cli.run(*args, "--qdrant-url", url, timeout_s=300)
        lines = len([line for line in run.stderr.splitlines() if line.strip()])
        note = f"{run.wall_s:.1f} s, {lines} stderr lines"
        yield _noted(Row(label, _outcome(run), _message(run), "–"), note)
    yield bench.command("collection of another model (tiny-random)", "ingest", str(good), *TINY)
    yield bench.command("search: empty query", "search", "")
    yield bench.command("search: 100,000-character query", "search", ("train " * 20_000)[:100_000], "--json")


def _manifest(bench: _Bench, corpus: Corpus, work: Path) -> Row:
    manifest = huge_manifest(work / "manifest.jsonl", corpus.good["good"], "a train to the mountains")
    run = bench.cli.run("eval", str(manifest), *TINY[:4], "--json", "-q", timeout_s=60, max_rss_mb=3000)
    row = Row("training manifest, 50 MB text on line 2", _outcome(run), _message(run), "–")
    return _noted(row, f"peak RSS {run.peak_rss_mb:.0f} MB")


def _long(bench: _Bench, long: Path) -> Row:
    store = bench.store.with_name("store-long")
    before = bench.count(store)
    run = bench.cli.run("ingest", str(long), "--json", "--qdrant-path", str(store), timeout_s=600)
    points_text = f"{before} → {bench.count(store)}"
    row = Row("3-hour file (mostly silence)", _outcome(run), _message(run), points_text)
    return _noted(row, f"peak RSS {run.peak_rss_mb:.0f} MB, {run.wall_s:.0f} s")


def _kill_rows(cli: Cli, corpus: Corpus, work: Path) -> Iterator[Row]:
    work.mkdir()
    reference = work / "reference"
    cli.run("ingest", str(corpus.kill), *TINY, "--qdrant-path", str(reference))
    a, b = ((corpus.kill / name).resolve().as_uri() for name in ("a.wav", "b.wav"))
    moments = [
        ("kill -9 in the first ingest of a fresh store", f"batch 3 of {a}:"),
        ("kill -9 embedding the second item", f"batch 2 of {b}:"),
    ]
    for n, (label, marker) in enumerate(moments, start=1):
        store = work / f"store{n}"
        kill_at(cli, marker, str(corpus.kill), *TINY, "--qdrant-path", str(store), hook_dir=work / f"hook{n}")
        killed = points(store)
        rerun = cli.run("ingest", str(corpus.kill), *TINY, "--json", "--qdrant-path", str(store))
        same = points(store) == points(reference)
        visible = sum(p.state == "complete" for p in killed.values())
        note = f"after kill {visible} visible; re-run {'=' if same else '≠'} clean run"
        yield Row(label, _outcome(rerun), note, f"0 → {len(killed)} → {len(points(store))}")
    yield _changed_row(cli, corpus, work)


def _changed_row(cli: Cli, corpus: Corpus, work: Path) -> Row:
    folder, store, reference = work / "changed", work / "store-changed", work / "reference-changed"
    folder.mkdir()
    talk = folder / "talk.wav"
    shutil.copyfile(corpus.changed_old, talk)
    cli.run("ingest", str(folder), *TINY, "--qdrant-path", str(store))
    old = points(store)
    shutil.copyfile(corpus.changed_new, talk)
    cli.run("ingest", str(folder), *TINY, "--qdrant-path", str(reference))
    kill_at(cli, f"batch 3 of {talk.as_uri()}:", str(folder), *TINY, "--qdrant-path", str(store),
            hook_dir=work / "hook-changed")  # fmt: skip
    killed = points(store)
    whole = sum(killed.get(pid) == point for pid, point in old.items())
    rerun = cli.run("ingest", str(folder), *TINY, "--json", "--qdrant-path", str(store))
    same = points(store) == points(reference)
    note = f"after kill {whole} of {len(old)} old points intact; re-run {'=' if same else '≠'} clean run"
    return Row("kill -9 re-ingesting a changed file", _outcome(rerun), note,
               f"{len(old)} → {len(killed)} → {len(points(store))}")  # fmt: skip


if __name__ == "__main__":
    main()
