"""Shared test configuration: unit tests run with sockets disabled."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
# feeds' documents kept by the CLI and the flows (conditional GETs) go to a folder of this run,
# not the user's cache (processes started for a whole session read this one); removed at exit
if "CLASP_FEED_CACHE_DIR" not in os.environ:
    os.environ["CLASP_FEED_CACHE_DIR"] = _FEEDS = tempfile.mkdtemp(prefix="clasp-test-feeds-")
    atexit.register(shutil.rmtree, _FEEDS, ignore_errors=True)

UNIT_DIR = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(UNIT_DIR):
            item.add_marker(pytest.mark.usefixtures("_no_sockets"))


@pytest.fixture
def _no_sockets() -> object:
    """Unit tests may not open sockets (pytest-socket); integration tests may use loopback."""
    import pytest_socket

    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()


@pytest.fixture(autouse=True)
def _feed_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's CLI runs and flows keep feeds' documents in a folder of its own."""
    monkeypatch.setenv("CLASP_FEED_CACHE_DIR", str(tmp_path_factory.mktemp("feeds")))


@pytest.fixture(scope="session")
def whisper() -> object:
    """The bundled Whisper-base transcriber (faster-whisper), loaded once per session."""
    from clasp_ingest.transcribe import Transcriber

    transcriber = Transcriber()
    transcriber.load()
    return transcriber


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    """Put torch's CPU thread count back after a test that sets it (it is process-wide)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
