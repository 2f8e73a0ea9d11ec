"""Train a CLASP fusion head from a JSONL manifest: features once, head many epochs.

``train_fusion`` reads the manifest, splits training/validation rows, computes the frozen
backbones' features through the on-disk cache (:mod:`clasp_ingest.training.features`),
fits the model's fusion head with :func:`clasp_ingest.training.loop.fit_head`, and writes
to ``out_dir``:

- ``fusion.safetensors`` + ``config.json`` (``save_model``; load with ``load_model(out_dir)``),
- ``metrics.json`` (options, per-epoch losses, best epoch, temperature, validation retrieval
  metrics of the best head),
- ``checkpoint/checkpoint.safetensors`` (every epoch; ``resume=True`` continues from it) and
  ``checkpoint/targets.json`` (the ``language_dims`` its targets were made with; a resumed
  run must use the same).

Loss: ``contrastive`` is symmetric InfoNCE with ``logits = cos / T`` and a learnable
``T`` initialised at 0.07. The paper's notebook instead *multiplies* the similarities by a
fixed 0.07; we deliberately divide (see :mod:`clasp_ingest.training.losses`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ConfigError, MediaDecodeError
from clasp_ingest.evaluation.metrics import hits_at_1, macro_f1, mean_rank, mrr
from clasp_ingest.log import get_logger
from clasp_ingest.training.features import FeatureCache, FeatureSet, ProgressFn, compute_features
from clasp_ingest.training.loop import (
    CHECKPOINT_NAME,
    EpochStats,
    FitOptions,
    FitResult,
    check_checkpoint,
    fit_head,
    option_name,
)
from clasp_ingest.training.manifest import ManifestRow, read_manifest, split_train_val

__all__ = ["METRICS_FILE", "TrainOptions", "TrainResult", "prepare_head", "train_fusion"]

log = get_logger("training")

#: Written to the output folder at the end of training.
METRICS_FILE = "metrics.json"
_TRAIN_ONLY = (
    "val_fraction",
    "feature_batch_size",
    "cache_dir",
    "resume",
    "model_id",
    "skip_unreadable",
    "center",
    "center_strength",
    "language_dims",
    "extra_val",
    "anchor",
    "anchor_model",
    "whisper_top_layers",
)


@dataclass(frozen=True)
class TrainOptions(FitOptions):
    """:class:`FitOptions` plus what the manifest-level run needs.

    ``cache_dir``: feature cache (default ``<out_dir>/.features``). ``val_fraction``: share
    of training rows held out when the manifest marks none ``val``. ``model_id``: id of the
    trained model (default ``<base id>-<out_dir name>``; a retrained head is a new model).
    ``center``: after training, store the training-set means of both sides in the head
    (:class:`~clasp_ingest.model.clasp.Centering`), subtracted from every clip and query
    vector (``center_strength`` < 1 subtracts that share of them). ``skip_unreadable``: leave
    out (and list in ``metrics.json``) clips that cannot be decoded, instead of stopping the
    run. ``extra_val``: more validation manifests (their ``val`` rows, or every row when they
    have no ``split`` field), e.g. queries in another language than the speech; the trained
    head's retrieval on each goes to ``metrics.json`` (``extra_val``), so choices like
    ``center`` can be made on validation data. They do not steer training.
    ``anchor``: manifests of anchor clips (every row; their ``text`` is not used): the start
    head's output on each is computed before training and held as a target with weight
    ``anchor_weight`` (see :mod:`clasp_ingest.training.loop`), so a fine-tune keeps what the
    start head did on them. Meant for ``--fine-tune`` (a fresh head's outputs are noise).
    ``anchor_model``: take the anchor targets from this model (a preset or folder, loaded on the
    training device) instead of the start head: a model whose head outputs live in the start's
    space, e.g. the same model with its spectrogram branch while the start has none (a
    speech-only student held to its teacher on the anchor clips).
    ``whisper_top_layers``: also train the top that many layers of a ``ct2-whisper`` speech
    encoder (with its final norm) under a frame-pooling head (:mod:`clasp_ingest.model.whisper_torch`):
    features are the hidden states entering those layers (PyTorch, cached), and the trained layers
    are saved as ``whisper_top.safetensors``, which the saved model's speech encoder writes into
    its CTranslate2 copy (``options.top_layers``). 0 (the default) keeps the encoder frozen.
    ``language_dims``: remove the ``language_dims`` directions that separate the training
    languages' captions (:func:`~clasp_ingest.model.clasp.language_basis`; rows need a
    ``language``) from the text targets before training, and from every clip and query vector
    after it (stored with the centring), so that a query prefers the clip that says what it
    asks over clips merely in the query's language. 0 (the default) turns this off.
    """

    val_fraction: float = 0.1
    feature_batch_size: int = 8
    cache_dir: Path | None = None
    resume: bool = False
    model_id: str | None = None
    skip_unreadable: bool = True
    center: bool = False
    center_strength: float = 1.0
    language_dims: int = 0
    extra_val: tuple[Path, ...] = ()
    anchor: tuple[Path, ...] = ()
    anchor_model: str | None = None
    whisper_top_layers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.center_strength <= 1.0:
            name = option_name("center_strength")
            raise ConfigError(f"{name} must be in (0, 1], got {self.center_strength}")
        if not 0.0 <= self.val_fraction < 1.0:  # 0: only rows marked "val" validate
            raise ConfigError(f"{option_name('val_fraction')} must be in [0, 1), got {self.val_fraction}")
        for name in ("language_dims", "whisper_top_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{option_name(name)} must be >= 0, got {getattr(self, name)}")
        if self.anchor and self.anchor_weight == 0:
            raise ConfigError(f"anchor manifests (--anchor) need {option_name('anchor_weight')} > 0")
        if self.anchor_model is not None and not self.anchor:
            raise ConfigError("anchor_model (--anchor-model) gives the targets of anchor clips; add --anchor")

    def fit_options(self) -> FitOptions:
        fields = {k: v for k, v in asdict(self).items() if k not in _TRAIN_ONLY}
        return FitOptions(**fields)


@dataclass(frozen=True)
class TrainResult:
    """Where the trained model went and how training ended."""

    out_dir: Path
    model_id: str
    fit: FitResult
    n_train: int
    n_val: int
    val_metrics: dict[str, float]
    seconds: float
    unreadable: tuple[str, ...] = ()  # audio files left out (could not be decoded)
    extra_val: dict[str, dict[str, Any]] = field(default_factory=dict)  # manifest -> metrics or error


def train_fusion(
    model: Any,
    manifest: Path | str,
    out_dir: Path | str,
    options: TrainOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Fit ``model.fusion`` (a ``ClaspModel``) on the manifest's pairs; save it to ``out_dir``."""
    opts = options or TrainOptions()
    out = Path(out_dir)
    _check_out(out, opts.resume)
    started = time.perf_counter()
    _check_extra_val(opts.extra_val)
    train_rows, val_rows = split_train_val(
        read_manifest(manifest), val_fraction=opts.val_fraction, seed=opts.seed
    )
    log.info("training on %d pairs, validating on %d", len(train_rows), len(val_rows))
    if opts.language_dims:
        _check_languages(train_rows, opts.language_dims)
    identity = _run_identity(model, train_rows, val_rows, opts)
    check_checkpoint(out / "checkpoint", opts.fit_options(), resume=opts.resume, identity=identity)
    if opts.cache_dir is not None:
        _writable_folder(opts.cache_dir, "--cache-dir", "the feature cache")
    _writable_folder(out, "--out", "the trained model")
    _check_targets_of_checkpoint(out / "checkpoint", opts)
    deploy = _open_top_layers(model, opts.whisper_top_layers, opts.feature_batch_size)
    train, val, unreadable = _features(model, train_rows, val_rows, out, opts, progress)
    inherited = _inherited_basis(model, opts.language_dims)
    model.centering = None  # a retrained head gets its own means (or none)
    anchor = _anchor_targets(model, opts, out, progress) if opts.anchor else None
    basis = None
    if opts.language_dims:
        from clasp_ingest.model.calibration import language_basis, project_out

        left_out = set(unreadable)
        languages = [row.language for row in train_rows if str(row.audio) not in left_out]
        basis = (
            inherited if inherited is not None else language_basis(train.text, languages, opts.language_dims)
        )
        train = replace(train, text=project_out(train.text, basis))
        val = replace(val, text=project_out(val.text, basis))
    fit = fit_head(
        model.fusion,
        train,
        val,
        _resolved(opts.fit_options(), model),
        checkpoint_dir=out / "checkpoint",
        resume=opts.resume,
        on_epoch=_with_progress(on_epoch, progress, opts.max_epochs),
        anchor=anchor,
        identity=identity,
    )
    model_id = opts.model_id or f"{model.model_id}-{out.resolve().name}"
    from clasp_ingest.model.calibration import Centering
    from clasp_ingest.model.clasp import save_model

    if opts.center:
        audio = model.embed_features(train.speech, train.spectrogram)
        model.centering = Centering.fit(audio, train.text, opts.center_strength, basis)
    elif basis is not None:
        model.centering = Centering.projection_only(basis)

    left_out = set(unreadable)
    val_metrics = _retrieval(model, val, 0.5, [row for row in val_rows if str(row.audio) not in left_out])
    if deploy is not None:
        _close_top_layers(model, deploy, out)
    # a new model: not the base's description, and its queries search only its own collections
    base = model.config
    model.config = replace(
        base, description=f"{base.model_id} with heads trained by clasp-ingest train", searches=()
    )
    save_model(model, out, model_id=model_id)
    extra = {str(path): _extra_val(model, Path(path), opts, out, progress) for path in opts.extra_val}
    result = TrainResult(
        out,
        model_id,
        fit,
        len(train),
        len(val),
        val_metrics,
        time.perf_counter() - started,
        unreadable,
        extra,
    )
    _write_metrics(out / METRICS_FILE, result, opts)
    return result


