"""The model cache: what it lists, what a load marks used, what ``prune`` removes and leaves
(``clasp_ingest.model.cache``, ``clasp-ingest models cache``)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.assets import atomic_write, cached_folder, folder_stamp_matches
from clasp_ingest.model.cache import DAY_S, CacheEntry, Pruned, cache_entries, mark_used, prune

NOW = time.time()


def _copy(folder: Path, size: int = 1000) -> Path:
    """A stamped copy as the model cache writes it (``cached_folder``)."""

    def write(out: Path) -> None:
        out.mkdir()
        (out / "model.bin").write_bytes(b"w" * size)
        (out / "config.json").write_text("{}")

    return cached_folder(folder, write)


@pytest.fixture(autouse=True)
def _now() -> None:
    """``NOW`` is each test's start: a copy written during the test is that new (a time taken at
    collection is most of an hour old when a whole test run reaches these tests)."""
    global NOW
    NOW = time.time()


def _aged(path: Path, days: float) -> Path:
    at = NOW - days * DAY_S
    os.utime(path, (at, at))
    return path


def _cache(tmp_path: Path) -> Path:
    """A cache holding one of each kind, a run's leftovers, and names that are not ours."""
    cache = tmp_path / "clasp-ingest"
    _aged(_copy(cache / "whisper-base-ct2-top-0123456789abcdef", 5000), 40)
    _copy(cache / "whisper-base-ct2")
    export = cache / "onnx" / "clasp-mini-v1.1-0123456789abcdef"
    export.mkdir(parents=True)
    (export / "head.onnx").write_bytes(b"h" * 300)
    (export / "meta.json").write_text("{}")
    _aged(export, 31)
    atomic_write(cache / "e5-onnx" / "e5-small-q4-00aa11bb22cc33dd.onnx", lambda fh: fh.write(b"e" * 200))
    _aged(cache / "e5-onnx" / "e5-small-q4-00aa11bb22cc33dd.onnx", 29)
    (cache / "efficientnet-lite0-timm.safetensors").write_bytes(b"l" * 100)
    staging = cache / ".whisper-base-ct2-top-fedcba9876543210-k2j4_x9q"  # a run killed while writing
    staging.mkdir()
    (staging / "model.bin").write_bytes(b"half")
    _aged(staging, 2 / 24)
    (cache / "e5-onnx" / ".tmp-ab12cd34.onnx").write_bytes(b"cut")  # being written right now
    (cache / "feeds").mkdir()
    (cache / "feeds" / "old.feed").write_bytes(b"<rss/>")
    _aged(cache / "feeds", 90)
    _aged(_copy(cache / "unstamped"), 90)
    (cache / "unstamped" / ".verified").unlink()  # not a copy of ours (no stamp)
    _aged(cache / "unstamped", 90)
    (cache / "notes.txt").write_text("mine")
    _aged(cache / "notes.txt", 90)
    (cache / "features").mkdir()  # the training features' cache
    _aged(cache / "features", 90)
    return cache


