"""``--prune`` where a stored item's file cannot be looked at."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from clasp_ingest.connectors import LocalConnector

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.pipeline import PipelineOptions, ingest_source
from clasp_ingest.store import open_store
from clasp_ingest.types import MediaRef, media_id_for
from tests.unit.pipeline.speech import SENTENCES, speak


def test_a_stored_file_that_cannot_be_looked_at_is_kept_and_the_run_goes_on(
    tmp_path: Path, tiny_model: AudioTextEncoder
) -> None:
    """A folder without search permission (or a name the system refuses: too long) made the
    file check raise: the whole ``--prune`` run failed (exit 1), every new file left out."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    speak(folder / "one.wav", SENTENCES[:1])
    unseen = (folder / ("a" * 300) / "x.wav").as_uri()  # is_file(): OSError (ENAMETOOLONG), as EACCES
    options = replace(PipelineOptions(embed_batch_size=2, retry_delay_s=0.01), prune=True)
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(tiny_model.model_id, tiny_model.dim)
        ref = MediaRef(unseen, media_id_for(unseen), "v1")
        store.write_media(ref, tiny_model.model_id, [])  # stored by an earlier run
        result = ingest_source(LocalConnector(folder), tiny_model, store, options)
        assert (result.media_ok, result.pruned) == (1, ())  # the new file in, the unseen one kept
        assert {item.source for item in store.media()} == {unseen, (folder / "one.wav").as_uri()}
