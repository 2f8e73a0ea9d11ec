"""``ingest_source`` as a Python caller uses it (a reviewer's RAG app): a model loaded from a
folder makes a collection that searches again, a callback's own error is not every item's
failure, a query model is refused before any work, and a refusal does not suggest the model
already in use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clasp_ingest.errors import CollectionMismatchError
from clasp_ingest.model import load_model, save_model
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.model.query import load_query_model
from clasp_ingest.pipeline import PipelineOptions, Progress, ingest_source
from clasp_ingest.store import open_store
from clasp_ingest.transcribe import TranscriberOptions

FAST = PipelineOptions(embed_batch_size=2, retry_delay_s=0.01)


@pytest.fixture
def media(tmp_path: Path, speech_sources: dict[str, Path]) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("one.wav", "two.mp3"):
        shutil.copy(speech_sources[name], folder / name)
    return folder


def test_a_model_loaded_from_a_folder_is_recorded_and_searches_again(
    tmp_path: Path, media: Path, tiny_model: AudioTextEncoder
) -> None:
    """``model_source`` defaulted to None: the collection recorded no source, and the retriever
    then said "no preset of this clasp-ingest version makes vectors of model 'my-head'"."""
    from clasp_ingest.retriever import ClaspRetriever

    folder = save_model(tiny_model, tmp_path / "my-head", model_id="my-head")  # type: ignore[arg-type]
    model = load_model(str(folder), device="cpu")
    assert model.source == str(folder.resolve())
    assert load_model("tiny-random", device="cpu").source == "tiny-random"
    with open_store(path=tmp_path / "q") as store:
        summary = ingest_source(media, model, store, FAST)
        assert summary.media_ok == 2
        assert store.identity is not None and store.identity.source == str(folder.resolve())
    with ClaspRetriever.from_path(tmp_path / "q", k=1) as retriever:
        (hit,) = retriever.invoke("the weather")
    assert hit.metadata["model"] == "my-head"


def test_an_error_of_the_progress_callback_stops_the_run_as_raised(
    tmp_path: Path, media: Path, tiny_model: AudioTextEncoder
) -> None:
    """It was caught as the item's error: every item "failed" with the callback's bug."""
    calls: list[Progress] = []

    def buggy(progress: Progress) -> None:
        calls.append(progress)
        if progress.current is not None:
            raise ZeroDivisionError("the caller's bug")

    with open_store(path=tmp_path / "q") as store, pytest.raises(ZeroDivisionError, match="the caller's bug"):
        ingest_source(media, tiny_model, store, FAST, on_progress=buggy)
    assert sum(p.current is not None for p in calls) == 1  # not retried, not the next item


def test_a_query_model_is_refused_before_anything(tmp_path: Path, media: Path) -> None:
    query_model = load_query_model("tiny-random", device="cpu")
    with open_store(path=tmp_path / "q") as store:
        with pytest.raises(TypeError, match=r"needs a model that embeds audio .* without encode_audio"):
            ingest_source(media, query_model, store, FAST)  # type: ignore[arg-type]
        assert not store.exists()  # no collection made


def test_words_refused_by_a_collection_of_the_same_model_suggest_no_model(
    tmp_path: Path, media: Path, tiny_model: AudioTextEncoder
) -> None:
    """A collection made without words, ingested again with words by the model that made it:
    the refusal ended "or add to it with 'tiny-random', the model that made it", the model the
    caller was using."""
    with open_store(path=tmp_path / "q") as store:
        ingest_source(media, tiny_model, store, FAST)
        words = PipelineOptions(embed_batch_size=2, transcribe=TranscriberOptions())
        with pytest.raises(CollectionMismatchError, match="has no word vectors") as refused:
            ingest_source(media, tiny_model, store, words)
    assert "add to it with" not in str(refused.value)


def test_a_source_that_lists_nothing_is_in_the_summary(
    tmp_path: Path, media: Path, tiny_model: AudioTextEncoder
) -> None:
    """An operator's unmounted share: the run exits 0 and said so only on stderr; a monitor
    reading ``--json`` saw a normal night. Now ``source_warnings`` holds it (and the prune's)."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "README.txt").write_text("the media moved")
    prune = PipelineOptions(embed_batch_size=2, retry_delay_s=0.01, prune=True)
    with open_store(path=tmp_path / "q") as store:
        summary = ingest_source([media, share, str(media / "*.wav")], tiny_model, store, prune)
    assert summary.media_ok == 2
    said = summary.to_dict()["source_warnings"]
    assert said == [
        {"uri": str(share), "warning": "lists no media file; nothing to ingest from it"},
        {
            "uri": str(share),
            "warning": "is not pruned: it lists nothing (unmounted?); 'store delete' removes items",
        },
        {"uri": str(media / "*.wav"), "warning": "is not pruned: only folders and bucket prefixes are"},
    ]
    assert isinstance(summary.to_dict()["audio_s"], float)
    with open_store(path=Path(":memory:")) as memory:  # no item: 0.0, not the int 0
        assert repr(ingest_source([], tiny_model, memory, FAST).to_dict()["audio_s"]) == "0.0"
