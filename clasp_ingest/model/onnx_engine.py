"""CPU inference without torch: a CLASP model's networks exported once to ONNX, run by ONNX Runtime.

For a model whose speech branch is CTranslate2 Whisper and whose spectrogram CNN is
EfficientNet-Lite0 (clasp-mini-spec) or absent (backend ``none``: clasp-mini, clasp-mini-real),
everything torch does at inference is at most two small networks: the CNN and the fusion
head. :func:`load_onnx_model` exports them with torch the first time
(a few seconds, checked against the torch model on probe clips) into
``~/.cache/clasp-ingest/onnx/<model id>-<key>/`` (``key``: a hash of the head's weights, the
CNN's weights, the config and this module's export version) and from then on loads them
with ONNX Runtime, which with CTranslate2, numpy (:mod:`~clasp_ingest.model.logmel`) and the
text encoder makes a model that starts in well under a second and never imports torch.
With the float32 CNN, vectors equal the torch model's to about 1e-5; a model that names int8
ranges (clasp-mini-spec: ``spectrogram.options.int8_ranges``) runs its CNN in int8
(:mod:`~clasp_ingest.model.int8`, about 2.5× faster), which moves vectors a little (cosine to
torch's 0.994 or more on the demo clips; tests/unit/model_mini/test_onnx_engine.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.backends import build_component, factory_path
from clasp_ingest.model.base import (
    SAMPLE_RATE,
    SpeechEncoder,
    check_waveforms,
    default_threads,
    pad_frames,
    usable_cores,
)
from clasp_ingest.model.config import ModelConfig, Runtime
from clasp_ingest.model.logmel import LogMelOptions, log_mel_image, mel_filterbank
from clasp_ingest.model.query import QueryModel, load_query_model, model_source, resolve_model_config

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "EXPORT_VERSION",
    "OnnxClaspModel",
    "OnnxSpectrogramEncoder",
    "export_onnx",
    "load_onnx_model",
    "onnx_capable",
]

logger = get_logger("model.onnx")

#: Bump when the exported graphs change, so caches built by older code are not reused.
EXPORT_VERSION = 2
_SPEECH_BACKENDS = frozenset({"ct2-whisper"})
#: A speech-only model's spectrogram backend: no CNN is exported, its feature is zeros.
_NO_SPECTROGRAM = factory_path("spectrogram", "none")
_SPECTROGRAM_BACKENDS = frozenset({factory_path("spectrogram", "lite0"), _NO_SPECTROGRAM})
_HEAD, _META = "head.onnx", "meta.json"
#: The exported CNN (float32) and its int8 version (when the model names int8 ranges).
CNN_FILE, CNN_INT8_FILE = "spectrogram.onnx", "spectrogram.int8.onnx"
#: Largest difference between torch and ONNX vectors accepted when an export is checked.
_TOLERANCE = 1e-3
#: Smallest cosine between a probe's vector with the int8 CNN and the torch model's.
_INT8_MIN_COSINE = 0.98
#: Clips per run of the head: it pads a run's frames to its longest clip, so runs take clips
#: of similar length (sorted), few at a time; a large batch then costs no padding.
HEAD_RUN = 16


def onnx_capable(config: ModelConfig) -> bool:
    """Whether the model runs on this engine: a CTranslate2 speech branch and a Lite0 CNN or none."""
    spectrogram = factory_path("spectrogram", config.spectrogram.backend)
    return config.speech.backend in _SPEECH_BACKENDS and spectrogram in _SPECTROGRAM_BACKENDS


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxSpectrogramEncoder:
    """``SpectrogramEncoder``: numpy log-mel images through the exported CNN (pooled features).

    ``int8``: whether ``session`` runs the int8 CNN (:mod:`~clasp_ingest.model.int8`)."""

    def __init__(
        self, session: onnxruntime.InferenceSession, dim: int, options: LogMelOptions, *, int8: bool = False
    ) -> None:
        self.session = session
        self.options = options
        self.int8 = int8
        self._dim = dim
        self._filterbank = mel_filterbank(
            options.n_fft, options.n_mels, options.f_min, options.f_max, SAMPLE_RATE
        )

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(waveforms), self.dim), dtype=np.float32)
        size = self.options.batch_size
        for start in range(0, len(waveforms), size):
            images = np.stack(
                [log_mel_image(w, self.options, self._filterbank) for w in waveforms[start : start + size]]
            )
            out[start : start + len(images)] = self.session.run(None, {"images": images})[0]
        return out


class OnnxClaspModel:
    """An ``AudioTextEncoder`` on ONNX Runtime: same vectors as the torch ``ClaspModel``.

    ``parallel_branches``: the spectrogram branch (log-mel images and the CNN) runs on a helper
    thread while the speech branch (CTranslate2) runs on the caller's; the vectors are the same.
    Default: when the process may use two cores or more and the model has a CNN
    (``spectrogram`` None: a speech-only model, whose spectrogram feature is zeros). Both
    engines release the GIL; on 2 cores CTranslate2 gains nothing from a second thread inside a
    batch of a few seconds' clips, but runs two one-thread batches at once (``inter_threads``),
    which with this thread and the decoding thread keeps both cores busy
    (``bench/bench_ingest_vs_asr.py``; README, "Engines and start-up").
    """

    #: The preset name or model folder it was loaded from (:func:`load_onnx_model` sets it).
    source: str | None = None

    def __init__(
        self,
        query: QueryModel,
        speech: SpeechEncoder,
        spectrogram: OnnxSpectrogramEncoder | None,
        head: onnxruntime.InferenceSession,
        *,
        parallel_branches: bool | None = None,
    ) -> None:
        self.query = query
        self.config = query.config
        self.speech = speech
        self.spectrogram = spectrogram
        self.head = head
        if spectrogram is None:
            parallel_branches = False
        elif parallel_branches is None:
            parallel_branches = usable_cores() >= 2
        self._branch = (
            ThreadPoolExecutor(1, thread_name_prefix="clasp-spectrogram") if parallel_branches else None
        )

    @property
    def parallel_branches(self) -> bool:
        return self._branch is not None

    def query_sample(self) -> np.ndarray | None:
        """The query bank as query vectors (:meth:`Centering.query_sample`), or None."""
        return None if self.query.centering is None else self.query.centering.query_sample()

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @property
    def dim(self) -> int:
        return self.query.dim

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """16 kHz mono float32 waveforms → (n, dim) unit vectors."""
        items = check_waveforms(waveforms)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        images: Future[np.ndarray] | None = None
        if self._branch is not None:
            images = self._branch.submit(self._spectrogram_features, items)
        try:
            speech: np.ndarray | list[np.ndarray]
            if self.config.fusion.frames:
                speech = self.speech.encode_frames(items)  # type: ignore[attr-defined]
            else:
                speech = self.speech.encode(items)
        except BaseException:
            if images is not None:
                images.cancel()  # if it has not started; a running one ends on its own
            raise
        spec = images.result() if images is not None else self._spectrogram_features(items)
        fused = self._run_head(speech, spec)
        centering = self.query.centering
        return centering.apply(fused, "audio") if centering is not None else fused

    def _run_head(self, speech: np.ndarray | list[np.ndarray], spec: np.ndarray) -> np.ndarray:
        """The head over pooled features, or over each clip's frames in runs of ``HEAD_RUN``
        clips of similar length (zero-padded to the run's longest, which the pool masks)."""
        if isinstance(speech, np.ndarray):
            return np.asarray(self.head.run(None, {"speech": speech, "spec": spec})[0])
        order = sorted(range(len(speech)), key=lambda i: len(speech[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), HEAD_RUN):
            rows = order[start : start + HEAD_RUN]
            frames = pad_frames([speech[i] for i in rows])
            fused = self.head.run(None, {"speech": frames, "spec": spec[rows]})[0]
            if out is None:
                out = np.empty((len(speech), fused.shape[1]), dtype=fused.dtype)
            out[rows] = fused
        assert out is not None  # encode_audio returns early for no clips
        return out

    def _spectrogram_features(self, items: list[np.ndarray]) -> np.ndarray:
        if self.spectrogram is None:
            return np.zeros((len(items), self.config.fusion.spec_dim), dtype=np.float32)
        return self.spectrogram.encode(items)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, dim) unit query vectors."""
        return self.query.encode_text(texts)

    def __repr__(self) -> str:
        cnn = "none" if self.spectrogram is None else "int8" if self.spectrogram.int8 else "float32"
        return f"OnnxClaspModel({self.model_id!r}, dim={self.dim}, cnn={cnn})"


# --------------------------------------------------------------------------- export and cache


def _digest(config: ModelConfig, saved_dir: Path | None, model_dir: Path | None) -> str:
    from clasp_ingest.model.assets import LITE0_SHA256, file_sha256
    from clasp_ingest.model.query import weights_file

    weights = weights_file(config, saved_dir, model_dir)
    head = file_sha256(weights) if weights is not None else f"seed {config.seed}"
    ranges = int8_ranges(config, model_dir)
    int8 = file_sha256(ranges) if ranges is not None else "float32"
    text = f"v{EXPORT_VERSION}\n{config.to_json()}\n{head}\n{LITE0_SHA256}\n{int8}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_root() -> Path:
    from clasp_ingest.model.assets import default_cache_dir

    return default_cache_dir() / "onnx"


def int8_ranges(config: ModelConfig, model_dir: Path | None = None) -> Path | None:
    """The activation ranges file for the int8 CNN (``spectrogram.options.int8_ranges``), if any."""
    from clasp_ingest.model.hub import resolve_file

    source = config.spectrogram.options.get("int8_ranges")
    return resolve_file(str(source), model_dir) if source else None


def export_onnx(
    name_or_path: str, out_dir: Path, *, model_dir: Path | None = None, int8: bool = True
) -> Path:
    """Export the head and the CNN of a model (loaded with torch) to ``out_dir`` and check them.

    Needs torch and the ``onnx`` package. Writes ``head.onnx``, ``spectrogram.onnx`` (not for a
    speech-only model) and ``meta.json``; with ``int8`` and a model that names int8 ranges, also the int8 CNN
    (:mod:`~clasp_ingest.model.int8`), unless the ranges do not fit this export (then a warning
    and the float32 CNN). Raises ``ModelLoadError`` when the exported graphs disagree with torch.
    """
    import torch

    from clasp_ingest.model.clasp import load_model

    model = load_model(name_or_path, device="cpu", model_dir=model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fusion = model.config.fusion
    speech = torch.randn(2, 7, fusion.speech_dim) if fusion.frames else torch.randn(2, fusion.speech_dim)
    speech_axes = {0: "n", 1: "frames"} if fusion.frames else {0: "n"}
    head = _unit_head(model.fusion).eval()
    _export(head, (speech, torch.randn(2, fusion.spec_dim)), out_dir / _HEAD, ["speech", "spec"], "fused",
            {"speech": speech_axes, "spec": {0: "n"}, "fused": {0: "n"}})  # fmt: skip
    meta: dict[str, Any] = {"model_id": model.model_id, "export_version": EXPORT_VERSION, "logmel": None}
    if factory_path("spectrogram", model.config.spectrogram.backend) != _NO_SPECTROGRAM:
        options: LogMelOptions = model.spectrogram.options  # type: ignore[attr-defined]
        images = torch.randn(2, 3, *options.image_size)
        cnn = model.spectrogram.cnn  # type: ignore[attr-defined]
        _export(
            cnn, (images,), out_dir / CNN_FILE, ["images"], "features",
            {"images": {0: "n"}, "features": {0: "n"}},
        )  # fmt: skip
        meta["logmel"] = asdict(options)
    (out_dir / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    probes = _probes()
    reference = model.encode_audio(probes)
    _check_against(model, out_dir, probes, reference)
    ranges = int8_ranges(model.config, model_dir) if int8 and meta["logmel"] else None
    if ranges is not None and _quantized(out_dir, ranges):
        _check_int8(model, out_dir, probes, reference)
    return out_dir


def _quantized(out_dir: Path, ranges: Path) -> bool:
    from clasp_ingest.model.int8 import quantize

    try:
        quantize(out_dir / CNN_FILE, out_dir / CNN_INT8_FILE, ranges)
    except ModelLoadError as exc:
        logger.warning("keeping the float32 CNN: %s", exc)
        return False
    except (ImportError, TypeError, ValueError, RuntimeError) as exc:  # an ONNX Runtime without
        # quantize_static(calibration_cache_path=...) (before 1.27) or its quantization tools
        logger.warning(
            "keeping the float32 CNN: this ONNX Runtime cannot quantize it from stored ranges (%s); "
            "onnxruntime>=1.27 can", exc,
        )  # fmt: skip
        (out_dir / CNN_INT8_FILE).unlink(missing_ok=True)
        return False
    return True


def _unit_head(fusion: Any) -> Any:
    """The fusion head followed by the L2 norm ``ClaspModel`` applies to its output."""
    import torch

    class UnitHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fusion = fusion

        def forward(self, speech: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(self.fusion(speech, spec).to(torch.float32), dim=-1)

    return UnitHead()


def _export(
    module: Any, args: tuple[Any, ...], path: Path, inputs: list[str], output: str, axes: dict[str, Any]
) -> None:
    import torch

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module, args, str(path), dynamo=False, input_names=inputs, output_names=[output],
            dynamic_axes=axes, opset_version=17,
        )  # fmt: skip


def _probes() -> list[np.ndarray]:
    """A few clips to compare exported graphs with torch on (a tone, two noises)."""
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE * 3) / SAMPLE_RATE
    return [
        (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32),
        (0.05 * rng.standard_normal(SAMPLE_RATE * 5)).astype(np.float32),
        (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32),
    ]


def _check_against(model: Any, out_dir: Path, probes: list[np.ndarray], reference: np.ndarray) -> None:
    """Compare the exported model with the torch one (its ``reference`` vectors of ``probes``)."""
    onnx_model = _assemble(model.query, model.speech, out_dir, threads=1, int8=False)
    worst = float(np.abs(onnx_model.encode_audio(probes) - reference).max())
    if not worst <= _TOLERANCE:  # NaN vectors of both engines differ by NaN, which is not > 1e-3
        raise ModelLoadError(
            f"the ONNX export of {model.model_id!r} differs from the torch model by {worst:.2e} "
            f"(> {_TOLERANCE}); use engine 'torch' (CLASP_ENGINE=torch)"
        )
    logger.info("ONNX export of %s checked: largest difference to torch %.1e", model.model_id, worst)


def _check_int8(model: Any, out_dir: Path, probes: list[np.ndarray], reference: np.ndarray) -> None:
    """Compare the vectors made with the int8 CNN with the torch model's ``reference`` ones."""
    onnx_model = _assemble(model.query, model.speech, out_dir, threads=1, int8=True)
    cosine = (onnx_model.encode_audio(probes) * reference).sum(axis=1)
    if not float(cosine.min()) >= _INT8_MIN_COSINE:  # NaN too
        (out_dir / CNN_INT8_FILE).unlink()
        logger.warning(
            "keeping the float32 CNN: with the int8 one a probe's vector has cosine %.3f to torch's "
            "(< %s)", float(cosine.min()), _INT8_MIN_COSINE,
        )  # fmt: skip
        return
    logger.info("int8 CNN of %s checked: smallest cosine to torch %.4f", model.model_id, cosine.min())


def exported_logmel(folder: Path) -> LogMelOptions | None:
    """The log-mel image options an export was made with (its ``meta.json``); None: no CNN.
    A ``meta.json`` that cannot be read is a :class:`ModelLoadError` naming it."""
    meta = folder / _META
    try:
        logmel = json.loads(meta.read_text(encoding="utf-8"))["logmel"]
        if logmel is None:
            return None
        for key in ("image_size", "mean", "std"):
            logmel[key] = tuple(logmel[key])
        return LogMelOptions(**logmel)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise ModelLoadError(f"the ONNX export's {str(meta)!r} cannot be read ({exc!r})") from exc


def _assemble(
    query: QueryModel, speech: SpeechEncoder, folder: Path, *, threads: int, int8: bool = True
) -> OnnxClaspModel:
    """The model from an export folder; its int8 CNN when there is one and ``int8``."""
    options = exported_logmel(folder)
    cnn = None
    if options is not None:
        int8 = int8 and (folder / CNN_INT8_FILE).is_file()
        session = _session(folder / (CNN_INT8_FILE if int8 else CNN_FILE), threads)
        cnn = OnnxSpectrogramEncoder(session, query.config.fusion.spec_dim, options, int8=int8)
    return OnnxClaspModel(query, speech, cnn, _session(folder / _HEAD, threads))


def _cached_export(
    name_or_path: str, config: ModelConfig, saved_dir: Path | None, model_dir: Path | None
) -> Path:
    """The model's export folder in the cache, exported first unless a whole one is there: one
    stamped when it was written whose files are all there, of the size and mtime they had
    (:func:`_whole_export`). A ``head.onnx`` or ``meta.json`` cut short or removed since is
    exported again, not an error on every item of every run."""
    from clasp_ingest.model.assets import install_folder
    from clasp_ingest.model.cache import mark_used

    folder = _cache_root() / f"{config.model_id}-{_digest(config, saved_dir, model_dir)}"
    if _whole_export(folder):
        mark_used(folder)
        return folder
    if folder.exists():
        logger.warning("the ONNX export in %s was cut short, changed or written by an older version; "
                       "exporting %s again", folder, config.model_id)  # fmt: skip
    logger.info("exporting %s to ONNX once, into %s (needs torch; a few seconds)", config.model_id, folder)
    staging = _staging(folder.parent)
    try:
        try:
            export_onnx(name_or_path, staging, model_dir=model_dir)
        except (ImportError, RuntimeError, ValueError) as exc:  # torch.onnx's errors are RuntimeErrors
            raise ModelLoadError(f"could not export {config.model_id!r} to ONNX: {exc}") from exc
        except OSError as exc:  # a full disk, a TMPDIR that cannot be written (ORT's quantizer
            # uses it): the model cannot load (engine "auto" falls back to torch, a run stops), not
            # a failure of each item (exit 3)
            raise ModelLoadError(
                f"could not write the ONNX export of {config.model_id!r} ({exc}); it needs room in "
                f"the model cache {str(folder.parent)!r} (XDG_CACHE_HOME; 'clasp-ingest models cache "
                f"--prune' removes the copies no run used for 30 days) and the temporary folder "
                f"{tempfile.gettempdir()!r} (TMPDIR)"
            ) from exc
        try:
            _stamp_export(staging)
            install_folder(staging, folder, _whole_export)  # a damaged one moved aside, a whole one kept
        except OSError as exc:
            raise ModelLoadError(
                f"could not put the ONNX export of {config.model_id!r} into {str(folder)!r} ({exc}); "
                "delete that folder and run the command again"
            ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _stamp_export(folder: Path) -> None:
    """Record the sha256, size and mtime of the export's graphs in its ``meta.json`` (written
    again last, whole or not at all): :func:`_whole_export` checks them."""
    from clasp_ingest.model.assets import atomic_write, file_stamps

    meta = json.loads((folder / _META).read_text(encoding="utf-8"))
    meta["files"] = file_stamps(folder, skip={_META})
    text = json.dumps(meta, indent=2)
    atomic_write(folder / _META, lambda fh: fh.write(text.encode("utf-8")))


def _whole_export(folder: Path) -> bool:
    """Whether ``folder`` holds a whole export of this version: its ``meta.json`` reads, and
    the graphs it lists (the head among them) have the size and mtime they were written with.
    A ``meta.json`` cut short, garbled or removed, or one from before the graphs were listed,
    is not whole (the model is exported again: a few seconds, once)."""
    from clasp_ingest.model.assets import stamps_match

    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        files = meta["files"]
        return meta["export_version"] == EXPORT_VERSION and _HEAD in files and stamps_match(folder, files)
    except (OSError, ValueError, KeyError, TypeError):  # JSON and UTF-8 errors are ValueErrors
        return False


def _staging(cache: Path) -> Path:
    """A new folder in ``cache`` to export into. A cache that cannot be written (a service user's
    ``HOME`` missing or read-only) is a model that cannot load (:class:`ModelLoadError`, naming
    the remedy); its bare ``PermissionError: '/nonexistent'`` failed every item of a run alone
    (exit 3)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
    except OSError as exc:
        raise ModelLoadError(
            f"the model cache {str(cache)!r} cannot be written ({exc.strerror or exc}); set "
            "XDG_CACHE_HOME to a writable folder (the models' ONNX exports and converted weights "
            "are kept under $XDG_CACHE_HOME/clasp-ingest)"
        ) from exc


def load_onnx_model(
    name_or_path: str,
    *,
    model_dir: Path | None = None,
    batch_size: int = 8,
    threads: int | None = None,
    int8: bool = True,
) -> OnnxClaspModel:
    """A preset or saved model on ONNX Runtime (CPU); exports it first if not cached.

    ``threads``: ONNX Runtime's intra-op threads (default one less than the usable cores,
    like :func:`~clasp_ingest.model.clasp.set_torch_threads`). ``int8``: run the spectrogram CNN
    in int8 when the model names int8 ranges (False: the float32 CNN, torch's vectors to ~1e-5).
    """
    config, saved_dir = resolve_model_config(name_or_path)
    if not onnx_capable(config):
        raise ModelLoadError(
            f"model {config.model_id!r} cannot run on ONNX Runtime (speech {config.speech.backend!r}, "
            f"spectrogram {config.spectrogram.backend!r}); use engine 'torch'"
        )
    folder = _cached_export(name_or_path, config, saved_dir, model_dir)
    runtime = Runtime(device="cpu", model_dir=model_dir, batch_size=batch_size)
    query = load_query_model(name_or_path, device="cpu", model_dir=model_dir)
    speech = build_component("speech", config.speech, runtime)
    model = _assemble_cached(query, speech, folder, threads=threads or default_threads(), int8=int8)
    model.source = model_source(name_or_path, saved_dir)
    return model


def _assemble_cached(
    query: QueryModel, speech: SpeechEncoder, folder: Path, *, threads: int, int8: bool
) -> OnnxClaspModel:
    """:func:`_assemble` from the cache: an export damaged in a way its stamp cannot see (bytes
    changed, size and mtime kept) is a :class:`ModelLoadError` naming the folder and the remedy
    (engine "auto" then falls back to torch), not ONNX Runtime's or json's own error on every
    item. Out of memory stays what it is (``load_inference_model`` says so)."""
    from clasp_ingest.model.inference import out_of_memory

    try:
        return _assemble(query, speech, folder, threads=threads, int8=int8)
    except Exception as exc:  # ONNX Runtime's errors (InvalidProtobuf, NoSuchFile...) are plain Exceptions
        if out_of_memory(exc):
            raise
        raise ModelLoadError(
            f"cannot load the ONNX export of {query.model_id!r} in the model cache ({exc}); delete the "
            f"folder {str(folder)!r} and the next run exports the model again"
        ) from exc
