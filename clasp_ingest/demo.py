"""``python -m clasp_ingest.demo`` (``make demo``): segment the bundled speech sample.

For now it shows the segmentation stage only: the sentence-like spans Silero VAD finds in
``data/samples/demo_en.opus`` next to the sentences that were spoken.
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

__all__ = ["main", "sample_path", "sample_sentences"]

SAMPLE = "demo_en"


def sample_path() -> Path:
    """The bundled English sample (46.6 s, Ogg Opus; see PROVENANCE.md beside it)."""
    return Path(str(files("clasp_ingest").joinpath("data", "samples", f"{SAMPLE}.opus")))


def sample_sentences() -> list[str]:
    """The sentences spoken in the sample, in order."""
    text = files("clasp_ingest").joinpath("data", "samples", f"{SAMPLE}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from clasp_ingest.media import segment_media

    console = Console()
    started = time.perf_counter()
    segments = [item.segment for item in segment_media(sample_path(), media_id=SAMPLE)]
    elapsed = time.perf_counter() - started
    sentences = sample_sentences()
    table = Table(title=f"{sample_path().name}: {len(segments)} segments in {elapsed:.2f} s")
    for column in ("#", "start (s)", "end (s)", "spoken sentence"):
        table.add_column(column, justify="left" if column == "spoken sentence" else "right")
    for seg in segments:
        spoken = sentences[seg.index] if len(segments) == len(sentences) else ""
        table.add_row(str(seg.index), f"{seg.start_s:.3f}", f"{seg.end_s:.3f}", spoken)
    console.print(table)


if __name__ == "__main__":
    main()
