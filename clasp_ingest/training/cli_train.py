"""``clasp-ingest train`` and ``clasp-ingest eval``: fit a fusion head, measure retrieval."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import typer

from clasp_ingest.errors import ClaspIngestError, ConfigError
from clasp_ingest.model.config import FusionKind, SpeechPool
from clasp_ingest.store.cli_store import refuse_empty
from clasp_ingest.training.manifest import SPLITS

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``eval`` commands to ``app``."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)


def _settings() -> Any:
    from clasp_ingest.config import Settings

    return Settings.model_validate({})  # reads CLASP_* like Settings()


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar on stderr, one task per stage; ``None`` when disabled or when stderr
    is no terminal (``2>log``: the bar's last frame was written into the log), as for ingest."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # started with its first stage: a run that fails before any (a missing manifest) printed
    # the empty bar's blank line before its 'error:' line
    bar = Progress(*columns, console=Console(stderr=True), transient=False)
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def _cosine_named(value: float) -> float:
    """``--threshold``: a cosine in [-1, 1] (NaN made invalid JSON), else bad usage."""
    if not -1.0 <= value <= 1.0:
        raise typer.BadParameter(f"{value} is not a cosine; give one in [-1, 1]")
    return value


def _candidates_named(value: str) -> str:
    """``--candidates``: 'all' or a number of at least 2, else bad usage (a number above the
    split's clips is refused once the manifest is read)."""
    if value != "all" and not (value.isdigit() and int(value) >= 2):
        raise typer.BadParameter(f"{value!r} is neither 'all' nor a number of 2 or more")
    return value


def _device_named(value: str | None) -> str | None:
    """An unknown ``--device`` is bad usage, refused before the model loads (as CLASP_DEVICE is)."""
    from clasp_ingest.config import is_device

    if value is not None and not is_device(value):
        raise typer.BadParameter(f"{value!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return value


def _folder_named(value: str) -> Path:
    """``--out`` / ``--cache-dir``: an empty value is bad usage (it would be the current folder)."""
    return Path(refuse_empty(value, "give a folder"))


def _model_named(value: str) -> str:
    """``--model`` / ``--anchor-model``: an empty value is bad usage (it would be the default model)."""
    return refuse_empty(value, "give a model preset or folder, or leave the option out")


def _one_of(allowed: tuple[str, ...]) -> Callable[[str | None], str | None]:
    """A callback refusing a value outside ``allowed`` as bad usage (exit 2), naming the values,
    before the model loads."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r} is unknown; use one of {', '.join(allowed)}")
        return value

    return check


def _runtime(device: str) -> str:
    """``device``, refused when it names a CUDA device this machine lacks (before any work)."""
    from clasp_ingest.model.inference import check_runtime

    check_runtime(device)
    return device


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
    return typer.Exit(1)


def train_command(
    manifest: Path = typer.Argument(..., help="JSONL of {audio, text, language?, split?} rows."),
    out: Path = typer.Option(
        ...,
        "--out",
        parser=_folder_named,
        help="Output folder: fusion.safetensors, config.json, metrics.json.",
    ),
    model: str | None = typer.Option(
        None, "--model", parser=_model_named, help="Preset or model folder (default: $CLASP_MODEL)."
    ),
    loss: str = typer.Option("contrastive", "--loss", help="'contrastive' (CLASP) or 'huber' (LASP)."),
    fusion: str | None = typer.Option(
        None,
        "--fusion",
        callback=_one_of(get_args(FusionKind)),
        help="'concat' or 'gating' (default: the model's).",
    ),
    speech_pool: str | None = typer.Option(
        None,
        "--speech-pool",
        callback=_one_of(get_args(SpeechPool)),
        help="'mean' (the paper: the speech encoder's mean frame) or 'attention' (the head pools "
        "the frames with learned queries; frames are cached, about 50 KB per second of audio). "
        "Default: the model's.",
    ),
    pool_queries: int | None = typer.Option(
        None, "--pool-queries", min=1, help="With --speech-pool attention: learned queries (default 4)."
    ),
    fine_tune: bool = typer.Option(
        False, "--fine-tune", help="Start from the model's head, not a fresh one."
    ),
    temperature: float | None = typer.Option(
        None,
        "--temperature",
        help="Starting temperature of the contrastive loss (learned from there). Default 0.07; "
        "with --fine-tune of a trained folder, the one its run ended at (its metrics.json).",
    ),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate."),
    batch_size: int = typer.Option(32, "--batch-size", help="Training batch (in-batch negatives)."),
    val_batch_size: int = typer.Option(16, "--val-batch-size", help="Validation batch."),
    lr_step_epochs: int = typer.Option(
        100, "--lr-step-epochs", help="Multiply the learning rate by --lr-gamma every this many epochs."
    ),
    lr_gamma: float = typer.Option(0.4, "--lr-gamma", help="Learning-rate factor of each step (0-1]."),
    epochs: int = typer.Option(100, "--epochs", help="Most epochs to run."),
    patience: int = typer.Option(
        10, "--patience", help="Stop after this many epochs without a better val loss."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the head, shuffling, dropout and val hold-out."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Held out when no row is split 'val'."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", parser=_folder_named, help="Feature cache (default OUT/.features)."
    ),
    model_id: str | None = typer.Option(None, "--model-id", help="Id of the trained model."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    center: bool = typer.Option(
        False,
        "--center",
        help="Store training-set means of both sides; centred vectors help cross-lingual queries.",
    ),
    center_strength: float = typer.Option(
        1.0, "--center-strength", help="With --center: subtract this share (0-1] of the means."
    ),
    language_dims: int = typer.Option(
        0,
        "--language-dims",
        help="Remove this many directions that separate the training languages' captions from "
        "targets and vectors (rows need 'language'; at most languages - 1), so a query does not "
        "prefer speech in its own language. 0: off.",
    ),
    extra_val: list[Path] = typer.Option(
        [],
        "--extra-val",
        help="Another validation manifest (its 'val' rows), e.g. other-language queries; "
        "the head's retrieval on it goes to metrics.json. Repeatable.",
    ),
    anchor: list[Path] = typer.Option(
        [],
        "--anchor",
        help="With --fine-tune: a manifest of anchor clips (their text unused); the start head's "
        "output on each is kept as a target, so the fine-tune keeps what it did there (e.g. "
        "synthetic cross-lingual speech while learning recorded speech). Repeatable.",
    ),
    anchor_weight: float = typer.Option(
        50.0, "--anchor-weight", help="With --anchor: weight of the anchor term (mean 1 - cosine)."
    ),
    anchor_model: str | None = typer.Option(
        None,
        "--anchor-model",
        parser=_model_named,
        help="With --anchor: take the targets from this model's head (preset or folder) instead of "
        "the start head's, e.g. the same model with its spectrogram branch for a speech-only start.",
    ),
    freeze_batchnorm: bool = typer.Option(
        False,
        "--freeze-batchnorm",
        help="Keep the head's BatchNorm statistics as they are (for fine-tunes on other data; "
        "with --anchor, so that the anchors' outputs can stay put).",
    ),
    whisper_top_layers: int = typer.Option(
        0,
        "--whisper-top-layers",
        min=0,
        help="Also train the top N layers of the model's Whisper encoder (ct2-whisper with a "
        "frame-pooling head, e.g. clasp-mini); they are saved beside the head "
        "(whisper_top.safetensors) and written into the encoder's CTranslate2 copy when the model "
        "loads. 0: the encoder stays frozen.",
    ),
    skip_unreadable: bool = typer.Option(
        True,
        "--skip-unreadable/--strict-audio",
        help="Leave out clips that cannot be decoded (listed in metrics.json), or stop at the first.",
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: $CLASP_DEVICE).",
        callback=_device_named,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a CLASP fusion head on MANIFEST's (audio, text) pairs; backbones stay frozen (except
    the top Whisper layers with --whisper-top-layers)."""
    from clasp_ingest.training.train import (
        METRICS_FILE,
        TrainOptions,
        prepare_head,
        start_temperature,
        train_fusion,
    )

    settings = _settings()
    try:
        start = start_temperature(temperature, fine_tune, model or settings.model)
    except (ClaspIngestError, ValueError) as exc:
        raise _fail(exc) from None
    try:
        options = TrainOptions(
            loss=loss,
            temperature=start,
            lr=lr,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            lr_step_epochs=lr_step_epochs,
            lr_gamma=lr_gamma,
            max_epochs=epochs,
            patience=patience,
            seed=seed,
            val_fraction=val_fraction,
            cache_dir=cache_dir,
            resume=resume,
            model_id=model_id,
            skip_unreadable=skip_unreadable,
            center=center,
            center_strength=center_strength,
            language_dims=language_dims,
            extra_val=tuple(extra_val),
            anchor=tuple(anchor),
            anchor_weight=anchor_weight if anchor else 0.0,
            anchor_model=anchor_model,
            freeze_batchnorm=freeze_batchnorm,
            whisper_top_layers=whisper_top_layers,
        )
        if anchor and not fine_tune:
            raise ConfigError("--anchor keeps the start head's outputs; it needs --fine-tune")
    except ConfigError as exc:  # an option out of range, or options that do not go together
        raise typer.BadParameter(str(exc)) from None
    try:
        clasp = _load(model or settings.model, _runtime(device or settings.device), settings.model_dir)
        _training_threads(settings.torch_threads)
        prepare_head(
            clasp,
            kind=fusion,
            fresh=not fine_tune,
            seed=seed,
            speech_pool=speech_pool,
            pool_queries=pool_queries,
        )
        with _progress(not quiet) as progress:
            result = train_fusion(clasp, manifest, out, options, progress=progress)
    except (ClaspIngestError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo((result.out_dir / METRICS_FILE).read_text(encoding="utf-8").strip())
    else:
        _print_train_summary(result)


def _training_threads(threads: int | None) -> int:
    """Torch's CPU threads for training: ``threads`` ($CLASP_TORCH_THREADS) or every usable core.

    Called after the model loads: CTranslate2 sets OpenMP's thread count for the whole process
    when it loads (``intra_threads``, one less than the cores by default, because ingestion
    decodes beside it), and torch shares that runtime, so training would run on one core of two.
    Training has no decoding thread beside it.
    """
    from clasp_ingest.model.base import usable_cores
    from clasp_ingest.model.clasp import set_torch_threads

    return set_torch_threads(threads or usable_cores())


def _load(name: str, device: str, model_dir: Path | None) -> Any:
    from clasp_ingest.model import load_model

    return load_model(name, device=device, model_dir=model_dir)


def _load_eval(name: str, device: str, model_dir: Path | None) -> Any:
    """``asr-baseline[:beamN][:LANG]`` (Whisper transcripts → text encoder) or any model ``_load`` takes."""
    from clasp_ingest.evaluation.asr_baseline import ASR_BASELINE

    if name == ASR_BASELINE or name.startswith(f"{ASR_BASELINE}:"):
        from clasp_ingest.evaluation.asr_baseline import load_asr_baseline

        return load_asr_baseline(name, device=device)
    return _load(name, device, model_dir)


def _print_train_summary(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    fit = result.fit
    table = Table(title=escape(f"{result.model_id} → {result.out_dir}"))
    table.add_column("epoch", justify="right")
    table.add_column("train loss", justify="right")
    table.add_column("val loss", justify="right")
    for stats in fit.history:
        mark = " *" if stats.epoch == fit.best_epoch else ""
        table.add_row(f"{stats.epoch}{mark}", f"{stats.train_loss:.4f}", f"{stats.val_loss:.4f}")
    console = Console()
    console.print(table)
    ending = "early stop" if fit.stopped_early else "max epochs"
    console.print(
        f"best epoch {fit.best_epoch} (val loss {fit.best_val_loss:.4f}), {fit.epochs_run} epochs "
        f"({ending}), {result.n_train} train / {result.n_val} val pairs, {result.seconds:.1f} s"
    )
    console.print("validation retrieval: " + ", ".join(f"{k} {v:.4f}" for k, v in result.val_metrics.items()))
    for manifest, metrics in result.extra_val.items():
        if "error" in metrics:
            reason = escape(f"({metrics['error']})")
            console.print(f"[yellow]{escape(str(manifest))}: not evaluated[/] {reason}")
            continue
        console.print(
            escape(f"{manifest} ({metrics['n_queries']} queries): ")
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "n_queries")
        )
    if result.unreadable:
        console.print(
            f"[yellow]left out {len(result.unreadable)} clips that could not be decoded[/] (metrics.json)"
        )


def _second_stage(model: Any, n: int, device: str) -> Any:
    """The ``--rerank`` stage: the bundled Whisper-base, the model's text tower, the retriever's fusion."""
    from clasp_ingest.evaluation.rerank import SecondStage
    from clasp_ingest.retriever.rerank import Fusion, TextScorer
    from clasp_ingest.transcribe import Transcriber, TranscriberOptions

    transcriber = Transcriber(TranscriberOptions(device=device))
    return SecondStage(n, transcriber, TextScorer(model).scores, Fusion().fuse)


def _check_eval_combination(candidates: str, rerank: int | None, distractors: Path | None) -> None:
    """Options that do not go together are bad usage (exit 2), refused before the model loads:
    ``--rerank`` and ``--distractors`` need every clip of the split as a candidate."""
    if candidates == "all":
        return
    for given, option in ((rerank, "--rerank"), (distractors, "--distractors")):
        if given is not None:
            raise typer.BadParameter(
                f"needs --candidates all (the first stage ranks every clip), not {candidates}; drop "
                f"--candidates or {option}",
                param_hint=f"'{option}'",
            )


def eval_command(
    manifest: Path = typer.Argument(..., help="JSONL of {audio, text, language?, split?} rows."),
    model: str | None = typer.Option(
        None,
        "--model",
        parser=_model_named,
        help="Preset or model folder (default: $CLASP_MODEL); 'asr-baseline[:beamN][:LANG]' for Whisper ASR.",
    ),
    candidates: str = typer.Option(
        "all", "--candidates", callback=_candidates_named, help="'all' clips of the split, or N per query."
    ),
    threshold: float = typer.Option(
        0.5, "--threshold", callback=_cosine_named, help="Cosine threshold of Macro-F1."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the distractor sampling."),
    split: str = typer.Option(
        "test", "--split", callback=_one_of(SPLITS), help="Manifest split to evaluate."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", parser=_folder_named, help="Reuse/keep backbone features here."
    ),
    distractors: Path | None = typer.Option(
        None,
        "--distractors",
        help="Another manifest whose clips join the candidates without asking queries "
        "(e.g. speech in other languages: a mixed-language collection).",
    ),
    distractor_split: str | None = typer.Option(
        None,
        "--distractor-split",
        callback=_one_of(SPLITS),
        help="Split of --distractors (default: --split).",
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: $CLASP_DEVICE).",
        callback=_device_named,
    ),
    rerank: int | None = typer.Option(
        None,
        "--rerank",
        min=1,
        help="Rerank each query's best N clips by their Whisper transcripts (fused with the model's "
        "score, as search --rerank does); needs --candidates all. Adds 'rerank' and 'transcribed'.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Text → audio retrieval on MANIFEST: Hits@1, MRR, mean rank, Macro-F1 (the paper's protocols).

    With --rerank N, Hits@1, MRR and mean rank are those after the second stage (each clip in
    some query's top N transcribed once per run); Macro-F1 stays the first stage's.
    """
    from clasp_ingest.evaluation.evaluate import RESULT_KEYS, evaluate

    _check_eval_combination(candidates, rerank, distractors)
    settings = _settings()
    try:
        clasp = _load_eval(model or settings.model, _runtime(device or settings.device), settings.model_dir)
        with _progress(not quiet) as progress:
            result = evaluate(
                clasp,
                manifest,
                candidates,
                threshold,
                seed,
                split,
                cache_dir=cache_dir,
                progress=progress,
                distractors=distractors,
                distractor_split=distractor_split,
                rerank=None if rerank is None else _second_stage(clasp, rerank, device or settings.device),
            )
    except (ClaspIngestError, ValueError) as exc:
        raise _fail(exc) from None
    extra = ("n_clips", "distractors", "rerank", "transcribed")
    keys = [*RESULT_KEYS, *(key for key in extra if key in result)]
    if as_json:
        typer.echo(json.dumps({key: result[key] for key in keys}))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{clasp.model_id} on {manifest.name} ({split})"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        value = result[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
