"""Local sources. A folder tree deeper than Python's recursion limit: ``os.walk`` (recursive on
3.11) raised RecursionError and the whole source was "not listed" (exit 1), so one planted
subtree in a shared inbox stopped every nightly run; now it is listed like any other, in the same
order. A ``file://`` URL naming another host is refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clasp_ingest.connectors import connector_for


@pytest.fixture
def deep_inbox(tmp_path: Path) -> Iterator[Path]:
    """``inbox/top.wav`` and ``inbox/d/d/.../d/bottom.wav``, 1,200 folders down; removed after
    the test bottom-up (``os.makedirs`` and ``shutil.rmtree`` recurse too: pytest's clean-up of
    old temporary folders printed a RecursionError)."""
    folders = [tmp_path / "inbox"]
    folders[0].mkdir()
    for _ in range(1200):
        folders.append(folders[-1] / "d")
        folders[-1].mkdir()
    (folders[-1] / "bottom.wav").write_bytes(b"RIFF")
    (folders[0] / "top.wav").write_bytes(b"RIFF")
    yield folders[0]
    (folders[-1] / "bottom.wav").unlink()
    (folders[0] / "top.wav").unlink()
    for folder in reversed(folders):
        folder.rmdir()


def test_a_tree_deeper_than_the_recursion_limit_is_listed(deep_inbox: Path) -> None:
    uris = [ref.uri for ref in connector_for(str(deep_inbox)).discover()]
    assert len(uris) == 2 and uris[0].endswith("/d/bottom.wav") and uris[1].endswith("/inbox/top.wav")


def test_the_walk_keeps_os_walks_order_and_skips(tmp_path: Path) -> None:
    root = tmp_path / "talks"
    for name in ("b/2.wav", "a/z/1.wav", "a/0.wav", ".hidden/x.wav", "c.wav", "a/notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"RIFF")
    (root / "link").symlink_to(root / "b")  # the same folder twice: listed once
    names = [ref.uri.removeprefix(root.as_uri() + "/") for ref in connector_for(str(root)).discover()]
    expected = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "link")
        expected += [str(Path(folder, f).relative_to(root)) for f in files if f.endswith(".wav")]
    assert sorted(names) == sorted(expected) and len(names) == 4


@pytest.mark.parametrize("host", ["127.0.0.2", "evil.example", "server"])
def test_a_file_url_with_another_host_is_refused(tmp_path: Path, host: str) -> None:
    """``file://HOST/path`` read the local ``/path`` whatever HOST said (a reviewer's
    ``file://127.0.0.2/...`` ingested the local file); ``file://localhost/path`` is local."""
    from clasp_ingest.errors import ConfigError

    (tmp_path / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match=f"names the host '{host}', and file:// URLs name local files"):
        connector_for(f"file://{host}{tmp_path}/a.wav")
    local = connector_for(f"file://localhost{tmp_path}/a.wav")
    assert [ref.uri for ref in local.discover()] == [(tmp_path / "a.wav").as_uri()]


def test_feed_titles_lose_control_characters(tmp_path: Path) -> None:
    """A feed's titles went into every span's payload as written: a terminal escape and a bell
    (``\\x1b]0;pwn\\x07``, which retitles a terminal) stayed; a downloaded file's name had them
    removed already. Now they are spaces, and the title is one line."""
    from clasp_ingest.connectors import FeedConnector

    (tmp_path / "ep.wav").write_bytes(b"RIFF")
    feed = tmp_path / "feed.xml"
    feed.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        "<title>Show\x1b]0;pwn\x07 one</title><link>http://example.invalid/</link>"
        f"<item><title>Ep\tone\x1b[31m red</title><guid>g1</guid>"
        f'<enclosure url="{(tmp_path / "ep.wav").as_uri()}" length="4" type="audio/wav"/></item>'
        "</channel></rss>"
    )
    (ref,) = FeedConnector(str(feed)).discover()
    assert ref.metadata["feed_title"] == "Show ]0;pwn one"
    assert ref.title == ref.metadata["episode_title"] == "Ep one [31m red"
