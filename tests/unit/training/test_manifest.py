from __future__ import annotations

import json
from pathlib import Path

import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.training.manifest import (
    MAX_LINE_BYTES,
    MAX_TEXT_CHARS,
    ManifestRow,
    manifest_lines,
    read_manifest,
    select_split,
    split_train_val,
)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    (tmp_path / "clips").mkdir()
    for name in ("a.wav", "b.wav"):
        (tmp_path / "clips" / name).write_bytes(b"RIFF")
    return tmp_path


def test_reads_rows_and_resolves_relative_paths(clips: Path) -> None:
    manifest = _write(
        clips / "m.jsonl",
        [
            json.dumps({"audio": "clips/a.wav", "text": "hello", "language": "en", "split": "train"}),
            "",
            "# a comment",
            json.dumps({"audio": str(clips / "clips" / "b.wav"), "text": "bonjour"}),
        ],
    )
    rows = read_manifest(manifest)
    assert rows[0] == ManifestRow(clips / "clips" / "a.wav", "hello", "en", "train", line=1)
    assert rows[1].audio == clips / "clips" / "b.wav" and rows[1].split is None and rows[1].line == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"audio": "clips/a.wav"}', "'text'"),
        ('{"audio": "clips/a.wav", "text": "  "}', "field 'text' must be a non-empty string"),
        ('{"audio": "clips/a.wav", "text": ""}', "field 'text' must be a non-empty string"),
        ('{"audio": "clips/a.wav", "text": "x", "split": "dev"}', "'dev' is not one of train, val, test"),
        ('{"audio": "clips/a.wav", "text": "x", "speaker": 3}', "unknown field"),
        ('{"audio": "clips/missing.wav", "text": "x"}', "does not exist"),
        ('{"audio": "clips/a.wav", "text": "x", "language": 5}', "'language'"),
    ],
)
def test_bad_rows_name_the_line(clips: Path, line: str, message: str) -> None:
    good = json.dumps({"audio": "clips/a.wav", "text": "fine"})
    manifest = _write(clips / "m.jsonl", [good, good, line])
    with pytest.raises(ConfigError, match=message) as info:
        read_manifest(manifest)
    assert "m.jsonl:3" in str(info.value) and "manifest line" not in str(info.value)  # said once


def test_missing_and_empty_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match="no rows"):
        read_manifest(_write(tmp_path / "e.jsonl", ["", "# only a comment"]))


def _rows(splits: list[str | None]) -> list[ManifestRow]:
    return [ManifestRow(Path(f"/x/{i}.wav"), f"t{i}", split=s, line=i + 1) for i, s in enumerate(splits)]


def test_select_split() -> None:
    rows = _rows(["train", "test", "test", None])
    assert [r.line for r in select_split(rows, "test")] == [2, 3]
    unsplit = _rows([None, None])
    assert select_split(unsplit, "test") == unsplit
    with pytest.raises(ConfigError, match="no rows with split 'val'"):
        select_split(rows, "val")


def test_unmarked_rows_are_training_rows_for_train_and_for_select_split() -> None:
    rows = _rows(["train", "val", "val", None, "test"])
    assert [r.line for r in select_split(rows, "train")] == [1, 4]
    assert select_split(rows, "train") == split_train_val(rows, val_fraction=0.1, seed=0)[0]
    assert [r.line for r in select_split(rows, "test")] == [5]  # never a test or val row


def test_split_train_val_uses_val_rows_or_holds_out_seeded() -> None:
    rows = _rows(["train", "train", "val", "val", "test", None])
    train, val = split_train_val(rows, val_fraction=0.1, seed=0)
    assert [r.line for r in train] == [1, 2, 6] and [r.line for r in val] == [3, 4]
    unsplit = _rows([None] * 20)
    first = split_train_val(unsplit, val_fraction=0.2, seed=3)
    assert len(first[1]) == 4 and len(first[0]) == 16
    assert first == split_train_val(unsplit, val_fraction=0.2, seed=3)
    assert first != split_train_val(unsplit, val_fraction=0.2, seed=4)
    with pytest.raises(ConfigError, match="at least 2"):
        split_train_val(_rows([None, None, None]), val_fraction=0.5, seed=0)


_PEAK = """
import resource, sys
from clasp_ingest.errors import ConfigError
from clasp_ingest.training.manifest import read_manifest
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_manifest(sys.argv[1], check_files=False)
except ConfigError as exc:
    print(exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_50_mb_row_is_refused_naming_file_and_line_in_flat_memory(tmp_path: Path) -> None:
    import subprocess
    import sys

    manifest = tmp_path / "huge.jsonl"
    with manifest.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"audio": "a.wav", "text": "fine"}) + "\n")
        fh.write(json.dumps({"audio": "a.wav", "text": "word " * 10_000_000}) + "\n")  # 50 MB
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, str(manifest)], capture_output=True, text=True, check=True
    )
    message, grown_mib = run.stdout.strip().splitlines()
    assert message.startswith(f"{manifest}:2: line longer than {MAX_LINE_BYTES} bytes")
    assert int(grown_mib) < 16  # the reader holds at most one bounded line (was ~180 MiB)


def test_row_limits(tmp_path: Path) -> None:
    long_text = _write(
        tmp_path / "t.jsonl", [json.dumps({"audio": "a.wav", "text": "x" * (MAX_TEXT_CHARS + 1)})]
    )
    with pytest.raises(ConfigError, match=rf"t.jsonl:1: 'text' has {MAX_TEXT_CHARS + 1} characters"):
        read_manifest(long_text, check_files=False)
    at_limit = _write(tmp_path / "ok.jsonl", [json.dumps({"audio": "a.wav", "text": "x" * MAX_TEXT_CHARS})])
    assert len(read_manifest(at_limit, check_files=False)[0].text) == MAX_TEXT_CHARS
    latin1 = tmp_path / "l.jsonl"
    latin1.write_bytes(b'{"audio": "a.wav", "text": "ok"}\n{"audio": "a.wav", "text": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"l.jsonl:2: not UTF-8"):
        read_manifest(latin1, check_files=False)
    assert list(manifest_lines(at_limit, max_line_bytes=MAX_TEXT_CHARS + 40)) == [
        (1, at_limit.read_text(encoding="utf-8"))
    ]
    with pytest.raises(ConfigError, match=r"ok.jsonl:1: line longer than 100 bytes"):
        list(manifest_lines(at_limit, max_line_bytes=100))


def test_repeated_rows_are_warned_about(clips: Path, caplog: pytest.LogCaptureFixture) -> None:
    row = json.dumps({"audio": "clips/a.wav", "text": "hello", "split": "test"})
    other = json.dumps({"audio": "clips/a.wav", "text": "hello", "split": "train"})  # another split
    rows = read_manifest(_write(clips / "m.jsonl", [row, other, row]))
    assert len(rows) == 3  # kept: the warning says to remove them
    assert "m.jsonl: 1 repeated rows (line 3 repeats line 1); remove them" in caplog.text
