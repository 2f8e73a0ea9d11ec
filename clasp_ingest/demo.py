"""``python -m clasp_ingest.demo`` (``make demo``): ingest the bundled samples, then search them.

The samples in ``clasp_ingest/data/samples/`` (synthetic English, German and Spanish speech
and real LibriVox speech; see PROVENANCE.md there) go through the real pipeline — ffmpeg
decode, Silero VAD segments, ``clasp-mini`` embeddings — into an embedded Qdrant (Qdrant Edge
in a temporary folder unless ``--store``). Then the demo's own queries, in several languages,
are answered with the spans found. Each query names the sentence it should find
(``demo.json``) and the demo reports for how many the right span came first. It exits with
status 2 when a sample could not be ingested, and — with ``--strict`` — with status 1 when a
query's first hit is not its sentence.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clasp_ingest.model.base import AudioTextEncoder
    from clasp_ingest.store import QdrantStore
    from clasp_ingest.types import SpanHit

__all__ = [
    "DemoQuery",
    "QueryOutcome",
    "demo_queries",
    "main",
    "run_queries",
    "sample_path",
    "sample_sentences",
    "samples_dir",
]

SAMPLE = "demo_en"
_MIN_OVERLAP = 0.5  # share of the shorter of (hit, expected sentence) that must overlap


def samples_dir() -> Path:
    """The folder of bundled samples (inside the installed package)."""
    return Path(str(files("clasp_ingest").joinpath("data", "samples")))


def sample_path(name: str = SAMPLE) -> Path:
    """A bundled sample (Ogg Opus, 16 kHz mono; see PROVENANCE.md beside it)."""
    return samples_dir() / f"{name}.opus"


def sample_sentences(name: str = SAMPLE) -> list[str]:
    """The sentences spoken in a sample, in order."""
    text = (samples_dir() / f"{name}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class DemoQuery:
    """A query and the sentence (``sample``, index, start, end in seconds) it should find."""

    text: str
    language: str
    sample: str
    sentence: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class QueryOutcome:
    """A query's hits (best first) and whether the first one is the expected sentence."""

    query: DemoQuery
    hits: list[SpanHit]
    correct: bool


def demo_queries() -> list[DemoQuery]:
    """The demo's queries with their expected spans, from ``demo.json``."""
    doc = json.loads((samples_dir() / "demo.json").read_text(encoding="utf-8"))
    queries = []
    for q in doc["queries"]:
        start, end = doc["samples"][q["sample"]]["spans"][q["sentence"]]
        queries.append(DemoQuery(q["text"], q["language"], q["sample"], q["sentence"], start, end))
    return queries


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    shorter = min(a[1] - a[0], b[1] - b[0])
    return inter / shorter if shorter > 0 else 0.0


def is_expected(hit: SpanHit, query: DemoQuery) -> bool:
    """True when ``hit`` is in the query's sample and overlaps its sentence by at least half."""
    return hit.title == query.sample and (
        _overlap((hit.start_s, hit.end_s), (query.start_s, query.end_s)) >= _MIN_OVERLAP
    )


def run_queries(
    model: AudioTextEncoder, store: QdrantStore, queries: Sequence[DemoQuery], k: int = 3
) -> list[QueryOutcome]:
    """Search ``store`` for every query; a query is correct when its first hit is its sentence."""
    vectors = model.encode_text([q.text for q in queries])
    outcomes = []
    for query, vector in zip(queries, vectors, strict=True):
        hits = store.search(vector, k=k)
        outcomes.append(QueryOutcome(query, hits, bool(hits) and is_expected(hits[0], query)))
    return outcomes


def _heard(hit: SpanHit, spans: dict[str, list[list[float]]]) -> str:
    """The bundled sentence the hit overlaps most (for display)."""
    best, text = 0.0, ""
    for i, (start, end) in enumerate(spans.get(hit.title, [])):
        share = _overlap((hit.start_s, hit.end_s), (start, end))
        if share > best:
            best, text = share, sample_sentences(hit.title)[i]
    return text


def _ingest(model: AudioTextEncoder, store_path: Path) -> tuple[QdrantStore, Any]:
    from clasp_ingest.connectors.local import LocalConnector
    from clasp_ingest.pipeline import ingest_source
    from clasp_ingest.store import open_store

    store = open_store(path=store_path, collection="clasp_demo")
    summary = ingest_source(LocalConnector(samples_dir()), model, store)
    return store, summary


