"""The epoch loop that fits a fusion head on cached features (any ``nn.Module`` head).

The head maps ``(speech_feats, spec_feats)`` to the text space; its output is compared with
the frozen text embeddings by a loss from :mod:`clasp_ingest.training.losses`. Adam with a
step learning-rate schedule (the paper's ``StepLR``), early stopping on the validation loss
(the best epoch's weights are kept), a checkpoint after every epoch so a killed run resumes
where it stopped and ends with the same weights as an uninterrupted one: every epoch's
shuffling and dropout draw from RNGs seeded by ``(seed, epoch)``, not by history.

With ``anchor`` clips (:func:`fit_head`), every training batch also takes a batch of them and
adds ``anchor_weight`` × the mean cosine distance between the head's output and a fixed target
per clip, normally the start head's own output on that clip: fine-tuning on new data
(recorded speech) then keeps what the start head did on the anchors (synthetic speech,
cross-lingual behaviour) instead of drifting from it ("learning without forgetting").

A head that pools speech frames (the speech features are a ``FrameBank``) trains on batches
of clips of similar length (:func:`_length_grouped`), since each batch is padded to its
longest clip.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from clasp_ingest.errors import ConfigError
from clasp_ingest.log import get_logger
from clasp_ingest.model.assets import new_file_mode
from clasp_ingest.training.features import FeatureSet, FrameBank
from clasp_ingest.training.losses import INIT_TEMPERATURE, LOSSES, build_loss

__all__ = [
    "CHECKPOINT_NAME",
    "EpochStats",
    "FitOptions",
    "FitResult",
    "anchor_distance",
    "check_checkpoint",
    "fit_head",
    "option_name",
]

log = get_logger("training")

#: File the per-epoch checkpoint is written to inside the checkpoint folder.
CHECKPOINT_NAME = "checkpoint.safetensors"


#: Fields of the training options whose ``clasp-ingest train`` option is not ``--<field>``.
_OPTIONS = {"max_epochs": "--epochs"}


def option_name(field_name: str) -> str:
    """How an error names a training option: the command-line flag, then the field
    (``--epochs (max_epochs)``), so both CLI and library callers recognise it."""
    flag = _OPTIONS.get(field_name, "--" + field_name.replace("_", "-"))
    return flag if flag[2:] == field_name else f"{flag} ({field_name})"


@dataclass(frozen=True)
class FitOptions:
    """How a head is fitted. Defaults are ours; the paper's are noted per field."""

    loss: str = "contrastive"
    #: Adam learning rate (the paper: 5e-6 with its 0.07-multiplied logits, ~400 epochs).
    lr: float = 1e-4
    weight_decay: float = 0.0
    #: Training batch size (the paper: 32). In-batch negatives: larger is harder.
    batch_size: int = 32
    #: Validation batch size (the paper: 16). The contrastive loss depends on it.
    val_batch_size: int = 16
    max_epochs: int = 100
    #: Stop after this many epochs without a lower validation loss (the paper: 10).
    patience: int = 10
    #: Multiply the learning rate by ``lr_gamma`` every ``lr_step_epochs`` (the paper: 100, 0.4).
    lr_step_epochs: int = 100
    lr_gamma: float = 0.4
    #: Huber threshold of the ``huber`` loss (the notebook's ``train_the_model(delta=0.6)``).
    huber_delta: float = 0.6
    #: Starting temperature of the ``contrastive`` loss (learned from there; at least 0.01).
    #: Fine-tuning a trained head should start from the temperature it ended at.
    temperature: float = INIT_TEMPERATURE
    seed: int = 0
    #: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    device: str = "auto"
    #: Weight of the anchor term (0: off; used only when ``fit_head`` gets anchors).
    anchor_weight: float = 0.0
    #: Keep BatchNorm layers in eval mode while training: they normalise with the running
    #: statistics the head came with and do not update them (their scale and shift still
    #: train). For fine-tunes on data of another kind, whose batch statistics would otherwise
    #: shift the head's output on everything, anchors included.
    freeze_batchnorm: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r} (--loss); use one of {', '.join(LOSSES)}")
        for name in ("batch_size", "val_batch_size", "max_epochs", "patience", "lr_step_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{option_name(name)} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2 and self.loss == "contrastive":
            raise ConfigError(
                f"the contrastive loss needs {option_name('batch_size')} >= 2 (in-batch negatives), "
                f"got {self.batch_size}"
            )
        # ``not x > 0`` refuses NaN too; an infinite rate or temperature made every weight NaN
        if not 0 < self.temperature < math.inf:
            raise ConfigError(
                f"{option_name('temperature')} must be a finite number > 0, got {self.temperature}"
            )
        if not 0 <= self.anchor_weight < math.inf:
            raise ConfigError(
                f"{option_name('anchor_weight')} must be a finite number >= 0, got {self.anchor_weight}"
            )
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"{option_name('lr')} must be a finite number > 0, got {self.lr}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"{option_name('lr_gamma')} must be in (0, 1], got {self.lr_gamma}")

    def resume_key(self) -> dict[str, Any]:
        """Options that must match for a checkpoint to be resumed (not epochs/patience/device)."""
        fields = asdict(self)
        for name in ("max_epochs", "patience", "device"):
            fields.pop(name)
        return fields


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did."""

    epoch: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    best_epoch: int
    temperature: float | None
    lr: float


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit_head`; the head holds the best epoch's weights."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None
    temperature: float | None
    history: list[EpochStats] = field(default_factory=list)


@dataclass
class _State:
    head: nn.Module
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    best_head: dict[str, torch.Tensor]
    best_loss: dict[str, torch.Tensor]
    epoch: int = 0  # epochs completed
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochStats] = field(default_factory=list)


def fit_head(
    head: nn.Module,
    train: FeatureSet,
    val: FeatureSet,
    options: FitOptions,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochStats], None] | None = None,
    anchor: FeatureSet | None = None,
    identity: Mapping[str, str] | None = None,
) -> FitResult:
    """Fit ``head`` in place; return the result. It ends holding the best validation epoch.

    ``anchor``: clips whose ``text`` holds each clip's target output (e.g. the start head's
    L2-normalised output on it); weighted by ``options.anchor_weight`` (module docstring).
    The validation loss, and so early stopping, is the main loss alone.
    ``identity``: what else a resumed run must share with the one that wrote the checkpoint
    (e.g. the model and the training rows, as short descriptions); stored in the checkpoint
    and compared on resume (:func:`check_checkpoint`).
    """
    if len(train) < 2 or len(val) < 1:
        raise ConfigError(f"need >= 2 training and >= 1 validation items, got {len(train)}, {len(val)}")
    if anchor is not None and len(anchor) < 2:
        raise ConfigError(f"need >= 2 anchor clips, got {len(anchor)}")
    device = _device(options.device)
    original = _placement(head)
    state = _new_state(head.to(device=device, dtype=torch.float32), options, device)
    resumed_from = _maybe_resume(state, options, checkpoint_dir, resume, identity or {})
    data = _Tensors.of(train, device), _Tensors.of(val, device)
    anchors = None if anchor is None or options.anchor_weight == 0 else _Tensors.of(anchor, device)
    while state.epoch < options.max_epochs and state.bad_epochs < options.patience:
        stats = _run_epoch(state, data[0], data[1], options, anchors)
        if checkpoint_dir is not None:
            _save_checkpoint(state, options, checkpoint_dir, identity or {})
        if on_epoch is not None:
            on_epoch(stats)
    head.load_state_dict(state.best_head)
    state.loss.load_state_dict(state.best_loss)
    head.to(**original).eval()
    return FitResult(
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val,
        epochs_run=state.epoch,
        stopped_early=state.bad_epochs >= options.patience,
        resumed_from=resumed_from,
        temperature=_temperature(state.loss),
        history=list(state.history),
    )


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _placement(module: nn.Module) -> dict[str, Any]:
    first = next(module.parameters(), None)
    if first is None:
        raise ConfigError("the fusion head has no parameters to train")
    return {"device": first.device, "dtype": first.dtype}


def _new_state(head: nn.Module, options: FitOptions, device: torch.device) -> _State:
    torch.manual_seed(options.seed)
    loss = build_loss(options.loss, huber_delta=options.huber_delta, temperature=options.temperature).to(
        device
    )
    params = [p for p in (*head.parameters(), *loss.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, options.lr_step_epochs, options.lr_gamma)
    return _State(head, loss, optimizer, scheduler, _snapshot(head), _snapshot(loss))


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _temperature(loss: nn.Module) -> float | None:
    value = getattr(loss, "temperature", None)
    return float(value) if value is not None else None


@dataclass(frozen=True)
class _Tensors:
    speech: Any  # a tensor of pooled vectors, or a FrameBank (kept in host memory)
    spectrogram: torch.Tensor
    text: torch.Tensor

    @classmethod
    def of(cls, features: FeatureSet, device: torch.device) -> _Tensors:
        def put(array: Any) -> torch.Tensor:
            return torch.as_tensor(array, dtype=torch.float32).to(device)

        speech = features.speech if isinstance(features.speech, FrameBank) else put(features.speech)
        return cls(speech, put(features.spectrogram), put(features.text))

    def __len__(self) -> int:
        return len(self.text)

    def batches(self, size: int, order: torch.Tensor | None = None) -> Iterator[_Tensors]:
        index = torch.arange(len(self)) if order is None else order
        for start in range(0, len(index), size):
            chunk = index[start : start + size]
            if len(chunk) >= 2 or len(index) == 1:  # a 1-item batch breaks BatchNorm and InfoNCE
                yield _Tensors(self._speech(chunk), self.spectrogram[chunk], self.text[chunk])

    def _speech(self, chunk: torch.Tensor) -> torch.Tensor:
        if isinstance(self.speech, FrameBank):  # zero-padded frames of just this batch
            return torch.from_numpy(self.speech.padded(chunk.numpy())).to(self.text.device)
        return self.speech[chunk]


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


def _run_epoch(
    state: _State, train: _Tensors, val: _Tensors, options: FitOptions, anchors: _Tensors | None = None
) -> EpochStats:
    seed = _epoch_seed(options.seed, state.epoch)
    torch.manual_seed(seed)  # dropout draws
    generator = torch.Generator().manual_seed(seed)
    order = _shuffled(train, options.batch_size, generator)
    anchor_batches = None
    if anchors is not None:
        anchor_batches = _endless(anchors, options.batch_size, torch.Generator().manual_seed(seed + 1))
    lr = state.optimizer.param_groups[0]["lr"]
    train_loss = _train_pass(
        state,
        train.batches(options.batch_size, order),
        anchor_batches,
        options.anchor_weight,
        freeze_batchnorm=options.freeze_batchnorm,
    )
    val_loss = evaluate_loss(state.head, state.loss, val.batches(options.val_batch_size))
    state.scheduler.step()
    state.epoch += 1
    if val_loss < state.best_val:
        state.best_val, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
        state.best_head, state.best_loss = _snapshot(state.head), _snapshot(state.loss)
    else:
        state.bad_epochs += 1
    stats = EpochStats(
        state.epoch, train_loss, val_loss, state.best_val, state.best_epoch, _temperature(state.loss), lr
    )
    state.history.append(stats)
    log.info("epoch %d: train %.4f val %.4f (best %.4f)", state.epoch, train_loss, val_loss, state.best_val)
    return stats


def _shuffled(data: _Tensors, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    order = torch.randperm(len(data), generator=generator)
    if isinstance(data.speech, FrameBank):
        order = _length_grouped(order, torch.from_numpy(data.speech.lengths), batch_size, generator)
    return order


def _endless(data: _Tensors, batch_size: int, generator: torch.Generator) -> Iterator[_Tensors]:
    """Batches of ``data`` for ever, reshuffled on every pass (the anchor clips)."""
    while True:
        yield from data.batches(batch_size, _shuffled(data, batch_size, generator))


#: Batches whose clips are sorted by length together (frame inputs only, see _length_grouped).
LENGTH_GROUP_BATCHES = 32


def _length_grouped(
    order: torch.Tensor, lengths: torch.Tensor, batch_size: int, generator: torch.Generator
) -> torch.Tensor:
    """``order`` with each run of ``LENGTH_GROUP_BATCHES`` batches sorted by clip length, and
    those batches shuffled: a batch of frame sequences is padded to its longest clip, so
    clips of like length share batches (about 2x less padding work on speech corpora). The
    batches stay random draws of the epoch; only their length spread narrows.
    """
    group = batch_size * LENGTH_GROUP_BATCHES
    parts = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        parts.append(chunk[torch.argsort(lengths[chunk], stable=True)])
    ordered = torch.cat(parts)
    batches = list(torch.split(ordered, batch_size))
    full = batches if len(ordered) % batch_size == 0 else batches[:-1]  # the short one stays last
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return torch.cat(shuffled + batches[len(full) :])


def _train_pass(
    state: _State,
    batches: Iterator[_Tensors],
    anchors: Iterator[_Tensors] | None = None,
    anchor_weight: float = 0.0,
    *,
    freeze_batchnorm: bool = False,
) -> float:
    """One epoch of steps; returns the mean main loss (the anchor term is not in it)."""
    state.head.train()
    if freeze_batchnorm:
        for module in state.head.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    total, count = 0.0, 0
    for batch in batches:
        main = state.loss(state.head(batch.speech, batch.spectrogram), batch.text)
        loss = main
        if anchors is not None:
            held = next(anchors)
            output = state.head(held.speech, held.spectrogram)
            loss = main + anchor_weight * anchor_distance(output, held.text)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        total, count = total + float(main.detach()), count + 1
    return total / max(count, 1)


def anchor_distance(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance ``1 - cos`` between a head's outputs and their anchor targets."""
    return (1 - torch.nn.functional.cosine_similarity(output, target, dim=-1)).mean()


