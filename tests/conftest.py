"""Shared test configuration: unit tests run with sockets disabled."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

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