def _check_out(out: Path, resume: bool) -> None:
    """Refuse an ``--out`` that is a file, or a folder that holds a model already, unless it is
    this run's own: resumed from the checkpoint beside it (:func:`check_checkpoint` then makes
    sure the checkpoint is this run's)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a folder for the trained model (a new one)")
    from clasp_ingest.model.config import saved_model_files

    held = saved_model_files(out)
    if held and not (resume and (out / "checkpoint" / CHECKPOINT_NAME).is_file()):
        raise ConfigError(
            f"--out {str(out)!r} holds a model already ({', '.join(held)}); choose another --out, "
            "or delete that folder first"
        )


def _writable_folder(path: Path, option: str, what: str) -> None:
    """Make ``path`` (a folder, with its parents) and check that a file can be written there,
    so that a bad ``option`` fails before any work, naming itself."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a file; give a folder for {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"{option} {str(path)!r} cannot hold {what} ({reason}); give a folder you can write to"
        ) from None


def _run_identity(
    model: Any, train_rows: list[ManifestRow], val_rows: list[ManifestRow], opts: TrainOptions
) -> dict[str, str]:
    """What a resumed run must share with the one that wrote its checkpoint, besides the fit
    options: the model (its backbones and head shape) and the rows it trains and validates on."""
    from clasp_ingest.training.features import encoder_identity

    fusion = json.dumps(model.config.fusion.to_dict(), sort_keys=True)
    backbones = encoder_identity(model, "speech", "spectrogram", "text")
    top = f", top {opts.whisper_top_layers} Whisper layers" if opts.whisper_top_layers else ""
    identity = {
        "--model": f"backbones {backbones}, head {fusion}{top}",
        "manifest rows": _rows_digest({"train": train_rows, "val": val_rows}),
    }
    if opts.anchor:
        identity["--anchor"] = _rows_digest({"anchor": [r for p in opts.anchor for r in read_manifest(p)]})
    return identity


