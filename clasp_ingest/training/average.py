"""Average trained fusion heads into one ("model soup") or join them as an ensemble, then refit its centring.

Heads trained from the same seeded initialisation with different recipes (batch size,
learning rate) often average into a head better than either: clasp-mini v0.4 to v0.7 were
such means (see its model card). Floating-point tensors are averaged; integer ones
(BatchNorm's batch counters) are taken from the first head. With ``--ensemble`` the heads
are kept whole and run side by side, their unit outputs summed
(:class:`~clasp_ingest.model.fusion.EnsembleFusion`; clasp-mini v0.9): the model costs one
head more per member, which is little next to the backbones, and works where the weight
average does not (heads from different starts, or clasp-mini v0.9's attention-pooled ones).

The heads must share the backbones and the fusion shape. Centring depends on the head's
outputs, so it is refitted on a manifest's training rows (``--center``) — or dropped, as is
a query bank (fit a new one afterwards with ``clasp_ingest.training.querybank``). ``--weights``
makes a weighted mean: a fine-tuned model and the model it started from, e.g. ``--weights 0.3
0.7``, interpolate between the two (weight-space ensembling, "WiSE-FT"), which keeps more of the
start's abilities than the fine-tuned head alone. Averaged heads may be ensembles of one shape
(member *i* is averaged with member *i*). Language
directions removed in training (``train --language-dims``) must be the same in every head
and are kept.

    python -m clasp_ingest.training.average RUN_A RUN_B --out DIR --center train.jsonl \\
        --cache-dir feat --model-id clasp-mini-v0.7 [--ensemble | --weights 0.5 0.5]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ClaspIngestError, ConfigError
from clasp_ingest.log import get_logger

__all__ = ["average_heads", "main"]

log = get_logger("training.average")


def average_heads(
    model_dirs: Sequence[Path | str],
    out_dir: Path | str,
    *,
    center_manifest: Path | str | None = None,
    center_strength: float = 1.0,
    cache_dir: Path | str | None = None,
    model_id: str | None = None,
    device: str = "cpu",
    ensemble: bool = False,
    weights: Sequence[float] | None = None,
) -> Any:
    """Average the heads in ``model_dirs`` into the first one's model (or, with ``ensemble``,
    join them as an :class:`~clasp_ingest.model.fusion.EnsembleFusion`); save it to ``out_dir``.

    Only the first folder's backbones are loaded; the others contribute their head weights.
    """
    from dataclasses import replace

    import torch

    from clasp_ingest.model import load_model
    from clasp_ingest.model.calibration import Centering
    from clasp_ingest.model.clasp import load_saved_head, save_model
    from clasp_ingest.model.fusion import EnsembleFusion

    if center_manifest is not None:
        Centering.check_strength(center_strength)
    if len(model_dirs) < 2:
        raise ConfigError(f"averaging needs at least two trained heads, got {len(model_dirs)}")
    shares = _shares(weights, len(model_dirs), ensemble)
    first = load_model(str(model_dirs[0]), device=device)
    if ensemble and first.config.fusion.ensemble > 1:
        raise ConfigError(f"{model_dirs[0]} is an ensemble already; join single heads")
    heads = [first.fusion]
    basis = first.centering.basis if first.centering is not None else None
    for path in model_dirs[1:]:
        config, head, centering = load_saved_head(path)
        if config.fusion != first.config.fusion:
            raise ConfigError(
                f"{path}: its fusion head ({config.fusion}) differs from {model_dirs[0]}'s "
                f"({first.config.fusion}); only heads of one shape can be averaged"
            )
        ours = (first.config.speech, first.config.spectrogram, first.config.text, first.config.seed)
        if (config.speech, config.spectrogram, config.text, config.seed) != ours:
            raise ConfigError(
                f"{path}: its backbones differ from {model_dirs[0]}'s; average heads of one model"
            )
        if not _same_basis(basis, centering.basis if centering is not None else None):
            raise ConfigError(
                f"{path}: its language directions (train --language-dims) differ from "
                f"{model_dirs[0]}'s; average heads trained on one manifest with one setting"
            )
        heads.append(head.to(first.device, torch.float32).eval())
    if ensemble:
        first.fusion = EnsembleFusion(heads).eval()
        first.config = replace(first.config, fusion=replace(first.config.fusion, ensemble=len(heads)))
    else:
        states = [head.state_dict() for head in heads]
        share = torch.tensor(shares, dtype=torch.float32, device=first.device)
        averaged = {
            key: torch.einsum("h,h...->...", share, torch.stack([state[key].float() for state in states])).to(
                value.dtype
            )
            if value.is_floating_point()
            else value
            for key, value in states[0].items()
        }
        first.fusion.load_state_dict(averaged)
    first.centering = None
    if center_manifest is not None:
        first.centering = _fit_centering(first, Path(center_manifest), cache_dir, center_strength, basis)
    elif basis is not None:  # the language directions stay; only the means need a manifest
        first.centering = Centering.projection_only(basis)
    out = Path(out_dir)
    first.config = replace(first.config, searches=())  # new heads: queries of their own
    save_model(first, out, model_id=model_id)
    log.info("%s %d heads into %s", "joined" if ensemble else "averaged", len(model_dirs), out)
    return first


def _shares(weights: Sequence[float] | None, n: int, ensemble: bool) -> list[float]:
    """Each head's share of the mean: equal, or ``weights`` scaled to sum to 1."""
    if weights is None:
        return [1.0 / n] * n
    if ensemble:
        raise ConfigError(
            "--weights averages heads; an --ensemble keeps them whole, so give one or the other"
        )
    if len(weights) != n or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(
            f"--weights needs one non-negative weight per head ({n}), not all zero; got {list(weights)}"
        )
    return [w / sum(weights) for w in weights]