def test_the_listing_holds_the_copies_clasp_ingest_writes_and_nothing_else(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    listed = {str(e.path.relative_to(cache)): e for e in cache_entries(cache)}
    assert {name: e.kind for name, e in listed.items()} == {
        "whisper-base-ct2-top-0123456789abcdef": "Whisper (CT2)",
        "whisper-base-ct2": "Whisper (CT2)",
        "onnx/clasp-mini-v1.1-0123456789abcdef": "ONNX export",
        "e5-onnx/e5-small-q4-00aa11bb22cc33dd.onnx": "e5 graph",
        "efficientnet-lite0-timm.safetensors": "Lite0 weights",
        ".whisper-base-ct2-top-fedcba9876543210-k2j4_x9q": "unfinished",
        "e5-onnx/.tmp-ab12cd34.onnx": "unfinished",
    }
    assert listed["whisper-base-ct2-top-0123456789abcdef"].size > 5000  # the files inside, stamp too
    assert listed["onnx/clasp-mini-v1.1-0123456789abcdef"].size == 302
    assert [e.size for e in cache_entries(cache)] == sorted((e.size for e in listed.values()), reverse=True)
    assert cache_entries(tmp_path / "none") == []


def test_prune_removes_what_no_run_used_for_the_days_given_and_leftovers_over_an_hour_old(
    tmp_path: Path,
) -> None:
    cache = _cache(tmp_path)
    done = prune(cache, 30, now=NOW)
    assert sorted(str(e.path.relative_to(cache)) for e in done.removed) == [
        ".whisper-base-ct2-top-fedcba9876543210-k2j4_x9q",
        "onnx/clasp-mini-v1.1-0123456789abcdef",
        "whisper-base-ct2-top-0123456789abcdef",
    ]
    assert done.failed == [] and done.freed == sum(e.size for e in done.removed) > 5000
    left = sorted(
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if p.parent in (cache, cache / "onnx", cache / "e5-onnx")
    )
    assert left == [
        "e5-onnx",
        "e5-onnx/.tmp-ab12cd34.onnx",  # under an hour old: a run may be writing it
        "e5-onnx/e5-small-q4-00aa11bb22cc33dd.onnx",  # used 29 days ago
        "efficientnet-lite0-timm.safetensors",
        "features",
        "feeds",  # the feed cache keeps its own
        "notes.txt",
        "onnx",
        "unstamped",
        "whisper-base-ct2",
    ]
    assert [e.path.name for e in prune(cache, 28, now=NOW).removed] == ["e5-small-q4-00aa11bb22cc33dd.onnx"]
    assert prune(cache, 0, now=NOW + 2 * 3600).removed  # everything of ours, at last
    assert sorted(p.name for p in cache.iterdir()) == [
        "e5-onnx",
        "features",
        "feeds",
        "notes.txt",
        "onnx",
        "unstamped",
    ]


def test_a_copy_that_cannot_be_removed_is_reported_and_the_others_still_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path)
    stuck = cache / "whisper-base-ct2-top-0123456789abcdef"
    real = Path.replace

    def refused(self: Path, target: Path) -> Path:  # what another user's copy meets (root may do all)
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, target)

    monkeypatch.setattr(Path, "replace", refused)
    done = prune(cache, 30, now=NOW)
    assert [(e.path, why) for e, why in done.failed] == [(stuck, "Permission denied")]
    assert len(done.removed) == 2 and stuck.is_dir() and folder_stamp_matches(stuck)
    assert not list(cache.glob(".*-old-*"))  # nothing moved aside is left behind


def test_a_load_marks_its_copy_used_once_an_hour_and_the_copy_stays_whole(tmp_path: Path) -> None:
    target = _aged(_copy(tmp_path / "whisper-base-ct2-top-00"), 40)
    assert cached_folder(target, lambda out: pytest.fail("a whole copy is not written again")) == target
    assert time.time() - target.stat().st_mtime < 60 and folder_stamp_matches(target)
    before = _aged(target, 0.5 / 24).stat().st_mtime
    mark_used(target)  # used within the hour: no write
    assert target.stat().st_mtime == before
    _aged(target, 2 / 24)
    mark_used(target)
    assert time.time() - target.stat().st_mtime < 60
    mark_used(tmp_path / "gone")  # never fails a load


