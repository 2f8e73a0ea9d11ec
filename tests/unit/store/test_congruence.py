"""The same operations give the same results on Qdrant Edge and qdrant-client (as
qdrant-client checks its local engine against the server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clasp_ingest.store import QdrantStore, SearchFilter, open_store
from clasp_ingest.types import SpanHit
from tests.unit.store.conftest import DIM, MODEL, make_media, unit_rows


def _key(hits: list[SpanHit]) -> list[tuple[str, float, float, str]]:
    return [(h.media_id, h.start_s, h.end_s, h.url) for h in hits]


def _span(meta: dict[str, object]) -> tuple[str, str, float, float, str]:
    return (str(meta["media_id"]), str(meta["version"]), float(meta["start_s"]), float(meta["end_s"]),  # type: ignore[arg-type]
            str(meta["state"]))  # fmt: skip


def _scenario(store: QdrantStore) -> dict[str, object]:
    store.ensure_collection(MODEL, DIM)
    items = [
        make_media(f"file:///c{i}.wav", "v1", 25, seed=i, language="de" if i < 3 else "es") for i in range(6)
    ]
    for item in items:
        store.write_media(item.ref, MODEL, item.batches())
    changed = make_media("file:///c1.wav", "v2", 9, seed=99, offset_s=1.0, language="de")
    store.write_media(changed.ref, MODEL, changed.batches())
    store.delete_source("file:///c5.wav")
    queries = unit_rows(np.random.default_rng(7), 5)
    out: dict[str, object] = {
        "count": store.count(),
        # each write has ids of its own (a random write id): compare what the points hold
        "points": sorted(_span(p.payload["metadata"]) for p in store.iter_points(batch_size=17)),
    }
    filters = [
        None,
        SearchFilter(language="es"),
        SearchFilter(media_id=items[0].ref.media_id, start_s_gte=10.0),
    ]
    for qi, q in enumerate(queries):
        for fi, f in enumerate(filters):
            hits = store.search(q, k=7, filters=f)
            out[f"search{qi}.{fi}"] = _key(hits)
            out[f"scores{qi}.{fi}"] = [h.score for h in hits]
        out[f"groups{qi}"] = _key(store.search_groups(q, k=3, group_size=2))
        out[f"threshold{qi}"] = _key(store.search(q, k=100, score_threshold=0.2))
    out["has"] = [store.has_media(changed.ref.media_id, v) for v in ("v1", "v2")]
    return out


def test_edge_and_client_agree(tmp_path: Path) -> None:
    with open_store(path=tmp_path / "edge") as edge, open_store(url=":memory:") as client:
        a, b = _scenario(edge), _scenario(client)
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("scores"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=key)  # type: ignore[arg-type]
        else:
            assert a[key] == b[key], key
    assert a["count"] == 25 * 4 + 9 and a["has"] == [False, True]