def _rows_digest(parts: dict[str, list[ManifestRow]]) -> str:
    """``"N train / M val, sha256 …"``: counts and a hash of each row's audio path, text and role."""
    digest = hashlib.sha256()
    for role, rows in parts.items():
        for row in rows:
            digest.update(json.dumps([role, str(row.audio), row.text]).encode("utf-8"))
    counts = " / ".join(f"{len(rows)} {role}" for role, rows in parts.items())
    return f"{counts}, sha256 {digest.hexdigest()[:16]}"


def _anchor_targets(model: Any, opts: TrainOptions, out: Path, progress: ProgressFn | None) -> FeatureSet:
    """The anchor clips' features, with the start head's normalised outputs as their targets
    (or ``opts.anchor_model``'s head's)."""
    rows = [row for path in opts.anchor for row in read_manifest(path)]
    features = _row_features(model, rows, out, opts, progress)
    if features.unreadable:
        left_out = len(features.unreadable)
        log.warning("%d of %d anchor clips could not be decoded and were left out", left_out, len(rows))
    if opts.anchor_model is None:
        targets = model.embed_features(features.speech, features.spectrogram)  # centering is None here
    else:
        targets = _teacher_targets(model, opts.anchor_model, rows, features, out, opts, progress)
    log.info("anchoring the fine-tune on %d clips (weight %g)", len(targets), opts.anchor_weight)
    return replace(features, text=targets)


