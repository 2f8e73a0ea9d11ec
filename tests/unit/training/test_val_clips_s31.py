"""The validation numbers ``train`` writes count clips as ``eval`` does: rows that name one audio
file (several captions of one clip) are one candidate. With one candidate per row a clip's
captions tied with each other, and missed: a val split of 4 clips with 2 captions each read
Hits@1 0 in ``metrics.json`` and 0.25 in ``eval --split val`` (reviewer 1, session 31)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clasp_ingest.evaluation.evaluate import evaluate
from clasp_ingest.model.clasp import load_model
from clasp_ingest.training.train import TrainOptions, prepare_head, train_fusion

FAST = TrainOptions(lr=3e-3, batch_size=6, val_batch_size=3, max_epochs=1, patience=1, device="cpu")


def test_val_metrics_count_a_clip_with_two_captions_once(
    tiny_model: Any, tone_manifest: Path, tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in tone_manifest.read_text(encoding="utf-8").splitlines()]
    clips = tone_manifest.parent
    val = [row for row in rows if row["split"] == "val"]
    assert len(val) >= 2
    twins = [{**row, "text": f"{row['text']} again"} for row in val]  # a second caption of each clip
    rows = [{**row, "audio": str(clips / row["audio"])} for row in rows + twins]
    manifest = tmp_path / "twins.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    prepare_head(tiny_model, seed=0)
    out = tmp_path / "run"
    train_fusion(tiny_model, manifest, out, FAST)
    written = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["val_retrieval"]
    evaluated = evaluate(load_model(str(out), device="cpu"), manifest, split="val", threshold=0.5)
    assert evaluated["n_clips"] == len(val) and evaluated["n_queries"] == 2 * len(val)
    for key in ("hits@1", "mrr", "mean_rank", "macro_f1"):
        assert abs(written[key] - evaluated[key]) < 1e-9, (key, written, evaluated)
