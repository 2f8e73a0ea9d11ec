"""``clasp-ingest train`` and ``eval`` through the real CLI app (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.evaluation.evaluate import RESULT_KEYS


def test_train_then_eval_json(tone_manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "gating"
    trained = runner.invoke(
        app,
        [
            "train", str(tone_manifest), "--out", str(out), "--model", "tiny-random", "--device", "cpu",
            "--fusion", "gating", "--loss", "huber", "--epochs", "2", "--batch-size", "6",
            "--val-batch-size", "3", "--json", "--quiet",
        ],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    metrics = json.loads(trained.stdout)
    assert metrics["epochs_run"] == 2 and metrics["options"]["loss"] == "huber"
    assert json.loads((out / "config.json").read_text())["fusion"]["kind"] == "gating"

    evaluated = runner.invoke(
        app, ["eval", str(tone_manifest), "--model", str(out), "--candidates", "3", "--json", "-q"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.stdout)
    assert list(result) == list(RESULT_KEYS)
    assert result["candidates"] == 3 and result["n_queries"] == 3 and result["threshold"] == 0.5


def test_errors_name_the_input(tmp_path: Path, tone_manifest: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["eval", str(tmp_path / "none.jsonl"), "--model", "tiny-random", "-q"])
    assert missing.exit_code == 1 and "none.jsonl" in missing.stderr and "does not exist" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "x.wav"}\n', encoding="utf-8")
    refused = runner.invoke(
        app, ["train", str(bad), "--out", str(tmp_path / "o"), "--model", "tiny-random", "-q"]
    )
    assert refused.exit_code == 1 and "bad.jsonl:1" in refused.stderr
