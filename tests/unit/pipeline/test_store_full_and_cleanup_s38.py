"""A store whose disk fills stops the run (it failed every item, one by one, and exited 3), and
the removal of a collection a run created and left empty is not cut short by a second Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from clasp_ingest.connectors import LocalConnector

from clasp_ingest.errors import StoreFullError
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.pipeline import PipelineOptions, SignalsHeld, collection_for, ingest_source
from clasp_ingest.store import EdgeOptions, open_store

FAST = PipelineOptions(embed_batch_size=2, retry_delay_s=0.01)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a CLI process (a pytest-xdist worker ignores it)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_store_whose_disk_fills_stops_the_run_before_its_other_items(
    tmp_path: Path, speech_sources: dict[str, Path], tiny_model: AudioTextEncoder
) -> None:
    """The store was made while the disk had room; at the first write it has less than the
    headroom Qdrant Edge needs. Each item was decoded and embedded, then failed alone (exit 3),
    on every run of a schedule; now the run stops at the first item, as a full disk at opening
    does (exit 1), with nothing half-written."""
    media = tmp_path / "media"
    media.mkdir()
    for name, path in speech_sources.items():
        shutil.copy(path, media / name)
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(tiny_model.model_id, tiny_model.dim, source="tiny-random")
    tight = EdgeOptions(min_free_bytes=shutil.disk_usage(tmp_path).free * 4)  # the disk "filled since"
    decoded: list[str] = []

    class Counting(LocalConnector):
        def open(self, ref):  # type: ignore[no-untyped-def]
            decoded.append(ref.uri)
            return super().open(ref)

    full = pytest.raises(StoreFullError, match=r"disk of the embedded store .* is full .*free space there")
    with open_store(path=tmp_path / "q", edge=tight) as store, full:
        ingest_source(Counting(media), tiny_model, store, FAST)
    assert len(decoded) == 1  # the other two items were not decoded
    with open_store(path=tmp_path / "q") as store:
        assert store.count() == 0  # nothing half-written


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_second_ctrl_c_does_not_cut_the_removal_of_a_collection_the_run_made(
    tmp_path: Path, tiny_model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C stops a first run before it stores anything; the run then removes the collection
    it made. A second Ctrl-C during that removal (a supervisor escalating, an impatient user)
    interrupted it: the empty collection stayed, bound to the run's model."""
    with open_store(path=tmp_path / "q") as store:
        real_drop = store.drop

        def drop_with_a_second_ctrl_c() -> None:
            os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode, before the drop
            real_drop()

        monkeypatch.setattr(store, "drop", drop_with_a_second_ctrl_c)
        made = collection_for(store, tiny_model.model_id, tiny_model.dim, source="tiny-random")
        with pytest.raises(KeyboardInterrupt), made as created:
            assert created
            raise KeyboardInterrupt  # the first Ctrl-C
        assert not store.exists()
    assert not (tmp_path / "q" / "clasp_segments").exists()


@pytest.mark.usefixtures("ctrl_c_raises")
def test_signals_held_deliver_the_first_on_leaving_when_nothing_else_is_raised() -> None:
    with pytest.raises(KeyboardInterrupt), SignalsHeld():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        finished = True  # ran to its end: the signals waited
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
