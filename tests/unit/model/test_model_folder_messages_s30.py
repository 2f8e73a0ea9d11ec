"""What is wrong with a model folder's ``config.json`` is said as it is (tester 6 of session 30):
a collection's recorded folder whose config no longer parses is not "gone or now holds another
model", and a config that is a link loop or a FIFO is not "has no config.json" (a FIFO is never
opened: reading one blocks)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.config import CONFIG_FILE
from clasp_ingest.model.presets import get_preset
from clasp_ingest.model.query import find_model, resolve_model_config


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    saved = tmp_path / "m"
    saved.mkdir()
    config = get_preset("tiny-random").to_dict() | {"model_id": "folder-only"}
    (saved / CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")
    assert resolve_model_config(str(saved))[0].model_id == "folder-only"
    return saved


def test_a_recorded_folder_whose_config_is_broken_is_said_so(folder: Path) -> None:
    config = folder / CONFIG_FILE
    config.write_text(config.read_text()[:40], encoding="utf-8")
    with pytest.raises(ModelLoadError) as raised:
        find_model("folder-only", str(folder))
    said = str(raised.value)
    assert f"(made from {str(folder)!r}, which is there but cannot be read: cannot read model config " in said
    assert f"{str(config)!r}: " in said and "; copy that folder again); pass --model" in said
    assert "gone" not in said


def test_a_recorded_folder_that_is_gone_is_said_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="which is gone or now holds another model"):
        find_model("folder-only", str(tmp_path / "nothing"))


def _resolved_in_time(folder: Path) -> BaseException:
    """What resolving ``folder`` raised, within 10 s (a FIFO opened for reading would block)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            resolve_model_config(str(folder))
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "resolving the folder blocked"
    (error,) = errors
    return error


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: p.symlink_to(p.name), "is a link that leads back to itself (a loop), not a file"),
        (os.mkfifo, "is not a regular file but a FIFO"),
        (lambda p: p.symlink_to("elsewhere"), "is not a regular file but a link to nothing"),
        (os.mkdir, "is not a regular file but a folder"),
    ],
    ids=["loop", "fifo", "dangling", "folder"],
)
def test_a_config_that_is_not_a_file_is_said_what_it_is(folder: Path, make: object, said: str) -> None:
    config = folder / CONFIG_FILE
    config.unlink()
    make(config)  # type: ignore[operator]
    error = _resolved_in_time(folder)
    assert isinstance(error, ModelLoadError)
    assert str(error) == f"{str(config)!r} {said}; copy the model folder again"


def test_a_folder_without_a_config_still_says_so(folder: Path) -> None:
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"has no config\.json; was it saved by save_model"):
        resolve_model_config(str(folder))