def _same_basis(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is b if a is None or b is None else bool(np.array_equal(a, b))


def _fit_centering(
    model: Any, manifest: Path, cache_dir: Path | str | None, strength: float, basis: Any
) -> Any:
    """The averaged head's centring, from the manifest's training rows (as ``train --center``)."""
    from clasp_ingest.model.calibration import Centering
    from clasp_ingest.training.features import FeatureCache, compute_features
    from clasp_ingest.training.manifest import read_manifest, select_split

    rows = select_split(read_manifest(manifest), "train")
    features = compute_features(
        model,
        [row.audio for row in rows],
        [row.text for row in rows],
        cache=FeatureCache(Path(cache_dir) if cache_dir is not None else None),
        skip_unreadable=True,
    )
    audio = model.embed_features(features.speech, features.spectrogram)
    return Centering.fit(audio, features.text, strength, basis)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clasp_ingest.training.average", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "heads", nargs="+", type=Path, help="trained model folders (clasp-ingest train --out)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the averaged head")
    parser.add_argument(
        "--center", type=Path, default=None, help="manifest whose training rows refit the centring"
    )
    parser.add_argument(
        "--center-strength", type=float, default=1.0, help="share (0-1] of the means subtracted"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache of that manifest's clips")
    parser.add_argument(
        "--model-id", default=None, help="id of the averaged model (default: the first head's)"
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="keep the heads whole and sum their unit outputs instead of averaging weights",
    )
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=None,
        help="one weight per head for a weighted mean (scaled to sum to 1), e.g. a fine-tuned "
        "model and the model it started from",
    )
    args = parser.parse_args(argv)
    try:
        average_heads(
            args.heads,
            args.out,
            center_manifest=args.center,
            center_strength=args.center_strength,
            cache_dir=args.cache_dir,
            model_id=args.model_id,
            ensemble=args.ensemble,
            weights=args.weights,
        )
    except (ClaspIngestError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'joined' if args.ensemble else 'averaged'} {len(args.heads)} heads into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
