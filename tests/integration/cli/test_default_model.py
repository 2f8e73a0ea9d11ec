"""The command line as a user runs it: the installed ``clasp-ingest`` script, the default model
(clasp-mini, nothing passed), a fresh default store under a fresh ``$HOME``.

The first command of the session also builds the model's caches from nothing (Whisper re-joined
from its packages, the ONNX export), as on a new machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clasp_ingest.model import get_preset
from tests.integration.connectors.helpers import Episode, rss, serving
from tests.unit.pipeline.speech import corrupt

SAMPLES = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"
CLI = str(Path(sys.executable).with_name("clasp-ingest"))
MINI_ID = get_preset("clasp-mini").model_id  # the versioned id its collections record
TRAIN = "Our train to the mountains leaves the central station at half past eight."
TRAIN_SPAN = (10.456, 15.067)  # demo.json: where demo_en.opus says it
SUMMARY_KEYS = {
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
    "model",
    "model_id",
    "collection",
}
HIT_KEYS = {
    "source",
    "media_id",
    "title",
    "start_s",
    "end_s",
    "score",
    "url",
    "text",
    "text_language",
    "text_en",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the module: empty at first, like a new machine's."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def env(tmp_path: Path, cache: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLASP_", "PREFECT_"))}
    return {**clean, "HOME": str(home), "XDG_CACHE_HOME": str(cache), "PREFECT_HOME": str(home / "prefect")}


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def default_store(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".local" / "share" / "clasp-ingest" / "qdrant"


def test_first_ingest_search_and_rerun_with_the_default_model(env: dict[str, str], tmp_path: Path) -> None:
    talk = shutil.copy(SAMPLES / "demo_en.opus", tmp_path / "talk.opus")
    first = cli(env, "ingest", str(talk), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert (summary["media_ok"], summary["media_failed"], summary["segments"]) == (1, [], 9)
    assert (summary["model"], summary["collection"]) == ("clasp-mini", "clasp_segments")
    assert summary["model_id"] == MINI_ID  # what the collection records and store info shows

    info = json.loads(cli(env, "store", "info").stdout)
    index = info.pop("index")
    assert info == {
        "backend": "edge",
        "collection": "clasp_segments",
        "model": MINI_ID,
        "dim": 385,
        "points": 9,
        "spans": 9,
        "search": "exact",  # a small collection is searched exactly
    }
    assert index["hnsw"]["m"] == 32 and index["graph"] == "clasp_graph"  # the query-aware graph

    found = cli(env, "search", TRAIN, "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 5 and set(hits[0]) == HIT_KEYS
    start, end = TRAIN_SPAN
    assert abs(hits[0]["start_s"] - start) < 0.5 and abs(hits[0]["end_s"] - end) < 0.5, hits[0]
    assert hits[0]["url"] == f"{talk.as_uri()}#t={hits[0]['start_s']:g},{hits[0]['end_s']:g}"
    assert hits[0]["score"] > hits[1]["score"]
    assert hits[0]["text"] is None  # no words until a search asks for them

    words = cli(env, "search", TRAIN, "--k", "1", "--transcribe", "--json")
    assert words.returncode == 0, words.stderr
    (heard,) = json.loads(words.stdout)
    assert "train" in heard["text"].lower() and heard["text_language"] == "en", heard
    (kept,) = json.loads(cli(env, "search", TRAIN, "--k", "1", "--json").stdout)
    assert kept["text"] == heard["text"]  # stored: the next search shows them without Whisper

    table = cli(env, "search", TRAIN)
    assert table.returncode == 0 and "talk.opus#t=" in table.stdout

    again = cli(env, "ingest", str(talk), "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["media_skipped"], json.loads(again.stdout)["segments"]) == (1, 0)
    assert json.loads(cli(env, "store", "info").stdout)["points"] == 9


def test_a_first_run_that_stores_nothing_leaves_no_collection(env: dict[str, str], tmp_path: Path) -> None:
    broken = corrupt(tmp_path / "media" / "broken.mp3")
    run = cli(env, "ingest", str(broken.parent), "--json")
    assert run.returncode == 3, run.stderr  # the run completed; an item failed
    failed = json.loads(run.stdout)["media_failed"]
    assert [Path(f["uri"]).name for f in failed] == ["broken.mp3"] and "broken.mp3" in failed[0]["error"]
    assert not (default_store(env) / "clasp_segments").exists()
    info = _one_error_line(cli(env, "store", "info"))
    assert "collection 'clasp_segments' does not exist" in info and "ingest some media first" in info


def test_names_with_brackets_are_files_and_are_printed_as_they_are(
    env: dict[str, str], tmp_path: Path
) -> None:
    """yt-dlp names files ``Title [id].ext``: such a file or folder is ingested, not read as a glob,
    and the summary prints names and errors verbatim (no rich markup taken from them)."""
    folder = tmp_path / "course [2019]"
    folder.mkdir()
    talk = shutil.copy(SAMPLES / "demo_en.opus", folder / "Talk [dQw4w9WgXcQ].opus")
    corrupt(folder / "broken [red].mp3")
    odd = corrupt(tmp_path / "odd[" / "x].mp3")  # the path holds "[/x]", a closing markup tag
    run = cli(env, "ingest", str(folder), str(odd))
    assert run.returncode == 3, run.stderr  # the run completed; two items failed
    assert "unexpected" not in run.stderr
    failed = [line for line in run.stdout.splitlines() if line.startswith("failed ")]
    assert len(failed) == 2 and "broken [red].mp3" in failed[0] and "odd[/x].mp3" in failed[1], run.stdout

    single = cli(env, "ingest", str(talk), "--json")
    assert single.returncode == 0 and json.loads(single.stdout)["media_skipped"] == 1, single.stderr
    hits = json.loads(cli(env, "search", TRAIN, "--json").stdout)
    assert hits[0]["title"] == "Talk [dQw4w9WgXcQ]"
    assert (hits[0]["start_s"], hits[0]["end_s"]) == pytest.approx(TRAIN_SPAN, abs=0.5)


def test_a_first_run_whose_items_all_fail_still_builds_the_model_cache(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The model loads in the background while the first item decodes; a run that ends first
    waits for it instead of tearing down under it (which failed the one-time ONNX export with a
    'using torch' warning and cached nothing)."""
    fresh = {**env, "XDG_CACHE_HOME": str(tmp_path / "fresh-cache")}
    run = cli(fresh, "ingest", str(corrupt(tmp_path / "broken.mp3")), "--json")
    assert run.returncode == 3, run.stderr
    assert "WARNING" not in run.stderr and "torch" not in run.stderr, run.stderr
    assert list((tmp_path / "fresh-cache" / "clasp-ingest" / "onnx").glob(f"{MINI_ID}-*/*.onnx"))


