"""``clasp-ingest ingest`` against hostile http sources on loopback (issue 18), as a user runs it:
the installed script in a subprocess, the tiny random model, a store under ``tmp_path``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_audio import referencing_texts
from tests.integration.cli_env import cli_env
from tests.integration.connectors.helpers import Episode, rss
from tests.integration.connectors.hostile import Hostile, hostile_server

SAMPLES = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"
CLI = str(Path(sys.executable).with_name("clasp-ingest"))
SIGNATURE = "5ecre7516a7ure0fa11ce"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Hostile]:
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(SAMPLES / "demo_en.opus", root / "talk.opus")
    with hostile_server(root, trickle_s=0.5) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def ingest(env: dict[str, str], *args: str, verbose: bool = False) -> tuple[int, dict[str, Any], str]:
    """``clasp-ingest [-vv] ingest ARGS --json``: (exit status, summary, stderr)."""
    head = [CLI, "-vv"] if verbose else [CLI]
    run = subprocess.run(
        [*head, "ingest", *args, "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    return run.returncode, json.loads(run.stdout or "{}"), run.stderr


def test_trickle_fails_on_the_deadline_and_the_rate_and_the_run_goes_on(
    site: Hostile, env: dict[str, str]
) -> None:
    trickle, good = f"{site.base_url}/trickle/slow.wav", f"{site.base_url}/talk.opus"
    started = time.monotonic()
    code, summary, _ = ingest(env, trickle, good, "--download-deadline", "2", "--min-download-rate", "0")
    assert code == 3 and summary["media_ok"] == 1
    ((failed),) = summary["media_failed"]
    assert failed["uri"] == trickle and "2 s download deadline" in failed["error"]
    assert "--download-deadline" in failed["error"]
    assert time.monotonic() - started < 30

    code, summary, _ = ingest(
        {**env, "CLASP_DOWNLOAD_RATE_WINDOW_S": "1"}, trickle, "--min-download-rate", "100"
    )
    assert code == 3
    assert "minimum download rate of 100 bytes/s" in summary["media_failed"][0]["error"]
    assert list(Path(env["TMPDIR"]).glob("clasp-dl-*")) == []


@pytest.mark.parametrize("flow", [[], ["--flow"]], ids=["in-process", "flow"])
@pytest.mark.parametrize(
    ("sent", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_stops_a_stuck_download_at_once(
    site: Hostile, env: dict[str, str], flow: list[str], sent: int, code: int, said: str
) -> None:
    """Ctrl-C, and SIGTERM (``timeout``, ``systemctl stop``, ``docker stop``) the same way: the
    partial download is deleted, one ``error:`` line, exit 130 / 143 (128 + the signal)."""
    process = subprocess.Popen(
        [CLI, "ingest", f"{site.base_url}/trickle/slow.wav", *flow],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert site.got_body_request.wait(150), "the download never started"
        deadline = time.monotonic() + 60  # the temporary file appears once the headers are in
        while not list(Path(env["TMPDIR"]).glob("clasp-dl-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(Path(env["TMPDIR"]).glob("clasp-dl-*"))
        time.sleep(0.5)  # well inside the download
        started = time.monotonic()
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=10)
        latency = time.monotonic() - started
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert latency < 2.0, latency
    assert stderr.strip() == f"error: {said}"  # and nothing else (with --flow: not Prefect's crash report)
    assert list(Path(env["TMPDIR"]).glob("clasp-dl-*")) == []


def test_an_item_that_fails_after_its_retries_is_one_line_with_flow(
    site: Hostile, env: dict[str, str]
) -> None:
    """Prefect logs a task's last failed try with its traceback: ``ingest --flow`` printed 40
    lines for one unreachable item, where ``ingest`` prints one (README: -vv adds tracebacks)."""
    gone = "http://127.0.0.1:9/talk.opus"  # nothing listens there: refused, transient, retried
    code, summary, stderr = ingest(env, f"{site.base_url}/talk.opus", gone, "--flow")
    assert code == 3 and summary["media_ok"] == 1 and [f["uri"] for f in summary["media_failed"]] == [gone]
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 3, stderr


def test_a_reader_that_goes_away_ends_the_command_with_141(env: dict[str, str]) -> None:
    """``clasp-ingest ... | head``: the reader closes the pipe; exit 128 + SIGPIPE, no traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes
    try:
        run = subprocess.run(
            [CLI, "models", "list"], env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write)
    assert run.returncode == 141 and run.stderr == "", run.stderr


