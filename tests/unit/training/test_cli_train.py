"""``clasp-ingest train`` and ``eval`` through the real CLI app (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.evaluation.evaluate import RESULT_KEYS

#: A quick run: one epoch of tiny batches on the CPU, metrics JSON on stdout.
ONE_EPOCH = ["--device", "cpu", "--epochs", "1", "--batch-size", "6", "--val-batch-size", "3", "--json", "-q"]


def test_train_then_eval_json(tone_manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "gating"
    trained = runner.invoke(
        app,
        [
            "train", str(tone_manifest), "--out", str(out), "--model", "tiny-random", "--device", "cpu",
            "--fusion", "gating", "--loss", "huber", "--epochs", "2", "--batch-size", "6",
            "--val-batch-size", "3", "--lr", "1e-3", "--lr-step-epochs", "1", "--lr-gamma", "0.5",
            "--json", "--quiet",
        ],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    metrics = json.loads(trained.stdout)
    assert metrics["epochs_run"] == 2 and metrics["options"]["loss"] == "huber"
    assert [e["lr"] for e in metrics["history"]] == pytest.approx([1e-3, 5e-4])  # the step schedule
    assert json.loads((out / "config.json").read_text())["fusion"]["kind"] == "gating"

    evaluated = runner.invoke(  # no -q: stderr is no terminal here, so no progress bar either
        app, ["eval", str(tone_manifest), "--model", str(out), "--candidates", "3", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert evaluated.stderr == "", evaluated.stderr  # 'eval --json 2>log' wrote the bar's last frame
    result = json.loads(evaluated.stdout)
    assert list(result) == list(RESULT_KEYS)
    assert result["candidates"] == 3 and result["n_queries"] == 3 and result["threshold"] == 0.5

    args = ["eval", str(tone_manifest), "--model", str(out), "--distractors", str(tone_manifest)]
    mixed = runner.invoke(app, [*args, "--distractor-split", "train", "--json", "-q"])
    assert mixed.exit_code == 0, mixed.output
    assert json.loads(mixed.stdout)["distractors"] == 6
    for bad in ("nan", "5"):  # NaN made invalid JSON; a cosine is never above 1
        refused = runner.invoke(app, [*args[:4], "--threshold", bad, "-q"])
        assert refused.exit_code == 2 and "is not a cosine; give one in [-1, 1]" in refused.stderr


def test_errors_name_the_input(tmp_path: Path, tone_manifest: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["eval", str(tmp_path / "none.jsonl"), "--model", "tiny-random", "-q"])
    assert missing.exit_code == 1 and "none.jsonl" in missing.stderr and "does not exist" in missing.stderr
    folder = runner.invoke(app, ["eval", str(tmp_path), "--model", "tiny-random", "-q"])
    assert folder.exit_code == 1 and "is a folder; pass the JSONL file in it" in folder.stderr
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    args = ["train", str(tone_manifest), "--out", str(a_file), "--model", "tiny-random", "-q"]
    onto_file = runner.invoke(app, args)
    assert onto_file.exit_code == 1 and "is a file; give a folder for the trained model" in onto_file.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "x.wav"}\n', encoding="utf-8")
    refused = runner.invoke(
        app, ["train", str(bad), "--out", str(tmp_path / "o"), "--model", "tiny-random", "-q"]
    )
    assert refused.exit_code == 1 and "bad.jsonl:1" in refused.stderr


def test_extra_validation_manifest_is_reported_and_checked_first(tone_manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    rows = [json.loads(line) for line in tone_manifest.read_text().splitlines()]
    extra = tone_manifest.parent / "extra_val.jsonl"  # same clips, other "language" of queries
    extra.write_text(
        "".join(json.dumps({**r, "text": r["text"].upper(), "split": "val"}) + "\n" for r in rows), "utf-8"
    )
    broken = tmp_path / "broken.jsonl"  # a clip that cannot be decoded: reported, the run is kept
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wave file")
    broken.write_text(json.dumps({"audio": "noise.wav", "text": "x", "split": "val"}) + "\n", "utf-8")
    common = ["--model", "tiny-random", "--device", "cpu", "--epochs", "1", "--batch-size", "6", "-q"]
    out = tmp_path / "head"
    trained = runner.invoke(
        app,
        ["train", str(tone_manifest), "--out", str(out), "--extra-val", str(extra),
         "--extra-val", str(broken), "--json", *common],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "noise.wav" in json.loads(trained.stdout)["extra_val"][str(broken)]["error"]
    reported = json.loads(trained.stdout)["extra_val"][str(extra)]
    assert reported["n_queries"] == len(rows)
    evaluated = runner.invoke(
        app, ["eval", str(extra), "--model", str(out), "--split", "val", "--json", "-q"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads(evaluated.stdout)
    for key in ("hits@1", "mrr", "mean_rank", "macro_f1"):
        assert reported[key] == pytest.approx(again[key], abs=1e-6), key

    test_only = tone_manifest.parent / "test_only.jsonl"
    test_only.write_text("".join(json.dumps({**r, "split": "test"}) + "\n" for r in rows), "utf-8")
    refused = runner.invoke(
        app,
        [
            "train",
            str(tone_manifest),
            "--out",
            str(tmp_path / "no"),
            "--extra-val",
            str(test_only),
            *common,
        ],
    )
    assert refused.exit_code == 1 and "test_only.jsonl" in refused.stderr and "'val'" in refused.stderr
    assert not (tmp_path / "no").exists()  # refused before any feature or checkpoint was written


def test_fine_tune_starts_from_the_trained_runs_temperature(tone_manifest: Path, tmp_path: Path) -> None:
    from clasp_ingest.training.losses import INIT_TEMPERATURE
    from clasp_ingest.training.train import start_temperature

    runner = CliRunner()
    base = tmp_path / "base"
    first = runner.invoke(
        app, ["train", str(tone_manifest), "--out", str(base), "--model", "tiny-random", *ONE_EPOCH]
    )
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["options"]["temperature"] == INIT_TEMPERATURE
    metrics = json.loads((base / "metrics.json").read_text())
    metrics["temperature"] = 0.0123  # as if the run had ended colder
    (base / "metrics.json").write_text(json.dumps(metrics))
    tuned = runner.invoke(
        app,
        [
            "train",
            str(tone_manifest),
            "--out",
            str(tmp_path / "ft"),
            "--model",
            str(base),
            "--fine-tune",
            *ONE_EPOCH,
        ],
    )
    assert tuned.exit_code == 0, tuned.output
    assert json.loads(tuned.stdout)["options"]["temperature"] == pytest.approx(0.0123)
    # explicit beats the run's; a fresh head (no --fine-tune) and a preset start at the default
    assert start_temperature(0.05, True, base) == 0.05
    assert start_temperature(None, False, base) == INIT_TEMPERATURE
    assert start_temperature(None, True, "tiny-random") == INIT_TEMPERATURE


def test_anchor_needs_a_fine_tune_and_runs_with_one(tone_manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", str(tone_manifest), "--model", "tiny-random", "--anchor", str(tone_manifest)]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "fresh"), *ONE_EPOCH])
    assert refused.exit_code == 2 and "--fine-tune" in refused.stderr
    tuned = runner.invoke(app, [*args, "--out", str(tmp_path / "ft"), "--fine-tune", *ONE_EPOCH])
    assert tuned.exit_code == 0, tuned.output
    options = json.loads(tuned.stdout)["options"]
    assert options["anchor_weight"] == 50.0 and options["anchor"] == [str(tone_manifest)]


@pytest.mark.usefixtures("restore_torch_threads")
def test_training_takes_every_core_after_ctranslate2_narrowed_openmp() -> None:
    """Loading a CTranslate2 Whisper sets OpenMP's thread count for the whole process (one less
    than the cores, for ingestion); torch shares that runtime, so `train` must widen it again."""
    import torch

    from clasp_ingest.model import load_model
    from clasp_ingest.model.base import default_threads, usable_cores
    from clasp_ingest.training.cli_train import _training_threads

    load_model("clasp-mini-real", device="cpu")
    assert torch.get_num_threads() == default_threads()  # what CTranslate2 left behind
    assert _training_threads(None) == usable_cores() == torch.get_num_threads()
    assert _training_threads(1) == 1 == torch.get_num_threads()  # $CLASP_TORCH_THREADS wins


def test_a_trained_folder_is_a_new_model_that_searches_only_its_own_collections(
    tone_manifest: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from clasp_ingest.model import load_model
    from clasp_ingest.model.clasp import save_model

    base = load_model("tiny-random", device="cpu")
    base.config = replace(base.config, searches=("tiny-random-v0",), description="the base model")
    save_model(base, tmp_path / "base", model_id="tiny-random-v1")  # a model that searches an older one's
    out = tmp_path / "trained"
    args = ["train", str(tone_manifest), "--out", str(out), "--model", str(tmp_path / "base"), *ONE_EPOCH]
    assert CliRunner().invoke(app, args).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    assert "searches" not in config and config["model_id"] == "tiny-random-v1-trained"
    assert config["description"] == "tiny-random-v1 with heads trained by clasp-ingest train"
    modes = {f.name: f.stat().st_mode & 0o777 for f in out.iterdir() if f.is_file()}
    assert modes["fusion.safetensors"] == modes["config.json"], modes  # safetensors alone wrote 0600
