"""Fixtures for end-to-end training tests: numpy tone clips and the real tiny-random model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SAMPLE_RATE = 16_000
N_CLIPS = 12  # 6 train, 3 val, 3 test


def write_tone(path: Path, freq: float, seconds: float, seed: int) -> None:
    import soundfile as sf

    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    noise = np.random.default_rng(seed).standard_normal(len(t))
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * noise
    sf.write(path, wave.astype(np.float32), SAMPLE_RATE)


def _split(i: int) -> str:
    return "train" if i < 6 else "val" if i < 9 else "test"


@pytest.fixture(scope="session")
def tone_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL manifest of tone clips (relative paths) with train/val/test splits."""
    root = tmp_path_factory.mktemp("tones")
    (root / "clips").mkdir()
    rows = []
    for i in range(N_CLIPS):
        write_tone(root / "clips" / f"{i}.wav", 220 + 110 * i, 0.4 + 0.05 * i, seed=i)
        text = f"tone {i} {'abcdefghijklmnop'[i] * 3}"
        rows.append({"audio": f"clips/{i}.wav", "text": text, "language": "en", "split": _split(i)})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


@pytest.fixture
def tiny_model() -> Any:
    """A freshly loaded ``tiny-random`` ClaspModel (training mutates its head)."""
    from clasp_ingest.model import load_model

    return load_model("tiny-random", device="cpu")
