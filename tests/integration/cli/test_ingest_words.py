"""``ingest --transcribe`` and ``search --hybrid`` as a user runs them: the installed script, the
default model (clasp-mini), the bundled Whisper-base, a fresh store of each engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clasp_ingest.store import open_store
from clasp_ingest.store.base import transcript_of
from tests.integration.cli.test_default_model import MINI_ID, SAMPLES, cli
from tests.integration.cli_env import default_model_env

pytestmark = pytest.mark.slow

#: demo_es.opus, sentence 2 (demo.json): "La biblioteca de la universidad cierra a las diez de la noche."
LIBRARY_SPAN = (9.564, 13.767)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return default_model_env(tmp_path)


def _store_folder(engine: str, tmp_path: Path) -> Path:
    folder = tmp_path / f"store-{engine}"
    if engine == "client":  # an empty qdrant-client folder: the CLI then opens it with qdrant-client
        from qdrant_client import QdrantClient

        QdrantClient(path=str(folder)).close()
    return folder


@pytest.mark.parametrize("engine", ["edge", "client"])
def test_ingest_transcribe_then_hybrid_search(engine: str, env: dict[str, str], tmp_path: Path) -> None:
    talk = shutil.copy(SAMPLES / "demo_es.opus", tmp_path / "charla.opus")
    folder = str(_store_folder(engine, tmp_path))
    run = cli(env, "ingest", str(talk), "--transcribe", "--qdrant-path", folder, "--json")
    assert run.returncode == 0, run.stderr
    assert (json.loads(run.stdout)["media_ok"], json.loads(run.stdout)["segments"]) == (1, 4)

    with open_store(path=Path(folder)) as store:
        assert store.backend == engine and store.has_word_vectors
        points = list(store.iter_points(with_vectors=True))
    heard = " ".join(transcript_of(p.payload) or "" for p in points).lower()
    # every span has words (Whisper-base's own words vary by CPU: on an AVX2-only EPYC it heard
    # only "Mi" of the last sentence, "Mi jardín…", 2026-12-07)
    assert "biblioteca" in heard and all(transcript_of(p.payload) for p in points), heard
    for point in points:
        meta = point.payload["metadata"]
        assert (
            meta["transcript_language"] == "es" and meta["transcript_model"] == "faster-whisper:whisper-base"
        )
        assert point.payload["page_content"] == meta["transcript"]
        assert point.text_vector is not None and len(point.text_vector) == 384 and point.sparse

    found = cli(env, "search", "biblioteca", "--hybrid", "--k", "2", "--qdrant-path", folder, "--json")
    assert found.returncode == 0, found.stderr
    best = json.loads(found.stdout)[0]
    start, end = LIBRARY_SPAN
    assert abs(best["start_s"] - start) < 0.5 and abs(best["end_s"] - end) < 0.5, best
    assert "biblioteca" in best["text"].lower() and best["text_language"] == "es"

    # the words are stored: a search asking for words transcribes nothing (this Whisper cannot load)
    none = str(tmp_path / "no-such-whisper")
    again = cli(
        env,
        "search",
        "biblioteca",
        "--transcribe",
        "--whisper-model",
        none,
        "--qdrant-path",
        folder,
        "--json",
    )
    assert again.returncode == 0, again.stderr
    assert all(hit["text"] for hit in json.loads(again.stdout))


def test_ingest_transcribe_refuses_a_collection_without_word_vectors(
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "store"
    with open_store(path=folder) as store:  # a collection made without --transcribe
        store.ensure_collection(MINI_ID, 385, source="clasp-mini")
    run = cli(env, "ingest", str(SAMPLES / "demo_es.opus"), "--transcribe", "--qdrant-path", str(folder))
    assert run.returncode == 1
    assert "no word vectors" in run.stderr and "--recreate" in run.stderr, run.stderr
    with open_store(path=folder) as store:
        assert store.count() == 0 and not store.has_word_vectors


def test_ingest_transcribe_gives_words_to_an_item_stored_without_them(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = str(tmp_path / "store")
    talk = tmp_path / "talk.opus"
    shutil.copy(SAMPLES / "demo_es.opus", talk)
    assert (
        cli(env, "ingest", str(SAMPLES / "demo_de.opus"), "--transcribe", "--qdrant-path", folder).returncode
        == 0
    )
    assert cli(env, "ingest", str(talk), "--qdrant-path", folder).returncode == 0  # no words: allowed
    again = cli(env, "ingest", str(talk), "--transcribe", "--qdrant-path", folder, "--json")
    assert json.loads(again.stdout)["media_ok"] == 1, again.stdout  # was "unchanged", still without words
    with open_store(path=Path(folder)) as store:
        points = [p for p in store.iter_points() if p.payload["metadata"]["source"] == talk.as_uri()]
        assert points and all(transcript_of(p.payload) is not None for p in points)
    unchanged = cli(env, "ingest", str(talk), "--transcribe", "--qdrant-path", folder, "--json")
    assert json.loads(unchanged.stdout)["media_skipped"] == 1
