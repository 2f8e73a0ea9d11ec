"""``ingest --exclude`` as a nightly job runs it: the installed script, the default model
(clasp-mini), a fresh store, in-process and ``--flow``. A file that fails every night (a download
still in progress) no longer keeps the run at exit 3 once excluded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.cli.test_default_model import SAMPLES, cli
from tests.integration.cli_env import default_model_env, usage_said
from tests.unit.pipeline.speech import corrupt

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return default_model_env(tmp_path)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "lectures"
    (folder / "rushes").mkdir(parents=True)
    shutil.copy(SAMPLES / "demo_en.opus", folder / "talk.opus")
    shutil.copy(SAMPLES / "demo_es.opus", folder / "rushes" / "take1.opus")
    corrupt(folder / "upload.part.mp3")
    return folder


@pytest.mark.parametrize("flow", [False, True], ids=["in-process", "flow"])
def test_excluded_files_are_left_out_and_the_run_succeeds(
    flow: bool, env: dict[str, str], media: Path, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    more = ["--flow"] if flow else []
    failing = cli(env, "ingest", str(media), "--qdrant-path", store, "--json", *more)
    assert failing.returncode == 3, failing.stderr  # the cut download fails every night
    assert [Path(f["uri"]).name for f in json.loads(failing.stdout)["media_failed"]] == ["upload.part.mp3"]

    run = cli(
        env, "ingest", str(media), "--qdrant-path", store, "--json", "--exclude", "*.part.*",
        "--exclude", "*/rushes/*", "--prune", *more,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["media_ok"], summary["media_skipped"], summary["media_failed"]) == (0, 1, [])
    assert summary["media_excluded"] == 2 and summary["media_pruned"] == []  # excluded, kept as stored

    listed = cli(env, "store", "list", "--qdrant-path", store, "--json")
    assert sorted(Path(item["source"]).name for item in json.loads(listed.stdout)) == [
        "take1.opus",
        "talk.opus",
    ]

    table = cli(env, "ingest", str(media), "--qdrant-path", store, "--exclude", "*", *more)
    assert table.returncode == 0, table.stderr
    assert "excluded 3 item(s) matching --exclude" in table.stdout
    assert "every one matches an exclude pattern" in table.stderr


def test_an_empty_pattern_is_bad_usage(env: dict[str, str], media: Path, tmp_path: Path) -> None:
    run = cli(env, "ingest", str(media), "--qdrant-path", str(tmp_path / "s"), "--exclude", " ")
    assert run.returncode == 2 and "give a pattern such as '*.part'" in usage_said(run.stderr)
    assert not (tmp_path / "s").exists()
