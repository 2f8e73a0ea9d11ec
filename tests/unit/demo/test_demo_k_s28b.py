"""``python -m clasp_ingest.demo --k 0`` is bad usage (exit 2) before the samples are ingested
(it ingested them all, then ended in a traceback)."""

from __future__ import annotations

import pytest

from clasp_ingest import demo


@pytest.mark.parametrize(
    "k", ["0", "-1", "x", "99999999999999999999"]
)  # the last: an OverflowError after ingesting
def test_a_bad_k_is_refused_before_any_work(k: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        demo.main(["--k", k])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --k: {k!r} is not a number of hits; give 1 to 10000" in err
    assert "loaded" not in capsys.readouterr().out
