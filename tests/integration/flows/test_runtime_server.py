"""``prefect_runtime()``'s temporary API server stops with its process: on a normal exit, and
when the process is killed with SIGKILL (no orphaned server left behind)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# Runs a flow under prefect_runtime() twice: the first run ends normally, the second sleeps.
# Each prints its server's pid and API URL, then "running" from inside the flow, which also
# logs a project line to the run's logs.
_SCRIPT = """
import logging, sys, time
from pathlib import Path
from prefect import flow
from clasp_ingest.flows import prefect_runtime, run_logs

@flow(log_prints=False)
def waits(seconds: float) -> str:
    with run_logs():
        logging.getLogger("clasp_ingest.runtime_test").warning("flow %s running", seconds)
    print("running", flush=True)
    time.sleep(seconds)
    return "done"

for seconds in (0.0, 600.0):
    with prefect_runtime(data_dir=Path(sys.argv[1])) as runtime:
        print(runtime.server_pid, runtime.api_url, flush=True)
        print(waits(seconds), flush=True)
"""


def _migrated_data_dir(tmp_path: Path) -> Path:
    """A data dir whose Prefect database is a copy of the session harness's, already migrated
    (a fresh database costs ~10 s of migrations on the first start)."""
    import sqlite3

    import prefect.settings as ps

    url = str(ps.PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or "")
    home = tmp_path / "prefect"
    home.mkdir()
    if url.startswith("sqlite+aiosqlite:///"):
        with (
            sqlite3.connect(url.removeprefix("sqlite+aiosqlite:///")) as source,
            sqlite3.connect(home / "prefect.db") as copy,
        ):
            source.backup(copy)
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING"}


def _start(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(data_dir)], env=_env(), stdout=subprocess.PIPE, text=True
    )


def _server_of(process: subprocess.Popen[str]) -> tuple[int, int]:
    """The server's pid and port, read from the process once its flow runs."""
    assert process.stdout is not None
    pid_text, url = process.stdout.readline().split()
    assert process.stdout.readline().strip() == "running"
    return int(pid_text), int(url.rsplit(":", 1)[1].split("/")[0])


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (dead, waiting for whoever adopted it to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_server_stops_with_the_context_and_dies_with_a_process_killed_by_sigkill(tmp_path: Path) -> None:
    process = _start(_migrated_data_dir(tmp_path))
    assert process.stdout is not None
    first, first_port = _server_of(process)
    assert _parent_of(first) == process.pid and _listening(first_port)
    assert process.stdout.readline().strip() == "done"
    second, port = _server_of(process)  # the process lives on, in its second run
    try:
        assert _gone(first) and not _listening(first_port)  # stopped when its context ended
        assert _parent_of(second) == process.pid and _listening(port)
        os.kill(process.pid, signal.SIGKILL)  # the process alone, not its group
        process.wait(timeout=30)
        # a killed process's threads (and its socket) can outlast its leader's zombie by a moment
        stopped = _wait_until(lambda: _gone(second) and not _listening(port), timeout=15)
        assert stopped, f"server {second} (port {port}) outlived its killed parent"
    finally:
        process.kill()
        if not _gone(second):
            os.kill(second, signal.SIGKILL)  # leave no server behind, even when the test fails
    assert "flow 0.0 running" in _stored_logs(tmp_path, "clasp_ingest.runtime_test")  # sent before the stop


def _stored_logs(data_dir: Path, logger: str) -> list[str]:
    """Messages of ``logger`` in the database of the servers prefect_runtime() started."""
    import sqlite3

    with sqlite3.connect(data_dir / "prefect" / "prefect.db") as db:
        rows = db.execute("SELECT message FROM log WHERE name = ? ORDER BY timestamp", (logger,)).fetchall()
    return [message for (message,) in rows]


def test_runs_inside_are_quiet_without_any_logging_setting(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom pathlib import Path\nfrom prefect import flow\n"
        "from clasp_ingest.flows import prefect_runtime\n"
        "@flow\ndef hello() -> str:\n    return 'hello'\n"
        "with prefect_runtime(data_dir=Path(sys.argv[1])):\n    print(hello(), flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # Prefect's INFO default
    run = subprocess.run(
        [sys.executable, "-c", script, str(_migrated_data_dir(tmp_path))],
        env={**env, "DO_NOT_TRACK": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "hello", run.stderr[-2000:]
    assert "Beginning flow run" not in run.stderr and "Finished in state" not in run.stderr, run.stderr[
        -2000:
    ]


def _children(pid: int) -> list[int]:
    stats = Path("/proc").glob("[0-9]*/stat")
    return [int(stat.parent.name) for stat in stats if _parent_or_none(stat) == pid]


def _parent_or_none(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_interrupts_an_ingest_flow(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group: the temporary API server
    must not die of it before the interrupted run has reported (exit 130, as plain ingest)."""
    from clasp_ingest.media.decode import find_ffmpeg

    sample = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_en.opus"
    long = tmp_path / "long.wav"
    loop = ["-stream_loop", "7", "-i", str(sample), "-ac", "1", "-ar", "16000"]
    subprocess.run([find_ffmpeg(None), "-loglevel", "error", *loop, str(long)], check=True)
    home = _migrated_data_dir(tmp_path) / "prefect"
    command = [
        sys.executable, "-m", "clasp_ingest", "-vv", "ingest", str(long), "--flow", "--model", "tiny-random",
        "--device", "cpu", "--batch-size", "2", "--qdrant-path", str(tmp_path / "q"),
    ]  # fmt: skip
    env = {**_env(), "PREFECT_HOME": str(home), "CLASP_DTYPE": "fp32"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )  # its own group, as a terminal's foreground job
    lines: list[str] = []
    assert process.stderr is not None
    try:
        for line in process.stderr:
            lines.append(line)
            if "embedded, writing" in line:  # an item is mid-way
                break
        else:
            pytest.fail("the run ended before it could be interrupted:\n" + "".join(lines[-20:]))
        servers = [pid for pid in _children(process.pid) if "uvicorn" in _cmdline(pid)]
        os.killpg(process.pid, signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    stderr = "".join(lines) + rest
    assert process.returncode == 130, stderr[-3000:]
    assert "error: interrupted" in stderr and "unexpected" not in stderr, stderr[-3000:]
    assert "Unable to connect" not in stderr and "cannot decode" not in stderr, stderr[-3000:]
    assert len(servers) == 1 and _wait_until(lambda: _gone(servers[0]), timeout=15)  # stopped on the way out