def test_remote_feed_cannot_lead_to_local_files_or_other_private_hosts_and_a_404_fails_alone(
    site: Hostile, env: dict[str, str], tmp_path: Path
) -> None:
    secret = shutil.copy(SAMPLES / "demo_en.opus", tmp_path / "secret.opus")
    other = "http://127.0.0.2:9/x.wav"  # never connected to: refused on its address
    episodes = [
        Episode("Local", Path(secret).as_uri(), 100, mime="audio/ogg"),
        Episode("Other host", other, 100),
        Episode("Gone", f"{site.base_url}/gone.opus", 100, mime="audio/ogg"),
        Episode("Good", f"{site.base_url}/talk.opus", 100, mime="audio/ogg"),
    ]
    (site.root / "show.rss").write_text(rss("Hostile Radio", episodes))
    feed = f"{site.base_url}/show.rss"
    code, summary, _ = ingest(env, feed)
    assert code == 3 and summary["media_ok"] == 1
    errors = {item["uri"]: item["error"] for item in summary["media_failed"]}
    assert set(errors) == {Path(secret).as_uri(), other, f"{site.base_url}/gone.opus"}
    assert "does not exist (HTTP 404)" in errors[f"{site.base_url}/gone.opus"]
    assert "file://" in errors[Path(secret).as_uri()] and feed in errors[Path(secret).as_uri()]
    assert "loopback" in errors[other] and "--allow-private-hosts" in errors[other]
    assert list(Path(env["TMPDIR"]).glob("clasp-dl-*")) == []


def _signed(site: Hostile) -> str:
    return (
        f"{site.base_url}/signed/talk.opus?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T0Z"
        f"&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}"
    )


def _store_text(path: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in path.rglob("*") if p.is_file())


def test_signed_url_reaches_neither_the_store_nor_the_output(
    site: Hostile, env: dict[str, str], tmp_path: Path
) -> None:
    code, summary, stderr = ingest(env, _signed(site), verbose=True)
    assert code == 0, stderr
    assert summary["media_ok"] == 1 and summary["segments"] > 0
    assert SIGNATURE not in json.dumps(summary) + stderr
    assert SIGNATURE not in _store_text(tmp_path / "qdrant")
    search = subprocess.run(
        [CLI, "search", "train", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    hits = json.loads(search.stdout)
    assert hits and all("X-Amz-Signature=REDACTED" in hit["source"] for hit in hits)
    assert SIGNATURE not in search.stdout


def test_signed_url_stays_out_of_prefects_database(
    site: Hostile, env: dict[str, str], tmp_path: Path
) -> None:
    code, summary, stderr = ingest(env, _signed(site), "--flow")
    assert code == 0, stderr
    assert summary["media_ok"] == 1
    assert SIGNATURE not in json.dumps(summary) + stderr
    prefect_home = Path(env["PREFECT_HOME"])
    databases = list(prefect_home.rglob("*.db"))
    assert databases, list(prefect_home.rglob("*"))
    with sqlite3.connect(databases[0]) as db:
        (parameters,) = db.execute("SELECT parameters FROM flow_run").fetchone()
        assert "X-Amz-Signature=REDACTED" in parameters
    assert SIGNATURE not in _store_text(prefect_home)
    assert SIGNATURE not in _store_text(tmp_path / "qdrant")


def test_a_served_playlist_cannot_make_ffmpeg_read_a_local_file(
    site: Hostile, env: dict[str, str], tmp_path: Path
) -> None:
    # a DASH manifest served as talk.mp4, or an HLS playlist as a feed's episode, named a media
    # file of the ingesting machine, and ffmpeg decoded it into the store under the URL (anyone
    # who could search the collection could then play it)
    secret = tmp_path / "secret.ts"
    source = SAMPLES / "demo_en.opus"
    subprocess.run([_ffmpeg(), "-nostdin", "-v", "error", "-i", source, "-c:a", "aac", secret], check=True)
    texts = referencing_texts(secret, secret)
    (site.root / "lecture.mp4").write_text(texts["dash"])
    (site.root / "ep1.m3u8").write_text(texts["hls"])
    episode = f"{site.base_url}/ep1.m3u8"
    (site.root / "show.rss").write_text(rss("Radio", [Episode("Live", episode, 100, mime="audio/mpeg")]))
    manifest = f"{site.base_url}/lecture.mp4"
    code, summary, _ = ingest(env, manifest, f"{site.base_url}/show.rss", f"{site.base_url}/talk.opus")
    assert code == 3 and summary["media_ok"] == 1 and summary["segments"] > 0, summary
    errors = {item["uri"]: item["error"] for item in summary["media_failed"]}
    assert set(errors) == {manifest, episode}, summary
    assert all("a playlist or stream description" in error for error in errors.values())
    listed = subprocess.run([CLI, "store", "list", "--json"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "talk.opus" in listed.stdout
    assert "lecture" not in listed.stdout and "ep1" not in listed.stdout


def _ffmpeg() -> str:
    from clasp_ingest.media.decode import find_ffmpeg

    return find_ffmpeg()
