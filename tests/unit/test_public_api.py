from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.text import Text

import clasp_ingest
from clasp_ingest import Segment


def test_exported_members() -> None:
    assert sorted(clasp_ingest.__all__) == [
        "ClaspIngestError",
        "CollectionMismatchError",
        "ConfigError",
        "ConnectorError",
        "FilterError",
        "MediaDecodeError",
        "MediaRef",
        "ModelLoadError",
        "Segment",
        "Settings",
        "SpanHit",
        "StoreError",
        "__version__",
    ]
    for name in clasp_ingest.__all__:
        assert hasattr(clasp_ingest, name)
    from clasp_ingest.media import MediaDecodeError  # what the README's media section says it raises

    assert MediaDecodeError is clasp_ingest.MediaDecodeError


def test_segment_validates() -> None:
    seg = Segment("m", 0, 1.0, 2.5)
    assert seg.duration_s == 1.5 and seg.start_ms == 1000 and seg.end_ms == 2500
    with pytest.raises(ValueError):
        Segment("m", 0, 2.0, 2.0)
    with pytest.raises(ValueError):
        Segment("m", -1, 0.0, 1.0)


def test_settings_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASP_COLLECTION", "lectures")
    monkeypatch.setenv("CLASP_MAX_SEGMENT_S", "12.5")
    settings = clasp_ingest.Settings()
    assert settings.collection == "lectures"
    assert settings.max_segment_s == 12.5


def test_a_tilde_in_a_store_or_model_path_is_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As a shell reads it, also where nothing expanded it (a quoted value, an env file)."""
    from clasp_ingest.errors import ConfigError
    from clasp_ingest.store import open_store

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLASP_QDRANT_PATH", "~/store")
    monkeypatch.setenv("CLASP_MODEL_DIR", "~/models")
    settings = clasp_ingest.Settings()
    assert (settings.qdrant_path, settings.model_dir) == (tmp_path / "home/store", tmp_path / "home/models")
    with open_store(path="~/store") as store:
        store.ensure_collection("m", 4)
    assert (tmp_path / "home/store/clasp_segments").is_dir() and not (tmp_path / "~").exists()
    (tmp_path / "home/file").write_text("not a store")
    with pytest.raises(ConfigError, match=r"store '.*home/file' is a file, not a folder; give a folder"):
        open_store(path="~/file")


def test_cli_version_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clasp_ingest", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"clasp-ingest {clasp_ingest.__version__}"
    helped = subprocess.run(
        [sys.executable, "-m", "clasp_ingest", "--help"], capture_output=True, text=True, check=True
    )
    assert "clasp-ingest" in helped.stdout or "Usage" in helped.stdout
    assert "segment" in helped.stdout


def _commands(command: Any, path: str = "clasp-ingest") -> Iterator[tuple[str, Any]]:
    """Every command under ``command`` (typer's own click: its groups have ``.commands``)."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_help_text_survives_rich_markup() -> None:
    """Typer renders help with rich markup: a ``[default: x]`` in a help string would vanish from
    ``--help`` (it reads as a style tag). Every text shown must render as it is written."""
    from clasp_ingest.cli import app

    shown: list[tuple[str, str]] = []
    for path, command in _commands(typer.main.get_command(app)):
        shown += [(path, text) for text in (command.help, command.epilog) if text]
        shown += [
            (f"{path} {param.name}", param.help) for param in command.params if getattr(param, "help", None)
        ]
    assert len(shown) > 100
    eaten = [(where, text) for where, text in shown if Text.from_markup(text).plain != text]
    assert eaten == []
