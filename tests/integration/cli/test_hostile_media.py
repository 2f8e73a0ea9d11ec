"""``clasp-ingest ingest`` as a user runs it (the installed script, a subprocess) over media
that is damaged, odd or not media at all: each bad item fails alone with one line naming it
and the fix, damaged items are kept with a warning, odd names and layouts are ingested.

The tiny random model keeps it quick; the default model's runs are in test_default_model.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.store import open_store
from tests.fixtures_audio import convert, corrupt_middle, surround_96k, truncate, video_only
from tests.unit.pipeline.speech import SENTENCES, speak

CLI = str(Path(sys.executable).with_name("clasp-ingest"))
LATIN1 = b"caf\xe9.wav"
UNICODE = "日本語 🎤 talk.wav"
#: talk.wav, surround.wav, cut.mp3, damaged.mp3, caf\xe9.wav and the Japanese one.
GOOD = 6
#: Bad item -> what its one-line error must say (the trouble and the fix).
BAD = {
    "empty.mp3": "the file is empty (0 bytes); download or export it again",
    "video.mp4": "no audio stream (video only?); give a file with an audio track",
    "random.mp3": "not a readable media file (corrupt, truncated, or not audio/video); check that it plays",
    "notes.mp3": "not a readable media file (corrupt, truncated, or not audio/video); check that it plays",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One good talk, its damaged, surround and oddly named copies, and four bad items."""
    root = tmp_path_factory.mktemp("hostile")
    src = tmp_path_factory.mktemp("src")
    talk = speak(root / "talk.wav", SENTENCES[0:3])
    mp3 = convert(talk, src / "talk.mp3", "-b:a", "32k")
    truncate(mp3, root / "cut.mp3", 0.4)
    corrupt_middle(mp3, root / "damaged.mp3")
    surround_96k(talk, root / "surround.wav")
    Path(os.fsdecode(os.fsencode(root) + b"/" + LATIN1)).write_bytes(talk.read_bytes())
    (root / UNICODE).write_bytes(talk.read_bytes())
    (root / "empty.mp3").write_bytes(b"")
    video_only(root / "video.mp4")
    (root / "random.mp3").write_bytes(
        np.random.default_rng(3).integers(0, 256, 6000, dtype=np.uint8).tobytes()
    )
    (root / "notes.mp3").write_text("meeting notes, not audio\n" * 50)
    return root


def cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLASP_", "PREFECT_"))}
    if home is not None:
        env |= {"HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    command = [CLI, "ingest", *args, "--model", "tiny-random", "--device", "cpu"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def test_bad_items_fail_alone_damaged_ones_warn_odd_ones_ingest(hostile: Path, tmp_path: Path) -> None:
    store = ["--qdrant-path", str(tmp_path / "q")]
    run = cli(str(hostile), *store, "--json")
    assert run.returncode == 3, run.stderr  # ran; some items failed
    summary = json.loads(run.stdout)
    assert summary["media_ok"] == GOOD
    failed = {_name(f["uri"]): f["error"] for f in summary["media_failed"]}
    assert set(failed) == set(BAD)
    for name, error in failed.items():
        assert f"{hostile / name}" in error and BAD[name] in error and "\n" not in error
        assert sum(name in line for line in run.stderr.splitlines()) == 1  # one log line each
    warned = {_name(w["uri"]): w["warning"] for w in summary["media_warnings"]}
    assert set(warned) == {"cut.mp3", "damaged.mp3"}
    assert warned["cut.mp3"].startswith("ends early: the stream is truncated or corrupt after 00:00:0")
    assert all(w.endswith("; decoded what was readable") for w in warned.values())

    with open_store(path=tmp_path / "q") as opened:
        assert opened.count() == summary["segments"]
        meta = {_name(p.payload["metadata"]["source"]): p.payload["metadata"] for p in opened.iter_points()}
    assert meta["caf%E9.wav"]["title"] == "caf\\xe9" and meta["caf%E9.wav"]["filename"] == "caf\\xe9.wav"
    unicode = next(m for name, m in meta.items() if name.startswith("%E6%97%A5"))
    assert unicode["title"] == "日本語 🎤 talk" and unicode["filename"] == UNICODE

    again = cli(str(hostile), *store, "--json")  # ids are stable: nothing new to do
    assert again.returncode == 3
    rerun = json.loads(again.stdout)
    assert (rerun["media_ok"], rerun["media_skipped"], len(rerun["media_failed"])) == (0, GOOD, len(BAD))


def test_the_table_names_each_warning_on_one_line(hostile: Path, tmp_path: Path) -> None:
    run = cli(str(hostile / "cut.mp3"), "--qdrant-path", str(tmp_path / "q"))
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("warning ")]
    assert len(lines) == 1 and lines[0].startswith(f"warning {(hostile / 'cut.mp3').as_uri()}: ends early")
    assert lines[0].endswith("decoded what was readable")


def test_the_flow_reports_the_same_warnings(hostile: Path, tmp_path: Path) -> None:
    args = [str(hostile / "cut.mp3"), "--qdrant-path", str(tmp_path / "q"), "--json"]
    flow = cli(*args, "--flow", home=tmp_path)
    assert flow.returncode == 0, flow.stderr
    warnings = json.loads(flow.stdout)["media_warnings"]
    assert [_name(w["uri"]) for w in warnings] == ["cut.mp3"]
    assert warnings[0]["warning"].startswith("ends early: the stream is truncated or corrupt after")
    in_process = json.loads(cli(*args, "--force").stdout)["media_warnings"]
    assert in_process == warnings


def test_search_refuses_an_empty_query_and_cuts_a_long_one_with_one_warning(
    hostile: Path, tmp_path: Path
) -> None:
    store = ["--qdrant-path", str(tmp_path / "q")]
    assert cli(str(hostile / "talk.wav"), *store).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLASP_", "PREFECT_"))}

    def search(query: str) -> subprocess.CompletedProcess[str]:
        command = [CLI, "search", query, "--json", *store]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    empty = search("  ")
    assert empty.returncode == 1 and empty.stderr.startswith("error: the query is empty")
    long = search(("the library opens at nine in the morning " * 2500)[:100_000])
    assert long.returncode == 0, long.stderr
    assert len(json.loads(long.stdout)) > 0
    [warning] = long.stderr.strip().splitlines()
    assert warning.startswith("warning: a query of 100000 characters is longer than the 254-token limit")
