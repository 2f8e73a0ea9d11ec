"""Every deployment of prefect.yaml runs its entrypoint with its parameters, on local stand-ins.

Only what cannot exist here is swapped, each for a local equivalent this module starts:

- the podcast feed URL → the same feed served on 127.0.0.1 (episodes of espeak-ng speech);
- ``s3://`` → the same bucket and keys on a moto S3 server on 127.0.0.1 (``AWS_ENDPOINT_URL_S3``);
- ``/data/inbox`` → a temporary folder;
- the Dask scheduler ``tcp://dask-scheduler:8786`` → a local Dask cluster (threads: the embedded
  store belongs to one process; tasks still pass through Dask's serialization);
- the workers' ``CLASP_QDRANT_URL`` → ``CLASP_QDRANT_PATH`` (an embedded Qdrant Edge store), and
  ``CLASP_DEVICE=cuda`` → ``cpu``;
- clasp-official's Hugging Face files → a local stand-in with random weights in
  ``CLASP_MODEL_DIR`` (``official_standin.py``: real layout and widths, 2 transformer layers
  per backbone; ``CLASP_TEST_FULL_OFFICIAL=1`` builds every layer and the full vocabulary).

Each run must end with its points searchable in its own collection.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from clasp_ingest.flows.resources import ModelSpec, cached_model

from clasp_ingest.config import Settings
from clasp_ingest.store import open_store
from tests.integration.connectors.conftest import HttpSite, S3Server
from tests.integration.connectors.helpers import Episode, rss
from tests.integration.flows.official_standin import build_official_standin
from tests.unit.pipeline.speech import SENTENCES, convert, speak

ROOT = Path(__file__).resolve().parents[3]
DEPLOYMENTS: list[dict[str, Any]] = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
FEED_HOST = "https://feeds.example.org/"


@dataclass(frozen=True)
class Sites:
    """The local stand-ins, and the items each source lists there."""

    feed_base: str
    inbox: Path
    dask_address: str
    items: dict[str, int]

    def source(self, source: str) -> str:
        if source.startswith(FEED_HOST):
            return f"{self.feed_base}/{source.removeprefix(FEED_HOST)}"
        if source.startswith("s3://"):
            return source  # the same bucket, served by moto
        if source == "/data/inbox":
            return str(self.inbox)
        pytest.fail(f"no local stand-in for the source {source!r}: add one to this test")


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    full = os.environ.get("CLASP_TEST_FULL_OFFICIAL") == "1"
    return build_official_standin(tmp_path_factory.mktemp("official"), full=full)


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        yield cluster


def _feed(site: HttpSite, media: Path) -> int:
    """lectures.rss on the local site: two episodes (wav, mp3)."""
    episodes = []
    for name, sentences in (("ep1.wav", SENTENCES[0:1]), ("ep2.mp3", SENTENCES[1:2])):
        wav = speak(media / f"{name}.src.wav", sentences)
        target = site.root / "episodes" / name
        target.parent.mkdir(exist_ok=True)
        if name.endswith(".wav"):
            shutil.copy(wav, target)
        else:
            convert(wav, target)
        mime = "audio/wav" if name.endswith(".wav") else "audio/mpeg"
        episodes.append(Episode(name, f"{site.base_url}/episodes/{name}", target.stat().st_size, mime=mime))
    (site.root / "lectures.rss").write_text(rss("Lectures", episodes))
    return len(episodes)


def _bucket(s3: S3Server, media: Path) -> tuple[int, int]:
    """media-archive: one lecture under lectures/, one talk elsewhere; (lectures, all)."""
    client = s3.client()
    client.create_bucket(Bucket="media-archive")
    lecture = convert(speak(media / "lecture.wav", SENTENCES[2:4]), media / "lecture.mp3")
    client.upload_file(str(lecture), "media-archive", "lectures/lecture.mp3")
    client.upload_file(str(speak(media / "talk.wav", SENTENCES[4:5])), "media-archive", "talks/talk.wav")
    return 1, 2


@pytest.fixture(scope="module")
def sites(
    http_site: HttpSite, s3_server: S3Server, dask_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Sites:
    media = tmp_path_factory.mktemp("deploy-media")
    inbox = tmp_path_factory.mktemp("inbox")
    speak(inbox / "note.wav", SENTENCES[5:6])
    lectures, archive = _bucket(s3_server, media)
    items = {
        f"{FEED_HOST}lectures.rss": _feed(http_site, media),
        "s3://media-archive/lectures/": lectures,
        "s3://media-archive/": archive,
        "/data/inbox": 1,
    }
    return Sites(http_site.base_url, inbox, dask_cluster.scheduler_address, items)


def _local_parameters(deployment: dict[str, Any], sites: Sites) -> dict[str, Any]:
    parameters = copy.deepcopy(deployment.get("parameters", {}))
    parameters["sources"] = [sites.source(s) for s in parameters["sources"]]
    if "address" in parameters:
        parameters["address"] = sites.dask_address
    return parameters


def _local_env(
    deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch, qdrant: Path, model_dir: Path, s3: S3Server
) -> None:
    env = dict(deployment.get("work_pool", {}).get("job_variables", {}).get("env", {}))
    if env.get("CLASP_DEVICE", "").startswith("cuda"):
        env["CLASP_DEVICE"] = "cpu"
    env |= {"CLASP_QDRANT_PATH": str(qdrant), "CLASP_MODEL_DIR": str(model_dir)}
    env |= {"AWS_ENDPOINT_URL_S3": s3.endpoint, "AWS_ACCESS_KEY_ID": "testing"}
    env |= {"AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    monkeypatch.delenv("CLASP_QDRANT_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))


def _searchable(collection: str, qdrant: Path, model_name: str, model_dir: Path, segments: int) -> None:
    """The collection holds ``segments`` points of ``model_name``, found by a text query."""
    settings = Settings.model_validate({})
    spec = ModelSpec(model_name, settings.device, settings.dtype, str(model_dir), settings.torch_threads)
    model = cached_model(spec)  # the flow's own cache entry: loaded once
    with open_store(path=qdrant, collection=collection) as store:
        assert store.identity is not None and store.identity.model_id == model.model_id
        assert store.count() == segments > 0
        hits = store.search(model.encode_text(["the quick brown fox"])[0], k=segments)
        assert len(hits) == segments and all(hit.media_id for hit in hits)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_runs_its_entrypoint_with_its_parameters(
    deployment: dict[str, Any],
    sites: Sites,
    s3_server: S3Server,
    dask_cluster: Any,
    official_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.flows import load_flow_from_entrypoint

    path, _, name = deployment["entrypoint"].partition(":")
    flow = load_flow_from_entrypoint(f"{ROOT / path}:{name}")
    parameters = _local_parameters(deployment, sites)
    qdrant = tmp_path / "qdrant"
    _local_env(deployment, monkeypatch, qdrant, official_dir, s3_server)

    summary = flow(**parameters)

    expected = sum(sites.items[s] for s in deployment["parameters"]["sources"])
    assert summary.media_failed == [] and summary.media_ok == expected
    defaults = Settings.model_validate({})
    collection = parameters.get("collection") or defaults.collection
    model_name = parameters.get("model") or defaults.model
    _searchable(collection, qdrant, model_name, official_dir, summary.segments)
    if "address" in parameters:  # the tasks ran on the Dask cluster's worker
        assert {"list_source", "ingest_media"} <= set(dask_cluster.scheduler.task_prefixes)
    if parameters.get("prune"):  # an object moved within the prefix: the old key leaves the collection
        with open_store(path=qdrant, collection=collection) as store:
            first = store.media()[0].source
        bucket, _, key = first.removeprefix("s3://").partition("/")
        moved = key.replace(".", "-moved.", 1)
        client = s3_server.client()
        client.copy_object(Bucket=bucket, Key=moved, CopySource={"Bucket": bucket, "Key": key})
        client.delete_object(Bucket=bucket, Key=key)
        try:
            again = flow(**parameters)
        finally:  # the bucket as the other deployments expect it
            client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": moved})
            client.delete_object(Bucket=bucket, Key=moved)
        assert again.pruned == (first,) and again.media_ok == 1
        with open_store(path=qdrant, collection=collection) as store:
            assert [item.source for item in store.media()] == [f"s3://{bucket}/{moved}"]