@torch.no_grad()
def evaluate_loss(head: nn.Module, loss_fn: nn.Module, batches: Iterator[_Tensors]) -> float:
    """Mean per-batch loss of ``head`` in eval mode (the early-stopping criterion)."""
    head.eval()
    losses = [float(loss_fn(head(b.speech, b.spectrogram), b.text)) for b in batches]
    if not losses:
        raise ConfigError("validation set yields no batch of >= 2 items; add validation rows")
    return sum(losses) / len(losses)


# --- checkpoints ---------------------------------------------------------------------


def _save_checkpoint(state: _State, options: FitOptions, folder: Path, identity: Mapping[str, str]) -> None:
    tensors, meta = _flatten_optimizer(state.optimizer.state_dict())
    tensors.update(_prefixed("head.", state.head.state_dict()))
    tensors.update(_prefixed("loss.", state.loss.state_dict()))
    tensors.update(_prefixed("best_head.", state.best_head))
    tensors.update(_prefixed("best_loss.", state.best_loss))
    info = {
        "epoch": state.epoch,
        "best_val": state.best_val,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "history": [asdict(s) for s in state.history],
        "optimizer": meta,
        "scheduler": state.scheduler.state_dict(),
        "options": options.resume_key(),
        "identity": dict(identity),
    }
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    save_file(tensors, tmp, metadata={"state": json.dumps(info)})
    Path(tmp).chmod(new_file_mode())  # safetensors writes 0600
    Path(tmp).replace(folder / CHECKPOINT_NAME)


