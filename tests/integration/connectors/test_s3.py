"""s3:// sources against moto's S3 server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from clasp_ingest.connectors import FsspecConnector, connector_for

from clasp_ingest.types import media_id_for
from tests.integration.connectors.conftest import S3Server
from tests.integration.connectors.helpers import write_tone


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    client = s3_server.client()
    client.create_bucket(Bucket="media")
    folder = tmp_path_factory.mktemp("s3src")
    for key, seconds in [("shows/one.wav", 0.3), ("shows/deep/two.wav", 0.4), ("other/three.wav", 0.2)]:
        client.upload_file(str(write_tone(folder / key, seconds)), "media", key)
    client.put_object(Bucket="media", Key="shows/readme.txt", Body=b"text")
    return "media"


def test_prefix_listing_is_recursive_and_media_only(s3_server: S3Server, bucket: str) -> None:
    connector = FsspecConnector(f"s3://{bucket}/shows", storage_options=s3_server.storage_options)
    refs = list(connector.discover())
    assert [r.uri for r in refs] == ["s3://media/shows/deep/two.wav", "s3://media/shows/one.wav"]
    assert all(r.fingerprint.startswith("etag:") for r in refs)
    assert refs[0].media_id == media_id_for("s3://media/shows/deep/two.wav")


def test_glob_and_single_object(s3_server: S3Server, bucket: str) -> None:
    options = s3_server.storage_options
    by_glob = list(connector_for(f"s3://{bucket}/*/*.wav", storage_options=options).discover())
    assert [r.uri for r in by_glob] == ["s3://media/other/three.wav", "s3://media/shows/one.wav"]
    (single,) = connector_for(f"s3://{bucket}/other/three.wav", storage_options=options).discover()
    assert single.title == "three"


def test_open_downloads_object_and_etag_tracks_content(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    url = f"s3://{bucket}/shows/one.wav"
    connector = FsspecConnector(url, storage_options=s3_server.storage_options)
    (before,) = connector.discover()
    with connector.open(before) as local:
        body = client.get_object(Bucket=bucket, Key="shows/one.wav")["Body"].read()
        assert Path(local).read_bytes() == body
    client.upload_file(str(write_tone(tmp_path / "new.wav", 0.7)), bucket, "shows/one.wav")
    connector = FsspecConnector(
        url, storage_options={**s3_server.storage_options, "skip_instance_cache": True}
    )
    (after,) = connector.discover()
    assert after.media_id == before.media_id
    assert after.fingerprint != before.fingerprint


def test_keys_with_glob_characters_are_objects_not_patterns(s3_server: S3Server, tmp_path: Path) -> None:
    client = s3_server.client()
    client.create_bucket(Bucket="odd-names")
    for key in ("Talk [dQw4w9WgXcQ].wav", "What? Why.wav", "course [2019]/one.wav", "course 1.wav"):
        client.upload_file(str(write_tone(tmp_path / "tone.wav")), "odd-names", key)
    options = s3_server.storage_options

    def titles(url: str) -> list[str]:
        return [r.title for r in connector_for(url, storage_options=options).discover()]

    assert titles("s3://odd-names/Talk [dQw4w9WgXcQ].wav") == ["Talk [dQw4w9WgXcQ]"]
    assert titles("s3://odd-names/What? Why.wav") == ["What? Why"]
    connector = connector_for("s3://odd-names/What? Why.wav", storage_options=options)
    (ref,) = connector.discover()
    with connector.open(ref) as local:
        assert Path(local).read_bytes() == (tmp_path / "tone.wav").read_bytes()
    assert titles("s3://odd-names/course [2019]") == ["one"]
    assert titles("s3://odd-names/course [0-9].wav") == ["course 1"]  # no such key: a pattern


def test_prune_deletes_the_objects_a_prefix_no_longer_lists(s3_server: S3Server, tmp_path: Path) -> None:
    import numpy as np

    from clasp_ingest.pipeline import prune_unlisted
    from clasp_ingest.store import open_store
    from clasp_ingest.types import Segment

    client = s3_server.client()
    client.create_bucket(Bucket="pruned")
    for key in ("talks/a.wav", "talks/b.wav", "talks-old/c.wav"):
        client.upload_file(str(write_tone(tmp_path / "tone.wav")), "pruned", key)
    options = {**s3_server.storage_options, "skip_instance_cache": True}
    prefix, sibling = (
        connector_for(f"s3://pruned/{p}", storage_options=options) for p in ("talks", "talks-old")
    )
    assert prefix.prune_scope() == "s3://pruned/talks/"  # type: ignore[attr-defined]
    assert connector_for("s3://pruned/talks/*.wav", storage_options=options).prune_scope() is None  # type: ignore[attr-defined]
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection("m", 4)
        for ref in [*prefix.discover(), *sibling.discover()]:
            store.write_media(
                ref, "m", [([Segment(ref.media_id, 0, 0.0, 0.3)], np.eye(1, 4, dtype=np.float32))]
            )
        client.delete_object(Bucket="pruned", Key="talks/a.wav")
        fresh = connector_for("s3://pruned/talks", storage_options=options)
        assert prune_unlisted(store, fresh, list(fresh.discover())) == ["s3://pruned/talks/a.wav"]
        assert [item.source for item in store.media()] == [
            "s3://pruned/talks-old/c.wav",
            "s3://pruned/talks/b.wav",
        ]


def test_an_excluded_object_still_in_the_bucket_is_not_pruned(s3_server: S3Server, tmp_path: Path) -> None:
    """``--prune --exclude``: an excluded object is left as it is, stored or not; one deleted
    from the bucket is pruned, whatever the patterns."""
    import numpy as np

    from clasp_ingest.pipeline import took_listing
    from clasp_ingest.store import open_store
    from clasp_ingest.types import Segment

    client = s3_server.client()
    client.create_bucket(Bucket="excluded")
    for key in ("talks/a.wav", "talks/b.wav", "talks/c.wav"):
        client.upload_file(str(write_tone(tmp_path / "tone.wav")), "excluded", key)
    options = {**s3_server.storage_options, "skip_instance_cache": True}
    first = connector_for("s3://excluded/talks", storage_options=options)
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection("m", 4)
        for ref in first.discover():
            store.write_media(
                ref, "m", [([Segment(ref.media_id, 0, 0.0, 0.3)], np.eye(1, 4, dtype=np.float32))]
            )
        client.delete_object(Bucket="excluded", Key="talks/a.wav")
        fresh = connector_for("s3://excluded/talks", storage_options=options)
        pruned: list[str] = []
        excluded: list[str] = []
        kept = took_listing(
            store, fresh, list(fresh.discover()), pruned, exclude=("a.wav", "b.wav"), excluded=excluded
        )
        assert pruned == ["s3://excluded/talks/a.wav"] and excluded == ["s3://excluded/talks/b.wav"]
        assert [ref.uri for _, ref in kept] == ["s3://excluded/talks/c.wav"]
        assert [item.source for item in store.media()] == [
            "s3://excluded/talks/b.wav",
            "s3://excluded/talks/c.wav",
        ]


def test_an_object_added_after_a_listing_opens_in_the_same_process(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """fsspec keeps a filesystem, and the listings it made, for the life of the process: a worker
    that ingests the same prefix every hour must open what was added since its last run."""
    client = s3_server.client()
    client.create_bucket(Bucket="growing")
    client.upload_file(str(write_tone(tmp_path / "a.wav")), "growing", "in/a.wav")
    first = connector_for("s3://growing/in", storage_options=s3_server.storage_options)
    (a,) = first.discover()
    with first.open(a) as local:
        assert Path(local).stat().st_size > 0
    client.upload_file(str(write_tone(tmp_path / "b.wav", 0.7)), "growing", "in/b.wav")
    client.delete_object(Bucket="growing", Key="in/a.wav")
    later = connector_for("s3://growing/in", storage_options=s3_server.storage_options)
    (b,) = later.discover()
    assert b.title == "b"
    with later.open(b) as local:
        assert Path(local).read_bytes() == (tmp_path / "b.wav").read_bytes()