def test_store_list_and_delete(env: dict[str, str], tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    talk = shutil.copy(SAMPLES / "demo_en.opus", media / "talk.opus")
    rede = shutil.copy(SAMPLES / "demo_de.opus", media / "rede.opus")
    assert cli(env, "ingest", str(media)).returncode == 0
    listed = json.loads(cli(env, "store", "list", "--json").stdout)
    assert [(i["source"], i["state"], i["model"]) for i in listed] == [
        (rede.as_uri(), "complete", MINI_ID),
        (talk.as_uri(), "complete", MINI_ID),
    ]
    assert listed[1]["spans"] == 9 and listed[1]["title"] == "talk"
    for given in (str(talk), talk.as_uri(), listed[1]["media_id"]):  # --media-id: any of the three
        only = json.loads(cli(env, "search", TRAIN, "--media-id", given, "--json").stdout)
        assert len(only) == 5 and {h["source"] for h in only} == {talk.as_uri()}
    lines = cli(env, "store", "list").stdout.splitlines()
    assert lines[-1] == f"2 media items, {listed[0]['spans'] + 9} searchable spans in 'clasp_segments'"

    unknown = cli(env, "store", "delete", str(tmp_path / "elsewhere.opus"), "--yes")
    assert unknown.returncode == 1 and "matches no media item" in unknown.stderr
    unasked = cli(env, "store", "delete", str(talk))  # no --yes and no terminal to ask on
    assert unasked.returncode == 1 and "--yes" in unasked.stderr
    deleted = cli(env, "store", "delete", str(talk), "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["points"] == 9
    assert [i["source"] for i in json.loads(cli(env, "store", "list", "--json").stdout)] == [rede.as_uri()]
    hits = json.loads(cli(env, "search", TRAIN, "--json").stdout)
    assert hits and all(h["source"] == rede.as_uri() for h in hits)

    gone = cli(env, "store", "delete", str(media), "-y")  # a folder: everything stored from under it
    assert gone.returncode == 0 and json.loads(gone.stdout)["deleted"][0]["source"] == rede.as_uri()
    assert json.loads(cli(env, "store", "info").stdout)["points"] == 0
    again = json.loads(cli(env, "ingest", str(media), "--json").stdout)
    assert again["media_ok"] == 2  # deleted items are ingested again

    rede.rename(tmp_path / "rede.opus")  # moved away: --prune deletes it from the store
    pruned = cli(env, "ingest", str(media), "--prune")
    assert pruned.returncode == 0 and f"pruned {rede.as_uri()}: no longer in its source" in pruned.stdout
    assert [i["source"] for i in json.loads(cli(env, "store", "list", "--json").stdout)] == [talk.as_uri()]


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_errors_are_one_line_naming_the_cause_and_the_fix(env: dict[str, str], tmp_path: Path) -> None:
    missing = _one_error_line(cli(env, "search", "anything"))
    assert "'clasp_segments' does not exist" in missing and str(default_store(env)) in missing

    unknown = _one_error_line(cli(env, "ingest", str(SAMPLES / "demo_en.opus"), "--model", "clasp-nano"))
    assert "'clasp-nano'" in unknown and "clasp-mini" in unknown

    outside = _one_error_line(cli(env, "ingest", str(SAMPLES / "demo_en.opus"), "--collection", "../x"))
    assert "collection name '../x' holds '/'" in outside and "--collection" in outside
    assert not (default_store(env).parent / "x").exists()

    talk = shutil.copy(SAMPLES / "demo_de.opus", tmp_path / "rede.opus")
    assert cli(env, "ingest", str(talk)).returncode == 0
    other = _one_error_line(cli(env, "ingest", str(talk), "--model", "tiny-random"))
    assert MINI_ID in other and "--recreate" in other
    wrong = _one_error_line(cli(env, "search", "Katze", "--model", "tiny-random"))
    assert "drop --model" in wrong

    recreated = cli(env, "ingest", str(talk), "--model", "tiny-random", "--recreate", "--json")
    assert recreated.returncode == 0, recreated.stderr
    assert json.loads(cli(env, "store", "info").stdout)["model"] == "tiny-random"
    assert cli(env, "search", "Katze", "--json").returncode == 0  # the collection's own model now

    unreachable = _one_error_line(cli(env, "store", "info", "--qdrant-url", "http://127.0.0.1:9"))
    assert "http://127.0.0.1:9" in unreachable


def test_a_collection_of_the_previous_default_still_searches_and_is_not_mixed(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A store filled before v1 (clasp-mini v0.13, now the preset clasp-mini-spec): a search loads
    that model by itself; the default model's ingest into it is refused, naming the way to add."""
    old = get_preset("clasp-mini-spec").model_id
    assert old == "clasp-mini-v0.13" != MINI_ID
    talk = shutil.copy(SAMPLES / "demo_en.opus", tmp_path / "talk.opus")
    assert cli(env, "ingest", str(talk), "--model", "clasp-mini-spec").returncode == 0
    assert json.loads(cli(env, "store", "info").stdout)["model"] == old
    hits = json.loads(cli(env, "search", TRAIN, "--json", "--k", "1").stdout)
    assert abs(hits[0]["start_s"] - TRAIN_SPAN[0]) < 0.5
    later = shutil.copy(SAMPLES / "demo_de.opus", tmp_path / "rede.opus")
    refused = _one_error_line(cli(env, "ingest", str(later)))
    assert old in refused and MINI_ID in refused and "--model clasp-mini-spec" in refused
    added = cli(env, "ingest", str(later), "--model", "clasp-mini-spec", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(cli(env, "store", "info").stdout)["points"] == 9 + json.loads(added.stdout)["segments"]


def test_the_flow_path_with_the_default_model(env: dict[str, str], tmp_path: Path) -> None:
    talk = shutil.copy(SAMPLES / "demo_en.opus", tmp_path / "talk.opus")
    run = cli(env, "ingest", str(talk), "--flow", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["media_ok"], summary["segments"]) == (1, 9)
    # a failed item is said once on stderr, as without --flow (Prefect's own report of the
    # failed task repeated it)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mp3").write_bytes(b"\xff\xfb" + bytes(range(256)) * 8)
    failed = cli(env, "ingest", str(bad), "--flow", "--json")
    assert failed.returncode == 3 and json.loads(failed.stdout)["media_failed"], failed.stderr
    assert failed.stderr.count("broken.mp3': not a readable media file") == 1, failed.stderr
    hits = json.loads(cli(env, "search", TRAIN, "--json", "--k", "1").stdout)
    assert abs(hits[0]["start_s"] - TRAIN_SPAN[0]) < 0.5


def test_a_feed_ingested_again_is_asked_for_only_where_it_changed(env: dict[str, str]) -> None:
    """A scheduled ingest of a podcast feed: the second run sends the feed's ETag back, the
    server (on 127.0.0.1) answers 304 without the document, and the kept one is listed."""
    audio = (SAMPLES / "demo_en.opus").read_bytes()
    with serving() as site:
        site.put("/talk.opus", audio)
        episode = Episode("Talk", f"{site.base_url}/talk.opus", len(audio), mime="audio/ogg")
        site.put("/feed.rss", rss("Talks", [episode]), etag='"v1"')
        first = cli(env, "ingest", f"{site.base_url}/feed.rss", "--json")
        assert first.returncode == 0, first.stderr
        assert (json.loads(first.stdout)["media_ok"], json.loads(first.stdout)["segments"]) == (1, 9)
        again = cli(env, "ingest", f"{site.base_url}/feed.rss", "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["media_skipped"], json.loads(again.stdout)["segments"]) == (1, 0)
    assert site.statuses("/feed.rss") == [200, 304]
    assert [headers.get("If-None-Match") for path, headers, *_ in site.asked if path == "/feed.rss"] == [
        None,
        '"v1"',
    ]
    assert len(list((Path(env["XDG_CACHE_HOME"]) / "clasp-ingest" / "feeds").glob("*.feed"))) == 1


def _signalled_mid_item(env: dict[str, str], tmp_path: Path, flow: list[str], sent: int) -> tuple[int, str]:
    """``ingest`` of a long file (three batches) sent ``sent`` while its first batch is written:
    the exit status and stderr."""
    import threading

    from clasp_ingest.media.decode import find_ffmpeg

    long = tmp_path / "long.wav"  # demo_en.opus eight times: 72 segments, three batches
    loop = ["-stream_loop", "7", "-i", str(SAMPLES / "demo_en.opus"), "-ac", "1", "-ar", "16000"]
    subprocess.run([find_ffmpeg(None), "-loglevel", "error", *loop, str(long)], check=True)
    process = subprocess.Popen(
        [CLI, "-vv", "ingest", str(long), *flow, "--json"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    writing = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "embedded, writing" in line:
                writing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert writing.wait(240), "".join(lines[-20:])  # the first batch is being written
        process.send_signal(sent)
        process.wait(timeout=60)
    finally:
        process.kill()
    reader.join(10)
    return process.returncode, "".join(lines)


def test_ctrl_c_in_the_middle_of_a_flow_item_keeps_nothing_of_it(env: dict[str, str], tmp_path: Path) -> None:
    """The flow's media task is stopped and rolled back before the store is closed under it."""
    import signal

    code, stderr = _signalled_mid_item(env, tmp_path, ["--flow"], signal.SIGINT)
    assert code == 130, stderr[-3000:]
    assert "error: interrupted" in stderr and "could not roll back" not in stderr
    assert "the run was interrupted; nothing of this item was kept" in stderr  # stopped mid-item
    gone = _one_error_line(cli(env, "store", "info"))  # no half-written item: the collection
    assert "collection 'clasp_segments' does not exist" in gone  # this run made is gone again

    again = cli(env, "ingest", str(tmp_path / "long.wav"), "--flow", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["media_ok"] == 1, again.stderr


def test_the_langchain_retriever_with_the_default_model(env: dict[str, str], tmp_path: Path) -> None:
    """A store the CLI filled, read by a LangChain user in one line (the collection's own model)."""
    from clasp_ingest.retriever import ClaspRetriever

    talk = shutil.copy(SAMPLES / "demo_en.opus", tmp_path / "talk.opus")
    assert cli(env, "ingest", str(talk), "--qdrant-path", str(tmp_path / "q")).returncode == 0
    with ClaspRetriever.from_path(tmp_path / "q", k=3) as retriever:
        docs = retriever.invoke("Le train pour la montagne part de la gare centrale à huit heures et demie.")
    assert len(docs) == 3 and docs[0].id and len({d.id for d in docs}) == 3
    first = docs[0].metadata
    assert abs(first["start_s"] - TRAIN_SPAN[0]) < 0.5 and first["source"] == talk.as_uri()
    assert first["url"].startswith(f"{talk.as_uri()}#t=") and first["score"] >= docs[1].metadata["score"]


def test_sigterm_in_the_middle_of_an_item_keeps_nothing_of_it(env: dict[str, str], tmp_path: Path) -> None:
    """SIGTERM rolls back the item being written, as Ctrl-C does; exit 143."""
    import signal

    code, stderr = _signalled_mid_item(env, tmp_path, [], signal.SIGTERM)
    assert code == 143, stderr[-3000:]
    assert "error: terminated" in stderr and "could not roll back" not in stderr
    gone = _one_error_line(cli(env, "store", "info"))  # no half-written item: the collection
    assert "collection 'clasp_segments' does not exist" in gone  # this run made is gone again


def _cached(env: dict[str, str]) -> dict[str, dict[str, object]]:
    run = cli(env, "models", "cache", "--json")
    assert run.returncode == 0, run.stderr
    return {row["path"]: row for row in json.loads(run.stdout)["entries"]}


def _age_all(cache: Path, days: float) -> None:
    import time

    at = time.time() - days * 86_400
    for path in [*cache.iterdir(), *(cache / "onnx").iterdir(), *(cache / "e5-onnx").iterdir()]:
        os.utime(path, (at, at))


def test_the_model_cache_lists_what_runs_use_and_prunes_what_they_no_longer_do(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`models cache` on the copies a first ingest writes; runs mark what they load; `--prune`
    removes what no run used for the days given, leaves what is not its own, and the next
    ingest writes the copies again and works."""
    fresh = {**env, "XDG_CACHE_HOME": str(tmp_path / "fresh-cache")}
    cache = tmp_path / "fresh-cache" / "clasp-ingest"
    assert cli(fresh, "ingest", str(SAMPLES / "demo_en.opus")).returncode == 0
    first = _cached(fresh)
    kinds = sorted(str(row["kind"]) for row in first.values())
    assert "ONNX export" in kinds and "e5 graph" in kinds and kinds.count("Whisper (CT2)") >= 2, first
    assert "whisper-base-ct2" in first and not any(row["stale"] for row in first.values())

    _age_all(cache, 40)  # as if last used 40 days ago
    assert all(row["stale"] for row in _cached(fresh).values())
    assert cli(fresh, "ingest", str(SAMPLES / "demo_de.opus")).returncode == 0
    again = _cached(fresh)
    assert again.keys() == first.keys()  # the same copies loaded, none written again
    assert not any(row["stale"] for row in again.values()), again  # each marked used

    _age_all(cache, 40)
    (cache / "feeds").mkdir()
    (cache / "notes.txt").write_text("not clasp-ingest's")
    pruned = cli(fresh, "models", "cache", "--prune", "--unused-days", "30")
    assert pruned.returncode == 0, pruned.stderr
    assert f"{len(first)} removed" in pruned.stdout and "0 kept" in pruned.stdout, pruned.stdout
    assert sorted(p.name for p in cache.iterdir()) == ["e5-onnx", "feeds", "notes.txt", "onnx"]

    talk = shutil.copy(SAMPLES / "demo_en.opus", tmp_path / "talk.opus")
    assert cli(fresh, "ingest", str(talk)).returncode == 0
    rewritten = _cached(fresh)  # a 7-bit copy is named by its source's mtime: a new name
    assert sorted(str(row["kind"]) for row in rewritten.values()) == kinds
    assert {p for p in first if "-int7e-" not in p} <= rewritten.keys()
    hits = json.loads(cli(fresh, "search", TRAIN, "-k", "1", "--json").stdout)
    assert hits[0]["start_s"] == pytest.approx(TRAIN_SPAN[0], abs=0.5)
