"""Safe import of the paper's pickled checkpoints.

The release files (``CLASP_Concat_Final_Fusion_Encoder.pt``, ``CLASP_Gating.pt``,
``LASP_Concat.pt``, ``LASP_Gating.pt`` on ``llm-lab/CLASP``) are whole ``nn.Module`` objects
written by ``torch.save(model)`` in a notebook, so the pickle names the classes
``__main__.HubertLabseConcat`` / ``__main__.HubertLabseGating``.

They are read with torch's restricted ``weights_only`` unpickler, which admits only tensor
and storage rebuilds and a few containers, plus exactly the globals allowed here: the
``torch.nn`` layer classes those modules are made of, and the two paper classes mapped onto
inert placeholder modules (their ``__init__``/``forward`` never run). Any other global —
``os.system``, ``builtins.eval``, another class — makes the load fail with
:class:`~clasp_ingest.errors.ModelLoadError` before anything is called.

That unpickler would still *call* every class it admits, with arguments from the file
(``nn.Linear(12000, 12000)``, ``bytearray(n)``, ``torch.Tensor(n, m)``), and allocate the
storages an old-format file declares: a 2 KB pickle could ask for gigabytes. So each pickle
is first stepped through without calling anything (:class:`_DryRun`): the only calls allowed
are torch's rebuilders of the tensors whose bytes the file holds and the containers a saved
module uses, a module is only made empty and filled from its saved state, and the tensor
data declared must fit in the file. Only the resulting state dict is used, read from the
modules' attributes without running their hooks: it is loaded into a fresh
:class:`ConcatFusion`/:class:`GatingFusion`.
"""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.config import FusionKind

__all__ = ["ALLOWED_LAYERS", "OfficialCheckpoint", "import_official", "read_official_state_dict"]

logger = get_logger("model.checkpoint")

#: torch.nn classes that the paper's fusion modules are built from.
ALLOWED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.Linear,
    nn.BatchNorm1d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Dropout,
    nn.Sigmoid,
    nn.Tanh,
)


class _PickledConcat(nn.Module):
    """Inert stand-in for the notebook's ``HubertLabseConcat``: receives its pickled state only."""


class _PickledGating(nn.Module):
    """Inert stand-in for the notebook's ``HubertLabseGating``: receives its pickled state only."""


