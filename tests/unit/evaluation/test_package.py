"""``clasp_ingest.evaluation.evaluate`` is the function, whichever import comes first."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "first",
    ["import clasp_ingest.evaluation", "import clasp_ingest.evaluation.evaluate",
     "from clasp_ingest.evaluation.evaluate import evaluate"],
)  # fmt: skip
def test_evaluate_stays_the_function(first: str) -> None:
    check = (
        f"{first}\nimport clasp_ingest.evaluation as e\nfrom clasp_ingest.evaluation import evaluate\n"
        "e.evaluate; e.evaluate\nassert callable(evaluate) and callable(e.evaluate), (evaluate, e.evaluate)\n"
    )
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
