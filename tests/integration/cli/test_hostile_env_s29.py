"""The installed ``clasp-ingest`` where its surroundings are unusual (tester 2 of session 29):
closed standard streams, a reader of the output gone, an output with no room, a deleted working
folder, an ASCII locale, a model cache that cannot be written.

The tiny random model, except where the default model's own path is what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clasp_ingest.store import open_store
from tests.integration.cli_env import cli_env

CLI = str(Path(sys.executable).with_name("clasp-ingest"))
SAMPLE = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_es.opus"


def run(env: dict[str, str], *args: str | bytes, close: str = "") -> subprocess.CompletedProcess[str]:
    """The script with ``args``; ``close``: the shell redirections that close streams (``2>&-``)."""
    command: list[str | bytes] = [CLI, *args]
    if close:
        command = ["sh", "-c", f'exec "$@" {close}', "sh", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**cli_env(tmp_path), "CLASP_DEVICE": "cpu"}


@pytest.fixture
def stored(env: dict[str, str]) -> Path:
    """A store holding the Spanish sample (the tiny model)."""
    done = run(env, "ingest", str(SAMPLE), "--json")
    assert done.returncode == 0, done.stderr
    return Path(env["CLASP_QDRANT_PATH"])


def test_a_closed_stderr_or_stdin_is_no_terminal_and_the_work_is_done(
    env: dict[str, str], stored: Path, tmp_path: Path
) -> None:
    """``2>&-`` made ``sys.stderr`` None: ``ingest`` and ``store export`` crashed on its
    ``isatty()`` (nothing stored or exported), ``store delete <&-`` on stdin's."""
    other = tmp_path / "other"
    ingested = run(env, "ingest", str(SAMPLE), "--qdrant-path", str(other), close="2>&-")
    assert ingested.returncode == 0
    with open_store(path=other) as store:
        assert store.count() > 0
    exported = run(env, "store", "export", "--to", str(tmp_path / "copy"), close="2>&-")
    assert exported.returncode == 0 and json.loads(exported.stdout)["exported"] > 0
    asked = run(env, "store", "delete", str(SAMPLE), close="<&-")
    assert asked.returncode == 1
    said = f"error: would delete 1 media item ({SAMPLE.as_uri()}); add --yes to delete it\n"
    assert asked.stderr == said
    failed = run(env, "-vv", "store", "list", "--qdrant-path", str(tmp_path / "none"), close="2>&-")
    assert (failed.returncode, failed.stdout) == (1, "")  # -vv's traceback went to stdout instead


def closed_reader(env: dict[str, str], *args: str) -> int:
    """The exit status of the script writing to a pipe whose reader is gone (``| true``)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([CLI, *args], env=env, stdout=write, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(write)
    assert done.stderr == b"", done.stderr
    return done.returncode


def test_a_table_or_help_to_a_reader_gone_exits_141(env: dict[str, str], tmp_path: Path) -> None:
    """rich's tables and help exited 1 there (``Console.on_broken_pipe``), which says the
    command failed although the item was stored; README promises 141 for every command."""
    assert closed_reader(env, "models", "list") == 141
    assert closed_reader(env, "--help") == 141
    assert closed_reader(env, "store", "--help") == 141
    assert closed_reader(env, "ingest", str(SAMPLE)) == 141
    with open_store(path=Path(env["CLASP_QDRANT_PATH"])) as store:
        assert store.count() > 0  # the work was done before the summary


def test_a_failure_whose_error_line_meets_a_closed_reader_keeps_its_status(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A missing store (1) and bad usage (2) exited 141 where stderr's reader was gone, though
    stdout's was there (reviewer 3): 141 says the output's reader went away."""
    read, write = os.pipe()
    os.close(read)
    try:
        missing = subprocess.run(
            [CLI, "store", "list", "--qdrant-path", str(tmp_path / "none")],
            env=env, stdout=subprocess.PIPE, stderr=write, timeout=300,
        )  # fmt: skip
        usage = subprocess.run([CLI, "search", "cats", "--k", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=write, timeout=300)  # fmt: skip
    finally:
        os.close(write)
    assert missing.returncode == 1 and usage.returncode in (1, 2)  # click exits 1 if its line fails


def test_a_full_disk_elsewhere_is_not_called_the_output(env: dict[str, str], stored: Path) -> None:
    """An error without a file name while stdout is a pipe: fstatvfs of a pipe says 0 blocks
    free, so an export into a full disk was "cannot write the output" (reviewer 3)."""
    script = (
        "import errno, sys; from clasp_ingest.cli import _output_full; "
        "print(_output_full(OSError(errno.ENOSPC, 'No space left on device')), file=sys.stderr)"
    )
    piped = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert piped.stderr.strip() == "False"
    with Path("/dev/full").open("w") as full:
        to_full = subprocess.run([sys.executable, "-c", script], env=env, stdout=full, stderr=subprocess.PIPE,
                                 text=True, timeout=60)  # fmt: skip
    assert to_full.stderr.strip() == "True"


def test_an_output_with_no_room_says_so(env: dict[str, str], stored: Path) -> None:
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [CLI, "store", "list"], env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300
        )
    assert done.returncode == 1
    assert done.stderr == (
        "error: cannot write the output (No space left on device); free some space, or write it elsewhere\n"
    )