_PAPER_CLASSES: dict[str, type[nn.Module]] = {
    "HubertLabseConcat": _PickledConcat,
    "HubertLabseGating": _PickledGating,
}


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What a paper checkpoint holds: fusion kind, its dimensions, and the state dict."""

    kind: FusionKind
    class_name: str
    speech_dim: int
    spec_dim: int
    out_dim: int
    state_dict: Mapping[str, torch.Tensor]


def _safe_globals() -> list[Any]:
    allowed: list[Any] = list(ALLOWED_LAYERS)
    allowed.append(set)  # nn.Module pickles its ``_non_persistent_buffers_set``
    for name, stand_in in _PAPER_CLASSES.items():
        allowed.append((stand_in, f"__main__.{name}"))
    return allowed


#: What a checkpoint's pickle may call: torch's rebuilders of tensors (their bytes are records
#: of the file), the containers a saved module holds, and the small values torch's own
#: weights-only loader admits (a module's ``self.device``, a ``torch.Size``, ``bytes`` as
#: protocol 2 writes them): what each makes is no larger than its arguments in the file.
#: Anything else torch's unpickler would call (an allowed layer class, ``bytearray``,
#: ``torch.Tensor``, a storage class, the quantized or sparse rebuilders) sizes what it
#: allocates by numbers written in the pickle.
_REBUILDERS = frozenset(
    {
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
    }
)
_CALLS = _REBUILDERS | {
    "torch.nn.parameter.Parameter",
    "torch._tensor._rebuild_from_type_v2",  # (rebuilder, type, args, state): its rebuilder is checked
    "torch.device",
    "torch.Size",
    "torch.serialization._get_layout",
    "collections.OrderedDict",
    "collections.Counter",
    "builtins.set",
    "__builtin__.set",  # what protocol 2 writes; torch maps it to builtins.set
    "builtins.complex",
    "__builtin__.complex",
    "_codecs.encode",  # bytes, in protocol 2
}
#: More (sub)modules than any fusion head has: shared or looping submodules end the walk here.
_MAX_MODULES = 10_000
#: The opcodes torch's restricted unpickler knows (protocol 2 as torch.save writes it).
_OPCODES = {
    op.code.encode("latin-1"): op
    for op in pickletools.opcodes
    if op.name
    in (
        "PROTO", "STOP", "GLOBAL", "REDUCE", "NEWOBJ", "BUILD", "BINPERSID", "MARK", "TUPLE",
        "TUPLE1", "TUPLE2", "TUPLE3", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "BINGET",
        "LONG_BINGET", "BINPUT", "LONG_BINPUT", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE",
        "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT",
        "BINUNICODE", "SHORT_BINSTRING", "LONG1",
    )
}  # fmt: skip
_EMPTY: dict[str, Any] = {
    "NONE": lambda: None,
    "NEWFALSE": lambda: False,
    "NEWTRUE": lambda: True,
    "EMPTY_TUPLE": tuple,
    "EMPTY_LIST": list,
    "EMPTY_DICT": dict,
    "EMPTY_SET": set,
}


@dataclass(frozen=True)
class _Global:
    """A global the pickle names (``module.name``): in a dry run, named but never imported."""

    name: str


class _Made:
    """What a call or an empty-object opcode would have made: in a dry run, nothing."""


@functools.cache
def _itemsizes() -> dict[str, int]:
    """Bytes per element of the storage classes a pickle names (``torch.FloatStorage``: 4)."""
    by_dtype = torch.storage._dtype_to_storage_type_map()  # what torch's own allow-list uses
    return {f"torch.{name}": dtype.itemsize for dtype, name in by_dtype.items()}


class _DryRun:
    """Steps through pickles as torch's restricted unpickler would, calling nothing.

    A call (REDUCE) must be one of ``_CALLS``; an object of an allowed class (NEWOBJ) must be
    made empty, to be filled from its saved state; the storages declared (persistent ids) must
    fit in the file's ``limit`` bytes. Anything else torch refuses is left for it to refuse.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.modules = {f"{cls.__module__}.{cls.__qualname__}" for cls in ALLOWED_LAYERS}
        self.modules.update(f"__main__.{name}" for name in _PAPER_CLASSES)
        self.storages: dict[Any, int] = {}
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    def run(self, stream: IO[bytes]) -> Any:
        """The outline of the next pickle in ``stream`` (its value where it is plain data)."""
        self.stack, self.marks, self.memo = [], [], {}
        while True:
            code = stream.read(1)
            if not code:
                raise EOFError
            op = _OPCODES.get(code)
            if op is None:
                raise pickle.UnpicklingError(f"Unsupported operand {code[0]}")
            arg = op.arg.reader(stream) if op.arg is not None else None
            if op.name == "STOP":
                return self.stack.pop()
            self._step(op.name, arg)

    def _step(self, name: str, arg: Any) -> None:
        stack = self.stack
        if name in _EMPTY:
            stack.append(_EMPTY[name]())
        elif name in ("BININT", "BININT1", "BININT2", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "LONG1"):
            stack.append(arg)
        elif name == "GLOBAL":
            stack.append(_Global(".".join(arg.split(" ", 1))))
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            self._check_call(name, stack[-1], args)
            stack[-1] = _Made()
        elif name == "BINPERSID":
            self._declare(stack.pop())
            stack.append(_Made())
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(self.memo[arg])
        elif name in ("BINPUT", "LONG_BINPUT"):
            self.memo[arg] = stack[-1]
        else:
            self._shape(name)

    def _shape(self, name: str) -> None:
        """The opcodes that only move what is on the stack (containers are not filled)."""
        if name == "MARK":
            self.marks.append(self.stack)
            self.stack = []
        elif name in ("TUPLE", "APPENDS", "SETITEMS"):
            items, self.stack = self.stack, self.marks.pop()
            if name == "TUPLE":
                self.stack.append(tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(self.stack) < n:
                raise IndexError("tuple of an empty stack")
            self.stack[-n:] = [tuple(self.stack[-n:])]
        elif name in ("APPEND", "BUILD"):
            self.stack.pop()
        elif name == "SETITEM":
            del self.stack[-2:]

    def _check_call(self, name: str, target: Any, args: Any) -> None:
        what = f"GLOBAL {target.name}" if isinstance(target, _Global) else f"a {type(target).__name__}"
        if name == "REDUCE" and getattr(target, "name", None) not in _CALLS:
            raise pickle.UnpicklingError(
                f"a call of {what}: saved modules and tensors are rebuilt, never called"
            )
        if name == "REDUCE" and target.name == "torch._tensor._rebuild_from_type_v2":
            inner = args[0] if isinstance(args, tuple) and args else None
            if getattr(inner, "name", None) not in _REBUILDERS:  # it calls inner(*its args)
                raise pickle.UnpicklingError(
                    f"a tensor rebuilt through {_short(inner)}: only torch's tensor rebuilders may"
                )
        if name == "NEWOBJ" and (getattr(target, "name", None) not in self.modules or args != ()):
            raise pickle.UnpicklingError(
                f"{what} made with arguments {_short(args)}: a saved module is made empty and filled "
                "from its saved state"
            )

    def _declare(self, pid: Any) -> None:
        """Count a storage the pickle declares (``("storage", type, key, location, numel, ...)``)."""
        if isinstance(pid, tuple) and pid and pid[0] not in ("storage", b"storage"):
            # torch's words (the old format's modules name their classes this way)
            raise pickle.UnpicklingError(
                f"Only persistent_load of storage is allowed, but got {type(pid[0])}"
            )
        if not (isinstance(pid, tuple) and len(pid) >= 5):
            return  # torch refuses any other persistent id itself
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"a storage of {_short(numel)} elements")
        itemsize = _itemsizes().get(getattr(storage_type, "name", ""), 1)
        self.storages.setdefault(key, numel * itemsize)
        declared = sum(self.storages.values())
        if declared > self.limit:
            raise ModelLoadError(
                f"refusing to load {str(self.path)!r}: it declares {declared} bytes of tensor data but "
                f"the file has {self.limit} bytes; it is damaged or made to exhaust memory, and is not "
                "a checkpoint torch.save wrote"
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dry_run(path: Path) -> None:
    """Step through the checkpoint's pickles (a zip's ``data.pkl``, or the pickles of torch's
    old format) before torch loads it; see :class:`_DryRun`."""
    size = path.stat().st_size
    run = _DryRun(path, size)
    with path.open("rb") as stream:
        if stream.read(4) != b"PK\x03\x04":  # what torch takes for a zip checkpoint
            stream.seek(0)
            _dry_run_old_format(run, stream)
            return
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        unpacked = sum(entry.file_size for entry in entries)
        if unpacked > size:
            raise ModelLoadError(
                f"refusing to load {str(path)!r}: its zip entries unpack to {unpacked} bytes, more than "
                f"the file's {size}; torch.save never compresses, so it is not a checkpoint torch wrote"
            )
        for entry in entries:  # torch's reader matches names without regard to case
            if entry.filename.lower().endswith("data.pkl"):
                run.run(io.BytesIO(archive.read(entry)))


def _dry_run_old_format(run: _DryRun, stream: IO[bytes]) -> None:
    """torch's format before 1.6: pickles of a magic number, a protocol version, system info,
    the object and its storage keys, then the storages' bytes."""
    if run.run(stream) != torch.serialization.MAGIC_NUMBER:
        return  # torch stops here too
    if run.run(stream) != torch.serialization.PROTOCOL_VERSION:
        return
    for _ in range(3):
        run.run(stream)


def _unpickle(path: Path) -> Any:
    from clasp_ingest.model.hub import check_regular_file

    if not path.exists() and not path.is_symlink():
        raise ModelLoadError(f"no checkpoint file {str(path)!r}; check the path")
    check_regular_file(path, "give the checkpoint file itself")
    try:
        _dry_run(path)
        with torch.serialization.safe_globals(_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4 ...": ours to say
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(exc)
        if "GLOBAL" not in detail and "global" not in detail:  # an opcode torch.save never writes
            raise ModelLoadError(
                f"cannot read {str(path)!r}: it is not a PyTorch checkpoint ({detail}); the paper's "
                "weights are files torch.save wrote (.pt/.pkl), e.g. those of llm-lab/CLASP"
            ) from None
        raise ModelLoadError(
            f"refusing to load {str(path)!r}: it needs something a fusion checkpoint never contains "
            f"({detail}); only tensors, torch.nn layers and the paper's HubertLabseConcat/HubertLabseGating "
            f"are allowed. Do not load this file with plain torch.load"
        ) from None
    except (EOFError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # an empty file (EOFError with no message), or bytes the unpickler reads as opcodes it
        # then trips over (text starting with 'h' or 'j': KeyError 101)
        raise ModelLoadError(
            f"cannot read {str(path)!r}: it is not a PyTorch checkpoint (empty, cut short or another "
            f"kind of file: {type(exc).__name__}); the paper's weights are files torch.save wrote "
            "(.pt/.pkl), e.g. those of llm-lab/CLASP"
        ) from None
    except (OSError, RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read checkpoint {str(path)!r}: it is cut short, damaged or not a PyTorch checkpoint "
            f"({_first_sentence(exc)}); download or copy it again"
        ) from exc


def _first_sentence(exc: BaseException) -> str:
    """The reader's own words, up to their first full stop (torch appends paragraphs of advice)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.removeprefix("[enforce fail at inline_container.cc:180] . ")
    end = text.find(". ")
    return text if end < 0 else text[:end]


def _unpickling_detail(exc: pickle.UnpicklingError) -> str:
    """What torch's safe unpickler refused (e.g. "Unsupported operand 149", "Trying to load
    unsupported GLOBAL posix.system ..."), without its advice to load the file unsafely."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [
        line
        for line in lines
        if not line.startswith(
            ("Weights only load failed", "Please file an issue", "Check the documentation")
        )
        and "weights_only" not in line
    ]
    detail = kept[0] if kept else type(exc).__name__
    return detail.split(" Please use `torch.serialization.add_safe_globals", 1)[0]  # not advice to follow


def _kind_of(obj: Any, state: Mapping[str, torch.Tensor], path: Path) -> tuple[FusionKind, str]:
    if isinstance(obj, _PickledConcat):
        return "concat", "HubertLabseConcat"
    if isinstance(obj, _PickledGating):
        return "gating", "HubertLabseGating"
    if "audio_seq.0.weight" in state and "mix_seq.0.weight" in state:
        return "concat", "state_dict"
    if "text_seq.0.weight" in state and "weight.0.weight" in state:
        return "gating", "state_dict"
    raise ModelLoadError(
        f"{str(path)!r} holds a {type(obj).__name__} that is neither HubertLabseConcat, HubertLabseGating "
        "nor a state dict of one: it is not a CLASP fusion checkpoint; import the paper's .pt/.pkl "
        "files (e.g. those of llm-lab/CLASP)"
    )


def _module_state(root: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The parameters and persistent buffers of ``root`` and its submodules, as ``state_dict``
    names them, read from the pickled attributes: none of the modules' hooks run, and shared or
    looping submodules end the walk after ``_MAX_MODULES``."""
    state: dict[str, torch.Tensor] = {}
    todo: list[tuple[str, Any]] = [("", root)]
    walked = 0
    while todo:
        walked += 1
        if walked > _MAX_MODULES:
            raise ModelLoadError(
                f"refusing to load {str(path)!r}: its modules nest more than {_MAX_MODULES} submodules "
                "(or loop); a fusion head has a few dozen, so it is not a CLASP fusion checkpoint"
            )
        prefix, module = todo.pop()
        if not isinstance(module, nn.Module):
            raise TypeError(f"a {type(module).__name__} among its submodules")
        attrs = vars(module)
        skip = attrs["_non_persistent_buffers_set"]
        buffers = [(k, v) for k, v in attrs["_buffers"].items() if k not in skip]
        for name, value in [*attrs["_parameters"].items(), *buffers]:
            if value is not None and not isinstance(value, torch.Tensor):
                raise TypeError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            if value is not None:
                state[prefix + name] = value
        todo.extend((f"{prefix}{name}.", sub) for name, sub in attrs["_modules"].items() if sub is not None)
    return state


def _state_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        state = _module_state(obj, path)
    elif isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = {str(k): v for k, v in obj.items()}
    else:
        return {}
    held, size = sum(v.numel() * v.element_size() for v in state.values()), path.stat().st_size
    if held > size:  # views that repeat a few stored bytes (stride 0) would be copied out in full
        raise ModelLoadError(
            f"refusing to load {str(path)!r}: its tensors span {held} bytes but the file has {size}; "
            "it is damaged or made to exhaust memory, and is not a checkpoint torch.save wrote"
        )
    return {k: v.detach().clone() for k, v in state.items()}


def _checked_state_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    try:
        return _state_of(obj, path)
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        # a paper class or layer whose saved state is not what nn.Module pickles
        raise ModelLoadError(
            f"{str(path)!r} is not a CLASP fusion checkpoint or is damaged: its pickled modules do not "
            f"hold what torch.save writes ({type(exc).__name__}: {_first_sentence(exc)}); import the "
            "paper's .pt/.pkl files (e.g. those of llm-lab/CLASP), downloaded again"
        ) from None


def read_official_state_dict(path: Path) -> OfficialCheckpoint:
    """Read a paper checkpoint (pickled module or state dict) without executing its code."""
    obj = _unpickle(Path(path))
    state = _checked_state_of(obj, Path(path))
    kind, class_name = _kind_of(obj, state, Path(path))
    speech_key = "audio_seq.0.weight" if kind == "concat" else "text_seq.0.weight"
    try:
        out_dim, speech_dim = state[speech_key].shape
        spec_dim = state["image_seq.0.weight"].shape[1]
    except (KeyError, ValueError) as exc:
        raise ModelLoadError(f"checkpoint {str(path)!r} lacks the {kind} fusion layers: {exc}") from exc
    return OfficialCheckpoint(kind, class_name, int(speech_dim), int(spec_dim), int(out_dim), state)


def _preset_for(path: Path, kind: FusionKind) -> str:
    from clasp_ingest.model.presets import _OFFICIAL_FILES

    for name, (preset_kind, filename) in _OFFICIAL_FILES.items():
        if path.name == filename and preset_kind == kind:
            return name
    return "clasp-official" if kind == "concat" else "clasp-official-gating"


def import_official(
    path: Path, out_dir: Path, *, preset: str | None = None, model_id: str | None = None
) -> Path:
    """Convert a paper ``.pt`` to ``fusion.safetensors`` + ``config.json`` in ``out_dir``.

    The config is the matching official preset (by file name, else by fusion kind, or
    ``preset``) with the dimensions found in the checkpoint.
    """
    from dataclasses import replace

    from clasp_ingest.model.clasp import load_fusion_weights, save_fusion
    from clasp_ingest.model.config import saved_model_files
    from clasp_ingest.model.presets import get_preset

    path = Path(path)
    held = saved_model_files(Path(out_dir))
    if held:
        raise ConfigError(
            f"{str(out_dir)!r} holds a model already ({', '.join(held)}); choose another --out, or "
            "delete that folder first"
        )
    ckpt = read_official_state_dict(path)
    base = get_preset(preset or _preset_for(path, ckpt.kind))
    if base.fusion.kind != ckpt.kind:
        raise ModelLoadError(
            f"{str(path)!r} is a {ckpt.kind} head but preset {base.model_id!r} uses {base.fusion.kind}; "
            "pick a matching --preset"
        )
    config = replace(base, model_id=model_id or base.model_id, weights=None)
    if (ckpt.speech_dim, ckpt.spec_dim, ckpt.out_dim) != (
        config.fusion.speech_dim,
        config.fusion.spec_dim,
        config.fusion.out_dim,
    ):
        raise ModelLoadError(
            f"{str(path)!r} maps {ckpt.speech_dim}+{ckpt.spec_dim}→{ckpt.out_dim} but preset "
            f"{base.model_id!r} expects {config.fusion.speech_dim}+{config.fusion.spec_dim}→"
            f"{config.fusion.out_dim}; pick a matching --preset"
        )
    fusion = load_fusion_weights(config, path)
    logger.info("imported %s (%s) from %s", config.model_id, ckpt.class_name, path)
    return save_fusion(config, fusion, Path(out_dir))
