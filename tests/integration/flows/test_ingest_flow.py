"""The Prefect ingest flow end to end: folder, HTTP and feed sources, re-runs, changes, bad media."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from clasp_ingest.connectors import LocalConnector
from clasp_ingest.flows import ModelSpec, StoreSpec, ingest_media, ingest_source
from clasp_ingest.flows.ingest import PROGRESS_KEY, SUMMARY_KEY

from clasp_ingest.errors import ConfigError, ConnectorError
from clasp_ingest.pipeline import PipelineOptions
from clasp_ingest.store import SearchFilter, open_store
from clasp_ingest.types import MediaRef
from tests.fixtures_audio import convert, truncate
from tests.integration.connectors.conftest import HttpSite
from tests.integration.connectors.helpers import Episode, rss
from tests.unit.pipeline.speech import SENTENCES, FlakyConnector, corrupt, speak

ARGS: dict[str, Any] = {"model": "tiny-random", "device": "cpu", "embed_batch_size": 2, "retry_delay_s": 0.0}


def _points(path: Path) -> dict[str, tuple[str, str, str]]:
    with open_store(path=path) as store:
        return {
            p.id: (
                p.payload["metadata"]["source"],
                p.payload["metadata"]["version"],
                p.payload["metadata"]["state"],
            )
            for p in store.iter_points()
        }


def _artifact(key: str) -> Any:
    """The newest artifact of ``key`` (other tests' runs made some too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return found[0] if found else None


def test_folder_end_to_end_rerun_change_and_bad_media(folder: Path, tmp_path: Path) -> None:
    qdrant = tmp_path / "q"
    first = ingest_source(str(folder), qdrant_path=str(qdrant), **ARGS)
    assert (first.media_ok, first.media_skipped, first.media_failed) == (3, 0, [])
    points = _points(qdrant)
    assert len(points) == first.segments >= 6
    assert {state for _, _, state in points.values()} == {"complete"}
    table = _artifact(SUMMARY_KEY)
    assert table is not None and "3 ingested" in (table.description or "")
    progress = _artifact(PROGRESS_KEY)
    assert progress is not None and float(progress.data) == 100.0

    again = ingest_source([str(folder)], qdrant_path=str(qdrant), **ARGS)
    assert (again.media_ok, again.media_skipped, again.segments) == (0, 3, 0)
    assert _points(qdrant) == points

    changed = folder / "three.m4a"
    speak(tmp_path / "new.wav", SENTENCES[0:2])
    shutil.copy(tmp_path / "new.wav", folder / "three.wav")  # a new item
    changed.unlink()
    speak(tmp_path / "x.wav", SENTENCES[1:4])
    shutil.copy(tmp_path / "x.wav", folder / "one.wav")  # a changed item
    os.utime(folder / "one.wav", ns=((folder / "one.wav").stat().st_mtime_ns + 10**9,) * 2)
    corrupt(folder / "broken.mp3")
    third = ingest_source(str(folder), qdrant_path=str(qdrant), **ARGS)
    assert (third.media_ok, third.media_skipped) == (2, 1)
    assert [Path(f["uri"]).name for f in third.media_failed] == ["broken.mp3"]
    after = _points(qdrant)
    versions: dict[str, set[str]] = {}
    for source, version, state in after.values():
        versions.setdefault(source, set()).add(version)
        assert state == "complete"
    assert all(len(v) == 1 for v in versions.values())  # the changed file's old version is gone
    one = next(r for r in third.results if r.uri.endswith("one.wav"))
    with open_store(path=qdrant) as store:
        assert store.count(SearchFilter(media_id=one.media_id)) == one.segments == 3
        assert changed.resolve().as_uri() in {item.source for item in store.media()}  # kept: no --prune

    fourth = ingest_source(str(folder), qdrant_path=str(qdrant), prune=True, **ARGS)
    assert fourth.pruned == (changed.resolve().as_uri(),) and fourth.media_skipped == 3
    table = _artifact(SUMMARY_KEY)  # the deletion is in the run's summary too
    assert table is not None and "1 pruned" in (table.description or "")
    assert {"uri": changed.resolve().as_uri(), "status": "pruned"} in json.loads(table.data)
    with open_store(path=qdrant) as store:
        assert changed.resolve().as_uri() not in {item.source for item in store.media()}
        assert store.count() == sum(item.spans for item in store.media())


def test_http_folder_and_feed_sources(
    http_site: HttpSite, speech_sources: dict[str, Path], tmp_path: Path
) -> None:
    shows = http_site.root / "flowshow"
    shows.mkdir()
    for name in ("one.wav", "two.mp3"):
        shutil.copy(speech_sources[name], shows / name)
    episodes = [
        Episode(f"Ep {n}", f"{http_site.base_url}/flowshow/{n}", (shows / n).stat().st_size)
        for n in ("one.wav", "two.mp3")
    ]
    (shows / "feed.xml").write_text(rss("Flow Radio", episodes, language="de-DE"))
    qdrant = tmp_path / "q"

    by_http = ingest_source(
        f"{http_site.base_url}/flowshow/", qdrant_path=str(qdrant), collection="http", **ARGS
    )
    assert by_http.media_ok == 2 and by_http.media_failed == []
    by_feed = ingest_source(
        f"{http_site.base_url}/flowshow/feed.xml", qdrant_path=str(qdrant), collection="feed", **ARGS
    )
    assert by_feed.media_ok == 2 and by_feed.segments == by_http.segments
    with open_store(path=qdrant, collection="feed") as store:
        meta = next(iter(store.iter_points())).payload["metadata"]
        assert meta["feed_title"] == "Flow Radio" and meta["episode_title"].startswith("Ep ")
        assert meta["language"] == "de"  # the feed's <language>, which filters match
        assert store.count(SearchFilter(language="de")) == store.count() > 0
        assert store.count(SearchFilter(language="en")) == 0
    again = ingest_source(
        f"{http_site.base_url}/flowshow/feed.xml", qdrant_path=str(qdrant), collection="feed", **ARGS
    )
    assert (again.media_ok, again.media_skipped) == (0, 2)


def test_media_task_retries_transient_not_permanent(folder: Path, tmp_path: Path) -> None:
    spec = StoreSpec("retries", path=str(tmp_path / "q"))
    model = ModelSpec("tiny-random", device="cpu")
    from clasp_ingest.flows.resources import cached_model, cached_store, release_store

    encoder = cached_model(model)
    cached_store(spec).ensure_collection(encoder.model_id, encoder.dim)
    try:
        flaky = FlakyConnector(folder / "one.wav", failures=2)
        (ref,) = flaky.discover()
        task_ = ingest_media.with_options(retries=3, retry_delay_seconds=0)
        result = task_(ref, flaky, model, spec, PipelineOptions(embed_batch_size=2))
        assert result.status == "ok" and result.attempts == 3

        bad = corrupt(tmp_path / "bad.mp3")
        (bad_ref,) = LocalConnector(bad).discover()
        calls = []
        counting = FlakyConnector(bad, failures=0)
        original = counting.open

        @contextmanager
        def open_counted(r: MediaRef) -> Iterator[str]:
            calls.append(1)
            with original(r) as local:
                yield local

        counting.open = open_counted  # type: ignore[method-assign]
        state = task_(bad_ref, counting, model, spec, PipelineOptions(), return_state=True)
        assert state.is_failed() and len(calls) == 1  # bad media: no retry
    finally:
        release_store(spec)


def test_an_item_whose_retries_run_out_counts_every_try(folder: Path, tmp_path: Path) -> None:
    """The summary artifact's row said ``attempts: 1`` for an item tried twice (tester 4)."""
    import time

    from clasp_ingest.flows.ingest import _collect
    from clasp_ingest.flows.resources import cached_model, cached_store, release_store
    from prefect import flow

    spec = StoreSpec("exhausted", path=str(tmp_path / "q"))
    model = ModelSpec("tiny-random", device="cpu")
    encoder = cached_model(model)
    cached_store(spec).ensure_collection(encoder.model_id, encoder.dim)
    try:
        flaky = FlakyConnector(folder / "one.wav", failures=5)
        (ref,) = flaky.discover()
        task_ = ingest_media.with_options(retries=1, retry_delay_seconds=0)

        @flow
        def one_item() -> Any:
            future = task_.submit(ref, flaky, model, spec, PipelineOptions(embed_batch_size=2))
            return _collect(ref, future, time.perf_counter())

        result = one_item()
        assert result.status == "failed" and "connection reset" in result.error
        assert result.attempts == 2 and flaky.failures == 3
    finally:
        release_store(spec)


def test_a_model_that_cannot_load_stops_the_run(folder: Path, tmp_path: Path) -> None:
    """Every item would fail the same way: the run stops with the model's error instead (the
    CLI's exit 1), and the collection it made is removed again."""
    from clasp_ingest.errors import ModelLoadError

    offline = {**ARGS, "model": "clasp-official"}  # its weights are on the hub (HF_HUB_OFFLINE here)
    with pytest.raises(ModelLoadError, match="CLASP_MODEL_DIR"):
        ingest_source(str(folder), qdrant_path=str(tmp_path / "q"), **offline)
    with open_store(path=tmp_path / "q") as store:
        assert not store.exists()


def test_a_collection_of_another_model_names_the_flows_parameters(folder: Path, tmp_path: Path) -> None:
    """A flow has parameters, not --collection/--recreate/--model, and cannot recreate."""
    from clasp_ingest.errors import CollectionMismatchError

    with open_store(path=tmp_path / "q", collection="other") as store:
        store.ensure_collection("someone-elses-model", 7)
    with pytest.raises(CollectionMismatchError) as refused:
        ingest_source(str(folder), qdrant_path=str(tmp_path / "q"), collection="other", **ARGS)
    said = str(refused.value)
    assert (
        "the flow's collection parameter" in said
        and "'clasp-ingest ingest SOURCE --collection NAME --recreate'" in said
    )
    assert "(--collection NAME)" not in said and "--model" not in said


def test_unlistable_source_is_reported(folder: Path, tmp_path: Path) -> None:
    summary = ingest_source([str(tmp_path / "nowhere"), str(folder)], qdrant_path=str(tmp_path / "q"), **ARGS)
    assert summary.media_ok == 3 and "nowhere" in summary.media_failed[0]["uri"]


def test_a_run_that_could_list_no_source_fails(tmp_path: Path) -> None:
    """A scheduled run over a missing inbox must not stay green: the run fails, naming the source
    and the remedy, after publishing its summary (the unlisted source's row)."""
    missing = tmp_path / "inbox"
    state = ingest_source([str(missing)], qdrant_path=str(tmp_path / "q"), return_state=True, **ARGS)
    assert state.is_failed()
    with pytest.raises(ConnectorError, match="no source could be listed") as raised:
        state.result()
    assert str(missing) in str(raised.value) and "check that each source exists" in str(raised.value)
    table = _artifact(SUMMARY_KEY)
    assert table is not None and [row["status"] for row in json.loads(table.data)] == ["unlisted"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"sources": []}, "the flow's sources parameter is an empty list"),
        ({"embed_batch_size": -5}, "the flow's embed_batch_size parameter is -5"),
        ({"embed_batch_size": 0}, "the flow's embed_batch_size parameter is 0"),
        ({"media_concurrency": 0}, "the flow's media_concurrency parameter is 0"),
        ({"max_bytes": 0}, "the flow's max_bytes parameter is 0; give the largest download in bytes, more"),
        ({"download_deadline_s": -1}, "the flow's download_deadline_s parameter is -1.0; give the seconds"),
        (
            {"download_deadline_s": 1e10},
            r"download_deadline_s parameter is 10000000000\.0; .* at most 604800 \(a week\)",
        ),
        ({"min_download_rate": float("nan")}, "the flow's min_download_rate parameter is nan"),
        ({"retries": -2}, "the flow's retries parameter is -2; give the times a failed item is tried again"),
        ({"retry_delay_s": -0.5}, "the flow's retry_delay_s parameter is -0.5; give the seconds before"),
    ],
    ids=[
        "no-sources",
        "negative-batch",
        "zero-batch",
        "no-concurrency",
        "zero-bytes",
        "negative-deadline",
        "deadline-past-a-week",
        "nan-rate",
        "negative-retries",
        "negative-delay",
    ],
)
def test_parameters_that_cannot_make_a_run_are_refused(
    parameters: dict[str, Any], message: str, folder: Path, tmp_path: Path
) -> None:
    arguments = {**ARGS, "sources": str(folder), **parameters}
    with pytest.raises(ConfigError, match=message):
        ingest_source(qdrant_path=str(tmp_path / "q"), **arguments)
    assert not (tmp_path / "q").exists()  # refused before the store was opened