def _cli(cache_home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner(env={"XDG_CACHE_HOME": str(cache_home), "COLUMNS": "200"}).invoke(
        app, ["models", "cache", *args]
    )
    return result.exit_code, result.output


def test_the_command_lists_marks_and_prunes(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    code, out = _cli(tmp_path, "--json")
    assert code == 0, out
    rows = {row["path"]: row for row in json.loads(out)["entries"]}
    assert rows["whisper-base-ct2-top-0123456789abcdef"]["stale"] and not rows["whisper-base-ct2"]["stale"]
    code, table = _cli(tmp_path)
    assert code == 0 and "7 copies" in table
    assert "* 3 (" in table and "clasp-ingest models cache --prune --unused-days 30 removes them" in table
    code, out = _cli(tmp_path, "--prune", "--unused-days", "30", "--json")
    assert code == 0, out
    pruned = json.loads(out)
    assert len(pruned["removed"]) == 3 and pruned["failed"] == [] and pruned["freed_bytes"] > 5000
    code, out = _cli(tmp_path, "--prune")
    assert code == 0 and out.strip().endswith(f"0 removed, 0.0 MB freed; 4 kept ({cache})")


@pytest.mark.parametrize("days", ["-1", "nan", "x", "0.5", "inf"])
def test_unused_days_must_be_a_number_of_days(tmp_path: Path, days: str) -> None:
    code, out = _cli(tmp_path, "--unused-days", days)
    assert code == 2, out


def test_an_empty_cache_says_so(tmp_path: Path) -> None:
    assert _cli(tmp_path) == (0, f"the model cache {tmp_path / 'clasp-ingest'} holds no copies\n")


def test_a_cache_without_room_names_the_prune_as_a_remedy(tmp_path: Path) -> None:
    def full(out: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "model.bin"))

    with pytest.raises(ModelLoadError, match=r"No space left .*'clasp-ingest models cache --prune' removes"):
        cached_folder(tmp_path / "clasp-ingest" / "whisper-base-ct2-top-00", full)


def test_names_like_leftovers_that_it_does_not_write_and_links_are_left_alone(tmp_path: Path) -> None:
    """Reviewer: ``.<word>-<6 characters>`` and ``*.tmp`` were taken for leftovers, and ``e5-onnx``
    was followed where it was a link to another folder, whose files went too."""
    cache = tmp_path / "clasp-ingest"
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in (
        ".bash_history-backup1",
        "notes.tmp",
        ".tmp-ab12cd34.onnx",
        "e5-small-q4-00aa11bb22cc33dd.onnx",
    ):
        _aged(_write(outside / name), 90)
    cache.mkdir()
    (cache / "e5-onnx").symlink_to(outside)
    _aged(_write(cache / "my-notes.tmp"), 90)
    (cache / ".venv-backup1").mkdir()
    _aged(cache / ".venv-backup1", 90)
    theirs = _aged(_copy(tmp_path / "shared" / "whisper-base-ct2"), 90)
    (cache / "whisper-base-ct2").symlink_to(theirs)
    hidden = _aged(_copy(cache / ".mywhisper-top-0123456789abcdef"), 0.5)  # a hidden folder's copy
    assert [(e.path, e.kind) for e in cache_entries(cache)] == [(hidden, "Whisper (CT2)")]
    assert prune(cache, 1, now=NOW).removed == []
    assert len(list(outside.iterdir())) == 4 and folder_stamp_matches(theirs)
    assert sorted(p.name for p in cache.iterdir()) == [
        ".mywhisper-top-0123456789abcdef",
        ".venv-backup1",
        "e5-onnx",
        "my-notes.tmp",
        "whisper-base-ct2",
    ]


def test_a_copy_marked_used_after_the_listing_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reviewer: a run that loaded a copy while a prune walked the others lost it."""
    from clasp_ingest.model import cache as cache_module

    cache = tmp_path / "clasp-ingest"
    old = _aged(_copy(cache / "whisper-base-ct2-top-0123456789abcdef", 5000), 40)
    other = _aged(_copy(cache / "whisper-base-ct2-int7e-0123456789ab"), 40)
    listed = cache_module.cache_entries

    def listing_then_a_load(folder: Path) -> list[CacheEntry]:
        found = listed(folder)
        mark_used(old)  # a run loads it while the prune runs
        return found

    monkeypatch.setattr(cache_module, "cache_entries", listing_then_a_load)
    done = prune(cache, 30, now=NOW)
    assert [e.path for e in done.removed] == [other] and folder_stamp_matches(old)


def test_a_copy_that_cannot_be_deleted_whole_is_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reviewer: a copy whose deletion failed half-way stayed under ``.<name>-old-…`` and moved
    further aside at each prune."""
    cache = tmp_path / "clasp-ingest"
    stuck = _aged(_copy(cache / "whisper-base-ct2-top-0123456789abcdef"), 40)
    real = shutil.rmtree

    def refused(path: str | Path, *args: object, onerror: object = None, **kw: object) -> None:
        assert callable(onerror)  # what an undeletable file inside meets (root may delete all)
        onerror(
            os.unlink,
            str(Path(path) / "x" / "model.bin"),
            (PermissionError, PermissionError(13, "Permission denied"), None),
        )

    monkeypatch.setattr(shutil, "rmtree", refused)
    done = prune(cache, 30, now=NOW)
    monkeypatch.setattr(shutil, "rmtree", real)
    assert [(e.path, "could not be deleted whole" in why) for e, why in done.failed] == [(stuck, True)]
    assert sorted(p.name for p in cache.iterdir()) == [stuck.name] and folder_stamp_matches(stuck)


def _write(path: Path) -> Path:
    path.write_bytes(b"data")
    return path


def test_a_copy_it_may_not_read_is_left_out_and_the_others_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Reviewer: another user's 0700 copy failed the whole listing (Python 3.11's ``is_file``
    raises PermissionError)."""
    cache = tmp_path / "clasp-ingest"
    theirs = _copy(cache / "whisper-base-ct2-top-0123456789abcdef")
    mine = _aged(_copy(cache / "whisper-base-ct2"), 40)
    real = Path.is_file

    def denied(self: Path) -> bool:  # what a folder it may not enter gives (root may enter all)
        if self.parent == theirs:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "is_file", denied)
    assert [e.path for e in cache_entries(cache)] == [mine]
    assert [e.path for e in prune(cache, 30, now=NOW).removed] == [mine]
    assert "cannot be read (Permission denied); left out" in caplog.text


def test_a_copy_partly_deleted_stays_aside_for_the_next_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reviewer 2: a copy whose deletion failed after some files went was put back, half, under
    its live name."""
    cache = tmp_path / "clasp-ingest"
    stuck = _aged(_copy(cache / "whisper-base-ct2-2L"), 40)
    real = shutil.rmtree

    def half(path: str | Path, *args: object, onerror: object = None, **kw: object) -> None:
        assert callable(onerror)
        copy = Path(path) / stuck.name
        (copy / "model.bin").unlink()  # deleted; config.json cannot be (an immutable file)
        onerror(
            os.unlink,
            str(copy / "config.json"),
            (PermissionError, PermissionError(1, "Operation not permitted"), None),
        )

    monkeypatch.setattr(shutil, "rmtree", half)
    done = prune(cache, 30, now=NOW)
    monkeypatch.setattr(shutil, "rmtree", real)
    [(entry, why)] = done.failed
    assert entry.path == stuck and not stuck.exists() and "-old-" in why and "config.json" in why
    [aside] = cache.iterdir()
    assert aside.name.startswith(f".{stuck.name}-old-")
    _aged(aside, 2 / 24)
    assert [e.path for e in prune(cache, 30, now=NOW).removed] == [aside] and not list(cache.iterdir())


