"""Words of media ingested from a LAN (here: loopback) http server, as a user gets them: the URL
given to ``ingest`` is trusted there, but a search reads stored URLs at public addresses only,
so the lazy words of such spans needed ``CLASP_ALLOW_PRIVATE_HOSTS=1`` and Python had no
argument for it. ``search --allow-private-hosts`` and ``ClaspRetriever(allow_private_hosts=True)``
now say it per search. The default model, a fresh store, only servers this test starts."""

from __future__ import annotations

import functools
import http.server
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli.test_default_model import SAMPLES, TRAIN, cli
from tests.integration.cli_env import default_model_env, usage_said
from tests.loopback import serving

pytestmark = pytest.mark.slow


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def lan() -> Iterator[str]:
    with serving(functools.partial(_Quiet, directory=str(SAMPLES))) as base:
        yield base


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return default_model_env(tmp_path)


def test_words_of_lan_media_with_allow_private_hosts(lan: str, env: dict[str, str], tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    ingested = cli(env, "ingest", f"{lan}/demo_en.opus", "--qdrant-path", store, "--json")
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["media_ok"] == 1

    search = ("search", TRAIN, "--k", "1", "--transcribe", "--json", "--qdrant-path", store)
    refused = cli(env, *search)
    assert refused.returncode == 0, refused.stderr
    assert json.loads(refused.stdout)[0]["text"] is None  # the span is found; its words are not read
    assert "a loopback address, refused" in refused.stderr and "--allow-private-hosts" in refused.stderr

    allowed = cli(env, *search, "--allow-private-hosts")
    assert allowed.returncode == 0, allowed.stderr
    (hit,) = json.loads(allowed.stdout)
    assert "train" in hit["text"].lower(), hit

    usage = cli(env, "search", TRAIN, "--allow-private-hosts", "--qdrant-path", store)
    assert usage.returncode == 2 and "--allow-private-hosts needs --transcribe" in usage_said(usage.stderr)


def test_the_retriever_takes_allow_private_hosts(
    lan: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clasp_ingest.retriever import ClaspRetriever

    monkeypatch.delenv("CLASP_ALLOW_PRIVATE_HOSTS", raising=False)
    store = tmp_path / "store"
    ingested = cli(env, "ingest", f"{lan}/demo_en.opus", "--qdrant-path", str(store), "--json")
    assert ingested.returncode == 0, ingested.stderr
    with ClaspRetriever.from_path(store, transcribe="lazy", k=1) as plain:
        (doc,) = plain.invoke(TRAIN)
        assert doc.metadata["transcript"] is None
    with ClaspRetriever.from_path(store, transcribe="lazy", k=1, allow_private_hosts=True) as trusting:
        (doc,) = trusting.invoke(TRAIN)
    assert "train" in doc.metadata["transcript"].lower() and doc.page_content == doc.metadata["transcript"]