def test_a_run_whose_every_item_failed_says_so_last(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad"
    corrupt(bad / "one.mp3")
    corrupt(bad / "two.mp3")
    caplog.set_level(logging.INFO, logger="clasp_ingest")
    state = ingest_source(str(bad), qdrant_path=str(tmp_path / "q"), return_state=True, **ARGS)
    assert state.is_completed() and len(state.result().media_failed) == 2
    ours = [r for r in caplog.records if r.name.startswith("clasp_ingest")]
    assert ours[-1].levelno == logging.ERROR, [r.getMessage() for r in ours[-3:]]
    last = ours[-1].getMessage()
    assert last.startswith("failed to ingest every new or changed item (2 failed, 0 unchanged)"), last


def test_a_truncated_file_is_ingested_with_a_warning_in_the_summary_artifact(
    folder: Path, tmp_path: Path
) -> None:
    mp3 = convert(folder / "one.wav", tmp_path / "one.mp3", "-b:a", "32k")
    truncate(mp3, folder / "cut.mp3", 0.4)
    summary = ingest_source(str(folder), qdrant_path=str(tmp_path / "q"), **ARGS)
    assert summary.media_ok == 4 and summary.media_failed == []
    assert [Path(w["uri"]).name for w in summary.media_warnings] == ["cut.mp3"]
    assert summary.to_dict()["media_warnings"] == summary.media_warnings
    table = _artifact(SUMMARY_KEY)
    assert table is not None and "1 warnings" in (table.description or "")
    rows = {Path(row["uri"]).name: row for row in json.loads(table.data)}
    assert rows["cut.mp3"]["warning"].startswith("ends early") and rows["one.wav"]["warning"] == ""


def test_transcribe_stores_words_and_word_vectors(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_es.opus"
    qdrant = tmp_path / "q"
    summary = ingest_source(str(sample), qdrant_path=str(qdrant), transcribe=True, **ARGS)
    assert (summary.media_ok, summary.media_failed) == (1, [])
    with open_store(path=qdrant) as store:
        assert store.has_word_vectors
        points = list(store.iter_points(with_vectors=True))
    assert len(points) == summary.segments
    heard = " ".join(p.payload["metadata"]["transcript"] for p in points).lower()
    assert "biblioteca" in heard and {p.payload["metadata"]["transcript_language"] for p in points} == {"es"}
    assert all(p.text_vector is not None and p.sparse for p in points)


def test_a_served_flow_runs_in_a_process_of_its_own(folder: Path, tmp_path: Path) -> None:
    """``flow.serve()`` (and a Runner) runs each flow run in a spawned process that gets the flow
    cloudpickled: the parameters' types must resolve there (SecretUrl did not: every served run
    failed its parameter validation). The default model, a fresh store."""
    from prefect.flow_engine import run_flow_in_subprocess

    qdrant = tmp_path / "q"
    process = run_flow_in_subprocess(
        ingest_source, parameters={"sources": str(folder), "qdrant_path": str(qdrant)}
    )
    process.join(timeout=600)
    assert process.exitcode == 0
    with open_store(path=qdrant) as store:
        assert store.count() > 0 and store.require_collection().model_id.startswith("clasp-mini")


def test_the_cluster_flow_refuses_an_embedded_store_for_a_cluster_of_processes(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clasp_ingest.flows.cluster import ingest_source_cluster

    monkeypatch.delenv("CLASP_QDRANT_URL", raising=False)
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    with pytest.raises(ConfigError, match=r"local dask cluster of worker processes .* give qdrant_url"):
        ingest_source_cluster(str(folder))
    assert not (tmp_path / "q").exists()
