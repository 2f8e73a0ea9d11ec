"""Session fixtures of the fault suite: the corpus, the local servers, one model cache, and the
runs of the mixed folder that several rows read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.cli import Cli, Run
from tests.faults.corpus import Corpus, build_corpus
from tests.faults.servers import MediaServer, Site, publish


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the suite (the first command builds it, as on a new machine)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def cli(tmp_path: Path, model_cache: Path) -> Cli:
    """The CLI in a fresh ``$HOME`` and ``$TMPDIR`` (``tmp_path/tmp``)."""
    (tmp_path / "tmp").mkdir()
    return Cli(tmp_path / "home", model_cache, tmpdir=tmp_path / "tmp")


@pytest.fixture(scope="session")
def other_host() -> Iterator[MediaServer]:
    """Another private host a feed may point at (127.0.0.2: loopback, but not the feed's host)."""
    with MediaServer("127.0.0.2") as server:
        yield server


@pytest.fixture(scope="session")
def site(corpus: Corpus, other_host: MediaServer) -> Iterator[Site]:
    with MediaServer("127.0.0.1", trickle_interval_s=1.0) as server:
        yield publish(server, other_host, corpus.seeds, corpus.good["good"].resolve().as_uri())


@dataclass(frozen=True)
class MixedRuns:
    """The mixed folder ingested twice into ``store``, and its good items alone into ``clean``."""

    first: Run
    second: Run
    store: Path
    clean_run: Run
    clean: Path


@pytest.fixture(scope="session")
def mixed(corpus: Corpus, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> MixedRuns:
    root = tmp_path_factory.mktemp("mixed-runs")
    cli = Cli(root / "home", model_cache)
    store, clean = root / "store", root / "clean"
    first = cli.run("ingest", str(corpus.mixed), "--json", "--qdrant-path", str(store))
    second = cli.run("ingest", str(corpus.mixed), "--json", "--qdrant-path", str(store))
    clean_run = cli.run("ingest", *corpus.good_sources, "--json", "--qdrant-path", str(clean))
    return MixedRuns(first, second, store, clean_run, clean)
