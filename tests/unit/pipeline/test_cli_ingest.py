"""The ``ingest`` command with the tiny model (the default model's runs: tests/integration/cli)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app
from clasp_ingest.cli_ingest import _not_said_again
from clasp_ingest.store import CollectionIdentity, open_store
from tests.unit.pipeline.speech import corrupt


def test_ingest_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["ingest", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--collection", "--qdrant-path", "--qdrant-url", "--feed", "--json"):
        assert option in result.output


def test_conflicting_stores_fail_before_running() -> None:
    result = CliRunner().invoke(app, ["ingest", "x", "--qdrant-path", "p", "--qdrant-url", "http://h:6333"])
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "give --qdrant-path or --qdrant-url, not both" in said  # bad usage


def _ingest(*args: str) -> Result:
    return CliRunner().invoke(app, ["ingest", *args, "--model", "tiny-random", "--device", "cpu", "--json"])


def test_ingest_then_recreate_and_exit_codes(tmp_path: Path, speech_sources: dict[str, Path]) -> None:
    store = ["--qdrant-path", str(tmp_path / "q")]
    first = _ingest(str(speech_sources["one.wav"]), *store)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["media_ok"], summary["model"], summary["collection"]) == (
        1,
        "tiny-random",
        "clasp_segments",
    )
    with open_store(path=tmp_path / "q") as opened:
        assert (
            opened.identity == CollectionIdentity("tiny-random", 32) and opened.count() == summary["segments"]
        )
        assert opened.identity is not None and opened.identity.source == "tiny-random"

    broken = corrupt(tmp_path / "bad" / "broken.mp3")
    partial = _ingest(str(speech_sources["one.wav"]), str(broken), *store)
    assert partial.exit_code == 3, partial.output  # ran; one item failed
    assert json.loads(partial.stdout)["media_skipped"] == 1

    again = _ingest(str(speech_sources["two.mp3"]), *store, "--recreate")
    assert again.exit_code == 0, again.output
    with open_store(path=tmp_path / "q") as opened:  # only the second file's points are left
        assert opened.count() == json.loads(again.stdout)["segments"]


def test_a_bad_device_or_engine_fails_the_run_before_recreate_drops_anything(
    tmp_path: Path, speech_sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ["--qdrant-path", str(tmp_path / "q")]
    assert _ingest(str(speech_sources["one.wav"]), *store).exit_code == 0
    with open_store(path=tmp_path / "q") as opened:
        kept = opened.count()
    runs = {  # an unknown name is bad usage (2); a device this machine lacks, a failure (1)
        "'bogus' is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'": (["--device", "bogus"], 2),
        "device 'cuda:7': this machine has": (["--device", "cuda:7"], 1),  # no machine here has eight GPUs
    }
    for message, (device, status) in runs.items():
        args = [
            "ingest",
            str(speech_sources["two.mp3"]),
            *store,
            "--model",
            "tiny-random",
            "--recreate",
            *device,
        ]
        run = CliRunner().invoke(app, args)
        said = " ".join(run.stderr.replace("│", " ").split())  # a usage error is boxed and wrapped
        assert run.exit_code == status and message in said, run.output
    monkeypatch.setenv("CLASP_ENGINE", "tensorrt")
    for flow in ([], ["--flow"]):
        run = _ingest(str(speech_sources["two.mp3"]), *store, "--recreate", *flow)
        assert run.exit_code == 1 and "CLASP_ENGINE='tensorrt'" in run.stderr, run.output
    with open_store(path=tmp_path / "q") as opened:
        assert opened.count() == kept  # nothing dropped


def test_a_model_that_cannot_load_is_one_error_not_a_failure_per_item(
    tmp_path: Path, speech_sources: dict[str, Path]
) -> None:
    sources = [str(speech_sources["one.wav"]), str(speech_sources["two.mp3"])]
    args = ["ingest", *sources, "--model", "clasp-official", "--qdrant-path", str(tmp_path / "q")]
    run = CliRunner().invoke(app, args)  # its weights are on the hub; HF_HUB_OFFLINE here
    assert run.exit_code == 1, run.output
    assert run.stderr.count("error:") == 1 and "CLASP_MODEL_DIR" in run.stderr and "failed" not in run.stdout


def test_a_run_that_stores_nothing_removes_the_collection_it_created(tmp_path: Path) -> None:
    broken = corrupt(tmp_path / "bad" / "broken.mp3")
    run = _ingest(str(broken.parent), "--qdrant-path", str(tmp_path / "q"))
    assert run.exit_code == 3
    assert not (tmp_path / "q" / "clasp_segments").exists()


def test_no_listable_source_is_an_error(tmp_path: Path) -> None:
    run = _ingest(str(tmp_path / "nothing-here"), "--qdrant-path", str(tmp_path / "q"))
    assert run.exit_code == 1
    assert "no source could be listed" in run.stderr


def test_help_documents_exit_codes_and_the_flow_switch() -> None:
    root = CliRunner().invoke(app, ["--help"])
    assert "Exit status" in root.output and "3 ingest ran but some items failed" in " ".join(
        root.output.split()
    )
    ingest = CliRunner().invoke(app, ["ingest", "--help"])
    assert "--recreate" in ingest.output and "--flow" in ingest.output


def test_help_documents_the_download_limits_and_the_address_check() -> None:
    ingest = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    text = " ".join(ingest.output.split())
    for option in ("--download-deadline", "--min-download-rate", "--allow-private-hosts"):
        assert option in text
    for variable in ("CLASP_DOWNLOAD_DEADLINE_S", "CLASP_MIN_DOWNLOAD_RATE", "CLASP_ALLOW_PRIVATE_HOSTS"):
        assert variable in text


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("CLASP_DTYPE", "fp8", "'auto', 'fp32', 'fp16' or 'bf16'"),
        ("CLASP_DEVICE", "tpu", "'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("CLASP_ENGINE", "gpu", "'auto', 'onnx' or 'torch'"),
        ("CLASP_GPU_SLOTS", "abc", "valid integer"),  # it failed every item at its first batch
        ("CLASP_GPU_SLOTS", "0", "greater than or equal to 1"),  # it meant 1
    ],
)
def test_bad_runtime_variables_are_refused_by_settings(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    from pydantic import ValidationError

    from clasp_ingest.config import Settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=named):
        Settings()


def test_segmenter_variables_that_do_not_fit_and_empty_store_options_fail_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLASP_MAX_SEGMENT_S", "1")
    short = _ingest("talk.wav", "--qdrant-path", str(tmp_path / "q"))
    assert short.exit_code == 1 and short.stderr.startswith(
        "error: the longest segment (CLASP_MAX_SEGMENT_S=1) must be at least 2 × the shortest"
    )
    assert "raise CLASP_MAX_SEGMENT_S to 2.2 or more, or lower CLASP_MIN_SEGMENT_S" in short.stderr
    monkeypatch.delenv("CLASP_MAX_SEGMENT_S")
    for option in ("--qdrant-path", "--collection", "--qdrant-url"):
        empty = _ingest("talk.wav", option, "")
        said = " ".join(empty.output.replace("│", " ").split())
        assert empty.exit_code == 2 and f"'{option}'" in said and "the value is empty" in said, empty.output
    url = _ingest("talk.wav", "--qdrant-url", "http://qdrant host:6333")
    assert url.exit_code == 1 and url.stderr.startswith("error: the Qdrant URL 'http://qdrant host:6333'")
    assert list(tmp_path.iterdir()) == []  # no store made anywhere


def test_the_flow_refuses_empty_store_parameters() -> None:
    from clasp_ingest.flows.ingest import _store_spec

    from clasp_ingest.config import Settings
    from clasp_ingest.errors import ConfigError

    settings = Settings()
    assert _store_spec(settings, None, None, "/tmp/q").collection == settings.collection
    for collection, url, path in (("", None, None), (None, " ", None), (None, None, "")):
        with pytest.raises(ConfigError, match="parameter is empty"):
            _store_spec(settings, collection, url, path)


def test_an_empty_api_key_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from clasp_ingest.config import Settings

    for blank in ("", "  "):
        monkeypatch.setenv("CLASP_QDRANT_API_KEY", blank)  # 'CLASP_QDRANT_API_KEY=' in a unit file
        assert Settings().qdrant_api_key is None
    monkeypatch.setenv("CLASP_QDRANT_API_KEY", "s3cret")
    assert Settings().qdrant_api_key == "s3cret"


def test_a_failed_item_is_said_once_in_the_table(
    tmp_path: Path, speech_sources: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_text("not audio")
    args = ["ingest", str(bad), str(speech_sources["one.wav"]), "--qdrant-path", str(tmp_path / "q")]
    run = CliRunner().invoke(app, [*args, "--model", "tiny-random", "--device", "cpu"])
    assert run.exit_code == 3 and run.stdout.count("not a readable media file") == 1, run.output
    assert not [r for r in caplog.records if "not a readable media file" in r.getMessage()]  # no log line
    # with --flow the table lists it once too (Prefect's own console line never reaches pytest's
    # log capture, so its filter was checked by hand)
    flow = CliRunner().invoke(app, [*args, "--model", "tiny-random", "--device", "cpu", "--force", "--flow"])
    assert flow.exit_code == 3 and flow.stdout.count("not a readable media file") == 1, flow.output
    # the levels and filters pinned for the flow's run are put back (main may run in a process
    # that goes on: a later flow run's project lines reached its log at WARNING only)
    assert logging.getLogger("clasp_ingest").level == logging.NOTSET
    assert _not_said_again not in logging.getLogger("prefect.flow_runs").filters
    as_json = _ingest(str(bad), "--qdrant-path", str(tmp_path / "q"))
    assert "not a readable media file" in json.loads(as_json.stdout)["media_failed"][0]["error"]


def test_prefect_usage_data_is_off_unless_the_user_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clasp_ingest.flows.runtime import runtime_settings

    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    runtime_settings(tmp_path)
    assert os.environ["DO_NOT_TRACK"] == "1"
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    runtime_settings(tmp_path)
    assert os.environ["DO_NOT_TRACK"] == "0"


def test_recreate_drops_nothing_when_a_model_cannot_load(
    tmp_path: Path, speech_sources: dict[str, Path]
) -> None:
    store = ["--qdrant-path", str(tmp_path / "q")]
    assert _ingest(str(speech_sources["one.wav"]), *store).exit_code == 0
    with open_store(path=tmp_path / "q") as opened:
        kept = opened.count()
    source = str(speech_sources["two.mp3"])
    whisper = _ingest(
        source, *store, "--recreate", "--transcribe", "--whisper-model", str(tmp_path / "no-whisper")
    )
    assert whisper.exit_code == 1 and "cannot load the Whisper model" in whisper.stderr, whisper.output
    assert "no such folder" in whisper.stderr and "Repo id" not in whisper.stderr  # not the hub's rules
    run = CliRunner().invoke(
        app, ["ingest", source, *store, "--recreate", "--flow", "--model", str(tmp_path / "no-model")]
    )
    assert run.exit_code == 1 and "no-model" in run.stderr, run.output
    with open_store(path=tmp_path / "q") as opened:
        assert opened.count() == kept  # nothing dropped


@pytest.mark.parametrize("flow", [[], ["--flow"]], ids=["in-process", "flow"])
def test_recreate_with_a_mistyped_source_drops_nothing(
    tmp_path: Path, speech_sources: dict[str, Path], flow: list[str]
) -> None:
    store = ["--qdrant-path", str(tmp_path / "q")]
    assert _ingest(str(speech_sources["one.wav"]), *store).exit_code == 0
    with open_store(path=tmp_path / "q") as opened:
        kept = opened.count()
    typo = _ingest(str(tmp_path / "meida"), *store, "--recreate", *flow)
    assert typo.exit_code == 1 and "no source could be listed" in typo.stderr, typo.output
    (tmp_path / "unmounted").mkdir()
    empty = _ingest(str(tmp_path / "unmounted"), *store, "--recreate", *flow)  # lists nothing
    assert empty.exit_code == 0 and json.loads(empty.stdout)["media_ok"] == 0, empty.output
    with open_store(path=tmp_path / "q") as opened:
        assert opened.count() == kept  # nothing dropped


def test_ingest_model_and_device_given_empty_are_bad_usage(tmp_path: Path) -> None:
    for option in ("--model", "--device"):
        run = CliRunner().invoke(
            app, ["ingest", str(tmp_path), option, "", "--qdrant-path", str(tmp_path / "q")]
        )
        assert run.exit_code == 2 and "the value is empty" in run.output, run.output


def test_control_characters_in_a_file_name_stay_on_one_printed_line(
    tmp_path: Path, speech_sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "two\nlines\x1b[2J.wav"  # a newline and a clear-screen escape
    odd.write_bytes(speech_sources["one.wav"].read_bytes())
    broken = tmp_path / "bad\nname.mp3"
    broken.write_text("not audio")
    monkeypatch.setenv("CLASP_MODEL", "tiny-random")
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    store = ["--qdrant-path", str(tmp_path / "q")]
    runner = CliRunner()
    ingest = runner.invoke(app, ["ingest", str(odd), str(broken), *store], env={"COLUMNS": "300"})
    assert ingest.exit_code == 3, ingest.output
    failed = [line for line in ingest.stdout.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "bad\\nname.mp3" in failed[0], ingest.stdout
    table = runner.invoke(app, ["search", "anything", *store, "--k", "1"], env={"COLUMNS": "300"})
    assert table.exit_code == 0 and "\x1b" not in table.stdout, table.output
    assert "two\\nlines\\x1b[2J" in table.stdout.splitlines()[2], table.stdout  # the hit's own line
    listed = runner.invoke(app, ["store", "list", *store])
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 2, listed.stdout
    assert re.search(r"  complete  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  ", listed.stdout)  # UTC, said so


def test_the_progress_line_names_the_item_readably_and_fits_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clasp_ingest.cli_ingest import _progress, _shown_name
    from clasp_ingest.pipeline import Progress

    uri = "file:///talks/Lecture%2007%20-%20Introduction%20to%20Thermodynamics%20(2024).mp3"
    assert _shown_name(uri, 80) == "Lecture 07 - Introduction to Thermodyna…"  # 40 characters at most
    assert _shown_name("https://h/a%0Ab.mp3?X-Amz-Signature=secret") == "a\\nb.mp3"  # no query
    monkeypatch.setenv("COLUMNS", "80")
    with _progress(True) as update:
        bar = update.__self__
        update(Progress(1, 0, 0, 0, 0, 0, 0.0, current=uri, current_segments=288, current_position_s=1704))
        line = bar._bar.tasks[0].description
        assert line.startswith("28.4 min into Lecture 07") and len(line) <= 80 - 37, line
        assert line.endswith("(288 segments)"), line  # no totals of items done: none are
        update(Progress(1, 1, 1, 0, 0, 305, 1802.0))
        assert bar._bar.tasks[0].description == "305 segments, 1802 s audio, 0 failed"
    monkeypatch.setenv("COLUMNS", "200")
    with _progress(True) as update:
        update(Progress(2, 1, 1, 0, 0, 30, 90.0, current=uri, current_segments=5, current_position_s=60))
        line = update.__self__._bar.tasks[0].description
        assert line.startswith("1.0 min into Lecture") and line.endswith(
            "(5 segments); done: 30 segments, 90 s audio, 0 failed"
        )


def test_log_lines_write_control_characters_as_escapes() -> None:
    import logging

    from clasp_ingest.cli import _OneLineFormatter

    record = logging.LogRecord(
        "clasp_ingest.pipeline", logging.WARNING, __file__, 1, "%s lists no media", ("a\nb\x1b[31m",), None
    )
    line = _OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "WARNING clasp_ingest.pipeline: a\\nb\\x1b[31m lists no media"  # -v: named
    # without -v, as the commands' own warnings are worded (not "WARNING clasp_ingest.pipeline: ...")
    plain = _OneLineFormatter("%(levelname)s %(name)s: %(message)s", named=False)
    assert plain.format(record) == "warning: a\\nb\\x1b[31m lists no media"
    other = logging.LogRecord("prefect.flow_runs", logging.WARNING, __file__, 1, "slow", (), None)
    assert plain.format(other) == "WARNING prefect.flow_runs: slow"  # another library's: named
