"""Text → audio retrieval evaluation with the CLASP paper's protocols (``clasp-ingest eval``)."""

from __future__ import annotations

# the function, bound after its submodule (of the same name) is imported: the package attribute
# stays the function whichever of the two is imported first (no torch is imported here)
from clasp_ingest.evaluation.evaluate import evaluate
from clasp_ingest.evaluation.metrics import hits_at_1, macro_f1, mean_rank, mrr, ranks

__all__ = ["evaluate", "hits_at_1", "macro_f1", "mean_rank", "mrr", "ranks"]
