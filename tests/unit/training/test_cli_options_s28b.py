"""``train`` and ``eval`` refuse empty option values, unknown choices and options that do not
go together as bad usage (exit 2), naming the option, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app


def _said(result: Result) -> str:
    """A usage error's text without typer's box and line breaks."""
    return " ".join(result.output.replace("│", " ").split())


def test_train_out_empty_is_bad_usage_and_writes_nothing(
    tone_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["train", str(tone_manifest), "--model", "tiny-random", "--device", "cpu", "--epochs", "1", "-q"]
    for option in ("--out", "--cache-dir"):
        extra = ["--out", "o"] if option == "--cache-dir" else []
        result = CliRunner().invoke(app, [*args, *extra, option, ""])
        assert result.exit_code == 2, result.output
        assert f"'{option}': the value is empty; give a folder" in _said(result)
    assert list(tmp_path.iterdir()) == []  # nothing trained into the current folder


@pytest.mark.parametrize(
    ("command", "option"), [("train", "--model"), ("train", "--anchor-model"), ("eval", "--model")]
)
def test_an_empty_model_is_bad_usage_not_the_default(
    tone_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, option: str
) -> None:
    monkeypatch.chdir(tmp_path)
    extra = ["--out", "o", "--epochs", "1"] if command == "train" else []
    result = CliRunner().invoke(app, [command, str(tone_manifest), *extra, option, "", "-q"])
    assert result.exit_code == 2, result.output
    assert f"'{option}': the value is empty; give a model preset or folder" in _said(result)


@pytest.mark.parametrize(
    ("option", "allowed"),
    [("--fusion", "concat, gating"), ("--speech-pool", "mean, attention")],
)
def test_train_unknown_fusion_or_pool_is_bad_usage_naming_the_values(
    tone_manifest: Path, tmp_path: Path, option: str, allowed: str
) -> None:
    out = tmp_path / "o"
    args = ["train", str(tone_manifest), "--out", str(out), "--model", "tiny-random", "--device", "cpu", "-q"]
    result = CliRunner().invoke(app, [*args, option, "foo"])
    assert result.exit_code == 2, result.output
    assert f"'{option}': 'foo' is unknown; use one of {allowed}" in _said(result)
    assert not out.exists()


@pytest.mark.parametrize("option", ["--split", "--distractor-split"])
def test_eval_unknown_split_is_bad_usage_naming_the_splits(tone_manifest: Path, option: str) -> None:
    args = ["eval", str(tone_manifest), "--model", "tiny-random", "--device", "cpu", "-q"]
    result = CliRunner().invoke(app, [*args, "--distractors", str(tone_manifest), option, "nosuch"])
    assert result.exit_code == 2, result.output
    assert f"'{option}': 'nosuch' is unknown; use one of train, val, test" in _said(result)


@pytest.mark.parametrize("option", [["--rerank", "3"], ["--distractors", "m.jsonl"]])
def test_eval_second_stage_with_sampled_candidates_is_bad_usage(
    tone_manifest: Path, option: list[str]
) -> None:
    args = ["eval", str(tone_manifest), "--model", "no-such-model", "--candidates", "3", *option, "-q"]
    result = CliRunner().invoke(app, args)  # an unknown model: refused before it would load
    assert result.exit_code == 2, result.output
    said = _said(result)
    assert f"'{option[0]}': needs --candidates all" in said and f"drop --candidates or {option[0]}" in said