def test_two_prunes_at_once_remove_each_copy_once_and_fail_nothing(tmp_path: Path) -> None:
    """Reviewer 2: the second of two prunes counted copies the first had removed, and failed on
    files the first had deleted."""
    import threading

    for trial in range(5):
        cache = tmp_path / str(trial) / "clasp-ingest"
        (cache / "e5-onnx").mkdir(parents=True)
        for i in range(3):
            _aged(_copy(cache / f"whisper-base-ct2-{i + 2}L"), 40)
        for i in range(20):  # files too (e5 graphs), each unlinked by one of the two
            _aged(_write(cache / "e5-onnx" / f"e5-small-q4-{i:016x}.onnx"), 40)
        left = cache / ".whisper-base-ct2-abcd_123"
        left.mkdir(parents=True)
        for i in range(100):
            (left / f"f{i}").write_bytes(b"x")
        _aged(left, 2 / 24)
        results: list[Pruned] = []
        threads = [threading.Thread(target=_pruning, args=(cache, results)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [p.name for p in cache.iterdir()] == ["e5-onnx"] and not list((cache / "e5-onnx").iterdir())
        assert [p.failed for p in results] == [[], []]
        assert sum(len(p.removed) for p in results) == 24


def _pruning(cache: Path, results: list[Pruned]) -> None:
    results.append(prune(cache, 30, now=NOW))


def test_links_named_like_leftovers_or_exports_stay(tmp_path: Path) -> None:
    cache = tmp_path / "clasp-ingest"
    (cache / "onnx").mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    for link in (
        cache / ".whisper-base-ct2-abcdefgh",
        cache / "onnx" / "m-0123456789abcdef",
        cache / "onnx" / ".export-abcdefgh",
    ):
        link.symlink_to(target)
        os.utime(link, (NOW - 90 * DAY_S, NOW - 90 * DAY_S), follow_symlinks=False)
    assert cache_entries(cache) == [] and prune(cache, 0, now=NOW).removed == []
    assert len(list(cache.iterdir())) == 2 and len(list((cache / "onnx").iterdir())) == 2


def test_a_cache_home_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    code, out = _cli(tmp_path / "afile", "--prune")
    assert code == 1 and "is not a folder; check XDG_CACHE_HOME" in out
