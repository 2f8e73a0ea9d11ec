"""The fault suite's bad-input corpus, built on the spot with ffmpeg from the packaged samples.

The seeds are the three speech samples shipped in ``clasp_ingest/data/samples`` (our own
recordings); everything else is derived from them with ffmpeg or written byte by byte, so
the same corpus comes out on every machine. Nothing is downloaded.

``mixed/`` is one folder a user might point the CLI at: good files beside broken ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from clasp_ingest.media.decode import find_ffmpeg

__all__ = ["SAMPLES", "Corpus", "build_corpus", "ffmpeg", "huge_manifest"]

SAMPLES = Path(__file__).resolve().parents[2] / "clasp_ingest" / "data" / "samples"
EN, DE, ES = SAMPLES / "demo_en.opus", SAMPLES / "demo_de.opus", SAMPLES / "demo_es.opus"

#: The 3-hour file: silence with the English sample spoken at these offsets (seconds).
LONG_S = 3 * 3600
LONG_SPEECH_AT_S = (60, 5400, 10_000)


@dataclass(frozen=True)
class Corpus:
    """Paths of every kind of input; ``good`` items must be ingested, ``bad`` ones fail alone."""

    root: Path
    mixed: Path
    good: dict[str, Path]
    bad: dict[str, Path]
    non_utf8: bytes  # a file of ``mixed`` whose name is not UTF-8 (also good)
    long: Path  # 3 hours, mostly silence
    kill: Path  # a folder of two speech wavs: a.wav (9 segments), b.wav (4 segments)
    changed_old: Path  # a speech wav ...
    changed_new: Path  # ... and the same samples with more speech after them (same first segments)
    seeds: dict[str, bytes] = field(repr=False)  # bodies the HTTP servers serve

    @property
    def good_sources(self) -> list[str | bytes]:
        """The good items of ``mixed`` as CLI arguments (the non-UTF-8 one as bytes)."""
        return [*(str(p) for p in self.good.values()), self.non_utf8]


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly; raise with its error output on failure."""
    cmd = [find_ffmpeg(), "-nostdin", "-v", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)


def build_corpus(root: Path) -> Corpus:
    """Write the whole corpus under ``root`` (about 15 s on 2 cores)."""
    mixed = root / "mixed"
    mixed.mkdir(parents=True)
    good = _good_items(mixed)
    non_utf8 = os.fsencode(mixed) + b"/caf\xe9 talk.opus"
    shutil.copyfile(ES, non_utf8)
    old, new = _changed_pair(root / "changed")
    return Corpus(
        root=root,
        mixed=mixed,
        good=good,
        bad=_bad_items(mixed),
        non_utf8=non_utf8,
        long=_three_hours(root / "long" / "three-hours.mp3"),
        kill=_kill_folder(root / "kill"),
        changed_old=old,
        changed_new=new,
        seeds={name: path.read_bytes() for name, path in (("en", EN), ("de", DE), ("es", ES))},
    )


def _good_items(folder: Path) -> dict[str, Path]:
    unicode_dir = folder / "ユニコード フォルダ 🎧"
    unicode_dir.mkdir()
    items = {
        "good": folder / "good.opus",
        "unicode path": unicode_dir / "日本語の トーク 🎙️ 2024.opus",
        "8-channel 96 kHz": folder / "surround-8ch-96k.flac",
        "truncated mp3": folder / "cut-download.mp3",
        "10-minute silence": folder / "silence-10min.mp3",
    }
    shutil.copyfile(EN, items["good"])
    shutil.copyfile(DE, items["unicode path"])
    ffmpeg("-i", DE, "-af", "pan=7.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0|c6=c0|c7=c0", "-ar", "96000",
           "-c:a", "flac", items["8-channel 96 kHz"])  # fmt: skip
    _truncated_mp3(items["truncated mp3"])
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "600", "-c:a", "libmp3lame", "-b:a", "8k",
           items["10-minute silence"])  # fmt: skip
    return items


def _truncated_mp3(path: Path) -> None:
    """The English sample as mp3, cut at 40 % of its bytes (a broken-off download)."""
    whole = path.with_suffix(".whole")
    ffmpeg("-i", EN, "-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3", whole)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 5])
    whole.unlink()


def _bad_items(folder: Path) -> dict[str, Path]:
    items = {
        "empty file": folder / "empty.mp3",
        "not audio": folder / "notes.wav",
        "no audio track": folder / "video-only.mp4",
    }
    items["empty file"].write_bytes(b"")
    items["not audio"].write_text("Meeting notes, not a recording.\n" * 200, encoding="utf-8")
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64:r=10:d=3", "-c:v", "libx264", "-preset", "ultrafast",
           items["no audio track"])  # fmt: skip
    return items


def _three_hours(path: Path) -> Path:
    """3 h of 16 kHz mono mp3 at 8 kbit/s (11 MB): silence with three spoken passages."""
    path.parent.mkdir(parents=True)
    inputs: list[str | Path] = ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"]
    mixes = []
    for n, at in enumerate(LONG_SPEECH_AT_S, start=1):
        inputs += ["-i", EN]
        mixes.append(f"[{n}:a]adelay={at * 1000}:all=1[s{n}]")
    labels = "".join(f"[s{n}]" for n in range(1, len(LONG_SPEECH_AT_S) + 1))
    graph = ";".join([*mixes, f"[0:a]{labels}amix=inputs={len(mixes) + 1}:duration=first:normalize=0"])
    ffmpeg(*inputs, "-filter_complex", graph, "-t", str(LONG_S), "-ac", "1", "-ar", "16000",
           "-c:a", "libmp3lame", "-b:a", "8k", path)  # fmt: skip
    return path


def _kill_folder(folder: Path) -> Path:
    folder.mkdir()
    ffmpeg("-i", EN, "-ac", "1", "-ar", "16000", folder / "a.wav")
    ffmpeg("-i", DE, "-ac", "1", "-ar", "16000", folder / "b.wav")
    return folder


def _changed_pair(folder: Path) -> tuple[Path, Path]:
    """``talk.wav`` (English sample) and ``talk-v2.wav``: the same samples, then the Spanish one.

    Both are lossless PCM, so the new version's first segments have exactly the old boundaries.
    """
    folder.mkdir()
    old, new = folder / "talk.wav", folder.parent / "talk-v2.wav"
    ffmpeg("-i", EN, "-ac", "1", "-ar", "16000", old)
    ffmpeg("-i", old, "-i", ES, "-filter_complex", "[1:a]aresample=16000,aformat=channel_layouts=mono[b];"
           "[0:a][b]concat=n=2:v=0:a=1", "-ac", "1", "-ar", "16000", new)  # fmt: skip
    return old, new


def huge_manifest(path: Path, audio: Path, text: str) -> Path:
    """A training manifest (JSONL) whose line 2 holds a 50 MB text."""
    rows = [
        {"audio": str(audio), "text": text, "split": "test"},
        {"audio": str(audio), "text": "word " * 10_000_000, "split": "test"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
