"""The plain-Python pipeline end to end: real ffmpeg, Silero VAD, tiny random model, Qdrant Edge."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors import LocalConnector

from clasp_ingest.errors import CollectionMismatchError, IngestInterrupted, MediaDecodeError, StoreError
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.pipeline import (
    PipelineOptions,
    Progress,
    _prefetched,
    ingest_media,
    ingest_source,
    is_transient,
    items_stopping,
)
from clasp_ingest.store import QdrantStore, SearchFilter, open_store
from tests.unit.pipeline.speech import SENTENCES, FlakyConnector, corrupt, speak

FAST = PipelineOptions(embed_batch_size=2, retry_delay_s=0.01)


@pytest.fixture
def folder(tmp_path: Path, speech_sources: dict[str, Path]) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    for name, path in speech_sources.items():
        shutil.copy(path, media / name)
    return media


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantStore]:
    with open_store(path=tmp_path / "qdrant") as opened:
        yield opened


def _versions(store: QdrantStore) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for point in store.iter_points():
        meta = point.payload["metadata"]
        found.setdefault(meta["source"], set()).add(meta["version"])
    return found


def test_folder_end_to_end(folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore) -> None:
    events: list[Progress] = []
    summary = ingest_source(LocalConnector(folder), tiny_model, store, FAST, on_progress=events.append)
    assert summary.media_ok == 3 and summary.media_failed == [] and summary.media_skipped == 0
    assert summary.segments == store.count() >= 6
    assert 15 < summary.audio_s < 40
    for result in summary.results:
        assert store.count(SearchFilter(media_id=result.media_id)) == result.segments
        assert store.has_media(result.media_id, result.version)
    items = [e for e in events if e.current is None]
    assert [e.done for e in items] == [0, 1, 2, 3] and events[-1].segments == summary.segments
    during = [e for e in events if e.current is not None]  # after each embedded batch of an item
    assert {e.current for e in during} == {r.uri for r in summary.results}
    for result in summary.results:
        mine = [e for e in during if e.current == result.uri]
        assert mine[-1].current_segments == result.segments
        positions = [e.current_position_s for e in mine]
        assert positions == sorted(positions) and 0 < positions[-1] <= result.audio_s
    one = next(r for r in summary.results if r.uri.endswith("one.wav"))
    assert one.segments == 3  # three sentences, three spans
    hits = store.search(tiny_model.encode_text(["a fox"])[0], k=3)
    assert len(hits) == 3 and all(h.end_s > h.start_s for h in hits)
    json = summary.to_dict()
    assert set(json) == {
        "media_ok",
        "media_skipped",
        "media_failed",
        "media_warnings",
        "media_pruned",
        "media_excluded",
        "source_warnings",
        "segments",
        "audio_s",
        "wall_s",
    }


def test_rerun_is_a_noop_and_changed_file_is_replaced(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    first = ingest_source(LocalConnector(folder), tiny_model, store, FAST)
    ids_before = {p.id for p in store.iter_points()}
    again = ingest_source(LocalConnector(folder), tiny_model, store, FAST)
    assert (again.media_ok, again.media_skipped, again.segments) == (0, 3, 0)
    assert {p.id for p in store.iter_points()} == ids_before

    target = folder / "one.wav"
    speak(target, SENTENCES[3:4])  # now a single sentence
    os.utime(target, ns=(target.stat().st_mtime_ns + 10**9,) * 2)
    changed = ingest_source(LocalConnector(folder), tiny_model, store, FAST)
    assert (changed.media_ok, changed.media_skipped) == (1, 2)
    (result,) = [r for r in changed.results if r.status == "ok"]
    assert store.count(SearchFilter(media_id=result.media_id)) == result.segments == 1
    assert all(len(v) == 1 for v in _versions(store).values())
    assert store.count() == first.segments - 3 + 1


def test_prune_deletes_what_a_folder_no_longer_lists_and_nothing_else(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(folder / "one.wav", elsewhere / "one.wav")
    sibling = tmp_path / "media-old"  # a folder whose name starts with the source's name
    sibling.mkdir()
    shutil.copy(folder / "one.wav", sibling / "x.wav")
    for source in (folder, elsewhere, sibling):
        assert ingest_source(LocalConnector(source), tiny_model, store, FAST).media_ok >= 1
    assert len(store.media()) == 5

    hidden = Path(shutil.copy(folder / "one.wav", folder / ".hidden.wav"))  # a folder does not list it
    assert ingest_source(LocalConnector(hidden), tiny_model, store, FAST).media_ok == 1  # ingested by name
    before = {item.source: item.spans for item in store.media()}
    assert hidden.as_uri() in before  # and kept by the prune below: the file is still there
    gone = folder / "one.wav"
    gone.rename(tmp_path / "moved-away.wav")
    plain = ingest_source(LocalConnector(folder), tiny_model, store, FAST)
    assert plain.pruned == () and {m.source for m in store.media()} == set(before)

    pruning = replace(FAST, prune=True)
    pruned = ingest_source(LocalConnector(folder), tiny_model, store, pruning)
    assert pruned.pruned == (gone.resolve().as_uri(),) and pruned.to_dict()["media_pruned"] == [gone.as_uri()]
    assert (pruned.media_ok, pruned.media_skipped) == (0, 2)
    after = {item.source: item.spans for item in store.media()}
    assert after == {uri: n for uri, n in before.items() if uri != gone.as_uri()}
    assert store.count() == sum(after.values())

    # a folder that lists nothing (an unmounted share), a source that cannot be listed and a
    # glob prune nothing
    for child in sibling.iterdir():
        child.rename(tmp_path / f"away-{child.name}")
    empty = ingest_source(LocalConnector(sibling), tiny_model, store, pruning)
    assert empty.pruned == () and {item.source for item in store.media()} == set(after)
    shutil.rmtree(elsewhere)
    glob_source = LocalConnector(str(sibling / "*.mp3"))  # lists nothing that is stored
    quiet = ingest_source([LocalConnector(elsewhere), glob_source], tiny_model, store, pruning)
    assert quiet.pruned == () and len(quiet.source_errors) == 1
    assert {item.source for item in store.media()} == set(after)


def test_corrupt_file_fails_alone(folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore) -> None:
    corrupt(folder / "broken.mp3")
    (folder / "empty.wav").write_bytes(b"")
    summary = ingest_source(LocalConnector(folder), tiny_model, store, FAST)
    assert summary.media_ok == 3
    failed = {Path(f["uri"]).name: f["error"] for f in summary.media_failed}
    assert set(failed) == {"broken.mp3", "empty.wav"}
    assert "cannot decode" in failed["broken.mp3"] and "empty" in failed["empty.wav"]
    assert all(r.attempts == 1 for r in summary.results if r.status == "failed")  # permanent: no retry
    assert store.count() == summary.segments


def test_transient_failures_are_retried(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    summary = ingest_source(FlakyConnector(folder / "one.wav", failures=2), tiny_model, store, FAST)
    assert summary.media_ok == 1 and summary.results[0].attempts == 3
    exhausted = ingest_source(
        FlakyConnector(folder / "two.mp3", failures=5),
        tiny_model,
        store,
        PipelineOptions(retries=1, retry_delay_s=0),
    )
    assert exhausted.media_failed[0]["error"].startswith("ConnectionResetError")
    assert exhausted.results[0].attempts == 2


def test_failure_mid_write_leaves_nothing(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    store.ensure_collection(tiny_model.model_id, tiny_model.dim)
    (ref,) = LocalConnector(folder / "one.wav").discover()
    calls = []

    def embed_then_fail(waves: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("GPU fell off the bus")
        return tiny_model.encode_audio(waves)  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="GPU"):
        ingest_media(ref, LocalConnector(folder), tiny_model, store, FAST, embed=embed_then_fail)
    assert store.count() == 0 and not store.has_media(ref.media_id, ref.fingerprint)


def test_items_stop_at_their_next_batch_while_a_run_is_stopping(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    store.ensure_collection(tiny_model.model_id, tiny_model.dim)
    (ref,) = LocalConnector(folder / "one.wav").discover()
    stopping = items_stopping()

    def embed_then_interrupted(waves: object) -> np.ndarray:
        stopping.__enter__()  # Ctrl-C in the flow's thread while this item's first batch is written
        return tiny_model.encode_audio(waves)  # type: ignore[arg-type]

    try:
        with pytest.raises(IngestInterrupted, match=r"one\.wav.*nothing of this item was kept"):
            ingest_media(ref, LocalConnector(folder), tiny_model, store, FAST, embed=embed_then_interrupted)
        assert store.count() == 0  # its first batch was rolled back
        with pytest.raises(IngestInterrupted):  # an item that starts now stops at once
            ingest_media(ref, LocalConnector(folder), tiny_model, store, FAST)
    finally:
        stopping.__exit__(None, None, None)
    assert not is_transient(IngestInterrupted("x"))  # never retried
    assert ingest_media(ref, LocalConnector(folder), tiny_model, store, FAST).segments > 0  # cleared


def test_the_audio_tracks_language_tag_becomes_the_items_language(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore, tmp_path: Path
) -> None:
    from clasp_ingest.types import MediaRef
    from tests.fixtures_audio import convert

    films = tmp_path / "films"
    films.mkdir()
    convert(folder / "one.wav", films / "film.mkv", "-c:a", "libopus", "-metadata:s:a:0", "language=fre")
    convert(folder / "one.wav", films / "clip.mp4", "-c:a", "aac", "-metadata:s:a:0", "language=und")
    assert ingest_source(LocalConnector(films), tiny_model, store, FAST).media_ok == 2
    languages = {
        p.payload["metadata"]["title"]: p.payload["metadata"].get("language") for p in store.iter_points()
    }
    assert languages == {"film": "fr", "clip": None}  # "und": no language
    assert store.count(SearchFilter(language="fr")) == store.count(
        SearchFilter(source=(films / "film.mkv").as_uri())
    )

    # a language the source declared (a feed's, your connector's) is kept, in the form filters take
    (ref,) = LocalConnector(films / "film.mkv").discover()
    for version, given in (("v2", "en"), ("v3", "pt-BR")):
        declared = MediaRef(ref.uri, ref.media_id, version, ref.title, metadata={"language": given})
        ingest_media(declared, LocalConnector(films), tiny_model, store, FAST)
        stored = {
            p.payload["metadata"].get("language")
            for p in store.iter_points()
            if p.payload["metadata"]["title"] == "film"
        }
        assert stored == {given[:2]}
    assert store.count(SearchFilter(language="pt-BR")) == store.count(SearchFilter(source=ref.uri)) > 0


def test_an_item_mixed_evenly_is_cut_the_same_way_for_its_words(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore, tmp_path: Path
) -> None:
    """A multitrack recorder's 6-channel WAV (no layout), speech on the 4th channel: ingest mixes
    every channel alike and says so on its points (``channel_mix``), so a span's cut for lazy
    words or a clip mixes the same way; it used ffmpeg's downmix, which drops the 4th as LFE
    (a silent clip; Whisper's "you" was stored as the span's words)."""
    import soundfile as sf
    from clasp_ingest.retriever.audio import span_samples

    from clasp_ingest.media.decode import decode_audio
    from clasp_ingest.store.base import hit_from_point

    speech = decode_audio(folder / "one.wav")
    poly = np.zeros((speech.size, 6), dtype=np.float32)
    poly[:, 3] = speech
    room = tmp_path / "room"
    room.mkdir()
    sf.write(room / "poly.wav", poly, 16_000, subtype="PCM_16")
    shutil.copy(folder / "one.wav", room / "plain.wav")
    assert ingest_source(LocalConnector(room), tiny_model, store, FAST).media_ok == 2
    points = list(store.iter_points())
    mixes = {p.payload["metadata"]["title"]: p.payload["metadata"].get("channel_mix") for p in points}
    assert mixes == {"poly": "even", "plain": None}
    hit = hit_from_point(next(p for p in points if p.payload["metadata"]["title"] == "poly"))
    cut = span_samples(hit)
    start = round(hit.start_s * 16_000)
    want = speech[start : start + cut.size] / 6
    assert cut.size > 16_000 and np.corrcoef(cut, want)[0, 1] > 0.99


def test_collection_of_another_model_stops_the_run(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    store.ensure_collection("another-model", tiny_model.dim + 1)
    with pytest.raises(CollectionMismatchError):
        ingest_source(LocalConnector(folder), tiny_model, store, FAST)


def test_missing_source_is_reported_not_raised(
    tiny_model: AudioTextEncoder, store: QdrantStore, tmp_path: Path
) -> None:
    summary = ingest_source(LocalConnector(tmp_path / "nowhere"), tiny_model, store, FAST)
    assert summary.media_failed[0]["uri"].endswith("nowhere") and summary.media_ok == 0


def test_recreate_drops_nothing_until_a_source_lists_a_media_file(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore, tmp_path: Path
) -> None:
    store.ensure_collection("another-model", tiny_model.dim + 1)  # what --recreate is for
    typo, empty = LocalConnector(tmp_path / "meida"), LocalConnector(tmp_path / "unmounted")
    (tmp_path / "unmounted").mkdir()
    for sources in ([typo], [empty], [typo, empty]):
        summary = ingest_source(sources, tiny_model, store, FAST, recreate=True)
        assert summary.media_ok == 0 and len(summary.source_errors) == sources.count(typo)
        assert store.identity is not None and store.identity.model_id == "another-model"  # kept
    summary = ingest_source([typo, LocalConnector(folder)], tiny_model, store, FAST, recreate=True)
    assert summary.media_ok == 3 and len(summary.source_errors) == 1
    assert store.identity is not None and store.identity.model_id == tiny_model.model_id


def test_transient_classification() -> None:
    assert (
        is_transient(ConnectionResetError())
        and is_transient(TimeoutError())
        and is_transient(StoreError("x"))
    )
    assert not is_transient(MediaDecodeError("f", "corrupt")) and not is_transient(FileNotFoundError())
    assert not is_transient(CollectionMismatchError("x")) and not is_transient(ValueError())

    class ClientError(Exception):  # aiohttp's base class name
        pass

    class ClientOSError(ClientError):
        pass

    assert is_transient(ClientOSError()) and not is_transient(KeyError())


def test_prefetch_propagates_errors_and_stops_early() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise MediaDecodeError("x", "bad")

    seen = []
    with pytest.raises(MediaDecodeError):
        seen.extend(_prefetched(items(), 1))
    closed = []

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.append(True)

    stream = _prefetched(endless(), 4)
    assert [next(stream) for _ in range(3)] == [1, 2, 3]
    stream.close()
    assert closed == [True]


def test_media_without_speech_is_recorded_and_skipped_while_unchanged(
    tmp_path: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    from tests.fixtures_audio import write_wav

    media = tmp_path / "quiet"
    media.mkdir()
    write_wav(media / "silence.wav", np.zeros(16_000 * 30, dtype=np.float32))
    first = ingest_source(LocalConnector(media), tiny_model, store, FAST)
    (result,) = first.results
    assert result.status == "ok" and result.segments == 0 and result.audio_s == 30.0
    assert result.warnings == ("no speech found in its 30.0 s of audio; nothing of it can be searched",)
    assert first.media_warnings == [{"uri": result.uri, "warning": result.warnings[0]}]
    assert store.count() == 1 and store.search(np.ones(tiny_model.dim, dtype=np.float32), k=5) == []
    again = ingest_source(LocalConnector(media), tiny_model, store, FAST)
    assert again.media_skipped == 1 and again.media_ok == 0 and again.results[0].audio_s == 0.0


def test_no_speech_in_a_file_of_several_audio_tracks_says_only_the_first_was_read(
    tmp_path: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    # a film whose first track is silent and whose dialogue is on the second: the warning said
    # "no speech" without a word on the track that was never read
    import subprocess

    from clasp_ingest.media.decode import find_ffmpeg
    from tests.fixtures_audio import write_wav

    silent = write_wav(tmp_path / "silence.wav", np.zeros(16_000 * 3, dtype=np.float32))
    film = tmp_path / "media" / "film.mka"
    film.parent.mkdir()
    two_tracks = ["-i", str(silent), "-i", str(silent), "-map", "0:a", "-map", "1:a", "-c:a", "flac"]
    subprocess.run([find_ffmpeg(None), "-v", "error", *two_tracks, str(film)], check=True)
    (result,) = ingest_source(LocalConnector(film.parent), tiny_model, store, FAST).results
    assert result.segments == 0 and result.warnings == (
        "no speech found in its first audio track (3.0 s), the only one of its 2 tracks read; nothing "
        "of it can be searched. To ingest another track, extract it (ffmpeg -i FILE -map 0:a:1 -c copy "
        "track2.mka) and ingest that",
    )


def test_sources_may_be_any_iterable_of_connectors_or_paths(
    folder: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    files = sorted(folder.iterdir())[:2]
    summary = ingest_source((LocalConnector(f) for f in files), tiny_model, store, FAST)  # a generator
    assert summary.media_ok == 2
    assert ingest_source(str(files[0]), tiny_model, store, FAST).media_skipped == 1  # a path is a source
    assert ingest_source({files[1]}, tiny_model, store, FAST).media_skipped == 1
    with pytest.raises(TypeError, match=r"ingest_source needs connectors.*connector_for"):
        ingest_source([3], tiny_model, store, FAST)  # type: ignore[list-item]


def test_a_flow_store_stays_open_until_the_last_run_holding_it_ends(tmp_path: Path) -> None:
    # two flow runs of one process on one store: the first to end closed it under the other
    # ("the embedded store ... is closed; open it again"), whose item then failed
    from clasp_ingest.flows.resources import StoreSpec, held_store

    spec = StoreSpec("talks", path=str(tmp_path / "q"))
    with held_store(spec) as first:
        first.ensure_collection("m", 4)
        with held_store(spec) as second:
            assert second is first
        assert first.count() == 0  # still open: the other run goes on
    with pytest.raises(StoreError, match="is closed"):
        first.count()
    with held_store(spec) as again:  # the next run opens it anew
        assert again is not first and again.count() == 0