def _teacher_targets(
    model: Any,
    name: str,
    rows: list[ManifestRow],
    features: FeatureSet,
    out: Path,
    opts: TrainOptions,
    progress: ProgressFn | None,
) -> np.ndarray:
    """``name``'s head outputs (before its centring) on the anchor clips, checked to be in the
    start head's space (same width) and to cover the same clips."""
    from clasp_ingest.model import load_model

    teacher = load_model(name, device=str(model.device))
    teacher.centering = None  # targets are head outputs, as the start head's own would be
    if teacher.dim != model.dim:
        raise ConfigError(
            f"--anchor-model {name!r} makes {teacher.dim}-d head outputs, the trained model's head "
            f"{model.dim}-d; anchor to a model of the same output space"
        )
    held = _row_features(teacher, rows, out, opts, progress)
    if held.unreadable != features.unreadable:
        raise ConfigError(f"--anchor-model {name!r} could not read the same anchor clips as the model")
    log.info("anchor targets from %s", teacher.model_id)
    return teacher.embed_features(held.speech, held.spectrogram)


def _open_top_layers(model: Any, n_top: int, batch_size: int) -> Any:
    """For ``whisper_top_layers``: make ``model`` read the hidden states below its speech encoder's
    top ``n_top`` layers and train those layers with its head. Returns the config to restore."""
    if not n_top:
        return None
    from clasp_ingest.model.config import ComponentSpec
    from clasp_ingest.model.whisper_ct2 import WhisperCT2Options, WhisperCT2SpeechEncoder
    from clasp_ingest.model.whisper_torch import (
        WhisperTorchFrames,
        load_torch_whisper_encoder,
        top_layers_fusion,
    )

    config = model.config
    if not isinstance(model.speech, WhisperCT2SpeechEncoder) or not config.fusion.frames:
        raise ConfigError(
            "training the top Whisper layers needs a ct2-whisper speech encoder and a head that pools "
            f"its frames (speech_pool 'attention'); {config.model_id!r} has {config.speech.backend} "
            f"with speech_pool {config.fusion.speech_pool!r}"
        )
    encoder = load_torch_whisper_encoder(model.speech.model_dir)
    n_layers = len(encoder.layers)
    window = model.speech.options.window
    frames = WhisperTorchFrames(
        encoder, n_layers - n_top, WhisperCT2Options(window=window, batch_size=batch_size)
    )
    # the cache must not mix these states with the encoder's outputs: another spec, another key
    below = ComponentSpec("whisper-torch-below-top", str(model.speech.model_dir), encoder.dim,
                          {"stop": n_layers - n_top, "window": window})  # fmt: skip
    log.info("training the top %d of %d Whisper layers with the head", n_top, n_layers)
    kept = _start_top_layers(config, model.runtime.model_dir)
    model.speech = frames
    model.fusion = top_layers_fusion(encoder, n_top, model.fusion).to(model.device)
    restore = config
    model.config = replace(config, speech=below)
    return restore, n_layers, kept


def _start_top_layers(config: Any, model_dir: Path | None) -> dict[str, np.ndarray]:
    """The start model's own trained Whisper variables (its ``top_layers`` file), read before
    anything is written: the saved file keeps those the run does not train (layers below the
    top ``N``), or the saved model would load them as stock Whisper."""
    top = config.speech.options.get("top_layers")
    if not top:
        return {}
    from safetensors.numpy import load_file

    from clasp_ingest.model.hub import readable_weights, resolve_file

    path = resolve_file(str(top), model_dir)
    with readable_weights(path):
        return dict(load_file(str(path)))