def test_ingest_from_a_deleted_folder_stops_before_the_model_loads(tmp_path: Path) -> None:
    """The default model: CTranslate2's import died there ("Intel oneMKL FATAL ERROR", exit 2)
    and left an empty collection."""
    env = {k: v for k, v in cli_env(tmp_path).items() if k != "CLASP_MODEL"}
    gone = tmp_path / "gone"
    gone.mkdir()
    store = tmp_path / "store"
    script = f'cd {gone} && rmdir {gone} && exec "$@"'
    done = subprocess.run(
        ["sh", "-c", script, "sh", CLI, "ingest", str(SAMPLE), "--qdrant-path", str(store)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: the current folder no longer exists (deleted or moved away); cd to another folder "
        "and run the command again\n"
    )
    assert not store.exists()


def test_a_query_typed_in_utf8_is_searched_as_such_in_an_ascii_locale(
    env: dict[str, str], stored: Path
) -> None:
    """``LC_ALL=C PYTHONUTF8=0``: the command line arrives as surrogate escapes; "猫在睡觉" was
    refused as empty, "¿Qué ...?" searched as other text."""
    ascii_env = {k: v for k, v in env.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))}
    ascii_env |= {"LC_ALL": "C", "PYTHONUTF8": "0"}
    utf8_env = {**ascii_env, "LC_ALL": "C.UTF-8"}
    for query in ("猫在睡觉", "¿Qué fotografió el telescopio?"):
        typed = query.encode("utf-8")  # the bytes a UTF-8 terminal sends
        in_ascii = run(ascii_env, "search", typed, "--k", "2", "--json")
        in_utf8 = run(utf8_env, "search", typed, "--k", "2", "--json")
        assert in_ascii.returncode == 0, in_ascii.stderr
        assert json.loads(in_ascii.stdout) == json.loads(in_utf8.stdout)
    latin1 = run(ascii_env, "search", b"caf\xe9")
    assert latin1.returncode == 1
    assert latin1.stderr.startswith("error: the query is not text: its bytes are not UTF-8 nor ascii")


def test_a_model_cache_that_cannot_be_written_stops_the_run_naming_it(tmp_path: Path) -> None:
    """The default model on ONNX Runtime (``CLASP_ENGINE=onnx``: ``auto`` falls back to torch,
    which needs the same cache). A service user's missing HOME failed every item with a bare
    ``PermissionError: '/nonexistent'`` (exit 3); as root the cache lies under a file instead."""
    (tmp_path / "afile").write_text("")
    env = {k: v for k, v in cli_env(tmp_path).items() if k != "CLASP_MODEL"}
    env |= {"CLASP_ENGINE": "onnx", "XDG_CACHE_HOME": str(tmp_path / "afile" / "sub")}
    done = run(env, "ingest", str(SAMPLE))
    assert done.returncode == 1, done.stderr
    cache = tmp_path / "afile" / "sub" / "clasp-ingest" / "onnx"
    said = f"error: the model cache {str(cache)!r} cannot be written (Not a directory); set XDG_CACHE_HOME"
    assert said in done.stderr