def _print_results(console: Any, outcomes: Sequence[QueryOutcome]) -> None:
    from rich.markup import escape
    from rich.table import Table

    doc = json.loads((samples_dir() / "demo.json").read_text(encoding="utf-8"))
    spans = {k: v["spans"] for k, v in doc["samples"].items()}
    for out in outcomes:
        mark = "[green]✓ right span first[/]" if out.correct else "[red]✗ right span not first[/]"
        title = escape(f"[{out.query.language}] {out.query.text}")
        table = Table(title=f"{title}  {mark}", title_justify="left")
        for column in ("#", "source", "start (s)", "end (s)", "score", "spoken there"):
            table.add_column(column, justify="left" if column in ("source", "spoken there") else "right")
        for rank, hit in enumerate(out.hits, 1):
            table.add_row(
                str(rank),
                escape(Path(hit.source).name),
                f"{hit.start_s:.2f}",
                f"{hit.end_s:.2f}",
                f"{hit.score:.3f}",
                escape(_heard(hit, spans)),
            )
        console.print(table)


def _hits(value: str) -> int:
    """``--k``: a whole number of at least 1, else bad usage (exit 2) before the samples are
    ingested (the search would refuse it only after)."""
    from clasp_ingest.retriever.cli_search import MAX_SPANS

    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_SPANS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hits; give 1 to {MAX_SPANS}")
    return int(value)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m clasp_ingest.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=None, help="preset or model folder (default: $CLASP_MODEL, clasp-mini)"
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="Qdrant Edge folder (default: a temporary one)"
    )
    parser.add_argument("--k", type=_hits, default=3, help="hits shown per query")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 unless every query's first hit is its sentence"
    )
    return parser.parse_args(argv)


def run(model_name: str, store_path: Path, k: int) -> tuple[list[QueryOutcome], int]:
    """Load the model, ingest the samples into ``store_path``, answer the demo queries, print all.

    Returns the query outcomes and the number of samples that failed to ingest.
    """
    from rich.console import Console
    from rich.markup import escape

    from clasp_ingest.config import Settings
    from clasp_ingest.model.inference import load_inference_model

    console = Console()
    started = time.perf_counter()
    settings = Settings.model_validate({})
    model = load_inference_model(model_name, threads=settings.torch_threads, engine=settings.engine)
    console.print(f"loaded {model.model_id} in {time.perf_counter() - started:.1f} s")
    store, summary = _ingest(model, store_path)
    try:
        skipped = summary.media_skipped
        unchanged = f" ({skipped} unchanged, already in the store)" if skipped else ""
        console.print(
            f"ingested {summary.media_ok} files{unchanged}, {summary.segments} segments, "
            f"{summary.audio_s:.1f} s of audio in {summary.wall_s:.1f} s"
        )
        failed = [r for r in summary.results if r.status == "failed"]
        for result in failed:
            console.print(f"[red]failed[/] {escape(result.uri)}: {escape(str(result.error))}")
        outcomes = run_queries(model, store, demo_queries(), k)
    finally:
        store.close()
    _print_results(console, outcomes)
    right = sum(o.correct for o in outcomes)
    console.print(f"right span first for {right}/{len(outcomes)} queries")
    return outcomes, len(failed)


def _tolerant_stdout() -> None:
    """Text stdout's encoding cannot hold (a result's ✓, a Spanish query, where ``LC_ALL=C`` and
    ``PYTHONUTF8=0`` make it ASCII) is written as ``\\u2713`` escapes, as the ``clasp-ingest``
    commands do, instead of ending the demo with a ``UnicodeEncodeError``."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 2 when a sample failed to ingest; 1 with ``--strict`` when a query missed."""
    from clasp_ingest.config import Settings

    args = _parse(argv)
    _tolerant_stdout()
    model_name = args.model or Settings.model_validate({}).model  # reads CLASP_MODEL
    if args.store is not None:
        outcomes, failed = run(model_name, args.store, args.k)
    else:
        with tempfile.TemporaryDirectory(prefix="clasp-demo-") as tmp:
            outcomes, failed = run(model_name, Path(tmp) / "qdrant", args.k)
    if failed:
        return 2
    return 1 if args.strict and not all(o.correct for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
