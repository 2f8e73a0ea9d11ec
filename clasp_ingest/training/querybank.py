"""Fit a trained model's query bank (hubness correction, :class:`~clasp_ingest.model.clasp.QueryBank`).

The bank is ``--size`` training captions drawn at random from the manifest's ``train`` rows,
as the model's own (centred) text vectors; ``mean`` is the average hubness of
``--audio-sample`` training clips. Both come through the feature cache, so after training
on the same manifest and cache nothing needs decoding again. Run it last: averaging heads
(``clasp_ingest.training.average``) refits the centring and drops the bank.

    python -m clasp_ingest.training.querybank MODEL_DIR --manifest train.jsonl \\
        --cache-dir feat --out DIR [--size 6000 --k 20 --beta 0.75]

The saved model's vectors have one more coordinate than the text encoder's (see
``QueryBank``), so collections made with the model without a bank must be re-ingested;
its model id should change too (``--model-id``).

``--add-captions M2`` keeps the model's bank and adds every distinct caption of ``M2``'s train
rows to it (no draw; ``--size`` unused, ``k``/``beta`` as given), then refits ``mean`` over
``--audio-sample`` clips of ``--manifest``'s train rows: a bank fitted on one domain (clasp-mini's
synthetic clips) learns the hubs of another (recorded speech, clasp-mini v1.1) without losing
its own captions. Clips' hubness changes, so the model id must change too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ClaspIngestError, ConfigError
from clasp_ingest.log import get_logger

__all__ = ["DEFAULT_BETA", "DEFAULT_K", "DEFAULT_SIZE", "fit_query_bank", "main"]

log = get_logger("training.querybank")

#: Defaults chosen for clasp-mini v0.9 on validation data (its model card).
DEFAULT_SIZE = 6000
DEFAULT_K = 20
DEFAULT_BETA = 0.75
DEFAULT_AUDIO_SAMPLE = 2000


def fit_query_bank(
    model: Any,
    manifest: Path | str,
    *,
    cache_dir: Path | str | None = None,
    size: int = DEFAULT_SIZE,
    k: int = DEFAULT_K,
    beta: float = DEFAULT_BETA,
    scale: float = 0.5,
    audio_sample: int = DEFAULT_AUDIO_SAMPLE,
    seed: int = 0,
    add_captions: Path | str | None = None,
) -> Any:
    """Give ``model`` (a ``ClaspModel``) a query bank from ``manifest``'s training rows; return it.

    A bank the model already has is replaced. Captions and clips are drawn with ``seed``.
    With ``add_captions`` (a manifest) the model's bank is kept and every distinct caption of
    that manifest's training rows is added; only the clips for ``mean`` are drawn.
    """
    from clasp_ingest.model.calibration import Centering, QueryBank
    from clasp_ingest.training.features import FeatureCache, compute_features, text_features
    from clasp_ingest.training.manifest import read_manifest, select_split

    if size < 1 or audio_sample < 1:
        raise ConfigError(f"size and audio_sample must be >= 1, got {size}, {audio_sample}")
    rows = select_split(read_manifest(manifest), "train")
    if not rows:
        raise ConfigError(f"{manifest}: no training rows to draw a query bank from")
    rng = np.random.default_rng(seed)
    kept = model.centering.bank if model.centering is not None else None
    if add_captions is not None:
        if kept is None:
            raise ConfigError(f"--add-captions adds to the model's query bank; {model.model_id!r} has none")
        chosen = sorted({row.text for row in select_split(read_manifest(add_captions), "train")})
        if not chosen:
            raise ConfigError(f"{add_captions}: no training rows to take captions from")
        available = len(kept.texts) + len(chosen)
    else:
        texts = sorted({row.text for row in rows})
        chosen = [texts[i] for i in sorted(rng.choice(len(texts), min(size, len(texts)), replace=False))]
        available = len(chosen)
    if k > available:
        raise ConfigError(f"k={k} needs at least {k} bank captions; {manifest} gives {available}")
    clips = [rows[i] for i in sorted(rng.choice(len(rows), min(audio_sample, len(rows)), replace=False))]
    cache = FeatureCache(Path(cache_dir) if cache_dir is not None else None)
    base = model.centering
    if base is not None and base.bank is not None:
        model.centering = base = replace(base, bank=None)
    if base is None:  # no centring: the bank alone, with zero means
        zeros = np.zeros(model.config.dim, np.float32)
        model.centering = base = Centering(zeros, zeros.copy())
    features = compute_features(
        model, [row.audio for row in clips], [row.text for row in clips], cache=cache, skip_unreadable=True
    )
    audio = model.embed_features(features.speech, features.spectrogram)
    bank_text = model.embed_text_features(text_features(model, chosen, cache))
    if add_captions is not None and kept is not None:
        bank_text = np.concatenate([kept.texts.astype(np.float32), np.asarray(bank_text, np.float32)])
    probe = QueryBank(bank_text, k, beta, 0.0, scale)
    mean = float(probe.hubness(audio).mean())
    model.centering = replace(base, bank=replace(probe, mean=mean))
    model.config = replace(model.config, query_bank=True)
    log.info(
        "query bank: %d captions, k=%d, beta=%g, mean hubness %.4f over %d clips",
        len(bank_text),
        k,
        beta,
        mean,
        len(audio),
    )
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clasp_ingest.training.querybank", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model", help="trained model folder (clasp-ingest train --out) or preset")
    parser.add_argument("--manifest", type=Path, required=True, help="training manifest (its train rows)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the model with its bank")
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache of the manifest's clips")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="captions in the bank")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="nearest captions averaged per clip")
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA, help="weight of the correction")
    parser.add_argument("--audio-sample", type=int, default=DEFAULT_AUDIO_SAMPLE, help="clips for the mean")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    parser.add_argument(
        "--add-captions",
        type=Path,
        default=None,
        help="keep the model's bank and add every caption of this manifest's train rows",
    )
    parser.add_argument("--model-id", default=None, help="id of the saved model (default: unchanged)")
    args = parser.parse_args(argv)
    try:
        from clasp_ingest.model import load_model
        from clasp_ingest.model.clasp import save_model

        model = fit_query_bank(
            load_model(args.model),
            args.manifest,
            cache_dir=args.cache_dir,
            size=args.size,
            k=args.k,
            beta=args.beta,
            audio_sample=args.audio_sample,
            seed=args.seed,
            add_captions=args.add_captions,
        )
        save_model(model, args.out, model_id=args.model_id)
    except (ClaspIngestError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"query bank of {len(model.centering.bank.texts)} captions written with the model to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
