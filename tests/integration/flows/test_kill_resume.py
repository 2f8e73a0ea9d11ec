"""A run killed with SIGKILL mid-way, then run again, ends with exactly the right points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors import LocalConnector

from clasp_ingest.model import load_model
from clasp_ingest.pipeline import PipelineOptions, ingest_source
from clasp_ingest.store import open_store
from tests.unit.pipeline.speech import SENTENCES, speak

BATCH = 2


def _cli(folder: Path, qdrant: Path, home: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "clasp_ingest", *extra, "ingest", str(folder), "--model", "tiny-random",
        "--device", "cpu", "--qdrant-path", str(qdrant), "--batch-size", str(BATCH), "--json",
    ]  # fmt: skip


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "CLASP_DTYPE": "fp32"}


def _snapshot(qdrant: Path) -> dict[str, tuple[str, str, str, float, float, np.ndarray]]:
    with open_store(path=qdrant) as store:
        return {
            p.id: (
                p.payload["metadata"]["media_id"],
                p.payload["metadata"]["version"],
                p.payload["metadata"]["state"],
                p.payload["metadata"]["start_s"],
                p.payload["metadata"]["end_s"],
                np.asarray(p.vector, dtype=np.float32),
            )
            for p in store.iter_points(with_vectors=True)
        }


# Loaded by the CLI's interpreter (PYTHONPATH): when the pipeline logs that a batch of the
# item is embedded (before it is written), the process prints a marker and stops itself, so
# the SIGKILL always lands before the item can complete, however busy the machine is.
_STOP_HOOK = """
import logging, os, signal, sys

class _StopHere(logging.Filter):
    def filter(self, record):
        if os.environ["CLASP_TEST_STOP_AT"] in record.getMessage():
            sys.stderr.write("stopped for the kill\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSTOP)
        return True

logging.getLogger("clasp_ingest.pipeline").addFilter(_StopHere())
"""


def _kill_during_second_item(
    command: list[str], env: dict[str, str], second: str, timeout: float, hook_dir: Path
) -> list[str]:
    """Start the CLI, SIGKILL its process group while the 2nd batch of ``second`` is unwritten."""
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(_STOP_HOOK, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(hook_dir), env.get("PYTHONPATH", "")) if p)
    env = {**env, "PYTHONPATH": path, "CLASP_TEST_STOP_AT": f"batch 2 of {second}:"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    try:
        for line in process.stderr:
            seen.append(line)
            if line.startswith("stopped for the kill"):
                break
            if time.monotonic() > deadline:
                pytest.fail("the run never reached the second item:\n" + "".join(seen[-20:]))
        else:
            pytest.fail("the run ended before it could be killed:\n" + "".join(seen[-20:]))
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    return seen


@pytest.mark.slow
def test_killed_run_then_rerun_gives_the_exact_point_set(tmp_path: Path) -> None:
    folder = tmp_path / "media"
    for name, start in (("a.wav", 0), ("b.wav", 1), ("c.wav", 2)):
        speak(folder / name, SENTENCES[start : start + 4], voice="en")
    qdrant, home = tmp_path / "q", tmp_path / "prefect"
    home.mkdir()
    second = (folder / "b.wav").resolve().as_uri()

    log = _kill_during_second_item(
        _cli(folder, qdrant, home, "-vv"), _env(home), second, timeout=300, hook_dir=tmp_path / "hook"
    )
    assert any("ingested " in line and "a.wav" in line for line in log)
    killed = _snapshot(qdrant)
    a_id = LocalConnector(folder / "a.wav").discover().__next__().media_id
    b_id = LocalConnector(folder / "b.wav").discover().__next__().media_id
    assert any(m == a_id and s == "complete" for m, _, s, *_ in killed.values())
    assert not any(
        m == b_id and s == "complete" for m, _, s, *_ in killed.values()
    )  # never visible half-done

    done = subprocess.run(
        _cli(folder, qdrant, home), env=_env(home), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["media_failed"] == [] and summary["media_skipped"] == 1 and summary["media_ok"] == 2

    reference = tmp_path / "reference"
    with open_store(path=reference) as store:
        ingest_source(
            LocalConnector(folder),
            load_model("tiny-random", device="cpu"),
            store,
            PipelineOptions(embed_batch_size=BATCH),
        )
    # the same spans (each write has ids of its own, so spans are matched by what they hold):
    # nothing missing, nothing extra, one write per item
    resumed = {row[:5]: row[5] for row in _snapshot(qdrant).values()}
    expected = {row[:5]: row[5] for row in _snapshot(reference).values()}
    assert len(resumed) == len(_snapshot(qdrant)) and sorted(resumed) == sorted(expected)
    for span, vector in expected.items():
        np.testing.assert_allclose(resumed[span], vector, atol=1e-5)