def _close_top_layers(model: Any, deploy: Any, out: Path) -> None:
    """Save the trained top layers to ``out`` and give ``model`` back its CTranslate2 encoder, now
    with those layers (the head alone stays in ``model.fusion``)."""
    from safetensors.numpy import save_file

    from clasp_ingest.model.assets import new_file_mode
    from clasp_ingest.model.backends import build_component
    from clasp_ingest.model.config import TOP_LAYERS_FILE
    from clasp_ingest.model.whisper_torch import top_layers_ct2

    config, n_layers, kept = deploy
    out.mkdir(parents=True, exist_ok=True)
    top_file = out / TOP_LAYERS_FILE
    trained = top_layers_ct2(model.fusion, n_layers)
    below = sorted({name.split("/")[1] for name in kept.keys() - trained.keys()})
    if below:
        log.info("keeping the start model's trained Whisper variables of %s", ", ".join(below))
    variables = kept | trained
    save_file({k: v.astype(np.float16) for k, v in variables.items()}, str(top_file))
    top_file.chmod(new_file_mode())  # safetensors writes 0600
    # an absolute path while training goes on; save_model writes it relative to the folder
    options = dict(config.speech.options) | {"top_layers": str(top_file.resolve())}
    model.config = replace(config, speech=replace(config.speech, options=options))
    model.fusion = model.fusion.head
    model.speech = build_component("speech", model.config.speech, model.runtime)


def _inherited_basis(model: Any, dims: int) -> Any:
    """The language basis a fine-tuned head keeps: its model's, when it has ``dims`` rows.

    A head trained against targets without those directions goes on without the same ones
    (a new manifest, e.g. with augmented copies, would shift them a little), and heads that
    share a basis can still be averaged or ensembled. A fresh head (``prepare_head`` clears
    ``config.weights``) gets the manifest's own.
    """
    centering = getattr(model, "centering", None)
    basis = None if centering is None else centering.basis
    if not dims or basis is None or model.config.weights is None or len(basis) != dims:
        return None
    log.info("fine-tuning keeps the model's %d language directions", dims)
    return basis


def start_temperature(explicit: float | None, fine_tune: bool, model_ref: str | Path | None) -> float:
    """The contrastive loss's starting temperature for a run.

    ``explicit`` when given; else, for a fine-tune of a model folder written by ``train``, the
    temperature its run ended at (``metrics.json``), because restarting a trained head at
    the fresh default (0.07, against clasp-mini's 0.01) throws away much of what it learned;
    else the default.
    """
    from clasp_ingest.training.losses import INIT_TEMPERATURE

    if explicit is not None:
        return explicit
    metrics = Path(model_ref) / METRICS_FILE if fine_tune and model_ref is not None else None
    if metrics is None or not metrics.is_file():
        return INIT_TEMPERATURE
    try:
        value = json.loads(metrics.read_text(encoding="utf-8")).get("temperature")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{metrics}: cannot read the run's temperature ({exc}); pass --temperature"
        ) from None
    if not isinstance(value, int | float) or value <= 0:
        return INIT_TEMPERATURE
    log.info("fine-tuning from %s's temperature %.4f (its metrics.json)", model_ref, value)
    return float(value)