def _prefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in sd["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _maybe_resume(
    state: _State, options: FitOptions, folder: Path | None, resume: bool, identity: Mapping[str, str]
) -> int | None:
    info = None if folder is None else check_checkpoint(folder, options, resume=resume, identity=identity)
    if folder is None or info is None:
        if resume:
            log.warning("nothing to resume in %s; starting from epoch 0", folder)
        return None
    _load_checkpoint(state, info, folder / CHECKPOINT_NAME)
    log.info("resuming after epoch %d (best %.4f at epoch %d)", state.epoch, state.best_val, state.best_epoch)
    return state.epoch


def check_checkpoint(
    folder: Path, options: FitOptions, *, resume: bool, identity: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """Refuse, before any work, a checkpoint in ``folder`` that this run may not continue.

    Without ``resume`` any checkpoint is refused (it is an earlier run's); with it, one written
    with other options (:meth:`FitOptions.resume_key`) or another ``identity`` (see
    :func:`fit_head`) is. Returns the checkpoint's state, ``None`` when there is none.
    """
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        return None
    if not resume:
        raise ConfigError(
            f"{path} holds a checkpoint from an earlier run; pass resume (--resume) to continue it "
            "or choose another output folder"
        )
    info = _checkpoint_state(path)
    # checkpoints from before the temperature / anchor options ran with their defaults
    stored = {
        "temperature": INIT_TEMPERATURE,
        "anchor_weight": 0.0,
        "freeze_batchnorm": False,
        **info["options"],
    }
    changed = _changes(stored, json.loads(json.dumps(options.resume_key())), option_name)
    # checkpoints from before the identity was stored cannot be checked for it
    before = info.get("identity")
    if before is not None and identity is not None:
        changed += _changes(before, dict(identity), str)
    if changed:
        raise ConfigError(
            f"{path} was written with other training options ({'; '.join(changed)}); resume with the "
            "same options or start in an empty output folder"
        )
    return info


def _checkpoint_state(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            info: dict[str, Any] = json.loads((fh.metadata() or {})["state"])
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise ConfigError(
            f"{path} is not a readable training checkpoint ({exc}); start in an empty output folder"
        ) from None
    return info


def _changes(before: Mapping[str, Any], now: Mapping[str, Any], name: Callable[[str], str]) -> list[str]:
    """``"NAME: A then, B now"`` for each key whose value differs."""
    keys = sorted(set(before) | set(now))
    return [
        f"{name(key)}: {before.get(key)!r} then, {now.get(key)!r} now"
        for key in keys
        if before.get(key) != now.get(key)
    ]


def _load_checkpoint(state: _State, info: dict[str, Any], path: Path) -> None:
    tensors = load_file(str(path), device=str(next(state.head.parameters()).device))
    try:
        state.head.load_state_dict(_unprefixed("head.", tensors))
        state.loss.load_state_dict(_unprefixed("loss.", tensors))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"{path} holds a head of another shape than this model's ({first}); resume with the "
            "--model that wrote it or start in an empty output folder"
        ) from None
    state.best_head, state.best_loss = _unprefixed("best_head.", tensors), _unprefixed("best_loss.", tensors)
    state.optimizer.load_state_dict(_unflatten_optimizer(tensors, info["optimizer"]))
    state.scheduler.load_state_dict(info["scheduler"])
    state.epoch, state.best_val = info["epoch"], info["best_val"]
    state.best_epoch, state.bad_epochs = info["best_epoch"], info["bad_epochs"]
    state.history = [EpochStats(**entry) for entry in info["history"]]


def _unprefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    groups = copy.deepcopy(meta["param_groups"])
    return {"state": state, "param_groups": groups}
