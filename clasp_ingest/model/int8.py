"""The spectrogram CNN in int8 for the ONNX engine: static quantization from shipped ranges.

EfficientNet-Lite0 on 224×224 log-mel images is the larger half of clasp-mini's CPU time after
Whisper. ONNX Runtime runs it about 2.5× faster with int8 weights (per output channel) and int8
activations (``QOperator`` format: ``QLinearConv`` kernels), which needs each activation's range.
Those ranges come from real speech once (:func:`calibrate`, the ``train`` split of the fillets
and festvox manifests, ``python -m clasp_ingest.model.int8``) and ship as a small JSON file (the
preset's ``spectrogram.options.int8_ranges``), so every machine quantizes the same graph to the
same bytes without any audio at hand (:func:`quantize`). The CNN is frozen in every clasp-mini
version, so one ranges file serves them all.

The torch engine keeps the float32 CNN. Vectors of the two engines differ a little (the card
gives the measured cosine and HITS@1 on the validation sets); both are the same model.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger

__all__ = ["calibrate", "quantize", "ranges_cover"]

logger = get_logger("model.int8")


def _options() -> dict[str, Any]:
    """One set of quantizer settings for calibrating and quantizing (the ranges cache checks it)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    return {
        "quant_format": QuantFormat.QOperator,
        "per_channel": True,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "calibrate_method": CalibrationMethod.MinMax,
    }


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep ORT's quantizer from logging a warning (with a shape dump) through the root logger
    for every tensor of the TF-style padding arithmetic it leaves in float, and from installing a
    root handler to do so (``logging.warning`` does when the root has none)."""
    guard = logging.NullHandler()
    logging.root.addHandler(guard)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        logging.root.removeHandler(guard)


def _prepared(fp32: Path, folder: Path) -> Path:
    """The graph with inferred shapes, as ORT's quantizer wants it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = folder / "prepared.onnx"
    quant_pre_process(str(fp32), str(out))
    return out


def ranges_cover(model: Path, ranges: Path) -> list[str]:
    """Names of the Conv inputs and outputs of ``model`` that ``ranges`` lacks (empty: it fits)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    initialisers = {t.name for t in graph.initializer}
    known = set(json.loads(ranges.read_text(encoding="utf-8")).get("data", {}))
    wanted = {
        name
        for node in graph.node
        if node.op_type == "Conv"
        for name in (node.input[0], node.output[0])
        if name not in initialisers
    }
    return sorted(wanted - known)


def quantize(fp32: Path, out: Path, ranges: Path) -> Path:
    """Write the int8 version of the CNN at ``fp32`` to ``out``, with activation ``ranges``.

    Raises ``ModelLoadError`` when the ranges were made for another graph (a torch version that
    exports other tensor names): the caller then keeps the float32 CNN.
    """
    from onnxruntime.quantization import quantize_static

    with tempfile.TemporaryDirectory(prefix="clasp-int8-") as tmp, _quiet():
        prepared = _prepared(fp32, Path(tmp))
        missing = ranges_cover(prepared, ranges)
        if missing:
            raise ModelLoadError(
                f"the int8 ranges {ranges} do not fit this export of the CNN ({len(missing)} tensors "
                f"missing, e.g. {missing[0]!r}); rebuild them with python -m clasp_ingest.model.int8"
            )
        quantize_static(str(prepared), str(out), None, calibration_cache_path=ranges, **_options())
    return out


class _Images:
    """ORT's ``CalibrationDataReader``: batches of log-mel images."""

    def __init__(self, images: Iterator[np.ndarray], batch: int = 8) -> None:
        self._images = images
        self._batch = batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = [image for _, image in zip(range(self._batch), self._images, strict=False)]
        return {"images": np.stack(chunk).astype(np.float32)} if chunk else None


def calibrate(fp32: Path, images: Iterator[np.ndarray], out: Path) -> Path:
    """Record the activation ranges of the CNN at ``fp32`` on ``images`` into ``out`` (JSON)."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    CalibrationDataReader.register(_Images)
    with tempfile.TemporaryDirectory(prefix="clasp-int8-") as tmp, _quiet():
        prepared = _prepared(fp32, Path(tmp))
        out.unlink(missing_ok=True)  # ORT reuses an existing cache instead of calibrating
        quantize_static(
            str(prepared), str(Path(tmp) / "int8.onnx"), _Images(images), calibration_cache_path=out,
            **_options(),
        )  # fmt: skip
    # ORT writes its keys unordered, in a file readable by its owner only
    ranges = json.loads(out.read_text(encoding="utf-8"))
    out.write_text(json.dumps(ranges, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    out.chmod(0o644)
    return out


def _clips(manifests: Sequence[Path], split: str, per_manifest: int, seed: int) -> list[Path]:
    from clasp_ingest.training.manifest import read_manifest

    rng = random.Random(seed)
    chosen: list[Path] = []
    for manifest in manifests:
        rows = [row for row in read_manifest(manifest) if row.split == split]
        chosen += [Path(row.audio) for row in rng.sample(rows, min(per_manifest, len(rows)))]
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clasp_ingest.model.int8 MANIFEST... --out FILE``: calibrate a model's CNN."""
    parser = argparse.ArgumentParser(description="Activation ranges for the int8 spectrogram CNN.")
    parser.add_argument("manifests", type=Path, nargs="+", help="speech manifests (JSONL)")
    parser.add_argument("--out", type=Path, required=True, help="ranges file (JSON) to write")
    parser.add_argument("--model", default="clasp-mini-spec", help="preset or model folder (its CNN)")
    parser.add_argument("--split", default="train", help="rows of this split only (default train)")
    parser.add_argument("--per-manifest", type=int, default=64, help="clips drawn from each manifest")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from clasp_ingest.model.base import SAMPLE_RATE
    from clasp_ingest.model.logmel import log_mel_image, mel_filterbank
    from clasp_ingest.model.onnx_engine import CNN_FILE, export_onnx, exported_logmel
    from clasp_ingest.training.features import load_waveform

    clips = _clips(args.manifests, args.split, args.per_manifest, args.seed)
    with tempfile.TemporaryDirectory(prefix="clasp-export-") as tmp:
        folder = export_onnx(args.model, Path(tmp), int8=False)
        o = exported_logmel(folder)
        if o is None:
            parser.error(f"model {args.model!r} has no spectrogram CNN to calibrate")
        bank = mel_filterbank(o.n_fft, o.n_mels, o.f_min, o.f_max, SAMPLE_RATE)
        images = (log_mel_image(load_waveform(path), o, bank) for path in clips)
        calibrate(folder / CNN_FILE, images, args.out)
    print(f"{len(clips)} clips -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