def prepare_head(
    model: Any,
    *,
    kind: str | None = None,
    fresh: bool = True,
    seed: int = 0,
    speech_pool: str | None = None,
    pool_queries: int | None = None,
) -> None:
    """Give ``model`` the head to train: a fresh seeded one (of ``kind``, default the model's).

    ``speech_pool`` / ``pool_queries`` (default the model's): ``"attention"`` trains a head
    that pools the speech encoder's frames with that many learned queries (the encoder needs
    ``encode_frames``). With ``fresh=False`` the model's current head is fine-tuned (``kind``
    and the pooling must then match). The model's config follows the head, so
    ``save_model`` writes the right ``config.json``.
    """
    from clasp_ingest.model.base import FrameSpeechEncoder
    from clasp_ingest.model.clasp import seeded_head

    config = model.config
    kind = kind or config.fusion.kind
    pool = speech_pool or config.fusion.speech_pool
    if pool_queries is not None and pool_queries < 1:
        raise ConfigError(f"{option_name('pool_queries')} must be >= 1, got {pool_queries}")
    queries = config.fusion.pool_queries if pool_queries is None else pool_queries
    if not fresh:
        have = (config.fusion.kind, config.fusion.speech_pool, config.fusion.pool_queries)
        if (kind, pool, queries) != have:
            raise ConfigError(
                f"cannot fine-tune a {have[0]} head with {have[1]} speech pooling as {kind} with "
                f"{pool} pooling; train a fresh head"
            )
        return
    fusion_spec = replace(config.fusion, kind=kind, speech_pool=pool, pool_queries=queries)  # validates
    if fusion_spec.frames and not isinstance(model.speech, FrameSpeechEncoder):
        raise ConfigError(
            f"speech pool {pool!r} needs a speech encoder that gives frames; "
            f"{type(model.speech).__name__} gives only pooled vectors"
        )
    head = seeded_head(fusion_spec, seed)
    model.config = replace(config, fusion=fusion_spec, weights=None)
    model.fusion = head.to(getattr(model, "device", "cpu")).eval()


def _row_features(
    model: Any, rows: list[ManifestRow], out: Path, opts: TrainOptions, progress: ProgressFn | None
) -> FeatureSet:
    """Features of manifest rows through the run's cache (``--cache-dir``, else ``out/.features``)."""
    return compute_features(
        model,
        [row.audio for row in rows],
        [row.text for row in rows],
        cache=FeatureCache(opts.cache_dir or out / ".features"),
        batch_size=opts.feature_batch_size,
        progress=progress,
        skip_unreadable=opts.skip_unreadable,
    )


def _features(
    model: Any,
    train_rows: list[ManifestRow],
    val_rows: list[ManifestRow],
    out: Path,
    opts: TrainOptions,
    progress: ProgressFn | None,
) -> tuple[FeatureSet, FeatureSet, tuple[str, ...]]:
    """Train and val features; clips that cannot be decoded are left out (or raise)."""
    rows = train_rows + val_rows
    features = _row_features(model, rows, out, opts, progress)
    unreadable = tuple(str(rows[i].audio) for i in features.unreadable)
    if unreadable:
        log.warning(
            "%d of %d clips could not be decoded and were left out (listed in %s): %s",
            len(unreadable),
            len(rows),
            METRICS_FILE,
            ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else ""),
        )
    n = len(train_rows) - sum(1 for i in features.unreadable if i < len(train_rows))
    if n == 0 or n == len(features):
        part = "training" if n == 0 else "validation"
        raise MediaDecodeError(
            unreadable[0],
            f"no {part} clip could be decoded ({len(unreadable)} unreadable); check the manifest's audio",
        )
    return _take(features, slice(0, n)), _take(features, slice(n, None)), unreadable


def _check_languages(rows: list[ManifestRow], dims: int) -> None:
    """Refuse ``language_dims`` before any work when the rows cannot give that many directions."""
    missing = next((row for row in rows if not row.language), None)
    if missing is not None:
        raise ConfigError(
            f"{option_name('language_dims')} needs a 'language' on every training row; manifest line "
            f"{missing.line} "
            f"({missing.audio}) has none"
        )
    languages = sorted({str(row.language) for row in rows})
    if dims > len(languages) - 1:
        raise ConfigError(
            f"{option_name('language_dims')} {dims} needs at least {dims + 1} training languages, "
            "the manifest has "
            f"{len(languages)} ({', '.join(languages)})"
        )


_TARGETS_FILE = "targets.json"


def _check_targets_of_checkpoint(folder: Path, opts: TrainOptions) -> None:
    """A resumed run must train on the same targets: refuse another ``language_dims``.

    The checkpoint's own check covers the optimiser options; the targets are the train-level
    ``language_dims``, recorded beside the checkpoint (absent: 0, as before the option).
    """
    marker = folder / _TARGETS_FILE
    if (folder / CHECKPOINT_NAME).is_file():
        if not opts.resume:
            return  # fit_head refuses this folder; leave the earlier run's record alone
        before = json.loads(marker.read_text()).get("language_dims", 0) if marker.is_file() else 0
        if before != opts.language_dims:
            raise ConfigError(
                f"{folder} was trained with language_dims={before}; resume it with the same "
                f"--language-dims or start in an empty output folder"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"language_dims": opts.language_dims}) + "\n")


def _take(features: FeatureSet, part: slice) -> FeatureSet:
    return FeatureSet(features.speech[part], features.spectrogram[part], features.text[part])


def _resolved(options: FitOptions, model: Any) -> FitOptions:
    if options.device != "auto":
        return options
    device = getattr(model, "device", None)
    return replace(options, device=str(device) if device is not None else "cpu")


def _with_progress(
    on_epoch: Callable[[EpochStats], None] | None, progress: ProgressFn | None, total: int
) -> Callable[[EpochStats], None]:
    def report(stats: EpochStats) -> None:
        if progress is not None:
            progress("epochs", stats.epoch, total)
        if on_epoch is not None:
            on_epoch(stats)

    return report


def _retrieval(
    model: Any, features: FeatureSet, threshold: float, rows: Sequence[ManifestRow]
) -> dict[str, float]:
    """Text→audio retrieval metrics of the trained head over ``features`` (all candidates), the
    features of ``rows``: rows that name one audio file are one candidate clip, as ``eval``
    counts them (:func:`~clasp_ingest.evaluation.evaluate.distinct_clips`; one candidate per
    row made a clip's captions tie with each other, and miss)."""
    from clasp_ingest.evaluation.evaluate import distinct_clips

    clips = distinct_clips(rows)
    audio = model.embed_features(features.speech, features.spectrogram)[list(clips.first)]
    text = model.embed_text_features(features.text)
    sim = text @ audio.T
    return {
        "hits@1": hits_at_1(sim, clips.own),
        "mrr": mrr(sim, clips.own),
        "mean_rank": mean_rank(sim, clips.own),
        "macro_f1": macro_f1(sim, threshold, clips.own),
    }


def _check_extra_val(manifests: tuple[Path, ...]) -> None:
    """Fail before training, not after it, on an extra validation manifest without ``val`` rows."""
    for manifest in manifests:
        splits = {row.split for row in read_manifest(manifest)}
        if "val" not in splits and splits != {None}:
            raise ConfigError(
                f"{manifest}: an extra validation manifest needs rows with split 'val' (or no split "
                f"field at all); it has {sorted(str(s) for s in splits)}"
            )


def _extra_val(
    model: Any, manifest: Path, opts: TrainOptions, out: Path, progress: ProgressFn | None
) -> dict[str, Any]:
    """The trained head's retrieval on an extra validation manifest (all candidates).

    The head is already saved: a manifest that fails here (a clip that cannot be decoded)
    is reported as ``{"error": ...}`` instead of losing the run's metrics.
    """
    from clasp_ingest.errors import ClaspIngestError
    from clasp_ingest.evaluation.evaluate import evaluate

    try:
        result = evaluate(
            model,
            manifest,
            "all",
            0.5,
            0,
            "val",
            cache_dir=opts.cache_dir or out / ".features",
            batch_size=opts.feature_batch_size,
            progress=progress,
        )
    except ClaspIngestError as exc:
        log.warning("extra validation on %s failed: %s", manifest, exc)
        return {"error": str(exc)}
    return {key: result[key] for key in ("hits@1", "mrr", "mean_rank", "macro_f1", "n_queries")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _write_metrics(path: Path, result: TrainResult, opts: TrainOptions) -> None:
    options = {k: _jsonable(v) for k, v in asdict(opts).items()}
    fit = asdict(result.fit)
    payload = {
        "model_id": result.model_id,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "seconds": round(result.seconds, 3),
        "val_retrieval": result.val_metrics,
        "unreadable": list(result.unreadable),
        "extra_val": result.extra_val,
        "options": options,
        **fit,
    }
    try:
        path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except ValueError as exc:
        raise ConfigError(f"training produced non-finite metrics ({exc}); lower the learning rate") from exc
